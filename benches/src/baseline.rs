//! The baseline: a raw hyper server (HTTP/1.1 and HTTP/2, cleartext or TLS) answering the
//! hello example's body and content type, and echoing `POST /echo` like
//! `examples/streaming.js`. Everything Isola does per request is measured against it.

use std::convert::Infallible;
use std::io::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The hello body (same as `examples/hello.js`).
pub const HELLO: &str = "Hello from Isola!\n";

/// How to run the baseline server.
#[derive(Debug, Clone)]
pub struct BaselineOptions {
    /// Port on 127.0.0.1 (0 picks a free one).
    pub port: u16,
    /// Tokio worker threads.
    pub threads: usize,
    /// Serve HTTPS with a fresh self-signed certificate for localhost and 127.0.0.1.
    pub tls: bool,
    /// Exit when standard input closes (the harness holds it open, so the server never
    /// outlives it even if it is killed).
    pub exit_on_stdin_eof: bool,
}

/// The baseline could not start.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// Runtime, socket or stdout failure.
    #[error("baseline server: {0}")]
    Io(#[from] std::io::Error),
    /// The self-signed certificate could not be made or used.
    #[error("baseline server TLS: {0}")]
    Tls(String),
}

type Reply = Response<Either<Full<Bytes>, Incoming>>;

async fn handle(request: Request<Incoming>) -> Result<Reply, Infallible> {
    if request.method() == Method::POST && request.uri().path() == "/echo" {
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static("application/octet-stream"));
        let mut response = Response::new(Either::Right(request.into_body()));
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, content_type);
        return Ok(response);
    }
    let mut response = Response::new(Either::Left(Full::new(Bytes::from_static(
        HELLO.as_bytes(),
    ))));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain;charset=UTF-8"),
    );
    Ok(response)
}

/// Serves until killed (or stdin closes, with `exit_on_stdin_eof`); prints
/// `listening on http://127.0.0.1:PORT` (or `https://`) once bound.
pub fn serve(options: &BaselineOptions) -> Result<(), BaselineError> {
    let acceptor = if options.tls {
        Some(self_signed_acceptor()?)
    } else {
        None
    };
    if options.exit_on_stdin_eof {
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            std::process::exit(0);
        });
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", options.port)).await?;
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {scheme}://{}", listener.local_addr()?)?;
        out.flush()?;
        drop(out);
        let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let builder = builder.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor {
                    None => serve_connection(&builder, stream).await,
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(stream).await {
                            serve_connection(&builder, tls).await;
                        }
                    }
                }
            });
        }
    })
}

async fn serve_connection<I>(builder: &auto::Builder<TokioExecutor>, io: I)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _ = builder
        .serve_connection(TokioIo::new(io), service_fn(handle))
        .await;
}

/// A TLS acceptor (aws-lc-rs) with a fresh self-signed certificate, ALPN h2 and http/1.1.
fn self_signed_acceptor() -> Result<TlsAcceptor, BaselineError> {
    let tls = |e: &dyn std::fmt::Display| BaselineError::Tls(e.to_string());
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .map_err(|e| tls(&e))?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .map_err(|e| tls(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
