//! A request's hold on one of its deployment's isolates.

use std::sync::Arc;

use super::Pool;
use crate::isolate::thread::IsolateThread;

/// One request slot on an isolate; dropping it (when the response, streamed or not, is done)
/// gives the slot back to the pool.
#[derive(Debug)]
pub struct Lease {
    pool: Arc<Pool>,
    isolate: Arc<IsolateThread>,
}

impl Lease {
    pub(super) fn new(pool: Arc<Pool>, isolate: Arc<IsolateThread>) -> Self {
        Self { pool, isolate }
    }

    /// The isolate this request runs in.
    pub(crate) fn isolate(&self) -> &Arc<IsolateThread> {
        &self.isolate
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.pool.release(&self.isolate);
    }
}
