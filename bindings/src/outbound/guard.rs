//! Per-request checks on every outbound request (each redirect hop included): the address
//! policy for IP literals, the subrequest cap, loop detection and the trace context. deno_fetch calls
//! [`request_hook`] on the isolate's thread for each request it sends, with nothing but the
//! request: so the isolate's guard (its deployment's policy and its table of request
//! contexts) is a thread-local, installed when a worker is loaded into the thread's isolate,
//! and the request a fetch belongs to arrives as the [`CONTEXT_HEADER`] the worker's `fetch()`
//! adds from its async context (and this hook removes).

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::Arc;

use deno_error::JsErrorBox;
use http::HeaderValue;
use http::header::HeaderName;

use super::OutboundPolicy;
use crate::context::SharedContexts;

/// The loop-detection header (RFC 8586): each hop appends `isola; id=<opaque id>` (see
/// [`loop_id`]).
pub const CDN_LOOP: HeaderName = HeaderName::from_static("cdn-loop");

/// Names the request (by id) on whose behalf a `fetch()` is made; set by the worker's
/// `fetch()` (js/10_fetch_event.js), removed here, never sent.
pub const CONTEXT_HEADER: HeaderName = HeaderName::from_static("isola-context");

/// The W3C trace context header: each subrequest continues its request's trace in a span of
/// its own.
pub use crate::context::TRACEPARENT;

/// Most Isola hops a request may have taken; more is a loop between deployments.
pub const MAX_HOPS: usize = 16;

/// One isolate's outbound guard: its deployment's policy, loop mark and subrequest cap.
pub struct Guard {
    policy: Arc<OutboundPolicy>,
    hop: String,
    max_subrequests: u32,
    contexts: SharedContexts,
}

thread_local! {
    static GUARD: RefCell<Option<Guard>> = const { RefCell::new(None) };
}

/// Puts `guard` in place as this thread's and returns the one that was there: a thread that
/// hosts several isolates swaps each one's guard in while it runs.
pub fn swap(guard: Option<Guard>) -> Option<Guard> {
    GUARD.with(|current| std::mem::replace(&mut *current.borrow_mut(), guard))
}

/// Installs the deployment's guard on the current (isolate) thread, counting subrequests in
/// `contexts`, the isolate's table of request contexts.
pub fn install(
    policy: Arc<OutboundPolicy>,
    deployment: &str,
    max_subrequests: u32,
    contexts: SharedContexts,
) {
    GUARD.with(|guard| {
        *guard.borrow_mut() = Some(Guard {
            policy,
            hop: format!("isola; id={}", loop_id(deployment)),
            max_subrequests,
            contexts,
        });
    });
}

/// deno_fetch's request hook: refuses what the policy forbids, counts the subrequest against
/// its request and marks the hop with that request's loop chain.
pub fn request_hook<B>(request: &mut http::Request<B>) -> Result<(), JsErrorBox> {
    admit(request, "fetch")
}

/// [`request_hook`] for any outbound request (`what` names it in a refusal: `fetch`,
/// `WebSocket`), e.g. a WebSocket's opening handshake: one subrequest of the request named by
/// [`CONTEXT_HEADER`], its IP literal checked, the hop marked.
pub fn admit<B>(request: &mut http::Request<B>, what: &str) -> Result<(), JsErrorBox> {
    let context = request
        .headers_mut()
        .remove(CONTEXT_HEADER)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    GUARD.with(|guard| {
        let guard = guard.borrow();
        let Some(guard) = guard.as_ref() else {
            return Err(JsErrorBox::type_error(
                "outbound fetch is not available here",
            ));
        };
        let subrequest = guard.contexts.borrow_mut().count_subrequest(context);
        if subrequest.count > guard.max_subrequests {
            return Err(JsErrorBox::new(
                "Error",
                format!(
                    "too many subrequests: a request may make at most {} (max_subrequests)",
                    guard.max_subrequests
                ),
            ));
        }
        if let Some(ip) = literal_ip(request.uri())
            && !guard.policy.allows(ip)
        {
            return Err(refused(ip, what));
        }
        let value = match &subrequest.loop_chain {
            Some(chain) => format!("{}, {}", chain.to_str().unwrap_or_default(), guard.hop),
            None => guard.hop.clone(),
        };
        let value = HeaderValue::from_str(&value)
            .map_err(|_| JsErrorBox::type_error("invalid CDN-Loop chain"))?;
        request.headers_mut().insert(CDN_LOOP, value);
        if let Some(trace) = subrequest.trace
            && let Ok(value) = HeaderValue::from_bytes(&trace.to_header_bytes())
        {
            request.headers_mut().insert(TRACEPARENT, value);
        }
        Ok(())
    })
}

/// The error a refused address gives the worker.
pub(super) fn refused(ip: IpAddr, what: &str) -> JsErrorBox {
    JsErrorBox::new(
        "TypeError",
        format!("{what} refused: {ip} is a private, loopback or otherwise special-purpose address"),
    )
}

/// The URI's host if it is an IP address (`[v6]` unwrapped).
pub(super) fn literal_ip(uri: &http::Uri) -> Option<IpAddr> {
    let host = uri.host()?;
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// A deployment's id in `CDN-Loop`: a hash of its name under a key of this process, so the
/// servers a worker fetches from learn no deployment names.
pub fn loop_id(deployment: &str) -> String {
    static KEY: std::sync::LazyLock<std::hash::RandomState> =
        std::sync::LazyLock::new(std::hash::RandomState::new);
    format!(
        "{:016x}",
        std::hash::BuildHasher::hash_one(&*KEY, deployment)
    )
}

/// How many Isola hops a `CDN-Loop` value records, and whether one of them is `deployment`.
pub fn hops(value: &str, deployment: &str) -> (usize, bool) {
    let id = loop_id(deployment);
    let mut count = 0;
    let mut seen = false;
    for entry in value.split(',') {
        let mut parts = entry.split(';').map(str::trim);
        if parts.next() != Some("isola") {
            continue;
        }
        count += 1;
        seen |= parts.any(|p| p.strip_prefix("id=") == Some(id.as_str()));
    }
    (count, seen)
}
