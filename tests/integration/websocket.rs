//! WebSockets a worker accepts (`WebSocketPair`, a 101 Response): the real binary, a real
//! tokio-tungstenite client over HTTP/1.1 upgrade, raw frames for protocol errors.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::{Isola, Proto, get, rss_mib};

type Socket = WebSocketStream<TcpStream>;

/// A node serving `websocket.js` for every host, with these `[limits]` and `[http]` lines.
fn node(limits: &str, http: &str) -> Isola {
    Isola::serve(&format!(
        r#"
[http]
{http}

[[listeners]]
address = "127.0.0.1:0"

[[routes]]
worker = "ws"

[workers.ws]
file = "{{fixtures}}/websocket.js"
[workers.ws.limits]
max_isolates = 1
{limits}
"#
    ))
}

/// Opens a WebSocket to `path`; panics unless the handshake succeeds.
async fn connect(isola: &Isola, path: &str) -> Socket {
    let tcp = TcpStream::connect(isola.authority())
        .await
        .expect("connect");
    let url = format!("ws://{}{path}", isola.authority());
    let (socket, response) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::client_async(url, tcp),
    )
    .await
    .expect("handshake in time")
    .expect("handshake");
    assert_eq!(response.status(), 101);
    assert_eq!(
        response.headers().get("x-socket").map(|v| v.as_bytes()),
        Some(&b"yes"[..]),
        "the worker's headers reach the client"
    );
    socket
}

/// The next message (pings and pongs skipped), within 10 s.
async fn next(socket: &mut Socket) -> Message {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a message in time")
            .expect("the socket is open")
            .expect("a well-formed message");
        if !matches!(message, Message::Ping(_) | Message::Pong(_)) {
            return message;
        }
    }
}

/// The close frame the node sends next (messages before it skipped), within `within`.
async fn close_of(socket: &mut Socket, within: Duration) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                return (u16::from(frame.code), frame.reason.as_str().to_owned());
            }
            Ok(Some(Ok(Message::Close(None)))) => return (1005, String::new()),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(error))) => panic!("no close frame, but {error}"),
            Ok(None) => panic!("the connection ended without a close frame"),
            Err(_) => panic!("no close frame within {within:?}"),
        }
    }
}

async fn text_of(isola: &Isola, path: &str) -> String {
    let reply = get(Proto::H1, isola, path).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text()
}

/// The worker's last close event (`code reason wasClean`), once it has one.
async fn last_close(isola: &Isola, expected_prefix: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = text_of(isola, "/last-close").await;
        if text.starts_with(expected_prefix) || tokio::time::Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn text_and_binary_messages_echo_over_http1() {
    let isola = node("", "");
    let mut socket = connect(&isola, "/chat").await;
    socket.send(Message::text("hello")).await.unwrap();
    assert_eq!(next(&mut socket).await, Message::text("hello"));
    socket.send(Message::text("state")).await.unwrap();
    assert_eq!(next(&mut socket).await, Message::text("readyState 1"));
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    socket.send(Message::binary(bytes.clone())).await.unwrap();
    assert_eq!(next(&mut socket).await, Message::binary(bytes));
    assert_eq!(next(&mut socket).await, Message::text("arraybuffer 70000"));
    for i in 0..200 {
        socket.send(Message::text(format!("m{i}"))).await.unwrap();
    }
    for i in 0..200 {
        assert_eq!(next(&mut socket).await, Message::text(format!("m{i}")));
    }
    socket.close(None).await.unwrap();
}

#[tokio::test]
async fn an_open_socket_keeps_its_isolate_but_not_its_request_slot() {
    // One isolate at most, evicted after 200 ms idle (were it not holding a socket).
    let isola = node("idle_timeout_ms = 200", "");
    let mut socket = connect(&isola, "/").await;
    for i in 0..3 {
        socket.send(Message::text(format!("m{i}"))).await.unwrap();
        assert_eq!(next(&mut socket).await, Message::text(format!("m{i}")));
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // The same isolate answers a plain request while the socket is open.
    assert_eq!(text_of(&isola, "/messages").await, "3");
    socket.send(Message::text("still")).await.unwrap();
    assert_eq!(next(&mut socket).await, Message::text("still"));
}

#[tokio::test]
async fn close_codes_and_reasons_travel_both_ways() {
    let isola = node("", "");
    // The worker closes: the client sees its code and reason.
    let mut socket = connect(&isola, "/").await;
    socket
        .send(Message::text("close 4001 worker-done"))
        .await
        .unwrap();
    assert_eq!(
        close_of(&mut socket, Duration::from_secs(10)).await,
        (4001, "worker-done".to_owned())
    );
    // Reading on sends tungstenite's reply to the close.
    let _ = tokio::time::timeout(Duration::from_secs(2), socket.next()).await;
    drop(socket);
    assert_eq!(
        last_close(&isola, "4001").await,
        "4001 worker-done true",
        "the worker's close completes with the client's reply"
    );
    // The client closes: the worker's close event has its code and reason.
    let mut socket = connect(&isola, "/").await;
    socket
        .close(Some(CloseFrame {
            code: CloseCode::from(4002),
            reason: "client-done".into(),
        }))
        .await
        .unwrap();
    assert_eq!(
        close_of(&mut socket, Duration::from_secs(10)).await,
        (4002, "client-done".to_owned()),
        "the close handshake is answered"
    );
    assert_eq!(last_close(&isola, "4002").await, "4002 client-done true");
}

#[tokio::test]
async fn a_message_over_the_limit_closes_with_1009_and_the_worker_serves_on() {
    let isola = node("websocket_message_max_bytes = 65536", "");
    let mut socket = connect(&isola, "/").await;
    socket
        .send(Message::binary(vec![7u8; 65_536]))
        .await
        .unwrap();
    assert_eq!(next(&mut socket).await, Message::binary(vec![7u8; 65_536]));
    socket
        .send(Message::binary(vec![7u8; 65_537]))
        .await
        .unwrap();
    let (code, _) = close_of(&mut socket, Duration::from_secs(10)).await;
    assert_eq!(code, 1009);
    assert_eq!(
        last_close(&isola, "1009").await,
        "1009 message too big true"
    );
    let mut socket = connect(&isola, "/").await;
    socket.send(Message::text("again")).await.unwrap();
    assert_eq!(next(&mut socket).await, Message::text("again"));
}

#[tokio::test]
async fn an_idle_socket_is_closed() {
    let isola = node("websocket_idle_timeout_ms = 500", "");
    let mut socket = connect(&isola, "/").await;
    socket.send(Message::text("ping")).await.unwrap();
    assert_eq!(next(&mut socket).await, Message::text("ping"));
    let started = std::time::Instant::now();
    let (code, reason) = close_of(&mut socket, Duration::from_secs(10)).await;
    assert_eq!((code, reason.as_str()), (1001, "idle timeout"));
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[tokio::test]
async fn a_client_that_does_not_read_gets_closed_and_memory_stays_bounded() {
    let isola = node(
        "websocket_send_buffer_bytes = 2097152\nmemory_mb = 256",
        "write_timeout_ms = 2000",
    );
    let mut socket = connect(&isola, "/").await;
    socket.send(Message::text("ping")).await.unwrap();
    assert_eq!(next(&mut socket).await, Message::text("ping"));
    let before = rss_mib(isola.pid());
    // 2,000 messages of 64 KiB (125 MiB) for a client that reads nothing.
    socket
        .send(Message::text("burst 2000 65536"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let during = rss_mib(isola.pid());
    assert!(
        during - before < 48.0,
        "the node buffered for a client that does not read: {before:.0} → {during:.0} MiB"
    );
    // The node gave up on the client (1008) and told the worker.
    assert_eq!(
        last_close(&isola, "1008").await,
        "1008 the client did not read what the worker sent true"
    );
    assert_eq!(text_of(&isola, "/plain").await, "plain");
}

#[tokio::test]
async fn each_message_has_its_own_cpu_budget_and_a_spinning_handler_closes_with_1011() {
    let isola = node("cpu_ms = 200", "");
    let mut socket = connect(&isola, "/").await;
    // Sixty messages of ~5 ms of CPU each: ~300 ms in all, each far under cpu_ms.
    for i in 0..60 {
        socket.send(Message::text("work 1000000")).await.unwrap();
        let reply = next(&mut socket).await;
        assert!(
            reply.to_text().unwrap().starts_with("worked"),
            "{i} {reply:?} {}",
            isola.logs()
        );
    }
    socket.send(Message::text("spin")).await.unwrap();
    let (code, _) = close_of(&mut socket, Duration::from_secs(10)).await;
    assert_eq!(code, 1011, "the isolate was killed mid-conversation");
    isola.wait_for_log("cpu_ms");
    assert_eq!(
        text_of(&isola, "/plain").await,
        "plain",
        "the node still serves"
    );
    let mut socket = connect(&isola, "/").await;
    socket.send(Message::text("after")).await.unwrap();
    assert_eq!(next(&mut socket).await, Message::text("after"));
}

#[tokio::test]
async fn shutdown_closes_open_sockets_with_1001() {
    let mut isola = node("", "");
    let mut socket = connect(&isola, "/").await;
    socket.send(Message::text("hi")).await.unwrap();
    assert_eq!(next(&mut socket).await, Message::text("hi"));
    let closing = tokio::spawn(async move { close_of(&mut socket, Duration::from_secs(20)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let status = tokio::task::spawn_blocking(move || isola.terminate())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    let (code, reason) = closing.await.unwrap();
    assert_eq!((code, reason.as_str()), (1001, "the node is shutting down"));
}

#[tokio::test]
async fn a_malformed_frame_closes_with_1002_and_the_isolate_serves_on() {
    let isola = node("", "");
    let mut tcp = TcpStream::connect(isola.authority()).await.unwrap();
    tcp.write_all(
        b"GET / HTTP/1.1\r\nhost: ws.test\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
          sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    // A text frame from the client without a mask: a protocol error (RFC 6455 §5.1).
    tcp.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap();
    let mut frame = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(10), tcp.read_exact(&mut frame))
        .await
        .expect("a close frame in time")
        .unwrap();
    assert_eq!(frame[0], 0x88, "a close frame: {frame:?}");
    assert_eq!(u16::from_be_bytes([frame[2], frame[3]]), 1002);
    assert_eq!(last_close(&isola, "1002").await, "1002 protocol error true");
    let mut socket = connect(&isola, "/").await;
    socket.send(Message::text("still")).await.unwrap();
    assert_eq!(next(&mut socket).await, Message::text("still"));
}

#[tokio::test]
async fn a_websocket_for_a_request_that_is_no_handshake_is_a_clear_error() {
    let isola = node("", "");
    let reply = get(Proto::H1, &isola, "/not-a-handshake").await;
    assert_eq!(reply.status, 426);
    assert!(
        reply.text().contains("not a WebSocket handshake"),
        "{}",
        reply.text()
    );
    assert_eq!(text_of(&isola, "/plain").await, "plain");
}

#[tokio::test]
async fn echo_over_http2_extended_connect() {
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio_tungstenite::tungstenite::protocol::Role;

    let isola = node("", "");
    let tcp = TcpStream::connect(isola.authority()).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake::<_, Empty<bytes::Bytes>>(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(connection);
    // A plain request first, so the server's SETTINGS (extended CONNECT enabled) have come.
    let plain = http::Request::get(format!("http://{}/plain", isola.authority()))
        .body(Empty::new())
        .unwrap();
    assert_eq!(sender.send_request(plain).await.unwrap().status(), 200);
    let mut request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://{}/chat", isola.authority()))
        .header("sec-websocket-version", "13")
        .body(Empty::new())
        .unwrap();
    request
        .extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("x-socket").map(|v| v.as_bytes()),
        Some(&b"yes"[..])
    );
    let upgraded = hyper::upgrade::on(response).await.unwrap();
    let mut socket =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await;
    socket.send(Message::text("over h2")).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(reply, Message::text("over h2"));
    socket.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(reply, Message::binary(vec![1u8, 2, 3]));
    // The connection still carries other requests while the socket is open.
    let plain = http::Request::get(format!("http://{}/plain", isola.authority()))
        .body(Empty::new())
        .unwrap();
    assert_eq!(sender.send_request(plain).await.unwrap().status(), 200);
}

#[tokio::test]
async fn past_websocket_max_per_isolate_a_handshake_gets_503_with_retry_after() {
    use tokio_tungstenite::tungstenite::Error;

    let isola = node("websocket_max_per_isolate = 1", "");
    let mut first = connect(&isola, "/chat").await;
    let tcp = TcpStream::connect(isola.authority()).await.unwrap();
    let url = format!("ws://{}/chat", isola.authority());
    match tokio_tungstenite::client_async(url.clone(), tcp).await {
        Err(Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            assert_eq!(
                response.headers().get("retry-after").map(|v| v.as_bytes()),
                Some(&b"1"[..])
            );
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                .into_owned();
            assert!(body.contains("websocket_max_per_isolate"), "{body}");
        }
        other => panic!("expected a 503, got {:?}", other.map(|(_, r)| r.status())),
    }
    // Once the first socket has closed, there is room again.
    first
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        })))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let tcp = TcpStream::connect(isola.authority()).await.unwrap();
        match tokio_tungstenite::client_async(url.clone(), tcp).await {
            Ok((_, response)) => {
                assert_eq!(response.status(), 101);
                break;
            }
            Err(error) if tokio::time::Instant::now() < deadline => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("no room after the first socket closed: {error}"),
        }
    }
}

/// Sends a plain GET on a new connection: its status line, or `None` when the node closed
/// the connection without answering (within 2 s).
async fn plain_get_on_new_connection(isola: &Isola) -> Option<String> {
    let mut tcp = TcpStream::connect(isola.authority()).await.ok()?;
    let _ = tcp
        .write_all(b"GET /plain HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await;
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), tcp.read_to_end(&mut received)).await;
    let text = String::from_utf8_lossy(&received).into_owned();
    text.lines().next().map(str::to_owned)
}

#[tokio::test]
async fn open_sockets_stay_counted_in_max_connections() {
    let isola = Isola::serve(
        r#"
[[listeners]]
address = "127.0.0.1:0"
max_connections = 2

[[routes]]
worker = "ws"

[workers.ws]
file = "{fixtures}/websocket.js"
"#,
    );
    let mut first = connect(&isola, "/chat").await;
    let mut second = connect(&isola, "/chat").await;
    second.send(Message::text("still here")).await.unwrap();
    assert_eq!(next(&mut second).await, Message::text("still here"));
    // Both places are taken by open sockets, busy as connections with a request in flight:
    // a new connection is refused, as the listener does when no connection is idle.
    assert_eq!(plain_get_on_new_connection(&isola).await, None);
    first.send(Message::text("also here")).await.unwrap();
    assert_eq!(next(&mut first).await, Message::text("also here"));
    // Once a socket closes, its place is free again.
    first.close(None).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match plain_get_on_new_connection(&isola).await {
            Some(status) if status.starts_with("HTTP/1.1 200") => break,
            other if tokio::time::Instant::now() > deadline => {
                panic!("no room after a socket closed: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
