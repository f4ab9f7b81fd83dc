//! The soak curve as an SVG: RSS, open file descriptors and threads of the server over the
//! run, one panel each, with the warm-up shaded and the RSS band drawn.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::sampler::Sample;
use super::verdict::Verdict;
use crate::plots::PlotError;

const LINE: RGBColor = RGBColor(0x4c, 0x72, 0xb0);
const BAND: RGBColor = RGBColor(0xc4, 0x4e, 0x52);
const WARMUP: RGBColor = RGBColor(0xee, 0xee, 0xee);

/// One panel: a quantity of every sample, and horizontal guide lines.
struct Panel<'a> {
    title: &'a str,
    unit: &'a str,
    value: fn(&Sample) -> f64,
    guides: Vec<f64>,
}

/// Writes the curve of `samples` to `path`, marking `verdict`'s warm-up, RSS band and
/// fd/thread ceilings.
pub fn soak_svg(samples: &[Sample], verdict: &Verdict, path: &Path) -> Result<(), PlotError> {
    let fail = |e: &dyn std::fmt::Display| PlotError::new(path, e);
    let root = SVGBackend::new(path, (960, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let ceiling = |check: &super::verdict::GrowthCheck| (check.reference_max + check.slack) as f64;
    let panels = [
        Panel {
            title: "Resident memory (VmRSS)",
            unit: "MB",
            value: |s| s.rss_mb,
            // The reference level, and the span allowed from the lowest smoothed RSS.
            guides: vec![
                verdict.rss.smoothed_min_mb,
                verdict.rss.level_mb,
                verdict.rss.smoothed_min_mb + verdict.rss.allowed_span_mb,
            ],
        },
        Panel {
            title: "Open file descriptors",
            unit: "fds",
            value: |s| s.fds as f64,
            guides: vec![ceiling(&verdict.fds)],
        },
        Panel {
            title: "Threads",
            unit: "threads",
            value: |s| s.threads as f64,
            guides: vec![ceiling(&verdict.threads)],
        },
    ];
    let areas = root.split_evenly((panels.len(), 1));
    for (panel, area) in panels.iter().zip(&areas) {
        draw_panel(area, panel, samples, verdict.warmup_s).map_err(|e| fail(&e))?;
    }
    root.present().map_err(|e| fail(&e))
}

fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    panel: &Panel<'_>,
    samples: &[Sample],
    warmup_s: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    let end_s = samples.last().map_or(1.0, |s| s.t_s).max(1.0);
    let values = samples.iter().map(panel.value);
    let top = values
        .clone()
        .chain(panel.guides.iter().copied())
        .fold(1.0_f64, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..end_s, 0f64..top * 1.15)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc(panel.unit)
        .draw()?;
    chart.draw_series(std::iter::once(Rectangle::new(
        [(0.0, 0.0), (warmup_s.min(end_s), top * 1.15)],
        WARMUP.filled(),
    )))?;
    for guide in &panel.guides {
        chart.draw_series(LineSeries::new(
            [(warmup_s, *guide), (end_s, *guide)],
            BAND.stroke_width(1),
        ))?;
    }
    chart.draw_series(LineSeries::new(
        samples.iter().map(|s| (s.t_s, (panel.value)(s))),
        LINE.stroke_width(2),
    ))?;
    Ok(())
}
