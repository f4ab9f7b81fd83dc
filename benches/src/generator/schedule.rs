//! Where the next request comes from: closed loop (right away) or the open-loop schedule,
//! whose dispatcher releases request `i` at `start + i / rate` into a queue that the
//! connections drain.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc};

use super::Shared;
use crate::stats::{ErrorKind, RunResult};

/// One request to send.
pub(crate) struct Ticket {
    /// Latency is counted from here: now in closed loop; in open loop the moment the schedule
    /// released the request (its due time; later only if the generator's own timer was late).
    pub start: Instant,
    /// After warm-up.
    pub measured: bool,
    /// Open loop: holds one of the `max_in_flight` places until the request ends.
    _place: Option<OwnedSemaphorePermit>,
}

/// Where the connections get their requests.
#[derive(Clone)]
pub(crate) enum Source {
    /// Closed loop: the next request as soon as the previous one ended.
    Closed,
    /// Open loop: the dispatcher's queue, shared by all connections in arrival order.
    Open(Arc<Mutex<mpsc::UnboundedReceiver<Ticket>>>),
}

impl Source {
    /// An open-loop source and the sending end for the dispatcher.
    pub fn open() -> (Self, mpsc::UnboundedSender<Ticket>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self::Open(Arc::new(Mutex::new(rx))), tx)
    }

    /// The next request, or `None` when the run is over.
    pub async fn next(&self, shared: &Shared) -> Option<Ticket> {
        match self {
            Source::Closed => {
                let now = Instant::now();
                if shared.deadline.is_some_and(|deadline| now >= deadline) {
                    return None;
                }
                let measured = now >= shared.measure_from;
                if measured && !shared.claim_measured() {
                    return None;
                }
                Some(Ticket {
                    start: now,
                    measured,
                    _place: None,
                })
            }
            Source::Open(queue) => queue.lock().await.recv().await,
        }
    }
}

/// When request `index` is due.
pub(crate) fn due(start: Instant, index: u64, rate: f64) -> Instant {
    start + Duration::from_secs_f64(index as f64 / rate)
}

/// Releases requests on schedule until the deadline (or the request count); returns the
/// requests it dropped and its worst lateness.
pub(crate) async fn dispatch(
    shared: Arc<Shared>,
    rate: f64,
    tx: mpsc::UnboundedSender<Ticket>,
) -> RunResult {
    let mut result = RunResult::new(shared.measure_from);
    let places = Arc::new(Semaphore::new(shared.spec.max_in_flight.max(1)));
    let mut lag_max = Duration::ZERO;
    let mut next: u64 = 0;
    'run: loop {
        let now = Instant::now();
        loop {
            let due = due(shared.start, next, rate);
            if due > now {
                break;
            }
            if shared.deadline.is_some_and(|deadline| due >= deadline) {
                break 'run;
            }
            let measured = due >= shared.measure_from;
            if measured && !shared.claim_measured() {
                break 'run;
            }
            next += 1;
            if measured {
                lag_max = lag_max.max(now - due);
            }
            match places.clone().try_acquire_owned() {
                Ok(place) => {
                    let ticket = Ticket {
                        start: now,
                        measured,
                        _place: Some(place),
                    };
                    if tx.send(ticket).is_err() {
                        break 'run;
                    }
                }
                Err(_) if measured => {
                    result.error(ErrorKind::Dropped);
                    if let Some(live) = &shared.live {
                        live.error();
                    }
                }
                Err(_) => {}
            }
        }
        tokio::time::sleep_until(due(shared.start, next, rate).into()).await;
    }
    result.schedule_lag_max = Some(lag_max);
    result
}
