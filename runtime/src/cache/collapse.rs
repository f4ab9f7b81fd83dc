//! Request collapsing: concurrent misses for one URL go to the worker once; the other requests
//! wait for that response to be stored (or found not storable) and look again. Only for
//! workers that have sent cacheable responses, so that a worker whose responses are never
//! cached pays nothing for it; a URL whose response was not storable is not collapsed for a
//! while ("hit-for-pass"), so its concurrent requests are not serialised.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use super::ResponseCache;

/// How long a URL whose response could not be stored is not collapsed.
const PASS_FOR: Duration = Duration::from_secs(120);
/// Most URLs remembered as not storable.
const MAX_PASSES: u64 = 65_536;

/// The requests in flight to a worker for a cacheable URL, by key.
pub(crate) struct Flights {
    next_id: AtomicU64,
    by_key: Mutex<HashMap<u64, (u64, watch::Receiver<()>)>>,
    /// Keys whose last response was not storable.
    passes: moka::sync::Cache<u64, ()>,
}

impl std::fmt::Debug for Flights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flights").finish_non_exhaustive()
    }
}

/// The first request for a key: the others wait until this is dropped, which happens once
/// its response is stored or known not to be storable (or the request failed).
#[derive(Debug)]
pub struct Flight {
    cache: ResponseCache,
    key: u64,
    id: u64,
    _done: watch::Sender<()>,
}

/// A request waiting for another one's response.
#[derive(Debug)]
pub struct Waiter(watch::Receiver<()>);

impl Waiter {
    /// Waits for the leading request to finish, at most `limit`.
    pub async fn wait(mut self, limit: Duration) {
        // The sender is never used to send: `changed` returns when it is dropped.
        let _ = tokio::time::timeout(limit, self.0.changed()).await;
    }
}

/// Whether a request leads, follows or goes on alone.
pub(crate) enum Join {
    Lead(Flight),
    Follow(Waiter),
    Alone,
}

impl Flights {
    pub(crate) fn new() -> Self {
        Self {
            next_id: AtomicU64::new(0),
            by_key: Mutex::new(HashMap::new()),
            passes: moka::sync::Cache::builder()
                .max_capacity(MAX_PASSES)
                .time_to_live(PASS_FOR)
                .build(),
        }
    }

    /// Remembers that the response for `key` could not be stored.
    pub(crate) fn pass(&self, key: u64) {
        self.passes.insert(key, ());
    }

    /// Forgets that: a response for `key` was stored.
    pub(crate) fn unpass(&self, key: u64) {
        self.passes.invalidate(&key);
    }

    pub(crate) fn join(&self, cache: &ResponseCache, key: u64) -> Join {
        if self.passes.contains_key(&key) {
            return Join::Alone;
        }
        let mut by_key = self.by_key.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, done)) = by_key.get(&key) {
            return Join::Follow(Waiter(done.clone()));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = watch::channel(());
        by_key.insert(key, (id, receiver));
        Join::Lead(Flight {
            cache: cache.clone(),
            key,
            id,
            _done: sender,
        })
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        let flights = &self.cache.inner.flights;
        let mut by_key = flights
            .by_key
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if by_key.get(&self.key).is_some_and(|(id, _)| *id == self.id) {
            by_key.remove(&self.key);
        }
    }
}
