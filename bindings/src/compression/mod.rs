//! `isola_compression`: Compression Streams whose codec state and pending output are charged
//! to the isolate's memory limit.
//!
//! deno_web keeps each stream's codec (a DEFLATE compressor is ~260 KiB) in a private
//! garbage-collected object, out of V8's sight. This extension swaps its three ops (by name,
//! for the snapshot and every isolate alike) for ones running the same codecs in an object
//! that carries a charge: the state's estimated size from creation until the stream finishes
//! or is collected, plus output while it is buffered.

mod codec;

use std::cell::RefCell;

use deno_core::convert::Uint8Array;
use deno_core::{GarbageCollected, OpDecl, OpState, op2, v8};
use deno_web::CompressionError;

pub use codec::CodecError;

use crate::memory::{Charge, MemoryAccount};
use codec::Codec;

deno_core::extension!(
    isola_compression,
    deps = [deno_web],
    options = { account: MemoryAccount },
    middleware = replace_ops,
    state = |state, options| {
        state.put(options.account);
    },
);

/// deno_web's compression ops become Isola's charging ones (the names stay, so deno_web's
/// JavaScript calls them unchanged; all three are swapped, as they share the stream object).
fn replace_ops(op: OpDecl) -> OpDecl {
    match op.name {
        "op_compression_new" => op_isola_compression_new(),
        "op_compression_write" => op_isola_compression_write(),
        "op_compression_finish" => op_isola_compression_finish(),
        _ => op,
    }
}

/// A live codec and the charge for its state.
struct Live {
    codec: Codec,
    _state: Charge,
}

/// One stream's codec, until it finishes (or JavaScript drops the stream and V8 collects it).
struct Stream(RefCell<Option<Live>>);

// SAFETY: `Stream` holds no V8 references, so there is nothing to trace; it is dropped by
// cppgc on the isolate's thread like deno_web's own compression resource.
#[allow(unsafe_code, reason = "cppgc objects implement an unsafe marker trait")]
unsafe impl GarbageCollected for Stream {
    fn trace(&self, _visitor: &mut v8::cppgc::Visitor) {}

    fn get_name(&self) -> &'static std::ffi::CStr {
        c"IsolaCompressionStream"
    }
}

/// `op_compression_new`: a codec for `format`, its state charged.
#[op2]
#[cppgc]
fn op_isola_compression_new(
    state: &mut OpState,
    #[string] format: &str,
    is_decoder: bool,
) -> Result<Stream, CodecError> {
    let account = MemoryAccount::of(state);
    let (codec, state_bytes) = Codec::new(format, is_decoder, &account)?;
    let live = Live {
        codec,
        _state: account.charge(state_bytes)?,
    };
    Ok(Stream(RefCell::new(Some(live))))
}

/// `op_compression_write`: feeds a chunk, returns the output so far.
#[op2]
fn op_isola_compression_write(
    #[cppgc] stream: &Stream,
    #[anybuffer] input: &[u8],
) -> Result<Uint8Array, CompressionError> {
    let mut live = stream.0.borrow_mut();
    let live = live.as_mut().ok_or(CompressionError::ResourceClosed)?;
    Ok(live.codec.write(input)?.into())
}

/// `op_compression_finish`: ends the stream (releasing its charge) and returns the rest of the
/// output; errors are reported only if `report_errors` (not when the stream is cancelled).
#[op2]
fn op_isola_compression_finish(
    #[cppgc] stream: &Stream,
    report_errors: bool,
) -> Result<Uint8Array, CompressionError> {
    let live = stream
        .0
        .borrow_mut()
        .take()
        .ok_or(CompressionError::ResourceClosed)?;
    match live.codec.finish() {
        Ok(out) => Ok(out.into()),
        Err(error) if report_errors => Err(error),
        Err(_) => Ok(Vec::new().into()),
    }
}
