//! The soak's `report.md`: machine, verdict, the resource checks, the request mix and the
//! deploys, with the curve (`soak.svg`) beside it.

use std::fmt::Write as _;

use super::report::SoakReport;
use super::verdict::{LEVEL_WINDOW, WINDOW};

/// The Markdown report (it links `soak.svg` beside it).
pub fn render(report: &SoakReport) -> String {
    let mut md = String::new();
    let v = &report.verdict;
    let _ = writeln!(md, "# Soak report\n");
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| started | {} |", report.started_at);
    let _ = writeln!(
        md,
        "| git | {} |",
        report.git_sha.as_deref().unwrap_or("unknown")
    );
    let _ = writeln!(md, "| machine | {} |", report.machine.describe());
    if let Some(settings) = report.settings.as_object() {
        for (key, value) in settings {
            let _ = writeln!(
                md,
                "| {key} | `{}` |",
                value.to_string().replace('|', "\\|")
            );
        }
    }
    let verdict = if v.passed() { "**PASS**" } else { "**FAIL**" };
    let _ = writeln!(md, "\n## Verdict: {verdict}\n");
    for failure in &v.failures {
        let _ = writeln!(md, "- {failure}");
    }
    let _ = writeln!(
        md,
        "\nJudged after a {:.0} s warm-up, on one sample per second. RSS: reference and final \
         are the medians of the first and last {LEVEL_WINDOW} samples (at most a quarter of \
         them); the running median must not range further than the band's share of the \
         reference plus the headroom for garbage V8 may hold in the isolates that live through \
         the run (benches/README.md). fds and threads: reference the first {WINDOW} samples \
         after the warm-up, final the last {WINDOW}.\n",
        v.warmup_s
    );
    let _ = writeln!(
        md,
        "| | reference | final | range after warm-up | allowed | |\n|---|---:|---:|---:|---|---|"
    );
    let ok = |passed: bool| if passed { "ok" } else { "FAIL" };
    let _ = writeln!(
        md,
        "| RSS (MB) | {:.1} (median) | {:.1} (median) | {:.1}–{:.1} (running median of {}: {:.1}–{:.1}, a span of {:.1}; largest deviation {:+.1} % at {:.0} s) | span ≤ {:.0} % of the reference + {:.0} MB = {:.1} | {} |",
        v.rss.level_mb,
        v.rss.final_mb,
        v.rss.min_mb,
        v.rss.max_mb,
        v.rss.smooth_samples,
        v.rss.smoothed_min_mb,
        v.rss.smoothed_max_mb,
        v.rss.smoothed_max_mb - v.rss.smoothed_min_mb,
        v.rss.max_deviation_pct,
        v.rss.max_deviation_at_s,
        v.limits.rss_band_pct,
        v.limits.rss_headroom_mb,
        v.rss.allowed_span_mb,
        ok(v.rss.passed)
    );
    for (name, check) in [("open fds", &v.fds), ("threads", &v.threads)] {
        let _ = writeln!(
            md,
            "| {name} | {} (max) | {} (median) | max {} | ≤ reference + {} | {} |",
            check.reference_max,
            check.final_median,
            check.max,
            check.slack,
            ok(check.passed)
        );
    }
    let _ = writeln!(md, "\n![RSS, fds and threads over the run](soak.svg)\n");

    let _ = writeln!(md, "## Requests\n");
    let _ = writeln!(
        md,
        "| kind | path | rate/s | expect | requests | ok | errors | p50 ms | p99 ms |\n|---|---|---:|---|---:|---:|---|---:|---:|"
    );
    for k in &report.requests {
        let errors: Vec<String> = k.errors.iter().map(|(e, n)| format!("{e} {n}")).collect();
        let _ = writeln!(
            md,
            "| {} | `{}` | {} | {:?} | {} | {} | {} | {:.2} | {:.2} |",
            k.kind,
            k.path,
            k.rate_per_s,
            k.expect,
            k.requests,
            k.ok,
            errors.join(", "),
            k.p50_ms,
            k.p99_ms
        );
    }
    let d = &report.deploys;
    let _ = writeln!(
        md,
        "\nDeploys through the admin API every {:.0} s: {} of {} answered 200 (p50 {:.1} ms, max {:.1} ms).",
        d.every_s, d.ok, d.deploys, d.p50_ms, d.max_ms
    );
    for failure in &d.failures {
        let _ = writeln!(md, "- {failure}");
    }
    let s = &report.slow_clients;
    let _ = writeln!(
        md,
        "\nSlow clients: {} connections, {} complete responses, {} failed.",
        s.connections, s.completed, s.failed
    );
    let _ = writeln!(md, "\n## The server's counters over the run\n");
    let _ = writeln!(md, "| counter | labels | increase |\n|---|---|---:|");
    for (name, labels) in &report.server_counters {
        for (label, value) in labels {
            let _ = writeln!(md, "| {name} | `{label}` | {value:.0} |");
        }
    }
    md
}
