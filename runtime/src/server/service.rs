//! Per-request handling in the front end: HTTP limits, routing, the response cache, client
//! address headers, handing the request to the deployment's isolate and turning the outcome
//! into a response.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use edge_config::{HttpLimits, IpCidr};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, RETRY_AFTER};
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use isola_bindings::http::{HandlerError, HandlerResult, JsResponse, RequestId};
use isola_bindings::outbound::guard::{CDN_LOOP, MAX_HOPS, hops};
use isola_wire::authority::{TargetError, request_target};
use tokio::sync::oneshot;

use super::client_ip::set_client_ip;
use super::request_body::{BodyFault, pump_request_body};
use crate::body::Body;
use crate::cache::{Lookup, Pending, ResponseCache};
use crate::exchange::IncomingRequest;
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
}

/// Request ids: a per-process random start plus a counter, unique across restarts in logs.
static NEXT_REQUEST_ID: std::sync::LazyLock<AtomicU64> = std::sync::LazyLock::new(|| {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    AtomicU64::new((seed ^ u64::from(std::process::id()).rotate_left(32)) & 0x000f_ffff_ffff_ffff)
});

fn next_request_id() -> RequestId {
    NEXT_REQUEST_ID.fetch_add(1, Ordering::Relaxed)
}

/// Handles one request on a connection from `peer`; never fails at the HTTP level.
pub async fn handle(
    shared: Arc<Shared>,
    scheme: &'static str,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let id = next_request_id();
    Ok(match serve(&shared, scheme, peer, id, request).await {
        Ok(response) => response,
        Err(refusal) => refusal.into_response(id),
    })
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
    LimitExceeded(&'static str),
    HandlerFailed,
    Timeout,
    NotCached,
}

impl Refusal {
    /// The status of a failure of the worker itself (not of the request), for
    /// `stale-if-error`.
    fn worker_failure(&self) -> Option<StatusCode> {
        match self {
            Self::Unavailable(_) | Self::Overloaded(_) | Self::LimitExceeded(_) => {
                Some(StatusCode::SERVICE_UNAVAILABLE)
            }
            Self::HandlerFailed => Some(StatusCode::INTERNAL_SERVER_ERROR),
            Self::Timeout => Some(StatusCode::GATEWAY_TIMEOUT),
            _ => None,
        }
    }

    fn into_response(self, id: RequestId) -> Response<Body> {
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
            Self::LimitExceeded(limit) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the worker exceeded its {limit} limit"),
            ),
            Self::HandlerFailed => (
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
        };
        match &self {
            Self::Unavailable(reason) => tracing::warn!(
                request_id = format_args!("{id:016x}"),
                "worker unavailable: {reason}"
            ),
            Self::Overloaded(reason) => tracing::warn!(
                request_id = format_args!("{id:016x}"),
                "request refused: {reason}"
            ),
            _ => {}
        }
        let mut response = Response::new(Body::text(format!("{text} (request id {id:016x})\n")));
        *response.status_mut() = status;
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain;charset=UTF-8"),
        );
        if matches!(self, Self::Unavailable(_) | Self::Overloaded(_)) {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

async fn serve(
    shared: &Shared,
    scheme: &'static str,
    peer: SocketAddr,
    id: RequestId,
    request: Request<Incoming>,
) -> Result<Response<Body>, Refusal> {
    let (mut parts, incoming) = request.into_parts();
    let raw_target = parts.uri.path_and_query().map_or(1, |p| p.as_str().len());
    if raw_target > shared.http.max_url_bytes {
        return Err(Refusal::UriTooLong(shared.http.max_url_bytes));
    }
    let header_bytes: usize = parts
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    if header_bytes > shared.http.max_header_bytes {
        return Err(Refusal::HeadersTooLarge(shared.http.max_header_bytes));
    }
    // One authority and one normalised path: routing, the cache key, `request.url` and the
    // worker's `Host` are all built from them.
    let target =
        request_target(&parts.uri, &parts.headers, parts.version).map_err(Refusal::BadTarget)?;
    let deployment = shared
        .router
        .load()
        .route(target.host(), target.path())
        .ok_or_else(|| Refusal::NoRoute(format!("{}{}", target.host(), target.path())))?
        .clone();
    // Most clients already send the normalised form: only a differing Host is rewritten.
    let authority = target.authority().as_str();
    if parts.headers.get(HOST).map(HeaderValue::as_bytes) != Some(authority.as_bytes())
        && let Ok(host) = HeaderValue::from_str(authority)
    {
        parts.headers.insert(HOST, host);
    }
    let worker = deployment.worker();
    if let Some(chain) = parts.headers.get(CDN_LOOP).and_then(|v| v.to_str().ok()) {
        let (hops, seen) = hops(chain, &worker.name);
        if seen || hops >= MAX_HOPS {
            return Err(Refusal::Loop(worker.name.to_string()));
        }
    }
    let limit = worker.limits.max_body_bytes;
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(Refusal::BodyTooLarge(limit));
    }
    let url = format!(
        "{scheme}://{}{}",
        target.authority(),
        target.path_and_query()
    );
    // The worker sees (and `Vary` is matched on) the client-address headers as rewritten.
    set_client_ip(&mut parts.headers, peer.ip(), &shared.trusted_proxies);
    let cache = shared.cache.as_ref().filter(|_| worker.cache);
    let lookup = match cache {
        Some(cache) => {
            cache
                .lookup(&worker, &url, &parts.method, &parts.headers)
                .await
        }
        None => Lookup::Pass(None),
    };
    let (mut pending, invalidates) = match lookup {
        Lookup::Hit(response) => return Ok(response),
        Lookup::Stale(response, revalidate) => {
            if let (Some(cache), Some(revalidate)) = (cache, revalidate) {
                tokio::spawn(revalidate_in_background(
                    deployment,
                    cache.clone(),
                    revalidate,
                    url,
                    parts.headers,
                    Duration::from_millis(shared.http.write_timeout_ms),
                ));
            }
            return Ok(response);
        }
        Lookup::Unsatisfiable => return Err(Refusal::NotCached),
        Lookup::Pass(invalidates) => (None, invalidates),
        Lookup::Forward(pending) => (Some(pending), None),
    };
    if let Some(pending) = &mut pending {
        pending.add_validators(&mut parts.headers);
    }
    let (body, body_fault) = if http_body::Body::is_end_stream(&incoming) {
        (None, BodyFault::default())
    } else {
        let (chunks, fault) = pump_request_body(incoming, limit);
        (Some(chunks), fault)
    };
    let (responder, outcome) = oneshot::channel();
    let request = IncomingRequest {
        id,
        method: parts.method,
        url,
        headers: parts.headers,
        body,
        responder,
        lease: None,
        write_timeout: Duration::from_millis(shared.http.write_timeout_ms),
    };
    let result = forward(&deployment, &worker, request, outcome, &body_fault).await;
    match (pending, cache, result) {
        (Some(pending), _, Err(refusal)) => match refusal.worker_failure() {
            Some(status) => pending.stale_if_error(status).ok_or(refusal),
            None => Err(refusal),
        },
        (Some(pending), Some(cache), Ok(js)) => Ok(cache.finish(
            pending,
            &worker,
            || {
                format!(
                    "{scheme}://{}{}",
                    target.authority(),
                    target.path_and_query()
                )
            },
            js,
        )),
        (_, cache, Ok(js)) => {
            if let (Some(cache), Some(key)) = (cache, invalidates)
                && js.status.as_u16() < 400
            {
                cache.invalidate(key);
            }
            let mut response = Response::new(Body::from(js.body));
            *response.status_mut() = js.status;
            *response.headers_mut() = js.headers;
            Ok(response)
        }
        (None, _, Err(refusal)) => Err(refusal),
    }
}

/// Sends `request` into one of the deployment's isolates and waits for its response head,
/// at most `wall_ms` in all (waiting in the queue or for a cold start included).
async fn forward(
    deployment: &Arc<Pool>,
    worker: &WorkerSource,
    request: IncomingRequest,
    outcome: oneshot::Receiver<HandlerResult>,
    body_fault: &BodyFault,
) -> Result<JsResponse, Refusal> {
    let id = request.id;
    let deadline = tokio::time::Instant::now() + worker.limits.wall();
    let timed_out = || {
        tracing::warn!(
            request_id = format_args!("{id:016x}"),
            worker = %worker.name,
            wall_ms = worker.limits.wall_ms,
            "the worker did not respond within its wall-clock limit"
        );
        Refusal::Timeout
    };
    let isolate = tokio::time::timeout_at(deadline, deployment.dispatch(request))
        .await
        .map_err(|_elapsed| timed_out())?
        .map_err(|error| match error {
            AcquireError::Start(error) => Refusal::Unavailable(error.to_string()),
            overloaded => Refusal::Overloaded(overloaded),
        })?;
    let guard = AbortOnDrop {
        isolate: Some(isolate),
    };
    let outcome = match tokio::time::timeout_at(deadline, outcome).await {
        Ok(outcome) => {
            guard.disarm();
            outcome
        }
        Err(_elapsed) => return Err(timed_out()),
    };
    match outcome {
        Ok(Ok(js)) => Ok(js),
        Ok(Err(HandlerError {
            message,
            limit: Some(limit),
        })) => {
            tracing::warn!(request_id = format_args!("{id:016x}"), worker = %worker.name, "request {id:016x}: {message}");
            Err(Refusal::LimitExceeded(limit))
        }
        Ok(Err(failure)) if body_fault.too_large() => {
            tracing::info!(request_id = format_args!("{id:016x}"), worker = %worker.name, "request body too large: {failure}");
            Err(Refusal::BodyTooLarge(worker.limits.max_body_bytes))
        }
        Ok(Err(failure)) if body_fault.malformed() => {
            tracing::info!(request_id = format_args!("{id:016x}"), worker = %worker.name, "malformed request body: {failure}");
            Err(Refusal::MalformedBody)
        }
        Ok(Err(failure)) => {
            tracing::error!(request_id = format_args!("{id:016x}"), worker = %worker.name, "request {id:016x} failed: {failure}");
            Err(Refusal::HandlerFailed)
        }
        Err(_) => Err(Refusal::Unavailable("the isolate exited".to_owned())),
    }
}

/// Revalidates a stale cached response the client was just served (`stale-while-revalidate`):
/// a GET like the client's, with the cache's validators, whose response refreshes the cache.
async fn revalidate_in_background(
    deployment: Arc<Pool>,
    cache: ResponseCache,
    mut pending: Pending,
    url: String,
    mut headers: http::HeaderMap,
    write_timeout: Duration,
) {
    pending.add_validators(&mut headers);
    let worker = deployment.worker();
    let (responder, outcome) = oneshot::channel();
    let request = IncomingRequest {
        id: next_request_id(),
        method: http::Method::GET,
        url: url.clone(),
        headers,
        body: None,
        responder,
        lease: None,
        write_timeout,
    };
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
            let response = cache.finish(pending, &worker, || url, js);
            // The body must be read to its end for a streamed response to be stored.
            let read = http_body_util::BodyExt::collect(response.into_body());
            let _ = tokio::time::timeout(worker.limits.wall(), read).await;
        }
        Err(refusal) => {
            tracing::info!(worker = %worker.name, "background revalidation failed: {refusal:?}");
            pending.abandon();
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
