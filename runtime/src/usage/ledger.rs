//! The node's usage ledger: collects the meters into per-minute buckets and keeps them in the
//! store under `usage/WORKER/MINUTE/VERSION` (MINUTE: whole minutes since the Unix epoch,
//! ten digits so keys sort by time), each value the JSON of its [`Counts`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::meter::{self, Counts};
use super::{FLUSH_INTERVAL, KEPT_MINUTES, current_minute};
use crate::store::{Batch, Store, StoreError};

/// One minute of one version's usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// Whole minutes since the Unix epoch.
    pub minute: u64,
    /// The version's id (`config` for a config file's worker).
    pub version: String,
    /// What it used in that minute.
    pub counts: Counts,
}

/// Worker, minute, version.
type PendingKey = (Arc<str>, u64, Arc<str>);

/// Collected usage not yet in the store, and the store it goes to.
#[derive(Debug)]
pub struct Ledger {
    store: Arc<dyn Store>,
    pending: Mutex<BTreeMap<PendingKey, Counts>>,
    /// Held while collected minutes move into the store, so a query counts each once.
    flushing: Mutex<()>,
}

/// How often meters are collected into the current minute.
const COLLECT_INTERVAL: Duration = Duration::from_secs(1);

/// How often buckets older than [`KEPT_MINUTES`] are removed.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn key(worker: &str, minute: u64, version: &str) -> String {
    format!("usage/{worker}/{minute:010}/{version}")
}

fn worker_prefix(worker: &str) -> String {
    format!("usage/{worker}/")
}

/// The minute and version of a key under `prefix`.
fn parse_key<'a>(key: &'a [u8], prefix: &str) -> Option<(u64, &'a str)> {
    let rest = std::str::from_utf8(key).ok()?.strip_prefix(prefix)?;
    let (minute, version) = rest.split_once('/')?;
    Some((minute.parse().ok()?, version))
}

fn decode(key: &[u8], value: &[u8]) -> Counts {
    serde_json::from_slice(value).unwrap_or_else(|error| {
        tracing::warn!(
            key = %String::from_utf8_lossy(key),
            "an unreadable usage record counts as empty: {error}"
        );
        Counts::default()
    })
}

impl Ledger {
    /// A ledger keeping its buckets in `store`.
    pub fn new(store: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            store,
            pending: Mutex::new(BTreeMap::new()),
            flushing: Mutex::new(()),
        })
    }

    /// Empties every meter into the current minute.
    pub fn collect(&self) {
        self.collect_at(current_minute());
    }

    /// Empties every meter into `minute`.
    pub(super) fn collect_at(&self, minute: u64) {
        let mut pending = lock(&self.pending);
        meter::drain(|worker, version, counts| {
            pending
                .entry((Arc::clone(worker), minute, Arc::clone(version)))
                .or_default()
                .add(&counts);
        });
    }

    /// Collects, then adds the collected minutes to the store in one batch (blocking: it
    /// waits for the disk). On failure they stay pending for the next flush.
    pub fn flush(&self) -> Result<(), StoreError> {
        let _flushing = lock(&self.flushing);
        self.collect();
        let taken = std::mem::take(&mut *lock(&self.pending));
        if taken.is_empty() {
            return Ok(());
        }
        let result = self.write(&taken);
        if result.is_err() {
            let mut pending = lock(&self.pending);
            for (key, counts) in taken {
                pending.entry(key).or_default().add(&counts);
            }
        }
        result
    }

    fn write(&self, taken: &BTreeMap<PendingKey, Counts>) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        for ((worker, minute, version), counts) in taken {
            let key = key(worker, *minute, version);
            let mut total = match self.store.get(key.as_bytes())? {
                Some(value) => decode(key.as_bytes(), &value),
                None => Counts::default(),
            };
            total.add(counts);
            batch.put(key, serde_json::to_vec(&total).unwrap_or_default());
        }
        self.store.commit(&batch)
    }

    /// Removes buckets older than [`KEPT_MINUTES`] before minute `now` (blocking).
    pub fn prune(&self, now: u64) -> Result<usize, StoreError> {
        let _flushing = lock(&self.flushing);
        let oldest = now.saturating_sub(KEPT_MINUTES);
        lock(&self.pending).retain(|(_, minute, _), _| *minute >= oldest);
        let mut batch = Batch::default();
        for (key, _) in self.store.scan(b"usage/")? {
            let minute = std::str::from_utf8(&key)
                .ok()
                .and_then(|k| k.split('/').nth(2))
                .and_then(|m| m.parse::<u64>().ok());
            if minute.is_none_or(|m| m < oldest) {
                batch.delete(key);
            }
        }
        let removed = batch.changes().len();
        if removed > 0 {
            self.store.commit(&batch)?;
        }
        Ok(removed)
    }

    /// `worker`'s buckets of minutes `from..to`, stored or pending, by minute and version
    /// (blocking).
    pub fn query(&self, worker: &str, from: u64, to: u64) -> Result<Vec<Bucket>, StoreError> {
        let _flushing = lock(&self.flushing);
        self.collect();
        let prefix = worker_prefix(worker);
        let mut buckets: BTreeMap<(u64, String), Counts> = BTreeMap::new();
        for (key, value) in self.store.scan(prefix.as_bytes())? {
            if let Some((minute, version)) = parse_key(&key, &prefix)
                && (from..to).contains(&minute)
            {
                buckets
                    .entry((minute, version.to_owned()))
                    .or_default()
                    .add(&decode(&key, &value));
            }
        }
        for ((w, minute, version), counts) in lock(&self.pending).iter() {
            if &**w == worker && (from..to).contains(minute) {
                buckets
                    .entry((*minute, version.to_string()))
                    .or_default()
                    .add(counts);
            }
        }
        Ok(buckets
            .into_iter()
            .map(|((minute, version), counts)| Bucket {
                minute,
                version,
                counts,
            })
            .collect())
    }

    /// Removes all of a deleted `worker`'s usage (blocking).
    pub fn forget(&self, worker: &str) -> Result<(), StoreError> {
        let _flushing = lock(&self.flushing);
        self.collect();
        lock(&self.pending).retain(|(w, _, _), _| &**w != worker);
        let mut batch = Batch::default();
        for (key, _) in self.store.scan(worker_prefix(worker).as_bytes())? {
            batch.delete(key);
        }
        if !batch.changes().is_empty() {
            self.store.commit(&batch)?;
        }
        Ok(())
    }

    /// Collects every second, flushes every [`FLUSH_INTERVAL`] and prunes every hour, until
    /// the process ends.
    pub async fn run(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(COLLECT_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let flush_every = FLUSH_INTERVAL.as_secs().max(1);
        let prune_every = PRUNE_INTERVAL.as_secs();
        let mut tick: u64 = 0;
        loop {
            ticks.tick().await;
            if tick.is_multiple_of(prune_every) {
                let ledger = Arc::clone(&self);
                match tokio::task::spawn_blocking(move || ledger.prune(current_minute())).await {
                    Ok(Ok(removed)) if removed > 0 => {
                        tracing::info!(removed, "old usage buckets removed");
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => tracing::error!("cannot prune usage: {error}"),
                    Err(error) => tracing::error!("usage pruning stopped: {error}"),
                }
            } else if tick.is_multiple_of(flush_every) {
                self.flush_async().await;
            } else {
                self.collect();
            }
            tick += 1;
        }
    }

    /// [`Ledger::flush`] on a blocking thread, logging a failure.
    pub async fn flush_async(self: &Arc<Self>) {
        let ledger = Arc::clone(self);
        match tokio::task::spawn_blocking(move || ledger.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!("cannot write usage to the store: {error}"),
            Err(error) => tracing::error!("usage writing stopped: {error}"),
        }
    }
}
