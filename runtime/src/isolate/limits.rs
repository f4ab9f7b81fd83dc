//! The limit enforcer: every limit that can kill an isolate goes through here (as workerd
//! routes all limits through one interface), so the kill, its reason and what the clients of
//! in-flight requests are told stay in one place.
//!
//! Enforced now: CPU time. The isolate thread marks when it runs JavaScript (a "slice": one
//! dispatch-and-poll turn, or the module's evaluation) with two atomic stores; a watchdog
//! thread reads the isolate thread's CPU clock (`/proc/self/task/<tid>/schedstat`, so waiting
//! on I/O does not count) and terminates execution when a slice exceeds its budget. The hot
//! path makes no system call. The isolate is then discarded, never reused.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use deno_core::{JsRuntime, v8};
use edge_config::Limits;

/// How often the watchdog looks at busy isolates.
const WATCHDOG_TICK: Duration = Duration::from_millis(2);

/// A limit that can kill an isolate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// CPU time of a request's JavaScript (`cpu_ms`).
    Cpu = 1,
    /// CPU time of the module's top-level evaluation (`startup_cpu_ms`).
    StartupCpu = 2,
}

impl Limit {
    /// The config key of the limit, as logs and responses name it.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Self::Cpu => "cpu_ms",
            Self::StartupCpu => "startup_cpu_ms",
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Cpu),
            2 => Some(Self::StartupCpu),
            _ => None,
        }
    }
}

/// What the isolate thread and the watchdog share about one isolate.
struct Watched {
    handle: v8::IsolateHandle,
    schedstat: PathBuf,
    /// Odd while a slice runs; bumped on every enter and leave.
    slice: AtomicU64,
    /// Which limit the running slice counts against.
    limit: AtomicU8,
    /// The limit that killed the isolate (0: none).
    killed: AtomicU8,
    /// Watchdog-only: the slice it measures and the thread's CPU time when it first saw it.
    seen_slice: AtomicU64,
    slice_start_ns: AtomicU64,
    budgets_ns: [u64; 2],
}

static WATCHED: LazyLock<Mutex<Vec<Weak<Watched>>>> = LazyLock::new(|| {
    let spawned = std::thread::Builder::new()
        .name("isolate-watchdog".to_owned())
        .spawn(watchdog);
    if let Err(error) = spawned {
        tracing::error!("cannot start the CPU watchdog; CPU limits are not enforced: {error}");
    }
    Mutex::new(Vec::new())
});

/// Enforces one isolate's limits; lives on (and is used from) the isolate's thread.
pub(crate) struct Enforcer {
    watched: Arc<Watched>,
}

impl Enforcer {
    /// Registers the isolate created on the current thread with the watchdog.
    pub(crate) fn install(runtime: &mut JsRuntime, limits: &Limits) -> Self {
        let schedstat = std::fs::read_link("/proc/thread-self")
            .map(|task| PathBuf::from("/proc").join(task).join("schedstat"))
            .unwrap_or_default();
        let watched = Arc::new(Watched {
            handle: runtime.v8_isolate().thread_safe_handle(),
            schedstat,
            slice: AtomicU64::new(0),
            limit: AtomicU8::new(Limit::Cpu as u8),
            killed: AtomicU8::new(0),
            seen_slice: AtomicU64::new(0),
            slice_start_ns: AtomicU64::new(0),
            budgets_ns: [nanos(limits.cpu()), nanos(limits.startup_cpu())],
        });
        if let Ok(mut all) = WATCHED.lock() {
            all.retain(|w| w.strong_count() > 0);
            all.push(Arc::downgrade(&watched));
        }
        Self { watched }
    }

    /// JavaScript starts running, counted against `limit`.
    pub(crate) fn enter(&self, limit: Limit) {
        self.watched.limit.store(limit as u8, Ordering::Relaxed);
        self.watched.slice.fetch_add(1, Ordering::Release);
    }

    /// JavaScript stopped running (the event loop is waiting).
    pub(crate) fn leave(&self) {
        self.watched.slice.fetch_add(1, Ordering::Release);
    }

    /// The limit that terminated the isolate, if one did.
    pub(crate) fn killed(&self) -> Option<Limit> {
        Limit::from_code(self.watched.killed.load(Ordering::Acquire))
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// CPU time the thread behind `schedstat` has run, in nanoseconds.
fn thread_cpu_ns(schedstat: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(schedstat)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn watchdog() {
    loop {
        std::thread::sleep(WATCHDOG_TICK);
        let watched: Vec<Arc<Watched>> = match WATCHED.lock() {
            Ok(all) => all.iter().filter_map(Weak::upgrade).collect(),
            Err(_) => return,
        };
        for isolate in watched {
            check(&isolate);
        }
    }
}

fn check(isolate: &Watched) {
    let slice = isolate.slice.load(Ordering::Acquire);
    if slice.is_multiple_of(2) || isolate.killed.load(Ordering::Relaxed) != 0 {
        return;
    }
    let Some(now) = thread_cpu_ns(&isolate.schedstat) else {
        return;
    };
    if isolate.seen_slice.swap(slice, Ordering::Relaxed) != slice {
        isolate.slice_start_ns.store(now, Ordering::Relaxed);
        return;
    }
    let used = now.saturating_sub(isolate.slice_start_ns.load(Ordering::Relaxed));
    let limit = Limit::from_code(isolate.limit.load(Ordering::Relaxed)).unwrap_or(Limit::Cpu);
    let budget = isolate.budgets_ns[limit as usize - 1];
    if used > budget {
        isolate.killed.store(limit as u8, Ordering::Release);
        isolate.handle.terminate_execution();
        tracing::warn!(
            limit = limit.key(),
            used_cpu_ms = used as f64 / 1e6,
            budget_cpu_ms = budget as f64 / 1e6,
            "terminating an isolate over its CPU limit"
        );
    }
}
