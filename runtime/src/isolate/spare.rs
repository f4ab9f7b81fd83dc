//! Spare isolates: created from the snapshot ahead of need (`node.spare_isolates`), so a
//! request that needs a new isolate pays only for loading its worker, not for V8 deserialising
//! the snapshot (~3 ms; as Cloudflare starts isolates during the TLS handshake). Each is made on
//! a thread of its own at background priority, or, on executors, as a task on an executor
//! other than the one where a spare was just taken, once that executor is quiet: deserialising
//! blocks the executor's other isolates and connections while it runs. A spare is used by
//! whichever deployment needs an isolate next; it then belongs to it alone.
//!
//! When starts come faster than quiet moments (a storm of cold starts), a start that finds no
//! spare ready makes the spares skip their quiet moment for [`HURRY_FOR`] and new connections
//! prefer executors hosting a ready spare (`Executors::next_for_connection`), and a start that
//! finds one being deserialised on an executor claims it instead of deserialising another. So
//! a start runs on its connection's executor while the next spare is made on another one,
//! rather than each start paying for the whole snapshot on its own. Fewer spares than
//! executors are deserialised at once, so one executor is always free for connections.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot};

use super::Blank;
use super::host::Host;
use super::thread::{Order, serve_order};

/// How long after a start found no spare ready new spares are made at once.
const HURRY_FOR: Duration = Duration::from_secs(1);

/// A spare waiting for a worker.
struct Ready {
    /// The `memory_mb` it was made for.
    memory_mb: u64,
    /// The executor it lives on (none: a thread of its own).
    executor: Option<usize>,
    /// Where to send its worker.
    order: oneshot::Sender<Order>,
}

/// Where a spare being made is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a quiet moment on its executor (or for starts to hurry).
    Waiting,
    /// Waiting for its turn: as many spares as may be are being deserialised.
    Queued,
    /// V8 is deserialising it.
    Deserialising,
}

/// A spare being made.
struct Starting {
    id: u64,
    memory_mb: u64,
    /// The executor it is made on (none: a thread of its own, which is never claimed).
    executor: Option<usize>,
    phase: Phase,
    /// Whether a start claimed it (its order waits in [`Spares::claims`]).
    claimed: bool,
    /// Wakes it when starts hurry or (from [`Phase::Queued`]) its turn came.
    wake: Arc<Notify>,
}

struct Spares {
    ready: Vec<Ready>,
    starting: Vec<Starting>,
    /// Orders of starts that claimed a spare being made, by its id.
    claims: Vec<(u64, Order)>,
    target: usize,
    memory_mb: u64,
    next_id: u64,
    /// New spares skip their quiet moment until then (a start found none ready).
    hurry_until: Option<Instant>,
}

static SPARES: Mutex<Spares> = Mutex::new(Spares {
    ready: Vec::new(),
    starting: Vec::new(),
    claims: Vec::new(),
    target: 0,
    memory_mb: 128,
    next_id: 0,
    hurry_until: None,
});

fn lock() -> MutexGuard<'static, Spares> {
    SPARES.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Spares {
    /// Spares ready or being made that nobody claimed.
    fn available(&self) -> usize {
        self.ready.len() + self.starting.iter().filter(|s| !s.claimed).count()
    }

    /// The index of the ready spare for `memory_mb` to take, one on executor `here` first.
    fn ready_for(&self, memory_mb: u64, here: Option<usize>) -> Option<usize> {
        self.ready
            .iter()
            .position(|r| r.memory_mb == memory_mb && r.executor == here)
            .or_else(|| self.ready.iter().position(|r| r.memory_mb == memory_mb))
    }

    /// The index of the spare for `memory_mb` a start should claim: unclaimed, on an
    /// executor, and already being deserialised, the earliest begun (nearest done) first.
    fn claimable(&self, memory_mb: u64) -> Option<usize> {
        self.starting
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.phase == Phase::Deserialising
                    && !s.claimed
                    && s.executor.is_some()
                    && s.memory_mb == memory_mb
            })
            .min_by_key(|(_, s)| s.id)
            .map(|(index, _)| index)
    }

    /// Makes the spares skip their quiet moment from `now` for [`HURRY_FOR`], waking those
    /// not being deserialised yet.
    fn hurry(&mut self, now: Instant) {
        self.hurry_until = Some(now + HURRY_FOR);
        if let Some(executors) = crate::executor::executors() {
            executors.steer_to_spares_for(HURRY_FOR);
        }
        for spare in self
            .starting
            .iter()
            .filter(|s| s.phase != Phase::Deserialising)
        {
            spare.wake.notify_one();
        }
    }

    fn hurrying(&self, now: Instant) -> bool {
        self.hurry_until.is_some_and(|until| now < until)
    }

    /// Spares V8 is deserialising now.
    fn deserialising(&self) -> usize {
        self.starting
            .iter()
            .filter(|s| s.phase == Phase::Deserialising)
            .count()
    }

    /// Moves spare `id` on to [`Phase::Deserialising`] if fewer than `at_once` are, else
    /// queues it for its turn; whether it may begin.
    fn try_begin(&mut self, id: u64, at_once: usize) -> bool {
        let phase = if self.deserialising() < at_once {
            Phase::Deserialising
        } else {
            Phase::Queued
        };
        if let Some(spare) = self.starting.iter_mut().find(|s| s.id == id) {
            spare.phase = phase;
        }
        phase == Phase::Deserialising
    }

    /// Tells the executors how many ready spares each hosts (new connections prefer those
    /// while starts hurry).
    fn publish_ready(&self) {
        if let Some(executors) = crate::executor::executors() {
            executors.set_ready_spares((0..executors.len()).map(|index| {
                self.ready
                    .iter()
                    .filter(|r| r.executor == Some(index))
                    .count()
            }));
        }
    }

    /// Forgets spare `id` as being made (waking the spare queued longest for its turn); its
    /// claim's order, if a start claimed it.
    fn finish(&mut self, id: u64) -> Option<Order> {
        self.starting.retain(|s| s.id != id);
        let queued = self.starting.iter().filter(|s| s.phase == Phase::Queued);
        if let Some(next) = queued.min_by_key(|s| s.id) {
            next.wake.notify_one();
        }
        let index = self.claims.iter().position(|(claimed, _)| *claimed == id)?;
        Some(self.claims.swap_remove(index).1)
    }
}

/// Keeps `target` spares for workers of `memory_mb` ready from now on.
pub(crate) fn configure(target: usize, memory_mb: u64) {
    {
        let mut spares = lock();
        spares.target = target;
        if spares.memory_mb != memory_mb {
            spares.memory_mb = memory_mb;
            spares.ready.clear();
        }
        spares.ready.truncate(target);
        spares.publish_ready();
    }
    refill();
}

/// A ready spare for a worker of `memory_mb`, if there is one (one on the calling executor
/// first), and the executor it lives on. Finding none makes new spares hurry.
pub(super) fn take(memory_mb: u64) -> Option<(oneshot::Sender<Order>, Option<usize>)> {
    let here = crate::executor::current();
    let mut spares = lock();
    spares.ready.retain(|r| !r.order.is_closed());
    let Some(index) = spares.ready_for(memory_mb, here) else {
        spares.hurry(Instant::now());
        return None;
    };
    let spare = spares.ready.swap_remove(index);
    spares.publish_ready();
    Some((spare.order, spare.executor))
}

/// Gives `order` to a spare for `memory_mb` that V8 is deserialising now, which loads the
/// worker as soon as it is made; the executor it lives on. The order back if there is none.
pub(super) fn claim(memory_mb: u64, order: Order) -> Result<Option<usize>, Order> {
    let mut spares = lock();
    let Some(index) = spares.claimable(memory_mb) else {
        return Err(order);
    };
    let spare = &mut spares.starting[index];
    spare.claimed = true;
    let (id, executor) = (spare.id, spare.executor);
    spares.claims.push((id, order));
    Ok(executor)
}

/// Starts spare threads until `target` are ready or starting.
pub(super) fn refill() {
    refill_avoiding(None);
}

/// [`refill`], making the new spares elsewhere than executor `busy` (where a spare was just
/// taken and now loads its worker: V8 deserialising a snapshot there would hold that start up
/// for milliseconds) and, when there is a choice, than the calling executor (whose
/// connections are waiting for responses).
pub(super) fn refill_avoiding(busy: Option<usize>) {
    let executors = crate::executor::executors();
    let avoid = [busy, crate::executor::current()];
    let mut spares = lock();
    let missing = spares.target.saturating_sub(spares.available());
    let memory_mb = spares.memory_mb;
    for _ in 0..missing {
        let id = spares.next_id;
        spares.next_id += 1;
        let wake = Arc::new(Notify::new());
        let executor = executors.map(|executors| executors.least_loaded_avoiding(&avoid));
        spares.starting.push(Starting {
            id,
            memory_mb,
            executor,
            phase: Phase::Waiting,
            claimed: false,
            wake: wake.clone(),
        });
        match (executors, executor) {
            (Some(executors), Some(index)) => {
                executors.spawn_isolate(index, move || {
                    Host::new(make_on_executor(id, memory_mb, wake))
                });
            }
            _ => {
                let spawned = std::thread::Builder::new()
                    .name("isolate-spare".to_owned())
                    .spawn(move || run(id, memory_mb));
                if let Err(error) = spawned {
                    tracing::warn!("cannot start a spare isolate thread: {error}");
                    spares.finish(id);
                }
            }
        }
    }
}

/// A spare on an executor: waits for a quiet moment there (unless hurried) and for fewer
/// spares than executors less one to be deserialising (so one executor is always free to load
/// the spare just taken and to take new connections), then makes its isolate and waits for a
/// worker.
async fn make_on_executor(id: u64, memory_mb: u64, wake: Arc<Notify>) {
    let at_once = crate::executor::executors().map_or(1, |e| e.len().saturating_sub(1).max(1));
    let mut quiet = false;
    loop {
        let hurrying = {
            let mut spares = lock();
            let hurrying = spares.hurrying(Instant::now());
            if (quiet || hurrying) && spares.try_begin(id, at_once) {
                break;
            }
            hurrying
        };
        if quiet || hurrying {
            wake.notified().await;
        } else {
            tokio::select! {
                () = crate::executor::quiet_moment() => quiet = true,
                () = wake.notified() => {}
            }
        }
    }
    wait_for_worker(id, memory_mb).await;
}

/// A spare thread: makes its isolate, waits for a worker, then serves it like any isolate.
fn run(id: u64, memory_mb: u64) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::warn!("cannot start a spare isolate's runtime: {error}");
            lock().finish(id);
            return;
        }
    };
    // Making spares is background work: it must not slow down requests being served.
    super::limits::set_current_thread_background(true);
    runtime.block_on(wait_for_worker(id, memory_mb));
}

/// Makes spare `id`'s isolate, then serves the start that claimed it meanwhile, or waits for
/// a worker and serves it like any isolate.
async fn wait_for_worker(id: u64, memory_mb: u64) {
    let blank = match Blank::create(memory_mb) {
        Ok(blank) => blank,
        Err(error) => {
            tracing::warn!("cannot create a spare isolate: {error}");
            // The start that claimed it still gets an isolate (or the error) from a new one.
            let claim = lock().finish(id);
            if let Some(claim) = claim {
                serve_order(None, claim).await;
            }
            return;
        }
    };
    let (tx, rx) = oneshot::channel();
    let claim = {
        let mut spares = lock();
        let claim = spares.finish(id);
        if claim.is_none() {
            if spares.ready.len() >= spares.target || spares.memory_mb != blank.memory_mb() {
                return;
            }
            spares.ready.push(Ready {
                memory_mb: blank.memory_mb(),
                executor: crate::executor::current(),
                order: tx,
            });
            spares.publish_ready();
        }
        claim
    };
    if let Some(order) = claim {
        serve_order(Some(blank), order).await;
        return;
    }
    if let Ok(order) = rx.await {
        if crate::executor::current().is_none()
            && !super::limits::set_current_thread_background(false)
        {
            tracing::warn!("a spare isolate's thread cannot leave background scheduling");
        }
        serve_order(Some(blank), order).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spares(starting: Vec<Starting>) -> Spares {
        Spares {
            ready: Vec::new(),
            starting,
            claims: Vec::new(),
            target: 2,
            memory_mb: 128,
            next_id: 0,
            hurry_until: None,
        }
    }

    fn starting(id: u64, executor: Option<usize>, phase: Phase) -> Starting {
        Starting {
            id,
            memory_mb: 128,
            executor,
            phase,
            claimed: false,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Whether `spare` was woken (a permit is stored until it waits).
    async fn woken(spare: &Starting) -> bool {
        tokio::time::timeout(Duration::from_millis(200), spare.wake.notified())
            .await
            .is_ok()
    }

    #[test]
    fn a_start_claims_the_earliest_spare_being_deserialised_on_an_executor() {
        use Phase::{Deserialising, Waiting};
        let mut s = spares(vec![
            starting(7, Some(1), Deserialising),
            starting(3, Some(0), Deserialising),
            starting(1, Some(0), Waiting),
            starting(0, None, Deserialising),
        ]);
        // Not 1 (still waiting for a quiet moment), not 0 (a thread of its own): 3, then 7.
        assert_eq!(s.claimable(128), Some(1));
        assert_eq!(s.claimable(256), None, "made for another memory_mb");
        s.starting[1].claimed = true;
        assert_eq!(s.claimable(128), Some(0));
        s.starting[0].claimed = true;
        assert_eq!(s.claimable(128), None);
        // Claimed spares are spoken for: two more must be made to keep two available.
        assert_eq!(s.available(), 2);
        assert_eq!(s.target.saturating_sub(s.available()), 0);
        s.starting[2].claimed = true;
        assert_eq!(s.target.saturating_sub(s.available()), 1);
    }

    #[tokio::test]
    async fn finding_no_spare_ready_hurries_the_waiting_ones_for_a_while() {
        let mut s = spares(vec![
            starting(0, Some(0), Phase::Waiting),
            starting(1, Some(1), Phase::Deserialising),
        ]);
        let now = Instant::now();
        assert!(!s.hurrying(now));
        s.hurry(now);
        assert!(s.hurrying(now + HURRY_FOR / 2));
        assert!(!s.hurrying(now + HURRY_FOR));
        assert!(
            woken(&s.starting[0]).await,
            "the waiting spare was not woken"
        );
        assert!(
            !woken(&s.starting[1]).await,
            "the one being made has nothing to wait for"
        );
        assert_eq!(s.finish(0).map(|_| ()), None, "nobody claimed it");
        assert_eq!(s.starting.len(), 1);
    }

    #[tokio::test]
    async fn spares_take_turns_deserialising_and_the_queued_one_is_woken_when_one_is_made() {
        use Phase::{Deserialising, Queued, Waiting};
        let mut s = spares(vec![
            starting(0, Some(0), Deserialising),
            starting(1, Some(1), Waiting),
            starting(2, Some(1), Waiting),
        ]);
        assert!(
            !s.try_begin(2, 1),
            "one executor stays free of deserialising"
        );
        assert_eq!(s.starting[2].phase, Queued);
        assert_eq!(s.finish(0).map(|_| ()), None);
        // Its turn came; the one still waiting for a quiet moment (an older id) sleeps on.
        assert!(
            woken(&s.starting[1]).await,
            "the queued spare was not woken"
        );
        assert!(!woken(&s.starting[0]).await, "the waiting spare was woken");
        assert!(s.try_begin(2, 1));
        assert_eq!(s.deserialising(), 1);
        assert!(!s.try_begin(1, 1));
        assert!(s.try_begin(1, 2));
    }
}
