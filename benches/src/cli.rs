//! The command line, shared by `isola-bench` and `isola bench`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use http::{HeaderName, HeaderValue, Method, Uri};

use crate::generator::{self, LoadSpec};
use crate::report::{self, Report, TargetReport};
use crate::server::ServerProcess;
use crate::stats::Summary;

/// Measures the isolate start-up of a worker `iterations` times (only the `isola` binary,
/// which contains the runtime, can provide this).
pub type StartupProbe = fn(worker: &Path, iterations: usize) -> anyhow::Result<Vec<Duration>>;

/// How the CLI reaches the programs it starts.
pub struct BenchEnv {
    /// The `isola` binary to benchmark.
    pub isola_exe: Option<PathBuf>,
    /// How to run this same CLI as a child process (`[exe]` or `[exe, "bench"]`).
    pub self_cmd: Vec<OsString>,
    /// Isolate start-up measurement, when running inside `isola`.
    pub startup_probe: Option<StartupProbe>,
}

/// Load-test Isola (or any URL) next to a raw hyper baseline measured in the same run.
#[derive(Debug, Parser)]
#[command(name = "isola-bench", version)]
pub struct BenchCli {
    #[command(subcommand)]
    command: Option<BenchCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// List the built-in scenarios.
    Scenarios,
    /// Measure isolate start-up (create from the snapshot + evaluate the worker).
    Startup {
        /// The worker to start.
        #[arg(default_value = "examples/hello.js")]
        worker: PathBuf,
        /// How many isolates to start.
        #[arg(long, default_value_t = 200)]
        iterations: usize,
        /// Write the result as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Compare two JSON reports (medians of repeats); exits non-zero on a regression.
    Compare {
        /// The reference run.
        a: PathBuf,
        /// The run to judge.
        b: PathBuf,
        /// A metric worse by more than this (percent) is a regression.
        #[arg(long, default_value_t = 5.0)]
        threshold_pct: f64,
        /// Compare runs from different machines anyway.
        #[arg(long)]
        force: bool,
    },
    /// Check that the generator is not the bottleneck: it and wrk (if installed) measure the
    /// raw hyper baseline with the same settings (1 thread, 64 connections) in the same run.
    SelfCheck {
        /// How long each tool runs.
        #[arg(long, value_parser = crate::duration::parse, default_value = "5s")]
        duration: Duration,
        /// Connections.
        #[arg(long, default_value_t = 64)]
        connections: usize,
    },
    /// Serve the raw hyper hello baseline (used by the harness itself).
    #[command(hide = true)]
    ServeBaseline {
        /// Port (0 picks one).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Tokio worker threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Measure this URL (a server you started) instead of a scenario.
    #[arg(long, conflicts_with = "scenario")]
    url: Option<String>,
    /// A built-in scenario (see `scenarios`). Default: hello.
    #[arg(long)]
    scenario: Option<String>,
    /// Connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Measured duration (after warm-up), e.g. 10s, 500ms.
    #[arg(long, value_parser = crate::duration::parse, default_value = "10s")]
    duration: Duration,
    /// Stop after this many measured requests (per target and repeat).
    #[arg(long)]
    requests: Option<u64>,
    /// Open loop: requests per second (latency counted from the intended send time).
    #[arg(long)]
    rate: Option<f64>,
    /// HTTP/2 with prior knowledge.
    #[arg(long)]
    http2: bool,
    /// Concurrent streams per HTTP/2 connection.
    #[arg(long, default_value_t = 10)]
    h2_streams: usize,
    /// Open a new connection for every request.
    #[arg(long)]
    new_connection_per_request: bool,
    /// Run everything this many times; reports keep each repeat and the median.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Excluded from the results.
    #[arg(long, value_parser = crate::duration::parse, default_value = "1s")]
    warmup: Duration,
    /// Per-request timeout.
    #[arg(long, value_parser = crate::duration::parse, default_value = "10s")]
    timeout: Duration,
    /// Threads of the load generator.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Worker threads of the baseline server.
    #[arg(long, default_value_t = 2)]
    baseline_threads: usize,
    /// Accept any TLS certificate (for local servers with development certificates).
    #[arg(long)]
    insecure: bool,
    /// Skip the raw hyper baseline.
    #[arg(long)]
    no_baseline: bool,
    /// Also measure a server you started, e.g. `--peer deno=http://127.0.0.1:8000/`.
    #[arg(long = "peer", value_name = "NAME=URL")]
    peers: Vec<String>,
    /// Do not measure `deno serve` with the same worker, even if `deno` is on PATH.
    #[arg(long)]
    no_deno: bool,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write report.md, latency.svg and throughput.svg into this directory.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Where the example workers are.
    #[arg(long)]
    examples_dir: Option<PathBuf>,
}

/// A built-in scenario.
struct Scenario {
    name: &'static str,
    /// Serve over TLS (self-signed) and open a new connection for every request.
    tls_handshake: bool,
    about: &'static str,
    worker: Option<&'static str>,
    method: &'static str,
    path: &'static str,
    body_bytes: usize,
}

impl Scenario {
    /// A scenario that needs a feature Isola does not have yet: listed, never faked.
    const fn unavailable(name: &'static str, about: &'static str) -> Self {
        Self {
            name,
            tls_handshake: false,
            about,
            worker: None,
            method: "GET",
            path: "/",
            body_bytes: 0,
        }
    }
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "hello",
        tls_handshake: false,
        about: "GET / of examples/hello.js",
        worker: Some("hello.js"),
        method: "GET",
        path: "/",
        body_bytes: 0,
    },
    Scenario {
        name: "json-api",
        tls_handshake: false,
        about: "GET /api/items of examples/json-api.js",
        worker: Some("json-api.js"),
        method: "GET",
        path: "/api/items",
        body_bytes: 0,
    },
    Scenario {
        name: "ssr",
        tls_handshake: false,
        about: "GET / of the router app (preact server rendering)",
        worker: Some("router-app/dist/worker.js"),
        method: "GET",
        path: "/",
        body_bytes: 0,
    },
    Scenario {
        name: "large-body",
        tls_handshake: false,
        about: "POST 1 MiB to /echo of examples/streaming.js, 1 MiB back",
        worker: Some("streaming.js"),
        method: "POST",
        path: "/echo",
        body_bytes: 1 << 20,
    },
    Scenario::unavailable("slow-clients", "not available yet"),
    Scenario {
        name: "tls-handshake",
        tls_handshake: true,
        about: "GET / of examples/hello.js over TLS, a new connection (full handshake) per request",
        worker: Some("hello.js"),
        method: "GET",
        path: "/",
        body_bytes: 0,
    },
    Scenario::unavailable("cache-hit", "not available yet (needs the response cache)"),
    Scenario::unavailable("cold-start", "not available yet (needs the deploy API)"),
    Scenario::unavailable("many-tenants", "not available yet (needs the deploy API)"),
    Scenario::unavailable(
        "noisy-neighbour",
        "not available yet (needs the isolate pool)",
    ),
    Scenario::unavailable(
        "cpu-limit-storm",
        "not available yet (needs enforced CPU limits)",
    ),
];

/// Runs the CLI.
pub fn run(cli: BenchCli, env: BenchEnv) -> anyhow::Result<()> {
    match cli.command {
        Some(BenchCommand::ServeBaseline { port, threads }) => {
            crate::baseline::serve(port, threads)
        }
        Some(BenchCommand::Scenarios) => {
            for s in SCENARIOS {
                println!("{:<16} {}", s.name, s.about);
            }
            Ok(())
        }
        Some(BenchCommand::Startup {
            worker,
            iterations,
            json,
        }) => startup(&env, &worker, iterations, json.as_deref()),
        Some(BenchCommand::Compare {
            a,
            b,
            threshold_pct,
            force,
        }) => compare_files(&a, &b, threshold_pct, force),
        Some(BenchCommand::SelfCheck {
            duration,
            connections,
        }) => self_check(&env, duration, connections),
        None => load(cli.run, &env),
    }
}

fn self_check(env: &BenchEnv, duration: Duration, connections: usize) -> anyhow::Result<()> {
    let mut command = env.self_cmd.clone();
    command.extend(["serve-baseline".into(), "--threads".into(), "1".into()]);
    let baseline = ServerProcess::start(&command)?;
    let url = format!("{}/", baseline.url);
    let spec = LoadSpec {
        uri: url.parse()?,
        tls: None,
        method: Method::GET,
        headers: Vec::new(),
        body: Bytes::new(),
        connections,
        http2: false,
        h2_streams: 1,
        duration: Some(duration),
        requests: None,
        warmup: Duration::from_millis(500),
        rate: None,
        timeout: Duration::from_secs(10),
        new_connection_per_request: false,
    };
    let ours = measure(spec, 1)?.summary();
    println!(
        "isola-bench: {:>10.0} rps (1 thread, {connections} connections, {duration:?})",
        ours.rps
    );
    let wrk = std::process::Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{}s", duration.as_secs().max(1)),
            &url,
        ])
        .output();
    match wrk {
        Ok(output) if output.status.success() => {
            let text = String::from_utf8_lossy(&output.stdout);
            let wrk_rps: f64 = text
                .lines()
                .find_map(|l| l.strip_prefix("Requests/sec:"))
                .and_then(|v| v.trim().parse().ok())
                .context("cannot read wrk's Requests/sec")?;
            println!("wrk:         {wrk_rps:>10.0} rps (same settings)");
            println!(
                "ratio isola-bench / wrk: {:.2}",
                ours.rps / wrk_rps.max(1e-9)
            );
        }
        _ => println!("wrk is not installed (Debian package `wrk`); only isola-bench was measured"),
    }
    Ok(())
}

fn compare_files(a: &Path, b: &Path, threshold_pct: f64, force: bool) -> anyhow::Result<()> {
    let read = |path: &Path| -> anyhow::Result<Report> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a benchmark report", path.display()))
    };
    let (table, regressions) = crate::compare::compare(&read(a)?, &read(b)?, threshold_pct, force)?;
    print!("{table}");
    if regressions.is_empty() {
        println!("no regression beyond {threshold_pct}%");
        Ok(())
    } else {
        bail!(
            "{} regression(s) beyond {threshold_pct}%",
            regressions.len()
        )
    }
}

fn startup(
    env: &BenchEnv,
    worker: &Path,
    iterations: usize,
    json: Option<&Path>,
) -> anyhow::Result<()> {
    let probe = env
        .startup_probe
        .context("isolate start-up can only be measured by `isola bench startup`")?;
    let mut times = probe(worker, iterations.max(1))?;
    times.sort();
    let ms = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1000.0;
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
            "schema_version": report::SCHEMA_VERSION,
            "git_sha": report::git_sha(),
            "machine": report::machine(),
            "started_at": report::now_rfc3339(),
            "benchmark": "isolate-startup",
            "worker": worker.display().to_string(),
            "iterations": times.len(),
            "startup_ms": { "p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "max": ms(1.0), "mean": mean },
        });
        std::fs::write(path, serde_json::to_vec_pretty(&value)?)?;
    }
    Ok(())
}

/// A server to measure.
struct Target {
    name: String,
    uri: Uri,
    process: Option<ServerProcess>,
}

fn load(args: RunArgs, env: &BenchEnv) -> anyhow::Result<()> {
    let scenario_name = args.scenario.clone().unwrap_or_else(|| "hello".to_owned());
    let scenario = SCENARIOS
        .iter()
        .find(|s| s.name == scenario_name)
        .with_context(|| format!("unknown scenario `{scenario_name}`; `scenarios` lists them"))?;
    let mut targets = Vec::new();
    match &args.url {
        Some(url) => targets.push(Target {
            name: "target".to_owned(),
            uri: url
                .parse()
                .with_context(|| format!("invalid --url {url}"))?,
            process: None,
        }),
        None => {
            let Some(worker) = scenario.worker else {
                bail!("scenario `{}` is {}", scenario.name, scenario.about);
            };
            let examples = args
                .examples_dir
                .clone()
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples"));
            let isola = env
                .isola_exe
                .clone()
                .context("no isola binary to benchmark (pass --isola-bin)")?;
            let command: Vec<OsString> = vec![
                isola.into(),
                "dev".into(),
                examples.join(worker).into(),
                "--port".into(),
                "0".into(),
                "--no-watch".into(),
            ];
            let mut command = command;
            if scenario.tls_handshake {
                command.push("--tls".into());
            }
            let process = ServerProcess::start(&command)?;
            let uri = format!("{}{}", process.url, scenario.path).parse()?;
            targets.push(Target {
                name: "isola".to_owned(),
                uri,
                process: Some(process),
            });
            if !args.no_deno && !scenario.tls_handshake && deno_available() {
                let command: Vec<OsString> = vec![
                    "deno".into(),
                    "serve".into(),
                    "--host".into(),
                    "127.0.0.1".into(),
                    "--port".into(),
                    "0".into(),
                    examples.join(worker).into(),
                ];
                let process = ServerProcess::start(&command)?;
                let uri = format!("{}{}", process.url, scenario.path).parse()?;
                targets.push(Target {
                    name: "deno".to_owned(),
                    uri,
                    process: Some(process),
                });
            }
        }
    }
    for peer in &args.peers {
        let (name, url) = peer
            .split_once('=')
            .with_context(|| format!("--peer expects NAME=URL, got {peer}"))?;
        targets.push(Target {
            name: name.to_owned(),
            uri: url
                .parse()
                .with_context(|| format!("invalid peer URL {url}"))?,
            process: None,
        });
    }
    if !args.no_baseline {
        let mut command = env.self_cmd.clone();
        command.extend([
            "serve-baseline".into(),
            "--threads".into(),
            args.baseline_threads.to_string().into(),
        ]);
        let process = ServerProcess::start(&command)?;
        targets.insert(
            0,
            Target {
                name: "baseline".to_owned(),
                uri: format!("{}/", process.url).parse()?,
                process: Some(process),
            },
        );
    }

    let is_baseline_body = |t: &Target| t.name == "baseline";
    let mut repeats: Vec<Vec<Summary>> = vec![Vec::new(); targets.len()];
    let mut curves: Vec<Vec<Vec<(f64, f64)>>> = vec![Vec::new(); targets.len()];
    for repeat in 0..args.repeat.max(1) {
        for (i, target) in targets.iter().enumerate() {
            let https = target.uri.scheme_str() == Some("https");
            let tls = if https {
                Some(crate::tls::connector(
                    args.http2,
                    args.insecure || scenario.tls_handshake,
                )?)
            } else {
                None
            };
            let spec = LoadSpec {
                uri: target.uri.clone(),
                tls,
                method: if is_baseline_body(target) {
                    Method::GET
                } else {
                    scenario.method.parse()?
                },
                headers: vec![(
                    HeaderName::from_static("content-type"),
                    HeaderValue::from_static("application/octet-stream"),
                )],
                body: if is_baseline_body(target) {
                    Bytes::new()
                } else {
                    Bytes::from(vec![b'x'; scenario.body_bytes])
                },
                connections: args.connections,
                http2: args.http2,
                h2_streams: args.h2_streams,
                duration: if args.requests.is_some() {
                    None
                } else {
                    Some(args.duration)
                },
                requests: args.requests,
                warmup: args.warmup,
                rate: args.rate,
                timeout: args.timeout,
                new_connection_per_request: args.new_connection_per_request
                    || scenario.tls_handshake,
            };
            let cpu_before = target.process.as_ref().and_then(ServerProcess::cpu_time);
            let result = measure(spec, args.threads)?;
            let cpu_after = target.process.as_ref().and_then(ServerProcess::cpu_time);
            let mut summary = result.summary();
            if let (Some(before), Some(after)) = (cpu_before, cpu_after)
                && result.requests > 0
            {
                // Warm-up requests used CPU too; charge the whole window to all requests sent.
                let sent = result.requests as f64
                    * (1.0 + args.warmup.as_secs_f64() / result.elapsed.as_secs_f64().max(1e-9));
                summary.server_cpu_ms_per_request =
                    Some((after - before).as_secs_f64() * 1000.0 / sent);
            }
            eprintln!(
                "repeat {}/{}: {:<10} {:>9.0} rps, p99 {:.3} ms, errors {}",
                repeat + 1,
                args.repeat.max(1),
                target.name,
                summary.rps,
                summary.latency_ms.p99,
                result.error_count()
            );
            repeats[i].push(summary);
            curves[i].push(percentile_curve(&result));
        }
    }
    let mut report = Report {
        schema_version: report::SCHEMA_VERSION,
        git_sha: report::git_sha(),
        machine: report::machine(),
        started_at: report::now_rfc3339(),
        settings: serde_json::json!({
            "scenario": args.url.as_ref().map_or(scenario.name, |_| "url"),
            "connections": args.connections,
            "duration_ms": args.duration.as_millis() as u64,
            "requests": args.requests,
            "rate": args.rate,
            "http2": args.http2,
            "h2_streams": args.h2_streams,
            "new_connection_per_request": args.new_connection_per_request,
            "repeat": args.repeat,
            "warmup_ms": args.warmup.as_millis() as u64,
            "threads": args.threads,
            "baseline_threads": args.baseline_threads,
        }),
        targets: targets
            .iter()
            .zip(repeats)
            .map(|(t, r)| TargetReport::new(&t.name, &t.uri.to_string(), r))
            .collect(),
    };
    report.compute_ratios();
    print!("{}", report.table());
    if let Some(dir) = &args.report {
        let median_curves: Vec<(String, Vec<(f64, f64)>)> = report
            .targets
            .iter()
            .zip(&curves)
            .map(|(target, curves)| {
                let index = target
                    .repeats
                    .iter()
                    .position(|r| r.rps == target.median.rps)
                    .unwrap_or(0);
                (
                    target.name.clone(),
                    curves.get(index).cloned().unwrap_or_default(),
                )
            })
            .collect();
        crate::plots::write(&report, &median_curves, dir)?;
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Whether `deno` (e.g. the PyPI package `deno`) can be run.
fn deno_available() -> bool {
    std::process::Command::new("deno")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// (quantile, latency ms) points for the percentile plot.
fn percentile_curve(result: &crate::stats::RunResult) -> Vec<(f64, f64)> {
    if result.latency.is_empty() {
        return Vec::new();
    }
    (0..=400)
        .map(|i| {
            // Evenly spaced in "nines": q = 1 - 10^(-x), x from 0 to 4.
            let q = 1.0 - 10f64.powf(-(i as f64) / 100.0);
            (q, result.latency.value_at_quantile(q) as f64 / 1000.0)
        })
        .collect()
}

fn measure(spec: LoadSpec, threads: usize) -> anyhow::Result<crate::stats::RunResult> {
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    Ok(runtime.block_on(generator::run(spec)))
}
