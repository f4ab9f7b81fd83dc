//! WebSockets a worker opens (`new WebSocket(url, protocols)`). The opening handshake goes
//! through the one outbound policy point: [`guard::admit`] counts it as one subrequest of the
//! request that made it and checks an IP literal, and the deployment's policed resolver checks
//! every address a name resolves to; the connection goes to exactly those addresses. TLS uses
//! the root store and settings of the worker's `fetch()` (deno_tls, HTTP/1.1 ALPN). Then a
//! [`session`] on this isolate's thread carries frames (tokio-tungstenite) between the server
//! and the socket's channels, bounded as an accepted socket's are; it ends when the isolate
//! drops the socket (the isolate went away: close 1011).

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use deno_core::{OpState, ResourceId, op2};
use deno_error::JsErrorBox;
use http::HeaderValue;
use http::header::{SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_PROTOCOL, USER_AGENT};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::{SocketLimits, SocketPeer, SocketPin, SocketResource, new_socket, session, type_error};
use crate::context::{RequestId, SharedContexts};
use crate::outbound::StaticResolver;
use crate::outbound::guard::{self, CONTEXT_HEADER};

/// Longest an outbound socket may take to open: name resolution, TCP, TLS and the handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest an outbound socket waits for its server to take one message before closing with
/// 1008 (the `[http] write_timeout_ms` default; accepted sockets use the listener's value).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// How an outbound socket's opening ended: the server's subprotocol and extensions, or why
/// it failed (the `error` event's message).
pub(super) type Handshake = oneshot::Receiver<Result<Opened, DialError>>;

/// The server accepted the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Opened {
    protocol: String,
    extensions: String,
}

/// Why an outbound WebSocket did not open.
#[derive(Debug, thiserror::Error)]
pub(super) enum DialError {
    /// The URL is no valid `ws:`/`wss:` request target.
    #[error("invalid WebSocket URL: {0}")]
    Url(String),
    /// The subprotocol list is not a valid `Sec-WebSocket-Protocol` value.
    #[error("invalid WebSocket subprotocols")]
    Protocols,
    /// The outbound policy or `max_subrequests` refused it.
    #[error("{0}")]
    Refused(String),
    /// The worker has no outbound access here (no worker loaded in this isolate).
    #[error("outbound WebSockets are not available here")]
    Unavailable,
    /// Name resolution, the policed resolver, TCP or TLS failed.
    #[error("{0}")]
    Connect(#[source] io::Error),
    /// The server did not complete the WebSocket handshake.
    #[error("the WebSocket handshake failed: {0}")]
    Handshake(#[source] tokio_tungstenite::tungstenite::Error),
    /// No connection within [`CONNECT_TIMEOUT`].
    #[error("the connection did not open within {} s", CONNECT_TIMEOUT.as_secs())]
    Timeout,
}

/// The TLS client settings of the isolate's outbound sockets, made once from deno_fetch's.
#[derive(Clone)]
struct TlsClient(Arc<ClientConfig>);

/// What the isolate's outbound sockets need from the worker: its policed resolver (put in
/// OpState with the worker, next to deno_fetch's options).
#[derive(Clone)]
pub struct SocketResolver(pub Arc<StaticResolver>);

/// What `op_isola_ws_opened` gives JavaScript.
#[derive(Debug, serde::Serialize)]
struct OpenedEvent {
    ok: bool,
    protocol: String,
    extensions: String,
    error: String,
}

/// `new WebSocket(url, protocols)` (the URL normalised and checked by JavaScript): counts as a
/// subrequest of request `context`, whose context stays open while the socket is. Throws only
/// past `websocket_max_per_isolate`; a refused or failed connection is told by
/// `op_isola_ws_opened` (an `error`, then a `close` 1006 event).
#[op2]
#[smi]
pub(super) fn op_isola_ws_connect(
    state: &mut OpState,
    #[string] url: String,
    #[serde] protocols: Vec<String>,
    #[number] context: u64,
) -> Result<ResourceId, JsErrorBox> {
    let resource = new_socket(state, context)?;
    let peer = resource.peer.borrow_mut().take();
    let (tell, handshake) = oneshot::channel();
    *resource.handshake.borrow_mut() = Some(handshake);
    let contexts = state.borrow::<SharedContexts>().clone();
    if contexts.borrow().request_id(context).is_some() {
        contexts.borrow_mut().wait_until(context, 1);
        *resource.hold.borrow_mut() = Some((contexts, context));
    }
    if let Some(pin) = state.try_borrow::<SocketPin>().cloned() {
        *resource.pin.borrow_mut() = (pin.0)(state, context);
    }
    let limits = resource.limits;
    match (prepare(state, &url, &protocols, context), peer) {
        (Ok((request, dial)), Some(peer)) => {
            tokio::spawn(run(request, dial, limits, peer, tell));
        }
        (Err(error), _) => {
            let _ = tell.send(Err(error));
        }
        (Ok(_), None) => return Err(type_error("the WebSocket is closed")),
    }
    Ok(state.resource_table.add(resource))
}

/// Waits for the socket's opening handshake: `{ ok, protocol, extensions, error }`.
#[op2]
#[serde]
pub(super) async fn op_isola_ws_opened(
    state: Rc<RefCell<OpState>>,
    #[smi] rid: ResourceId,
) -> Result<OpenedEvent, JsErrorBox> {
    let handshake = state
        .borrow()
        .resource_table
        .get::<SocketResource>(rid)
        .map_err(|_| type_error("the WebSocket is closed"))?
        .handshake
        .borrow_mut()
        .take()
        .ok_or_else(|| type_error("the WebSocket's handshake was already awaited"))?;
    let outcome = handshake.await.unwrap_or(Err(DialError::Unavailable));
    Ok(match outcome {
        Ok(Opened {
            protocol,
            extensions,
        }) => OpenedEvent {
            ok: true,
            protocol,
            extensions,
            error: String::new(),
        },
        Err(error) => OpenedEvent {
            ok: false,
            protocol: String::new(),
            extensions: String::new(),
            error: error.to_string(),
        },
    })
}

/// Where and how to connect, decided on the isolate's thread.
struct Dial {
    host: String,
    port: u16,
    tls: Option<Arc<ClientConfig>>,
    resolver: Arc<StaticResolver>,
}

/// The handshake request, admitted by the outbound guard (one subrequest of `context`, its IP
/// literal checked, `CDN-Loop` and `traceparent` added), and where to send it.
fn prepare(
    state: &mut OpState,
    url: &str,
    protocols: &[String],
    context: RequestId,
) -> Result<(Request, Dial), DialError> {
    let mut request = url
        .into_client_request()
        .map_err(|error| DialError::Url(error.to_string()))?;
    let headers = request.headers_mut();
    if !protocols.is_empty() {
        let value =
            HeaderValue::from_str(&protocols.join(", ")).map_err(|_| DialError::Protocols)?;
        headers.insert(SEC_WEBSOCKET_PROTOCOL, value);
    }
    headers.insert(
        USER_AGENT,
        HeaderValue::from_static(crate::outbound::USER_AGENT),
    );
    headers.insert(CONTEXT_HEADER, HeaderValue::from(context));
    guard::admit(&mut request, "WebSocket").map_err(|e| DialError::Refused(e.to_string()))?;
    let resolver = state
        .try_borrow::<SocketResolver>()
        .ok_or(DialError::Unavailable)?
        .0
        .clone();
    let uri = request.uri();
    let secure = uri.scheme_str() == Some("wss");
    let host = uri
        .host()
        .ok_or_else(|| DialError::Url("no host".to_owned()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let tls = if secure {
        Some(tls_client(state)?)
    } else {
        None
    };
    Ok((
        request,
        Dial {
            host,
            port,
            tls,
            resolver,
        },
    ))
}

/// The isolate's TLS client settings: deno_fetch's root store, HTTP/1.1 ALPN.
fn tls_client(state: &mut OpState) -> Result<Arc<ClientConfig>, DialError> {
    if let Some(client) = state.try_borrow::<TlsClient>() {
        return Ok(client.0.clone());
    }
    let options = state
        .try_borrow::<deno_fetch::Options>()
        .ok_or(DialError::Unavailable)?;
    let root_cert_store = options
        .root_cert_store()
        .map_err(|e| DialError::Connect(io::Error::other(e.to_string())))?;
    let config = deno_tls::create_client_config(deno_tls::TlsClientConfigOptions {
        root_cert_store,
        unsafely_ignore_certificate_errors: options.unsafely_ignore_certificate_errors.clone(),
        socket_use: deno_tls::SocketUse::Http1Only,
        ..Default::default()
    })
    .map_err(|e| DialError::Connect(io::Error::other(e.to_string())))?;
    let config = Arc::new(config);
    state.put(TlsClient(config.clone()));
    Ok(config)
}

/// A connection, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Opens the connection, tells the worker how the handshake went, then runs the socket.
async fn run(
    request: Request,
    dial: Dial,
    limits: SocketLimits,
    peer: SocketPeer,
    tell: oneshot::Sender<Result<Opened, DialError>>,
) {
    let config = WebSocketConfig::default()
        .max_message_size(Some(limits.message_max_bytes))
        .max_frame_size(Some(limits.message_max_bytes));
    let opened = tokio::time::timeout(CONNECT_TIMEOUT, async {
        let stream = connect(&dial).await?;
        tokio_tungstenite::client_async_with_config(request, stream, Some(config))
            .await
            .map_err(DialError::Handshake)
    })
    .await
    .unwrap_or(Err(DialError::Timeout));
    let (socket, response) = match opened {
        Ok(opened) => opened,
        Err(error) => {
            let _ = tell.send(Err(error));
            return;
        }
    };
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let opened = Opened {
        protocol: header(SEC_WEBSOCKET_PROTOCOL),
        extensions: header(SEC_WEBSOCKET_EXTENSIONS),
    };
    if tell.send(Ok(opened)).is_err() {
        // The worker's socket is gone already; the session closes with 1011 at once.
    }
    let settings = session::Settings {
        idle_timeout: limits.idle_timeout,
        write_timeout: WRITE_TIMEOUT,
    };
    session::run(socket, peer, settings, std::future::pending()).await;
}

/// TCP to the first of the policed addresses that answers, then TLS for `wss:`.
async fn connect(dial: &Dial) -> Result<Box<dyn Io>, DialError> {
    let addresses: Vec<SocketAddr> = match dial.host.parse() {
        // An IP literal: the guard checked it.
        Ok(ip) => vec![SocketAddr::new(ip, dial.port)],
        Err(_) => dial
            .resolver
            .lookup(&dial.host, dial.port, "WebSocket")
            .await
            .map_err(DialError::Connect)?,
    };
    let mut last = io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} has no address", dial.host),
    );
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(tcp) => {
                let _ = tcp.set_nodelay(true);
                let Some(tls) = &dial.tls else {
                    return Ok(Box::new(tcp));
                };
                let name = ServerName::try_from(dial.host.clone())
                    .map_err(|e| DialError::Url(e.to_string()))?;
                let stream = TlsConnector::from(tls.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(DialError::Connect)?;
                return Ok(Box::new(stream));
            }
            Err(error) => last = error,
        }
    }
    Err(DialError::Connect(last))
}
