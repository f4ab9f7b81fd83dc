//! The worker's clock: `Date.now()`, `new Date()` and `performance.now()` read a time that
//! Rust sets at the start of each event-loop turn, so it advances only at I/O boundaries and
//! stands still during synchronous execution (as on Workers: no high-resolution timer to
//! measure side channels with).

use deno_core::{OpState, op2};

/// Milliseconds since the Unix epoch at the start of the current event-loop turn.
#[derive(Debug, Clone, Copy, Default)]
pub struct TurnClock(pub f64);

impl TurnClock {
    /// Sets the clock to now (millisecond resolution), in place: `OpState::put` boxes the
    /// value anew and drops the old box, an allocation on every turn.
    pub fn tick(state: &mut OpState) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_millis() as f64);
        match state.try_borrow_mut::<TurnClock>() {
            Some(clock) => clock.0 = now,
            None => state.put(TurnClock(now)),
        }
    }
}

deno_core::extension!(
    isola_clock,
    deps = [deno_web],
    ops = [op_isola_now],
    esm = [dir "../js", "03_clock.js"],
    state = |state| {
        TurnClock::tick(state);
    },
);

/// The time of the current turn.
#[op2(fast)]
fn op_isola_now(state: &OpState) -> f64 {
    state.try_borrow::<TurnClock>().map_or(0.0, |clock| clock.0)
}
