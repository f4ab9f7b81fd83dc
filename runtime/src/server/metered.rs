//! Each request's entry in its worker's metrics: written when its response head goes out, or
//! as canceled when the client leaves first (hyper then drops the handler's future, and with
//! it this record).

use std::sync::Arc;
use std::time::Instant;

use crate::metrics::{Outcome, WorkerMeters};
use crate::worker::WorkerSource;

/// One request's metrics record, from its arrival.
pub(super) struct Metered {
    arrival: Instant,
    worker: Option<Arc<WorkerMeters>>,
    /// The isolate's memory in GB once a worker runs for the request (for GB-seconds).
    gb: Option<f64>,
    done: bool,
}

impl Metered {
    /// A request that arrived just now.
    pub(super) fn new() -> Self {
        Self {
            arrival: Instant::now(),
            worker: None,
            gb: None,
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
        self.gb = Some(worker.limits.memory_mb as f64 / 1024.0);
    }

    /// The response head goes out with `status`.
    pub(super) fn finish(&mut self, status: u16, outcome: Outcome) {
        self.record(Some(status), outcome);
    }

    fn record(&mut self, status: Option<u16>, outcome: Outcome) {
        self.done = true;
        if let Some(worker) = &self.worker {
            let seconds = self.arrival.elapsed().as_secs_f64();
            worker.request(status, outcome, seconds, self.gb);
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
