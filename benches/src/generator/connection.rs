//! One connection's plumbing: resolve once, connect (TCP, then TLS), the HTTP/1.1 or HTTP/2
//! handshake, and one request/response exchange that reads the whole body.

use std::net::SocketAddr;
use std::pin::Pin;

use futures::FutureExt as _;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::fast_h1::{self, FastH1};
pub use super::link::Failure;
use super::link::Io;
use super::{H1Client, LoadSpec, SpecError};
use crate::stats::ErrorKind;

/// The request body type.
pub(crate) type Body = Full<Bytes>;

/// What an exchange yields: status, response body bytes, whether the connection is reusable.
pub(crate) type Exchange = (u16, u64, bool);

/// Where and what to send, prepared once per run.
pub(crate) struct Target {
    addr: SocketAddr,
    server_name: Option<ServerName<'static>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
    /// The whole HTTP/1.1 request for each path, serialised once for the fast client.
    raw_requests: Vec<Bytes>,
    /// The request URI for each path (hyper's clients): origin form (`/path?query`) for
    /// HTTP/1.1, the absolute URL for HTTP/2.
    uris: Vec<Uri>,
    /// Which path the next request takes (round robin).
    next: std::sync::atomic::AtomicUsize,
}

impl Target {
    /// Resolves the host once and prepares the request.
    pub async fn resolve(spec: &LoadSpec) -> Result<Self, SpecError> {
        let bad = |reason| SpecError::BadUrl {
            uri: spec.uri.to_string(),
            reason,
        };
        let https = match spec.uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(bad("the scheme must be http or https")),
        };
        if https && spec.tls.is_none() {
            return Err(bad("https needs a TLS connector"));
        }
        let host = spec.uri.host().ok_or_else(|| bad("no host"))?;
        let port = spec.uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let bare_host = host.trim_start_matches('[').trim_end_matches(']');
        let addr_text = format!("{host}:{port}");
        let addr = tokio::net::lookup_host(&addr_text)
            .await
            .map_err(|error| SpecError::Resolve {
                addr: addr_text.clone(),
                error,
            })?
            .next()
            .ok_or_else(|| SpecError::Resolve {
                addr: addr_text.clone(),
                error: std::io::Error::other("no address"),
            })?;
        let server_name = if https {
            Some(
                ServerName::try_from(bare_host.to_owned())
                    .map_err(|_| bad("the host is not a valid TLS server name"))?,
            )
        } else {
            None
        };
        let mut headers = HeaderMap::new();
        if !spec.http2 {
            let authority = spec
                .uri
                .authority()
                .map_or(addr_text.as_str(), |a| a.as_str());
            headers.insert(
                http::header::HOST,
                HeaderValue::from_str(authority).map_err(|_| bad("invalid authority"))?,
            );
        }
        for (name, value) in &spec.headers {
            headers.append(name, value.clone());
        }
        let own_path = spec.uri.path_and_query().map_or("/", |p| p.as_str());
        let paths: Vec<&str> = if spec.paths.is_empty() {
            vec![own_path]
        } else {
            spec.paths.iter().map(String::as_str).collect()
        };
        let authority = spec
            .uri
            .authority()
            .map_or(addr_text.as_str(), |a| a.as_str());
        let mut raw_requests = Vec::with_capacity(paths.len());
        let mut uris = Vec::with_capacity(paths.len());
        for path in paths {
            raw_requests.push(fast_h1::serialize(
                &spec.method,
                path,
                authority,
                &headers,
                &spec.body,
            ));
            let full = if spec.http2 {
                format!(
                    "{}://{authority}{path}",
                    spec.uri.scheme_str().unwrap_or("http")
                )
            } else {
                path.to_owned()
            };
            uris.push(full.parse().map_err(|_| bad("invalid path"))?);
        }
        Ok(Self {
            addr,
            server_name,
            method: spec.method.clone(),
            headers,
            body: spec.body.clone(),
            raw_requests,
            uris,
            next: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Which path the next request takes.
    fn pick(&self) -> usize {
        if self.uris.len() == 1 {
            return 0;
        }
        self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.uris.len()
    }

    /// The next serialised HTTP/1.1 request (fast client).
    pub fn raw_request(&self) -> &Bytes {
        &self.raw_requests[self.pick()]
    }

    /// A fresh request (hyper consumes one per exchange).
    pub fn request(&self) -> Request<Body> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uris[self.pick()].clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// Opens TCP (and TLS when configured) and runs `handshake` on the stream.
async fn open<S, F, Fut>(spec: &LoadSpec, target: &Target, handshake: F) -> Result<S, Failure>
where
    F: FnOnce(Box<dyn Io>) -> Fut,
    Fut: Future<Output = Result<S, Failure>>,
{
    let tcp = TcpStream::connect(target.addr)
        .await
        .map_err(|e| Failure::new(ErrorKind::Connect, e))?;
    let _ = tcp.set_nodelay(true);
    match (&spec.tls, &target.server_name) {
        (Some(connector), Some(name)) => {
            let tls = connector
                .connect(name.clone(), tcp)
                .await
                .map_err(|e| Failure::new(ErrorKind::Tls, e))?;
            handshake(Box::new(tls)).await
        }
        _ => handshake(Box::new(tcp)).await,
    }
}

/// hyper's HTTP/1.1 connection future over TCP or TLS.
type HyperDriver = http1::Connection<TokioIo<Box<dyn Io>>, Body>;

/// An HTTP/1.1 connection of hyper's client whose driver runs inside the task that uses it
/// (no hand-off to another task per request).
pub(crate) struct HyperH1 {
    sender: http1::SendRequest<Body>,
    driver: Pin<Box<HyperDriver>>,
}

/// An HTTP/1.1 connection of either client.
pub(crate) enum H1Conn {
    /// The fast client.
    Fast(FastH1),
    /// hyper's client.
    Hyper(HyperH1),
}

impl H1Conn {
    /// Whether the server has closed the idle connection (one poll, without waiting).
    pub fn is_closed(&mut self) -> bool {
        match self {
            H1Conn::Fast(conn) => conn.is_closed(),
            H1Conn::Hyper(conn) => {
                conn.sender.is_closed() || conn.driver.as_mut().now_or_never().is_some()
            }
        }
    }
}

/// A new HTTP/1.1 connection with the client `spec` asks for.
pub(crate) async fn connect_h1(spec: &LoadSpec, target: &Target) -> Result<H1Conn, Failure> {
    match spec.h1_client {
        H1Client::Fast => {
            open(spec, target, |io| async move {
                Ok(H1Conn::Fast(FastH1::new(io)))
            })
            .await
        }
        H1Client::Hyper => {
            open(spec, target, |io| async move {
                let (sender, driver) = http1::Builder::new()
                    .handshake(TokioIo::new(io))
                    .await
                    .map_err(|e| Failure::new(ErrorKind::Connect, e))?;
                Ok(H1Conn::Hyper(HyperH1 {
                    sender,
                    driver: Box::pin(driver),
                }))
            })
            .await
        }
    }
}

/// A new HTTP/2 connection (windows sized for megabyte bodies).
pub(crate) async fn connect_h2(
    spec: &LoadSpec,
    target: &Target,
) -> Result<http2::SendRequest<Body>, Failure> {
    open(spec, target, |io| async move {
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(4 << 20)
            .initial_connection_window_size(16 << 20)
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| Failure::new(ErrorKind::Connect, e))?;
        tokio::spawn(connection);
        Ok(sender)
    })
    .await
}

/// Sends the target's request on an HTTP/1.1 connection; returns the status, the body
/// bytes and whether the connection can be reused.
pub(crate) async fn exchange_h1(conn: &mut H1Conn, target: &Target) -> Result<Exchange, Failure> {
    match conn {
        H1Conn::Fast(conn) => {
            conn.exchange(target.raw_request(), target.method == Method::HEAD)
                .await
        }
        H1Conn::Hyper(HyperH1 { sender, driver }) => {
            let request = target.request();
            let exchange = async {
                sender.ready().await.map_err(io_failure)?;
                read(sender.send_request(request).await.map_err(io_failure)?).await
            };
            tokio::select! {
                biased;
                outcome = exchange => outcome,
                ended = driver => Err(match ended {
                    Ok(()) => Failure::new(ErrorKind::Io, "the server closed the connection"),
                    Err(error) => io_failure(error),
                }),
            }
        }
    }
}

/// Sends one request on an HTTP/2 connection; returns the status and body bytes.
pub(crate) async fn exchange_h2(
    sender: &mut http2::SendRequest<Body>,
    request: Request<Body>,
) -> Result<Exchange, Failure> {
    sender.ready().await.map_err(io_failure)?;
    read(sender.send_request(request).await.map_err(io_failure)?).await
}

fn io_failure(error: hyper::Error) -> Failure {
    Failure::new(ErrorKind::Io, error)
}

/// Reads the whole body, counting its bytes without keeping them.
async fn read(response: Response<Incoming>) -> Result<Exchange, Failure> {
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut bytes = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame.map_err(io_failure)?.data_ref() {
            bytes += data.len() as u64;
        }
    }
    Ok((status, bytes, true))
}

/// Sends one request of `spec` and returns the response status: run before a measurement
/// to fail early, with a clear message, when the target is down or its certificate is not
/// trusted.
pub async fn probe(spec: &LoadSpec) -> Result<u16, Failure> {
    let target = Target::resolve(spec)
        .await
        .map_err(|e| Failure::new(ErrorKind::Connect, e))?;
    let exchange = async {
        if spec.http2 {
            let mut sender = connect_h2(spec, &target).await?;
            exchange_h2(&mut sender, target.request()).await
        } else {
            let mut conn = connect_h1(spec, &target).await?;
            exchange_h1(&mut conn, &target).await
        }
    };
    match tokio::time::timeout(spec.timeout, exchange).await {
        Ok(result) => result.map(|(status, _, _)| status),
        Err(_) => Err(Failure::new(
            ErrorKind::Timeout,
            format!("no response within {:?}", spec.timeout),
        )),
    }
}
