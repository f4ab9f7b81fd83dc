//! The Cache API's storage ([`CacheBackend`] for `caches.default` and `caches.open(name)`):
//! one deployment's spaces in the node's response cache, sharing its memory bound, expiry,
//! `Vary` variants and purges. The storage rules are Workers': a `206` or `Vary: *` response
//! is refused (TypeError), a `private`, `no-store` or `Set-Cookie` one, or one with no
//! lifetime left, is silently not stored. The lifetime comes from `s-maxage`, `max-age` or
//! `Expires`, else Cloudflare's default edge TTL for the status.

use std::collections::BTreeSet;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use http::header::{AGE, CONTENT_LENGTH, CONTENT_RANGE, DATE, SET_COOKIE};
use http::{HeaderMap, HeaderValue, StatusCode};
use isola_bindings::cache::{CacheBackend, CachedResponse, PutRefusal};
use isola_wire::cache_control::Directives;
use isola_wire::range::{ByteRange, byte_range};

use super::ResponseCache;
use super::conditional;
use super::entry::{self, Space, Stored};

/// Most cache names one deployment's `caches.keys()` lists.
const MAX_NAMES: usize = 1024;

impl ResponseCache {
    /// The Cache API storage of deployment `worker`, for its isolates.
    pub fn caches_for(&self, worker: &Arc<str>) -> Arc<dyn CacheBackend> {
        Arc::new(WorkerCaches {
            cache: self.clone(),
            worker: Arc::clone(worker),
            names: Mutex::new(BTreeSet::new()),
        })
    }
}

/// One deployment's Cache API caches.
#[derive(Debug)]
struct WorkerCaches {
    cache: ResponseCache,
    worker: Arc<str>,
    /// The names given to `caches.open` (a new version starts with none, its entries purged).
    names: Mutex<BTreeSet<Box<str>>>,
}

fn space(cache: Option<&str>) -> Space {
    cache.map_or(Space::Default, |name| Space::Named(Arc::from(name)))
}

/// Cloudflare's edge TTL for a response that states no lifetime of its own.
fn default_lifetime(status: StatusCode) -> Option<Duration> {
    match status.as_u16() {
        200 | 206 | 301 => Some(Duration::from_secs(120 * 60)),
        302 | 303 => Some(Duration::from_secs(20 * 60)),
        404 | 410 => Some(Duration::from_secs(3 * 60)),
        _ => None,
    }
}

impl WorkerCaches {
    /// The stored form of a `put`, `Ok(None)` when it must not be stored.
    fn stored(
        &self,
        space: Space,
        url: &str,
        request: &HeaderMap,
        response: CachedResponse,
    ) -> Result<Option<Stored>, PutRefusal> {
        let CachedResponse {
            status,
            mut headers,
            body,
        } = response;
        if status == StatusCode::PARTIAL_CONTENT {
            return Err(PutRefusal::Partial);
        }
        let vary = isola_wire::vary::names(&headers).ok_or(PutRefusal::VaryStar)?;
        let limit = self.cache.inner.max_object_bytes;
        if body.len() as u64 > limit {
            return Err(PutRefusal::TooLarge(limit));
        }
        let directives = Directives::of(&headers);
        if directives.no_store
            || directives.private
            || directives.no_cache
            || headers.contains_key(SET_COOKIE)
        {
            return Ok(None);
        }
        let wall = SystemTime::now();
        let Some(lifetime) =
            entry::lifetime(&directives, &headers, wall).or_else(|| default_lifetime(status))
        else {
            return Ok(None);
        };
        let initial_age = entry::initial_age(&headers, wall);
        if lifetime <= initial_age {
            return Ok(None);
        }
        let vary = vary
            .into_iter()
            .map(|name| {
                let values = request.get_all(&name).iter().cloned().collect();
                (name, values)
            })
            .collect();
        headers.remove(AGE);
        headers.remove(CONTENT_LENGTH);
        if !headers.contains_key(DATE) {
            headers.insert(DATE, super::store::date_value(wall));
        }
        Ok(Some(Stored {
            worker: Arc::clone(&self.worker),
            tags: entry::tags(&headers),
            space,
            url: url.into(),
            status,
            headers,
            body,
            vary,
            stored_at: Instant::now(),
            initial_age,
            lifetime,
            directives,
            retention: Duration::ZERO,
            revalidating: AtomicBool::new(false),
        }))
    }
}

impl CacheBackend for WorkerCaches {
    fn max_body_bytes(&self) -> u64 {
        self.cache.inner.max_object_bytes
    }

    fn put(
        &self,
        cache: Option<&str>,
        url: &str,
        request: &HeaderMap,
        response: CachedResponse,
    ) -> Result<bool, PutRefusal> {
        let space = space(cache);
        let key = self.cache.key(&self.worker, &space, url);
        match self.stored(space, url, request, response)? {
            Some(stored) => {
                self.cache.insert(key, stored);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn lookup(
        &self,
        cache: Option<&str>,
        url: &str,
        request: &HeaderMap,
    ) -> Option<CachedResponse> {
        let space = space(cache);
        let key = self.cache.key(&self.worker, &space, url);
        let variants = self
            .cache
            .inner
            .entries
            .get(&key)
            .filter(|v| v.is(&self.worker, &space, url))?;
        let now = Instant::now();
        let stored = variants
            .matching(request, now)
            .filter(|s| s.is_fresh(now))?;
        Some(answer(stored, request, now))
    }

    fn delete(&self, cache: Option<&str>, url: &str) -> bool {
        let space = space(cache);
        let key = self.cache.key(&self.worker, &space, url);
        let entries = &self.cache.inner.entries;
        // Only this deployment's entry goes, even should another's share the key's hash.
        if !entries
            .get(&key)
            .is_some_and(|v| v.is(&self.worker, &space, url))
        {
            return false;
        }
        entries.invalidate(&key);
        true
    }

    fn open(&self, name: &str) {
        let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        if names.len() < MAX_NAMES {
            names.insert(name.into());
        }
    }

    fn has(&self, name: &str) -> bool {
        let names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        names.contains(name)
    }

    fn names(&self) -> Vec<String> {
        let names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        names.iter().map(|name| name.to_string()).collect()
    }

    fn drop_cache(&self, name: &str) -> bool {
        let existed = self
            .names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
        let purged = self
            .cache
            .purge_space(&self.worker, &Space::Named(Arc::from(name)));
        existed || purged > 0
    }
}

/// The stored response as `match` returns it: with its `Age`, 304 to the request's
/// preconditions, the part its `Range` asks for (206) or 416.
fn answer(stored: &Stored, request: &HeaderMap, now: Instant) -> CachedResponse {
    let mut headers = stored.headers.clone();
    headers.insert(AGE, HeaderValue::from(stored.age(now).as_secs()));
    if conditional::not_modified(request, stored) {
        return CachedResponse {
            status: StatusCode::NOT_MODIFIED,
            headers,
            body: bytes::Bytes::new(),
        };
    }
    let len = stored.body.len() as u64;
    let ranged = stored.status == StatusCode::OK;
    match byte_range(request.get(http::header::RANGE).filter(|_| ranged), len) {
        ByteRange::Whole => CachedResponse {
            status: stored.status,
            headers,
            body: stored.body.clone(),
        },
        ByteRange::Part { start, end } => {
            if let Ok(value) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                headers.insert(CONTENT_RANGE, value);
            }
            let (start, end) = (
                usize::try_from(start).unwrap_or(usize::MAX),
                usize::try_from(end).unwrap_or(usize::MAX),
            );
            CachedResponse {
                status: StatusCode::PARTIAL_CONTENT,
                headers,
                body: stored.body.slice(start..=end),
            }
        }
        ByteRange::Unsatisfiable => {
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{len}")) {
                headers.insert(CONTENT_RANGE, value);
            }
            CachedResponse {
                status: StatusCode::RANGE_NOT_SATISFIABLE,
                headers,
                body: bytes::Bytes::new(),
            }
        }
    }
}
