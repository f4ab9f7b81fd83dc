//! Each request's entry in its worker's metrics: written when its response head goes out, or
//! as canceled when the client leaves first (hyper then drops the handler's future, and with
//! it this record).

use std::sync::Arc;
use std::time::Instant;

use isola_bindings::context::{X_FORWARDED_FOR, X_REAL_IP};

use crate::metrics::{Outcome, Served, WorkerMeters};
use crate::tail::{REDACTED, RequestEvent, redact};
use crate::worker::WorkerSource;

/// One request's metrics record, from its arrival.
pub(super) struct Metered {
    arrival: Instant,
    worker: Option<Arc<WorkerMeters>>,
    /// What answers the request (for GB-seconds and metering).
    served: Served,
    /// The request's live-tail event, only while a tail of its worker listens; shared with
    /// the isolate, which adds the request's CPU time.
    tail: Option<Arc<RequestEvent>>,
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

    /// Starts the request's event for the worker's live tails, if any listen and the request
    /// is sampled (see `tail`): method, URL and headers (`Authorization`, `Cookie` and the worker's secret values redacted).
    pub(super) fn tail(
        &mut self,
        worker: &WorkerSource,
        parts: &http::request::Parts,
        url: &str,
        request_id: &str,
        client_address: Option<&http::HeaderValue>,
    ) {
        if !worker.meters.tails().sample(self.arrival) {
            return;
        }
        let mut headers: serde_json::Map<String, serde_json::Value> = parts
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
        // Deferred to the isolate (see `set_client_ip`): shown as the worker will see them.
        if let Some(address) = client_address {
            let shown = String::from_utf8_lossy(address.as_bytes()).into_owned();
            for name in [X_FORWARDED_FOR, X_REAL_IP] {
                headers.insert(name.as_str().to_owned(), shown.clone().into());
            }
        }
        let event = serde_json::json!({
            "type": "request",
            "request_id": request_id,
            "worker": &*worker.name,
            "method": parts.method.as_str(),
            "url": redact(url, &worker.secrets),
            "headers": headers,
        });
        self.tail = Some(RequestEvent::new(
            worker.meters.tails().clone(),
            Arc::clone(&worker.secrets),
            request_id.into(),
            event,
        ));
    }

    /// The request's tail event for the isolate to complete, if a tail listens.
    pub(super) fn tail_handle(&self) -> Option<isola_bindings::context::TailHandle> {
        self.tail
            .as_ref()
            .map(|event| isola_bindings::context::TailHandle(event.clone()))
    }

    /// The handler failed with `exception` (message and JavaScript stack): it goes on the tail
    /// event as `exception`, secret values redacted.
    pub(super) fn exception(&mut self, exception: &str) {
        if let Some(event) = &self.tail {
            event.set("exception", redact(exception, event.secrets()).into());
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
            if let Some(event) = self.tail.take() {
                event.set("outcome", outcome.label().into());
                event.set("status", status.into());
                event.set("wall_ms", (elapsed.as_secs_f64() * 1000.0).into());
                // The isolate adds the CPU time when the request's work ends (its own end or
                // its isolate's); not worth waiting for when it may run on much longer.
                if matches!(
                    outcome,
                    Outcome::ExceededWall | Outcome::Canceled | Outcome::Refused
                ) {
                    event.publish();
                }
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
