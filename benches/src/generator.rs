//! The load generator: N connections (HTTP/1.1 keep-alive or HTTP/2 with several streams),
//! closed loop (as fast as responses come back) or open loop (a fixed arrival rate).
//!
//! In open loop, request `i` is due at `start + i / rate`. When it cannot be sent on time
//! because every connection is busy, its latency is measured from the due time, so a server
//! that stalls is charged for the requests that had to wait (coordinated omission corrected);
//! at most `connections × streams` requests are in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::stats::RunResult;

/// What to send and for how long.
#[derive(Clone)]
pub struct LoadSpec {
    /// Target URL (`http://` or `https://`).
    pub uri: Uri,
    /// TLS for `https://` targets.
    pub tls: Option<tokio_rustls::TlsConnector>,
    /// Method.
    pub method: Method,
    /// Extra headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Request body (empty for none).
    pub body: Bytes,
    /// Connections to open.
    pub connections: usize,
    /// Use HTTP/2 (prior knowledge).
    pub http2: bool,
    /// Concurrent streams per HTTP/2 connection.
    pub h2_streams: usize,
    /// Measured duration (after warm-up).
    pub duration: Option<Duration>,
    /// Measured request count (after warm-up).
    pub requests: Option<u64>,
    /// Excluded from the results.
    pub warmup: Duration,
    /// Open loop: requests per second; closed loop when `None`.
    pub rate: Option<f64>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Open a new connection for every request.
    pub new_connection_per_request: bool,
}

struct Shared {
    spec: LoadSpec,
    start: Instant,
    measure_from: Instant,
    deadline: Option<Instant>,
    issued: AtomicU64,
    next_slot: AtomicU64,
    authority: String,
}

/// Runs the load on the current tokio runtime and returns the merged results.
pub async fn run(spec: LoadSpec) -> RunResult {
    let start = Instant::now();
    let measure_from = start + spec.warmup;
    let deadline = match (spec.duration, spec.requests) {
        (Some(duration), _) => Some(measure_from + duration),
        (None, Some(_)) => None,
        (None, None) => Some(measure_from + Duration::from_secs(10)),
    };
    let authority = spec
        .uri
        .authority()
        .map_or_else(|| "127.0.0.1:80".to_owned(), ToString::to_string);
    let workers = spec.connections.max(1)
        * if spec.http2 {
            spec.h2_streams.max(1)
        } else {
            1
        };
    let shared = Arc::new(Shared {
        spec,
        start,
        measure_from,
        deadline,
        issued: AtomicU64::new(0),
        next_slot: AtomicU64::new(0),
        authority,
    });
    let mut tasks = Vec::with_capacity(workers);
    for _ in 0..workers {
        tasks.push(tokio::spawn(worker(shared.clone())));
    }
    let mut total = RunResult::new();
    for task in tasks {
        if let Ok(result) = task.await {
            total.merge(&result);
        }
    }
    let end = shared
        .deadline
        .unwrap_or_else(Instant::now)
        .min(Instant::now());
    total.elapsed = end.saturating_duration_since(shared.measure_from);
    total
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

async fn connect(shared: &Shared) -> Result<Sender, &'static str> {
    let stream = TcpStream::connect(&shared.authority)
        .await
        .map_err(|_| "connect")?;
    let _ = stream.set_nodelay(true);
    match &shared.spec.tls {
        None => handshake(shared, TokioIo::new(stream)).await,
        Some(connector) => {
            let host = shared.spec.uri.host().unwrap_or("localhost").to_owned();
            let name = rustls::pki_types::ServerName::try_from(host).map_err(|_| "connect")?;
            let tls = connector.connect(name, stream).await.map_err(|_| "tls")?;
            handshake(shared, TokioIo::new(tls)).await
        }
    }
}

async fn handshake<T>(shared: &Shared, io: TokioIo<T>) -> Result<Sender, &'static str>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    if shared.spec.http2 {
        let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|_| "connect")?;
        tokio::spawn(conn);
        Ok(Sender::H2(sender))
    } else {
        let (sender, conn) = http1::handshake(io).await.map_err(|_| "connect")?;
        tokio::spawn(conn);
        Ok(Sender::H1(sender))
    }
}

fn build_request(shared: &Shared) -> Request<Full<Bytes>> {
    let spec = &shared.spec;
    let mut builder = Request::builder()
        .method(spec.method.clone())
        .uri(spec.uri.clone());
    if !spec.http2 {
        builder = builder.header(http::header::HOST, shared.authority.as_str());
    }
    for (name, value) in &spec.headers {
        builder = builder.header(name, value);
    }
    builder
        .body(Full::new(spec.body.clone()))
        .unwrap_or_default()
}

/// Sends one request and reads the whole response; `Err` is the error kind.
async fn exchange(sender: &mut Sender, request: Request<Full<Bytes>>) -> Result<u16, &'static str> {
    let response = match sender {
        Sender::H1(s) => {
            s.ready().await.map_err(|_| "io")?;
            s.send_request(request).await
        }
        Sender::H2(s) => {
            s.ready().await.map_err(|_| "io")?;
            s.send_request(request).await
        }
    }
    .map_err(|_| "io")?;
    let status = response.status().as_u16();
    response.into_body().collect().await.map_err(|_| "io")?;
    Ok(status)
}

async fn worker(shared: Arc<Shared>) -> RunResult {
    let spec = &shared.spec;
    let mut result = RunResult::new();
    let mut sender: Option<Sender> = None;
    loop {
        let due = match spec.rate {
            Some(rate) => {
                let slot = shared.next_slot.fetch_add(1, Ordering::Relaxed);
                let due = shared.start + Duration::from_secs_f64(slot as f64 / rate);
                if due > Instant::now() {
                    // On time: the timer's own slack is the generator's, not the server's.
                    tokio::time::sleep_until(due.into()).await;
                    Instant::now()
                } else {
                    // Late because every connection was busy: that wait is the server's.
                    due
                }
            }
            None => Instant::now(),
        };
        if shared.deadline.is_some_and(|deadline| due >= deadline) {
            break;
        }
        let measured = due >= shared.measure_from;
        if measured
            && let Some(limit) = spec.requests
            && shared.issued.fetch_add(1, Ordering::Relaxed) >= limit
        {
            break;
        }
        if spec.new_connection_per_request {
            sender = None;
        }
        let outcome = async {
            if sender.is_none() {
                sender = Some(connect(&shared).await?);
            }
            match sender.as_mut() {
                Some(s) => exchange(s, build_request(&shared)).await,
                None => Err("connect"),
            }
        };
        let outcome = match tokio::time::timeout(spec.timeout, outcome).await {
            Ok(outcome) => outcome,
            Err(_) => Err("timeout"),
        };
        let done = Instant::now();
        if outcome.is_err() {
            sender = None;
        }
        if !measured {
            continue;
        }
        result.requests += 1;
        let second = done
            .saturating_duration_since(shared.measure_from)
            .as_secs() as usize;
        if result.timeline.len() <= second {
            result.timeline.resize(second + 1, 0);
        }
        result.timeline[second] += 1;
        match outcome {
            Ok(status) if status < 400 => {
                let micros = done.saturating_duration_since(due).as_micros() as u64;
                let _ = result.latency.record(micros.max(1));
            }
            Ok(status) if status < 500 => result.error("status_4xx"),
            Ok(status) if status < 600 => result.error("status_5xx"),
            Ok(_) => result.error("status_other"),
            Err(kind) => {
                result.error(kind);
                if kind == "connect" {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
    result
}
