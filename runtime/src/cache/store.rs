//! What happens to a worker's response on its way back through the cache: stored when RFC 9111
//! allows it, used to refresh a stale copy (304), or replaced by a stale copy (`stale-if-error`).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Instant, SystemTime};

use http::header::{
    AGE, CONNECTION, CONTENT_LENGTH, DATE, SET_COOKIE, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use isola_bindings::http::{JsResponse, ResponseBody};
use isola_wire::cache_control::Directives;

use super::entry::{self, Stored};
use super::record::Recorder;
use super::{CACHE_STATUS, COUNTERS, Fwd, Pending, ResponseCache};
use crate::body::Body;
use crate::worker::WorkerSource;

/// Headers that describe one connection, never stored.
const HOP_BY_HOP: [HeaderName; 5] = [CONNECTION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE];

impl ResponseCache {
    /// Turns the worker's response to a forwarded request into the client's response, storing
    /// it (a streamed body as it passes) or refreshing the stale copy with it.
    pub(super) fn pass_back(
        &self,
        mut pending: Pending,
        worker: &WorkerSource,
        url: impl FnOnce() -> String,
        js: JsResponse,
    ) -> Response<Body> {
        if pending.validating
            && js.status == StatusCode::NOT_MODIFIED
            && let Some(stale) = &pending.stale
        {
            COUNTERS.revalidated.inc();
            let refreshed = freshen(stale, &js.headers);
            let now = Instant::now();
            let response = super::respond(
                &refreshed,
                now,
                Some(HeaderValue::from_static("isola; fwd=stale; fwd-status=304")),
            );
            self.insert(pending.key, refreshed);
            return response;
        }
        if js.status.is_server_error()
            && let Some(stale) = pending.stale_if_error(js.status)
        {
            return stale;
        }
        if pending.fwd == Fwd::Bypass {
            COUNTERS.bypass.inc();
        } else {
            COUNTERS.miss.inc();
        }
        let too_large = matches!(&js.body, ResponseBody::Full(bytes)
            if bytes.len() as u64 > self.inner.max_object_bytes);
        let template = if pending.store && !too_large {
            self.template(&pending, worker, js.status, &js.headers)
        } else {
            None
        };
        if template.is_none() && pending.flight.is_some() {
            self.inner.flights.pass(pending.key);
        }
        if template.is_none() && pending.stale.is_some() && pending.store {
            // The worker's new answer may not be stored: the old one must not be served.
            self.invalidate(pending.key);
        }
        let JsResponse {
            status,
            mut headers,
            body,
        } = js;
        let stored = template.is_some();
        let body = match (template, body) {
            (None, body) => Body::from(body),
            (Some(mut template), ResponseBody::Full(bytes)) => {
                template.url = url().into_boxed_str();
                template.body = bytes.clone();
                self.insert(pending.key, template);
                Body::Full(Some(bytes))
            }
            (Some(_), ResponseBody::WebSocket(_)) => Body::Empty,
            (Some(mut template), ResponseBody::Empty) => {
                template.url = url().into_boxed_str();
                self.insert(pending.key, template);
                Body::Empty
            }
            (Some(mut template), ResponseBody::Stream(chunks)) => {
                template.url = url().into_boxed_str();
                let recorder = Recorder::new(
                    self.clone(),
                    pending.key,
                    template,
                    self.inner.max_object_bytes,
                    pending.flight.take(),
                );
                Body::Stream(chunks, Some(Box::new(recorder)))
            }
        };
        headers.insert(CACHE_STATUS, forwarded_status(pending.fwd, stored));
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response
    }

    /// The stored form of a response (without URL and body), or `None` when a shared cache
    /// must not or cannot usefully store it (RFC 9111 §3).
    fn template(
        &self,
        pending: &Pending,
        worker: &WorkerSource,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Option<Stored> {
        if status.is_informational()
            || status == StatusCode::PARTIAL_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || headers.contains_key(SET_COOKIE)
        {
            return None;
        }
        let directives = Directives::of(headers);
        if directives.no_store || directives.private {
            return None;
        }
        if !pending.may_use(&directives) {
            return None;
        }
        let wall = SystemTime::now();
        let lifetime = entry::lifetime(&directives, headers, wall)?;
        let vary = isola_wire::vary::names(headers)?;
        let mut stored_headers = headers.clone();
        let has_validator = stored_headers.contains_key(http::header::ETAG)
            || stored_headers.contains_key(http::header::LAST_MODIFIED);
        if lifetime.is_zero() && !has_validator {
            return None;
        }
        worker.cache_hints.note();
        let vary = if vary.is_empty() {
            Box::default()
        } else {
            let request = pending.request_headers.as_ref()?;
            vary.into_iter()
                .map(|name| {
                    let values = request.get_all(&name).iter().cloned().collect();
                    (name, values)
                })
                .collect()
        };
        for name in HOP_BY_HOP {
            stored_headers.remove(name);
        }
        stored_headers.remove(AGE);
        stored_headers.remove(CONTENT_LENGTH);
        if !stored_headers.contains_key(DATE) {
            stored_headers.insert(DATE, date_value(wall));
        }
        Some(Stored {
            worker: Arc::clone(&worker.name),
            space: super::Space::Responses,
            tags: entry::tags(headers),
            url: Box::default(),
            status,
            headers: stored_headers,
            body: bytes::Bytes::new(),
            vary,
            stored_at: Instant::now(),
            initial_age: entry::initial_age(headers, wall),
            lifetime,
            directives,
            retention: self.inner.retention,
            revalidating: AtomicBool::new(false),
        })
    }
}

/// A stale response refreshed by the worker's 304 (RFC 9111 §4.3.4): the 304's headers
/// replace the stored ones of the same name, and its age starts again.
fn freshen(stale: &Stored, update: &HeaderMap) -> Stored {
    let mut headers = stale.headers.clone();
    for name in update.keys() {
        if *name == CONTENT_LENGTH || *name == AGE || HOP_BY_HOP.contains(name) {
            continue;
        }
        headers.remove(name);
        for value in update.get_all(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    let wall = SystemTime::now();
    if !update.contains_key(DATE) {
        headers.insert(DATE, date_value(wall));
    }
    let directives = Directives::of(&headers);
    let lifetime = entry::lifetime(&directives, &headers, wall).unwrap_or_default();
    Stored {
        worker: Arc::clone(&stale.worker),
        space: stale.space.clone(),
        tags: entry::tags(&headers),
        url: stale.url.clone(),
        status: stale.status,
        initial_age: entry::initial_age(update, wall),
        headers,
        body: stale.body.clone(),
        vary: stale.vary.clone(),
        stored_at: Instant::now(),
        lifetime,
        directives,
        retention: stale.retention,
        revalidating: AtomicBool::new(false),
    }
}

/// `Date` for `at`.
pub(super) fn date_value(at: SystemTime) -> HeaderValue {
    HeaderValue::from_str(&httpdate::fmt_http_date(at))
        .unwrap_or_else(|_| HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"))
}

/// `Cache-Status` of a forwarded request.
fn forwarded_status(fwd: Fwd, stored: bool) -> HeaderValue {
    HeaderValue::from_static(match (fwd, stored) {
        (Fwd::Bypass, _) => "isola; fwd=bypass",
        (Fwd::UriMiss, false) => "isola; fwd=uri-miss",
        (Fwd::UriMiss, true) => "isola; fwd=uri-miss; stored",
        (Fwd::VaryMiss, false) => "isola; fwd=vary-miss",
        (Fwd::VaryMiss, true) => "isola; fwd=vary-miss; stored",
        (Fwd::Stale, false) => "isola; fwd=stale",
        (Fwd::Stale, true) => "isola; fwd=stale; stored",
        (Fwd::Request, false) => "isola; fwd=request",
        (Fwd::Request, true) => "isola; fwd=request; stored",
    })
}

impl Stored {
    /// What it costs the cache: body, headers, URL and bookkeeping.
    pub(crate) fn weight(&self) -> u32 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum();
        let total = self.body.len() + headers + self.url.len() + 256;
        u32::try_from(total).unwrap_or(u32::MAX)
    }
}
