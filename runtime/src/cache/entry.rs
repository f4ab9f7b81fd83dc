//! A stored response and its freshness (RFC 9111 §4.2): lifetime from `s-maxage`, `max-age` or
//! `Expires`, age from the `Age` the worker sent plus the time spent in the cache.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{AGE, DATE, ETAG, EXPIRES, LAST_MODIFIED};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use isola_wire::cache_control::Directives;

/// Which of a deployment's caches an entry belongs to: the response cache in front of it, or
/// one of the caches its code uses through the Cache API. Part of every key, so the spaces
/// never see each other's entries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Space {
    /// The response cache in front of the worker.
    Responses,
    /// `caches.default`.
    Default,
    /// `caches.open(name)`.
    Named(Arc<str>),
}

/// One cached response: what a hit sends, and what decides whether it may.
#[derive(Debug)]
pub(crate) struct Stored {
    /// The deployment that produced it.
    pub(crate) worker: Arc<str>,
    /// The cache it is in.
    pub(crate) space: Space,
    /// Its `Cache-Tag` values (for purges by tag), lower-case.
    pub(crate) tags: Box<[Box<str>]>,
    /// The request URL it answers (the key's hash is only an index).
    pub(crate) url: Box<str>,
    /// The response status.
    pub(crate) status: StatusCode,
    /// The response headers (without `Age`; with `Date`).
    pub(crate) headers: HeaderMap,
    /// The whole body.
    pub(crate) body: Bytes,
    /// The request header values named by `Vary` when stored: a hit needs the same values.
    pub(crate) vary: Box<[(HeaderName, Box<[HeaderValue]>)]>,
    /// When it was stored or last revalidated.
    pub(crate) stored_at: Instant,
    /// Its age when stored (the worker's `Age`, or how old its `Date` was).
    pub(crate) initial_age: Duration,
    /// How long it is fresh, counted from its age 0.
    pub(crate) lifetime: Duration,
    /// The response's `Cache-Control`.
    pub(crate) directives: Directives,
    /// Kept past its freshness for revalidation (it has a validator) this long.
    pub(crate) retention: Duration,
    /// Set while a background revalidation (`stale-while-revalidate`) is under way.
    pub(crate) revalidating: AtomicBool,
}

impl Stored {
    /// The response's age now.
    pub(crate) fn age(&self, now: Instant) -> Duration {
        self.initial_age + now.saturating_duration_since(self.stored_at)
    }

    /// Whole seconds of freshness left now (rounded down); negative once stale.
    pub(crate) fn ttl_s(&self, now: Instant) -> i64 {
        let age = self.age(now);
        if age < self.lifetime {
            secs(self.lifetime - age)
        } else {
            let stale = age - self.lifetime;
            -secs(stale) - i64::from(stale.subsec_nanos() > 0 || stale.is_zero())
        }
    }

    /// Whether it is fresh now.
    pub(crate) fn is_fresh(&self, now: Instant) -> bool {
        self.age(now) < self.lifetime
    }

    /// Whether it may ever be served stale (not with `must-revalidate`, `proxy-revalidate`
    /// or `s-maxage`, RFC 9111 §5.2.2.2/§5.2.2.10).
    pub(crate) fn may_serve_stale(&self) -> bool {
        !self.directives.must_revalidate && self.directives.s_maxage.is_none()
    }

    /// Whether it is stale by no more than `window_s` seconds.
    pub(crate) fn stale_within(&self, now: Instant, window_s: Option<u64>) -> bool {
        window_s.is_some_and(|window| {
            let stale_for = -self.ttl_s(now);
            stale_for <= i64::try_from(window).unwrap_or(i64::MAX)
        })
    }

    /// The `ETag`, if any.
    pub(crate) fn etag(&self) -> Option<&HeaderValue> {
        self.headers.get(ETAG)
    }

    /// The `Last-Modified`, if any.
    pub(crate) fn last_modified(&self) -> Option<&HeaderValue> {
        self.headers.get(LAST_MODIFIED)
    }

    /// Whether it can be revalidated with a conditional request.
    pub(crate) fn has_validator(&self) -> bool {
        self.etag().is_some() || self.last_modified().is_some()
    }

    /// Whether `request`'s values of the `Vary` headers are those it was stored for.
    pub(crate) fn vary_matches(&self, request: &HeaderMap) -> bool {
        self.vary
            .iter()
            .all(|(name, values)| request.get_all(name).iter().eq(values.iter()))
    }

    /// How much longer than now the cache keeps it ([`Stored::keep_for`] from when it was
    /// stored); zero once it is of no more use.
    pub(crate) fn remaining(&self, now: Instant) -> Duration {
        self.keep_for()
            .saturating_sub(now.saturating_duration_since(self.stored_at))
    }

    /// Whether it answers the same request header values as `other` (one replaces the other).
    pub(crate) fn same_variant(&self, other: &Self) -> bool {
        self.vary == other.vary
    }

    /// How long the cache keeps it: its remaining freshness, then as long as it could still
    /// be used stale or revalidated.
    pub(crate) fn keep_for(&self) -> Duration {
        let fresh = self.lifetime.saturating_sub(self.initial_age);
        let stale_s = if self.may_serve_stale() {
            self.directives
                .stale_while_revalidate
                .unwrap_or(0)
                .max(self.directives.stale_if_error.unwrap_or(0))
        } else {
            0
        };
        let stale = Duration::from_secs(stale_s);
        let revalidate = if self.has_validator() {
            self.retention
        } else {
            Duration::ZERO
        };
        fresh + stale.max(revalidate)
    }

    /// Whether the background revalidation is now this caller's to run.
    pub(crate) fn claim_revalidation(&self) -> bool {
        !self.revalidating.swap(true, Ordering::AcqRel)
    }
}

/// The tags of a response's `Cache-Tag` fields (comma-separated, as Cloudflare reads them),
/// trimmed and lower-case; empty ones skipped.
pub(crate) fn tags(headers: &HeaderMap) -> Box<[Box<str>]> {
    headers
        .get_all(CACHE_TAG)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|tag| !tag.is_empty())
        .map(|tag| tag.to_ascii_lowercase().into_boxed_str())
        .collect()
}

/// The response header naming tags for purges by tag.
pub(crate) const CACHE_TAG: HeaderName = HeaderName::from_static("cache-tag");

/// Whole seconds of `d`.
pub(crate) fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// The freshness lifetime a shared cache gives a response (RFC 9111 §4.2.1): `s-maxage`, then
/// `max-age`, then `Expires` − `Date`; `None` when it states none. `no-cache` makes it 0.
pub(crate) fn lifetime(
    directives: &Directives,
    headers: &HeaderMap,
    now: SystemTime,
) -> Option<Duration> {
    let explicit = directives
        .s_maxage
        .or(directives.max_age)
        .map(Duration::from_secs)
        .or_else(|| {
            let expires = headers.get(EXPIRES)?;
            // An unreadable Expires (such as "0") means already expired.
            let Some(expires) = http_date(expires) else {
                return Some(Duration::ZERO);
            };
            let date = headers.get(DATE).and_then(http_date).unwrap_or(now);
            Some(expires.duration_since(date).unwrap_or(Duration::ZERO))
        })?;
    Some(if directives.no_cache {
        Duration::ZERO
    } else {
        explicit
    })
}

/// A response's age when received (RFC 9111 §4.2.3): the larger of its `Age` and how far its
/// `Date` lies in the past.
pub(crate) fn initial_age(headers: &HeaderMap, now: SystemTime) -> Duration {
    let age = headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_secs);
    let apparent = headers
        .get(DATE)
        .and_then(http_date)
        .and_then(|date| now.duration_since(date).ok())
        .unwrap_or(Duration::ZERO);
    age.max(apparent)
}

/// An HTTP date (IMF-fixdate and the obsolete forms).
pub(crate) fn http_date(value: &HeaderValue) -> Option<SystemTime> {
    httpdate::parse_http_date(value.to_str().ok()?).ok()
}
