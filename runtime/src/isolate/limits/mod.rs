//! The limit enforcer: every limit that can kill an isolate goes through here (as workerd
//! routes all limits through one interface), so the kill, its reason, its post-mortem log and
//! what the clients of in-flight requests are told stay in one place.
//!
//! - CPU (`cpu_ms`, `startup_cpu_ms`): [`cpu`] — a watchdog thread reads the isolate thread's
//!   CPU clock and interrupts a JavaScript slice over budget.
//! - Memory (`memory_mb`): [`memory`] — V8's heap limit with a near-heap-limit callback, a
//!   counting ArrayBuffer allocator (which also counts the ops' charges for Blob contents,
//!   object URLs and compression state) and a check of heap + external memory after every
//!   turn; [`trim`] returns a killed isolate's memory to the kernel.
//!
//! A killed isolate is never reused: the thread stops taking requests and is replaced.

mod cpu;
mod gc;
mod memory;
mod stack;
mod trim;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deno_core::{JsRuntime, v8};
use edge_config::Limits;
use isola_bindings::context::ContextTable;

pub(crate) use memory::MemoryGuard;
pub(crate) use stack::{Held as HeldStack, swap as swap_stack};
pub(crate) use trim::release_free_memory;
pub use trim::set_allocator_release;

/// Turns shorter than this (wall time) are charged their wall time (see `Enforcer::turn_cpu_ns`).
const SHORT_TURN: Duration = Duration::from_micros(50);
/// How stale the CPU clock mark may get before a turn's start reads the clock again.
const MARK_FRESH_FOR: Duration = Duration::from_millis(1);

/// CPU per request, garbage collection left out, past which a turn counts as long for
/// placement (`WorkerSource::runs_long_turns`). Well above a first compile in a one-request
/// turn (measured up to 2 ms in hello on a busy machine, the mark's [`MARK_FRESH_FOR`] of the
/// thread's other work included): only the worker's own work moves a version off the shared
/// threads. GC pauses are left out because an isolate's first scavenge can take 6 ms (measured
/// in hello under load, `--trace-gc`) and lands in whichever request's turn it happens in.
const LONG_TURN: Duration = Duration::from_millis(5);

/// A limit that can kill an isolate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// CPU time of a request's JavaScript (`cpu_ms`).
    Cpu = 1,
    /// CPU time of the module's top-level evaluation (`startup_cpu_ms`).
    StartupCpu = 2,
    /// Heap + ArrayBuffer memory of the isolate (`memory_mb`).
    Memory = 3,
}

impl Limit {
    /// The config key of the limit, as logs and responses name it.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Self::Cpu => "cpu_ms",
            Self::StartupCpu => "startup_cpu_ms",
            Self::Memory => "memory_mb",
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Cpu),
            2 => Some(Self::StartupCpu),
            3 => Some(Self::Memory),
            _ => None,
        }
    }
}

/// Moves the current thread to background priority (nice 19) or back; false if the kernel
/// refused.
pub(crate) fn set_current_thread_background(background: bool) -> bool {
    cpu::set_background(rustix::thread::gettid(), background)
}

/// A kill as the post-mortem log reports it.
#[derive(Debug, Clone)]
pub(crate) struct Kill {
    /// Which limit.
    pub(crate) limit: Limit,
    /// What was measured (CPU milliseconds or memory megabytes).
    pub(crate) measured: f64,
    /// The limit's value in the same unit.
    pub(crate) budget: f64,
}

/// What the isolate thread, the watchdog and V8's callbacks share about one isolate.
pub(super) struct Shared {
    handle: v8::IsolateHandle,
    /// The limit that killed the isolate (0: none), set once.
    killed: AtomicU8,
    /// The measured value at the kill, as f64 bits.
    measured: AtomicU64,
    budget: AtomicU64,
}

impl Shared {
    /// Records the first kill and stops JavaScript; later kills are ignored.
    fn kill(&self, limit: Limit, measured: f64, budget: f64) -> bool {
        if self
            .killed
            .compare_exchange(0, limit as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        self.measured.store(measured.to_bits(), Ordering::Release);
        self.budget.store(budget.to_bits(), Ordering::Release);
        true
    }

    fn killed(&self) -> Option<Limit> {
        Limit::from_code(self.killed.load(Ordering::Acquire))
    }
}

/// Enforces one isolate's limits; lives on (and is used from) the isolate's thread. Must be
/// dropped before its isolate (it holds the isolate's context for post-mortem stacks).
pub(crate) struct Enforcer {
    turns: Rc<Turns>,
    memory: MemoryGuard,
}

/// The CPU side of the enforcer: the running turn's clock and its charge. Shared with the
/// isolate's OpState (`TurnSplit`), which ends a turn and starts the next one where a
/// WebSocket message is dispatched, so each message is charged on its own.
struct Turns {
    shared: Arc<Shared>,
    cpu: Arc<cpu::Watched>,
    /// The thread's CPU clock at its last reading (at most [`MARK_FRESH_FOR`] before the
    /// running turn began, or when a long turn ended).
    cpu_mark_ns: Cell<u64>,
    /// When `cpu_mark_ns` was read.
    cpu_mark_at: Cell<Instant>,
    /// The monotonic clock when the running turn began.
    turn_start: Cell<Instant>,
    /// This thread's GC clock ([`gc::total_ns`]) when the running turn began.
    gc_mark_ns: Cell<u64>,
    /// Whether a turn has charged a request yet.
    charged_before: Cell<bool>,
    /// The CPU time of its own (GC left out) the last turn used per request it ran for, as
    /// placement counts it (see [`Enforcer::last_turn_was_long`]).
    last_own_share_ns: Cell<u64>,
}

impl Enforcer {
    /// Hooks the limits into the isolate just created on this thread with `memory`'s params.
    pub(crate) fn install(runtime: &mut JsRuntime, limits: &Limits, memory: MemoryGuard) -> Self {
        let shared = Arc::new(Shared {
            handle: runtime.v8_isolate().thread_safe_handle(),
            killed: AtomicU8::new(0),
            measured: AtomicU64::new(0),
            budget: AtomicU64::new(0),
        });
        memory.install(runtime, &shared);
        gc::watch(runtime.v8_isolate());
        stack::remember_context(runtime.main_context());
        let cpu = cpu::watch(&shared, limits);
        Self {
            turns: Rc::new(Turns {
                shared,
                cpu,
                cpu_mark_ns: Cell::new(cpu::current_thread_cpu_ns()),
                cpu_mark_at: Cell::new(Instant::now()),
                turn_start: Cell::new(Instant::now()),
                gc_mark_ns: Cell::new(0),
                charged_before: Cell::new(false),
                last_own_share_ns: Cell::new(0),
            }),
            memory,
        }
    }

    /// Ends the running turn, charging what ran so far, starts the new budget of the request
    /// whose WebSocket got a message, and starts the next turn counted from it (for OpState:
    /// a message's handlers are charged on their own).
    pub(crate) fn turn_split(&self) -> isola_bindings::websocket::TurnSplit {
        let turns = self.turns.clone();
        isola_bindings::websocket::TurnSplit(Rc::new(move |contexts, id| {
            turns.end(contexts);
            contexts.socket_event(id);
            let share = contexts.next_turn_share();
            turns.cpu.set_turn_share(share.base_ns, share.divisor);
            turns.start(Limit::Cpu);
        }))
    }

    /// JavaScript starts running, counted against `limit`. Only turns are charged: what the
    /// thread does between them (moving response streams to the connection) is the runtime's
    /// work, not the worker's.
    pub(crate) fn enter(&self, limit: Limit) -> Instant {
        self.turns.start(limit)
    }

    /// A request was dispatched into the running turn: the watchdog splits the turn between
    /// it too, as the turn's charge will. A turn that takes in a burst of queued requests runs
    /// each one's handler as it is dispatched; counted against the split of the turn before,
    /// forty 1 ms requests in one turn looked like one request over a 20 ms `cpu_ms`, and the
    /// watchdog killed the isolate with all of them.
    pub(crate) fn request_opened(&self, contexts: &ContextTable) {
        let share = contexts.next_turn_share();
        self.turns.cpu.set_turn_share(share.base_ns, share.divisor);
    }

    /// JavaScript stopped running (the event loop is waiting): charges the turn's CPU time to
    /// the requests in `contexts` (killing the isolate if one is over `cpu_ms`), checks the
    /// memory the turn left behind and returns it (heap + external bytes).
    pub(crate) fn leave(&self, runtime: &mut JsRuntime, contexts: &mut ContextTable) -> usize {
        let wall = self.turns.end(contexts);
        self.memory.check(runtime, &self.turns.shared, wall)
    }

    /// The CPU time (ms) the last turn charged each request it ran for, GC pauses left out, if
    /// that was past [`LONG_TURN`]. Not long: startup turns, a turn that served many short
    /// requests at once, and the isolate's first turn with a request unless it ended in a kill.
    /// That turn compiles the worker's handler, runs whatever the worker initialises lazily
    /// and, in a fresh process, pages in and warms up V8's own code: 5–8 ms of CPU for hello's
    /// first request (its next ones take ~0.3 ms alone, 16 µs under load), which moved every
    /// fresh node's hello off the executors. A worker that is slow on every request is moved
    /// at its second.
    pub(crate) fn last_turn_was_long(&self) -> Option<f64> {
        let share_ns = self.turns.last_own_share_ns.get();
        (share_ns > nanos(LONG_TURN)).then(|| share_ns as f64 / 1e6)
    }

    /// Whether the isolate's thread is stuck at background priority after a long slice; such
    /// an isolate is retired once its requests are done.
    pub(crate) fn stuck_in_background(&self) -> bool {
        self.turns.cpu.stuck_in_background()
    }

    /// The limit that terminated the isolate, if one did.
    pub(crate) fn killed(&self) -> Option<Limit> {
        self.turns.shared.killed()
    }

    /// The kill with its measurement and the JavaScript stack captured at that moment.
    pub(crate) fn kill_report(&self) -> Option<(Kill, Option<String>)> {
        let shared = &self.turns.shared;
        let limit = shared.killed()?;
        let kill = Kill {
            limit,
            measured: f64::from_bits(shared.measured.load(Ordering::Acquire)),
            budget: f64::from_bits(shared.budget.load(Ordering::Acquire)),
        };
        Some((kill, stack::take()))
    }
}

impl Turns {
    fn start(&self, limit: Limit) -> Instant {
        let now = Instant::now();
        self.turn_start.set(now);
        self.gc_mark_ns.set(gc::total_ns());
        if now.duration_since(self.cpu_mark_at.get()) >= MARK_FRESH_FOR {
            self.mark_cpu(now);
        }
        self.cpu.enter(limit);
        now
    }

    /// Ends the turn: charges its CPU time to its requests; returns its wall time.
    fn end(&self, contexts: &mut ContextTable) -> Duration {
        self.cpu.leave();
        let wall = self.turn_start.get().elapsed();
        let turn_ns = self.turn_cpu_ns(wall);
        let budget_ns = self.cpu.request_budget_ns();
        if let Some(most) = contexts.charge_turn(turn_ns)
            && most.cpu_ns > budget_ns
        {
            self.shared
                .kill(Limit::Cpu, most.cpu_ns as f64 / 1e6, budget_ns as f64 / 1e6);
        }
        let share_ns = contexts.last_share_ns();
        // The isolate's first turn with a request, unless it was killed, is not its own work.
        let first = share_ns > 0 && !self.charged_before.replace(true);
        let counts = !first || self.shared.killed().is_some();
        let gc_ns = gc::total_ns().saturating_sub(self.gc_mark_ns.get());
        self.last_own_share_ns.set(if counts {
            without_gc(share_ns, turn_ns, gc_ns)
        } else {
            0
        });
        let share = contexts.next_turn_share();
        self.cpu.set_turn_share(share.base_ns, share.divisor);
        wall
    }

    /// The CPU time of the turn that just ended, without a system call on most turns (reading
    /// the thread's CPU clock is one, and cost about a microsecond per request when every
    /// turn read it twice). Both measures below are upper bounds of the turn's CPU time, and
    /// the charge is never more than the turn's wall time:
    /// - a turn shorter than [`SHORT_TURN`] of wall time is charged its wall time (a thread
    ///   cannot run longer than the time that passed; exact unless it was preempted);
    /// - a longer one reads the CPU clock and is charged what the thread ran since the mark
    ///   (the turn, plus at most [`MARK_FRESH_FOR`] of work before it), if less than its wall
    ///   time, which a preempted turn overstates.
    fn turn_cpu_ns(&self, wall: Duration) -> u64 {
        let wall = nanos(wall);
        if wall < nanos(SHORT_TURN) {
            return wall;
        }
        let before = self.cpu_mark_ns.get();
        self.mark_cpu(Instant::now());
        self.cpu_mark_ns.get().saturating_sub(before).min(wall)
    }

    /// Reads the thread's CPU clock into the mark.
    fn mark_cpu(&self, now: Instant) {
        self.cpu_mark_ns.set(cpu::current_thread_cpu_ns());
        self.cpu_mark_at.set(now);
    }
}

impl Drop for Enforcer {
    fn drop(&mut self) {
        stack::forget_context();
    }
}

/// A request's `share_ns` of a turn of `turn_ns`, less its part of the `gc_ns` the turn spent
/// in GC pauses.
fn without_gc(share_ns: u64, turn_ns: u64, gc_ns: u64) -> u64 {
    if turn_ns == 0 {
        return share_ns;
    }
    let own_ns = u128::from(turn_ns.saturating_sub(gc_ns));
    u64::try_from(u128::from(share_ns) * own_ns / u128::from(turn_ns)).unwrap_or(share_ns)
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::without_gc;

    #[test]
    fn gc_time_is_taken_out_of_a_share_in_proportion() {
        // One request, a 7 ms turn of which 6 ms were a scavenge: 1 ms of its own.
        assert_eq!(without_gc(7_000_000, 7_000_000, 6_000_000), 1_000_000);
        // Four requests shared an 8 ms turn with 4 ms of GC: 1 ms each of their own.
        assert_eq!(without_gc(2_000_000, 8_000_000, 4_000_000), 1_000_000);
        // The GC clock and the turn's charge are read apart: nothing is left.
        assert_eq!(without_gc(3_000_000, 3_000_000, 5_000_000), 0);
        assert_eq!(without_gc(0, 0, 0), 0);
    }
}
