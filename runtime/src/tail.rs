//! Live tails (`GET /workers/NAME/tail` on the admin API): each connected tail gets one
//! event per finished request of the worker (front end and isolate together:
//! [`RequestEvent`]) and one per console line, as JSON. A tail's
//! channel is bounded: when it is full the event is dropped for that tail and counted, and
//! the count rides on its next event (`"dropped"`), so a slow or stuck tail never slows a
//! request. Nothing is built for an event unless a tail of its worker is connected.
//!
//! Under load a worker's tails sample its requests, as Workers' tail does: at most
//! [`SAMPLED_REQUESTS_PER_SECOND`] request events a second are built; the others are not
//! built at all (so a tail costs a busy worker little) and count as dropped on each tail's
//! next event.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

/// Tails one worker may have at once.
pub const MAX_TAILS: usize = 10;

/// Events a tail may have waiting before new ones are dropped for it.
const QUEUE_EVENTS: usize = 256;

/// Placeholder for redacted values.
pub const REDACTED: &str = "[redacted]";

/// Request events a worker's tails get per second at most; past that, requests are sampled.
pub const SAMPLED_REQUESTS_PER_SECOND: u32 = 1_000;

/// The tails of one worker (all of its versions).
#[derive(Debug, Default)]
pub struct TailSet {
    count: AtomicUsize,
    subscribers: Mutex<Vec<Subscriber>>,
    next_id: AtomicU64,
    /// The current one-second sampling window: when it began and the events it took.
    window: Mutex<Option<(Instant, u32)>>,
    /// Request events sampled out since the set was made.
    sampled_out: AtomicU64,
}

#[derive(Debug)]
struct Subscriber {
    id: u64,
    sender: mpsc::Sender<Arc<str>>,
    /// Events dropped since the last one delivered.
    dropped: AtomicU64,
    /// `sampled_out` of the set as of the last event delivered.
    sampled_seen: AtomicU64,
}

/// The worker has [`MAX_TAILS`] tails already.
#[derive(Debug, thiserror::Error)]
#[error("the worker has {MAX_TAILS} tails already")]
pub struct TooManyTails;

static SETS: Mutex<BTreeMap<String, Arc<TailSet>>> = Mutex::new(BTreeMap::new());

/// The tails of worker `worker` (made on first use; kept for the process's life, which
/// bounds them by the number of worker names).
pub fn of(worker: &str) -> Arc<TailSet> {
    let mut sets = SETS.lock().unwrap_or_else(PoisonError::into_inner);
    Arc::clone(sets.entry(worker.to_owned()).or_default())
}

impl TailSet {
    /// Whether any tail listens (one atomic load: the hot path's only cost without tails).
    pub fn active(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }

    /// Whether the event of a request that arrived at `now` is to be built: a tail listens
    /// and the current second has not had [`SAMPLED_REQUESTS_PER_SECOND`] of them yet (else
    /// it counts as dropped for every tail).
    pub fn sample(&self, now: Instant) -> bool {
        if !self.active() {
            return false;
        }
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let (started, taken) = window.get_or_insert((now, 0));
        if now.duration_since(*started) >= Duration::from_secs(1) {
            *started = now;
            *taken = 0;
        }
        if *taken < SAMPLED_REQUESTS_PER_SECOND {
            *taken += 1;
            return true;
        }
        drop(window);
        self.sampled_out.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// A new tail, or [`TooManyTails`].
    pub fn subscribe(self: &Arc<Self>) -> Result<Subscription, TooManyTails> {
        let mut subscribers = self
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if subscribers.len() >= MAX_TAILS {
            return Err(TooManyTails);
        }
        let (sender, receiver) = mpsc::channel(QUEUE_EVENTS);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        subscribers.push(Subscriber {
            id,
            sender,
            dropped: AtomicU64::new(0),
            sampled_seen: AtomicU64::new(self.sampled_out.load(Ordering::Relaxed)),
        });
        self.count.store(subscribers.len(), Ordering::Relaxed);
        Ok(Subscription {
            set: Arc::clone(self),
            id,
            receiver,
        })
    }

    /// Sends `event` to every tail that has room, counting it as dropped for the others.
    pub fn publish(&self, event: &serde_json::Value) {
        let text: Arc<str> = event.to_string().into();
        let subscribers = self
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let sampled_out = self.sampled_out.load(Ordering::Relaxed);
        for subscriber in subscribers.iter() {
            // The first event after a gap says how many were lost in it.
            let full = subscriber.dropped.load(Ordering::Relaxed);
            let sampled =
                sampled_out.saturating_sub(subscriber.sampled_seen.load(Ordering::Relaxed));
            let missed = full + sampled;
            let event = match text.strip_prefix('{') {
                Some(rest) if missed > 0 => format!("{{\"dropped\":{missed},{rest}").into(),
                _ => Arc::clone(&text),
            };
            if subscriber.sender.try_send(event).is_ok() {
                subscriber.dropped.fetch_sub(full, Ordering::Relaxed);
                subscriber
                    .sampled_seen
                    .store(sampled_out, Ordering::Relaxed);
            } else {
                subscriber.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn leave(&self, id: u64) {
        let mut subscribers = self
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        subscribers.retain(|s| s.id != id);
        self.count.store(subscribers.len(), Ordering::Relaxed);
    }
}

/// One connected tail; it leaves its worker's set when dropped.
#[derive(Debug)]
pub struct Subscription {
    set: Arc<TailSet>,
    id: u64,
    receiver: mpsc::Receiver<Arc<str>>,
}

impl Subscription {
    /// The next event as JSON text, with `"dropped": N` when N events were dropped for this
    /// tail just before it; `None` never happens while the set lives.
    pub async fn next(&mut self) -> Option<Arc<str>> {
        self.receiver.recv().await
    }

    /// [`Self::next`] for a thread outside tokio (which may block writing what it gets
    /// without holding up a runtime thread).
    pub fn blocking_next(&mut self) -> Option<Arc<str>> {
        self.receiver.blocking_recv()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.set.leave(self.id);
    }
}

/// `text` with every secret value in `secrets` replaced by [`REDACTED`].
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), REDACTED);
        }
    }
    text
}

/// One request's `"type": "request"` event, built by both sides of the request: the front
/// end (method, URL, headers; then outcome, status, wall time and the handler's exception as
/// the head goes out) and the isolate (CPU time and subrequests once the request's work has
/// ended, exceptions of its timers and `waitUntil` work). It is published when both have let
/// go of it (dropped), so it carries everything, as Workers' tail events do; the front end
/// publishes at once ([`RequestEvent::publish`]) when the isolate may go on for long after
/// it (a timeout, a client that left). An exception after publication goes out as a
/// follow-up `"type": "exception"` event naming the request.
pub struct RequestEvent {
    tails: Arc<TailSet>,
    secrets: Arc<[String]>,
    request_id: Arc<str>,
    /// The event until it is published.
    event: Mutex<Option<serde_json::Value>>,
}

impl RequestEvent {
    /// A request's event, starting as `event`, for `tails`, with `secrets` redacted from what
    /// the isolate adds.
    pub fn new(
        tails: Arc<TailSet>,
        secrets: Arc<[String]>,
        request_id: Arc<str>,
        event: serde_json::Value,
    ) -> Arc<Self> {
        Arc::new(Self {
            tails,
            secrets,
            request_id,
            event: Mutex::new(Some(event)),
        })
    }

    /// Sets `key` of the event to `value` (nothing once it is published).
    pub fn set(&self, key: &str, value: serde_json::Value) {
        let mut event = self.event.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(event) = event.as_mut() {
            event[key] = value;
        }
    }

    /// The worker's secret values, to redact from what is set.
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }

    /// Publishes the event now (once: later calls and the drop do nothing).
    pub fn publish(&self) {
        let event = self
            .event
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(event) = event {
            self.tails.publish(&event);
        }
    }
}

impl isola_bindings::context::RequestTail for RequestEvent {
    fn finished(&self, cpu_ns: u64, subrequests: u32) {
        self.set("cpu_ms", (cpu_ns as f64 / 1e6).into());
        self.set("subrequests", subrequests.into());
    }

    fn exception(&self, text: &str) {
        let text = redact(text, &self.secrets);
        let mut event = self.event.lock().unwrap_or_else(PoisonError::into_inner);
        match event.as_mut() {
            Some(event) => match event["exceptions"].as_array_mut() {
                Some(list) => list.push(text.into()),
                None => event["exceptions"] = serde_json::json!([text]),
            },
            None => {
                drop(event);
                self.tails.publish(&serde_json::json!({
                    "type": "exception",
                    "request_id": &*self.request_id,
                    "exception": text,
                }));
            }
        }
    }
}

impl Drop for RequestEvent {
    fn drop(&mut self) {
        self.publish();
    }
}

/// An isolate's console lines for the tails of its worker, secrets redacted.
pub struct ConsoleToTails {
    /// The worker's tails.
    pub tails: Arc<TailSet>,
    /// The version's secret values.
    pub secrets: Arc<[String]>,
}

impl isola_bindings::console::ConsoleTap for ConsoleToTails {
    fn active(&self) -> bool {
        self.tails.active()
    }

    fn line(&self, request_id: Option<&str>, level: &'static str, message: &str) {
        self.tails.publish(&serde_json::json!({
            "type": "log",
            "request_id": request_id,
            "level": level,
            "message": redact(message, &self.secrets),
        }));
    }

    fn exception(&self, request_id: Option<&str>, text: &str) {
        self.tails.publish(&serde_json::json!({
            "type": "exception",
            "request_id": request_id,
            "exception": redact(text, &self.secrets),
        }));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::unwrap_used, reason = "tests fail loudly")]

    use super::{Instant, MAX_TAILS, QUEUE_EVENTS, SAMPLED_REQUESTS_PER_SECOND, TailSet, redact};

    #[tokio::test]
    async fn past_its_rate_a_busy_worker_is_sampled_and_the_gap_counted() {
        let set = std::sync::Arc::new(TailSet::default());
        assert!(
            !set.sample(Instant::now()),
            "nothing is sampled without a tail"
        );
        let mut tail = set.subscribe().expect("tail");
        let taken = (0..SAMPLED_REQUESTS_PER_SECOND + 7)
            .filter(|_| set.sample(Instant::now()))
            .count();
        assert_eq!(taken, SAMPLED_REQUESTS_PER_SECOND as usize);
        set.publish(&serde_json::json!({ "n": 1 }));
        let event: serde_json::Value =
            serde_json::from_str(&tail.next().await.expect("event")).expect("json");
        assert_eq!(event, serde_json::json!({ "dropped": 7, "n": 1 }));
        set.publish(&serde_json::json!({ "n": 2 }));
        let event: serde_json::Value =
            serde_json::from_str(&tail.next().await.expect("event")).expect("json");
        assert_eq!(event, serde_json::json!({ "n": 2 }), "counted once");
        let mut late = set.subscribe().expect("tail");
        set.publish(&serde_json::json!({ "n": 3 }));
        let event: serde_json::Value =
            serde_json::from_str(&late.next().await.expect("event")).expect("json");
        assert_eq!(
            event,
            serde_json::json!({ "n": 3 }),
            "a new tail owes nothing"
        );
    }

    #[tokio::test]
    async fn a_full_tail_drops_and_counts_and_the_set_is_bounded() {
        let set = std::sync::Arc::new(TailSet::default());
        assert!(!set.active());
        let mut slow = set.subscribe().expect("first");
        assert!(set.active());
        for i in 0..QUEUE_EVENTS + 5 {
            set.publish(&serde_json::json!({ "n": i }));
        }
        for i in 0..QUEUE_EVENTS {
            let event: serde_json::Value =
                serde_json::from_str(&slow.next().await.expect("event")).expect("json");
            assert_eq!(event["n"], i);
        }
        set.publish(&serde_json::json!({ "n": "next" }));
        let event: serde_json::Value =
            serde_json::from_str(&slow.next().await.expect("event")).expect("json");
        assert_eq!(event, serde_json::json!({ "dropped": 5, "n": "next" }));
        let more: Vec<_> = (1..MAX_TAILS)
            .map(|_| set.subscribe().expect("room"))
            .collect();
        assert!(set.subscribe().is_err());
        drop(more);
        drop(slow);
        assert!(!set.active());
    }

    #[test]
    fn secrets_are_redacted() {
        let secrets = ["hunter2".to_owned(), String::new()];
        assert_eq!(
            redact("pw=hunter2&x=hunter2", &secrets),
            "pw=[redacted]&x=[redacted]"
        );
        assert_eq!(redact("nothing", &secrets), "nothing");
    }
}
