//! Slow clients, run next to the measured load (`--slow-clients N`): half send their request
//! one byte per interval (slowloris-style), half send it at once and then read the response
//! a little per interval through a small receive buffer. Each uses one HTTP/1.1 request per
//! connection (`Connection: close`) and starts over when it ends. They run on their own
//! thread so they do not share the generator's, and they are not part of the measured
//! latency: they show what slow clients cost everyone else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::Method;
use rustls::pki_types::ServerName;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpSocket;
use tokio_rustls::TlsConnector;

/// What the slow clients send, and how slowly.
#[derive(Clone)]
pub struct SlowClientsSpec {
    /// Server address.
    pub addr: SocketAddr,
    /// TLS (HTTP/1.1 ALPN) and the server name, for https targets.
    pub tls: Option<(TlsConnector, ServerName<'static>)>,
    /// Host header value.
    pub host: String,
    /// Method.
    pub method: Method,
    /// Path and query.
    pub path: String,
    /// Request body.
    pub body: bytes::Bytes,
    /// How many slow connections are open at any time.
    pub count: usize,
    /// A slow writer sends one byte, a slow reader reads up to [`READ_CHUNK`] bytes, per
    /// interval.
    pub interval: Duration,
}

/// Bytes a slow reader takes per interval.
pub const READ_CHUNK: usize = 64;

/// One slow connection gives up after this long.
const CONNECTION_LIMIT: Duration = Duration::from_secs(30);

/// What the slow clients achieved.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SlowClientStats {
    /// Connections opened.
    pub connections: u64,
    /// Requests that got a complete response (the server closed after it).
    pub completed: u64,
    /// Connections that failed (refused, reset, or closed before any response).
    pub failed: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
}

/// Slow clients running on their own thread until [`SlowClients::stop`].
pub struct SlowClients {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl SlowClients {
    /// Starts `spec.count` slow clients.
    pub fn start(spec: SlowClientsSpec) -> std::io::Result<Self> {
        let counters = Arc::new(Counters::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let shared = counters.clone();
        let thread = std::thread::Builder::new()
            .name("isola-bench-slow-clients".to_owned())
            .spawn(move || {
                let spec = Arc::new(spec);
                runtime.block_on(async move {
                    for i in 0..spec.count {
                        let spec = spec.clone();
                        let counters = shared.clone();
                        tokio::spawn(async move {
                            // Stagger the starts over one interval.
                            let offset = spec.interval.mul_f64(i as f64 / spec.count as f64);
                            tokio::time::sleep(offset).await;
                            client_loop(&spec, &counters, i % 2 == 0).await;
                        });
                    }
                    let _ = stopped.await;
                });
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
            counters,
        })
    }

    /// Stops every slow client and returns what they did.
    pub fn stop(mut self) -> SlowClientStats {
        self.halt();
        SlowClientStats {
            connections: self.counters.connections.load(Ordering::Relaxed),
            completed: self.counters.completed.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
        }
    }

    fn halt(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for SlowClients {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The request as bytes: HTTP/1.1, one request per connection.
fn request_bytes(spec: &SlowClientsSpec) -> Vec<u8> {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: {}\r\nuser-agent: isola-bench-slow\r\nconnection: close\r\n",
        spec.method, spec.path, spec.host
    );
    if !spec.body.is_empty() || spec.method == Method::POST || spec.method == Method::PUT {
        head.push_str(&format!(
            "content-type: application/octet-stream\r\ncontent-length: {}\r\n",
            spec.body.len()
        ));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&spec.body);
    bytes
}

async fn client_loop(spec: &SlowClientsSpec, counters: &Counters, slow_writer: bool) {
    let request = request_bytes(spec);
    loop {
        counters.connections.fetch_add(1, Ordering::Relaxed);
        let once = tokio::time::timeout(CONNECTION_LIMIT, async {
            let stream = connect(spec).await?;
            one_request(stream, &request, spec.interval, slow_writer).await
        });
        match once.await {
            Ok(Ok(true)) => counters.completed.fetch_add(1, Ordering::Relaxed),
            _ => {
                let failed = counters.failed.fetch_add(1, Ordering::Relaxed);
                // Do not spin against a server that refuses connections.
                tokio::time::sleep(spec.interval.max(Duration::from_millis(10))).await;
                failed
            }
        };
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

async fn connect(spec: &SlowClientsSpec) -> std::io::Result<Box<dyn Stream>> {
    let socket = if spec.addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // A small receive window, so a slow reader's backpressure reaches the server.
    socket.set_recv_buffer_size(4096)?;
    let tcp = socket.connect(spec.addr).await?;
    let _ = tcp.set_nodelay(true);
    match &spec.tls {
        Some((connector, name)) => Ok(Box::new(connector.connect(name.clone(), tcp).await?)),
        None => Ok(Box::new(tcp)),
    }
}

/// Sends the request (a byte per interval when `slow_writer`) and reads the response (a
/// chunk per interval otherwise) to the end; true if a response came back.
async fn one_request(
    mut stream: Box<dyn Stream>,
    request: &[u8],
    interval: Duration,
    slow_writer: bool,
) -> std::io::Result<bool> {
    if slow_writer {
        for byte in request {
            stream.write_all(std::slice::from_ref(byte)).await?;
            stream.flush().await?;
            tokio::time::sleep(interval).await;
        }
    } else {
        stream.write_all(request).await?;
        stream.flush().await?;
    }
    let mut buffer = [0u8; READ_CHUNK];
    let mut received = 0usize;
    let mut head = Vec::with_capacity(16);
    loop {
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        if head.len() < 12 {
            head.extend_from_slice(&buffer[..n.min(12 - head.len())]);
        }
        received += n;
        if !slow_writer {
            tokio::time::sleep(interval).await;
        }
    }
    Ok(received > 0 && head.starts_with(b"HTTP/1.1 ") && head.get(9).is_some_and(|c| *c < b'4'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_a_close_request() {
        let spec = SlowClientsSpec {
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
            tls: None,
            host: "127.0.0.1:1".to_owned(),
            method: Method::POST,
            path: "/echo".to_owned(),
            body: bytes::Bytes::from_static(b"abc"),
            count: 1,
            interval: Duration::from_millis(1),
        };
        let text = String::from_utf8(request_bytes(&spec)).unwrap_or_default();
        assert!(text.starts_with("POST /echo HTTP/1.1\r\nhost: 127.0.0.1:1\r\n"));
        assert!(text.contains("connection: close\r\n"));
        assert!(text.ends_with("content-length: 3\r\n\r\nabc"));
    }
}
