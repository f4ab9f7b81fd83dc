//! The worker's clock: `Date.now()`, `new Date()` and `performance.now()` read a time that
//! Rust sets at the start of each event-loop turn, so it advances only at I/O boundaries and
//! stands still during synchronous execution (as on Workers: no high-resolution timer to
//! measure side channels with).

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use deno_core::{OpState, op2};

/// Milliseconds since the Unix epoch at the start of the current event-loop turn. Cloned,
/// it is the same clock: the isolate keeps one to set it each turn without looking it up in
/// `OpState` (a map search per turn).
#[derive(Debug, Clone, Default)]
pub struct TurnClock(Rc<TurnTime>);

/// The current turn's time, and the reading of the system clock it is counted from.
#[derive(Debug, Default)]
struct TurnTime {
    now_ms: Cell<f64>,
    anchor: Cell<Option<Anchor>>,
}

/// The system clock read at one instant of the monotonic clock.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    at: Instant,
    unix_ns: u64,
}

/// How long the clock counts from one reading of the system clock before reading it again:
/// the turn already read the monotonic clock, so most turns read no second clock, and a step
/// of the system clock (NTP, an operator) shows within this time.
const ANCHOR_FOR: Duration = Duration::from_secs(1);

impl TurnClock {
    /// Sets the clock to now (millisecond resolution).
    pub fn tick(&self) {
        self.tick_at(Instant::now());
    }

    /// Sets the clock to the time of `now`, an instant the caller read as its turn began.
    pub fn tick_at(&self, now: Instant) {
        let time = &self.0;
        let counted = time
            .anchor
            .get()
            .map(|anchor| (anchor, now.saturating_duration_since(anchor.at)))
            .filter(|(_, since)| *since < ANCHOR_FOR);
        let (anchor, since) = counted.unwrap_or_else(|| {
            let anchor = Anchor {
                at: now,
                unix_ns: unix_ns(),
            };
            time.anchor.set(Some(anchor));
            (anchor, Duration::ZERO)
        });
        // `since` is under a second: its nanoseconds fit any integer type.
        let unix_ns = anchor
            .unix_ns
            .saturating_add(u64::from(since.subsec_nanos()));
        time.now_ms.set((unix_ns / 1_000_000) as f64);
    }

    /// The time of the current turn.
    pub fn now_ms(&self) -> f64 {
        self.0.now_ms.get()
    }
}

/// The system clock in nanoseconds since the Unix epoch (until the year 2554).
fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_turn_time_follows_the_turn_instant_and_the_system_clock() {
        let clock = TurnClock::default();
        let start = Instant::now();
        clock.tick_at(start);
        let first = clock.now_ms();
        let system = (unix_ns() / 1_000_000) as f64;
        assert!((system - first).abs() < 1_000.0, "{first} against {system}");
        assert_eq!(first, first.floor(), "whole milliseconds");

        // Counted from the same reading of the system clock: exactly the instants' distance.
        clock.tick_at(start + Duration::from_millis(250));
        assert!((clock.now_ms() - first - 250.0).abs() <= 1.0);
        clock.tick_at(start + Duration::from_millis(250));
        assert!(
            (clock.now_ms() - first - 250.0).abs() <= 1.0,
            "stands still"
        );

        // Past the anchor's span the system clock is read again, at the turn's instant.
        let later = start + ANCHOR_FOR + Duration::from_millis(500);
        clock.tick_at(later);
        let anchored = clock.0.anchor.get().map(|anchor| anchor.at);
        assert_eq!(anchored, Some(later));
    }
}
