//! `isola bench startup`: isolate start-up times, measured by the `isola` binary's probe.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

use super::BenchEnv;

/// Measures `iterations` isolate start-ups of `worker` and prints (and writes) percentiles.
pub(super) fn run(
    env: &BenchEnv,
    worker: &Path,
    iterations: usize,
    json: Option<&Path>,
) -> anyhow::Result<()> {
    let probe = env
        .startup_probe
        .context("isolate start-up can only be measured by `isola bench startup`")?;
    let mut times = probe(worker, iterations.max(1))?;
    anyhow::ensure!(!times.is_empty(), "the start-up probe measured nothing");
    times.sort();
    let ms = |q: f64| {
        let index = ((times.len() - 1) as f64 * q).round() as usize;
        times.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let mean = times.iter().map(Duration::as_secs_f64).sum::<f64>() / times.len() as f64 * 1000.0;
    println!(
        "isolate start-up (create from snapshot + evaluate {}), {} runs: p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms, mean {:.3} ms",
        worker.display(),
        times.len(),
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(1.0),
        mean
    );
    if let Some(path) = json {
        let value = serde_json::json!({
            "schema_version": crate::report::SCHEMA_VERSION,
            "git_sha": crate::machine::git_sha(),
            "machine": crate::machine::Machine::current(),
            "started_at": crate::machine::now_rfc3339(),
            "benchmark": "isolate-startup",
            "worker": worker.display().to_string(),
            "iterations": times.len(),
            "startup_ms": { "p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "max": ms(1.0), "mean": mean },
        });
        std::fs::write(path, serde_json::to_vec_pretty(&value)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
