//! The worker's clock: `Date.now()`, `new Date()` and `performance.now()` read a time that
//! Rust sets at the start of each event-loop turn, so it advances only at I/O boundaries and
//! stands still during synchronous execution (as on Workers: no high-resolution timer to
//! measure side channels with).

use std::cell::Cell;
use std::rc::Rc;

use deno_core::{OpState, op2};

/// Milliseconds since the Unix epoch at the start of the current event-loop turn. Cloned,
/// it is the same clock: the isolate keeps one to set it each turn without looking it up in
/// `OpState` (a map search per turn).
#[derive(Debug, Clone, Default)]
pub struct TurnClock(Rc<Cell<f64>>);

impl TurnClock {
    /// Sets the clock to now (millisecond resolution).
    pub fn tick(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_millis() as f64);
        self.0.set(now);
    }

    /// The time of the current turn.
    pub fn now_ms(&self) -> f64 {
        self.0.get()
    }
}

deno_core::extension!(
    isola_clock,
    deps = [deno_web],
    ops = [op_isola_now],
    esm = [dir "../js", "03_clock.js"],
    state = |state| {
        let clock = TurnClock::default();
        clock.tick();
        state.put(clock);
    },
);

/// The time of the current turn.
#[op2(fast)]
fn op_isola_now(state: &OpState) -> f64 {
    state
        .try_borrow::<TurnClock>()
        .map_or(0.0, TurnClock::now_ms)
}
