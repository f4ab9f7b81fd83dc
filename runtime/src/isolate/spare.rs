//! Spare isolates: created from the snapshot ahead of need (`node.spare_isolates`), so a
//! request that needs a new isolate pays only for loading its worker, not for V8 deserialising
//! the snapshot (~3 ms; as Cloudflare starts isolates during the TLS handshake). Each is made on
//! a thread of its own at background priority, or, on executors, as a task on an executor
//! other than the one where a spare was just taken, once that executor is quiet: deserialising
//! blocks the executor's other isolates and connections while it runs. A spare is used by
//! whichever deployment needs an isolate next; it then belongs to it alone.

use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

use super::Blank;
use super::host::Host;
use super::thread::{Order, serve_order};

struct Spares {
    /// Spares waiting for a worker: the `memory_mb` each was made for, the executor it lives
    /// on (if any) and where to send its worker.
    ready: Vec<(u64, Option<usize>, oneshot::Sender<Order>)>,
    starting: usize,
    target: usize,
    memory_mb: u64,
}

static SPARES: Mutex<Spares> = Mutex::new(Spares {
    ready: Vec::new(),
    starting: 0,
    target: 0,
    memory_mb: 128,
});

fn lock() -> MutexGuard<'static, Spares> {
    SPARES.lock().unwrap_or_else(PoisonError::into_inner)
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
    }
    refill();
}

/// A ready spare for a worker of `memory_mb`, if there is one (one on the calling executor
/// first), and the executor it lives on.
pub(super) fn take(memory_mb: u64) -> Option<(oneshot::Sender<Order>, Option<usize>)> {
    let here = crate::executor::current();
    let mut spares = lock();
    spares.ready.retain(|(_, _, spare)| !spare.is_closed());
    let index = spares
        .ready
        .iter()
        .position(|(mb, executor, _)| *mb == memory_mb && *executor == here)
        .or_else(|| spares.ready.iter().position(|(mb, _, _)| *mb == memory_mb))?;
    let (_, executor, spare) = spares.ready.swap_remove(index);
    Some((spare, executor))
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
    let (missing, memory_mb) = {
        let mut spares = lock();
        let have = spares.ready.len() + spares.starting;
        let missing = spares.target.saturating_sub(have);
        spares.starting += missing;
        (missing, spares.memory_mb)
    };
    if let Some(executors) = crate::executor::executors() {
        let avoid = [busy, crate::executor::current()];
        for _ in 0..missing {
            executors.spawn_isolate(executors.least_loaded_avoiding(&avoid), move || {
                Host::new(async move {
                    crate::executor::quiet_moment().await;
                    wait_for_worker(memory_mb).await;
                })
            });
        }
        return;
    }
    for _ in 0..missing {
        let spawned = std::thread::Builder::new()
            .name("isolate-spare".to_owned())
            .spawn(move || run(memory_mb));
        if let Err(error) = spawned {
            tracing::warn!("cannot start a spare isolate thread: {error}");
            lock().starting -= 1;
        }
    }
}

/// A spare thread: makes its isolate, waits for a worker, then serves it like any isolate.
fn run(memory_mb: u64) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::warn!("cannot start a spare isolate's runtime: {error}");
            lock().starting -= 1;
            return;
        }
    };
    // Making spares is background work: it must not slow down requests being served.
    super::limits::set_current_thread_background(true);
    runtime.block_on(wait_for_worker(memory_mb));
}

/// Makes a spare isolate, waits for a worker, then serves it like any isolate.
async fn wait_for_worker(memory_mb: u64) {
    let blank = match Blank::create(memory_mb) {
        Ok(blank) => blank,
        Err(error) => {
            tracing::warn!("cannot create a spare isolate: {error}");
            lock().starting -= 1;
            return;
        }
    };
    let (tx, rx) = oneshot::channel();
    {
        let mut spares = lock();
        spares.starting -= 1;
        if spares.ready.len() >= spares.target || spares.memory_mb != blank.memory_mb() {
            return;
        }
        spares
            .ready
            .push((blank.memory_mb(), crate::executor::current(), tx));
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
