//! What one connection is doing, shared by its socket wrapper, its requests and its
//! watchdog: requests in flight, when it last went idle, whether a request head is arriving,
//! and the order to close.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use futures::task::AtomicWaker;

/// Now, in milliseconds of the coarse monotonic clock (since boot): times are kept so, in
/// atomics. A connection reads the clock as each request's head arrives and as it finishes;
/// the coarse clock (the kernel's last tick, ~4 ms resolution) costs a load where the precise
/// one reads the TSC, and every limit it measures is hundreds of milliseconds or more.
fn now_ms() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let millis = u64::try_from(now.tv_nsec).unwrap_or(0) / 1_000_000;
    secs.saturating_mul(1000).saturating_add(millis)
}

/// How a connection is told to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Close {
    /// End it: its reads see end-of-file.
    Quietly,
    /// Answer `408 Request Timeout` first (HTTP/1.1 with a partial head).
    RequestTimeout,
    /// Drop it at once: the client stopped reading a response.
    Abort,
}

const OPEN: u8 = 0;
const QUIETLY: u8 = 1;
const REQUEST_TIMEOUT: u8 = 2;

/// The shared state of one connection.
#[derive(Debug)]
pub(crate) struct ConnectionState {
    in_flight: AtomicU32,
    requests: AtomicU64,
    /// When the connection was accepted or last had nothing in flight (see [`now_ms`]).
    idle_since_ms: AtomicU64,
    /// When the first byte of a request head not yet complete arrived, or `u64::MAX`.
    head_since_ms: AtomicU64,
    /// Since when a write to the socket has been waiting for the client to read, or
    /// `u64::MAX`.
    write_blocked_since_ms: AtomicU64,
    close: AtomicU8,
    /// Whether the peer speaks HTTP/2 (no 408 there).
    h2: AtomicBool,
    /// The socket wrapper's reader, woken when the connection is told to close.
    pub(super) reader: AtomicWaker,
}

impl ConnectionState {
    /// A connection accepted now.
    pub(crate) fn new() -> Self {
        Self {
            in_flight: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(now_ms()),
            head_since_ms: AtomicU64::new(u64::MAX),
            write_blocked_since_ms: AtomicU64::new(u64::MAX),
            close: AtomicU8::new(OPEN),
            h2: AtomicBool::new(false),
            reader: AtomicWaker::new(),
        }
    }

    /// A request head arrived and its request begins.
    pub(crate) fn request_started(&self, h2: bool) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.head_since_ms.store(u64::MAX, Ordering::Relaxed);
        if h2 {
            self.h2.store(true, Ordering::Relaxed);
        }
    }

    /// A request's response was sent (or abandoned).
    pub(crate) fn request_finished(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle_since_ms.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// Bytes arrived while nothing was in flight: a request head is on its way.
    pub(super) fn bytes_arrived(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_since_ms.load(Ordering::Relaxed) == u64::MAX
        {
            self.head_since_ms.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// A write to the socket is waiting (its buffer is full) or, with `false`, went through.
    pub(super) fn write_blocked(&self, blocked: bool) {
        let since = &self.write_blocked_since_ms;
        if !blocked {
            since.store(u64::MAX, Ordering::Relaxed);
        } else if since.load(Ordering::Relaxed) == u64::MAX {
            since.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// Whether nothing is in flight.
    pub(crate) fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// When (see [`now_ms`]) the connection has been idle from; for shedding the
    /// longest idle first.
    pub(crate) fn idle_since(&self) -> u64 {
        self.idle_since_ms.load(Ordering::Relaxed)
    }

    /// Tells the connection to close; its reader wakes and sees end-of-file (after writing a
    /// 408 for [`Close::RequestTimeout`]).
    pub(crate) fn close(&self, how: Close) {
        let code = match how {
            Close::Quietly | Close::Abort => QUIETLY,
            Close::RequestTimeout => REQUEST_TIMEOUT,
        };
        let _ = self
            .close
            .compare_exchange(OPEN, code, Ordering::AcqRel, Ordering::Acquire);
        self.reader.wake();
    }

    /// Whether and how the connection was told to close.
    pub(super) fn closing(&self) -> Option<Close> {
        match self.close.load(Ordering::Acquire) {
            QUIETLY => Some(Close::Quietly),
            REQUEST_TIMEOUT => Some(Close::RequestTimeout),
            _ => None,
        }
    }

    /// What the watchdog should do now under `timeouts`: `Err(close)` when a timeout has
    /// passed, else `Ok(when)` to look again after `when`.
    pub(crate) fn check(&self, timeouts: &Timeouts) -> Result<Duration, Close> {
        let now = now_ms();
        if !self.is_idle() {
            let blocked = self.write_blocked_since_ms.load(Ordering::Relaxed);
            if blocked != u64::MAX {
                let blocked_for = Duration::from_millis(now.saturating_sub(blocked));
                return match timeouts.write.checked_sub(blocked_for) {
                    Some(left) if !left.is_zero() => Ok(left),
                    _ => Err(Close::Abort),
                };
            }
            // Look again soon enough that an idle spell or a blocked write that starts now
            // is noticed within a quarter of its limit.
            return Ok(timeouts.header_read.min(timeouts.idle).min(timeouts.write) / 4);
        }
        // HTTP/2 reads frames (pings, window updates) between requests: not heads.
        let head_since = Some(self.head_since_ms.load(Ordering::Relaxed))
            .filter(|&since| since != u64::MAX && !self.h2.load(Ordering::Relaxed));
        let answer = if head_since.is_some() && timeouts.answer_408 {
            Close::RequestTimeout
        } else {
            Close::Quietly
        };
        let (since, limit) = match head_since {
            _ if self.requests.load(Ordering::Relaxed) == 0 => {
                (self.idle_since(), timeouts.header_read)
            }
            Some(since) => (since, timeouts.header_read),
            None => (self.idle_since(), timeouts.idle),
        };
        let elapsed = Duration::from_millis(now.saturating_sub(since));
        match limit.checked_sub(elapsed) {
            Some(left) if !left.is_zero() => Ok(left),
            _ => Err(answer),
        }
    }
}

/// The time limits of a listener's connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// For a request head (and, for the first one, the handshake and protocol detection).
    pub(crate) header_read: Duration,
    /// For a connection with nothing in flight between requests.
    pub(crate) idle: Duration,
    /// For a write to the socket to go through (the client reading).
    pub(crate) write: Duration,
    /// Whether a partial HTTP/1.1 head gets a 408 (cleartext only: under TLS the socket
    /// wrapper sits below the encryption).
    pub(crate) answer_408: bool,
}

impl Timeouts {
    /// The timeouts of a listener's connections under the node's HTTP limits; `tls` when the
    /// listener speaks TLS.
    pub(crate) fn of(http: &edge_config::HttpLimits, tls: bool) -> Self {
        Self {
            header_read: Duration::from_millis(http.header_read_timeout_ms),
            idle: Duration::from_millis(http.connection_idle_timeout_ms),
            write: Duration::from_millis(http.write_timeout_ms),
            answer_408: !tls,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(3600);

    fn timeouts(header_read: Duration, idle: Duration, write: Duration) -> Timeouts {
        Timeouts {
            header_read,
            idle,
            write,
            answer_408: true,
        }
    }

    #[test]
    fn a_silent_connection_times_out_quietly_and_a_partial_head_with_408() {
        let state = ConnectionState::new();
        let expired = timeouts(Duration::ZERO, LONG, LONG);
        assert_eq!(state.check(&expired), Err(Close::Quietly));
        assert!(state.check(&timeouts(LONG, LONG, LONG)).is_ok());
        state.bytes_arrived();
        assert_eq!(state.check(&expired), Err(Close::RequestTimeout));
        let tls = Timeouts {
            answer_408: false,
            ..expired
        };
        assert_eq!(state.check(&tls), Err(Close::Quietly));
    }

    #[test]
    fn requests_in_flight_are_not_idle_but_a_blocked_write_is_aborted() {
        let state = ConnectionState::new();
        state.request_started(false);
        assert!(
            state
                .check(&timeouts(Duration::ZERO, Duration::ZERO, LONG))
                .is_ok()
        );
        state.write_blocked(true);
        assert_eq!(
            state.check(&timeouts(LONG, LONG, Duration::ZERO)),
            Err(Close::Abort)
        );
        state.write_blocked(false);
        assert!(state.check(&timeouts(LONG, LONG, Duration::ZERO)).is_ok());
    }

    #[test]
    fn between_requests_the_idle_timeout_applies_and_http2_frames_are_no_head() {
        let state = ConnectionState::new();
        state.request_started(true);
        state.request_finished();
        assert!(state.is_idle());
        assert!(state.check(&timeouts(Duration::ZERO, LONG, LONG)).is_ok());
        state.bytes_arrived();
        assert!(
            state.check(&timeouts(Duration::ZERO, LONG, LONG)).is_ok(),
            "a ping is not a request head"
        );
        assert_eq!(
            state.check(&timeouts(LONG, Duration::ZERO, LONG)),
            Err(Close::Quietly)
        );
    }
}
