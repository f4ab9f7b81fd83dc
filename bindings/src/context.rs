//! One context per request, as workerd's `IoContext`: what a request is allowed and what it
//! has used, kept from its dispatch until its response is sent and its `waitUntil` work has
//! settled, also while other requests run in the same isolate.
//!
//! The front end makes a [`RequestContext`] (id, wall deadline, body limit, incoming
//! `CDN-Loop` chain) and sends it with the request. In the isolate it becomes an entry of the
//! [`ContextTable`], which the request's JavaScript reaches through V8's async context (the
//! continuation-preserved embedder data): `dispatch` sets it to the request id, promise
//! continuations and timers carry it, so a log line, a `fetch()` or a `waitUntil` finds its
//! request wherever it runs. The table counts the request's subrequests and its CPU time over
//! all of its turns.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use http::HeaderValue;

use crate::http::RequestId;

/// What the front end decided about a request before the isolate sees it.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The request's id (the logs' `request_id`).
    pub id: RequestId,
    /// When the client stops waiting for the response head (`wall_ms` from arrival: queueing
    /// and a cold start included).
    pub deadline: Instant,
    /// Largest request body accepted (`max_body_bytes`).
    pub max_body_bytes: u64,
    /// The incoming `CDN-Loop` value, carried onto the request's subrequests.
    pub loop_chain: Option<HeaderValue>,
}

/// The isolate's table of live request contexts, shared by the isolate, the ops and the
/// outbound guard (which deno_fetch calls without any state).
pub type SharedContexts = Rc<RefCell<ContextTable>>;

/// One request as the isolate tracks it.
#[derive(Debug)]
struct Live {
    loop_chain: Option<HeaderValue>,
    subrequests: u32,
    /// Its response is not complete yet (no response, or a body still being produced).
    responding: bool,
    /// It was responding at some point of the current turn.
    responded_this_turn: bool,
    /// `ctx.waitUntil` promises not settled yet.
    waiting_until: u32,
    /// CPU time charged to it, in nanoseconds.
    cpu_ns: u64,
}

impl Live {
    fn ended(&self) -> bool {
        !self.responding && self.waiting_until == 0
    }
}

/// The live requests of one isolate, and the subrequest count of the work that belongs to
/// none (module-level timers, continuations of finished requests).
#[derive(Debug, Default)]
pub struct ContextTable {
    live: HashMap<RequestId, Live>,
    /// Subrequests made outside any request since the last request began.
    unowned_subrequests: u32,
}

/// The request a turn's CPU charge put closest to its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charged {
    /// Which request.
    pub id: RequestId,
    /// Its CPU time over all of its turns so far, in nanoseconds.
    pub cpu_ns: u64,
}

/// How a running turn's CPU will be charged: the highest total before the turn, and how many
/// requests share the turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TurnShare {
    /// CPU already charged to the most charged request, in nanoseconds.
    pub base_ns: u64,
    /// Requests the turn is split between (at least 1).
    pub divisor: u64,
}

impl ContextTable {
    /// A new, shared, empty table.
    pub fn shared() -> SharedContexts {
        Rc::new(RefCell::new(Self::default()))
    }

    /// A request is dispatched into the isolate: its context goes live.
    pub fn open(&mut self, context: &RequestContext) {
        self.unowned_subrequests = 0;
        self.live.insert(
            context.id,
            Live {
                loop_chain: context.loop_chain.clone(),
                subrequests: 0,
                responding: true,
                responded_this_turn: true,
                waiting_until: 0,
                cpu_ns: 0,
            },
        );
    }

    /// The request's response is complete (sent in full, its stream ended, or failed).
    pub fn responded(&mut self, id: RequestId) {
        if let Some(live) = self.live.get_mut(&id) {
            live.responding = false;
        }
    }

    /// A `ctx.waitUntil` promise of the request was added (`delta > 0`) or settled.
    pub fn wait_until(&mut self, id: RequestId, delta: i32) {
        if let Some(live) = self.live.get_mut(&id) {
            live.waiting_until = if delta > 0 {
                live.waiting_until.saturating_add(1)
            } else {
                live.waiting_until.saturating_sub(1)
            };
        }
    }

    /// Whether no request is live: what runs now is the worker's own work.
    pub fn is_empty(&self) -> bool {
        self.live.values().all(Live::ended)
    }

    /// Ids of the live requests.
    pub fn ids(&self) -> Vec<RequestId> {
        self.live.keys().copied().collect()
    }

    /// Counts one subrequest for `id` (or for work of no request when `id` is not live) and
    /// returns the count so far with the `CDN-Loop` chain to carry.
    pub fn count_subrequest(&mut self, id: Option<RequestId>) -> (u32, Option<HeaderValue>) {
        match id.and_then(|id| self.live.get_mut(&id)) {
            Some(live) => {
                live.subrequests = live.subrequests.saturating_add(1);
                (live.subrequests, live.loop_chain.clone())
            }
            None => {
                self.unowned_subrequests = self.unowned_subrequests.saturating_add(1);
                (self.unowned_subrequests, None)
            }
        }
    }

    /// Charges one turn's CPU time: split evenly between the requests whose response was in
    /// progress during the turn, or, when there were none, between those with only
    /// `waitUntil` work left (so a finished request's background work is not charged for the
    /// turns of the requests after it). Requests that ended are forgotten afterwards. Returns
    /// the most charged request.
    pub fn charge_turn(&mut self, cpu_ns: u64) -> Option<Charged> {
        let foreground = self
            .live
            .values()
            .filter(|live| live.responded_this_turn)
            .count();
        let charged_count = if foreground > 0 {
            foreground
        } else {
            self.live.len()
        };
        let share = cpu_ns / charged_count.max(1) as u64;
        let mut most: Option<Charged> = None;
        for (&id, live) in &mut self.live {
            if foreground == 0 || live.responded_this_turn {
                live.cpu_ns = live.cpu_ns.saturating_add(share);
                if most.is_none_or(|m| live.cpu_ns > m.cpu_ns) {
                    most = Some(Charged {
                        id,
                        cpu_ns: live.cpu_ns,
                    });
                }
            }
            live.responded_this_turn = live.responding;
        }
        self.live.retain(|_, live| !live.ended());
        most
    }

    /// How the next turn will be charged, as the CPU watchdog needs it to stop a turn that
    /// takes a request over its limit while it runs.
    pub fn next_turn_share(&self) -> TurnShare {
        let foreground: Vec<&Live> = self.live.values().filter(|l| l.responding).collect();
        let charged: Vec<&Live> = if foreground.is_empty() {
            self.live.values().collect()
        } else {
            foreground
        };
        TurnShare {
            base_ns: charged.iter().map(|l| l.cpu_ns).max().unwrap_or(0),
            divisor: charged.len().max(1) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn context(id: RequestId) -> RequestContext {
        RequestContext {
            id,
            deadline: Instant::now() + Duration::from_secs(1),
            max_body_bytes: 1,
            loop_chain: None,
        }
    }

    #[test]
    fn a_request_keeps_its_cpu_over_turns_and_other_requests() {
        let mut table = ContextTable::default();
        table.open(&context(1));
        table.charge_turn(10);
        table.open(&context(2));
        table.responded(2);
        // Both were responding during this turn: it is split.
        table.charge_turn(10);
        assert_eq!(table.charge_turn(10), Some(Charged { id: 1, cpu_ns: 25 }));
        assert_eq!(table.ids(), vec![1]);
    }

    #[test]
    fn wait_until_work_is_charged_only_when_no_response_is_in_progress() {
        let mut table = ContextTable::default();
        table.open(&context(1));
        table.wait_until(1, 1);
        table.responded(1);
        table.charge_turn(10);
        table.open(&context(2));
        table.charge_turn(100);
        assert_eq!(
            table.next_turn_share(),
            TurnShare {
                base_ns: 100,
                divisor: 1
            }
        );
        table.responded(2);
        table.charge_turn(0);
        assert_eq!(table.charge_turn(7), Some(Charged { id: 1, cpu_ns: 17 }));
        table.wait_until(1, -1);
        table.charge_turn(0);
        assert!(table.is_empty());
    }

    #[test]
    fn subrequests_count_per_request_and_carry_its_chain() {
        let mut table = ContextTable::default();
        let mut a = context(1);
        a.loop_chain = Some(HeaderValue::from_static("isola; id=00ff"));
        table.open(&a);
        table.open(&context(2));
        assert_eq!(table.count_subrequest(Some(1)).0, 1);
        assert_eq!(table.count_subrequest(Some(2)), (1, None));
        let (count, chain) = table.count_subrequest(Some(1));
        assert_eq!(count, 2);
        assert_eq!(chain, a.loop_chain);
        assert_eq!(table.count_subrequest(Some(9)), (1, None));
        assert_eq!(table.count_subrequest(None), (2, None));
    }
}
