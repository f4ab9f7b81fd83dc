//! WebSocket upgrades in the front end: an HTTP/1.1 `Upgrade: websocket` request or an HTTP/2
//! extended CONNECT (RFC 8441) goes to the worker as a GET (bypassing the cache); when the
//! worker answers 101 with the client end of a `WebSocketPair`, the front end answers the
//! handshake and runs the socket ([`session`]) over the upgraded connection with
//! tokio-tungstenite framing, on the worker's limits.

use std::time::Duration;

use edge_config::Limits;
use http::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_VERSION, UPGRADE};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use isola_bindings::websocket::{SocketPeer, session};
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::connection::ConnectionSlot;
use crate::body::Body;
use crate::lease::Lease;

/// The node's open WebSockets, as far as shutdown needs them: each session watches `closing`
/// and closes with 1001 when it turns true; the node waits (within its grace) until all have.
#[derive(Debug)]
pub struct Sockets {
    closing: watch::Sender<bool>,
}

impl Default for Sockets {
    fn default() -> Self {
        Self {
            closing: watch::channel(false).0,
        }
    }
}

impl Sockets {
    /// Closes every open socket with 1001 and waits at most `grace` for them to finish.
    pub async fn close_all(&self, grace: Duration) {
        self.closing.send_replace(true);
        if tokio::time::timeout(grace, self.closing.closed())
            .await
            .is_err()
        {
            tracing::warn!("grace period over; dropping the remaining WebSockets");
        }
    }
}

/// A request asking for a WebSocket, with what answering it needs.
#[derive(Debug)]
pub(super) struct Upgrade {
    on_upgrade: OnUpgrade,
    /// `Sec-WebSocket-Accept` for an HTTP/1.1 handshake; none for HTTP/2 (RFC 8441).
    accept: Option<HeaderValue>,
    /// The connection's place in its listener's table, held while the socket is open.
    slot: Option<ConnectionSlot>,
}

/// Takes the upgrade out of a WebSocket handshake request: an HTTP/1.1 GET with `Upgrade:
/// websocket`, `Connection: upgrade`, version 13 and a key; or an HTTP/2 CONNECT with
/// `:protocol websocket`, which becomes a GET with `Upgrade: websocket` for the worker (as
/// Workers see every WebSocket request). Anything else is an ordinary request. `key` is the
/// request's `Sec-WebSocket-Key`, as the front end's pass over the headers found it.
pub(super) fn take_upgrade<B>(
    request: &mut http::Request<B>,
    key: Option<&HeaderValue>,
) -> Option<Upgrade> {
    if request.version() == Version::HTTP_2 {
        let protocol = request.extensions().get::<hyper::ext::Protocol>()?;
        if request.method() != Method::CONNECT
            || !protocol.as_str().eq_ignore_ascii_case("websocket")
        {
            return None;
        }
        *request.method_mut() = Method::GET;
        request
            .headers_mut()
            .insert(UPGRADE, HeaderValue::from_static("websocket"));
        return Some(Upgrade {
            slot: request.extensions_mut().remove::<ConnectionSlot>(),
            on_upgrade: hyper::upgrade::on(request),
            accept: None,
        });
    }
    let key = key?;
    let headers = request.headers();
    let handshake = request.method() == Method::GET
        && request.version() == Version::HTTP_11
        && has_token(headers, CONNECTION, "upgrade")
        && has_token(headers, UPGRADE, "websocket")
        && headers
            .get(SEC_WEBSOCKET_VERSION)
            .map(HeaderValue::as_bytes)
            == Some(b"13");
    if !handshake {
        return None;
    }
    let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes())).ok()?;
    Some(Upgrade {
        slot: request.extensions_mut().remove::<ConnectionSlot>(),
        on_upgrade: hyper::upgrade::on(request),
        accept: Some(accept),
    })
}

/// Whether a comma-separated header holds `token` (any case).
fn has_token(headers: &HeaderMap, name: http::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// Answers the handshake (101 on HTTP/1.1, 200 on HTTP/2, with the worker's headers, e.g.
/// `Sec-WebSocket-Protocol`) and starts the socket once hyper hands the connection over.
pub(super) fn accept(
    upgrade: Upgrade,
    headers: HeaderMap,
    peer: SocketPeer,
    limits: &Limits,
    write_timeout: Duration,
    sockets: &Sockets,
) -> Response<Body> {
    let Upgrade {
        on_upgrade,
        accept,
        slot,
    } = upgrade;
    // The connection stays in its listener's table, busy, until the socket closes.
    let version = if accept.is_some() {
        Version::HTTP_11
    } else {
        Version::HTTP_2
    };
    let hold = slot.map(|slot| slot.hold(version));
    let mut peer = peer;
    // The request's slot is free for other requests from now on; its isolate stays while the
    // socket is open.
    peer.guard = peer
        .guard
        .take()
        .map(|guard| match guard.downcast::<Lease>() {
            Ok(lease) => Box::new(lease.into_socket_hold()) as isola_bindings::http::Guard,
            Err(other) => other,
        });
    let mut response = Response::new(Body::Empty);
    *response.headers_mut() = headers;
    match accept {
        Some(accept) => {
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let headers = response.headers_mut();
            headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
            headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
        }
        None => *response.status_mut() = StatusCode::OK,
    }
    let max = usize::try_from(limits.websocket_message_max_bytes).unwrap_or(usize::MAX);
    let config = WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    let settings = session::Settings {
        idle_timeout: limits.websocket_idle_timeout(),
        write_timeout,
    };
    let mut closing = sockets.closing.subscribe();
    let shutdown = async move {
        while !*closing.borrow_and_update() {
            if closing.changed().await.is_err() {
                break;
            }
        }
    };
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                // The client left before the handshake completed; dropping the peer ends
                // the worker's socket (1006).
                tracing::debug!("WebSocket upgrade failed: {error}");
                return;
            }
        };
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        session::run(socket, peer, settings, shutdown).await;
        drop(hold);
    });
    response
}
