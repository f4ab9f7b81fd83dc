//! The JSON report (schema version 1): machine, settings, and per target every repeat, the
//! median of the repeats and the ratios against the baseline measured in the same run.

use serde::{Deserialize, Serialize};

use crate::machine::Machine;
use crate::stats::{Ratio, Summary};

/// Bumped when the JSON's shape changes incompatibly.
pub const SCHEMA_VERSION: u32 = 1;

/// The name of the raw hyper baseline target.
pub const BASELINE: &str = "baseline";

/// A whole benchmark run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// `git rev-parse HEAD` of the working directory, if any.
    pub git_sha: Option<String>,
    /// Where it ran.
    pub machine: Machine,
    /// Start time, RFC 3339 UTC.
    pub started_at: String,
    /// Every setting the run used.
    pub settings: serde_json::Value,
    /// Results per target, the baseline first.
    pub targets: Vec<TargetReport>,
    /// Warnings about the run (e.g. the generator was CPU-bound).
    #[serde(default)]
    pub notes: Vec<String>,
}

/// One target's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetReport {
    /// `baseline`, `isola`, `deno`, `target` (for `--url`) or a peer's name.
    pub name: String,
    /// What was measured.
    pub url: String,
    /// Every repeat, in order.
    pub repeats: Vec<Summary>,
    /// The median of each metric over the repeats.
    pub median: Summary,
    /// The medians' rps and p99 relative to the baseline's medians.
    pub ratio_vs_baseline: Option<Ratio>,
}

impl TargetReport {
    /// A target's report from its repeats (ratios are filled by [`Report::new`]).
    pub fn new(name: &str, url: &str, repeats: Vec<Summary>) -> Self {
        let median = Summary::median_of(&repeats)
            .unwrap_or_else(|| crate::stats::RunResult::new(std::time::Instant::now()).summary());
        Self {
            name: name.to_owned(),
            url: url.to_owned(),
            repeats,
            median,
            ratio_vs_baseline: None,
        }
    }
}

impl Report {
    /// A report of `targets` measured on this machine now, with ratios against the target
    /// named [`BASELINE`] (per repeat, and of the medians).
    pub fn new(settings: serde_json::Value, targets: Vec<TargetReport>) -> Self {
        let mut report = Self {
            schema_version: SCHEMA_VERSION,
            git_sha: crate::machine::git_sha(),
            machine: Machine::current(),
            started_at: crate::machine::now_rfc3339(),
            settings,
            targets,
            notes: Vec::new(),
        };
        report.compute_ratios();
        report
    }

    /// The baseline's results, if it was measured.
    pub fn baseline(&self) -> Option<&TargetReport> {
        self.targets.iter().find(|t| t.name == BASELINE)
    }

    /// Fills every target's ratios against the baseline.
    pub fn compute_ratios(&mut self) {
        let Some(base) = self.baseline().cloned() else {
            return;
        };
        for target in &mut self.targets {
            target.ratio_vs_baseline = Some(target.median.ratio_to(&base.median));
            for (repeat, base_repeat) in target.repeats.iter_mut().zip(&base.repeats) {
                repeat.ratio_vs_baseline = Some(repeat.ratio_to(base_repeat));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::{Duration, Instant};

    use super::*;
    use crate::stats::RunResult;

    fn summary(rps: f64, p99_ms: u64) -> Summary {
        let t0 = Instant::now();
        let mut r = RunResult::new(t0);
        r.success(t0, t0 + Duration::from_millis(p99_ms), 0);
        r.finish(Duration::from_secs(1));
        let mut s = r.summary();
        s.rps = rps;
        s
    }

    #[test]
    fn ratios_per_repeat_and_of_medians() {
        let report = Report::new(
            serde_json::json!({}),
            vec![
                TargetReport::new(
                    BASELINE,
                    "http://b/",
                    vec![summary(1000.0, 1), summary(2000.0, 1)],
                ),
                TargetReport::new(
                    "isola",
                    "http://i/",
                    vec![summary(500.0, 2), summary(500.0, 4)],
                ),
            ],
        );
        let isola = &report.targets[1];
        let median = isola.ratio_vs_baseline.unwrap();
        assert!((median.rps - 500.0 / 1500.0).abs() < 1e-9);
        assert!((median.p99 - 3.0).abs() < 0.01);
        assert!((isola.repeats[0].ratio_vs_baseline.unwrap().rps - 0.5).abs() < 1e-9);
        assert!((isola.repeats[1].ratio_vs_baseline.unwrap().rps - 0.25).abs() < 1e-9);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["schema_version"], 1);
        assert!(json["targets"][1]["repeats"][0]["latency_ms"]["p999"].is_number());
        let back: Report = serde_json::from_value(json).unwrap();
        assert_eq!(back.targets.len(), 2);
    }
}
