//! A request's hold on one of its deployment's isolates.

use std::sync::Arc;

use super::Pool;
use crate::isolate::thread::IsolateThread;

/// One request slot on an isolate. It travels with the request into the isolate, which drops
/// it when the response is complete (at once for a body known in full, at the end of a
/// stream); dropping it gives the slot back to the pool.
#[derive(Debug)]
pub struct Lease {
    pool: Arc<Pool>,
    isolate: Arc<IsolateThread>,
    armed: bool,
}

impl Lease {
    pub(super) fn new(pool: Arc<Pool>, isolate: Arc<IsolateThread>) -> Self {
        Self {
            pool,
            isolate,
            armed: true,
        }
    }

    /// Lets the lease go without giving the slot back: the pool does that itself, under its
    /// lock.
    pub(super) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.armed {
            self.pool.release(&self.isolate);
        }
    }
}
