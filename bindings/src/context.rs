//! One context per request, as workerd's `IoContext`: what a request is allowed and what it
//! has used, kept from its dispatch until its response is sent and its `waitUntil` work has
//! settled, also while other requests run in the same isolate.
//!
//! The front end makes a [`RequestContext`] (id, wall deadline, body limit, incoming
//! `CDN-Loop` chain) and sends it with the request. In the isolate it becomes an entry of the
//! [`ContextTable`], which the request's JavaScript reaches through V8's async context (the
//! continuation-preserved embedder data): `dispatch` sets it to the request id, promise
//! continuations and timers carry it, so a log line, a `fetch()` or a `waitUntil` finds its
//! request wherever it runs. The table counts the request's subrequests, console output and
//! CPU time over all of its turns, and hands each finished request's usage to the isolate for
//! metering.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, HeaderValue};
use isola_wire::trace::TraceParent;

/// Identifies one HTTP exchange across the front end, the isolate and the logs.
pub type RequestId = u64;

/// A map keyed by request id. The ids are the node's own sequence numbers, never chosen by a
/// client, so they need no flood-resistant hash: a multiply spreads them over the table's bits.
/// SipHash, std's default, took ~15 ns per lookup, and each request does several in two maps.
pub type IdMap<V> = std::collections::HashMap<RequestId, V, BuildIdHasher>;

/// Builds [`IdHasher`]s for [`IdMap`].
pub type BuildIdHasher = std::hash::BuildHasherDefault<IdHasher>;

/// Fibonacci hashing of a request id (Knuth's multiplicative method).
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(FIBONACCI);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(FIBONACCI);
    }
}

/// 2^64 divided by the golden ratio, odd: multiplying by it spreads consecutive ids apart.
const FIBONACCI: u64 = 0x9E37_79B9_7F4A_7C15;

/// Something the front end attached to an exchange that must live until the worker is done
/// with it (its lease on the isolate): dropped as a body known in full is handed over, when a
/// streamed body's producer has finished (what is left is at most the channel's window) or
/// stalled, or when the WebSocket the response carried closes.
pub type Guard = Box<dyn std::any::Any + Send>;

/// Console output kept per request; more is dropped, with one line saying so.
pub const MAX_CONSOLE_BYTES: usize = 256 * 1024;

/// Ended requests whose ids are remembered, so that what their timers write or throw later
/// still names them.
const REMEMBERED_ENDED: usize = 256;

/// A request's live-tail event, made by the front end only while a tail of its worker
/// listens: the isolate adds what only it knows. It is published once both sides are done
/// with it (the front end's response head, the isolate's end of the request's work).
pub trait RequestTail: Send + Sync {
    /// The request's work in the isolate ended (response complete, `waitUntil` settled):
    /// its CPU time over all of its turns and its subrequests.
    fn finished(&self, cpu_ns: u64, subrequests: u32);
    /// An uncaught exception of the request's own work (a timer, `waitUntil`, an unhandled
    /// rejection): message and stack.
    fn exception(&self, text: &str);
}

/// A shared [`RequestTail`], as a [`RequestContext`] carries it.
#[derive(Clone)]
pub struct TailHandle(pub Arc<dyn RequestTail>);

impl std::fmt::Debug for TailHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TailHandle")
    }
}

/// What the front end decided about a request before the isolate sees it.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The request's number inside the node (keys its exchange and its async context).
    pub id: RequestId,
    /// The request's id as logs and the client see it (`x-request-id`).
    pub request_id: Arc<str>,
    /// The request's trace (W3C `traceparent`), continued by its subrequests.
    pub trace: TraceParent,
    /// Whether `trace` is the client's own well-formed `traceparent`, which the worker then
    /// sees as it came; otherwise the worker's `traceparent` header is `trace`.
    pub trace_from_client: bool,
    /// When the client stops waiting for the response head (`wall_ms` from arrival: queueing
    /// and a cold start included).
    pub deadline: Instant,
    /// Largest request body accepted (`max_body_bytes`).
    pub max_body_bytes: u64,
    /// The incoming `CDN-Loop` value, carried onto the request's subrequests.
    pub loop_chain: Option<HeaderValue>,
    /// The request's live-tail event, while a tail listens.
    pub tail: Option<TailHandle>,
    /// The client's address as `x-forwarded-for` and `x-real-ip`, added (replacing any the
    /// client sent) when the worker first reads its headers; `None` when the front end set
    /// them itself (a trusted proxy's chain, or a response cache in front matching `Vary` on
    /// them). Most handlers never read them, and inserting two headers grew every request's
    /// header map.
    pub client_address: Option<HeaderValue>,
}

/// The request's id as the client, the worker and the logs see it.
pub const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// The client's address chain as the worker sees it.
pub const X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");

/// The client's address as the worker sees it.
pub const X_REAL_IP: http::HeaderName = http::HeaderName::from_static("x-real-ip");

/// The W3C trace context header: the worker sees its request's trace there.
pub const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");

/// The isolate's table of live request contexts, shared by the isolate, the ops and the
/// outbound guard (which deno_fetch calls without any state).
pub type SharedContexts = Rc<RefCell<ContextTable>>;

/// One request as the isolate tracks it.
#[derive(Debug)]
struct Live {
    request_id: Arc<str>,
    trace: TraceParent,
    trace_from_client: bool,
    loop_chain: Option<HeaderValue>,
    /// See [`RequestContext::client_address`].
    client_address: Option<HeaderValue>,
    subrequests: u32,
    /// Console bytes written so far.
    console_bytes: usize,
    /// Its response is not complete yet (no response, or a body still being produced).
    responding: bool,
    /// It was responding at some point of the current turn.
    responded_this_turn: bool,
    /// `ctx.waitUntil` promises not settled yet.
    waiting_until: u32,
    /// CPU time charged to it, in nanoseconds.
    cpu_ns: u64,
    /// `cpu_ns` when its current budget began: at dispatch, or at the latest message of the
    /// WebSocket its response carried (`cpu_ms` is per event there).
    budget_from_ns: u64,
    /// Its live-tail event, told the CPU time when the request ends.
    tail: Option<TailHandle>,
    /// Its headers, until the worker first reads them (`request.headers`): most handlers
    /// read few or none, and making a V8 string of every name and value up front was a
    /// tenth of a small request's instructions.
    headers: Option<HeaderMap>,
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
    live: IdMap<Live>,
    /// Subrequests made outside any request since the last request began.
    unowned_subrequests: u32,
    /// Usage of the requests that ended, until the isolate takes it.
    finished: Vec<Usage>,
    /// The last requests that ended, oldest first, with their ids as logs show them.
    ended: std::collections::VecDeque<(RequestId, Arc<str>)>,
    /// CPU time each request was charged for the last turn (0 when it ran for none).
    last_share_ns: u64,
}

/// What one request used, over its whole life in the isolate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// CPU time, in nanoseconds.
    pub cpu_ns: u64,
    /// Outbound fetches (redirect hops included).
    pub subrequests: u32,
}

/// What a subrequest carries from its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subrequest {
    /// Subrequests of the request so far, this one included.
    pub count: u32,
    /// The request's incoming `CDN-Loop` chain.
    pub loop_chain: Option<HeaderValue>,
    /// The `traceparent` to send: the request's trace, a new span.
    pub trace: Option<TraceParent>,
}

/// Whether a console line may be written for its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleAllowance {
    /// Yes, tagged with the request's id (none for work of no request).
    Write(Option<Arc<str>>),
    /// This line takes the request over [`MAX_CONSOLE_BYTES`]: say so once, then drop it.
    Truncate(Arc<str>),
    /// The request's output was truncated already.
    Drop,
}

/// The request a turn's CPU charge put closest to its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charged {
    /// Which request.
    pub id: RequestId,
    /// Its CPU time over all of its turns so far (since its WebSocket's latest message, for
    /// a request whose response opened one), in nanoseconds.
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
                request_id: context.request_id.clone(),
                trace: context.trace,
                trace_from_client: context.trace_from_client,
                loop_chain: context.loop_chain.clone(),
                client_address: context.client_address.clone(),
                subrequests: 0,
                console_bytes: 0,
                responding: true,
                responded_this_turn: true,
                waiting_until: 0,
                cpu_ns: 0,
                budget_from_ns: 0,
                tail: context.tail.clone(),
                headers: None,
            },
        );
    }

    /// Keeps the headers of request `id` for the worker to take when it reads them.
    pub fn keep_headers(&mut self, id: RequestId, headers: HeaderMap) {
        if let Some(live) = self.live.get_mut(&id) {
            live.headers = Some(headers);
        }
    }

    /// The headers of request `id` as the worker sees them, once: with its `x-request-id`,
    /// (unless the client's was kept) `traceparent` and (unless the front end set them) the
    /// client-address headers, added only now, as most workers never read them. `None` when
    /// the request has ended (its response was sent and its `waitUntil` work settled) or they
    /// were taken already.
    pub fn take_headers(&mut self, id: RequestId) -> Option<HeaderMap> {
        let live = self.live.get_mut(&id)?;
        let mut headers = live.headers.take()?;
        if let Ok(value) = HeaderValue::from_str(&live.request_id) {
            headers.insert(X_REQUEST_ID, value);
        }
        if !live.trace_from_client
            && let Ok(value) = HeaderValue::from_bytes(&live.trace.to_header_bytes())
        {
            headers.insert(TRACEPARENT, value);
        }
        if let Some(address) = live.client_address.take() {
            headers.insert(X_FORWARDED_FOR, address.clone());
            headers.insert(X_REAL_IP, address);
        }
        Some(headers)
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

    /// A message arrived on the WebSocket that request `id`'s response opened: its handler
    /// runs on a `cpu_ms` budget of its own, charged as the request's foreground work (the
    /// enforcer ends the turn before and counts the next one from [`Self::next_turn_share`]).
    pub fn socket_event(&mut self, id: RequestId) {
        if let Some(live) = self.live.get_mut(&id) {
            live.budget_from_ns = live.cpu_ns;
            live.responded_this_turn = true;
        }
    }

    /// Whether no request is live: what runs now is the worker's own work.
    pub fn is_empty(&self) -> bool {
        self.live.values().all(Live::ended)
    }

    /// Ids (as logs show them) of the live requests.
    pub fn request_ids(&self) -> Vec<Arc<str>> {
        self.live
            .values()
            .map(|live| live.request_id.clone())
            .collect()
    }

    /// Counts one subrequest for `id` (or for work of no request when `id` is not live) and
    /// returns what it carries from its request.
    pub fn count_subrequest(&mut self, id: Option<RequestId>) -> Subrequest {
        match id.and_then(|id| self.live.get_mut(&id)) {
            Some(live) => {
                live.subrequests = live.subrequests.saturating_add(1);
                Subrequest {
                    count: live.subrequests,
                    loop_chain: live.loop_chain.clone(),
                    trace: Some(live.trace.child()),
                }
            }
            None => {
                self.unowned_subrequests = self.unowned_subrequests.saturating_add(1);
                Subrequest {
                    count: self.unowned_subrequests,
                    loop_chain: None,
                    trace: None,
                }
            }
        }
    }

    /// Counts a console line of `bytes` for request `id` (0 or an ended request: the worker's
    /// own work, never capped) against [`MAX_CONSOLE_BYTES`].
    pub fn console_line(&mut self, id: RequestId, bytes: usize) -> ConsoleAllowance {
        let Some(live) = self.live.get_mut(&id) else {
            // A timer of a request that ended: named, never capped.
            return ConsoleAllowance::Write(self.ended_request_id(id));
        };
        let before = live.console_bytes;
        live.console_bytes = before.saturating_add(bytes);
        if live.console_bytes <= MAX_CONSOLE_BYTES {
            ConsoleAllowance::Write(Some(live.request_id.clone()))
        } else if before <= MAX_CONSOLE_BYTES {
            ConsoleAllowance::Truncate(live.request_id.clone())
        } else {
            ConsoleAllowance::Drop
        }
    }

    /// The id logs use for request `id`, while it is live.
    pub fn request_id(&self, id: RequestId) -> Option<Arc<str>> {
        self.live.get(&id).map(|live| live.request_id.clone())
    }

    /// The id logs use for request `id` if it ended recently.
    fn ended_request_id(&self, id: RequestId) -> Option<Arc<str>> {
        if id == 0 {
            return None;
        }
        self.ended
            .iter()
            .rev()
            .find(|(ended, _)| *ended == id)
            .map(|(_, request_id)| request_id.clone())
    }

    /// The live-tail event of request `id`, while the request is live and a tail listened
    /// when it arrived.
    pub fn tail_of(&self, id: RequestId) -> Option<TailHandle> {
        self.live.get(&id).and_then(|live| live.tail.clone())
    }

    /// Takes the usage of the requests that ended since the last call.
    pub fn take_finished(&mut self) -> impl Iterator<Item = Usage> + '_ {
        self.finished.drain(..)
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
        self.last_share_ns = if charged_count > 0 { share } else { 0 };
        let mut most: Option<Charged> = None;
        let finished = &mut self.finished;
        let ended = &mut self.ended;
        // One pass: charge, then forget the requests that ended.
        self.live.retain(|&id, live| {
            if foreground == 0 || live.responded_this_turn {
                live.cpu_ns = live.cpu_ns.saturating_add(share);
                let budget_ns = live.cpu_ns - live.budget_from_ns;
                if most.is_none_or(|m| budget_ns > m.cpu_ns) {
                    most = Some(Charged {
                        id,
                        cpu_ns: budget_ns,
                    });
                }
            }
            live.responded_this_turn = live.responding;
            if !live.ended() {
                return true;
            }
            if ended.len() >= REMEMBERED_ENDED {
                ended.pop_front();
            }
            ended.push_back((id, live.request_id.clone()));
            finished.push(Usage {
                cpu_ns: live.cpu_ns,
                subrequests: live.subrequests,
            });
            if let Some(tail) = live.tail.take() {
                tail.0.finished(live.cpu_ns, live.subrequests);
            }
            false
        });
        most
    }

    /// CPU time each request was charged for the last turn: a turn that served 64 short
    /// requests is long, but none of its requests is.
    pub fn last_share_ns(&self) -> u64 {
        self.last_share_ns
    }

    /// How the running turn will be charged (as [`Self::charge_turn`] will split it), for the
    /// CPU watchdog to stop a turn that takes a request over its limit while it runs. A
    /// request that answered earlier in the turn still shares it: counting only those still
    /// responding charged each request dispatched into a busy turn with the CPU of every
    /// request served before it in that turn, and killed short requests under load.
    pub fn next_turn_share(&self) -> TurnShare {
        let any_foreground = self.live.values().any(|l| l.responded_this_turn);
        let (mut base_ns, mut divisor) = (0, 0u64);
        for live in self.live.values() {
            if live.responded_this_turn || !any_foreground {
                base_ns = base_ns.max(live.cpu_ns - live.budget_from_ns);
                divisor += 1;
            }
        }
        TurnShare {
            base_ns,
            divisor: divisor.max(1),
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
            request_id: format!("{id:016x}").into(),
            trace: TraceParent::root(),
            trace_from_client: false,
            deadline: Instant::now() + Duration::from_secs(1),
            max_body_bytes: 1,
            loop_chain: None,
            tail: None,
            client_address: None,
        }
    }

    #[test]
    fn headers_are_taken_once_with_the_request_id_and_trace_until_the_request_ends() {
        let mut table = ContextTable::default();
        let mut kept = context(2);
        kept.trace_from_client = true;
        table.open(&context(1));
        table.open(&kept);
        for id in [1, 2] {
            let mut headers = HeaderMap::new();
            headers.insert(http::header::HOST, HeaderValue::from_static("a.example"));
            headers.insert(X_REQUEST_ID, HeaderValue::from_static("from-the-client"));
            table.keep_headers(id, headers);
        }
        let Some(first) = table.take_headers(1) else {
            panic!("no headers for a live request");
        };
        assert_eq!(first["host"], "a.example");
        assert_eq!(first[X_REQUEST_ID], "0000000000000001");
        let trace = first[TRACEPARENT].as_bytes();
        assert!(TraceParent::parse(trace).is_some(), "{trace:?}");
        assert!(table.take_headers(1).is_none(), "taken once");
        let Some(second) = table.take_headers(2) else {
            panic!("no headers for a live request");
        };
        assert!(
            !second.contains_key(TRACEPARENT),
            "the client's traceparent (none here) is left as it came"
        );
        table.keep_headers(1, HeaderMap::new());
        table.responded(1);
        table.charge_turn(1);
        assert!(table.take_headers(1).is_none(), "the request ended");
    }

    #[test]
    fn a_deferred_client_address_replaces_the_clients_own_when_headers_are_read() {
        let mut table = ContextTable::default();
        let mut deferred = context(1);
        deferred.client_address = Some(HeaderValue::from_static("127.0.0.9"));
        table.open(&deferred);
        table.open(&context(2));
        for id in [1, 2] {
            let mut headers = HeaderMap::new();
            headers.append(X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.7"));
            headers.append(X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.8"));
            headers.insert(X_REAL_IP, HeaderValue::from_static("203.0.113.7"));
            table.keep_headers(id, headers);
        }
        let Some(first) = table.take_headers(1) else {
            panic!("no headers for a live request");
        };
        let chain: Vec<_> = first.get_all(X_FORWARDED_FOR).iter().collect();
        assert_eq!(chain, ["127.0.0.9"], "the client's values are replaced");
        assert_eq!(first[X_REAL_IP], "127.0.0.9");
        let Some(second) = table.take_headers(2) else {
            panic!("no headers for a live request");
        };
        assert_eq!(
            second.get_all(X_FORWARDED_FOR).iter().count(),
            2,
            "set by the front end: left as they are"
        );
    }

    #[test]
    fn consecutive_ids_spread_over_the_hash_bits() {
        use std::hash::BuildHasher as _;
        let build = BuildIdHasher::default();
        // hashbrown picks a bucket from the low bits and a tag from the top 7.
        let low: std::collections::HashSet<u64> =
            (1..=64u64).map(|id| build.hash_one(id) & 63).collect();
        let top: std::collections::HashSet<u64> =
            (1..=64u64).map(|id| build.hash_one(id) >> 57).collect();
        assert_eq!(low.len(), 64, "64 consecutive ids take 64 buckets");
        assert!(top.len() > 32, "tags: {top:?}");
        let mut map = IdMap::default();
        for id in 0..1000u64 {
            map.insert(id * 3, id);
        }
        assert!((0..1000u64).all(|id| map.get(&(id * 3)) == Some(&id)));
        assert_eq!(map.get(&1), None);
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
        assert_eq!(
            table.request_ids(),
            vec![Arc::<str>::from("0000000000000001")]
        );
        assert_eq!(
            table.take_finished().collect::<Vec<_>>(),
            vec![Usage {
                cpu_ns: 5,
                subrequests: 0,
            }]
        );
    }

    #[test]
    fn each_websocket_message_starts_a_new_cpu_budget_for_its_request() {
        let mut table = ContextTable::default();
        table.open(&context(1));
        // The socket holds the request's context open after its 101 response.
        table.wait_until(1, 1);
        table.responded(1);
        assert_eq!(table.charge_turn(40), Some(Charged { id: 1, cpu_ns: 40 }));
        assert_eq!(table.charge_turn(30), Some(Charged { id: 1, cpu_ns: 70 }));
        table.socket_event(1);
        assert_eq!(
            table.next_turn_share().base_ns,
            0,
            "the watchdog counts from 0 again"
        );
        assert_eq!(table.charge_turn(20), Some(Charged { id: 1, cpu_ns: 20 }));
        table.wait_until(1, -1);
        table.charge_turn(0);
        assert_eq!(
            table.take_finished().collect::<Vec<_>>(),
            vec![Usage {
                cpu_ns: 90,
                subrequests: 0,
            }],
            "the request's usage still counts all of it"
        );
    }

    #[test]
    fn requests_answered_earlier_in_a_turn_still_share_it_with_the_watchdog() {
        let mut table = ContextTable::default();
        table.open(&context(1));
        table.responded(1);
        table.open(&context(2));
        table.responded(2);
        table.open(&context(3));
        assert_eq!(
            table.next_turn_share(),
            TurnShare {
                base_ns: 0,
                divisor: 3
            },
            "the turn is split three ways at its end, so the watchdog splits it so"
        );
        table.charge_turn(30);
        assert_eq!(
            table.next_turn_share(),
            TurnShare {
                base_ns: 10,
                divisor: 1
            },
            "the next turn is the one request still responding"
        );
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
        assert_eq!(table.count_subrequest(Some(1)).count, 1);
        let b = table.count_subrequest(Some(2));
        assert_eq!((b.count, b.loop_chain), (1, None));
        let second = table.count_subrequest(Some(1));
        assert_eq!(second.count, 2);
        assert_eq!(second.loop_chain, a.loop_chain);
        assert_eq!(second.trace.map(|t| t.trace_id), Some(a.trace.trace_id));
        assert_ne!(second.trace.map(|t| t.parent_id), Some(a.trace.parent_id));
        let unowned = table.count_subrequest(Some(9));
        assert_eq!((unowned.count, unowned.trace), (1, None));
        assert_eq!(table.count_subrequest(None).count, 2);
    }

    #[test]
    fn console_output_is_capped_per_request() {
        let mut table = ContextTable::default();
        table.open(&context(1));
        let id: Arc<str> = "0000000000000001".into();
        assert_eq!(
            table.console_line(1, MAX_CONSOLE_BYTES),
            ConsoleAllowance::Write(Some(id.clone()))
        );
        assert_eq!(table.console_line(1, 1), ConsoleAllowance::Truncate(id));
        assert_eq!(table.console_line(1, 1), ConsoleAllowance::Drop);
        assert_eq!(table.console_line(2, 1), ConsoleAllowance::Write(None));
    }

    #[test]
    fn a_request_that_ended_is_still_named_for_its_late_lines() {
        let mut table = ContextTable::default();
        table.open(&context(1));
        table.responded(1);
        table.charge_turn(1);
        assert!(table.request_id(1).is_none());
        assert_eq!(
            table.console_line(1, MAX_CONSOLE_BYTES * 2),
            ConsoleAllowance::Write(Some("0000000000000001".into()))
        );
        assert_eq!(table.console_line(0, 1), ConsoleAllowance::Write(None));
    }
}
