//! `isola bench tenants`: what the isolate pool does for many tenants, on a node the harness
//! starts from a generated config (`isola serve`):
//! - memory per warm idle tenant: RSS of a node whose N deployments were each served once,
//!   against a node with one deployment;
//! - many tenants: closed-loop load round robin over the N deployments, against the same load
//!   on the one-deployment node;
//! - cold start: the first request to deployments with no warm isolate (idle ones are
//!   dropped after 1 ms), confirmed by `isola_cold_starts_total`, next to warm requests: 20 ms
//!   apart, then back to back (a storm, which outruns the spare isolates); then N new workers
//!   deployed through the admin API and each hit once;
//! - noisy neighbour: a quiet tenant's p99 alone and while another tenant spins at its CPU
//!   limit on every request;
//! - CPU limit: how long after `cpu_ms` a spinning request gets its 503, alone and in a storm.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::BenchEnv;
use super::node::{Node, NodeWorker, get, isola_binary, start_node};
use crate::generator::{self, LoadSpec};

/// What to measure.
#[derive(Debug, Clone)]
pub struct TenantsArgs {
    /// Deployments for the memory measurement.
    pub deployments: usize,
    /// Deployments for the cold-start measurement.
    pub cold_deployments: usize,
    /// How long each noisy-neighbour load runs.
    pub duration: Duration,
    /// Load before each round robin is measured, excluded from its results.
    pub warmup: Duration,
    /// The examples directory (hello.js, cpu-hog.js).
    pub examples_dir: PathBuf,
    /// Write the results as JSON here.
    pub json: Option<PathBuf>,
    /// Which measurements to run.
    pub parts: Vec<Part>,
    /// The nodes' `[node] executor_threads`, if not their default.
    pub executor_threads: Option<usize>,
}

/// One measurement of `tenants`; each is also a `--scenario`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Memory per warm idle tenant, then load round robin over the tenants.
    ManyTenants,
    /// First requests to deployments with no warm isolate.
    ColdStart,
    /// A quiet tenant next to one spinning at its CPU limit.
    NoisyNeighbour,
    /// Spinning requests: time from `cpu_ms` to the 503.
    CpuLimitStorm,
}

impl Part {
    /// Every measurement.
    pub const ALL: [Part; 4] = [
        Part::ManyTenants,
        Part::ColdStart,
        Part::NoisyNeighbour,
        Part::CpuLimitStorm,
    ];

    /// The measurement behind a multi-tenant scenario name.
    pub fn of_scenario(name: &str) -> Option<Self> {
        match name {
            "many-tenants" => Some(Self::ManyTenants),
            "cold-start" => Some(Self::ColdStart),
            "noisy-neighbour" => Some(Self::NoisyNeighbour),
            "cpu-limit-storm" => Some(Self::CpuLimitStorm),
            _ => None,
        }
    }
}

/// The `cpu_ms` of the noisy tenant.
const CPU_MS: u64 = 50;

fn percentile(sorted_ms: &[f64], q: f64) -> f64 {
    if sorted_ms.is_empty() {
        return 0.0;
    }
    let index = ((sorted_ms.len() - 1) as f64 * q).round() as usize;
    sorted_ms[index.min(sorted_ms.len() - 1)]
}

fn spread(mut ms: Vec<f64>) -> serde_json::Value {
    ms.sort_by(f64::total_cmp);
    serde_json::json!({
        "n": ms.len(),
        "p50": percentile(&ms, 0.5),
        "p90": percentile(&ms, 0.9),
        "p99": percentile(&ms, 0.99),
        "max": percentile(&ms, 1.0),
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs every measurement and prints (and writes) the results.
pub(super) fn run(env: &BenchEnv, args: &TenantsArgs) -> anyhow::Result<()> {
    let isola = isola_binary(env)?;
    let examples = std::fs::canonicalize(&args.examples_dir)
        .with_context(|| format!("{} (set --examples-dir)", args.examples_dir.display()))?;
    let hello = examples.join("hello.js");
    let hog = examples.join("cpu-hog.js");
    if let Some(threads) = args.executor_threads {
        super::node::set_node_settings(format!("executor_threads = {threads}"));
    }
    for file in [&hello, &hog] {
        anyhow::ensure!(
            file.is_file(),
            "{} does not exist (set --examples-dir)",
            file.display()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let results = runtime.block_on(async {
        let mut results = serde_json::json!({
            "schema_version": crate::report::SCHEMA_VERSION,
            "git_sha": crate::machine::git_sha(),
            "machine": crate::machine::Machine::current(),
            "started_at": crate::machine::now_rfc3339(),
            "benchmark": "tenants",
        });
        let wants = |part| args.parts.contains(&part);
        if wants(Part::ManyTenants) {
            results["many_tenants"] =
                memory_per_tenant(&isola, &hello, args.deployments, args.duration, args.warmup)
                    .await?;
        }
        if wants(Part::ColdStart) {
            results["cold_start"] = cold_start(&isola, &hello, args.cold_deployments).await?;
        }
        if wants(Part::NoisyNeighbour) || wants(Part::CpuLimitStorm) {
            let node = two_tenant_node(&isola, &hello, &hog)?;
            if wants(Part::NoisyNeighbour) {
                results["noisy_neighbour"] = noisy_neighbour(&node, args.duration).await?;
            }
            if wants(Part::CpuLimitStorm) {
                results["cpu_limit_storm"] = cpu_limit_storm(&node).await?;
            }
        }
        anyhow::Ok(results)
    })?;
    println!("{}", serde_json::to_string_pretty(&results)?);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&results)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn spread_load(
    base: &str,
    paths: Vec<String>,
    duration: Duration,
    warmup: Duration,
) -> anyhow::Result<LoadSpec> {
    Ok(LoadSpec {
        paths,
        duration: Some(duration),
        warmup,
        ..LoadSpec::get(base.parse()?)
    })
}

/// RSS of a node with `n` deployments each served once, per deployment beyond the first; then
/// load round robin over all of them against the same load on one deployment.
async fn memory_per_tenant(
    isola: &Path,
    hello: &Path,
    n: usize,
    duration: Duration,
    warmup: Duration,
) -> anyhow::Result<serde_json::Value> {
    let n = n.max(2);
    let one = start_node(isola, &[NodeWorker::new("t0", hello, "")])?;
    let (status, _, _) = get(&one.authority(), "/t0").await?;
    anyhow::ensure!(status == 200, "t0 answered {status}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_one = one.rss_mb()?;
    let single = generator::run(
        spread_load(&one.process.url, vec!["/t0".to_owned()], duration, warmup)?,
        None,
    )
    .await?
    .summary();
    drop(one);

    let workers: Vec<_> = (0..n)
        .map(|i| NodeWorker::new(format!("t{i}"), hello, ""))
        .collect();
    let started = Instant::now();
    let many = start_node(isola, &workers)?;
    let startup = started.elapsed();
    let authority = many.authority();
    for i in 0..n {
        let (status, _, _) = get(&authority, &format!("/t{i}")).await?;
        anyhow::ensure!(status == 200, "t{i} answered {status}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_many = many.rss_mb()?;
    let per_tenant = (rss_many - rss_one) / (n - 1) as f64;
    let paths = (0..n).map(|i| format!("/t{i}")).collect();
    let spread = generator::run(
        spread_load(&many.process.url, paths, duration, warmup)?,
        None,
    )
    .await?
    .summary();
    println!(
        "many tenants (after {:.1} s of warm-up each): round robin over {n} deployments {:.0} rps, p99 {:.2} ms ({} errors); one deployment {:.0} rps, p99 {:.2} ms",
        warmup.as_secs_f64(),
        spread.rps,
        spread.latency_ms.p99,
        spread.error_count(),
        single.rps,
        single.latency_ms.p99
    );
    println!(
        "memory: {n} warm idle tenants → RSS {rss_many:.0} MB (1 tenant: {rss_one:.0} MB): {per_tenant:.2} MB per tenant (goal ≤ 4); node start-up {:.1} s",
        startup.as_secs_f64()
    );
    Ok(serde_json::json!({
        "deployments": n,
        "warmup_s": warmup.as_secs_f64(),
        "rss_mb_one": rss_one,
        "rss_mb_all": rss_many,
        "mb_per_tenant": per_tenant,
        "node_startup_s": startup.as_secs_f64(),
        "round_robin": spread,
        "one_deployment": single,
    }))
}

/// Time between paced cold starts: a node sees new tenants arrive spread out, and has made
/// its spare isolates again in between.
const COLD_START_GAP: Duration = Duration::from_millis(20);

/// First requests to deployments whose isolates were dropped, then warm ones.
async fn cold_start(isola: &Path, hello: &Path, n: usize) -> anyhow::Result<serde_json::Value> {
    let n = n.max(1);
    let workers: Vec<_> = (0..n)
        .map(|i| NodeWorker::new(format!("c{i}"), hello, "idle_timeout_ms = 1"))
        .collect();
    let node = start_node(isola, &workers)?;
    let authority = node.authority();
    // The sweeper drops every idle isolate within its 100 ms tick.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = node.counter("isola_cold_starts_total").await?;
    let mut cold = Vec::with_capacity(n);
    let mut warm = Vec::with_capacity(n);
    let mut storm = Vec::with_capacity(n);
    // Paced: a cold start every COLD_START_GAP (so the node has made its spares again), then,
    // once the sweeper dropped them all again, back to back (a storm outruns the spares).
    for (times, gap) in [(&mut cold, COLD_START_GAP), (&mut storm, Duration::ZERO)] {
        for i in 0..n {
            // The first request starts an isolate; the second, right after, finds it warm.
            let (status, _, took) = get(&authority, &format!("/c{i}")).await?;
            anyhow::ensure!(status == 200, "c{i} answered {status}");
            times.push(ms(took));
            let (status, _, took) = get(&authority, &format!("/c{i}")).await?;
            anyhow::ensure!(status == 200, "c{i} answered {status}");
            warm.push(ms(took));
            tokio::time::sleep(gap).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let counted = node.counter("isola_cold_starts_total").await? - before;
    // New workers through the admin API: the deploy starts the first isolate, so the first
    // request after it finds the worker warm.
    let code =
        std::fs::read_to_string(hello).with_context(|| format!("reading {}", hello.display()))?;
    let mut deploy = Vec::with_capacity(n);
    let mut first = Vec::with_capacity(n);
    for i in 0..n {
        let body =
            serde_json::json!({ "code": code, "routes": [{ "path_prefix": format!("/d{i}") }] });
        let (status, text, took) = node
            .admin_put(&format!("/workers/d{i}"), body.to_string())
            .await?;
        anyhow::ensure!(status == 201, "deploying d{i} answered {status}: {text}");
        deploy.push(ms(took));
        let (status, _, took) = get(&authority, &format!("/d{i}")).await?;
        anyhow::ensure!(status == 200, "d{i} answered {status} after its deploy");
        first.push(ms(took));
    }
    let cold = spread(cold);
    let storm = spread(storm);
    let warm = spread(warm);
    let deploy = spread(deploy);
    let first = spread(first);
    println!(
        "deploy API: {n} new workers, deploy p50 {:.2} ms p99 {:.2} ms, then first request p50 {:.2} ms",
        deploy["p50"].as_f64().unwrap_or(0.0),
        deploy["p99"].as_f64().unwrap_or(0.0),
        first["p50"].as_f64().unwrap_or(0.0),
    );
    println!(
        "cold start, {} ms apart: first request p50 {:.2} ms p99 {:.2} ms (goal p50 ≤ 3 ms); back to back: p50 {:.2} ms p99 {:.2} ms ({counted} of {} counted by isola_cold_starts_total); warm p50 {:.2} ms",
        COLD_START_GAP.as_millis(),
        cold["p50"].as_f64().unwrap_or(0.0),
        cold["p99"].as_f64().unwrap_or(0.0),
        storm["p50"].as_f64().unwrap_or(0.0),
        storm["p99"].as_f64().unwrap_or(0.0),
        2 * n,
        warm["p50"].as_f64().unwrap_or(0.0),
    );
    Ok(serde_json::json!({
        "deployments": n,
        "cold_starts_counted": counted,
        "cold_ms": cold,
        "cold_back_to_back_ms": storm,
        "warm_ms": warm,
        "deploy_ms": deploy,
        "first_request_after_deploy_ms": first,
    }))
}

fn quiet_load(uri: http::Uri, duration: Duration) -> LoadSpec {
    LoadSpec {
        connections: 8,
        duration: Some(duration),
        warmup: Duration::from_millis(500),
        ..LoadSpec::get(uri)
    }
}

/// A node with a quiet tenant (`/quiet`) and one that spins at its CPU limit (`/noisy/spin`).
fn two_tenant_node(isola: &Path, hello: &Path, hog: &Path) -> anyhow::Result<Node> {
    start_node(
        isola,
        &[
            NodeWorker::new("quiet", hello, ""),
            NodeWorker::new(
                "noisy",
                hog,
                format!("cpu_ms = {CPU_MS}\nmax_isolates = 4\nmax_queue = 4096"),
            ),
        ],
    )
}

/// The quiet tenant's p99 alone, then next to the tenant that spins at its CPU limit.
async fn noisy_neighbour(node: &Node, duration: Duration) -> anyhow::Result<serde_json::Value> {
    let base = &node.process.url;
    let quiet_uri: http::Uri = format!("{base}/quiet").parse()?;
    let noisy_uri: http::Uri = format!("{base}/noisy/spin").parse()?;
    let alone = generator::run(quiet_load(quiet_uri.clone(), duration), None)
        .await?
        .summary();
    let noisy_spec = LoadSpec {
        connections: 8,
        duration: Some(duration + Duration::from_millis(500)),
        warmup: Duration::ZERO,
        ..LoadSpec::get(noisy_uri)
    };
    let (together, noisy) = tokio::join!(
        generator::run(quiet_load(quiet_uri, duration), None),
        generator::run(noisy_spec, None),
    );
    let together = together?.summary();
    let noisy = noisy?.summary();
    let ratio = together.latency_ms.p99 / alone.latency_ms.p99.max(f64::EPSILON);
    println!(
        "noisy neighbour: quiet p99 alone {:.2} ms ({:.0} rps), next to a tenant spinning at cpu_ms {:.2} ms ({:.0} rps, {} errors): {ratio:.2}× (goal ≤ 2×); noisy requests ended {}",
        alone.latency_ms.p99,
        alone.rps,
        together.latency_ms.p99,
        together.rps,
        together.error_count(),
        noisy.requests,
    );

    Ok(serde_json::json!({
        "quiet_alone": alone,
        "quiet_with_noisy": together,
        "noisy": noisy,
        "p99_ratio": ratio,
    }))
}

/// How long after `cpu_ms` a spinning request gets its 503, alone and 32 at once.
async fn cpu_limit_storm(node: &Node) -> anyhow::Result<serde_json::Value> {
    let authority = node.authority();
    let mut alone_ms = Vec::new();
    for _ in 0..20 {
        let (status, _, took) = get(&authority, "/noisy/spin").await?;
        anyhow::ensure!(status == 503, "a spinning request answered {status}");
        alone_ms.push(ms(took) - CPU_MS as f64);
    }
    let mut storm_ms = Vec::new();
    for _ in 0..3 {
        let spins = (0..32).map(|_| {
            let authority = authority.clone();
            tokio::spawn(async move { get(&authority, "/noisy/spin").await })
        });
        for spin in spins.collect::<Vec<_>>() {
            let (status, _, took) = spin.await??;
            anyhow::ensure!(status == 503, "a spinning request answered {status}");
            storm_ms.push(ms(took));
        }
    }
    let kills = node.counter("isola_isolate_kills_total").await?;
    let alone_ms = spread(alone_ms);
    let storm_ms = spread(storm_ms);
    println!(
        "cpu limit: a spinning request is answered p50 {:.2} ms / p99 {:.2} ms after its cpu_ms ({CPU_MS} ms); a storm of 32 at once on 4 isolates: p50 {:.1} ms, p99 {:.1} ms; {kills} kills counted",
        alone_ms["p50"].as_f64().unwrap_or(0.0),
        alone_ms["p99"].as_f64().unwrap_or(0.0),
        storm_ms["p50"].as_f64().unwrap_or(0.0),
        storm_ms["p99"].as_f64().unwrap_or(0.0),
    );
    Ok(serde_json::json!({
        "cpu_ms": CPU_MS,
        "limit_to_503_ms": alone_ms,
        "storm_32_latency_ms": storm_ms,
        "kills_counted": kills,
    }))
}
