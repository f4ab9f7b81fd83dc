//! What one measured run yields: a latency histogram, counts and errors by kind.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded in microseconds, from 1 µs to 100 s, 3 significant digits.
#[allow(
    clippy::expect_used,
    reason = "constant bounds that hdrhistogram always accepts"
)]
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

/// Raw results of a run, merged across connections.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// Latency of successful requests (µs), measured from the intended send time.
    pub latency: Histogram<u64>,
    /// Completed requests in the measured window (successful or not).
    pub requests: u64,
    /// Errors by kind (`connect`, `timeout`, `io`, `status_4xx`, `status_5xx`, `status_other`).
    pub errors: BTreeMap<&'static str, u64>,
    /// Length of the measured window.
    pub elapsed: Duration,
    /// Completed requests per second of the measured window.
    pub timeline: Vec<u64>,
}

impl RunResult {
    /// An empty result.
    pub fn new() -> Self {
        Self {
            latency: new_histogram(),
            requests: 0,
            errors: BTreeMap::new(),
            elapsed: Duration::ZERO,
            timeline: Vec::new(),
        }
    }

    /// Adds another connection's results.
    pub fn merge(&mut self, other: &RunResult) {
        let _ = self.latency.add(&other.latency);
        self.requests += other.requests;
        for (kind, count) in &other.errors {
            *self.errors.entry(kind).or_default() += count;
        }
        if self.timeline.len() < other.timeline.len() {
            self.timeline.resize(other.timeline.len(), 0);
        }
        for (slot, count) in self.timeline.iter_mut().zip(&other.timeline) {
            *slot += count;
        }
    }

    /// Counts an error.
    pub fn error(&mut self, kind: &'static str) {
        *self.errors.entry(kind).or_default() += 1;
    }

    /// Total errors.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The summary that goes into reports.
    pub fn summary(&self) -> Summary {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let ms = |q: f64| self.latency.value_at_quantile(q) as f64 / 1000.0;
        Summary {
            rps: self.requests as f64 / secs,
            requests: self.requests,
            errors: self
                .errors
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            latency_ms: Latency {
                p50: ms(0.5),
                p90: ms(0.9),
                p99: ms(0.99),
                p999: ms(0.999),
                max: self.latency.max() as f64 / 1000.0,
                mean: self.latency.mean() / 1000.0,
            },
            throughput_timeline: self.timeline.clone(),
            server_cpu_ms_per_request: None,
        }
    }
}

impl Default for RunResult {
    fn default() -> Self {
        Self::new()
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest request.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// One run of one target, as reported.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Summary {
    /// Requests per second in the measured window.
    pub rps: f64,
    /// Requests completed in the measured window.
    pub requests: u64,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
    /// Latency percentiles.
    pub latency_ms: Latency,
    /// Requests completed per second.
    pub throughput_timeline: Vec<u64>,
    /// Server CPU time (user + system) per request, when the harness started the server.
    pub server_cpu_ms_per_request: Option<f64>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn merge_and_summarise() {
        let mut a = RunResult::new();
        for us in [1000, 2000, 3000] {
            a.latency.record(us).unwrap();
        }
        a.requests = 3;
        a.timeline = vec![1, 2];
        let mut b = RunResult::new();
        b.latency.record(100_000).unwrap();
        b.requests = 1;
        b.error("status_5xx");
        b.timeline = vec![0, 0, 1];
        a.merge(&b);
        a.elapsed = Duration::from_secs(2);
        let s = a.summary();
        assert_eq!(s.requests, 4);
        assert!((s.rps - 2.0).abs() < 1e-9);
        assert_eq!(s.errors["status_5xx"], 1);
        assert_eq!(s.throughput_timeline, vec![1, 2, 1]);
        assert!((s.latency_ms.p50 - 2.0).abs() < 0.01, "{:?}", s.latency_ms);
        assert!((s.latency_ms.max - 100.0).abs() < 0.1);
    }
}
