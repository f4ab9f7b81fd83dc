//! The load generator on hyper's client: N connections (HTTP/1.1 keep-alive, or HTTP/2 with
//! several concurrent streams each), over TCP or TLS, closed loop or open loop.
//!
//! - **Closed loop** (no `rate`): every stream sends its next request as soon as the previous
//!   response has been read; this finds the maximum throughput at that concurrency.
//! - **Open loop** (`rate` requests/s): request `i` is due at `start + i / rate`, whatever the
//!   server is doing. A due request waits in a queue for a free connection and its latency
//!   is counted from when it was released, so a server that stalls is charged for every
//!   request that had to wait (coordinated omission corrected). At most `max_in_flight`
//!   requests are outstanding (queued or sent); a request due beyond that is not sent and
//!   counts as a `dropped` error.

mod connection;
mod fast_h1;
mod link;
mod live;
mod schedule;
mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Uri};

pub use connection::{Failure, probe};
pub use live::{Live, LiveSnapshot};

use crate::stats::RunResult;

/// What to send, how, and for how long.
#[derive(Clone)]
pub struct LoadSpec {
    /// Target URL (`http://` or `https://`).
    pub uri: Uri,
    /// Paths (with query) to cycle through, one per request in turn, instead of the URI's
    /// own path: spreads load over many routes (e.g. one per tenant). Empty: the URI's path.
    pub paths: Vec<String>,
    /// TLS for `https://` targets (see [`crate::tls::connector`]).
    pub tls: Option<tokio_rustls::TlsConnector>,
    /// Method.
    pub method: Method,
    /// Extra headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Request body (empty for none).
    pub body: Bytes,
    /// Connections to open.
    pub connections: usize,
    /// HTTP/2 (prior knowledge on cleartext, ALPN `h2` over TLS).
    pub http2: bool,
    /// Concurrent streams per HTTP/2 connection.
    pub h2_streams: usize,
    /// Measured duration (after warm-up); `None` with `requests` runs until that count.
    pub duration: Option<Duration>,
    /// Stop after this many measured requests.
    pub requests: Option<u64>,
    /// Excluded from the results.
    pub warmup: Duration,
    /// Open loop: requests per second; closed loop when `None`.
    pub rate: Option<f64>,
    /// Open loop: most requests outstanding (waiting for a connection or sent) at once.
    pub max_in_flight: usize,
    /// Per-request timeout, counted from the request's start (its due time in open loop).
    pub timeout: Duration,
    /// Open a new connection (and TLS session) for every request.
    pub new_connection_per_request: bool,
    /// Which client speaks HTTP/1.1.
    pub h1_client: H1Client,
}

/// Which client speaks HTTP/1.1 (HTTP/2 always uses hyper's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum H1Client {
    /// The request serialised once, the response parsed in place (httparse): the lowest
    /// generator CPU per request.
    #[default]
    Fast,
    /// hyper's client connection.
    Hyper,
}

impl LoadSpec {
    /// A closed-loop HTTP/1.1 GET of `uri` with 64 connections for 10 s after 1 s of warm-up.
    pub fn get(uri: Uri) -> Self {
        Self {
            uri,
            paths: Vec::new(),
            tls: None,
            method: Method::GET,
            headers: Vec::new(),
            body: Bytes::new(),
            connections: 64,
            http2: false,
            h2_streams: 1,
            duration: Some(Duration::from_secs(10)),
            requests: None,
            warmup: Duration::from_secs(1),
            rate: None,
            max_in_flight: 10_000,
            timeout: Duration::from_secs(10),
            new_connection_per_request: false,
            h1_client: H1Client::Fast,
        }
    }

    /// Concurrent requests in closed loop: connections × streams.
    pub fn concurrency(&self) -> usize {
        let streams = if self.http2 && !self.new_connection_per_request {
            self.h2_streams.max(1)
        } else {
            1
        };
        self.connections.max(1) * streams
    }
}

/// A load spec that cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The URL has no host or an unsupported scheme.
    #[error("cannot load-test {uri}: {reason}")]
    BadUrl {
        /// The URL.
        uri: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The host name did not resolve.
    #[error("cannot resolve {addr}: {error}")]
    Resolve {
        /// host:port.
        addr: String,
        /// Why.
        error: std::io::Error,
    },
    /// Neither a duration nor a request count bounds the run.
    #[error("a run needs a duration or a request count")]
    Unbounded,
    /// The open-loop rate is not a positive number.
    #[error("the rate must be a positive number of requests per second, got {0}")]
    BadRate(f64),
}

/// State shared by every connection of a run.
pub(crate) struct Shared {
    pub spec: LoadSpec,
    pub target: connection::Target,
    pub start: Instant,
    pub measure_from: Instant,
    /// End of the measured window, when bounded by time.
    pub deadline: Option<Instant>,
    /// Measured requests started so far (for `requests`).
    issued: AtomicU64,
    pub live: Option<Arc<Live>>,
}

impl Shared {
    /// Claims one measured request; false once `requests` have been claimed.
    pub fn claim_measured(&self) -> bool {
        match self.spec.requests {
            Some(limit) => self.issued.fetch_add(1, Ordering::Relaxed) < limit,
            None => true,
        }
    }
}

/// Runs the load on the current tokio runtime and returns the results merged across
/// connections. `live` receives running counts for a progress display.
pub async fn run(spec: LoadSpec, live: Option<Arc<Live>>) -> Result<RunResult, SpecError> {
    if spec.duration.is_none() && spec.requests.is_none() {
        return Err(SpecError::Unbounded);
    }
    if let Some(rate) = spec.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        return Err(SpecError::BadRate(rate));
    }
    let target = connection::Target::resolve(&spec).await?;
    let start = Instant::now();
    let measure_from = start + spec.warmup;
    let shared = Arc::new(Shared {
        deadline: spec.duration.map(|d| measure_from + d),
        spec,
        target,
        start,
        measure_from,
        issued: AtomicU64::new(0),
        live,
    });
    let (source, dispatcher) = match shared.spec.rate {
        Some(rate) => {
            let (source, tx) = schedule::Source::open();
            let dispatcher = tokio::spawn(schedule::dispatch(shared.clone(), rate, tx));
            (source, Some(dispatcher))
        }
        None => (schedule::Source::Closed, None),
    };
    let tasks: Vec<_> = (0..shared.spec.connections.max(1))
        .map(|_| tokio::spawn(worker::connection(shared.clone(), source.clone())))
        .collect();
    drop(source);
    let mut total = RunResult::new(measure_from);
    if let Some(dispatcher) = dispatcher
        && let Ok(result) = dispatcher.await
    {
        total.merge(&result);
    }
    for task in tasks {
        if let Ok(result) = task.await {
            total.merge(&result);
        }
    }
    let now = Instant::now();
    let end = shared.deadline.map_or(now, |deadline| deadline.min(now));
    total.finish(end.saturating_duration_since(measure_from));
    Ok(total)
}

#[cfg(test)]
mod tests;
