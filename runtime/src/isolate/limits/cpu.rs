//! CPU limits. The isolate thread marks when it runs JavaScript (a "slice": one
//! dispatch-and-poll turn, or the module's evaluation) with two atomic stores; a watchdog
//! thread reads the isolate thread's CPU clock (`/proc/self/task/<tid>/schedstat`, so waiting
//! on I/O does not count) and stops JavaScript over its budget: first with an interrupt that
//! records the JavaScript stack and terminates, then (if JavaScript never reached a point
//! where V8 runs interrupts) with a direct termination. The hot path makes no system call.
//!
//! `cpu_ms` counts a request, not a slice: after each turn the isolate thread reads its own
//! CPU clock and charges the turn to the requests it ran for (see
//! `isola_bindings::context::ContextTable::charge_turn`: split between the requests whose
//! response was in progress, else between those with only `waitUntil` work left), so a
//! request's total spans all of its turns, its streamed body and its `waitUntil` work, however
//! other requests interleave with it in the isolate. A request over `cpu_ms` after a turn gets
//! the isolate killed; while a turn runs, the watchdog adds the turn's CPU so far (divided as
//! it will be charged) to the most charged request's total and stops the turn when that
//! passes `cpu_ms`. Work of no request (module-level timers) is limited per turn.
//!
//! Fairness between tenants: on a thread of its own, a slice that has run for
//! [`BACKGROUND_AFTER`] of CPU drops to nice 19 until it ends (an executor thread keeps its
//! priority, as it serves other tenants too; a version with such slices gets its next
//! isolates on threads of their own), so a tenant spinning towards its limit yields the cores to other
//! tenants' short requests instead of competing as an equal, yet still progresses (`SCHED_IDLE`
//! was measured to isolate better but can starve a slice, and the release of its isolate,
//! indefinitely on a busy machine). If the thread may not return to normal priority (no
//! `CAP_SYS_NICE` and a low `RLIMIT_NICE`), the isolate is retired after its requests.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use edge_config::Limits;

use super::{Limit, Shared, stack};

/// How often the watchdog looks at busy isolates.
const WATCHDOG_TICK: Duration = Duration::from_millis(2);

/// CPU time a killed slice gets to reach V8's interrupt (and record its stack) before it is
/// terminated directly.
const INTERRUPT_GRACE: Duration = Duration::from_millis(5);

/// The nice value of background slices.
const BACKGROUND_NICE: i32 = 19;

/// CPU a slice may use at normal priority; longer slices run at the lowest priority.
pub(super) const BACKGROUND_AFTER: Duration = Duration::from_millis(2);

/// One isolate as the watchdog sees it.
pub(super) struct Watched {
    shared: Arc<Shared>,
    schedstat: PathBuf,
    /// The isolate thread's id, for its scheduling priority.
    tid: rustix::process::Pid,
    /// Whether the thread hosts other isolates and connections too (an executor), whose
    /// priority a long slice must not lower.
    shared_thread: bool,
    /// Set by the watchdog when it lowered the running slice's priority.
    backgrounded: AtomicBool,
    /// Set when the thread could not get its normal priority back.
    stuck_in_background: AtomicBool,
    /// Odd while a slice runs; bumped on every enter and leave.
    slice: AtomicU64,
    /// Which limit the running slice counts against.
    limit: AtomicU8,
    /// Watchdog-only: the slice it measures and the thread's CPU time when it first saw it.
    seen_slice: AtomicU64,
    slice_start_ns: AtomicU64,
    /// Watchdog-only: the thread's CPU time when it asked for the kill interrupt.
    kill_cpu_ns: AtomicU64,
    /// CPU already charged to the request the running turn puts closest to `cpu_ms`.
    turn_base_ns: AtomicU64,
    /// Requests the running turn's CPU is split between.
    turn_divisor: AtomicU64,
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

/// Registers the isolate on the current thread with the watchdog.
pub(super) fn watch(shared: &Arc<Shared>, limits: &Limits) -> Arc<Watched> {
    let schedstat = std::fs::read_link("/proc/thread-self")
        .map(|task| PathBuf::from("/proc").join(task).join("schedstat"))
        .unwrap_or_default();
    let watched = Arc::new(Watched {
        shared: shared.clone(),
        schedstat,
        tid: rustix::thread::gettid(),
        shared_thread: crate::executor::current().is_some(),
        backgrounded: AtomicBool::new(false),
        stuck_in_background: AtomicBool::new(false),
        slice: AtomicU64::new(0),
        limit: AtomicU8::new(Limit::Cpu as u8),
        seen_slice: AtomicU64::new(0),
        slice_start_ns: AtomicU64::new(0),
        kill_cpu_ns: AtomicU64::new(0),
        turn_base_ns: AtomicU64::new(0),
        turn_divisor: AtomicU64::new(1),
        budgets_ns: [nanos(limits.cpu()), nanos(limits.startup_cpu())],
    });
    if let Ok(mut all) = WATCHED.lock() {
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&watched));
    }
    watched
}

impl Watched {
    pub(super) fn enter(&self, limit: Limit) {
        self.limit.store(limit as u8, Ordering::Relaxed);
        self.slice.fetch_add(1, Ordering::Release);
    }

    /// How the next turn is charged: `base_ns` already used by its most charged request, the
    /// turn split between `divisor` requests.
    pub(super) fn set_turn_share(&self, base_ns: u64, divisor: u64) {
        self.turn_base_ns.store(base_ns, Ordering::Relaxed);
        self.turn_divisor.store(divisor.max(1), Ordering::Relaxed);
    }

    /// `cpu_ms` in nanoseconds.
    pub(super) fn request_budget_ns(&self) -> u64 {
        self.budgets_ns[Limit::Cpu as usize - 1]
    }

    pub(super) fn leave(&self) {
        self.slice.fetch_add(1, Ordering::Release);
        if self.backgrounded.swap(false, Ordering::AcqRel) && !set_background(self.tid, false) {
            self.stuck_in_background.store(true, Ordering::Release);
        }
    }

    /// Whether the thread is stuck at background priority (the isolate should be retired).
    pub(super) fn stuck_in_background(&self) -> bool {
        self.stuck_in_background.load(Ordering::Acquire)
    }
}

/// Moves thread `tid` to the lowest priority (nice 19: about 1.5 % of a core against a
/// normal thread, so it still makes progress on a busy machine) or back to normal; false if
/// the kernel refused.
pub(super) fn set_background(tid: rustix::process::Pid, background: bool) -> bool {
    let nice = if background { BACKGROUND_NICE } else { 0 };
    rustix::process::setpriority_process(Some(tid), nice).is_ok()
}

/// CPU time the calling thread has run, in nanoseconds (its own clock: one system call).
pub(super) fn current_thread_cpu_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    u64::try_from(now.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(now.tv_nsec).unwrap_or(0))
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
    if slice.is_multiple_of(2) {
        return;
    }
    let Some(now) = thread_cpu_ns(&isolate.schedstat) else {
        return;
    };
    if isolate.shared.killed().is_some() {
        // Killed, and the thread ran on for a while without reaching an interrupt check
        // (a long call into V8 or Rust): stop it without the stack. Measured in CPU time, as
        // a starved thread has simply not run yet.
        if isolate.seen_slice.load(Ordering::Relaxed) == slice
            && now.saturating_sub(isolate.kill_cpu_ns.load(Ordering::Relaxed))
                > nanos(INTERRUPT_GRACE)
        {
            isolate.shared.handle.terminate_execution();
        }
        return;
    }
    if isolate.seen_slice.swap(slice, Ordering::Relaxed) != slice {
        isolate.slice_start_ns.store(now, Ordering::Relaxed);
        return;
    }
    let slice_used = now.saturating_sub(isolate.slice_start_ns.load(Ordering::Relaxed));
    if slice_used > nanos(BACKGROUND_AFTER)
        && !isolate.shared_thread
        && !isolate.backgrounded.swap(true, Ordering::AcqRel)
    {
        if !set_background(isolate.tid, true) {
            isolate.backgrounded.store(false, Ordering::Release);
        } else if isolate.slice.load(Ordering::Acquire) != slice {
            // The slice ended meanwhile: the next one to end restores the priority.
            isolate.backgrounded.store(true, Ordering::Release);
        }
    }
    let limit = Limit::from_code(isolate.limit.load(Ordering::Relaxed)).unwrap_or(Limit::Cpu);
    let budget = isolate.budgets_ns[limit as usize - 1];
    let used = match limit {
        Limit::Cpu => isolate
            .turn_base_ns
            .load(Ordering::Relaxed)
            .saturating_add(slice_used / isolate.turn_divisor.load(Ordering::Relaxed).max(1)),
        _ => slice_used,
    };
    if used > budget
        && isolate
            .shared
            .kill(limit, used as f64 / 1e6, budget as f64 / 1e6)
    {
        isolate.kill_cpu_ns.store(now, Ordering::Relaxed);
        stack::capture_then_terminate(&isolate.shared.handle);
    }
}
