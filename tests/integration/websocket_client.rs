//! WebSockets a worker opens (`new WebSocket(url)`): the real binary connecting to a
//! tokio-tungstenite server the test runs on 127.0.0.1, and the outbound policy refusing what
//! `isola serve` does not open (proved by the server never accepting a connection).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

use crate::support::{Isola, Proto, fixture, get};

/// What the test's server saw of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// The subprotocols the client offered.
    Offered(String),
    /// A close frame: code and reason.
    Closed(u16, String),
    /// The connection ended without a close frame.
    Dropped,
    /// A text starting with `got ` (what the `/held` worker answers).
    Reply(String),
}

/// A loopback WebSocket server: echoes every message, picks the subprotocol `chat` when
/// offered, sends `first` (if any) that many milliseconds after a socket opens, and reports
/// accepts and what it saw.
struct Server {
    address: SocketAddr,
    accepted: Arc<AtomicUsize>,
    seen: mpsc::UnboundedReceiver<Seen>,
}

async fn server(first: Option<(String, u64)>) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let (tell, seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        // Bounded: a test makes only a handful of connections.
        for _ in 0..16 {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let tell = tell.clone();
            let first = first.clone();
            tokio::spawn(async move {
                let offered = Arc::new(std::sync::Mutex::new(String::new()));
                let keep = offered.clone();
                #[allow(clippy::result_large_err, reason = "tungstenite's callback signature")]
                let callback = move |request: &Request, mut response: Response| {
                    let protocols = request
                        .headers()
                        .get("sec-websocket-protocol")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    if protocols.split(',').any(|p| p.trim() == "chat") {
                        response
                            .headers_mut()
                            .insert("sec-websocket-protocol", "chat".parse().unwrap());
                    }
                    *keep.lock().unwrap() = protocols;
                    Ok(response)
                };
                let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(tcp, callback).await
                else {
                    return;
                };
                let _ = tell.send(Seen::Offered(offered.lock().unwrap().clone()));
                if let Some((first, after_ms)) = first {
                    tokio::time::sleep(Duration::from_millis(after_ms)).await;
                    let _ = socket.send(Message::text(first)).await;
                }
                while let Some(message) = socket.next().await {
                    match message {
                        Ok(Message::Close(frame)) => {
                            let (code, reason) = frame.map_or((1005, String::new()), |f| {
                                (u16::from(f.code), f.reason.as_str().to_owned())
                            });
                            let _ = tell.send(Seen::Closed(code, reason));
                            // tungstenite queued the reply (the same code): send it.
                            let _ = socket.flush().await;
                            return;
                        }
                        Ok(Message::Text(text)) if text.starts_with("got ") => {
                            let _ = tell.send(Seen::Reply(text.as_str().to_owned()));
                        }
                        Ok(message @ (Message::Text(_) | Message::Binary(_))) => {
                            if socket.send(message).await.is_err() {
                                break;
                            }
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                let _ = tell.send(Seen::Dropped);
            });
        }
    });
    Server {
        address,
        accepted,
        seen,
    }
}

impl Server {
    /// The next thing the server saw, within 10 s.
    async fn next(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(10), self.seen.recv())
            .await
            .expect("the server saw something in time")
            .expect("the server runs")
    }
}

/// A loopback HTTP/1.1 server answering every request `200 ok` (for a worker's fetch).
async fn plain_http() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for _ in 0..4 {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            let mut buffer = [0u8; 4096];
            let _ = tcp.read(&mut buffer).await;
            let _ = tcp
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await;
        }
    });
    address
}

/// `isola serve` running `websocket_client.js` with these `[workers.w.*]` lines.
fn serve(extra: &str) -> Isola {
    Isola::serve(&format!(
        r#"
[[listeners]]
address = "127.0.0.1:0"

[[routes]]
worker = "w"

[workers.w]
file = "{{fixtures}}/websocket_client.js"
{extra}
"#
    ))
}

async fn text(isola: &Isola, path: &str) -> (u16, String) {
    let reply = get(Proto::H1, isola, path).await;
    (reply.status, reply.text())
}

#[tokio::test]
async fn a_worker_echoes_text_and_binary_and_closes_with_its_code_and_reason() {
    let mut server = server(None).await;
    // `isola dev` opens loopback in its outbound policy.
    let isola = Isola::dev(&fixture("websocket_client.js"), &[]);
    // http: is normalised to ws:.
    let url = format!("http://{}/chat", server.address);
    let (status, body) = text(&isola, &format!("/echo?url={url}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.next().await, Seen::Offered("chat, other".into()));
    assert_eq!(server.next().await, Seen::Closed(4001, "done here".into()));
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some(format!("constructed 0 ws://{}/chat", server.address).as_str()),
        "{body}"
    );
    assert_eq!(
        lines.get(1).copied(),
        Some("open 1 protocol=chat"),
        "{body}"
    );
    for expected in [
        "text hello",
        "blob 1,2,3,250",
        "blob 102,114,111,109,32,97,32,98,108,111,98",
        "blob 1,2",
    ] {
        assert!(lines.contains(&expected), "{expected} in {body}");
    }
    assert_eq!(
        lines.last().copied(),
        Some("close 4001 done here true state 3"),
        "the server's reply completes the close: {body}"
    );
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn serve_refuses_a_loopback_socket_with_error_then_close_1006() {
    let server = server(None).await;
    let isola = serve("");
    let port = server.address.port();
    for target in [
        format!("ws://127.0.0.1:{port}/"),
        format!("ws://localhost:{port}/"),
        format!("wss://[::1]:{port}/"),
    ] {
        let (status, body) = text(&isola, &format!("/refused?url={target}")).await;
        assert_eq!(status, 200, "{target}: {body}");
        let lines: Vec<&str> = body.lines().collect();
        assert_eq!(lines.len(), 2, "{target}: {body}");
        assert!(
            lines[0].starts_with("error: WebSocket connection to ")
                && lines[0].contains("WebSocket refused:")
                && lines[0].contains("special-purpose address"),
            "{target}: {body}"
        );
        assert_eq!(lines[1], "close 1006  false state 3", "{target}: {body}");
    }
    assert!(
        isola
            .logs()
            .contains("WebSocket connection to ws://127.0.0.1:"),
        "the refusal is logged: {}",
        isola.logs()
    );
    assert_eq!(
        server.accepted.load(Ordering::SeqCst),
        0,
        "no connection reached the refused server"
    );
}

#[tokio::test]
async fn a_socket_is_a_subrequest_of_its_request() {
    let server = server(None).await;
    let isola = serve(
        r#"[workers.w.outbound]
allow = ["127.0.0.1"]
[workers.w.limits]
max_subrequests = 1"#,
    );
    let fetched = plain_http().await;
    let url = format!("ws://{}/", server.address);
    let (status, body) = text(
        &isola,
        &format!("/fetch-then-socket?fetch=http://{fetched}/&url={url}"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("fetch 200\n"), "{body}");
    assert!(
        body.contains("too many subrequests") && body.ends_with("close 1006  false state 3"),
        "{body}"
    );
    assert_eq!(server.accepted.load(Ordering::SeqCst), 0);
    // The socket alone is within the cap.
    let (status, body) = text(&isola, &format!("/refused?url={url}")).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "open\nclose 1000 bye true state 3")
    );
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1, "{body}");
}

#[tokio::test]
async fn other_schemes_and_fragments_are_a_syntax_error() {
    let isola = Isola::dev(&fixture("websocket_client.js"), &[]);
    for (url, expected) in [
        (
            "ftp://127.0.0.1/",
            "SyntaxError: a WebSocket URL must use ws:",
        ),
        (
            "ws://127.0.0.1/#frag",
            "SyntaxError: a WebSocket URL must not have a fragment",
        ),
        ("not a url", "SyntaxError: \"not a url\" is not a valid URL"),
    ] {
        let encoded = url.replace('#', "%23").replace(' ', "%20");
        let (status, body) = text(&isola, &format!("/syntax?url={encoded}")).await;
        assert_eq!(status, 200, "{url}: {body}");
        assert!(body.starts_with(expected), "{url}: {body}");
    }
}

#[tokio::test]
async fn a_spinning_message_handler_is_stopped_and_its_socket_closed() {
    let mut server = server(Some(("spin".to_owned(), 300))).await;
    let isola = serve(
        r#"[workers.w.outbound]
allow = ["127.0.0.1"]
[workers.w.limits]
cpu_ms = 50
max_isolates = 1"#,
    );
    let url = format!("ws://{}/", server.address);
    let (status, body) = text(&isola, &format!("/held?url={url}")).await;
    assert_eq!((status, body.as_str()), (200, "open"));
    assert_eq!(server.next().await, Seen::Offered(String::new()));
    // The handler's turn runs on the request's cpu_ms: the isolate is killed, and its socket
    // with it (a 1011 close frame, or the connection's end).
    match server.next().await {
        Seen::Closed(1011, _) | Seen::Dropped => {}
        other => panic!("expected the socket to end, got {other:?}"),
    }
    isola.wait_for_log("cpu_ms");
    // A new isolate serves on.
    let (status, body) = text(&isola, "/syntax?url=ftp://x/").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_message_over_the_limit_closes_with_1009() {
    let mut server = server(Some(("x".repeat(2000), 300))).await;
    let isola = serve(
        r#"[workers.w.outbound]
allow = ["127.0.0.1"]
[workers.w.limits]
websocket_message_max_bytes = 1024"#,
    );
    let url = format!("ws://{}/", server.address);
    let (status, body) = text(&isola, &format!("/wait?url={url}")).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "open\nclose 1009 message too big true state 3")
    );
    assert_eq!(server.next().await, Seen::Offered(String::new()));
    assert_eq!(
        server.next().await,
        Seen::Closed(1009, "message too big".into())
    );
}

#[tokio::test]
async fn outbound_sockets_count_toward_websocket_max_per_isolate() {
    let server = server(None).await;
    let isola = serve(
        r#"[workers.w.outbound]
allow = ["127.0.0.1"]
[workers.w.limits]
websocket_max_per_isolate = 1"#,
    );
    let url = format!("ws://{}/", server.address);
    let (status, body) = text(&isola, &format!("/two?url={url}")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with("RangeError: this isolate has 1 WebSockets open already"),
        "{body}"
    );
}

#[tokio::test]
async fn wss_verifies_the_server_certificate_with_fetchs_roots() {
    use std::sync::Mutex;

    // A TLS server with a self-signed certificate, which fetch's (webpki) roots do not trust.
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = generated.cert.der().clone();
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(generated.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hello = Arc::new(Mutex::new(None::<(Option<String>, Vec<Vec<u8>>)>));
    let seen = hello.clone();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let completed = handshakes.clone();
    tokio::spawn(async move {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let acceptor =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
        let Ok(start) = acceptor.await else {
            return;
        };
        let client_hello = start.client_hello();
        *seen.lock().unwrap() = Some((
            client_hello.server_name().map(str::to_owned),
            client_hello
                .alpn()
                .map(|protocols| protocols.map(<[u8]>::to_vec).collect())
                .unwrap_or_default(),
        ));
        if start.into_stream(config).await.is_ok() {
            completed.fetch_add(1, Ordering::SeqCst);
        }
    });
    let isola = Isola::dev(&fixture("websocket_client.js"), &[]);
    let (status, body) = text(&isola, &format!("/refused?url=wss://localhost:{port}/")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with("error: WebSocket connection to wss://localhost:")
            && body.contains("certificate")
            && body.ends_with("close 1006  false state 3"),
        "{body}"
    );
    assert_eq!(
        hello.lock().unwrap().clone(),
        Some((Some("localhost".to_owned()), vec![b"http/1.1".to_vec()])),
        "SNI names the host; ALPN offers HTTP/1.1 only"
    );
    assert_eq!(handshakes.load(Ordering::SeqCst), 0);
}

/// Opens a socket through `path` (answered `answer`) and checks that, well past
/// `idle_timeout_ms`, the socket still works and its isolate is still its pool's (a new one
/// would count requests from 1 again).
async fn a_socket_keeps_its_isolate(path: &str, answer: &str) {
    let mut server = server(Some(("hello".to_owned(), 1500))).await;
    let isola = serve(
        r#"[workers.w.outbound]
allow = ["127.0.0.1"]
[workers.w.limits]
idle_timeout_ms = 300
max_isolates = 1"#,
    );
    let url = format!("ws://{}/", server.address);
    let (status, body) = text(&isola, &format!("{path}?url={url}")).await;
    assert_eq!((status, body.as_str()), (200, answer));
    assert_eq!(server.next().await, Seen::Offered(String::new()));
    // Well past idle_timeout_ms (the sweeper looks every 100 ms) the isolate is still there.
    assert_eq!(server.next().await, Seen::Reply("got hello".into()));
    assert_eq!(text(&isola, "/count").await, (200, "requests 2".into()));
}

#[tokio::test]
async fn an_open_outbound_socket_keeps_its_isolate_past_idle_timeout_ms() {
    a_socket_keeps_its_isolate("/held", "open").await;
}

#[tokio::test]
async fn a_socket_opened_after_the_response_also_keeps_its_isolate() {
    // Opened by `waitUntil` work once the response went out, when no lease is at hand.
    a_socket_keeps_its_isolate("/held-later", "later").await;
}
