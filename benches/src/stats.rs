//! What one measured run yields (latency histogram, counts, errors by kind, throughput per
//! second) and the summary that goes into reports.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::slow_clients::SlowClientStats;

/// Latencies are recorded in microseconds, from 1 µs to 100 s, 3 significant digits.
#[allow(
    clippy::expect_used,
    reason = "constant bounds that hdrhistogram always accepts"
)]
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The TCP connection could not be opened.
    Connect,
    /// The TLS handshake failed.
    Tls,
    /// No complete response within `--timeout` (counted from the request's start).
    Timeout,
    /// The connection failed while sending or receiving.
    Io,
    /// The server answered 4xx.
    Status4xx,
    /// The server answered 5xx.
    Status5xx,
    /// The server answered with a status outside 100–599.
    StatusOther,
    /// Open loop: the request was due while `--max-in-flight` requests were outstanding, so
    /// it was never sent.
    Dropped,
}

impl ErrorKind {
    /// Every kind, in report order.
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::Connect,
        ErrorKind::Tls,
        ErrorKind::Timeout,
        ErrorKind::Io,
        ErrorKind::Status4xx,
        ErrorKind::Status5xx,
        ErrorKind::StatusOther,
        ErrorKind::Dropped,
    ];

    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Tls => "tls",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Io => "io",
            ErrorKind::Status4xx => "status_4xx",
            ErrorKind::Status5xx => "status_5xx",
            ErrorKind::StatusOther => "status_other",
            ErrorKind::Dropped => "dropped",
        }
    }

    /// The error kind of a response status, `None` for success (below 400).
    pub fn of_status(status: u16) -> Option<ErrorKind> {
        match status {
            100..=399 => None,
            400..=499 => Some(ErrorKind::Status4xx),
            500..=599 => Some(ErrorKind::Status5xx),
            _ => Some(ErrorKind::StatusOther),
        }
    }
}

/// Raw results of a run (or of one connection), mergeable.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// Start of the measured window (after warm-up).
    pub measure_from: Instant,
    /// Latency of successful requests (µs), from the request's start to its last byte.
    pub latency: Histogram<u64>,
    /// Successful responses (status below 400) in the measured window.
    pub ok: u64,
    /// Requests that ended in the measured window, successful or not.
    pub requests: u64,
    /// Errors by kind, indexed like [`ErrorKind::ALL`].
    pub errors: [u64; ErrorKind::ALL.len()],
    /// Response body bytes received in the measured window.
    pub response_bytes: u64,
    /// Successful responses per second of the measured window.
    pub timeline: Vec<u64>,
    /// Length of the measured window.
    pub elapsed: Duration,
    /// Open loop: how late the generator's own schedule released a request at worst.
    pub schedule_lag_max: Option<Duration>,
}

impl RunResult {
    /// An empty result whose window starts at `measure_from`.
    pub fn new(measure_from: Instant) -> Self {
        Self {
            measure_from,
            latency: new_histogram(),
            ok: 0,
            requests: 0,
            errors: [0; ErrorKind::ALL.len()],
            response_bytes: 0,
            timeline: Vec::new(),
            elapsed: Duration::ZERO,
            schedule_lag_max: None,
        }
    }

    /// Records a successful request that started at `start` and ended at `done`.
    pub fn success(&mut self, start: Instant, done: Instant, body_bytes: u64) {
        self.requests += 1;
        self.ok += 1;
        self.response_bytes += body_bytes;
        let micros = done.saturating_duration_since(start).as_micros();
        let micros = u64::try_from(micros).unwrap_or(u64::MAX).max(1);
        // Beyond the histogram's 100 s range: clamp rather than lose the sample.
        let high = self.latency.high();
        let _ = self.latency.record(micros.min(high));
        let second = usize::try_from(done.saturating_duration_since(self.measure_from).as_secs())
            .unwrap_or(usize::MAX);
        if second < 100_000 {
            if self.timeline.len() <= second {
                self.timeline.resize(second + 1, 0);
            }
            self.timeline[second] += 1;
        }
    }

    /// Records a failed request.
    pub fn error(&mut self, kind: ErrorKind) {
        self.requests += 1;
        if let Some(slot) = ErrorKind::ALL
            .iter()
            .position(|k| *k == kind)
            .and_then(|i| self.errors.get_mut(i))
        {
            *slot += 1;
        }
    }

    /// Adds another connection's results.
    pub fn merge(&mut self, other: &RunResult) {
        let _ = self.latency.add(&other.latency);
        self.ok += other.ok;
        self.requests += other.requests;
        self.response_bytes += other.response_bytes;
        for (mine, theirs) in self.errors.iter_mut().zip(other.errors) {
            *mine += theirs;
        }
        if self.timeline.len() < other.timeline.len() {
            self.timeline.resize(other.timeline.len(), 0);
        }
        for (slot, count) in self.timeline.iter_mut().zip(&other.timeline) {
            *slot += count;
        }
        self.schedule_lag_max = match (self.schedule_lag_max, other.schedule_lag_max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    /// Ends the measured window after `elapsed`: completions that came later (requests still
    /// in flight at the deadline) count in the window's last second.
    pub fn finish(&mut self, elapsed: Duration) {
        self.elapsed = elapsed;
        let seconds = usize::try_from(elapsed.as_secs_f64().ceil() as u64)
            .unwrap_or(usize::MAX)
            .max(1);
        if self.timeline.len() > seconds {
            let late: u64 = self.timeline.drain(seconds..).sum();
            if let Some(last) = self.timeline.last_mut() {
                *last += late;
            }
        }
    }

    /// Total errors.
    pub fn error_count(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// Errors by kind name, kinds that did not occur left out.
    pub fn errors_by_kind(&self) -> BTreeMap<String, u64> {
        ErrorKind::ALL
            .iter()
            .zip(self.errors)
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| (k.as_str().to_owned(), n))
            .collect()
    }

    /// Latency in milliseconds at quantile `q` (0..=1).
    pub fn latency_ms_at(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    /// The summary that goes into reports.
    pub fn summary(&self) -> Summary {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        Summary {
            rps: self.ok as f64 / secs,
            requests: self.requests,
            errors: self.errors_by_kind(),
            latency_ms: Latency {
                p50: self.latency_ms_at(0.5),
                p90: self.latency_ms_at(0.9),
                p99: self.latency_ms_at(0.99),
                p999: self.latency_ms_at(0.999),
                max: self.latency.max() as f64 / 1000.0,
                mean: self.latency.mean() / 1000.0,
            },
            response_mb_per_s: self.response_bytes as f64 / secs / 1e6,
            throughput_timeline: self.timeline.clone(),
            server_cpu_ms_per_request: None,
            generator_cpu_pct: None,
            schedule_lag_max_ms: self.schedule_lag_max.map(|d| d.as_secs_f64() * 1000.0),
            ratio_vs_baseline: None,
            slow_clients: None,
        }
    }

    /// (quantile, latency ms) points evenly spaced in "nines" (q = 1 − 10^−x, x from 0 to at
    /// most 5, and no further than the samples reach), for the latency-by-percentile plot.
    pub fn percentile_curve(&self) -> Vec<(f64, f64)> {
        if self.latency.is_empty() {
            return Vec::new();
        }
        let reach = (self.latency.len() as f64).log10().clamp(1.0, 5.0);
        (0..=(reach * 100.0).round() as i32)
            .map(|i| {
                let q = 1.0 - 10f64.powf(-f64::from(i) / 100.0);
                (q, self.latency_ms_at(q))
            })
            .collect()
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
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

/// A target's rps and p99 relative to the baseline measured in the same run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Ratio {
    /// target rps / baseline rps (higher is better).
    pub rps: f64,
    /// target p99 / baseline p99 (lower is better).
    pub p99: f64,
}

/// One run of one target, as reported.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// Successful responses (status below 400) per second of the measured window.
    pub rps: f64,
    /// Requests that ended in the measured window, successful or not.
    pub requests: u64,
    /// Errors by kind (`connect`, `tls`, `timeout`, `io`, `status_4xx`, `status_5xx`,
    /// `status_other`, `dropped`); kinds that did not occur are left out.
    pub errors: BTreeMap<String, u64>,
    /// Latency percentiles of successful requests.
    pub latency_ms: Latency,
    /// Response body megabytes (10^6 bytes) per second.
    #[serde(default)]
    pub response_mb_per_s: f64,
    /// Successful responses in each second of the measured window.
    pub throughput_timeline: Vec<u64>,
    /// Server CPU time (all threads, user + system) per request in the measured window, when
    /// the harness started the server.
    pub server_cpu_ms_per_request: Option<f64>,
    /// CPU the load generator's process used, in percent of one core: near 100 × threads
    /// means the generator, not the server, may have been the limit.
    #[serde(default)]
    pub generator_cpu_pct: Option<f64>,
    /// Open loop: the generator's worst lateness in releasing a request (its own timer).
    #[serde(default)]
    pub schedule_lag_max_ms: Option<f64>,
    /// This repeat's rps and p99 against the baseline's same repeat.
    #[serde(default)]
    pub ratio_vs_baseline: Option<Ratio>,
    /// What the slow clients running next to the load achieved (`--slow-clients`).
    #[serde(default)]
    pub slow_clients: Option<SlowClientStats>,
}

impl Summary {
    /// Total errors.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The median of each metric over `repeats` (the timeline comes from the repeat with the
    /// median rps); `None` when there are none.
    pub fn median_of(repeats: &[Summary]) -> Option<Summary> {
        let by_rps = {
            let mut sorted: Vec<&Summary> = repeats.iter().collect();
            sorted.sort_by(|a, b| a.rps.total_cmp(&b.rps));
            *sorted.get(sorted.len().saturating_sub(1) / 2)?
        };
        let med = |f: &dyn Fn(&Summary) -> f64| median(repeats.iter().map(f));
        let med_opt = |f: &dyn Fn(&Summary) -> Option<f64>| {
            let values: Vec<f64> = repeats.iter().filter_map(f).collect();
            (!values.is_empty()).then(|| median(values.into_iter()))
        };
        let mut kinds: Vec<&String> = repeats.iter().flat_map(|r| r.errors.keys()).collect();
        kinds.sort();
        kinds.dedup();
        let errors = kinds
            .into_iter()
            .map(|kind| {
                let n = median(
                    repeats
                        .iter()
                        .map(|r| r.errors.get(kind).copied().unwrap_or(0) as f64),
                );
                (kind.clone(), n.round() as u64)
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        Some(Summary {
            rps: med(&|s| s.rps),
            requests: med(&|s| s.requests as f64).round() as u64,
            errors,
            latency_ms: Latency {
                p50: med(&|s| s.latency_ms.p50),
                p90: med(&|s| s.latency_ms.p90),
                p99: med(&|s| s.latency_ms.p99),
                p999: med(&|s| s.latency_ms.p999),
                max: med(&|s| s.latency_ms.max),
                mean: med(&|s| s.latency_ms.mean),
            },
            response_mb_per_s: med(&|s| s.response_mb_per_s),
            throughput_timeline: by_rps.throughput_timeline.clone(),
            server_cpu_ms_per_request: med_opt(&|s| s.server_cpu_ms_per_request),
            generator_cpu_pct: med_opt(&|s| s.generator_cpu_pct),
            schedule_lag_max_ms: med_opt(&|s| s.schedule_lag_max_ms),
            ratio_vs_baseline: None,
            slow_clients: by_rps.slow_clients,
        })
    }

    /// This summary's rps and p99 relative to `baseline`'s.
    pub fn ratio_to(&self, baseline: &Summary) -> Ratio {
        Ratio {
            rps: self.rps / baseline.rps.max(1e-9),
            p99: self.latency_ms.p99 / baseline.latency_ms.p99.max(1e-9),
        }
    }
}

/// The median of `values` (the mean of the middle two for an even count; 0 when empty).
pub fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn merge_and_summarise() {
        let t0 = Instant::now();
        let mut a = RunResult::new(t0);
        for ms in [1, 2, 3] {
            a.success(t0, t0 + Duration::from_millis(ms), 10);
        }
        let mut b = RunResult::new(t0);
        b.success(t0, t0 + Duration::from_millis(2100), 10);
        b.error(ErrorKind::Status5xx);
        a.merge(&b);
        a.elapsed = Duration::from_secs(2);
        let s = a.summary();
        assert_eq!(s.requests, 5);
        assert!((s.rps - 2.0).abs() < 1e-9, "4 successes in 2 s");
        assert_eq!(s.errors["status_5xx"], 1);
        assert_eq!(s.errors.len(), 1);
        assert_eq!(s.throughput_timeline, vec![3, 0, 1]);
        assert!((s.latency_ms.p50 - 2.0).abs() < 0.01, "{:?}", s.latency_ms);
        assert!(
            (s.latency_ms.max - 2100.0).abs() < 2.0,
            "{:?}",
            s.latency_ms
        );
        assert!((s.response_mb_per_s - 20e-6).abs() < 1e-12);
    }

    #[test]
    fn hdr_percentiles_keep_three_significant_digits() {
        let t0 = Instant::now();
        let mut r = RunResult::new(t0);
        // 990 fast requests (100 µs) and 10 slow ones (50 ms): p99 is fast, p99.9 slow.
        for i in 0..1000u64 {
            let us = if i < 990 { 100 } else { 50_000 };
            r.success(t0, t0 + Duration::from_micros(us), 0);
        }
        assert!((r.latency_ms_at(0.5) - 0.1).abs() < 0.001);
        assert!((r.latency_ms_at(0.99) - 0.1).abs() < 0.001);
        assert!((r.latency_ms_at(0.999) - 50.0).abs() < 0.05);
        let curve = r.percentile_curve();
        assert_eq!(curve.len(), 301, "1000 samples reach 99.9 %");
        assert!(
            curve
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
        );
    }

    #[test]
    fn status_classes() {
        assert_eq!(ErrorKind::of_status(200), None);
        assert_eq!(ErrorKind::of_status(304), None);
        assert_eq!(ErrorKind::of_status(404), Some(ErrorKind::Status4xx));
        assert_eq!(ErrorKind::of_status(503), Some(ErrorKind::Status5xx));
        assert_eq!(ErrorKind::of_status(600), Some(ErrorKind::StatusOther));
    }

    #[test]
    fn median_of_repeats_is_per_metric() {
        let t0 = Instant::now();
        let summary = |rps: f64, p99_ms: u64| {
            let mut r = RunResult::new(t0);
            r.success(t0, t0 + Duration::from_millis(p99_ms), 0);
            r.elapsed = Duration::from_secs(1);
            let mut s = r.summary();
            s.rps = rps;
            s
        };
        let m =
            Summary::median_of(&[summary(100.0, 9), summary(300.0, 1), summary(200.0, 5)]).unwrap();
        assert!((m.rps - 200.0).abs() < 1e-9);
        assert!((m.latency_ms.p99 - 5.0).abs() < 0.01);
        let even = Summary::median_of(&[summary(100.0, 1), summary(200.0, 3)]).unwrap();
        assert!((even.rps - 150.0).abs() < 1e-9);
        assert!(Summary::median_of(&[]).is_none());
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), 2.0);
    }
}
