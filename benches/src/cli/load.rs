//! A load test: start the targets, check each answers, measure them in turn (every repeat
//! measures every target once, so drift hits them alike), then print the table and write
//! the JSON and the report directory.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, bail};
use http::Uri;

use super::BenchEnv;
use super::args::{RequestPlan, RunArgs, Settings, ms};
use super::measure::{self, Measured};
use super::targets::{self, Target};
use crate::generator::LoadSpec;
use crate::plots::Curve;
use crate::report::{Report, TargetReport};
use crate::scenario::{self, Scenario};
use crate::slow_clients::SlowClientsSpec;
use crate::stats::ErrorKind;

/// The default measured duration when neither `--duration` nor `--requests` is given.
const DEFAULT_DURATION: std::time::Duration = std::time::Duration::from_secs(10);

fn validate(args: &RunArgs) -> anyhow::Result<()> {
    for (flag, value) in [
        ("--connections", args.connections),
        ("--repeat", args.repeat),
        ("--threads", args.threads),
        ("--h2-streams", args.h2_streams),
        ("--max-in-flight", args.max_in_flight),
        ("--baseline-threads", args.baseline_threads),
    ] {
        if value == 0 {
            bail!("{flag} must be at least 1");
        }
    }
    if let Some(rate) = args.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        bail!("--rate must be a positive number of requests per second");
    }
    if args.requests == Some(0) {
        bail!("--requests must be at least 1");
    }
    Ok(())
}

/// Runs a load test as the flags say.
pub(super) fn run(args: RunArgs, env: &BenchEnv) -> anyhow::Result<()> {
    validate(&args)?;
    let scenario: Option<&Scenario> = match (&args.url, &args.scenario) {
        (Some(_), _) => None,
        (None, name) => Some(scenario::find(name.as_deref().unwrap_or("hello"))?),
    };
    if scenario.is_some_and(|s| s.websocket) {
        return super::websocket_echo::run(&args, env);
    }
    if scenario.is_some_and(|s| s.soak) {
        return super::soak::run(
            env,
            &super::soak::SoakArgs {
                duration: args.duration.unwrap_or(super::soak::DEFAULT_DURATION),
                examples_dir: args.examples_dir.clone(),
                json: args.json.clone(),
                report: args.report.clone(),
            },
        );
    }
    if let Some(part) = scenario
        .filter(|s| s.multi_tenant)
        .and_then(|s| super::tenants::Part::of_scenario(s.name))
    {
        return super::tenants::run(
            env,
            &super::tenants::TenantsArgs {
                deployments: 1000,
                cold_deployments: 200,
                duration: args.duration.unwrap_or(std::time::Duration::from_secs(5)),
                warmup: args.warmup,
                examples_dir: args.examples_dir.clone(),
                json: args.json.clone(),
                parts: vec![part],
                executor_threads: None,
            },
        );
    }
    let url_path = match &args.url {
        Some(url) => {
            let uri: Uri = url
                .parse()
                .with_context(|| format!("invalid --url {url}"))?;
            uri.path_and_query().map_or("/", |p| p.as_str()).to_owned()
        }
        None => "/".to_owned(),
    };
    let plan = RequestPlan::new(&args, scenario, &url_path)?;
    let duration = match (args.duration, args.requests) {
        (Some(d), _) => Some(d),
        (None, Some(_)) => None,
        (None, None) => Some(DEFAULT_DURATION),
    };
    let slow_clients = args
        .slow_clients
        .unwrap_or_else(|| scenario.map_or(0, |s| s.slow_clients));
    let new_connection_per_request =
        args.new_connection_per_request || scenario.is_some_and(|s| s.tls_handshake);

    let targets = targets::start(&args, scenario, &plan.path, env)?;
    let spec_for = |target: &Target| -> anyhow::Result<LoadSpec> {
        let https = target.uri.scheme_str() == Some("https");
        // Servers the harness started have self-signed certificates.
        let insecure = args.insecure || target.process.is_some();
        let tls = if https {
            Some(crate::tls::connector(args.http2, insecure)?)
        } else {
            None
        };
        Ok(LoadSpec {
            uri: target.uri.clone(),
            paths: Vec::new(),
            tls,
            method: plan.method.clone(),
            headers: plan.headers.clone(),
            body: plan.body.clone(),
            connections: args.connections,
            http2: args.http2,
            h2_streams: args.h2_streams,
            duration,
            requests: args.requests,
            warmup: args.warmup,
            rate: args.rate,
            max_in_flight: args.max_in_flight,
            timeout: args.timeout,
            new_connection_per_request,
            h1_client: args.h1_client,
        })
    };
    let slow_for = |target: &Target| -> anyhow::Result<Option<SlowClientsSpec>> {
        if slow_clients == 0 {
            return Ok(None);
        }
        slow_spec(target, &plan, &args, slow_clients).map(Some)
    };

    for target in &targets {
        preflight(&spec_for(target)?, target, args.insecure)?;
    }
    let cache_before = cache_counts(&targets)?;
    let repeats = args.repeat;
    let mut measured: Vec<Vec<Measured>> = targets.iter().map(|_| Vec::new()).collect();
    let mut scrapes = super::scrape::Scraped::default();
    for repeat in 0..repeats {
        for (target, runs) in targets.iter().zip(&mut measured) {
            let label = if repeats > 1 {
                format!("{} {}/{}", target.name, repeat + 1, repeats)
            } else {
                target.name.clone()
            };
            let scraper = target
                .scrape
                .clone()
                .map(super::scrape::Scraper::start)
                .transpose()?;
            let run = measure::measure(
                spec_for(target)?,
                args.threads,
                target.process.as_ref().map(|p| p.pid()),
                slow_for(target)?,
                label.clone(),
            );
            if let Some(scraper) = scraper {
                let scraped = scraper.stop();
                scrapes.ok += scraped.ok;
                scrapes.failed += scraped.failed;
                scrapes.page_bytes = scraped.page_bytes;
            }
            let run = run?;
            let s = &run.summary;
            eprintln!(
                "{label:<16} {:>10.0} rps  p50 {:.3} ms  p99 {:.3} ms  errors {}",
                s.rps,
                s.latency_ms.p50,
                s.latency_ms.p99,
                s.error_count()
            );
            runs.push(run);
        }
    }

    let settings = Settings {
        scenario: scenario.map(|s| s.name.to_owned()),
        url: args.url.clone(),
        method: plan.method.to_string(),
        path: plan.path.clone(),
        headers: args.headers.clone(),
        body_bytes: plan.body.len(),
        connections: args.connections,
        duration_ms: duration.map(ms),
        requests: args.requests,
        rate: args.rate,
        max_in_flight: args.max_in_flight,
        http2: args.http2,
        h2_streams: args.h2_streams,
        new_connection_per_request,
        h1_client: args.h1_client,
        tls: targets.iter().any(|t| t.uri.scheme_str() == Some("https")),
        repeat: repeats,
        warmup_ms: ms(args.warmup),
        timeout_ms: ms(args.timeout),
        threads: args.threads,
        baseline_threads: args.baseline_threads,
        slow_clients,
        slow_interval_ms: ms(args.slow_interval),
        peers: args.peers.clone(),
    };
    let mut report = Report::new(
        serde_json::to_value(&settings)?,
        targets
            .iter()
            .zip(&measured)
            .map(|(t, runs)| {
                TargetReport::new(
                    &t.name,
                    &t.uri.to_string(),
                    runs.iter().map(|m| m.summary.clone()).collect(),
                )
            })
            .collect(),
    );
    report.notes = notes(&report, args.threads, args.rate);
    if scenario.is_some_and(|s| s.observability) {
        let tail = targets
            .iter()
            .find_map(|t| t.tail.as_ref())
            .map(super::tail_client::TailClient::counts);
        report
            .notes
            .extend(observability_note(&report, &scrapes, tail));
    }
    for (target, before) in targets.iter().zip(cache_before) {
        if let (Some(before), Some(after)) = (before, cache_count(target)?) {
            report.notes.push(cache_note(&target.name, &before, &after));
        }
    }
    print!("{}", crate::table::render(&report));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(dir) = &args.report {
        let curves: Vec<Curve> = report
            .targets
            .iter()
            .zip(&measured)
            .map(|(target, runs)| (target.name.clone(), median_curve(target, runs)))
            .collect();
        write_report_dir(&report, &curves, dir)?;
        eprintln!("wrote {}", dir.join("report.md").display());
    }
    drop(targets);
    Ok(())
}

/// The latency curve of the repeat whose rps is closest to the median.
fn median_curve(target: &TargetReport, runs: &[Measured]) -> Vec<(f64, f64)> {
    runs.iter()
        .min_by(|a, b| {
            let da = (a.summary.rps - target.median.rps).abs();
            let db = (b.summary.rps - target.median.rps).abs();
            da.total_cmp(&db)
        })
        .map(|m| m.result.percentile_curve())
        .unwrap_or_default()
}

/// One request to `target` before measuring: fail early and clearly when it is down or its
/// certificate is not trusted; warn when it answers with an error status.
fn preflight(spec: &LoadSpec, target: &Target, insecure: bool) -> anyhow::Result<()> {
    let runtime = measure::runtime(1)?;
    match runtime.block_on(crate::generator::probe(spec)) {
        Ok(status) if status < 400 => Ok(()),
        Ok(status) => {
            eprintln!(
                "warning: {} ({}) answers {status}: its responses count as errors",
                target.name, target.uri
            );
            Ok(())
        }
        Err(failure) => {
            let hint = if failure.kind == ErrorKind::Tls && !insecure {
                " (a self-signed certificate? pass --insecure for local servers)"
            } else {
                ""
            };
            bail!(
                "{} ({}) does not answer: {failure}{hint}",
                target.name,
                target.uri
            )
        }
    }
}

fn slow_spec(
    target: &Target,
    plan: &RequestPlan,
    args: &RunArgs,
    count: usize,
) -> anyhow::Result<SlowClientsSpec> {
    let host = target.uri.host().context("the target URL has no host")?;
    let https = target.uri.scheme_str() == Some("https");
    let port = target
        .uri
        .port_u16()
        .unwrap_or(if https { 443 } else { 80 });
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(
        host.trim_start_matches('[').trim_end_matches(']'),
        port,
    ))?
    .next()
    .with_context(|| format!("cannot resolve {host}"))?;
    let tls = if https {
        let connector = crate::tls::connector(false, args.insecure || target.process.is_some())?;
        let name = rustls::pki_types::ServerName::try_from(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
        )?;
        Some((connector, name))
    } else {
        None
    };
    Ok(SlowClientsSpec {
        addr,
        tls,
        host: target
            .uri
            .authority()
            .map_or_else(|| host.to_owned(), |a| a.to_string()),
        method: plan.method.clone(),
        path: target
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.to_string()),
        body: plan.body.clone(),
        count,
        interval: args.slow_interval,
    })
}

/// `isola_cache_requests_total` by result, for each target whose metrics the harness reads.
fn cache_counts(targets: &[Target]) -> anyhow::Result<Vec<Option<BTreeMap<String, f64>>>> {
    targets.iter().map(cache_count).collect()
}

fn cache_count(target: &Target) -> anyhow::Result<Option<BTreeMap<String, f64>>> {
    let Some(metrics) = &target.metrics else {
        return Ok(None);
    };
    let runtime = measure::runtime(1)?;
    let (status, text, _) = runtime.block_on(super::node::get(metrics, "/metrics"))?;
    anyhow::ensure!(status == 200, "{}'s metrics answered {status}", target.name);
    let counts = text
        .lines()
        .filter_map(|line| line.strip_prefix("isola_cache_requests_total{result=\""))
        .filter_map(|rest| {
            let (result, value) = rest.split_once("\"} ")?;
            Some((result.to_owned(), value.trim().parse::<f64>().ok()?))
        })
        .collect();
    Ok(Some(counts))
}

/// How many of the requests during the measurement the cache answered.
fn cache_note(name: &str, before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> String {
    let delta = |result: &str| {
        after.get(result).copied().unwrap_or(0.0) - before.get(result).copied().unwrap_or(0.0)
    };
    let hits = delta("hit");
    let total: f64 = after.keys().map(|k| delta(k)).sum();
    let pct = if total > 0.0 {
        hits / total * 100.0
    } else {
        0.0
    };
    format!(
        "{name}: {hits:.0} of {total:.0} GET requests (warm-up included) were answered from the response cache ({pct:.2} %, isola_cache_requests_total)"
    )
}

/// The `observability` scenario's verdict: `isola-observed` against `isola` (medians of the
/// repeats), as ratios of server CPU per request and of throughput.
fn observability_note(
    report: &Report,
    scrapes: &super::scrape::Scraped,
    tail: Option<(u64, u64)>,
) -> Option<String> {
    let median = |name: &str| {
        report
            .targets
            .iter()
            .find(|t| t.name == name)
            .map(|t| &t.median)
    };
    let (off, on) = (median("isola")?, median("isola-observed")?);
    let cpu = match (off.server_cpu_ms_per_request, on.server_cpu_ms_per_request) {
        (Some(off), Some(on)) if off > 0.0 => format!(
            "server CPU per request {:.1} µs vs {:.1} µs off = {:.3}× ({:+.1} %)",
            on * 1000.0,
            off * 1000.0,
            on / off,
            (on / off - 1.0) * 100.0
        ),
        _ => "server CPU per request not measured".to_owned(),
    };
    let rps = if off.rps > 0.0 {
        format!(
            "throughput {:.0} vs {:.0} rps = {:.3}× ({:+.1} %)",
            on.rps,
            off.rps,
            on.rps / off.rps,
            (on.rps / off.rps - 1.0) * 100.0
        )
    } else {
        "no throughput".to_owned()
    };
    let (events, dropped) = tail.unwrap_or_default();
    Some(format!(
        "observability cost (metrics scraped every second: {} scrapes of {} bytes, {} failed; JSON logs at info to a file; one tail: {events} events read, {dropped} dropped by the node): {cpu}; {rps}; goal: at most 5 % more",
        scrapes.ok, scrapes.page_bytes, scrapes.failed
    ))
}

/// Warnings about the run that a reader of the numbers must know.
fn notes(report: &Report, threads: usize, rate: Option<f64>) -> Vec<String> {
    let mut notes = Vec::new();
    for target in &report.targets {
        let m = &target.median;
        if let Some(cpu) = m.generator_cpu_pct
            && cpu > 90.0 * threads as f64
        {
            notes.push(format!(
                "the generator used {cpu:.0}% CPU while measuring {}: it may have been the limit (try --threads {})",
                target.name,
                threads + 1
            ));
        }
        if let Some(lag) = m.schedule_lag_max_ms
            && lag > 5.0
        {
            notes.push(format!(
                "the generator released requests to {} up to {lag:.1} ms late (its own timer): latencies below that are unreliable",
                target.name
            ));
        }
        if let Some(rate) = rate
            && m.rps < rate * 0.95
        {
            notes.push(format!(
                "{} served {:.0} of the {rate:.0} requests/s asked for",
                target.name, m.rps
            ));
        }
        if m.error_count() > 0 {
            notes.push(format!("{} had errors: {:?}", target.name, m.errors));
        }
    }
    notes
}

/// Writes `report.md`, `latency.svg` and `throughput.svg` into `dir`.
fn write_report_dir(report: &Report, curves: &[Curve], dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::plots::latency_svg(curves, &dir.join("latency.svg"))?;
    crate::plots::throughput_svg(report, &dir.join("throughput.svg"))?;
    let path = dir.join("report.md");
    std::fs::write(&path, crate::markdown::render(report))
        .with_context(|| format!("writing {}", path.display()))
}
