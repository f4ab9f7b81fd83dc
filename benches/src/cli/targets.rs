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
        }),
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
            let process = ServerProcess::start(&command)?;
            targets.push(Target {
                name: "isola".to_owned(),
                uri: with_path(&process.url, path)?,
                process: Some(process),
                metrics,
            });
            if !args.no_deno && !scenario.tls_handshake && !scenario.isola_only && deno_available()
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
        });
    }
    Ok(targets)
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
