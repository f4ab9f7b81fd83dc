//! `--report DIR`: `report.md` and SVG plots (latency percentile curve, throughput over time).

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use crate::report::Report;

/// Writing the report failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the report: {0}")]
pub struct PlotError(String);

fn plot_error(error: impl std::fmt::Display) -> PlotError {
    PlotError(error.to_string())
}

/// Writes `report.md`, `latency.svg` and `throughput.svg` into `dir`.
pub fn write(
    report: &Report,
    percentiles: &[(String, Vec<(f64, f64)>)],
    dir: &Path,
) -> Result<(), PlotError> {
    std::fs::create_dir_all(dir).map_err(plot_error)?;
    latency_svg(percentiles, &dir.join("latency.svg"))?;
    throughput_svg(report, &dir.join("throughput.svg"))?;
    std::fs::write(dir.join("report.md"), markdown(report)).map_err(plot_error)
}

const COLORS: [RGBColor; 5] = [BLUE, RED, GREEN, MAGENTA, CYAN];

/// Latency by percentile on a "nines" axis (x = log10(1 / (1 - q))), as HdrHistogram plots it.
fn latency_svg(curves: &[(String, Vec<(f64, f64)>)], path: &Path) -> Result<(), PlotError> {
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let max_ms = curves
        .iter()
        .flat_map(|(_, c)| c.iter().map(|(_, ms)| *ms))
        .fold(0.001_f64, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption("Latency by percentile", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..4f64, 0f64..max_ms * 1.1)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_labels(5)
        .x_label_formatter(&|x| format!("{}%", 100.0 * (1.0 - 10f64.powf(-x))))
        .draw()
        .map_err(plot_error)?;
    for (i, (name, curve)) in curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points = curve
            .iter()
            .map(|(q, ms)| (-(1.0 - q).max(1e-4).log10(), *ms));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(plot_error)?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)
}

fn throughput_svg(report: &Report, path: &Path) -> Result<(), PlotError> {
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let seconds = report
        .targets
        .iter()
        .map(|t| t.median.throughput_timeline.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let peak = report
        .targets
        .iter()
        .flat_map(|t| t.median.throughput_timeline.iter().copied())
        .max()
        .unwrap_or(1)
        .max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption("Throughput over time (median repeat)", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..seconds as f64, 0f64..peak as f64 * 1.1)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("second")
        .y_desc("requests / s")
        .draw()
        .map_err(plot_error)?;
    for (i, target) in report.targets.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points = target
            .median
            .throughput_timeline
            .iter()
            .enumerate()
            .map(|(s, n)| (s as f64 + 0.5, *n as f64));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(plot_error)?
            .label(target.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)
}

fn markdown(report: &Report) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmark report\n");
    let _ = writeln!(
        md,
        "- started: {}\n- git: {}\n- machine: {} × {} ({})\n- settings: `{}`\n",
        report.started_at,
        report.git_sha.as_deref().unwrap_or("unknown"),
        report.machine.cores,
        report.machine.cpu_model,
        report.machine.hostname,
        report.settings
    );
    let _ = writeln!(
        md,
        "| target | rps | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors | server CPU ms/req | vs baseline |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for t in &report.targets {
        let m = &t.median;
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} | {} |",
            t.name,
            m.rps,
            m.latency_ms.p50,
            m.latency_ms.p90,
            m.latency_ms.p99,
            m.latency_ms.p999,
            m.latency_ms.max,
            m.errors.values().sum::<u64>(),
            m.server_cpu_ms_per_request
                .map_or_else(|| "-".to_owned(), |c| format!("{c:.4}")),
            t.ratio_vs_baseline
                .map_or_else(|| "-".to_owned(), |r| format!("{:.2}×", r.rps)),
        );
    }
    let _ = writeln!(
        md,
        "\n![latency](latency.svg)\n\n![throughput](throughput.svg)"
    );
    md
}
