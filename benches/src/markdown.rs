//! `report.md`: when, where and with which settings; the results table; the plots.

use std::fmt::Write as _;

use crate::report::Report;

/// The Markdown report (it links `latency.svg` and `throughput.svg` beside it).
pub fn render(report: &Report) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmark report\n");
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| started | {} |", report.started_at);
    let _ = writeln!(
        md,
        "| git | {} |",
        report.git_sha.as_deref().unwrap_or("unknown")
    );
    let _ = writeln!(md, "| CPU | {} |", report.machine.cpu_model);
    let _ = writeln!(md, "| cores | {} |", report.machine.cores);
    let _ = writeln!(md, "| host | {} |", report.machine.hostname);

    let _ = writeln!(md, "\n## Settings\n");
    let _ = writeln!(md, "| setting | value |\n|---|---|");
    if let Some(settings) = report.settings.as_object() {
        for (key, value) in settings {
            let value = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let _ = writeln!(md, "| {key} | `{}` |", value.replace('|', "\\|"));
        }
    }

    let repeats = report.targets.first().map_or(0, |t| t.repeats.len());
    let _ = writeln!(
        md,
        "\n## Results\n\nMedians of {repeats} repeat(s); latency of successful requests, \
         from the request's start (its due time in open loop) to its last byte.\n"
    );
    let rows = crate::table::cells(report);
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
        let _ = writeln!(md, "| {} |", cells.join(" | "));
        if i == 0 {
            let align: Vec<&str> = row
                .iter()
                .enumerate()
                .map(|(c, _)| if c == 0 { "---" } else { "---:" })
                .collect();
            let _ = writeln!(md, "| {} |", align.join(" | "));
        }
    }
    for note in &report.notes {
        let _ = writeln!(md, "\n> note: {note}");
    }
    if repeats > 1 {
        let _ = writeln!(md, "\n### Every repeat\n");
        let _ = writeln!(
            md,
            "| target | repeat | rps | p50 ms | p99 ms | p99.9 ms | errors |\n|---|---:|---:|---:|---:|---:|---:|"
        );
        for target in &report.targets {
            for (i, r) in target.repeats.iter().enumerate() {
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.0} | {:.3} | {:.3} | {:.3} | {} |",
                    target.name,
                    i + 1,
                    r.rps,
                    r.latency_ms.p50,
                    r.latency_ms.p99,
                    r.latency_ms.p999,
                    r.error_count()
                );
            }
        }
    }
    let _ = writeln!(
        md,
        "\n## Plots\n\n![latency by percentile](latency.svg)\n\n![throughput over time](throughput.svg)"
    );
    md
}
