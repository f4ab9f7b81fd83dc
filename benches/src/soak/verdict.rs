//! Whether a soak run leaked: after the warm-up, resident memory stays within a bounded range,
//! and open file descriptors and threads do not grow.
//!
//! Definitions (samples are one second apart):
//! - warm-up: the first 20 % of the run, at least [`MIN_WARMUP`]; its samples are not judged
//!   (measured on 2 cores: under the soak's mix RSS climbs for 60–90 s, from about 85 to
//!   110 MB, as V8 and glibc's per-thread malloc arenas reach the working set of isolates that
//!   are killed and replaced three times a second);
//! - reference window: the first [`WINDOW`] samples after the warm-up; final window: the last
//!   [`WINDOW`] samples (fds and threads);
//! - RSS: smoothed by a running median of [`SMOOTH`] samples (a quarter of the judged samples
//!   in short runs), which filters memory bombs in flight (a killed isolate holds up to its
//!   `memory_mb` until it is dropped). Runs of bombs caught in step with the sampler (both
//!   once a second) for up to 80 s can still lift it. The smoothed RSS may span at most
//!   [`Limits::rss_band_pct`] of its level (the median of the first [`LEVEL_WINDOW`] samples
//!   after the warm-up) plus [`Limits::rss_headroom_mb`]: the garbage V8 lets the isolates
//!   that serve for the whole run accumulate before a major GC (each collects only once its
//!   old generation has grown by 8 MB past its live size; measured in the 30-minute run: 4
//!   isolates, each cycling between about 4 and 12 MB every 95–275 s, together moving RSS by
//!   20–32 MB with their phases). A span, not a band around the first samples, because that
//!   level falls anywhere in the isolates' GC cycles: a band of ±10 % around it failed runs
//!   whose RSS only cycled, at +27 % or −19 % depending on where the level fell
//!   (benches/README.md).
//!   A leak widens the span for good;
//! - fds and threads: the median of the final window must not exceed the maximum of the
//!   reference window plus a slack (the transient churn the load causes at one instant: see
//!   the runner for how it is sized). A median, not the last sample, so a transient in the
//!   last second neither fails nor hides a leak.

use std::time::Duration;

use serde::Serialize;

use super::sampler::Sample;
use crate::stats::median;

/// Samples in the reference and in the final window.
pub const WINDOW: usize = 10;

/// Samples in the running median RSS is judged by (at most a quarter of the judged ones;
/// odd, so that the median is a sample).
pub const SMOOTH: usize = 61;

/// Samples after the warm-up whose median is the RSS level (at most a quarter of the judged
/// ones).
pub const LEVEL_WINDOW: usize = 300;

/// The shortest warm-up.
pub const MIN_WARMUP: Duration = Duration::from_secs(60);

/// The warm-up of a run of `duration`: 20 % of it, at least [`MIN_WARMUP`].
pub fn warmup(duration: Duration) -> Duration {
    (duration / 5).max(MIN_WARMUP)
}

/// The shortest run that leaves both windows after the warm-up.
pub fn min_duration() -> Duration {
    MIN_WARMUP + Duration::from_secs(2 * WINDOW as u64)
}

/// How much the judged quantities may move.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Limits {
    /// How far the smoothed RSS may range, percent of its level (plus the headroom).
    pub rss_band_pct: f64,
    /// MB the smoothed RSS may range beyond the band: garbage V8 may hold in isolates that
    /// serve for the whole run.
    pub rss_headroom_mb: f64,
    /// File descriptors the final median may exceed the reference maximum by.
    pub fd_slack: u64,
    /// Threads the final median may exceed the reference maximum by.
    pub thread_slack: u64,
}

/// The RSS judgement.
#[derive(Debug, Clone, Serialize)]
pub struct RssCheck {
    /// Median RSS of the first samples after the warm-up ([`LEVEL_WINDOW`]), MB.
    pub level_mb: f64,
    /// Samples in the running median.
    pub smooth_samples: usize,
    /// Lowest and highest smoothed RSS after the warm-up, MB.
    pub smoothed_min_mb: f64,
    /// See `smoothed_min_mb`.
    pub smoothed_max_mb: f64,
    /// How far the smoothed RSS may range: the band's share of the level plus the headroom.
    pub allowed_span_mb: f64,
    /// Lowest and highest RSS after the warm-up, MB (single samples, not smoothed).
    pub min_mb: f64,
    /// See `min_mb`.
    pub max_mb: f64,
    /// The largest deviation of the running median from the level after the warm-up,
    /// percent (signed).
    pub max_deviation_pct: f64,
    /// When it happened, seconds into the run.
    pub max_deviation_at_s: f64,
    /// Median RSS of the last samples ([`LEVEL_WINDOW`]), MB.
    pub final_mb: f64,
    /// `smoothed_max_mb - smoothed_min_mb <= allowed_span_mb`.
    pub passed: bool,
}

/// The judgement of a count that must not grow (fds, threads).
#[derive(Debug, Clone, Serialize)]
pub struct GrowthCheck {
    /// Maximum of the reference window.
    pub reference_max: u64,
    /// Median of the final window.
    pub final_median: u64,
    /// Highest value after the warm-up.
    pub max: u64,
    /// Allowed excess over `reference_max`.
    pub slack: u64,
    /// `final_median <= reference_max + slack`.
    pub passed: bool,
}

/// The verdict of a soak run.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// Seconds of warm-up not judged.
    pub warmup_s: f64,
    /// What was allowed.
    pub limits: Limits,
    /// Resident memory.
    pub rss: RssCheck,
    /// Open file descriptors.
    pub fds: GrowthCheck,
    /// Threads.
    pub threads: GrowthCheck,
    /// Every failed check, in words (empty: passed).
    pub failures: Vec<String>,
}

impl Verdict {
    /// True when no check failed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The samples cannot be judged.
#[derive(Debug, thiserror::Error)]
#[error(
    "{post_warmup} samples after the {warmup_s:.0} s warm-up; at least {needed} are needed (run longer)"
)]
pub struct TooFewSamples {
    /// Samples after the warm-up.
    pub post_warmup: usize,
    /// Seconds of warm-up.
    pub warmup_s: f64,
    /// Samples needed.
    pub needed: usize,
}

/// Judges `samples` (in time order) against `limits`, ignoring the first `warmup`.
pub fn judge(
    samples: &[Sample],
    warmup: Duration,
    limits: Limits,
) -> Result<Verdict, TooFewSamples> {
    let warmup_s = warmup.as_secs_f64();
    let judged: Vec<&Sample> = samples.iter().filter(|s| s.t_s >= warmup_s).collect();
    let needed = 2 * WINDOW;
    if judged.len() < needed {
        return Err(TooFewSamples {
            post_warmup: judged.len(),
            warmup_s,
            needed,
        });
    }
    let reference = &judged[..WINDOW];
    let last = &judged[judged.len() - WINDOW..];

    let level_window = LEVEL_WINDOW.min(judged.len() / 4).max(1);
    let smooth = SMOOTH.min(judged.len() / 4) | 1;
    let level_mb = median(judged[..level_window].iter().map(|s| s.rss_mb));
    let smoothed = running_median(&judged, smooth);
    let deviation = |mb: f64| (mb - level_mb) / level_mb * 100.0;
    let worst = smoothed
        .iter()
        .max_by(|a, b| deviation(a.1).abs().total_cmp(&deviation(b.1).abs()))
        .copied();
    let max_deviation_pct = worst.map_or(0.0, |(_, mb)| deviation(mb));
    let smoothed_min_mb = smoothed.iter().map(|s| s.1).fold(f64::INFINITY, f64::min);
    let smoothed_max_mb = smoothed.iter().map(|s| s.1).fold(0.0, f64::max);
    let allowed_span_mb = level_mb * limits.rss_band_pct / 100.0 + limits.rss_headroom_mb;
    let rss = RssCheck {
        level_mb,
        smooth_samples: smooth,
        smoothed_min_mb,
        smoothed_max_mb,
        allowed_span_mb,
        min_mb: judged
            .iter()
            .map(|s| s.rss_mb)
            .fold(f64::INFINITY, f64::min),
        max_mb: judged.iter().map(|s| s.rss_mb).fold(0.0, f64::max),
        max_deviation_pct,
        max_deviation_at_s: worst.map_or(0.0, |(t_s, _)| t_s),
        final_mb: median(
            judged[judged.len() - level_window..]
                .iter()
                .map(|s| s.rss_mb),
        ),
        passed: smoothed_max_mb - smoothed_min_mb <= allowed_span_mb,
    };
    let growth = |value: fn(&Sample) -> u64, slack: u64| {
        let reference_max = reference.iter().map(|s| value(s)).max().unwrap_or(0);
        let final_median = median(last.iter().map(|s| value(s) as f64)).round() as u64;
        GrowthCheck {
            reference_max,
            final_median,
            max: judged.iter().map(|s| value(s)).max().unwrap_or(0),
            slack,
            passed: final_median <= reference_max + slack,
        }
    };
    let fds = growth(|s| s.fds, limits.fd_slack);
    let threads = growth(|s| s.threads, limits.thread_slack);

    let mut failures = Vec::new();
    if !rss.passed {
        failures.push(format!(
            "RSS ranged too far: its running median of {smooth} went from {smoothed_min_mb:.1} to {smoothed_max_mb:.1} MB ({:.1} MB) after the warm-up, more than {:.0} % of its level {level_mb:.1} MB + {:.0} MB of V8 headroom = {allowed_span_mb:.1} MB",
            smoothed_max_mb - smoothed_min_mb,
            limits.rss_band_pct,
            limits.rss_headroom_mb
        ));
    }
    for (name, check) in [("file descriptors", &fds), ("threads", &threads)] {
        if !check.passed {
            failures.push(format!(
                "{name} grew: {} at the end (median of the last {WINDOW} samples) > {} after the warm-up + {} slack",
                check.final_median, check.reference_max, check.slack
            ));
        }
    }
    Ok(Verdict {
        warmup_s,
        limits,
        rss,
        fds,
        threads,
        failures,
    })
}

/// (time, median RSS) of every run of `smooth` consecutive samples, stamped with the run's
/// last sample.
fn running_median(samples: &[&Sample], smooth: usize) -> Vec<(f64, f64)> {
    samples
        .windows(smooth)
        .filter_map(|run| Some((run.last()?.t_s, median(run.iter().map(|s| s.rss_mb)))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        rss_band_pct: 10.0,
        rss_headroom_mb: 0.0,
        fd_slack: 2,
        thread_slack: 1,
    };

    fn run(seconds: usize, at: impl Fn(usize) -> (f64, u64, u64)) -> Vec<Sample> {
        (0..seconds)
            .map(|i| {
                let (rss_mb, fds, threads) = at(i);
                Sample {
                    t_s: i as f64,
                    rss_mb,
                    fds,
                    threads,
                }
            })
            .collect()
    }

    #[test]
    fn warmup_is_a_fifth_but_at_least_a_minute() {
        assert_eq!(warmup(Duration::from_secs(600)), Duration::from_secs(120));
        assert_eq!(warmup(Duration::from_secs(120)), MIN_WARMUP);
        assert_eq!(min_duration(), Duration::from_secs(80));
    }

    #[test]
    fn a_flat_run_passes_despite_warmup_growth_and_transients() {
        // Growth during the warm-up and a transient spike of fds do not count.
        let samples = run(120, |i| {
            let rss = if i < 24 {
                50.0 + i as f64
            } else {
                100.0 + (i % 3) as f64
            };
            let fds = if i % 17 == 0 { 40 } else { 30 };
            (rss, fds, 20)
        });
        let verdict = judge(&samples, warmup(Duration::from_secs(120)), LIMITS);
        let verdict = verdict.map_err(|e| e.to_string());
        assert!(verdict.as_ref().is_ok_and(|v| v.passed()), "{verdict:?}");
        let rss = verdict.map(|v| v.rss.level_mb).unwrap_or_default();
        assert!((100.0..=102.0).contains(&rss), "{rss}");
    }

    #[test]
    fn growth_fails_each_check() {
        let samples = run(120, |i| {
            (
                100.0 + i as f64 * 0.2,
                30 + i as u64 / 10,
                20 + i as u64 / 30,
            )
        });
        let verdict = judge(&samples, Duration::from_secs(24), LIMITS);
        let failures = verdict.map(|v| v.failures).unwrap_or_default();
        assert_eq!(failures.len(), 3, "{failures:?}");
        assert!(failures[0].starts_with("RSS ranged"), "{failures:?}");
        assert!(
            failures[1].starts_with("file descriptors grew"),
            "{failures:?}"
        );
        assert!(failures[2].starts_with("threads grew"), "{failures:?}");
    }

    #[test]
    fn a_lasting_drop_below_the_band_fails_too() {
        let samples = run(60, |i| (if i >= 50 { 80.0 } else { 100.0 }, 30, 20));
        let verdict = judge(&samples, Duration::from_secs(12), LIMITS);
        assert!(verdict.is_ok_and(|v| !v.rss.passed && v.rss.max_deviation_pct < -19.0));
    }

    #[test]
    fn a_spike_of_one_or_two_samples_is_not_a_leak() {
        // A memory bomb caught in two samples out of five.
        let samples = run(60, |i| (if i % 5 < 2 { 130.0 } else { 100.0 }, 30, 20));
        let verdict = judge(&samples, Duration::from_secs(12), LIMITS);
        assert!(verdict.is_ok_and(|v| v.rss.passed && v.rss.max_mb == 130.0));
    }

    /// Four isolates whose garbage grows by 8 MB and is collected every 100 to 250 s (as
    /// measured under the soak's mix), on top of 80 MB, with a memory bomb of 25 MB in flight
    /// in every other sample for 40 s every two minutes.
    fn cycling(i: usize) -> f64 {
        let garbage: f64 = [100, 150, 200, 250]
            .iter()
            .map(|period| 8.0 * (i % period) as f64 / *period as f64)
            .sum();
        let bomb = if i % 120 < 40 && i.is_multiple_of(2) {
            25.0
        } else {
            0.0
        };
        80.0 + garbage + bomb
    }

    #[test]
    fn garbage_cycling_within_the_headroom_passes() {
        let limits = Limits {
            rss_headroom_mb: 36.0,
            ..LIMITS
        };
        let samples = run(1800, |i| (cycling(i), 30, 20));
        let verdict = judge(&samples, warmup(Duration::from_secs(1800)), limits);
        assert!(
            verdict
                .as_ref()
                .is_ok_and(|v| v.passed() && v.rss.max_mb > 120.0),
            "{verdict:?}"
        );
        // The band alone (the old rule's width) cannot hold it.
        let verdict = judge(&samples, warmup(Duration::from_secs(1800)), LIMITS);
        assert!(verdict.is_ok_and(|v| !v.rss.passed));
    }

    #[test]
    fn a_leak_on_top_of_cycling_garbage_fails() {
        let limits = Limits {
            rss_headroom_mb: 36.0,
            ..LIMITS
        };
        // 2 MB a minute: 48 MB over the 24 judged minutes.
        let samples = run(1800, |i| (cycling(i) + 2.0 * i as f64 / 60.0, 30, 20));
        let verdict = judge(&samples, warmup(Duration::from_secs(1800)), limits);
        let failures = verdict.map(|v| v.failures).unwrap_or_default();
        assert!(
            failures.len() == 1 && failures[0].starts_with("RSS ranged"),
            "{failures:?}"
        );
    }

    #[test]
    fn too_short_a_run_cannot_be_judged() {
        let samples = run(25, |_| (100.0, 30, 20));
        assert!(judge(&samples, MIN_WARMUP, LIMITS).is_err());
    }
}
