//! The terminal table: one column per target (medians of the repeats), one row per metric.

use std::fmt::Write as _;

use crate::report::Report;
use crate::stats::Summary;

/// A table row: its label and how to show a target's median in it.
type Row = (&'static str, fn(&Summary) -> String);

const ROWS: &[Row] = &[
    ("rps", |s| format!("{:.0}", s.rps)),
    ("p50 ms", |s| format!("{:.3}", s.latency_ms.p50)),
    ("p90 ms", |s| format!("{:.3}", s.latency_ms.p90)),
    ("p99 ms", |s| format!("{:.3}", s.latency_ms.p99)),
    ("p99.9 ms", |s| format!("{:.3}", s.latency_ms.p999)),
    ("max ms", |s| format!("{:.3}", s.latency_ms.max)),
    ("errors", errors),
    ("MB/s received", |s| format!("{:.1}", s.response_mb_per_s)),
    ("server CPU ms/req", |s| {
        s.server_cpu_ms_per_request
            .map_or_else(|| "-".to_owned(), |c| format!("{c:.4}"))
    }),
    ("generator CPU %", |s| {
        s.generator_cpu_pct
            .map_or_else(|| "-".to_owned(), |c| format!("{c:.0}"))
    }),
    ("rps vs baseline", |s| {
        s.ratio_vs_baseline
            .map_or_else(|| "-".to_owned(), |r| format!("{:.2}x", r.rps))
    }),
    ("p99 vs baseline", |s| {
        s.ratio_vs_baseline
            .map_or_else(|| "-".to_owned(), |r| format!("{:.2}x", r.p99))
    }),
];

/// Errors as `total (kind n, ...)`.
fn errors(summary: &Summary) -> String {
    let total = summary.error_count();
    if total == 0 {
        return "0".to_owned();
    }
    let kinds: Vec<String> = summary
        .errors
        .iter()
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect();
    format!("{total} ({})", kinds.join(", "))
}

/// Rows of cells: the header (target names) then one row per metric.
pub fn cells(report: &Report) -> Vec<Vec<String>> {
    let mut rows = Vec::with_capacity(ROWS.len() + 1);
    let mut header = vec![String::new()];
    header.extend(report.targets.iter().map(|t| t.name.clone()));
    rows.push(header);
    for (label, show) in ROWS {
        let mut row = vec![(*label).to_owned()];
        row.extend(report.targets.iter().map(|t| {
            let mut median = t.median.clone();
            median.ratio_vs_baseline = t.ratio_vs_baseline;
            show(&median)
        }));
        rows.push(row);
    }
    rows
}

/// The table as aligned text, with the notes under it.
pub fn render(report: &Report) -> String {
    let rows = cells(report);
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let repeats = report.targets.first().map_or(0, |t| t.repeats.len());
    let mut out = String::new();
    if repeats > 1 {
        let _ = writeln!(out, "medians of {repeats} repeats");
    }
    for row in &rows {
        for (c, cell) in row.iter().enumerate() {
            let width = widths.get(c).copied().unwrap_or(0);
            if c == 0 {
                let _ = write!(out, "{cell:<width$}");
            } else {
                let _ = write!(out, "  {cell:>width$}");
            }
        }
        out.push('\n');
    }
    for note in &report.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}
