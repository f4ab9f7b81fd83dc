//! One request's way through the cache, as the front end drives it (after Pingora's cache
//! phases): [`ResponseCache::lookup`] answers it ([`Lookup::Hit`]) or sends it on
//! ([`Lookup::Forward`]); the [`Forwarding`] then adds the cache's validators to the request
//! and, once the worker is done, finishes with its response (stored, refreshing a stale copy,
//! or invalidating the URL) or with its failure (`stale-if-error`).

use http::{HeaderMap, Response, StatusCode};
use isola_bindings::http::JsResponse;

use super::{Found, Pending, ResponseCache};
use crate::body::Body;
use crate::worker::WorkerSource;

/// What the cache says about a request before it reaches a worker.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// Answered from the cache: fresh, a 304 to the client's preconditions, or stale while a
    /// background request refreshes it (the [`Revalidation`], when this request claimed it).
    Hit(Response<Body>, Option<Revalidation>),
    /// `only-if-cached` and nothing usable: the answer is 504.
    Unsatisfiable,
    /// Ask the worker, then finish the [`Forwarding`] with its answer.
    Forward(Forwarding<'a>),
}

impl<'a> Lookup<'a> {
    /// The answer for what one look at `cache` found.
    pub(super) fn of(cache: &'a ResponseCache, found: Found) -> Self {
        match found {
            Found::Pass(None) => Self::Forward(Forwarding::around()),
            Found::Pass(Some(key)) => Self::Forward(Forwarding(Route::Invalidating(cache, key))),
            Found::Hit(response) => Self::Hit(response, None),
            Found::Stale(response, revalidate) => Self::Hit(
                response,
                revalidate.map(|pending| Revalidation {
                    cache: cache.clone(),
                    pending,
                }),
            ),
            Found::Unsatisfiable => Self::Unsatisfiable,
            Found::Forward(pending) => Self::Forward(Forwarding(Route::Through(cache, pending))),
        }
    }
}

/// A request on its way to the worker, and what the cache does with the outcome.
#[derive(Debug)]
pub struct Forwarding<'a>(Route<'a>);

#[derive(Debug)]
enum Route<'a> {
    /// Not through the cache: there is none, the worker has it off, or the method is one the
    /// cache leaves alone.
    Around,
    /// An unsafe method: a successful response makes the URL's stored response (this key)
    /// outdated.
    Invalidating(&'a ResponseCache, u64),
    /// GET or HEAD: the response may be stored, refresh the stale copy, or give way to it.
    Through(&'a ResponseCache, Pending),
}

impl Forwarding<'_> {
    /// A request the cache has no part in.
    pub fn around() -> Self {
        Self(Route::Around)
    }

    /// Adds the stored response's validators to the request (RFC 9111 §4.3.1) so the worker
    /// can answer 304; not when the client sent preconditions of its own.
    pub fn add_validators(&mut self, request: &mut HeaderMap) {
        if let Route::Through(_, pending) = &mut self.0 {
            pending.add_validators(request);
        }
    }

    /// The client's response from the worker's `js`: stored (a stream as it passes), a
    /// stale copy refreshed by a 304, or passed on (an unsafe method's success invalidating
    /// its URL). `url` is the request's URL, asked for only when the response is stored.
    pub fn finish(
        self,
        worker: &WorkerSource,
        url: impl FnOnce() -> String,
        js: JsResponse,
    ) -> Response<Body> {
        match self.0 {
            Route::Through(cache, pending) => cache.pass_back(pending, worker, url, js),
            Route::Invalidating(cache, key) if js.status.as_u16() < 400 => {
                cache.invalidate(key);
                passed_on(js)
            }
            Route::Invalidating(..) | Route::Around => passed_on(js),
        }
    }

    /// The worker failed to answer: the stale copy to send instead (`stale-if-error`), if
    /// there is one that may be used. `failed` is the status of the failure, `None` when the
    /// request itself was at fault.
    pub fn fail(self, failed: Option<StatusCode>) -> Option<Response<Body>> {
        match (self.0, failed) {
            (Route::Through(_, pending), Some(status)) => pending.stale_if_error(status),
            _ => None,
        }
    }
}

/// A stale response's background revalidation (`stale-while-revalidate`): a GET like the
/// client's, with the cache's validators, whose response refreshes the stored copy.
#[derive(Debug)]
pub struct Revalidation {
    cache: ResponseCache,
    pending: Pending,
}

impl Revalidation {
    /// Adds the stored response's validators to the revalidating request.
    pub fn add_validators(&mut self, request: &mut HeaderMap) {
        self.pending.add_validators(request);
    }

    /// Stores (or refreshes the stale copy with) the worker's response `js`; its body must
    /// be read to the end for a streamed response to be stored.
    pub fn finish(
        self,
        worker: &WorkerSource,
        url: impl FnOnce() -> String,
        js: JsResponse,
    ) -> Response<Body> {
        self.cache.pass_back(self.pending, worker, url, js)
    }

    /// The revalidation could not finish: a later request tries again.
    pub fn abandon(self) {
        self.pending.abandon();
    }
}

/// The worker's response as it is, for a request the cache does not store.
fn passed_on(js: JsResponse) -> Response<Body> {
    let mut response = Response::new(Body::from(js.body));
    *response.status_mut() = js.status;
    *response.headers_mut() = js.headers;
    response
}
