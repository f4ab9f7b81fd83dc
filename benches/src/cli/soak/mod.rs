//! `isola bench soak`: a node started from a generated config (see [`mix`]) takes a mixed
//! load for `--duration` — hello, a streamed response, cache hits, requests killed at
//! `cpu_ms` and at `memory_mb`, slow clients and a redeploy through the admin API every few
//! seconds — while the harness samples the server's RSS, open fds and threads every second.
//! The verdict ([`crate::soak::verdict`]) fails the run (non-zero exit) when one of them
//! leaked or a request got what it should not have.

mod deploys;
mod mix;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::BenchEnv;
use super::node::{Node, get, isola_binary, start_node};
use crate::generator::{self, LoadSpec};
use crate::slow_clients::{SlowClients, SlowClientsSpec};
use crate::soak::report::{KindOutcome, SoakReport};
use crate::soak::sampler::{self, Sample};
use crate::soak::verdict::{self, Limits, Verdict};

/// What to run.
#[derive(Debug, Clone)]
pub struct SoakArgs {
    /// How long the load runs (the warm-up included).
    pub duration: Duration,
    /// The examples directory (the workers of [`mix::FILES`]).
    pub examples_dir: PathBuf,
    /// Write the JSON report here.
    pub json: Option<PathBuf>,
    /// Write report.md and soak.svg into this directory.
    pub report: Option<PathBuf>,
}

/// The default `--duration`.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(30 * 60);

/// Time between samples of the server.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Time between redeploys.
const DEPLOY_EVERY: Duration = Duration::from_secs(5);

/// A slow client's pace: one byte written, or 64 read, per interval.
const SLOW_INTERVAL: Duration = Duration::from_millis(20);

/// A request of the mix that takes longer than this is a failure.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// File descriptors the server holds per isolate (measured in /proc/PID/fd: two epoll
/// instances and an eventfd per isolate thread).
const FDS_PER_ISOLATE: u64 = 3;

/// How far the smoothed RSS may range, percent of its post-warm-up level (beside the V8
/// headroom).
const RSS_BAND_PCT: f64 = 10.0;

/// Garbage one isolate may hold before V8 collects its old generation, MB: V8 starts a major
/// GC once the old generation has grown 8 MB past what the last one left
/// (`kMinimumAllocationLimitGrowingStep` in src/heap/heap-controller.h) plus the 1 MB of new
/// space the soak's isolates use (`new_space_capacity` in `--trace-gc-nvp`). Measured in the
/// 30-minute run: hello's and stream's isolates cycle between about 4 and 12 MB committed,
/// 1.7–2.3 MB of it live, collecting every 95–275 s.
const V8_GARBAGE_PER_ISOLATE_MB: f64 = 9.0;

/// The cache kind must be answered from the cache at least this often (the rest: the first
/// miss and revalidations once a minute).
const MIN_CACHE_HIT_SHARE: f64 = 0.9;

/// What may move at one instant without anything having leaked. Threads: the isolates in
/// transition ([`mix::TRANSIENT_ISOLATES`]). Fds: their fds, plus every connection that
/// comes and goes: the slow clients reconnect for each request, the kill loads' connections
/// may be closed after a 503 and reopened, and a deploy opens one to the admin API.
fn limits() -> Limits {
    let kill_connections: usize = mix::KINDS
        .iter()
        .filter(|k| k.expect == crate::soak::report::Expect::Killed)
        .map(|k| k.connections)
        .sum();
    Limits {
        rss_band_pct: RSS_BAND_PCT,
        rss_headroom_mb: mix::LONG_LIVED_ISOLATES as f64 * V8_GARBAGE_PER_ISOLATE_MB,
        fd_slack: mix::TRANSIENT_ISOLATES * FDS_PER_ISOLATE
            + (mix::SLOW_CLIENTS + kill_connections + 1) as u64,
        thread_slack: mix::TRANSIENT_ISOLATES,
    }
}

/// The counters read before and after the run.
const COUNTERS: [&str; 3] = [
    "isola_isolate_kills_total",
    "isola_cache_requests_total",
    "isola_cold_starts_total",
];

/// Runs the soak, prints and writes the results; an error when it failed.
pub(super) fn run(env: &BenchEnv, args: &SoakArgs) -> anyhow::Result<()> {
    if args.duration < verdict::min_duration() {
        bail!(
            "a soak needs at least {:?} (a warm-up of {:?} and two windows of {} samples)",
            verdict::min_duration(),
            verdict::MIN_WARMUP,
            verdict::WINDOW
        );
    }
    let isola = isola_binary(env)?;
    let examples = std::fs::canonicalize(&args.examples_dir)
        .with_context(|| format!("{} (set --examples-dir)", args.examples_dir.display()))?;
    for file in mix::FILES {
        let path = examples.join(file);
        anyhow::ensure!(
            path.is_file(),
            "{} does not exist (set --examples-dir)",
            path.display()
        );
    }
    let hello_path = examples.join("hello.js");
    let hello = std::fs::read_to_string(&hello_path)
        .with_context(|| format!("reading {}", hello_path.display()))?;
    let started_at = crate::machine::now_rfc3339();
    let node = start_node(&isola, &mix::workers(&examples))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let measured = runtime.block_on(soak(&node, &hello, args.duration))?;
    drop(node);

    let warmup = verdict::warmup(args.duration);
    let mut verdict = verdict::judge(&measured.samples, warmup, limits())?;
    verdict.failures.extend(problems(&measured));
    let report = SoakReport {
        schema_version: crate::report::SCHEMA_VERSION,
        benchmark: "soak",
        git_sha: crate::machine::git_sha(),
        machine: crate::machine::Machine::current(),
        started_at,
        settings: settings(args.duration, warmup),
        requests: measured.requests,
        deploys: measured.deploys,
        slow_clients: measured.slow_clients,
        server_counters: measured.counters,
        verdict,
        samples: measured.samples,
    };
    print_summary(&report);
    write(&report, args)?;
    if !report.verdict.passed() {
        bail!("soak failed: {}", report.verdict.failures.join("; "));
    }
    Ok(())
}

/// What the run gathered, before judging.
struct Measured {
    samples: Vec<Sample>,
    requests: Vec<KindOutcome>,
    deploys: crate::soak::report::DeployOutcome,
    slow_clients: crate::slow_clients::SlowClientStats,
    counters: std::collections::BTreeMap<String, std::collections::BTreeMap<String, f64>>,
}

/// The run: every kind's load, the slow clients and the redeploys at once, the server
/// sampled every second until the end.
async fn soak(node: &Node, hello: &str, duration: Duration) -> anyhow::Result<Measured> {
    deploys::first(node, mix::DEPLOYED, hello).await?;
    preflight(node).await?;
    let before = counters(node).await?;
    let started = Instant::now();
    let until = started + duration;
    let slow = SlowClients::start(slow_spec(node)?)?;
    let loads = mix::KINDS
        .iter()
        .map(|kind| load_spec(node, kind, duration))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let loads = futures::future::join_all(loads.into_iter().map(|spec| generator::run(spec, None)));
    let deploys = deploys::redeploy(node, mix::DEPLOYED, hello, DEPLOY_EVERY, until);
    let watch = watch(node.process.pid(), started, until);
    let (runs, deploys, samples) = tokio::join!(loads, deploys, watch);
    let slow_clients = slow.stop();
    let samples = samples?;
    let mut requests = Vec::new();
    for (kind, run) in mix::KINDS.iter().zip(runs) {
        let run = run?;
        requests.push(KindOutcome::new(
            kind.name,
            kind.path,
            kind.rate,
            kind.expect,
            &run,
        ));
    }
    let after = counters(node).await?;
    let counters = after
        .into_iter()
        .map(|(name, labels)| {
            let increases = labels
                .into_iter()
                .map(|(label, value)| {
                    let was = before
                        .get(&name)
                        .and_then(|b| b.get(&label))
                        .copied()
                        .unwrap_or(0.0);
                    (label, value - was)
                })
                .collect();
            (name, increases)
        })
        .collect();
    Ok(Measured {
        samples,
        requests,
        deploys,
        slow_clients,
        counters,
    })
}

/// One request of each kind: fail at once, clearly, when a worker does not answer as the
/// mix expects.
async fn preflight(node: &Node) -> anyhow::Result<()> {
    let authority = node.authority();
    for kind in &mix::KINDS {
        let (status, body, _) = get(&authority, kind.path).await?;
        let expected = match kind.expect {
            crate::soak::report::Expect::Ok => 200,
            crate::soak::report::Expect::Killed => 503,
        };
        anyhow::ensure!(
            status == expected,
            "{} ({}) answered {status} instead of {expected}: {body}",
            kind.name,
            kind.path
        );
    }
    Ok(())
}

/// Each counter of [`COUNTERS`] by label set.
async fn counters(
    node: &Node,
) -> anyhow::Result<std::collections::BTreeMap<String, std::collections::BTreeMap<String, f64>>> {
    let mut all = std::collections::BTreeMap::new();
    for name in COUNTERS {
        all.insert(name.to_owned(), node.counters(name).await?);
    }
    Ok(all)
}

/// The open-loop load of one kind for the whole run (nothing excluded as warm-up: the
/// counts are of every request).
fn load_spec(node: &Node, kind: &mix::Kind, duration: Duration) -> anyhow::Result<LoadSpec> {
    Ok(LoadSpec {
        connections: kind.connections,
        duration: Some(duration),
        warmup: Duration::ZERO,
        rate: Some(kind.rate),
        max_in_flight: 256,
        timeout: REQUEST_TIMEOUT,
        ..LoadSpec::get(format!("{}{}", node.process.url, kind.path).parse()?)
    })
}

/// Slow clients on the streaming worker.
fn slow_spec(node: &Node) -> anyhow::Result<SlowClientsSpec> {
    let authority = node.authority();
    Ok(SlowClientsSpec {
        addr: authority.parse()?,
        tls: None,
        host: authority,
        method: http::Method::GET,
        path: "/stream".to_owned(),
        body: bytes::Bytes::new(),
        count: mix::SLOW_CLIENTS,
        interval: SLOW_INTERVAL,
    })
}

/// Samples process `pid` every second from `started` until `until`, printing progress; an
/// error when the process is gone (it crashed).
async fn watch(pid: u32, started: Instant, until: Instant) -> anyhow::Result<Vec<Sample>> {
    let total = until.saturating_duration_since(started);
    let report_every = (total / 10).max(Duration::from_secs(10));
    let mut next_report = started + report_every;
    let mut samples = Vec::new();
    let mut ticks = tokio::time::interval(SAMPLE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let now = Instant::now();
        if now > until {
            break;
        }
        let t_s = now.duration_since(started).as_secs_f64();
        let sample = sampler::sample(pid, t_s)
            .with_context(|| format!("the server (pid {pid}) is gone {t_s:.0} s into the soak"))?;
        if now >= next_report {
            next_report += report_every;
            eprintln!(
                "soak {:>5.0}/{:.0} s: RSS {:.1} MB, {} fds, {} threads",
                t_s,
                total.as_secs_f64(),
                sample.rss_mb,
                sample.fds,
                sample.threads
            );
        }
        samples.push(sample);
    }
    Ok(samples)
}

/// Requests, deploys and cache hits that were not what the mix expects.
fn problems(measured: &Measured) -> Vec<String> {
    let mut problems: Vec<String> = measured
        .requests
        .iter()
        .filter_map(KindOutcome::problem)
        .collect();
    let deploys = &measured.deploys;
    if deploys.deploys == 0 || deploys.ok < deploys.deploys {
        problems.push(format!(
            "{} of {} redeploys answered 200: {:?}",
            deploys.ok, deploys.deploys, deploys.failures
        ));
    }
    let hits = measured
        .counters
        .get("isola_cache_requests_total")
        .and_then(|c| c.get("result=\"hit\""))
        .copied()
        .unwrap_or(0.0);
    let cached = measured
        .requests
        .iter()
        .find(|k| k.kind == "cache-hit")
        .map_or(0, |k| k.ok);
    if hits < cached as f64 * MIN_CACHE_HIT_SHARE {
        problems.push(format!(
            "only {hits:.0} cache hits for {cached} cacheable responses"
        ));
    }
    problems
}

/// The settings recorded in the report.
fn settings(duration: Duration, warmup: Duration) -> serde_json::Value {
    let kinds: Vec<serde_json::Value> = mix::KINDS
        .iter()
        .map(|k| serde_json::json!({ "kind": k.name, "path": k.path, "rate_per_s": k.rate, "connections": k.connections }))
        .collect();
    serde_json::json!({
        "duration_s": duration.as_secs_f64(),
        "warmup_s": warmup.as_secs_f64(),
        "sample_every_s": SAMPLE_EVERY.as_secs_f64(),
        "deploy_every_s": DEPLOY_EVERY.as_secs_f64(),
        "slow_clients": mix::SLOW_CLIENTS,
        "slow_interval_ms": SLOW_INTERVAL.as_millis() as u64,
        "request_timeout_s": REQUEST_TIMEOUT.as_secs_f64(),
        "mix": kinds,
    })
}

fn print_summary(report: &SoakReport) {
    let v: &Verdict = &report.verdict;
    println!(
        "RSS: {:.1} MB after the {:.0} s warm-up (median of {} samples), {:.1}–{:.1} MB after it; running median of {}: {:.1}–{:.1} MB ({:.1} MB, allowed {:.1}: {:.0} % + {:.0} MB), {:.1} MB at the end",
        v.rss.level_mb,
        v.warmup_s,
        verdict::LEVEL_WINDOW,
        v.rss.min_mb,
        v.rss.max_mb,
        v.rss.smooth_samples,
        v.rss.smoothed_min_mb,
        v.rss.smoothed_max_mb,
        v.rss.smoothed_max_mb - v.rss.smoothed_min_mb,
        v.rss.allowed_span_mb,
        v.limits.rss_band_pct,
        v.limits.rss_headroom_mb,
        v.rss.final_mb
    );
    for (name, check) in [("fds", &v.fds), ("threads", &v.threads)] {
        println!(
            "{name}: {} after the warm-up (max), {} at the end (median), {} at most (allowed: +{})",
            check.reference_max, check.final_median, check.max, check.slack
        );
    }
    for k in &report.requests {
        println!(
            "{:<12} {:>8} requests  {:>8} ok  errors {:?}",
            k.kind, k.requests, k.ok, k.errors
        );
    }
    println!(
        "deploys: {} of {} answered 200 (p50 {:.1} ms)",
        report.deploys.ok, report.deploys.deploys, report.deploys.p50_ms
    );
    if v.passed() {
        println!("soak: PASS");
    } else {
        for failure in &v.failures {
            println!("soak: FAIL: {failure}");
        }
    }
}

/// Writes the JSON report and the report directory, as asked.
fn write(report: &SoakReport, args: &SoakArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(dir) = &args.report {
        write_dir(report, dir)?;
        eprintln!("wrote {}", dir.join("report.md").display());
    }
    Ok(())
}

fn write_dir(report: &SoakReport, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::soak::plot::soak_svg(&report.samples, &report.verdict, &dir.join("soak.svg"))?;
    let path = dir.join("report.md");
    std::fs::write(&path, crate::soak::markdown::render(report))
        .with_context(|| format!("writing {}", path.display()))
}
