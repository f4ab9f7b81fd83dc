//! A request's hold on a slot of one of its deployment's isolates, as the isolate sees it:
//! something to give back once the response is complete. Who lent it (the pool) is behind
//! [`Lender`], so the exchange and the isolate do not depend on the pool.

use std::sync::{Arc, Weak};

/// Whoever lent a request slot, and takes it back when the lease ends.
pub trait Lender: std::fmt::Debug + Send + Sync {
    /// The lease on `slot` ended: the slot is free again.
    fn give_back(self: Arc<Self>, slot: u64);

    /// The isolate of `slot` holds one more (`open`) or one fewer WebSocket; it is not
    /// evicted or recycled while it holds any.
    fn hold_socket(&self, slot: u64, open: bool);

    /// The isolate of `slot` ended a turn with requests still open (they wait on I/O, timers
    /// or a slow reader): requests queued for it may go to other isolates now.
    fn waits(self: Arc<Self>, slot: u64);
}

/// One request slot on an isolate. It travels with the request into the isolate, which drops
/// it when the response is complete (at once for a body known in full, at the end of a
/// stream); dropping it gives the slot back to its lender.
#[derive(Debug)]
pub struct Lease {
    lender: Arc<dyn Lender>,
    /// [`DISARMED`] once disarmed.
    slot: u64,
}

/// The slot of a lease that gives nothing back (no `Option`, so that `Option<Lease>` in every
/// request stays as small as a lease).
const DISARMED: u64 = u64::MAX;

impl Lease {
    /// A lease on `slot` (the lender's name for the isolate) from `lender`.
    pub(crate) fn new(lender: Arc<dyn Lender>, slot: u64) -> Self {
        Self { lender, slot }
    }

    /// Lets the lease go without giving the slot back: the lender does that itself (under
    /// its lock, say).
    pub(crate) fn disarm(mut self) {
        self.slot = DISARMED;
    }
}

impl Lease {
    /// Turns the request's slot into a hold on its isolate for the WebSocket its response
    /// opened: the slot is free for other requests, the isolate stays while the socket does.
    pub fn into_socket_hold(self) -> SocketHold {
        self.lender.hold_socket(self.slot, true);
        let hold = SocketHold {
            lender: Arc::clone(&self.lender),
            slot: self.slot,
        };
        drop(self);
        hold
    }
}

impl Lease {
    /// A hold on the lease's isolate for a WebSocket the request opened itself (outbound):
    /// the isolate stays while the socket does; the lease goes on as before.
    pub fn socket_hold(&self) -> Option<SocketHold> {
        if self.slot == DISARMED {
            return None;
        }
        self.lender.hold_socket(self.slot, true);
        Some(SocketHold {
            lender: Arc::clone(&self.lender),
            slot: self.slot,
        })
    }
}

impl Lease {
    /// How the lease's isolate can be held later, when no lease is at hand (a WebSocket a
    /// worker opens from `waitUntil` work, after its response went out). Weak: an isolate
    /// that keeps it must not keep its pool alive.
    pub fn holder(&self) -> Option<Holder> {
        (self.slot != DISARMED).then(|| Holder {
            lender: Arc::downgrade(&self.lender),
            slot: self.slot,
        })
    }
}

/// Makes [`SocketHold`]s on one isolate while its pool lives (see [`Lease::holder`]).
#[derive(Debug, Clone)]
pub struct Holder {
    lender: Weak<dyn Lender>,
    slot: u64,
}

impl Holder {
    /// Tells the pool that the isolate's requests wait (see [`Lender::waits`]).
    pub fn tell_waiting(&self) {
        if let Some(lender) = self.lender.upgrade() {
            lender.waits(self.slot);
        }
    }

    /// A hold on the isolate for a WebSocket it opened, if its pool is still there.
    pub fn hold(&self) -> Option<SocketHold> {
        let lender = self.lender.upgrade()?;
        lender.hold_socket(self.slot, true);
        Some(SocketHold {
            lender,
            slot: self.slot,
        })
    }
}

/// An open WebSocket's hold on its isolate; dropping it lets go.
#[derive(Debug)]
pub struct SocketHold {
    lender: Arc<dyn Lender>,
    slot: u64,
}

impl Drop for SocketHold {
    fn drop(&mut self) {
        if self.slot != DISARMED {
            self.lender.hold_socket(self.slot, false);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.slot != DISARMED {
            Arc::clone(&self.lender).give_back(self.slot);
        }
    }
}
