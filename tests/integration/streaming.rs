//! Streaming in both directions with backpressure, and client disconnects.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::support::{Isola, Proto, REQUEST_TIMEOUT, fixture};

type ChunkSender = mpsc::Sender<Result<Frame<Bytes>, Infallible>>;

fn channel_body() -> (
    ChunkSender,
    StreamBody<impl futures::Stream<Item = Result<Frame<Bytes>, Infallible>>>,
) {
    let (tx, rx) = mpsc::channel(1);
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (tx, StreamBody::new(Box::pin(stream)))
}

/// The second request chunk is sent only after the first came back: the request body is not
/// buffered whole, and the response streams as it is produced.
async fn echo_interleaved(proto: Proto) {
    let isola = Isola::dev(&fixture("echo.js"), &[]);
    let (tx, body) = channel_body();
    let request = Request::post(format!("http://{}/echo", isola.authority()))
        .header("host", isola.authority())
        .header("content-type", "text/plain")
        .body(body)
        .unwrap();
    let stream = TcpStream::connect(isola.authority()).await.unwrap();
    let response = tokio::time::timeout(REQUEST_TIMEOUT, async {
        tx.send(Ok(Frame::data(Bytes::from_static(b"first chunk;"))))
            .await
            .unwrap();
        match proto {
            Proto::H1 => {
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .unwrap();
                tokio::spawn(conn);
                sender.send_request(request).await.unwrap()
            }
            Proto::H2c => {
                let (mut sender, conn) = hyper::client::conn::http2::handshake(
                    TokioExecutor::new(),
                    TokioIo::new(stream),
                )
                .await
                .unwrap();
                tokio::spawn(conn);
                sender.send_request(request).await.unwrap()
            }
        }
    })
    .await
    .expect("response head");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut echoed = Vec::new();
    let first = tokio::time::timeout(REQUEST_TIMEOUT, body.frame())
        .await
        .expect("first echo")
        .unwrap()
        .unwrap();
    echoed.extend_from_slice(&first.into_data().unwrap());
    assert_eq!(
        echoed, b"first chunk;",
        "the first chunk must come back before the second is sent"
    );
    tx.send(Ok(Frame::data(Bytes::from_static(b"second chunk"))))
        .await
        .unwrap();
    drop(tx);
    while let Some(frame) = tokio::time::timeout(REQUEST_TIMEOUT, body.frame())
        .await
        .expect("echo")
    {
        if let Ok(data) = frame.unwrap().into_data() {
            echoed.extend_from_slice(&data);
        }
    }
    assert_eq!(echoed, b"first chunk;second chunk");
}

#[tokio::test]
async fn echo_streams_both_ways_over_http1() {
    echo_interleaved(Proto::H1).await;
}

#[tokio::test]
async fn echo_streams_both_ways_over_h2c() {
    echo_interleaved(Proto::H2c).await;
}

#[tokio::test]
async fn response_stream_arrives_chunk_by_chunk() {
    let isola = Isola::dev(&fixture("echo.js"), &[]);
    let stream = TcpStream::connect(isola.authority()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = Request::get(format!("http://{}/stream", isola.authority()))
        .header("host", isola.authority())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.headers()["transfer-encoding"], "chunked");
    let mut body = response.into_body();
    let mut arrivals = Vec::new();
    let started = Instant::now();
    while let Some(frame) = tokio::time::timeout(REQUEST_TIMEOUT, body.frame())
        .await
        .expect("chunk")
    {
        if frame.unwrap().is_data() {
            arrivals.push(started.elapsed());
        }
    }
    assert_eq!(arrivals.len(), 3, "{arrivals:?}");
    assert!(
        arrivals[2] - arrivals[0] >= Duration::from_millis(300),
        "chunks must arrive as produced (200 ms apart), not all at once: {arrivals:?}"
    );
}

#[tokio::test]
async fn client_disconnect_aborts_request_signal() {
    let isola = Isola::dev(&fixture("echo.js"), &[]);
    let stream = TcpStream::connect(isola.authority()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let connection = tokio::spawn(conn);
    let request = Request::get(format!("http://{}/hang-until-abort", isola.authority()))
        .header("host", isola.authority())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let pending = tokio::spawn(async move { sender.send_request(request).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    pending.abort();
    connection.abort();
    // Let the runtime drop the aborted tasks (and with them the socket) before blocking.
    let _ = pending.await;
    let _ = connection.await;
    let logs = isola.wait_for_log("request.signal aborted");
    assert!(logs.contains("request.signal aborted"), "{logs}");
    // And the server still serves.
    let reply = crate::support::get(Proto::H1, &isola, "/ok").await;
    assert_eq!(reply.status, 200);
}

/// A stream cut short by a kill must not look complete: the client sees the response end with
/// an error (over HTTP/1.1 and HTTP/2), and the cache keeps nothing of it.
#[tokio::test]
async fn a_stream_cut_by_a_kill_ends_with_an_error_not_a_clean_end() {
    let isola = Isola::serve(
        r#"
[[listeners]]
address = "127.0.0.1:0"
[[routes]]
worker = "site"
[workers.site]
file = "{fixtures}/hardening.js"
cache = true
"#,
    );
    let mut headless = Vec::new();
    for proto in [Proto::H1, Proto::H2c, Proto::H1] {
        let stream = TcpStream::connect(isola.authority()).await.unwrap();
        let request = Request::get(format!("http://{}/stream-then-spin", isola.authority()))
            .header("host", isola.authority())
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = match proto {
            Proto::H1 => {
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .unwrap();
                tokio::spawn(conn);
                sender.send_request(request).await
            }
            Proto::H2c => {
                let (mut sender, conn) = hyper::client::conn::http2::handshake(
                    TokioExecutor::new(),
                    TokioIo::new(stream),
                )
                .await
                .unwrap();
                tokio::spawn(conn);
                sender.send_request(request).await
            }
        };
        // On an executor thread the kill may come before the connection wrote the head (the
        // worker spins in the same turn that responded, on the thread that also serves the
        // connection): then the response fails as a whole, which is just as incomplete. With
        // a thread per isolate the head always goes out first.
        let response = match response {
            Ok(response) => response,
            Err(error) if crate::support::on_executors() => {
                headless.push(format!("{proto:?}: {error}"));
                continue;
            }
            Err(error) => panic!("{proto:?}: the head went out before the kill: {error}"),
        };
        assert_eq!(
            response.status(),
            200,
            "a head that went out is the worker's"
        );
        let body = tokio::time::timeout(REQUEST_TIMEOUT, response.into_body().collect())
            .await
            .expect("the body ends");
        assert!(
            body.is_err(),
            "{proto:?}: a cut stream must not end cleanly ({} bytes)",
            body.map(|b| b.to_bytes().len()).unwrap_or_default()
        );
    }
    // After the first kill the version runs on threads of its own, where heads go out first.
    assert!(headless.len() <= 1, "{headless:?}");
    let logs = isola.wait_for_log("isolate killed");
    assert!(logs.contains("cpu_ms"), "{logs}");
}
