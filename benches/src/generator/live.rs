//! Running counts for a progress display, read while the load runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use hdrhistogram::Histogram;

use crate::stats::new_histogram;

/// Counters every connection updates, and each connection's latencies since the last
/// [`Live::snapshot`] (each in its own lock, so connections never wait for each other).
#[derive(Default)]
pub struct Live {
    ok: AtomicU64,
    errors: AtomicU64,
    recent: Mutex<Vec<Arc<Mutex<Histogram<u64>>>>>,
}

/// What happened since the previous snapshot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LiveSnapshot {
    /// Successful responses since the start (warm-up included).
    pub ok: u64,
    /// Errors since the start (warm-up included).
    pub errors: u64,
    /// p99 latency (ms) of the responses since the previous snapshot, if any.
    pub recent_p99_ms: Option<f64>,
}

impl Live {
    /// Empty counters.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A recorder for one connection.
    pub(crate) fn recorder(self: &Arc<Self>) -> Recorder {
        let histogram = Arc::new(Mutex::new(new_histogram()));
        self.recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(histogram.clone());
        Recorder {
            live: self.clone(),
            histogram,
        }
    }

    /// Totals so far and the p99 since the previous snapshot (which this resets).
    pub fn snapshot(&self) -> LiveSnapshot {
        let mut merged = new_histogram();
        for histogram in self
            .recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let mut histogram = histogram.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = merged.add(&*histogram);
            histogram.reset();
        }
        LiveSnapshot {
            ok: self.ok.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            recent_p99_ms: (!merged.is_empty())
                .then(|| merged.value_at_quantile(0.99) as f64 / 1000.0),
        }
    }

    /// Counts an error.
    pub(crate) fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// One connection's handle on [`Live`].
pub(crate) struct Recorder {
    live: Arc<Live>,
    histogram: Arc<Mutex<Histogram<u64>>>,
}

impl Recorder {
    /// Counts a success that took `micros`.
    pub fn success(&self, micros: u64) {
        self.live.ok.fetch_add(1, Ordering::Relaxed);
        let mut histogram = self
            .histogram
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let high = histogram.high();
        let _ = histogram.record(micros.clamp(1, high));
    }

    /// Counts an error.
    pub fn error(&self) {
        self.live.error();
    }
}
