//! Executor threads (`[node] executor_threads`): a fixed set of OS threads, each running a
//! current-thread tokio runtime that hosts many isolates and the connections the front end
//! hands it, as workerd runs many isolates per thread. A request whose connection lives on the
//! thread of the isolate that serves it crosses no thread and wakes no other thread; one OS
//! thread per isolate (the default, `executor_threads = 0`) pays a wake-up and two context
//! switches per request instead, and a thread per idle tenant.
//!
//! Isolates never move between threads (V8 binds an isolate to the thread that created it
//! when there is no `v8::Locker`), so an isolate's task is spawned on one executor for life;
//! `isolate::host` enters and exits its isolate around every poll.

use std::cell::Cell;
use std::future::Future;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The node's executor threads, if it has any.
static EXECUTORS: OnceLock<Executors> = OnceLock::new();

thread_local! {
    /// The index of the executor this thread is, if it is one.
    static CURRENT: Cell<Option<usize>> = const { Cell::new(None) };
    /// Connections served on this executor thread.
    static CONNECTIONS: Cell<usize> = const { Cell::new(0) };
}

/// A connection served on an executor thread, counted while it lives (its task never leaves
/// the thread; elsewhere nothing is counted): how busy the executor's rounds are, for work that
/// is worth batching per round when several connections share them.
pub struct ServedConnection {
    counted: bool,
}

impl ServedConnection {
    /// Counts a connection served on this thread, if it is an executor.
    pub fn begin() -> Self {
        let counted = current().is_some();
        if counted {
            CONNECTIONS.set(CONNECTIONS.get() + 1);
        }
        Self { counted }
    }
}

impl Drop for ServedConnection {
    fn drop(&mut self) {
        if self.counted {
            CONNECTIONS.set(CONNECTIONS.get().saturating_sub(1));
        }
    }
}

/// Whether this executor thread serves other connections than the caller's: then the rounds
/// of its event loop usually carry several requests.
pub(crate) fn serves_other_connections() -> bool {
    CONNECTIONS.get() > 1
}

/// The executor threads of the process.
#[derive(Debug)]
pub struct Executors {
    threads: Vec<Executor>,
    /// Round robin for connections.
    next: AtomicUsize,
    /// When the executors started: the clock of `steer_until_ms`.
    started: Instant,
    /// Until when (ms after `started`) new connections prefer executors hosting a ready spare
    /// isolate: cold starts are coming back to back.
    steer_until_ms: AtomicU64,
}

/// One executor thread, as the rest of the node reaches it.
#[derive(Debug)]
struct Executor {
    handle: tokio::runtime::Handle,
    /// Isolates (and spares) hosted there now.
    isolates: AtomicUsize,
    /// Isolates V8 is deserialising there now (each blocks the thread for milliseconds).
    deserialising: AtomicUsize,
    /// Spare isolates ready there now.
    ready_spares: AtomicUsize,
}

/// Why the executors could not start.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// The OS refused a thread or its runtime.
    #[error("cannot start executor thread {index}")]
    Spawn {
        /// Which thread.
        index: usize,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
}

/// Starts `threads` executor threads for the rest of the process (nothing for 0, and nothing
/// the second time).
pub fn start(threads: usize) -> Result<(), ExecutorError> {
    if threads == 0 || EXECUTORS.get().is_some() {
        return Ok(());
    }
    let mut started = Vec::with_capacity(threads);
    for index in 0..threads {
        started.push(Executor {
            handle: spawn_thread(index).map_err(|source| ExecutorError::Spawn { index, source })?,
            isolates: AtomicUsize::new(0),
            deserialising: AtomicUsize::new(0),
            ready_spares: AtomicUsize::new(0),
        });
    }
    let _ = EXECUTORS.set(Executors {
        threads: started,
        next: AtomicUsize::new(0),
        started: Instant::now(),
        steer_until_ms: AtomicU64::new(0),
    });
    Ok(())
}

/// The executors, when the node runs isolates on them.
pub fn executors() -> Option<&'static Executors> {
    EXECUTORS.get()
}

/// The executor the calling thread is, if it is one.
pub fn current() -> Option<usize> {
    CURRENT.get()
}

fn spawn_thread(index: usize) -> std::io::Result<tokio::runtime::Handle> {
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(format!("executor-{index}"))
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = handle_tx.send(Err(error));
                    return;
                }
            };
            CURRENT.set(Some(index));
            let _ = handle_tx.send(Ok(runtime.handle().clone()));
            runtime.block_on(std::future::pending::<()>());
        })?;
    handle_rx
        .recv()
        .map_err(|_| std::io::Error::other("the executor thread exited while starting"))?
}

impl Executors {
    /// Where a new isolate goes: the calling executor (so its connections reach it without
    /// crossing threads), else the one hosting the fewest isolates.
    pub fn place_isolate(&self) -> usize {
        if let Some(index) = current() {
            return index;
        }
        self.least_loaded()
    }

    /// How many executor threads there are.
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    /// Whether there are none (never: [`start`] starts at least one).
    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// The executor hosting the fewest isolates.
    pub fn least_loaded(&self) -> usize {
        self.least_loaded_avoiding(&[])
    }

    /// The executor hosting the fewest isolates among those not in `avoid`, trying fewer of
    /// them (from the back of `avoid`) when that leaves none.
    pub fn least_loaded_avoiding(&self, avoid: &[Option<usize>]) -> usize {
        let loads: Vec<usize> = self
            .threads
            .iter()
            .map(|executor| executor.isolates.load(Ordering::Relaxed))
            .collect();
        least_loaded_of(&loads, avoid)
    }

    /// The executor for a new connection: round robin, passing over executors where V8 is
    /// deserialising an isolate (its first request would wait milliseconds for it) while
    /// another is free; while cold starts come back to back ([`Self::steer_to_spares_for`]),
    /// preferring one that hosts a ready spare (one connection per spare), so the start runs
    /// where its connection is while the next spare is made on another executor.
    pub fn next_for_connection(&self) -> usize {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let free = |e: &Executor| e.deserialising.load(Ordering::Relaxed) == 0;
        if self.elapsed_ms() < self.steer_until_ms.load(Ordering::Relaxed) {
            let with_spare = |e: &Executor| free(e) && e.ready_spares.load(Ordering::Relaxed) > 0;
            if let Some(index) = pick_for_connection(start, &self.threads, with_spare) {
                // One connection per ready spare: the one that will likely start it. Others
                // keep the round robin, so keep-alive connections do not pile up on one thread.
                let _ = self.threads[index].ready_spares.fetch_update(
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                    |ready| ready.checked_sub(1),
                );
                return index;
            }
        }
        pick_for_connection(start, &self.threads, free).unwrap_or(start % self.threads.len().max(1))
    }

    /// Makes new connections prefer executors hosting a ready spare for `how_long`.
    pub fn steer_to_spares_for(&self, how_long: Duration) {
        let until = self
            .elapsed_ms()
            .saturating_add(how_long.as_millis() as u64);
        self.steer_until_ms.store(until, Ordering::Relaxed);
    }

    /// Records how many spare isolates are ready on each executor (index by index): each draws
    /// one new connection while starts hurry.
    pub fn set_ready_spares(&self, counts: impl Iterator<Item = usize>) {
        for (executor, count) in self.threads.iter().zip(counts) {
            executor.ready_spares.store(count, Ordering::Relaxed);
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The runtime of executor `index` (for `Send` tasks such as connections).
    pub fn handle(&self, index: usize) -> &tokio::runtime::Handle {
        &self.threads[index % self.threads.len()].handle
    }

    /// Runs `make` on executor `index` and spawns the isolate task it returns there for life;
    /// the executor counts it as hosted until it ends.
    pub fn spawn_isolate<M, F>(&self, index: usize, make: M)
    where
        M: FnOnce() -> F + Send + 'static,
        F: Future<Output = ()> + 'static,
    {
        let index = index % self.threads.len();
        let executor = &self.threads[index];
        executor.isolates.fetch_add(1, Ordering::Relaxed);
        let hosted = Hosted { index };
        executor.handle.spawn(async move {
            let task = make();
            // An isolate is bound to this thread: its task must never run elsewhere, which a
            // current-thread runtime guarantees.
            deno_core::unsync::spawn(async move {
                task.await;
                drop(hosted);
            });
        });
    }
}

/// The first of `threads` from `start` (round robin) that is `fit`, if any.
fn pick_for_connection<T>(start: usize, threads: &[T], fit: impl Fn(&T) -> bool) -> Option<usize> {
    let n = threads.len().max(1);
    (0..threads.len())
        .map(|k| (start + k) % n)
        .find(|&index| fit(&threads[index]))
}

/// Marks the calling executor (if it is one) as deserialising an isolate until dropped, so
/// new connections go elsewhere meanwhile.
pub(crate) fn deserialising() -> Deserialising {
    let index = current();
    if let (Some(index), Some(executors)) = (index, executors()) {
        executors.threads[index]
            .deserialising
            .fetch_add(1, Ordering::Relaxed);
    }
    Deserialising { index }
}

/// See [`deserialising`].
pub(crate) struct Deserialising {
    index: Option<usize>,
}

impl Drop for Deserialising {
    fn drop(&mut self) {
        if let (Some(index), Some(executors)) = (self.index, executors()) {
            executors.threads[index]
                .deserialising
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The index of the smallest of `loads` not in `avoid`, dropping entries from the back of
/// `avoid` while that leaves none (0 when `loads` is empty).
fn least_loaded_of(loads: &[usize], avoid: &[Option<usize>]) -> usize {
    (0..=avoid.len())
        .rev()
        .find_map(|keep| {
            loads
                .iter()
                .enumerate()
                .filter(|(index, _)| !avoid[..keep].contains(&Some(*index)))
                .min_by_key(|(_, load)| **load)
                .map(|(index, _)| index)
        })
        .unwrap_or(0)
}

/// How long an executor must have been all but idle before work that blocks it for
/// milliseconds (V8 deserialising a spare isolate's snapshot, ~3 ms) starts there.
const QUIET_WINDOW: Duration = Duration::from_millis(5);

/// Such work waits at most this long for a quiet moment, then runs anyway.
const QUIET_WAIT_MAX: Duration = Duration::from_millis(100);

/// Waits, on the calling current-thread runtime, until it was busy for under a tenth of the
/// last [`QUIET_WINDOW`] (its requests served, its connections idle), or [`QUIET_WAIT_MAX`]
/// passed. A spare made at once would hold up the request that just took the last one, and
/// those right behind it.
pub async fn quiet_moment() {
    quiet_moment_within(QUIET_WINDOW, QUIET_WAIT_MAX).await;
}

async fn quiet_moment_within(window: Duration, max_wait: Duration) {
    let metrics = tokio::runtime::Handle::current().metrics();
    let started = Instant::now();
    let mut busy = metrics.worker_total_busy_duration(0);
    loop {
        tokio::time::sleep(window).await;
        let now_busy = metrics.worker_total_busy_duration(0);
        if now_busy.saturating_sub(busy) < window / 10 || started.elapsed() >= max_wait {
            return;
        }
        busy = now_busy;
    }
}

/// Counts an isolate as hosted on its executor while it lives.
struct Hosted {
    index: usize,
}

impl Drop for Hosted {
    fn drop(&mut self) {
        if let Some(executors) = executors() {
            executors.threads[self.index]
                .isolates
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_spares_go_to_the_least_loaded_executor_not_avoided() {
        assert_eq!(least_loaded_of(&[3, 1, 2], &[]), 1);
        assert_eq!(least_loaded_of(&[3, 1, 2], &[Some(1)]), 2);
        assert_eq!(least_loaded_of(&[3, 1, 2], &[Some(1), Some(2)]), 0);
        // Both of two avoided: the first one in `avoid` still is.
        assert_eq!(least_loaded_of(&[0, 5], &[Some(0), Some(1)]), 1);
        assert_eq!(least_loaded_of(&[0, 5], &[Some(1), Some(0)]), 0);
        assert_eq!(least_loaded_of(&[4], &[Some(0), None]), 0);
        assert_eq!(least_loaded_of(&[], &[Some(0)]), 0);
    }

    #[test]
    fn new_connections_go_round_robin_to_the_first_fit_executor() {
        let free = |deserialising: &bool| !*deserialising;
        assert_eq!(pick_for_connection(0, &[false, false], free), Some(0));
        assert_eq!(pick_for_connection(3, &[false, false], free), Some(1));
        assert_eq!(pick_for_connection(0, &[true, false], free), Some(1));
        assert_eq!(pick_for_connection(5, &[false, true, true], free), Some(0));
        assert_eq!(pick_for_connection(1, &[true, true], free), None);
        assert_eq!(pick_for_connection(7, &[] as &[bool], free), None);
    }

    /// Spins for `busy`, then sleeps for `rest`, until `until`.
    async fn busy_until(until: Instant, busy: Duration, rest: Duration) {
        while Instant::now() < until {
            let spun = Instant::now();
            while spun.elapsed() < busy {
                std::hint::spin_loop();
            }
            tokio::time::sleep(rest).await;
        }
    }

    #[test]
    fn a_quiet_moment_waits_for_the_thread_to_go_idle_or_for_its_limit() -> std::io::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let window = Duration::from_millis(5);
            // Busy 3 ms in every 4 for 60 ms: no quiet moment until that stops.
            let busy_for = Duration::from_millis(60);
            let started = Instant::now();
            tokio::spawn(busy_until(
                started + busy_for,
                Duration::from_millis(3),
                Duration::from_millis(1),
            ));
            quiet_moment_within(window, Duration::from_secs(5)).await;
            let waited = started.elapsed();
            assert!(
                waited >= busy_for,
                "quiet after {waited:?}, still busy then"
            );
            assert!(waited < Duration::from_secs(4), "waited {waited:?}");

            // Busy for good: it gives up after its limit.
            let started = Instant::now();
            tokio::spawn(busy_until(
                started + Duration::from_secs(2),
                Duration::from_millis(3),
                Duration::from_millis(1),
            ));
            quiet_moment_within(window, Duration::from_millis(50)).await;
            let waited = started.elapsed();
            assert!(
                waited >= Duration::from_millis(50) && waited < Duration::from_secs(1),
                "gave up after {waited:?}"
            );
        });
        Ok(())
    }
}
