//! The servers a run measures: the baseline (started here), Isola for a scenario (started
//! here), `deno serve` with the same worker (started here if `deno` is installed), the
//! `--url` target and `--peer` servers (started by the user).

use std::ffi::OsString;

use anyhow::{Context as _, bail};
use http::Uri;

use super::BenchEnv;
use super::args::RunArgs;
use crate::report::BASELINE;
use crate::scenario::Scenario;
use crate::server::ServerProcess;

/// A server to measure.
pub(super) struct Target {
    pub name: String,
    pub uri: Uri,
    /// Set when the harness started it (its CPU is measured; it is killed when dropped).
    pub process: Option<ServerProcess>,
    /// `host:port` of its Prometheus metrics, when the harness asked for them.
    pub metrics: Option<String>,
    /// `host:port` of metrics to scrape every second while it is measured.
    pub scrape: Option<String>,
    /// A live tail connected to it for the whole run.
    pub tail: Option<super::tail_client::TailClient>,
    /// The generated config of a node the harness started (kept while it runs).
    #[allow(dead_code, reason = "removed when dropped")]
    pub files: Option<super::node::NodeFiles>,
}

/// `base` with `path` unless `base` has a path of its own.
pub(super) fn with_path(base: &str, path: &str) -> anyhow::Result<Uri> {
    let uri: Uri = base
        .parse()
        .with_context(|| format!("invalid URL {base}"))?;
    let own_path = uri.path_and_query().map_or("/", |p| p.as_str());
    if own_path != "/" && !own_path.is_empty() {
        return Ok(uri);
    }
    let scheme = uri
        .scheme_str()
        .context("the URL needs http:// or https://")?;
    let authority = uri.authority().context("the URL needs a host")?;
    format!("{scheme}://{authority}{path}")
        .parse()
        .with_context(|| format!("invalid path {path}"))
}

/// Starts (or names) every target, the baseline first. `path` is the request's path.
pub(super) fn start(
    args: &RunArgs,
    scenario: Option<&Scenario>,
    path: &str,
    env: &BenchEnv,
) -> anyhow::Result<Vec<Target>> {
    let mut targets = Vec::new();
    let tls = scenario.is_some_and(|s| s.tls_handshake)
        || args
            .url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"));
    if !args.no_baseline {
        let mut command = env.self_cmd.clone();
        anyhow::ensure!(!command.is_empty(), "no command to start the baseline with");
        command.extend([
            "serve-baseline".into(),
            "--exit-on-stdin-eof".into(),
            "--threads".into(),
            args.baseline_threads.to_string().into(),
        ]);
        if tls {
            command.push("--tls".into());
        }
        let process = ServerProcess::start(&command)?;
        targets.push(Target {
            name: BASELINE.to_owned(),
            uri: with_path(&process.url, path)?,
            process: Some(process),
            metrics: None,
            scrape: None,
            tail: None,
            files: None,
        });
    }
    match (&args.url, scenario) {
        (Some(url), _) => targets.push(Target {
            name: "target".to_owned(),
            uri: url
                .parse()
                .with_context(|| format!("invalid --url {url}"))?,
            process: None,
            metrics: None,
            scrape: None,
            tail: None,
            files: None,
        }),
        (None, Some(scenario)) if scenario.observability => {
            observed(args, scenario, env, &mut targets)?;
        }
        (None, Some(scenario)) => {
            let worker = scenario
                .worker
                .map(|w| args.examples_dir.join(w))
                .context("this scenario has no worker")?;
            if !worker.is_file() {
                bail!(
                    "the {} scenario's worker {} does not exist (set --examples-dir)",
                    scenario.name,
                    worker.display()
                );
            }
            let isola = env
                .isola_exe
                .clone()
                .context("no isola binary to benchmark: pass --isola-bin")?;
            if !isola.is_file() {
                bail!(
                    "the isola binary {} does not exist: build it (cargo build --release -p isola) or pass --isola-bin",
                    isola.display()
                );
            }
            let mut command: Vec<OsString> = vec![
                isola.into(),
                "dev".into(),
                worker.clone().into(),
                "--port".into(),
                "0".into(),
                "--host".into(),
                "127.0.0.1".into(),
                "--no-watch".into(),
            ];
            if scenario.tls_handshake {
                command.push("--tls".into());
            }
            let metrics = if scenario.counts_cache_hits {
                let port = super::node::free_port()?;
                command.extend([
                    "--cache".into(),
                    "--metrics-port".into(),
                    port.to_string().into(),
                ]);
                Some(format!("127.0.0.1:{port}"))
            } else {
                None
            };
            // Without printing each request (and the tail that takes): `isola dev --quiet`.
            let process = ServerProcess::start_with_env(&command, &[("ISOLA_DEV_QUIET", "true")])?;
            targets.push(Target {
                name: "isola".to_owned(),
                uri: with_path(&process.url, path)?,
                process: Some(process),
                metrics,
                scrape: None,
                tail: None,
                files: None,
            });
            if !args.no_deno
                && !scenario.tls_handshake
                && !scenario.observability
                && !scenario.isola_only
                && deno_available()
            {
                let command: Vec<OsString> = vec![
                    "deno".into(),
                    "serve".into(),
                    "--host".into(),
                    "127.0.0.1".into(),
                    "--port".into(),
                    "0".into(),
                    worker.into(),
                ];
                match ServerProcess::start(&command) {
                    Ok(process) => targets.push(Target {
                        name: "deno".to_owned(),
                        uri: with_path(&process.url, path)?,
                        process: Some(process),
                        metrics: None,
                        scrape: None,
                        tail: None,
                        files: None,
                    }),
                    Err(error) => eprintln!("warning: not measuring deno: {error}"),
                }
            }
        }
        (None, None) => bail!("nothing to measure: pass --scenario or --url"),
    }
    for peer in &args.peers {
        let (name, url) = peer
            .split_once('=')
            .with_context(|| format!("--peer expects NAME=URL, got {peer}"))?;
        if targets.iter().any(|t| t.name == name) {
            bail!("two targets are called {name}");
        }
        targets.push(Target {
            name: name.to_owned(),
            uri: with_path(url, path)?,
            process: None,
            metrics: None,
            scrape: None,
            tail: None,
            files: None,
        });
    }
    Ok(targets)
}

/// The `observability` scenario's two nodes (`isola serve` from a generated config with
/// metrics and the admin API, the worker routed at `/hello`): `isola`, with all of it off
/// (logs at `warn` as text, nothing scraped, no tail), and `isola-observed`, with JSON logs at
/// `info` appended to a file, metrics scraped every second while it is measured and one live
/// tail connected and read for the whole run.
fn observed(
    args: &RunArgs,
    scenario: &Scenario,
    env: &BenchEnv,
    targets: &mut Vec<Target>,
) -> anyhow::Result<()> {
    let file = scenario
        .worker
        .map(|w| args.examples_dir.join(w))
        .context("this scenario has no worker")?;
    if !file.is_file() {
        bail!(
            "the {} scenario's worker {} does not exist (set --examples-dir)",
            scenario.name,
            file.display()
        );
    }
    let isola = super::node::isola_binary(env)?;
    let workers = [super::node::NodeWorker::new("hello", &file, "")];
    let (process, files) = super::node::start_node(&isola, &workers)?.into_parts();
    targets.push(Target {
        name: "isola".to_owned(),
        uri: with_path(&process.url, "/hello")?,
        process: Some(process),
        metrics: None,
        scrape: None,
        tail: None,
        files: Some(files),
    });
    let log = std::env::temp_dir().join(format!("isola-bench-observed-{}.log", std::process::id()));
    let node = super::node::start_node_logging(&isola, &workers, Some(&log))?;
    eprintln!("isola-observed logs to {}", log.display());
    let tail = super::tail_client::TailClient::connect(&node.admin, &node.token, "hello")?;
    let scrape = node.metrics.clone();
    let (process, files) = node.into_parts();
    targets.push(Target {
        name: "isola-observed".to_owned(),
        uri: with_path(&process.url, "/hello")?,
        process: Some(process),
        metrics: None,
        scrape: Some(scrape),
        tail: Some(tail),
        files: Some(files),
    });
    Ok(())
}

/// Whether `deno` can be run.
fn deno_available() -> bool {
    std::process::Command::new("deno")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn peer_urls_get_the_scenario_path_unless_they_have_one() {
        assert_eq!(
            with_path("http://127.0.0.1:8000", "/api/items").unwrap(),
            "http://127.0.0.1:8000/api/items"
        );
        assert_eq!(
            with_path("http://127.0.0.1:8000/", "/api/items").unwrap(),
            "http://127.0.0.1:8000/api/items"
        );
        assert_eq!(
            with_path("http://127.0.0.1:8000/other?q=1", "/api/items").unwrap(),
            "http://127.0.0.1:8000/other?q=1"
        );
        assert!(with_path("not a url", "/").is_err());
    }
}
