//! Clients that stop reading cannot hold an isolate: a streamed response the client has read
//! nothing of for `write_timeout_ms` is ended (over HTTP/1.1, whose socket backs up, and
//! HTTP/2, whose flow-control window does) and its isolate serves the next request; a cache
//! miss collapsed behind a slow reader's request waits for it at most about a second.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Isola, Proto, get};

fn node() -> Isola {
    Isola::serve(
        r#"
[http]
write_timeout_ms = 1000
[[listeners]]
address = "127.0.0.1:0"
[[routes]]
worker = "site"
[workers.site]
file = "{fixtures}/hardening.js"
[workers.site.limits]
max_isolates = 1
queue_timeout_ms = 15000
"#,
    )
}

/// The next request is served by the only isolate within a few seconds.
async fn isolate_is_free_again(isola: &Isola) {
    let started = Instant::now();
    let reply = tokio::time::timeout(Duration::from_secs(8), get(Proto::H1, isola, "/next"))
        .await
        .expect("the next request was served");
    assert_eq!(reply.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the stalled stream freed its isolate: {:?}",
        started.elapsed()
    );
}

/// GET `path` over HTTP/1.1 and read only the start of the response; the connection is
/// returned unread.
async fn get_head_only(isola: &Isola, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(isola.authority()).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: {}\r\n\r\n", isola.authority());
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).await.unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"));
    stream
}

#[tokio::test]
async fn an_http1_client_that_stops_reading_frees_the_isolate() {
    let isola = node();
    // Read nothing after the head: the socket backs up and the producer stalls.
    let _stalled = get_head_only(&isola, "/big-stream").await;
    isolate_is_free_again(&isola).await;
}

#[tokio::test]
async fn an_http2_stream_that_is_not_read_frees_the_isolate() {
    let isola = node();
    let stream = TcpStream::connect(isola.authority()).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = Request::get(format!("http://{}/big-stream", isola.authority()))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    // Hold the body unread: the stream's flow-control window fills.
    let _unread = response;
    isolate_is_free_again(&isola).await;
}

#[tokio::test]
async fn a_collapsed_miss_does_not_wait_for_a_slow_leader() {
    let isola = Isola::serve(
        r#"
[[listeners]]
address = "127.0.0.1:0"
[[routes]]
worker = "site"
[workers.site]
file = "{fixtures}/hardening.js"
cache = true
# Streaming 8 MB is not what this test is about: room for a loaded machine.
[workers.site.limits]
cpu_ms = 1000
"#,
    );
    // The worker has sent a cacheable response: its misses are collapsed from now on.
    assert_eq!(
        get(Proto::H1, &isola, "/cached-stream?v=1").await.status,
        200
    );
    let _leader = get_head_only(&isola, "/cached-stream?v=2").await;
    let started = Instant::now();
    let follower = tokio::time::timeout(
        Duration::from_secs(8),
        get(Proto::H1, &isola, "/cached-stream?v=2"),
    )
    .await
    .expect("the follower was answered");
    assert_eq!(follower.status, 200);
    assert_eq!(
        follower.body.len(),
        128 * 64 * 1024,
        "the whole body; the node's log:\n{}",
        isola.logs()
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}
