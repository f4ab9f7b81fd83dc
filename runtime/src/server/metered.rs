//! Each request's entry in its worker's metrics: written when its response head goes out, or
//! as canceled when the client leaves first (hyper then drops the handler's future, and with
//! it this record).

use std::sync::Arc;
use std::time::Instant;

use crate::metrics::{Outcome, Served, WorkerMeters};
use crate::tail::{REDACTED, redact};
use crate::worker::WorkerSource;

/// One request's metrics record, from its arrival.
pub(super) struct Metered {
    arrival: Instant,
    worker: Option<Arc<WorkerMeters>>,
    /// What answers the request (for GB-seconds and metering).
    served: Served,
    /// The request's live-tail event so far, only while a tail of its worker listens.
    tail: Option<Box<serde_json::Value>>,
    /// The worker's secret values, redacted from the tail event (set with `tail`).
    secrets: Option<Arc<[String]>>,
    done: bool,
}

impl Metered {
    /// A request that arrived just now.
    pub(super) fn new() -> Self {
        Self {
            arrival: Instant::now(),
            worker: None,
            served: Served::Nothing,
            tail: None,
            secrets: None,
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

    /// Starts the request's event for the worker's live tails, if any listen: method, URL and
    /// headers (`Authorization`, `Cookie` and the worker's secret values redacted).
    pub(super) fn tail(
        &mut self,
        worker: &WorkerSource,
        parts: &http::request::Parts,
        url: &str,
        request_id: &str,
    ) {
        if !worker.meters.tails().active() {
            return;
        }
        let headers: serde_json::Map<String, serde_json::Value> = parts
            .headers
            .iter()
            .map(|(name, value)| {
                let shown = match name.as_str() {
                    "authorization" | "proxy-authorization" | "cookie" => REDACTED.to_owned(),
                    _ => redact(&String::from_utf8_lossy(value.as_bytes()), &worker.secrets),
                };
                (name.as_str().to_owned(), shown.into())
            })
            .collect();
        self.tail = Some(Box::new(serde_json::json!({
            "type": "request",
            "request_id": request_id,
            "worker": &*worker.name,
            "method": parts.method.as_str(),
            "url": redact(url, &worker.secrets),
            "headers": headers,
        })));
        self.secrets = Some(Arc::clone(&worker.secrets));
    }

    /// The handler failed with `exception` (message and JavaScript stack): it goes on the tail
    /// event as `exception`, secret values redacted.
    pub(super) fn exception(&mut self, exception: &str) {
        if let Some(event) = &mut self.tail {
            let secrets = self.secrets.as_deref().unwrap_or_default();
            event["exception"] = redact(exception, secrets).into();
        }
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
            let elapsed = self.arrival.elapsed();
            worker.request(status, outcome, elapsed, self.served);
            if let Some(mut event) = self.tail.take() {
                event["outcome"] = outcome.label().into();
                event["status"] = status.into();
                event["wall_ms"] = (elapsed.as_secs_f64() * 1000.0).into();
                worker.tails().publish(&event);
            }
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
