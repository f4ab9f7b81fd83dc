//! `isola_blob`: Blob contents and object URLs charged to the isolate's memory limit.
//!
//! deno_web copies each Blob part into Rust (`op_blob_create_part`) and keeps it in the blob
//! store, out of V8's sight. This extension swaps that op (by name, for the snapshot and every
//! isolate alike) for one that charges the copy; the charge goes with the part, so it lasts
//! while anything holds the part (a Blob, a slice of it, an object URL) and is released with
//! it. [`ChargedBlobStore`] charges the store's own entries (part ids, object URLs).

mod store;

use std::fmt;
use std::sync::Arc;

use deno_core::{JsBuffer, OpDecl, OpState, op2};
use deno_web::{BlobPart, BlobStoreTrait};
use uuid::Uuid;

pub use store::ChargedBlobStore;

use crate::memory::{Charge, MemoryAccount, OverLimit};

deno_core::extension!(
    isola_blob,
    deps = [deno_web],
    options = { account: MemoryAccount },
    middleware = replace_ops,
    state = |state, options| {
        state.put(options.account);
    },
);

/// deno_web's op that copies a Blob part into Rust becomes Isola's charging one (the name
/// stays, so deno_web's JavaScript calls it unchanged).
fn replace_ops(op: OpDecl) -> OpDecl {
    match op.name {
        "op_blob_create_part" => op_isola_blob_create_part(),
        _ => op,
    }
}

/// Why a Blob part was not made.
#[derive(Debug, thiserror::Error, deno_error::JsError)]
pub enum BlobPartError {
    /// The copy does not fit under the isolate's memory limit.
    #[class(inherit)]
    #[error(transparent)]
    OverLimit(#[from] OverLimit),
    /// The isolate has no blob store (the snapshot builder's).
    #[class(type)]
    #[error("Blobs are not available in this context")]
    NoStore,
}

/// Blob contents copied from JavaScript, charged for as long as the part lives.
struct ChargedPart {
    bytes: Vec<u8>,
    _charge: Charge,
}

#[async_trait::async_trait]
impl BlobPart for ChargedPart {
    async fn read<'a>(&'a self) -> &'a [u8] {
        &self.bytes
    }

    fn size(&self) -> usize {
        self.bytes.len()
    }
}

impl fmt::Debug for ChargedPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChargedPart({} bytes)", self.bytes.len())
    }
}

/// `op_blob_create_part`: charges, then copies `data` into a part of the blob store.
#[op2]
fn op_isola_blob_create_part(
    state: &mut OpState,
    #[buffer] data: JsBuffer,
) -> Result<Uuid, BlobPartError> {
    let charge = MemoryAccount::of(state).charge(data.len())?;
    let part = ChargedPart {
        bytes: data.to_vec(),
        _charge: charge,
    };
    let store = state
        .try_borrow::<Arc<dyn BlobStoreTrait>>()
        .ok_or(BlobPartError::NoStore)?;
    Ok(store.insert_part(Arc::new(part)))
}
