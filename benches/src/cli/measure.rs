//! One measurement of one target: the generator on its own runtime, slow clients beside it
//! if asked, a progress bar, and the server's and the generator's CPU time over the
//! measured window.

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cpu::{self, CpuSnapshot};
use crate::generator::{self, Live, LoadSpec};
use crate::progress::Progress;
use crate::slow_clients::{SlowClients, SlowClientsSpec};
use crate::stats::{RunResult, Summary};

/// The outcome of one measurement.
pub(crate) struct Measured {
    pub summary: Summary,
    pub result: RunResult,
}

/// A tokio runtime with `threads` workers (a current-thread runtime for 1).
pub(crate) fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

/// CPU of the server (if any) and of this process, and the time, at one instant.
struct CpuMark {
    server: Option<CpuSnapshot>,
    generator: Option<CpuSnapshot>,
    at: Instant,
}

impl CpuMark {
    fn now(server_pid: Option<u32>) -> Self {
        Self {
            server: server_pid.and_then(cpu::snapshot),
            generator: cpu::snapshot(std::process::id()),
            at: Instant::now(),
        }
    }
}

/// Runs `spec` with `threads` generator threads against a target whose process is
/// `server_pid` (if the harness started it), with `slow` clients beside it.
pub(crate) fn measure(
    spec: LoadSpec,
    threads: usize,
    server_pid: Option<u32>,
    slow: Option<SlowClientsSpec>,
    label: String,
) -> anyhow::Result<Measured> {
    let runtime = runtime(threads)?;
    let live = std::io::stdout().is_terminal().then(Live::new);
    let progress = live.as_ref().and_then(|live| {
        Progress::start(
            label,
            spec.warmup,
            spec.duration,
            spec.requests,
            Arc::clone(live),
        )
    });
    let slow = slow.map(SlowClients::start).transpose()?;
    let warmup = spec.warmup;
    let (result, start, end) = runtime.block_on(async move {
        let start = tokio::spawn(async move {
            tokio::time::sleep(warmup).await;
            CpuMark::now(server_pid)
        });
        let result = generator::run(spec, live).await;
        let end = CpuMark::now(server_pid);
        (result, start.await, end)
    });
    if let Some(progress) = progress {
        progress.finish();
    }
    let slow_stats = slow.map(SlowClients::stop);
    let result = result?;
    let mut summary = result.summary();
    summary.slow_clients = slow_stats;
    if let Ok(start) = start {
        let wall = end.at.saturating_duration_since(start.at);
        if let (Some(before), Some(after)) = (&start.server, &end.server)
            && result.requests > 0
        {
            summary.server_cpu_ms_per_request = cpu::used_between(before, after)
                .map(|cpu| cpu.as_secs_f64() * 1000.0 / result.requests as f64);
        }
        if let (Some(before), Some(after)) = (&start.generator, &end.generator)
            && wall > Duration::ZERO
        {
            summary.generator_cpu_pct = cpu::used_between(before, after)
                .map(|cpu| cpu.as_secs_f64() / wall.as_secs_f64() * 100.0);
        }
    }
    Ok(Measured { summary, result })
}
