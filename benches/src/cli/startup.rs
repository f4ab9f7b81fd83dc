//! `isola bench startup`: isolate start-up times, measured by the `isola` binary's probe,
//! with the worker's modules compiled from source and from the version's code cache,
//! alternating in one run; reported as a ratio.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

use super::BenchEnv;

/// Percentiles of one way of starting, in milliseconds.
struct Summary {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    mean: f64,
}

impl Summary {
    fn of(mut times: Vec<Duration>) -> anyhow::Result<Self> {
        anyhow::ensure!(!times.is_empty(), "the start-up probe measured nothing");
        times.sort();
        let ms = |q: f64| {
            let index = ((times.len() - 1) as f64 * q).round() as usize;
            times.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        Ok(Self {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            max: ms(1.0),
            mean: times.iter().map(Duration::as_secs_f64).sum::<f64>() / times.len() as f64
                * 1000.0,
        })
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "p50": self.p50, "p90": self.p90, "p99": self.p99, "max": self.max, "mean": self.mean,
        })
    }

    fn line(&self) -> String {
        format!(
            "p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms, mean {:.3} ms",
            self.p50, self.p90, self.p99, self.max, self.mean
        )
    }
}

/// Measures `iterations` isolate start-ups of `worker` each way and prints (and writes)
/// percentiles and the ratio of the medians.
pub(super) fn run(
    env: &BenchEnv,
    worker: &Path,
    iterations: usize,
    json: Option<&Path>,
) -> anyhow::Result<()> {
    let probe = env
        .startup_probe
        .context("isolate start-up can only be measured by `isola bench startup`")?;
    let samples = probe(worker, iterations.max(1))?;
    let runs = samples.compiled.len();
    let compiled = Summary::of(samples.compiled)?;
    let cached = Summary::of(samples.cached)?;
    let speedup = compiled.p50 / cached.p50.max(f64::EPSILON);
    println!(
        "isolate start-up (create from snapshot + evaluate {}), {runs} runs each way, alternating:",
        worker.display()
    );
    println!("  modules compiled from source: {}", compiled.line());
    println!("  from the code cache:          {}", cached.line());
    println!("  the code cache starts it {speedup:.2}x as fast (p50)");
    if let Some(path) = json {
        let value = serde_json::json!({
            "schema_version": crate::report::SCHEMA_VERSION,
            "git_sha": crate::machine::git_sha(),
            "machine": crate::machine::Machine::current(),
            "started_at": crate::machine::now_rfc3339(),
            "benchmark": "isolate-startup",
            "worker": worker.display().to_string(),
            "iterations": runs,
            "startup_ms": cached.json(),
            "startup_compiled_ms": compiled.json(),
            "code_cache_speedup_p50": speedup,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&value)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
