//! SVG plots: latency by percentile (on a "nines" axis, as HdrHistogram plots it) and
//! throughput per second, one line per target.

use std::path::Path;

use plotters::prelude::*;

use crate::report::Report;

/// Drawing a plot failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw {path}: {message}")]
pub struct PlotError {
    path: String,
    message: String,
}

impl PlotError {
    /// Drawing `path` failed with `error`.
    pub fn new(path: &Path, error: &dyn std::fmt::Display) -> Self {
        Self {
            path: path.display().to_string(),
            message: error.to_string(),
        }
    }
}

const COLORS: [RGBColor; 6] = [
    RGBColor(0x4c, 0x72, 0xb0),
    RGBColor(0xdd, 0x84, 0x52),
    RGBColor(0x55, 0xa8, 0x68),
    RGBColor(0xc4, 0x4e, 0x52),
    RGBColor(0x81, 0x72, 0xb3),
    RGBColor(0x93, 0x78, 0x60),
];

/// A target's latency curve: (quantile, latency ms) points.
pub type Curve = (String, Vec<(f64, f64)>);

/// x position of quantile `q` on the nines axis: 1 for 90 %, 2 for 99 %, 3 for 99.9 %.
pub fn nines(q: f64) -> f64 {
    -(1.0 - q).max(1e-9).log10()
}

/// The percentile that `x` nines stands for, as a label (`99.9%`).
pub fn nines_label(x: f64) -> String {
    let percent = 100.0 * (1.0 - 10f64.powf(-x));
    let text = format!("{percent:.5}");
    format!("{}%", text.trim_end_matches('0').trim_end_matches('.'))
}

/// Writes the latency-by-percentile plot of `curves` to `path`.
pub fn latency_svg(curves: &[Curve], path: &Path) -> Result<(), PlotError> {
    let fail = |e: &dyn std::fmt::Display| PlotError::new(path, e);
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let points = || curves.iter().flat_map(|(_, c)| c.iter());
    let max_ms = points().map(|(_, ms)| *ms).fold(0.001_f64, f64::max);
    let max_x = points().map(|(q, _)| nines(*q)).fold(1.0_f64, f64::max);
    // Round up to whole nines, ignoring floating-point dust (4.0000001 is 4).
    let max_x = (max_x - 1e-6).ceil();
    let mut chart = ChartBuilder::on(&root)
        .caption("Latency by percentile", ("sans-serif", 22))
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..max_x, 0f64..max_ms * 1.1)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_labels(max_x as usize + 1)
        .x_label_formatter(&|x| nines_label(*x))
        .draw()
        .map_err(|e| fail(&e))?;
    for (i, (name, curve)) in curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                curve.iter().map(|(q, ms)| (nines(*q), *ms)),
                color.stroke_width(2),
            ))
            .map_err(|e| fail(&e))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))
}

/// Writes the successful responses per second of each target's median-rps repeat to `path`.
pub fn throughput_svg(report: &Report, path: &Path) -> Result<(), PlotError> {
    let fail = |e: &dyn std::fmt::Display| PlotError::new(path, e);
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let timelines = || report.targets.iter().map(|t| &t.median.throughput_timeline);
    let seconds = timelines().map(Vec::len).max().unwrap_or(1).max(1);
    let peak = timelines().flatten().copied().max().unwrap_or(1).max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption("Throughput over time", ("sans-serif", 22))
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..seconds as f64, 0f64..peak as f64 * 1.15)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("second of the measured window")
        .y_desc("successful responses / s")
        .draw()
        .map_err(|e| fail(&e))?;
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
            .map_err(|e| fail(&e))?
            .label(target.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_axis() {
        assert!((nines(0.99) - 2.0).abs() < 1e-9);
        assert!(nines(0.0).abs() < 1e-12);
        assert_eq!(nines_label(0.0), "0%");
        assert_eq!(nines_label(1.0), "90%");
        assert_eq!(nines_label(3.0), "99.9%");
    }
}
