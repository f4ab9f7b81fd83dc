//! Charging Rust-side memory that JavaScript makes (Blob contents, object URLs, compression
//! state) to the isolate's memory counter: the one its `memory_mb` limit watches, so such
//! memory kills an isolate near its limit like an ArrayBuffer bomb. A [`Charge`] is released
//! when the memory it stands for is freed.

use std::fmt;
use std::sync::Arc;

use deno_core::OpState;

/// The isolate's memory counter as the ops see it (the runtime's limit enforcer implements it).
pub trait MemoryMeter: Send + Sync {
    /// Counts `bytes` more. Passing the limit kills the isolate; false (nothing counted) if
    /// the count would pass the hard cap (twice the limit).
    fn charge(&self, bytes: usize) -> bool;
    /// Counts `bytes` fewer.
    fn release(&self, bytes: usize);
}

/// Where an isolate's off-heap memory is charged. The default charges nothing (the snapshot
/// builder's isolate has no limit).
#[derive(Clone, Default)]
pub struct MemoryAccount(Option<Arc<dyn MemoryMeter>>);

/// A charge the isolate's memory limit has no room for.
#[derive(Debug, thiserror::Error, deno_error::JsError)]
#[class(range)]
#[error("the isolate's memory limit (memory_mb) has no room for {0} more bytes")]
pub struct OverLimit(pub usize);

/// Bytes charged to an account, released when dropped.
pub struct Charge {
    account: MemoryAccount,
    bytes: usize,
}

impl MemoryAccount {
    /// An account that charges `meter`.
    pub fn new(meter: Arc<dyn MemoryMeter>) -> Self {
        Self(Some(meter))
    }

    /// The account the isolate's extensions put into `state`, or one that charges nothing.
    pub fn of(state: &OpState) -> Self {
        state.try_borrow::<Self>().cloned().unwrap_or_default()
    }

    /// Charges `bytes`, until the returned charge is dropped.
    pub fn charge(&self, bytes: usize) -> Result<Charge, OverLimit> {
        let mut charge = Charge {
            account: self.clone(),
            bytes: 0,
        };
        charge.grow(bytes)?;
        Ok(charge)
    }
}

impl Charge {
    /// Charges `bytes` more.
    pub fn grow(&mut self, bytes: usize) -> Result<(), OverLimit> {
        if let Some(meter) = &self.account.0
            && !meter.charge(bytes)
        {
            return Err(OverLimit(bytes));
        }
        self.bytes = self.bytes.saturating_add(bytes);
        Ok(())
    }

    /// Releases `bytes` of the charge (at most all of it).
    pub fn shrink(&mut self, bytes: usize) {
        let bytes = bytes.min(self.bytes);
        if let Some(meter) = &self.account.0 {
            meter.release(bytes);
        }
        self.bytes -= bytes;
    }

    /// The bytes charged.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.shrink(self.bytes);
    }
}

impl fmt::Debug for MemoryAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "MemoryAccount(metered)"
        } else {
            "MemoryAccount(unmetered)"
        })
    }
}

impl fmt::Debug for Charge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Charge({} bytes)", self.bytes)
    }
}
