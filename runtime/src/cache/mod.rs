//! The node's shared response cache, in front of every worker (RFC 9111 for a shared cache,
//! RFC 5861's `stale-while-revalidate` and `stale-if-error`, RFC 9211's `Cache-Status`).
//!
//! GET responses a worker marks cacheable (`s-maxage`, `max-age` or `Expires`; not `private`,
//! `no-store`, `Set-Cookie` or `Vary: *`) are kept in memory (moka, bounded by bytes) and served
//! without running the worker while fresh. Stale responses with a validator are revalidated
//! with a conditional request (a worker's 304 refreshes them); `stale-while-revalidate` serves
//! them while one background request revalidates; `stale-if-error` serves them when the worker
//! fails. Successful unsafe requests (POST, PUT, DELETE, …) invalidate their URL. Clients'
//! `If-None-Match`/`If-Modified-Since` get 304 from the cache. Up to 16 variants are kept per
//! URL (`variants.rs`), one for each set of the request header values its `Vary` names.
//!
//! The same store holds what workers put through the Cache API (`api.rs`), in spaces of their
//! own per deployment and cache name; purges (`purge.rs`: a deployment, a `Cache-Tag` tag, a
//! URL prefix) reach both.

mod api;
mod collapse;
mod conditional;
mod entry;
mod partial;
mod purge;
mod record;
mod request;
mod store;
#[cfg(test)]
mod tests;
mod variants;

use std::hash::BuildHasher;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use http::header::{
    AGE, CACHE_CONTROL, CONTENT_LOCATION, DATE, ETAG, EXPIRES, LAST_MODIFIED, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use isola_wire::cache_control::Directives;
use prometheus::{IntCounter, IntGauge};

pub use collapse::{Flight, Waiter};
pub use purge::Selector;
pub use request::{Forwarding, Lookup, Revalidation};

use self::collapse::{Flights, Join};
use self::entry::{Space, Stored};
use self::variants::Variants;
use crate::body::Body;
use crate::worker::WorkerSource;

/// How many times a miss waits for another request's response before it goes to the worker
/// itself (the other request may fail, or its response may vary differently).
pub const MAX_WAITS: usize = 2;

/// The longest a collapsed miss waits for the request leading it (whose client may read
/// slowly) before it goes to the worker itself.
const FOLLOW_AT_MOST: Duration = Duration::from_secs(1);

/// RFC 9211's header saying what the cache did with a request.
pub const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// The cache's settings (`[cache]`).
pub use edge_config::Cache as CacheConfig;

/// The shared cache; cheap to clone (all clones are the same cache).
#[derive(Clone)]
pub struct ResponseCache {
    inner: Arc<Inner>,
}

struct Inner {
    entries: moka::sync::Cache<u64, Arc<Variants>>,
    flights: Flights,
    hasher: std::hash::RandomState,
    max_object_bytes: u64,
    retention: Duration,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("entries", &self.inner.entries.entry_count())
            .field("bytes", &self.inner.entries.weighted_size())
            .finish()
    }
}

/// What one look at the stored responses found for a request.
#[derive(Debug)]
enum Found {
    /// Not a cacheable method; an unsafe one invalidates its URL (this key) if it succeeds.
    Pass(Option<u64>),
    /// Answered from the cache.
    Hit(Response<Body>),
    /// Answered from the cache while stale (`stale-while-revalidate`); when set, the caller
    /// revalidates in the background with this.
    Stale(Response<Body>, Option<Pending>),
    /// `only-if-cached` and nothing usable: the cache answers 504.
    Unsatisfiable,
    /// Ask the worker, then hand its response back through the cache.
    Forward(Pending),
}

/// Why a request went to the worker (RFC 9211 `fwd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fwd {
    /// The request forbids the cache (`no-store`).
    Bypass,
    /// Nothing stored for the URL.
    UriMiss,
    /// Stored for other `Vary` header values.
    VaryMiss,
    /// Stored but stale.
    Stale,
    /// Stored, but the request asked for a fresher or validated one.
    Request,
}

/// A request on its way to the worker: what the cache needs to handle the response.
#[derive(Debug)]
struct Pending {
    key: u64,
    fwd: Fwd,
    /// Whether the response may be stored (a GET that did not say `no-store`).
    store: bool,
    /// The stored response this request may revalidate or fall back on.
    stale: Option<Arc<Stored>>,
    /// Whether the cache added its own validators to the request.
    validating: bool,
    /// Whether the request carried `Authorization`.
    authorized: bool,
    /// Whether the request carried `Cookie`: its response is stored, and a stored response
    /// served to it, only when explicitly shared (`public`, `s-maxage`), as Varnish does.
    cookie: bool,
    /// The request's headers, kept when the worker's responses vary on some of them.
    request_headers: Option<HeaderMap>,
    /// Set when this request leads others for the same URL (they wait until it is dropped).
    flight: Option<Flight>,
}

impl Pending {
    /// Whether a response with these directives may be stored for this request or served to
    /// it: one carrying credentials only gets responses explicitly meant for everyone
    /// (RFC 9111 §3.5 for `Authorization`; `Cookie` likewise).
    fn may_use(&self, directives: &Directives) -> bool {
        let shared = directives.public || directives.s_maxage.is_some();
        (!self.authorized || shared || directives.must_revalidate) && (!self.cookie || shared)
    }

    /// Keeps the request's headers when the response may be stored: should it carry `Vary`,
    /// the values it varies on are recorded with it (the first such response of a worker
    /// included).
    fn keep_request_headers(&mut self, request: &HeaderMap) {
        if self.store {
            self.request_headers = Some(request.clone());
        }
    }

    /// Adds the stored response's validators to the request (RFC 9111 §4.3.1) so the worker
    /// can answer 304; not when the client sent preconditions of its own.
    fn add_validators(&mut self, request: &mut HeaderMap) {
        let Some(stale) = &self.stale else { return };
        if !self.store || !stale.has_validator() || conditional::has_preconditions(request) {
            return;
        }
        if let Some(etag) = stale.etag() {
            request.insert(http::header::IF_NONE_MATCH, etag.clone());
        }
        if let Some(modified) = stale.last_modified() {
            request.insert(http::header::IF_MODIFIED_SINCE, modified.clone());
        }
        self.validating = true;
    }

    /// A stale response to send instead of a worker's failure (`stale-if-error`), if allowed.
    fn stale_if_error(&self, failed: StatusCode) -> Option<Response<Body>> {
        let stale = self.stale.as_ref()?;
        let now = Instant::now();
        if !stale.may_serve_stale() || !stale.stale_within(now, stale.directives.stale_if_error) {
            return None;
        }
        COUNTERS.stale.inc();
        let status = format!(
            "isola; fwd=stale; fwd-status={}; detail=stale-if-error",
            failed.as_u16()
        );
        Some(respond(stale, now, HeaderValue::from_str(&status).ok()))
    }

    /// Called when a background revalidation could not finish, so a later request tries.
    fn abandon(&self) {
        if let Some(stale) = &self.stale {
            stale.revalidating.store(false, Ordering::Release);
        }
    }
}

/// Counters of what the cache did, resolved once (no label lookup per request).
struct Counters {
    hit: IntCounter,
    stale: IntCounter,
    revalidated: IntCounter,
    miss: IntCounter,
    bypass: IntCounter,
    bytes: IntGauge,
}

static COUNTERS: LazyLock<Counters> = LazyLock::new(|| {
    let metrics = crate::metrics::metrics();
    let result = |name: &str| metrics.cache_requests.with_label_values(&[name]);
    Counters {
        hit: result("hit"),
        stale: result("stale"),
        revalidated: result("revalidated"),
        miss: result("miss"),
        bypass: result("bypass"),
        bytes: metrics.cache_bytes.clone(),
    }
});

/// moka's per-entry lifetime: until no stored variant can be used any more.
struct KeepFor;

impl moka::Expiry<u64, Arc<Variants>> for KeepFor {
    fn expire_after_create(
        &self,
        _: &u64,
        value: &Arc<Variants>,
        now: Instant,
    ) -> Option<Duration> {
        Some(value.keep_for(now))
    }

    fn expire_after_update(
        &self,
        _: &u64,
        value: &Arc<Variants>,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.keep_for(now))
    }
}

impl ResponseCache {
    /// A cache as configured, or `None` when `max_size_mb` is 0.
    pub fn new(config: &CacheConfig) -> Option<Self> {
        if config.max_size_mb == 0 {
            return None;
        }
        let entries = moka::sync::Cache::builder()
            .max_capacity(config.max_size_mb.saturating_mul(1024 * 1024))
            .weigher(|_, variants: &Arc<Variants>| variants.weight())
            .expire_after(KeepFor)
            .eviction_listener(|_, variants: Arc<Variants>, _| {
                COUNTERS.bytes.sub(i64::from(variants.weight()));
            })
            .build();
        Some(Self {
            inner: Arc::new(Inner {
                entries,
                flights: Flights::new(),
                hasher: std::hash::RandomState::new(),
                max_object_bytes: config.max_object_bytes,
                retention: Duration::from_secs(config.stale_retention_s),
            }),
        })
    }

    fn key(&self, worker: &str, space: &Space, url: &str) -> u64 {
        self.inner.hasher.hash_one((worker, space, url))
    }

    /// What to do with a request for `url` served by `worker`: the first step of its way
    /// through the cache. A miss while another request for the URL is at the worker waits for
    /// that one's response (at most 1 s, and [`MAX_WAITS`] times) and looks again.
    pub async fn lookup(
        &self,
        worker: &WorkerSource,
        url: &str,
        method: &Method,
        request: &HeaderMap,
    ) -> Lookup<'_> {
        let mut waits = 0;
        loop {
            match self.look(worker, url, method, request, waits < MAX_WAITS) {
                Ok(mut found) => {
                    if let Found::Forward(pending) | Found::Stale(_, Some(pending)) = &mut found {
                        pending.keep_request_headers(request);
                    }
                    return Lookup::of(self, found);
                }
                Err(waiter) => {
                    waiter.wait(worker.limits.wall().min(FOLLOW_AT_MOST)).await;
                    waits += 1;
                }
            }
        }
    }

    /// One look at the cache; with `collapse`, `Err` when the request should wait for another.
    fn look(
        &self,
        worker: &WorkerSource,
        url: &str,
        method: &Method,
        request: &HeaderMap,
        collapse: bool,
    ) -> Result<Found, Waiter> {
        let key = self.key(&worker.name, &Space::Responses, url);
        if method != Method::GET && method != Method::HEAD {
            let safe = matches!(*method, Method::OPTIONS | Method::TRACE | Method::CONNECT);
            return Ok(Found::Pass((!safe).then_some(key)));
        }
        let asked = if request.contains_key(CACHE_CONTROL) {
            Directives::of(request)
        } else {
            Directives::default()
        };
        let mut pending = Pending {
            key,
            fwd: Fwd::UriMiss,
            store: method == Method::GET && !asked.no_store,
            stale: None,
            validating: false,
            authorized: request.contains_key(http::header::AUTHORIZATION),
            cookie: request.contains_key(http::header::COOKIE),
            request_headers: None,
            flight: None,
        };
        if asked.no_store {
            pending.fwd = Fwd::Bypass;
            return Ok(Found::Forward(pending));
        }
        let variants = self
            .inner
            .entries
            .get(&key)
            .filter(|v| v.is(&worker.name, &Space::Responses, url));
        let collapse = collapse
            && pending.store
            && !pending.authorized
            && !pending.cookie
            && !asked.no_cache
            && worker.cache_hints.cacheable();
        let Some(variants) = variants else {
            return self.miss(asked.only_if_cached, pending, collapse);
        };
        let now = Instant::now();
        let get = method == Method::GET;
        let Some(stored) = variants.matching(request, now).cloned() else {
            pending.fwd = Fwd::VaryMiss;
            return self.miss(asked.only_if_cached, pending, collapse);
        };
        if !pending.may_use(&stored.directives) {
            pending.fwd = Fwd::Request;
            return Ok(Found::Forward(pending));
        }
        let fresh = stored.is_fresh(now);
        let age_s = u64::try_from(entry::secs(stored.age(now))).unwrap_or(u64::MAX);
        let ttl_s = stored.ttl_s(now);
        let acceptable = !asked.no_cache && asked.max_age.is_none_or(|max| age_s <= max);
        let fresh_enough = asked
            .min_fresh
            .is_none_or(|min| ttl_s >= i64::try_from(min).unwrap_or(i64::MAX));
        let stale_within =
            |window| !fresh && stored.may_serve_stale() && stored.stale_within(now, window);
        if acceptable && ((fresh && fresh_enough) || stale_within(asked.max_stale)) {
            COUNTERS.hit.inc();
            return Ok(Found::Hit(hit(&stored, request, get, now, ttl_s)));
        }
        if acceptable && stale_within(stored.directives.stale_while_revalidate) {
            COUNTERS.stale.inc();
            let response = hit(&stored, request, get, now, ttl_s);
            let revalidate = stored.claim_revalidation().then(|| {
                // The revalidation is a GET, even for a HEAD served stale.
                pending.store = true;
                pending.fwd = Fwd::Stale;
                pending.stale = Some(stored);
                pending
            });
            return Ok(Found::Stale(response, revalidate));
        }
        if asked.only_if_cached {
            return Ok(Found::Unsatisfiable);
        }
        pending.stale = Some(stored);
        if fresh {
            pending.fwd = Fwd::Request;
            return Ok(Found::Forward(pending));
        }
        pending.fwd = Fwd::Stale;
        self.miss(false, pending, collapse)
    }

    /// Nothing usable is stored: 504 for `only-if-cached`, else forward, or wait for the
    /// request already forwarded for the URL.
    fn miss(
        &self,
        only_if_cached: bool,
        mut pending: Pending,
        collapse: bool,
    ) -> Result<Found, Waiter> {
        if only_if_cached {
            return Ok(Found::Unsatisfiable);
        }
        if collapse {
            match self.inner.flights.join(self, pending.key) {
                Join::Lead(flight) => pending.flight = Some(flight),
                Join::Follow(waiter) => return Err(waiter),
                Join::Alone => {}
            }
        }
        Ok(Found::Forward(pending))
    }

    /// Drops the stored responses (every variant) a successful unsafe request made outdated.
    pub fn invalidate(&self, key: u64) {
        self.inner.entries.invalidate(&key);
    }

    /// Stores `stored` under `key` beside the other variants of its URL.
    fn insert(&self, key: u64, stored: Stored) {
        self.inner.flights.unpass(key);
        let current = self.inner.entries.get(&key);
        let variants = Variants::with(current.as_deref(), Arc::new(stored), Instant::now());
        COUNTERS.bytes.add(i64::from(variants.weight()));
        self.inner.entries.insert(key, Arc::new(variants));
    }
}

/// The stored response for a hit, or 304 if the client's preconditions say it has it.
fn hit(
    stored: &Stored,
    request: &HeaderMap,
    get: bool,
    now: Instant,
    ttl_s: i64,
) -> Response<Body> {
    let status = HeaderValue::from_str(&format!("isola; hit; ttl={ttl_s}")).ok();
    if conditional::not_modified(request, stored) {
        return not_modified(stored, now, status);
    }
    partial::narrow(respond(stored, now, status), stored, request, get)
}

/// The stored response with its current `Age` and a `Cache-Status`.
fn respond(stored: &Stored, now: Instant, status: Option<HeaderValue>) -> Response<Body> {
    let mut response = Response::new(Body::Full(Some(stored.body.clone())));
    *response.status_mut() = stored.status;
    *response.headers_mut() = stored.headers.clone();
    finish_headers(response.headers_mut(), stored, now, status);
    response
}

/// 304 with the headers RFC 9110 §15.4.5 asks for.
fn not_modified(stored: &Stored, now: Instant, status: Option<HeaderValue>) -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = StatusCode::NOT_MODIFIED;
    let headers = response.headers_mut();
    for name in [
        CACHE_CONTROL,
        CONTENT_LOCATION,
        DATE,
        ETAG,
        EXPIRES,
        VARY,
        LAST_MODIFIED,
    ] {
        for value in stored.headers.get_all(&name) {
            headers.append(name.clone(), value.clone());
        }
    }
    finish_headers(headers, stored, now, status);
    response
}

fn finish_headers(
    headers: &mut HeaderMap,
    stored: &Stored,
    now: Instant,
    status: Option<HeaderValue>,
) {
    headers.insert(AGE, HeaderValue::from(stored.age(now).as_secs()));
    if let Some(status) = status {
        headers.insert(CACHE_STATUS, status);
    }
}
