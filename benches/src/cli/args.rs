//! The load-test flags, and what they resolve to: the request to send and the settings that
//! go into the report.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::Args;
use http::{HeaderName, HeaderValue, Method};
use serde::Serialize;

use crate::scenario::Scenario;

/// Flags of a load test (the CLI without a subcommand).
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Measure this URL (a server you started) instead of a scenario.
    #[arg(long, conflicts_with = "scenario")]
    pub(super) url: Option<String>,
    /// A built-in scenario (listed below and by `scenarios`); Isola is started for it.
    #[arg(long)]
    pub(super) scenario: Option<String>,
    /// Connections (per target).
    #[arg(long, default_value_t = 64)]
    pub(super) connections: usize,
    /// Measured duration after the warm-up, e.g. 10s, 500ms, 1m [default: 10s unless
    /// --requests is given].
    #[arg(long, value_parser = crate::duration::parse)]
    pub(super) duration: Option<Duration>,
    /// Stop after this many measured requests (per target and repeat).
    #[arg(long)]
    pub(super) requests: Option<u64>,
    /// Open loop: requests per second on a fixed schedule; latency counts from each
    /// request's due time, so waiting for a busy connection is charged to the server.
    #[arg(long)]
    pub(super) rate: Option<f64>,
    /// Open loop: most requests outstanding at once; a request due beyond that is not sent
    /// and counts as `dropped`.
    #[arg(long, default_value_t = 10_000)]
    pub(super) max_in_flight: usize,
    /// HTTP/2 (prior knowledge on http://, ALPN h2 on https://).
    #[arg(long)]
    pub(super) http2: bool,
    /// Concurrent streams per HTTP/2 connection.
    #[arg(long, default_value_t = 10)]
    pub(super) h2_streams: usize,
    /// Open a new connection (and TLS handshake) for every request.
    #[arg(long)]
    pub(super) new_connection_per_request: bool,
    /// HTTP/1.1 client: `fast` (serialised once, parsed in place: least generator CPU) or
    /// `hyper` (hyper's client connection).
    #[arg(long, value_enum, default_value_t = crate::generator::H1Client::Fast)]
    pub(super) h1_client: crate::generator::H1Client,
    /// Request method [default: the scenario's, or GET].
    #[arg(long)]
    pub(super) method: Option<String>,
    /// Extra request header `NAME:VALUE` (repeatable).
    #[arg(long = "header", value_name = "NAME:VALUE")]
    pub(super) headers: Vec<String>,
    /// Send this file as the request body.
    #[arg(long, conflicts_with = "body_bytes")]
    pub(super) body_file: Option<PathBuf>,
    /// Send a body of this many bytes.
    #[arg(long)]
    pub(super) body_bytes: Option<usize>,
    /// Run everything this many times; the report keeps each repeat and the medians.
    #[arg(long, default_value_t = 1)]
    pub(super) repeat: usize,
    /// Load before measuring, excluded from the results.
    #[arg(long, value_parser = crate::duration::parse, default_value = "1s")]
    pub(super) warmup: Duration,
    /// Per-request timeout (from the request's start, or its due time in open loop).
    #[arg(long, value_parser = crate::duration::parse, default_value = "10s")]
    pub(super) timeout: Duration,
    /// Threads of the load generator's runtime.
    #[arg(long, default_value_t = 1)]
    pub(super) threads: usize,
    /// Worker threads of the baseline server.
    #[arg(long, default_value_t = 2)]
    pub(super) baseline_threads: usize,
    /// Slow clients next to the load (half trickle requests byte by byte, half read
    /// slowly) [default: the scenario's, or 0].
    #[arg(long)]
    pub(super) slow_clients: Option<usize>,
    /// A slow client's pace: one byte sent, or 64 bytes read, per interval.
    #[arg(long, value_parser = crate::duration::parse, default_value = "20ms")]
    pub(super) slow_interval: Duration,
    /// Accept any TLS certificate (local servers with self-signed certificates).
    #[arg(long)]
    pub(super) insecure: bool,
    /// Skip the raw hyper baseline.
    #[arg(long)]
    pub(super) no_baseline: bool,
    /// Also measure a server you started, side by side: `NAME=URL` (repeatable). A URL
    /// without a path gets the scenario's path.
    #[arg(long = "peer", value_name = "NAME=URL")]
    pub(super) peers: Vec<String>,
    /// Do not also measure `deno serve` with the scenario's worker when `deno` is on PATH.
    #[arg(long)]
    pub(super) no_deno: bool,
    /// Write the JSON report here.
    #[arg(long)]
    pub(super) json: Option<PathBuf>,
    /// Write report.md, latency.svg and throughput.svg into this directory.
    #[arg(long)]
    pub(super) report: Option<PathBuf>,
    /// Where the example workers are.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"))]
    pub(super) examples_dir: PathBuf,
    /// The isola binary to start for scenarios [default: `isola` next to this executable].
    #[arg(long, env = "ISOLA_BIN")]
    pub(super) isola_bin: Option<PathBuf>,
}

/// What every target is sent.
#[derive(Debug, Clone)]
pub(super) struct RequestPlan {
    pub method: Method,
    /// Path and query.
    pub path: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

impl RequestPlan {
    /// The request from the flags, defaulting to the scenario's.
    pub fn new(
        args: &RunArgs,
        scenario: Option<&Scenario>,
        url_path: &str,
    ) -> anyhow::Result<Self> {
        let method = match &args.method {
            Some(m) => Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                .with_context(|| format!("invalid --method {m}"))?,
            None => scenario.map_or(Ok(Method::GET), |s| s.method.parse())?,
        };
        let mut headers = Vec::new();
        for header in &args.headers {
            headers.push(parse_header(header)?);
        }
        let body = match (&args.body_file, args.body_bytes) {
            (Some(path), _) => Bytes::from(
                std::fs::read(path)
                    .with_context(|| format!("reading --body-file {}", path.display()))?,
            ),
            (None, Some(n)) => Bytes::from(vec![b'x'; n]),
            (None, None) => Bytes::from(vec![b'x'; scenario.map_or(0, |s| s.body_bytes)]),
        };
        if !body.is_empty() && !headers.iter().any(|(n, _)| n == http::header::CONTENT_TYPE) {
            headers.push((
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ));
        }
        let path = scenario.map_or_else(|| url_path.to_owned(), |s| s.path.to_owned());
        Ok(Self {
            method,
            path,
            headers,
            body,
        })
    }
}

/// `NAME:VALUE` (spaces around the value are trimmed).
pub(super) fn parse_header(text: &str) -> anyhow::Result<(HeaderName, HeaderValue)> {
    let Some((name, value)) = text.split_once(':') else {
        bail!("--header expects NAME:VALUE, got `{text}`");
    };
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .with_context(|| format!("invalid header name in `{text}`"))?;
    let value = HeaderValue::from_str(value.trim())
        .with_context(|| format!("invalid header value in `{text}`"))?;
    Ok((name, value))
}

/// Every setting of a run, as recorded in the report.
#[derive(Debug, Serialize)]
pub(super) struct Settings {
    pub scenario: Option<String>,
    pub url: Option<String>,
    pub method: String,
    pub path: String,
    pub headers: Vec<String>,
    pub body_bytes: usize,
    pub connections: usize,
    pub duration_ms: Option<u64>,
    pub requests: Option<u64>,
    pub rate: Option<f64>,
    pub max_in_flight: usize,
    pub http2: bool,
    pub h2_streams: usize,
    pub new_connection_per_request: bool,
    pub h1_client: crate::generator::H1Client,
    pub tls: bool,
    pub repeat: usize,
    pub warmup_ms: u64,
    pub timeout_ms: u64,
    pub threads: usize,
    pub baseline_threads: usize,
    pub slow_clients: usize,
    pub slow_interval_ms: u64,
    pub peers: Vec<String>,
}

/// Milliseconds of a duration, for the report.
pub(super) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn headers() {
        let (name, value) = parse_header("X-Tenant: acme").unwrap();
        assert_eq!(name, "x-tenant");
        assert_eq!(value, "acme");
        assert!(parse_header("no-colon").is_err());
        assert!(parse_header("bad name: x").is_err());
    }
}
