//! `compare a.json b.json`: read both reports, print the comparison, fail on a regression.

use std::path::Path;

use anyhow::{Context as _, bail};

use crate::report::Report;

fn read(path: &Path) -> anyhow::Result<Report> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let report: Report = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not an isola-bench JSON report", path.display()))?;
    if report.schema_version != crate::report::SCHEMA_VERSION {
        bail!(
            "{} has schema_version {}, this isola-bench reads {}",
            path.display(),
            report.schema_version,
            crate::report::SCHEMA_VERSION
        );
    }
    Ok(report)
}

/// Compares `b` against `a`; an error (non-zero exit) when anything regressed.
pub(super) fn run(a: &Path, b: &Path, threshold_pct: f64, force: bool) -> anyhow::Result<()> {
    let comparison = crate::compare::compare(&read(a)?, &read(b)?, threshold_pct, force)?;
    print!("{}", comparison.table);
    for warning in &comparison.warnings {
        eprintln!("warning: {warning}");
    }
    if comparison.regressions.is_empty() {
        println!("no regression beyond {threshold_pct}%");
        return Ok(());
    }
    for r in &comparison.regressions {
        println!(
            "regression: {} {} worse by {:.1}%",
            r.target, r.metric, r.worse_by_pct
        );
    }
    bail!(
        "{} regression(s) beyond {threshold_pct}%",
        comparison.regressions.len()
    )
}
