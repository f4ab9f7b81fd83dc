//! One worker version's usage since the ledger last collected it: four atomics that
//! requests add to, and the node-wide list of meters the ledger collects from.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

/// Usage over some time: what a bucket holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Requests a worker ran for.
    pub invocations: u64,
    /// Requests the response cache answered.
    pub cache_hits: u64,
    /// CPU time of the requests' JavaScript, in nanoseconds.
    pub cpu_ns: u64,
    /// `memory_mb` × wall microseconds of each invocation (GB-seconds × 1024 × 10⁶).
    pub mb_us: u64,
}

impl Counts {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &Self) {
        self.invocations = self.invocations.saturating_add(other.invocations);
        self.cache_hits = self.cache_hits.saturating_add(other.cache_hits);
        self.cpu_ns = self.cpu_ns.saturating_add(other.cpu_ns);
        self.mb_us = self.mb_us.saturating_add(other.mb_us);
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// CPU time in milliseconds.
    pub fn cpu_ms(&self) -> f64 {
        self.cpu_ns as f64 / 1e6
    }

    /// GB-seconds.
    pub fn gb_seconds(&self) -> f64 {
        self.mb_us as f64 / 1024.0 / 1e6
    }
}

/// One worker version's counters, added to by its requests and emptied by the ledger.
#[derive(Debug)]
pub struct UsageMeter {
    /// The worker.
    pub worker: Arc<str>,
    /// The version (its id; `config` for a worker from the config file).
    pub version: Arc<str>,
    invocations: AtomicU64,
    cache_hits: AtomicU64,
    cpu_ns: AtomicU64,
    mb_us: AtomicU64,
}

/// Every meter the ledger collects from; a meter leaves once its version is gone and its
/// counts are collected.
static METERS: Mutex<Vec<Arc<UsageMeter>>> = Mutex::new(Vec::new());

impl UsageMeter {
    /// The meter of `version` of `worker`, listed for the ledger.
    pub fn register(worker: Arc<str>, version: Arc<str>) -> Arc<Self> {
        let meter = Arc::new(Self {
            worker,
            version,
            invocations: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            cpu_ns: AtomicU64::new(0),
            mb_us: AtomicU64::new(0),
        });
        let mut meters = METERS.lock().unwrap_or_else(PoisonError::into_inner);
        // Meters of versions gone whose counts were collected (a node without a ledger,
        // as `isola dev`, collects nothing and keeps the few it has).
        meters.retain(|m| Arc::strong_count(m) > 1 || !m.peek().is_empty());
        meters.push(Arc::clone(&meter));
        meter
    }

    /// A request ran in one of the version's isolates for `wall_us` with `memory_mb`.
    pub fn invocation(&self, memory_mb: u64, wall_us: u64) {
        self.invocations.fetch_add(1, Ordering::Relaxed);
        self.mb_us
            .fetch_add(memory_mb.saturating_mul(wall_us), Ordering::Relaxed);
    }

    /// The response cache answered a request for the version.
    pub fn cache_hit(&self) {
        self.cache_hits.fetch_add(1, Ordering::Relaxed);
    }

    /// A finished request's JavaScript used `cpu_ns`.
    pub fn cpu(&self, cpu_ns: u64) {
        self.cpu_ns.fetch_add(cpu_ns, Ordering::Relaxed);
    }

    /// The counts since the last [`UsageMeter::take`], leaving them.
    fn peek(&self) -> Counts {
        Counts {
            invocations: self.invocations.load(Ordering::Relaxed),
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
            cpu_ns: self.cpu_ns.load(Ordering::Relaxed),
            mb_us: self.mb_us.load(Ordering::Relaxed),
        }
    }

    /// The counts since the last call, resetting them.
    fn take(&self) -> Counts {
        Counts {
            invocations: self.invocations.swap(0, Ordering::Relaxed),
            cache_hits: self.cache_hits.swap(0, Ordering::Relaxed),
            cpu_ns: self.cpu_ns.swap(0, Ordering::Relaxed),
            mb_us: self.mb_us.swap(0, Ordering::Relaxed),
        }
    }
}

/// Empties every meter into `sink` (worker, version, counts); drops the meters of versions
/// that are gone.
pub(super) fn drain(mut sink: impl FnMut(&Arc<str>, &Arc<str>, Counts)) {
    let mut meters = METERS.lock().unwrap_or_else(PoisonError::into_inner);
    meters.retain(|meter| {
        let counts = meter.take();
        if !counts.is_empty() {
            sink(&meter.worker, &meter.version, counts);
        }
        Arc::strong_count(meter) > 1
    });
}
