//! Accepting connections: TCP, optional TLS, then HTTP/1.1 or HTTP/2 (ALPN over TLS, prior
//! knowledge over cleartext) with hyper, each connection watched for graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::service::{Shared, handle};

/// How long a client may take to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound listening socket, ready to serve.
pub struct BoundListener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
    local_addr: SocketAddr,
}

impl BoundListener {
    /// Binds `address`; with `tls`, connections are TLS.
    pub async fn bind(address: SocketAddr, tls: Option<TlsAcceptor>) -> std::io::Result<Self> {
        let tcp = TcpListener::bind(address).await?;
        let local_addr = tcp.local_addr()?;
        Ok(Self {
            tcp,
            tls,
            local_addr,
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
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(shared.http.header_read_timeout_ms))
        .max_buf_size(head_bytes.max(8192))
        .max_headers(1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(head_bytes).unwrap_or(u32::MAX));
    builder
}

/// Accepts connections until `stop` changes; each connection is registered with `graceful`.
pub async fn accept_loop(
    listener: BoundListener,
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    graceful: Arc<GracefulShutdown>,
    mut stop: watch::Receiver<bool>,
) {
    let scheme = listener.scheme();
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
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            shared: shared.clone(),
            builder: builder.clone(),
            watcher: graceful.watcher(),
            scheme,
            peer,
        };
        match listener.tls.clone() {
            None => connection.serve(stream),
            Some(acceptor) => {
                tokio::spawn(async move {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls)) => connection.serve(tls),
                        Ok(Err(error)) => tracing::debug!(%peer, "TLS handshake failed: {error}"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
}

struct Connection {
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: Watcher,
    scheme: &'static str,
    peer: SocketAddr,
}

trait Transport: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl Transport for TcpStream {}
impl Transport for tokio_rustls::server::TlsStream<TcpStream> {}

impl Connection {
    fn serve(self, io: impl Transport) {
        let Self {
            shared,
            builder,
            watcher,
            scheme,
            peer,
        } = self;
        let service = service_fn(move |request| handle(shared.clone(), scheme, peer, request));
        let connection = builder
            .serve_connection(TokioIo::new(io), service)
            .into_owned();
        let connection = watcher.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, "connection ended with an error: {error}");
            }
        });
    }
}
