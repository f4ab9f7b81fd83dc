//! `compare a.json b.json`: per target and metric, the change from run A to run B using the
//! medians of repeats; flags regressions beyond a threshold.

use std::fmt::Write as _;

use crate::report::Report;

/// A metric that got worse by more than the threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Regression {
    /// Target name.
    pub target: String,
    /// Metric name.
    pub metric: &'static str,
    /// Change in percent (positive: worse).
    pub worse_by_pct: f64,
}

/// Runs from different machines measure different things.
#[derive(Debug, thiserror::Error)]
#[error("the runs come from different machines ({a} vs {b}); pass --force to compare anyway")]
pub struct DifferentMachines {
    a: String,
    b: String,
}

/// Compares `b` against `a`; returns the table and the regressions beyond `threshold_pct`.
pub fn compare(
    a: &Report,
    b: &Report,
    threshold_pct: f64,
    force: bool,
) -> Result<(String, Vec<Regression>), DifferentMachines> {
    if a.machine != b.machine && !force {
        let describe = |r: &Report| {
            format!(
                "{} × {} on {}",
                r.machine.cores, r.machine.cpu_model, r.machine.hostname
            )
        };
        return Err(DifferentMachines {
            a: describe(a),
            b: describe(b),
        });
    }
    let mut table = String::new();
    let mut regressions = Vec::new();
    let _ = writeln!(
        table,
        "{:<12} {:<10} {:>12} {:>12} {:>9}",
        "target", "metric", "a", "b", "change"
    );
    for target_b in &b.targets {
        let Some(target_a) = a.targets.iter().find(|t| t.name == target_b.name) else {
            continue;
        };
        let (ma, mb) = (&target_a.median, &target_b.median);
        // (name, a, b, higher is better)
        let metrics = [
            ("rps", ma.rps, mb.rps, true),
            ("p50_ms", ma.latency_ms.p50, mb.latency_ms.p50, false),
            ("p90_ms", ma.latency_ms.p90, mb.latency_ms.p90, false),
            ("p99_ms", ma.latency_ms.p99, mb.latency_ms.p99, false),
            ("p999_ms", ma.latency_ms.p999, mb.latency_ms.p999, false),
        ];
        for (metric, va, vb, higher_is_better) in metrics {
            let change_pct = if va == 0.0 {
                0.0
            } else {
                (vb - va) / va * 100.0
            };
            let worse_by_pct = if higher_is_better {
                -change_pct
            } else {
                change_pct
            };
            let flag = if worse_by_pct > threshold_pct {
                "  REGRESSION"
            } else {
                ""
            };
            let _ = writeln!(
                table,
                "{:<12} {:<10} {:>12.3} {:>12.3} {:>+8.1}%{flag}",
                target_b.name, metric, va, vb, change_pct
            );
            if worse_by_pct > threshold_pct {
                regressions.push(Regression {
                    target: target_b.name.clone(),
                    metric,
                    worse_by_pct,
                });
            }
        }
    }
    Ok((table, regressions))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Machine, TargetReport};
    use crate::stats::RunResult;

    fn report(rps: f64, p99_us: u64) -> Result<Report, Box<dyn std::error::Error>> {
        let mut run = RunResult::new();
        run.latency.record(p99_us)?;
        run.requests = 10;
        run.elapsed = std::time::Duration::from_secs(1);
        let mut summary = run.summary();
        summary.rps = rps;
        Ok(Report {
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
        })
    }

    #[test]
    fn flags_a_ten_percent_rps_drop_but_not_two() -> Result<(), Box<dyn std::error::Error>> {
        let base = report(1000.0, 1000)?;
        let (_, regressions) = compare(&base, &report(900.0, 1000)?, 5.0, false)?;
        assert_eq!(regressions.len(), 1);
        assert_eq!(regressions[0].metric, "rps");
        let (_, regressions) = compare(&base, &report(980.0, 1000)?, 5.0, false)?;
        assert!(regressions.is_empty());
        let (_, regressions) = compare(&base, &report(1000.0, 2000)?, 5.0, false)?;
        assert!(
            regressions.iter().any(|r| r.metric == "p99_ms"),
            "{regressions:?}"
        );
        Ok(())
    }

    #[test]
    fn refuses_other_machines_unless_forced() -> Result<(), Box<dyn std::error::Error>> {
        let a = report(1000.0, 1000)?;
        let mut b = report(1000.0, 1000)?;
        b.machine.cores = 64;
        assert!(compare(&a, &b, 5.0, false).is_err());
        assert!(compare(&a, &b, 5.0, true).is_ok());
        Ok(())
    }
}
