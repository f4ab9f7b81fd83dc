//! Each request's entry in its worker's metrics: written when its response head goes out, or
//! as canceled when the client leaves first (hyper then drops the handler's future, and with
//! it this record).

use std::sync::Arc;
use std::time::Instant;

use crate::metrics::{Outcome, Served, WorkerMeters};
use crate::worker::WorkerSource;

/// One request's metrics record, from its arrival.
pub(super) struct Metered {
    arrival: Instant,
    worker: Option<Arc<WorkerMeters>>,
    /// What answers the request (for GB-seconds and metering).
    served: Served,
    done: bool,
}

impl Metered {
    /// A request that arrived just now.
    pub(super) fn new() -> Self {
        Self {
            arrival: Instant::now(),
            worker: None,
            served: Served::Nothing,
            done: false,
        }
    }

    /// When the request arrived.
    pub(super) fn arrival(&self) -> Instant {
        self.arrival
    }

    /// The request was routed to `worker`: it counts in that worker's series.
    pub(super) fn routed(&mut self, worker: &WorkerSource) {
        self.worker = Some(worker.meters.clone());
    }

    /// The request goes to one of the worker's isolates (not answered by the cache).
    pub(super) fn forwarded(&mut self, worker: &WorkerSource) {
        self.served = Served::Worker {
            memory_mb: worker.limits.memory_mb,
        };
    }

    /// The response cache answers the request.
    pub(super) fn cache_hit(&mut self) {
        self.served = Served::Cache;
    }

    /// The response head goes out with `status`.
    pub(super) fn finish(&mut self, status: u16, outcome: Outcome) {
        self.record(Some(status), outcome);
    }

    fn record(&mut self, status: Option<u16>, outcome: Outcome) {
        self.done = true;
        if let Some(worker) = &self.worker {
            worker.request(status, outcome, self.arrival.elapsed(), self.served);
        }
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        if !self.done {
            self.record(None, Outcome::Canceled);
        }
    }
}
