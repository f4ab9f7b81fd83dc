//! Per-request handling in the front end: HTTP limits, routing, the response cache, client
//! address headers, handing the request to the deployment's isolate and turning the outcome
//! into a response.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use edge_config::{HttpLimits, IpCidr};
use http::header::{CONTENT_TYPE, HOST, RETRY_AFTER};
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use isola_bindings::body::BodyReceiver;
use isola_bindings::context::{RequestContext, X_REQUEST_ID};
use isola_bindings::http::{HandlerError, HandlerResult, JsResponse, RequestId, ResponseBody};
use isola_bindings::outbound::guard::{MAX_HOPS, hops};
use isola_wire::authority::{Target, TargetError, request_target_for};
use isola_wire::request_id;
use isola_wire::trace::TraceParent;
use tokio::sync::oneshot;

use super::client_ip::set_client_ip;
use super::head::Head;
use super::metered::Metered;
use super::request_body::{BodyFault, pump_request_body};
use super::websocket::{self, Upgrade};
use crate::body::Body;
use crate::cache::{Forwarding, Lookup, ResponseCache, Revalidation};
use crate::exchange::IncomingRequest;
use crate::metrics::Outcome;
use crate::pool::{AcquireError, Dispatched, Pool};
use crate::router::Router;
use crate::worker::WorkerSource;

/// What every connection of a listener shares.
#[derive(Debug)]
pub struct Shared {
    /// The routing table, swapped whole when deployments change.
    pub router: Arc<arc_swap::ArcSwap<Router>>,
    /// Node-wide HTTP limits.
    pub http: HttpLimits,
    /// Peers whose `x-forwarded-for` is believed.
    pub trusted_proxies: Vec<IpCidr>,
    /// The response cache, unless turned off.
    pub cache: Option<ResponseCache>,
    /// The node's budget of data-plane connections (under its file-descriptor limit).
    pub connections: Arc<super::ConnectionBudget>,
    /// The WebSockets workers accepted, closed (1001) at shutdown.
    pub sockets: super::websocket::Sockets,
}

/// Request numbers: a counter from 1, so the number V8 is given for each request (its
/// exchange and async context) stays a small integer; a number past 2^30 became a heap
/// object per request (~500 instructions).
static NEXT_REQUEST_NUMBER: AtomicU64 = AtomicU64::new(1);

/// Added to a request's number for its id: a per-process random start, so ids stay unique
/// across restarts in logs.
static REQUEST_ID_BASE: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    seed ^ u64::from(std::process::id()).rotate_left(32)
});

fn next_request_number() -> RequestId {
    NEXT_REQUEST_NUMBER.fetch_add(1, Ordering::Relaxed)
}

/// Who a request is: its number in the node, its id (a client's acceptable `x-request-id`,
/// else a per-process random start plus the number, in hex) and its trace (a well-formed
/// incoming `traceparent`, else a new one). A bad value is replaced, never echoed.
struct Identity {
    number: RequestId,
    id: Arc<str>,
    /// `id` as a header value, for the response (the isolate adds it to the worker's request
    /// when the worker reads its headers).
    id_header: HeaderValue,
    trace: TraceParent,
    /// Whether the incoming `traceparent` is kept as it came.
    trace_kept: bool,
}

impl Identity {
    fn of(head: &Head) -> Self {
        let number = next_request_number();
        let (id, id_header) = match head
            .request_id
            .as_ref()
            .filter(|value| request_id::is_acceptable(value.as_bytes()))
            .and_then(|value| Some((Arc::from(value.to_str().ok()?), value.clone())))
        {
            Some(kept) => kept,
            None => {
                let digits = isola_wire::hex::u64_digits(REQUEST_ID_BASE.wrapping_add(number));
                let id = std::str::from_utf8(&digits).unwrap_or("-");
                // Owned by its `Bytes`: one allocation, and a clone is a reference count.
                let header = HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(digits))
                    .unwrap_or(HeaderValue::from_static("-"));
                (Arc::from(id), header)
            }
        };
        let incoming = head
            .traceparent
            .as_ref()
            .and_then(|value| TraceParent::parse(value.as_bytes()));
        Self {
            number,
            id,
            id_header,
            trace: incoming.unwrap_or_else(TraceParent::root),
            trace_kept: incoming.is_some(),
        }
    }
}

/// Handles one request on a connection from `peer`; never fails at the HTTP level. Every
/// response carries the request's `x-request-id`.
pub async fn handle(
    shared: Arc<Shared>,
    scheme: &'static str,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let mut metered = Metered::new();
    let head = Head::scan(request.headers());
    let identity = Identity::of(&head);
    // Boxed: awaited in place, the answer's future (3.7 KB) was held twice in this one
    // (8.1 KB), which hyper's service box then copied in full on every request.
    let answer = Box::pin(respond(
        &shared,
        scheme,
        peer,
        &identity,
        &mut metered,
        &head,
        request,
    ));
    let mut response = match answer.await {
        Ok(response) => {
            metered.finish(response.status().as_u16(), Outcome::Ok);
            response
        }
        Err(refusal) => {
            let outcome = refusal.outcome();
            if let Refusal::HandlerFailed(exception) = &refusal {
                metered.exception(exception);
            }
            let response = refusal.into_response(&identity.id);
            metered.finish(response.status().as_u16(), outcome);
            response
        }
    };
    response
        .headers_mut()
        .insert(X_REQUEST_ID, identity.id_header.clone());
    Ok(response)
}

/// A request the front end answers itself.
#[derive(Debug)]
enum Refusal {
    UriTooLong(usize),
    BadTarget(TargetError),
    HeadersTooLarge(usize),
    NoRoute(String),
    Loop(String),
    BodyTooLarge(u64),
    MalformedBody,
    Unavailable(String),
    Overloaded(AcquireError),
    /// The handler failed after its isolate refused it a WebSocket past
    /// `websocket_max_per_isolate`: a capacity problem, answered 503 + `Retry-After`.
    SocketsFull,
    LimitExceeded(&'static str),
    /// The handler threw, rejected or returned no usable response: the exception text (message
    /// and JavaScript stack), for the live tail only, never the client.
    HandlerFailed(String),
    Timeout,
    NotCached,
    /// The worker answered a request that is not a WebSocket handshake with a WebSocket.
    NotUpgrade,
}

impl Refusal {
    /// The status of a failure of the worker itself (not of the request), for
    /// `stale-if-error`.
    fn worker_failure(&self) -> Option<StatusCode> {
        match self {
            Self::Unavailable(_)
            | Self::Overloaded(_)
            | Self::SocketsFull
            | Self::LimitExceeded(_) => Some(StatusCode::SERVICE_UNAVAILABLE),
            Self::HandlerFailed(_) => Some(StatusCode::INTERNAL_SERVER_ERROR),
            Self::Timeout => Some(StatusCode::GATEWAY_TIMEOUT),
            _ => None,
        }
    }

    /// How the request ended, for the metrics.
    fn outcome(&self) -> Outcome {
        match self {
            Self::LimitExceeded("cpu_ms") => Outcome::ExceededCpu,
            Self::LimitExceeded("memory_mb") => Outcome::ExceededMemory,
            Self::LimitExceeded(_) | Self::HandlerFailed(_) | Self::NotUpgrade => {
                Outcome::Exception
            }
            Self::Timeout => Outcome::ExceededWall,
            _ => Outcome::Refused,
        }
    }

    fn into_response(self, id: &str) -> Response<Body> {
        let (status, text) = match &self {
            Self::UriTooLong(limit) => (
                StatusCode::URI_TOO_LONG,
                format!("URI longer than {limit} bytes"),
            ),
            Self::BadTarget(error) => (StatusCode::BAD_REQUEST, error.to_string()),
            Self::HeadersTooLarge(limit) => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!("request headers larger than {limit} bytes"),
            ),
            Self::NoRoute(target) => (
                StatusCode::NOT_FOUND,
                format!("no worker is routed for {target}"),
            ),
            Self::Loop(worker) => (
                StatusCode::LOOP_DETECTED,
                format!("the request looped back to worker {worker} through its own fetch"),
            ),
            Self::BodyTooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body larger than {limit} bytes"),
            ),
            Self::MalformedBody => (StatusCode::BAD_REQUEST, "malformed request body".to_owned()),
            Self::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "worker unavailable".to_owned(),
            ),
            Self::Overloaded(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the worker is at capacity; retry later".to_owned(),
            ),
            Self::SocketsFull => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the worker has as many WebSockets open as it may (websocket_max_per_isolate); \
                 retry later"
                    .to_owned(),
            ),
            Self::LimitExceeded(limit) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the worker exceeded its {limit} limit"),
            ),
            Self::HandlerFailed(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error".to_owned(),
            ),
            Self::Timeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "the worker did not respond within its wall-clock limit".to_owned(),
            ),
            Self::NotCached => (
                StatusCode::GATEWAY_TIMEOUT,
                "only-if-cached: no usable response is cached".to_owned(),
            ),
            Self::NotUpgrade => (
                StatusCode::UPGRADE_REQUIRED,
                "the worker answered with a WebSocket, but this request is not a WebSocket \
                 handshake (an HTTP/1.1 GET with Upgrade: websocket, or an HTTP/2 extended \
                 CONNECT)"
                    .to_owned(),
            ),
        };
        match &self {
            Self::Unavailable(reason) => {
                tracing::warn!(request_id = id, "worker unavailable: {reason}")
            }
            Self::Overloaded(reason) => {
                tracing::warn!(request_id = id, "request refused: {reason}")
            }
            _ => {}
        }
        let mut response = Response::new(Body::text(format!("{text} (request id {id})\n")));
        *response.status_mut() = status;
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain;charset=UTF-8"),
        );
        if matches!(
            self,
            Self::Unavailable(_) | Self::Overloaded(_) | Self::SocketsFull
        ) {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// Answers one request: the front end's checks, the response cache, then the worker.
async fn respond(
    shared: &Shared,
    scheme: &'static str,
    peer: SocketAddr,
    identity: &Identity,
    metered: &mut Metered,
    head: &Head,
    mut request: Request<Incoming>,
) -> Result<Response<Body>, Refusal> {
    let upgrade = websocket::take_upgrade(&mut request, head.websocket_key.as_ref());
    let (mut parts, incoming) = request.into_parts();
    let Admitted {
        deployment,
        worker,
        target,
        url,
        client_address,
        loop_chain,
    } = admit(shared, scheme, peer, head, &mut parts)?;
    metered.routed(&worker);
    metered.tail(&worker, &parts, &url, &identity.id, client_address.as_ref());
    let lookup = if upgrade.is_some() {
        // A handshake is never answered from the cache.
        Lookup::Forward(Forwarding::around())
    } else {
        look_up(shared, &worker, &url, &parts).await
    };
    let mut forwarding = match lookup {
        Lookup::Hit(response, revalidation) => {
            metered.cache_hit();
            if let Some(revalidation) = revalidation {
                tokio::spawn(revalidate_in_background(
                    deployment,
                    revalidation,
                    url,
                    parts.headers,
                    Duration::from_millis(shared.http.write_timeout_ms),
                ));
            }
            return Ok(response);
        }
        Lookup::Unsatisfiable => return Err(Refusal::NotCached),
        Lookup::Forward(forwarding) => forwarding,
    };
    forwarding.add_validators(&mut parts.headers);
    metered.forwarded(&worker);
    let mut context = request_context(identity, metered.arrival(), &worker, loop_chain);
    context.tail = metered.tail_handle();
    context.client_address = client_address;
    let (body, body_fault) = if upgrade.is_some() {
        (None, BodyFault::default())
    } else {
        start_body(incoming, context.max_body_bytes)
    };
    let (responder, outcome) = oneshot::channel();
    let request = Box::new(IncomingRequest {
        context,
        method: parts.method,
        url,
        headers: parts.headers,
        body,
        responder,
        lease: None,
        write_timeout: Duration::from_millis(shared.http.write_timeout_ms),
    });
    let result = forward(&deployment, &worker, request, outcome, &body_fault).await;
    match result {
        Ok(js) if matches!(js.body, ResponseBody::WebSocket(_)) => {
            socket_response(shared, &worker, upgrade, js)
        }
        Ok(js) => Ok(forwarding.finish(&worker, || request_url(scheme, &target), js)),
        Err(refusal) => forwarding.fail(refusal.worker_failure()).ok_or(refusal),
    }
}

/// The handshake's answer for a worker's 101 with a WebSocket; a clear error when the request
/// was no handshake (dropping the socket's ends closes the worker's side).
fn socket_response(
    shared: &Shared,
    worker: &WorkerSource,
    upgrade: Option<Upgrade>,
    js: JsResponse,
) -> Result<Response<Body>, Refusal> {
    match (upgrade, js.body) {
        (Some(upgrade), ResponseBody::WebSocket(peer)) => Ok(websocket::accept(
            upgrade,
            js.headers,
            *peer,
            &worker.limits,
            Duration::from_millis(shared.http.write_timeout_ms),
            &shared.sockets,
        )),
        _ => {
            tracing::warn!(
                worker = %worker.name,
                "the worker returned a WebSocket for a request that is not a WebSocket handshake"
            );
            Err(Refusal::NotUpgrade)
        }
    }
}

/// The request's context as the isolate will keep it: its wall deadline counts from its
/// arrival (queueing and a cold start included), its loop chain is the incoming `CDN-Loop`.
fn request_context(
    identity: &Identity,
    arrival: std::time::Instant,
    worker: &WorkerSource,
    loop_chain: Option<HeaderValue>,
) -> RequestContext {
    RequestContext {
        id: identity.number,
        request_id: identity.id.clone(),
        trace: identity.trace,
        trace_from_client: identity.trace_kept,
        deadline: arrival + worker.limits.wall(),
        max_body_bytes: worker.limits.max_body_bytes,
        loop_chain,
        tail: None,
        client_address: None,
    }
}

/// How many headers the front end may add to a request on its way to the worker.
const ADDED_HEADERS: usize = 5;

/// A request the front end lets through, with its deployment.
struct Admitted {
    deployment: Arc<Pool>,
    worker: Arc<WorkerSource>,
    target: Target,
    url: String,
    /// The client-address headers' value, when the isolate adds them.
    client_address: Option<HeaderValue>,
    /// The request's incoming `CDN-Loop` chain.
    loop_chain: Option<HeaderValue>,
}

/// Checks the request's head against the front end's limits, routes it, and rewrites the
/// headers the worker sees (`Host`, client address); refuses what may not go on.
fn admit(
    shared: &Shared,
    scheme: &'static str,
    peer: SocketAddr,
    head: &Head,
    parts: &mut http::request::Parts,
) -> Result<Admitted, Refusal> {
    check_head_size(&shared.http, &parts.uri, head.bytes)?;
    // One authority and one normalised path: routing, the cache key, `request.url` and the
    // worker's `Host` are all built from them.
    let target =
        request_target_for(&parts.uri, head.host(), parts.version).map_err(Refusal::BadTarget)?;
    let deployment = route(shared, &target, head)?;
    let worker = deployment.worker();
    // With no cache in front, nothing reads the client-address headers before the worker
    // does: the isolate adds them if it reads its headers. A cache matches `Vary` on them as
    // the worker sees them, so then they are set now.
    let cached = cache_in_front(shared, &worker).is_some();
    if cached {
        // Room, in one step, for what the front end adds: `Host`, the two client-address
        // headers and a revalidation's two validators (hyper sizes the map for the headers
        // it parsed, so each of these grew it otherwise).
        parts
            .headers
            .try_reserve(ADDED_HEADERS)
            .map_err(|_| Refusal::HeadersTooLarge(shared.http.max_header_bytes))?;
    }
    set_host(&mut parts.headers, head, &target);
    let loop_chain = refuse_loop(head, &worker)?;
    refuse_declared_body(head, &worker)?;
    let url = request_url(scheme, &target);
    let client_address = set_client_ip(
        &mut parts.headers,
        peer.ip(),
        &shared.trusted_proxies,
        !cached,
    );
    Ok(Admitted {
        deployment,
        worker,
        target,
        url,
        client_address,
        loop_chain,
    })
}

/// 414 for a target longer than `max_url_bytes`, 431 for headers over `max_header_bytes`.
fn check_head_size(http: &HttpLimits, uri: &http::Uri, header_bytes: usize) -> Result<(), Refusal> {
    let raw_target = uri.path_and_query().map_or(1, |p| p.as_str().len());
    if raw_target > http.max_url_bytes {
        return Err(Refusal::UriTooLong(http.max_url_bytes));
    }
    if header_bytes > http.max_header_bytes {
        return Err(Refusal::HeadersTooLarge(http.max_header_bytes));
    }
    Ok(())
}

/// The deployment routed for the target's host and path (404 when none is); during a
/// rollout, `isola-version-key` keeps a client on one version.
fn route(shared: &Shared, target: &Target, head: &Head) -> Result<Arc<Pool>, Refusal> {
    let key = head.version_key.as_ref().map(HeaderValue::as_bytes);
    shared
        .router
        .load()
        .route(target.host(), target.path(), key)
        .cloned()
        .ok_or_else(|| Refusal::NoRoute(format!("{}{}", target.host(), target.path())))
}

/// Sets `Host` to the normalised authority; most clients already send it, so only a
/// differing one is rewritten.
fn set_host(headers: &mut http::HeaderMap, head: &Head, target: &Target) {
    let authority = target.authority().as_str();
    if head.first_host().map(HeaderValue::as_bytes) != Some(authority.as_bytes())
        && let Ok(host) = HeaderValue::from_str(authority)
    {
        headers.insert(HOST, host);
    }
}

/// 508 when `CDN-Loop` shows the request came from this worker's own fetch (or has gone
/// through too many hops); else the chain, which the request's own fetches extend.
fn refuse_loop(head: &Head, worker: &WorkerSource) -> Result<Option<HeaderValue>, Refusal> {
    let chain = head.cdn_loop.as_ref();
    if let Some(text) = chain.and_then(|v| v.to_str().ok()) {
        let (hops, seen) = hops(text, &worker.name);
        if seen || hops >= MAX_HOPS {
            return Err(Refusal::Loop(worker.name.to_string()));
        }
    }
    Ok(chain.cloned())
}

/// 413 when the declared `Content-Length` is over the worker's `max_body_bytes`.
fn refuse_declared_body(head: &Head, worker: &WorkerSource) -> Result<(), Refusal> {
    let limit = worker.limits.max_body_bytes;
    let declared = head
        .content_length
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(Refusal::BodyTooLarge(limit));
    }
    Ok(())
}

/// The full URL the worker sees as `request.url`.
fn request_url(scheme: &str, target: &Target) -> String {
    let authority = target.authority().as_str();
    let mut url =
        String::with_capacity(scheme.len() + 3 + authority.len() + target.path_and_query().len());
    url.push_str(scheme);
    url.push_str("://");
    url.push_str(authority);
    url.push_str(target.path_and_query());
    url
}

/// The response cache, when it sits in front of `worker`: the one answer both the lookup and
/// the client-address headers (set before it, as `Vary` sees them) go by.
fn cache_in_front<'a>(shared: &'a Shared, worker: &WorkerSource) -> Option<&'a ResponseCache> {
    shared.cache.as_ref().filter(|_| worker.cache)
}

/// What the response cache says about the request, when it sits in front of this worker.
/// The lookup's future is boxed: as large as the rest of a request's future, it would make
/// every request's future (copied into its box on each request) larger, cache or not.
async fn look_up<'a>(
    shared: &'a Shared,
    worker: &WorkerSource,
    url: &str,
    parts: &http::request::Parts,
) -> Lookup<'a> {
    match cache_in_front(shared, worker) {
        Some(cache) => Box::pin(cache.lookup(worker, url, &parts.method, &parts.headers)).await,
        None => Lookup::Forward(Forwarding::around()),
    }
}

/// Starts pumping the request body to the isolate (none when the request has no body).
fn start_body(incoming: Incoming, limit: u64) -> (Option<BodyReceiver>, BodyFault) {
    if http_body::Body::is_end_stream(&incoming) {
        (None, BodyFault::default())
    } else {
        let (chunks, fault) = pump_request_body(incoming, limit);
        (Some(chunks), fault)
    }
}

/// Sends `request` into one of the deployment's isolates and waits for its response head,
/// at most `wall_ms` in all (waiting in the queue or for a cold start included).
async fn forward(
    deployment: &Arc<Pool>,
    worker: &WorkerSource,
    request: Box<IncomingRequest>,
    mut outcome: oneshot::Receiver<HandlerResult>,
    body_fault: &BodyFault,
) -> Result<JsResponse, Refusal> {
    let id = request.context.request_id.clone();
    let deadline = request.context.deadline;
    let timed_out = || {
        tracing::warn!(
            request_id = &*id,
            worker = %worker.name,
            wall_ms = worker.limits.wall_ms,
            "the worker did not respond within its wall-clock limit"
        );
        Refusal::Timeout
    };
    // One deadline for both waits (for an isolate, then for its answer), checked by the
    // thread's ticker on an executor (`deadline`), not a timer per request.
    let exchange = async {
        let isolate = deployment
            .dispatch(request)
            .await
            .map_err(|error| match error {
                AcquireError::Start(error) => Refusal::Unavailable(error.to_string()),
                overloaded => Refusal::Overloaded(overloaded),
            })?;
        // Dropped at the deadline (or with the connection) before the answer: the isolate
        // hears that the client is gone.
        let guard = AbortOnDrop {
            isolate: Some(isolate),
        };
        // An answer given at once (the isolate ran here as the request was sent) goes out
        // with the others of the executor's round (`round`).
        let outcome = match outcome.try_recv() {
            Ok(answer) => {
                super::round::join().await;
                Ok(answer)
            }
            Err(_) => outcome.await,
        };
        guard.disarm();
        Ok(outcome)
    };
    let outcome = super::deadline::within(deadline, exchange)
        .await
        .map_err(|_elapsed| timed_out())??;
    match outcome {
        Ok(Ok(js)) => Ok(js),
        Ok(Err(HandlerError {
            message,
            limit: Some(isola_bindings::websocket::SOCKETS_FULL),
        })) => {
            tracing::warn!(request_id = &*id, worker = %worker.name, "request {id} refused a WebSocket: {message}");
            Err(Refusal::SocketsFull)
        }
        Ok(Err(HandlerError {
            message,
            limit: Some(limit),
        })) => {
            tracing::warn!(request_id = &*id, worker = %worker.name, "request {id}: {message}");
            Err(Refusal::LimitExceeded(limit))
        }
        Ok(Err(failure)) if body_fault.too_large() => {
            tracing::info!(request_id = &*id, worker = %worker.name, "request body too large: {failure}");
            Err(Refusal::BodyTooLarge(worker.limits.max_body_bytes))
        }
        Ok(Err(failure)) if body_fault.malformed() => {
            tracing::info!(request_id = &*id, worker = %worker.name, "malformed request body: {failure}");
            Err(Refusal::MalformedBody)
        }
        Ok(Err(failure)) => {
            tracing::error!(
                target: "isola::exception",
                request_id = &*id,
                worker = %worker.name,
                "request {id} failed: {}",
                isola_bindings::console::log_text(&failure.to_string())
            );
            Err(Refusal::HandlerFailed(failure.message))
        }
        Err(_) => Err(Refusal::Unavailable("the isolate exited".to_owned())),
    }
}

/// Revalidates a stale cached response the client was just served (`stale-while-revalidate`):
/// a GET like the client's, with the cache's validators, whose response refreshes the cache.
async fn revalidate_in_background(
    deployment: Arc<Pool>,
    mut revalidation: Revalidation,
    url: String,
    mut headers: http::HeaderMap,
    write_timeout: Duration,
) {
    revalidation.add_validators(&mut headers);
    let worker = deployment.worker();
    let (responder, outcome) = oneshot::channel();
    // A request of its own: a new id and trace, not the client's whose visit set it off.
    headers.remove(X_REQUEST_ID);
    headers.remove(isola_bindings::outbound::guard::TRACEPARENT);
    let head = Head::scan(&headers);
    let identity = Identity::of(&head);
    let loop_chain = head.cdn_loop.clone();
    let context = request_context(&identity, std::time::Instant::now(), &worker, loop_chain);
    let request = Box::new(IncomingRequest {
        context,
        method: http::Method::GET,
        url: url.clone(),
        headers,
        body: None,
        responder,
        lease: None,
        write_timeout,
    });
    match forward(
        &deployment,
        &worker,
        request,
        outcome,
        &BodyFault::default(),
    )
    .await
    {
        Ok(js) => {
            let response = revalidation.finish(&worker, || url, js);
            // The body must be read to its end for a streamed response to be stored.
            let read = http_body_util::BodyExt::collect(response.into_body());
            let _ = tokio::time::timeout(worker.limits.wall(), read).await;
        }
        Err(refusal) => {
            tracing::info!(worker = %worker.name, "background revalidation failed: {refusal:?}");
            revalidation.abandon();
        }
    }
}

/// Tells the isolate the client went away if the exchange is dropped before it completes
/// (hyper drops the service future when the connection closes or the stream is reset).
struct AbortOnDrop {
    isolate: Option<Dispatched>,
}

impl AbortOnDrop {
    fn disarm(mut self) {
        self.isolate = None;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(isolate) = self.isolate.take() {
            isolate.abort();
        }
    }
}
