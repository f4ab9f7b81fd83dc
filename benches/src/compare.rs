//! `compare a.json b.json`: per target and metric, the change from run A to run B using the
//! medians of repeats; flags regressions (rps down, latency up) beyond a threshold.

use std::fmt::Write as _;

use crate::report::Report;

/// A metric that got worse by more than the threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Regression {
    /// Target name.
    pub target: String,
    /// Metric name.
    pub metric: &'static str,
    /// How much worse, in percent.
    pub worse_by_pct: f64,
}

/// The outcome of a comparison.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// A table of every metric of every target present in both runs.
    pub table: String,
    /// Metrics worse than the threshold.
    pub regressions: Vec<Regression>,
    /// Things that make the runs less comparable (different settings, missing targets).
    pub warnings: Vec<String>,
}

/// Runs from different machines measure different things.
#[derive(Debug, thiserror::Error)]
#[error("the runs come from different machines ({a} vs {b}); pass --force to compare anyway")]
pub struct DifferentMachines {
    a: String,
    b: String,
}

/// (name, value, higher is better) for the metrics compared.
fn metrics(s: &crate::stats::Summary) -> [(&'static str, f64, bool); 6] {
    [
        ("rps", s.rps, true),
        ("p50_ms", s.latency_ms.p50, false),
        ("p90_ms", s.latency_ms.p90, false),
        ("p99_ms", s.latency_ms.p99, false),
        ("p999_ms", s.latency_ms.p999, false),
        ("max_ms", s.latency_ms.max, false),
    ]
}

/// How much worse `b` is than `a` in percent (negative: better).
pub fn worse_by_pct(a: f64, b: f64, higher_is_better: bool) -> f64 {
    if a == 0.0 {
        return 0.0;
    }
    let change = (b - a) / a * 100.0;
    if higher_is_better { -change } else { change }
}

/// Compares `b` against `a`. `max_ms` is shown but never flagged (one slow request is noise).
pub fn compare(
    a: &Report,
    b: &Report,
    threshold_pct: f64,
    force: bool,
) -> Result<Comparison, DifferentMachines> {
    if a.machine != b.machine && !force {
        return Err(DifferentMachines {
            a: a.machine.describe(),
            b: b.machine.describe(),
        });
    }
    let mut warnings = Vec::new();
    if a.machine != b.machine {
        warnings.push(format!(
            "different machines: {} vs {}",
            a.machine.describe(),
            b.machine.describe()
        ));
    }
    if a.settings != b.settings {
        warnings.push(format!(
            "different settings:\n  a: {}\n  b: {}",
            a.settings, b.settings
        ));
    }
    let mut table = String::new();
    let mut regressions = Vec::new();
    let _ = writeln!(
        table,
        "{:<12} {:<16} {:>12} {:>12} {:>9}",
        "target", "metric", "a", "b", "change"
    );
    for target_b in &b.targets {
        let Some(target_a) = a.targets.iter().find(|t| t.name == target_b.name) else {
            warnings.push(format!("target {} is only in b", target_b.name));
            continue;
        };
        for ((metric, va, higher_is_better), (_, vb, _)) in metrics(&target_a.median)
            .into_iter()
            .zip(metrics(&target_b.median))
        {
            let worse = worse_by_pct(va, vb, higher_is_better);
            let flagged = worse > threshold_pct && metric != "max_ms";
            let change = if va == 0.0 {
                0.0
            } else {
                (vb - va) / va * 100.0
            };
            let _ = writeln!(
                table,
                "{:<12} {:<16} {:>12.3} {:>12.3} {:>+8.1}%{}",
                target_b.name,
                metric,
                va,
                vb,
                change,
                if flagged { "  REGRESSION" } else { "" }
            );
            if flagged {
                regressions.push(Regression {
                    target: target_b.name.clone(),
                    metric,
                    worse_by_pct: worse,
                });
            }
        }
        if let (Some(ra), Some(rb)) = (target_a.ratio_vs_baseline, target_b.ratio_vs_baseline)
            && target_b.name != crate::report::BASELINE
        {
            let _ = writeln!(
                table,
                "{:<12} {:<16} {:>11.3}x {:>11.3}x {:>+8.1}%  (informational)",
                target_b.name,
                "rps_vs_baseline",
                ra.rps,
                rb.rps,
                if ra.rps == 0.0 {
                    0.0
                } else {
                    (rb.rps - ra.rps) / ra.rps * 100.0
                }
            );
        }
    }
    for target_a in &a.targets {
        if !b.targets.iter().any(|t| t.name == target_a.name) {
            warnings.push(format!("target {} is only in a", target_a.name));
        }
    }
    Ok(Comparison {
        table,
        regressions,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::Machine;
    use crate::report::TargetReport;
    use crate::stats::RunResult;

    fn report(rps: f64, p99_us: u64) -> Report {
        let t0 = std::time::Instant::now();
        let mut run = RunResult::new(t0);
        run.success(t0, t0 + std::time::Duration::from_micros(p99_us), 0);
        run.finish(std::time::Duration::from_secs(1));
        let mut summary = run.summary();
        summary.rps = rps;
        Report {
            schema_version: 1,
            git_sha: None,
            machine: Machine {
                cpu_model: "cpu".into(),
                cores: 2,
                hostname: "h".into(),
            },
            started_at: String::new(),
            settings: serde_json::Value::Null,
            targets: vec![TargetReport::new("isola", "http://x/", vec![summary])],
            notes: Vec::new(),
        }
    }

    #[test]
    fn flags_a_ten_percent_rps_drop_but_not_two() -> Result<(), DifferentMachines> {
        let base = report(1000.0, 1000);
        let ten = compare(&base, &report(900.0, 1000), 5.0, false)?;
        assert_eq!(ten.regressions.len(), 1, "{}", ten.table);
        assert_eq!(ten.regressions[0].metric, "rps");
        assert!((ten.regressions[0].worse_by_pct - 10.0).abs() < 1e-9);
        let two = compare(&base, &report(980.0, 1000), 5.0, false)?;
        assert!(two.regressions.is_empty(), "{}", two.table);
        let faster = compare(&base, &report(2000.0, 500), 5.0, false)?;
        assert!(
            faster.regressions.is_empty(),
            "improvements are not regressions"
        );
        Ok(())
    }

    #[test]
    fn flags_latency_increases() -> Result<(), DifferentMachines> {
        let slower = compare(&report(1000.0, 1000), &report(1000.0, 2000), 5.0, false)?;
        let metrics: Vec<&str> = slower.regressions.iter().map(|r| r.metric).collect();
        assert!(metrics.contains(&"p99_ms"), "{metrics:?}");
        assert!(!metrics.contains(&"max_ms"), "max is never flagged");
        Ok(())
    }

    #[test]
    fn refuses_other_machines_unless_forced() {
        let a = report(1000.0, 1000);
        let mut b = report(1000.0, 1000);
        b.machine.cores = 64;
        assert!(compare(&a, &b, 5.0, false).is_err());
        let forced = compare(&a, &b, 5.0, true);
        assert!(forced.is_ok_and(|c| !c.warnings.is_empty()));
    }

    #[test]
    fn percent_worse() {
        assert!((worse_by_pct(100.0, 90.0, true) - 10.0).abs() < 1e-9);
        assert!((worse_by_pct(100.0, 90.0, false) + 10.0).abs() < 1e-9);
        assert_eq!(worse_by_pct(0.0, 5.0, false), 0.0);
    }
}
