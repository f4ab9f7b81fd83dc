//! The JSON report (schema version 1) and the terminal table.

use std::fmt::Write as _;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::stats::Summary;

/// Bumped when the JSON's shape changes incompatibly.
pub const SCHEMA_VERSION: u32 = 1;

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
    /// The settings the run used.
    pub settings: serde_json::Value,
    /// Results per target.
    pub targets: Vec<TargetReport>,
}

/// The machine a report comes from; runs from different machines are not comparable.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Machine {
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// Logical cores.
    pub cores: usize,
    /// Host name.
    pub hostname: String,
}

/// One target's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetReport {
    /// `isola`, `baseline`, or a peer's name.
    pub name: String,
    /// What was measured.
    pub url: String,
    /// Every repeat.
    pub repeats: Vec<Summary>,
    /// The repeat with the median rps.
    pub median: Summary,
    /// Median rps and p99 relative to the baseline's (rps: higher is better; p99: lower).
    pub ratio_vs_baseline: Option<Ratio>,
}

/// Ratios against the baseline measured in the same run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Ratio {
    /// target rps / baseline rps.
    pub rps: f64,
    /// target p99 / baseline p99.
    pub p99: f64,
}

impl TargetReport {
    /// Builds a target's report from its repeats.
    pub fn new(name: &str, url: &str, repeats: Vec<Summary>) -> Self {
        let mut sorted = repeats.clone();
        sorted.sort_by(|a, b| a.rps.total_cmp(&b.rps));
        let median = sorted
            .get(sorted.len() / 2)
            .cloned()
            .unwrap_or_else(|| crate::stats::RunResult::new().summary());
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
    /// Fills every target's ratio against the target named `baseline`.
    pub fn compute_ratios(&mut self) {
        let Some(base) = self
            .targets
            .iter()
            .find(|t| t.name == "baseline")
            .map(|t| t.median.clone())
        else {
            return;
        };
        for target in &mut self.targets {
            target.ratio_vs_baseline = Some(Ratio {
                rps: target.median.rps / base.rps.max(1e-9),
                p99: target.median.latency_ms.p99 / base.latency_ms.p99.max(1e-9),
            });
        }
    }

    /// A table of the medians, targets side by side.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<12} {:>10} {:>8} {:>8} {:>8} {:>9} {:>9} {:>7} {:>11} {:>11}",
            "target",
            "rps",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "errors",
            "cpu ms/req",
            "vs baseline"
        );
        for t in &self.targets {
            let m = &t.median;
            let cpu = m
                .server_cpu_ms_per_request
                .map_or_else(|| "-".to_owned(), |c| format!("{c:.4}"));
            let ratio = t
                .ratio_vs_baseline
                .map_or_else(|| "-".to_owned(), |r| format!("{:.2}x", r.rps));
            let errors: u64 = m.errors.values().sum();
            let _ = writeln!(
                out,
                "{:<12} {:>10.0} {:>8.3} {:>8.3} {:>8.3} {:>9.3} {:>9.3} {:>7} {:>11} {:>11}",
                t.name,
                m.rps,
                m.latency_ms.p50,
                m.latency_ms.p90,
                m.latency_ms.p99,
                m.latency_ms.p999,
                m.latency_ms.max,
                errors,
                cpu,
                ratio
            );
        }
        out
    }
}

/// Facts about this machine.
pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "unknown".to_owned(), |h| h.trim().to_owned());
    Machine {
        cpu_model,
        cores,
        hostname,
    }
}

/// The current git commit, if the working directory is a checkout.
pub fn git_sha() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `SystemTime::now()` as RFC 3339 UTC (days-from-civil, no calendar crate needed).
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_shape() {
        let now = now_rfc3339();
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.starts_with("20"), "{now}");
        assert!(now.ends_with('Z'));
    }
}
