//! Accepting connections: TCP, optional TLS, then HTTP/1.1 or HTTP/2 (ALPN over TLS, prior
//! knowledge over cleartext) with hyper, each connection watched for graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::connection::{Admitted, ConnectionTable, GuardedIo, InFlight, Timeouts};
use super::drain::{Drain, Watcher};
use super::service::{Shared, handle};

/// How long a client may take to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound listening socket, ready to serve.
pub struct BoundListener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
    local_addr: SocketAddr,
    max_connections: usize,
}

impl BoundListener {
    /// Binds `address`; with `tls`, connections are TLS. At most `max_connections` are kept
    /// open at once.
    pub async fn bind(
        address: SocketAddr,
        tls: Option<TlsAcceptor>,
        max_connections: usize,
    ) -> std::io::Result<Self> {
        let tcp = TcpListener::bind(address).await?;
        let local_addr = tcp.local_addr()?;
        Ok(Self {
            tcp,
            tls,
            local_addr,
            max_connections,
        })
    }

    /// The URL clients use, e.g. `https://127.0.0.1:8443`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme(), self.local_addr)
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }
}

/// Builds the HTTP connection settings shared by every connection.
pub fn http_builder(shared: &Shared) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let head_bytes = shared.http.max_header_bytes + shared.http.max_url_bytes + 1024;
    // Head and idle timeouts are the connection watchdog's (which answers 408), not hyper's.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(head_bytes.max(8192))
        .max_headers(1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_millis(shared.http.h2_keep_alive_interval_ms))
        .keep_alive_timeout(Duration::from_millis(shared.http.h2_keep_alive_timeout_ms))
        .max_header_list_size(u32::try_from(head_bytes).unwrap_or(u32::MAX))
        // WebSockets over HTTP/2 (RFC 8441).
        .enable_connect_protocol();
    builder
}

/// Accepts connections until `stop` changes; each connection is watched by `drain`.
pub async fn accept_loop(
    listener: BoundListener,
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    drain: Arc<Drain>,
    mut stop: watch::Receiver<bool>,
) {
    let scheme = listener.scheme();
    let table = ConnectionTable::new(
        listener.max_connections,
        Some(shared.connections.clone()),
        Timeouts::of(&shared.http, listener.tls.is_some()),
    );
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.tcp.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let Some(admitted) = table.admit() else {
            tracing::debug!(%peer, "connection limit reached and every connection is busy: refused");
            continue;
        };
        let connection = Connection {
            shared: shared.clone(),
            builder: builder.clone(),
            watcher: drain.watcher(),
            scheme,
            peer,
            admitted,
        };
        let tls = listener.tls.clone();
        let Some(executors) = crate::executor::executors() else {
            connection.serve(stream, tls);
            continue;
        };
        // Served on an executor thread, where the isolates that answer it live too; the
        // socket moves to that thread's reactor.
        match stream.into_std() {
            Ok(stream) => {
                executors
                    .handle(executors.next_for_connection())
                    .spawn(async move {
                        match TcpStream::from_std(stream) {
                            Ok(stream) => connection.serve(stream, tls),
                            Err(error) => {
                                tracing::debug!(%peer, "cannot move a connection: {error}");
                            }
                        }
                    });
            }
            Err(error) => tracing::debug!(%peer, "cannot move a connection: {error}"),
        }
    }
}

/// Counts a TLS handshake by result (`ok`, `failed`, `timeout`).
fn tls_handshake(result: &str) {
    crate::metrics::metrics()
        .tls_handshakes
        .with_label_values(&[result])
        .inc();
}

/// Whether `request` may become a WebSocket (an HTTP/1.1 `Upgrade` or an HTTP/2 CONNECT):
/// only those carry their connection's [`ConnectionSlot`](super::connection::ConnectionSlot),
/// a cheap test on every request.
fn may_upgrade<B>(request: &http::Request<B>) -> bool {
    request.method() == http::Method::CONNECT
        || request.headers().contains_key(http::header::UPGRADE)
}

struct Connection {
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: Watcher,
    scheme: &'static str,
    peer: SocketAddr,
    admitted: Admitted,
}

trait Transport: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl Transport for GuardedIo<TcpStream> {}
impl Transport for tokio_rustls::server::TlsStream<GuardedIo<TcpStream>> {}

impl Connection {
    /// Serves the connection on the current runtime: TLS first if the listener has it, then
    /// HTTP.
    fn serve(self, stream: TcpStream, tls: Option<TlsAcceptor>) {
        let _ = stream.set_nodelay(true);
        let stream = GuardedIo::new(stream, self.admitted.state.clone());
        let peer = self.peer;
        match tls {
            None => self.spawn_http(stream),
            Some(acceptor) => {
                tokio::spawn(async move {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls)) => {
                            tls_handshake("ok");
                            self.spawn_http(tls);
                        }
                        Ok(Err(error)) => {
                            tls_handshake("failed");
                            tracing::debug!(%peer, "TLS handshake failed: {error}");
                        }
                        Err(_) => {
                            tls_handshake("timeout");
                            tracing::debug!(%peer, "TLS handshake timed out");
                        }
                    }
                });
            }
        }
    }

    /// Serves HTTP on `io` with hyper, in a task of its own watched by the connection's
    /// watchdog and the graceful shutdown.
    fn spawn_http(self, io: impl Transport) {
        let Self {
            shared,
            builder,
            watcher,
            scheme,
            peer,
            admitted,
        } = self;
        let state = admitted.state.clone();
        let slot = admitted.slot();
        let open = Arc::new(crate::metrics::OpenConnection::default());
        let counted = open.clone();
        let service = service_fn(move |mut request: http::Request<Incoming>| {
            counted.carries(request.version());
            if may_upgrade(&request) {
                request.extensions_mut().insert(slot.clone());
            }
            let in_flight = InFlight::begin(&state, request.version());
            // Boxed: a request's future is large, and HTTP/2 moves it into a task of its own
            // per stream, copying it on the way (h2c with 10 streams per connection: +10 %
            // rps; HTTP/1.1 unchanged).
            let response = Box::pin(handle(shared.clone(), scheme, peer, request));
            async move { response.await.map(|response| in_flight.hold(response)) }
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        let connection = watcher.watch(connection);
        tokio::spawn(admitted.watch(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, "connection ended with an error: {error}");
            }
            drop(open);
        }));
    }
}
