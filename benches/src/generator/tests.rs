//! The generator against an in-process hyper server on 127.0.0.1 whose response delay is
//! chosen per test; every run is bounded to about a second.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::sync::atomic::AtomicUsize;

use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

use super::*;
use crate::stats::ErrorKind;

/// A server answering `hello` after `delay`; returns its URL and its accepted-connection count.
async fn server(delay: Duration) -> (Uri, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let service = service_fn(move |_request| async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(
                        b"hello",
                    ))))
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url.parse().unwrap(), accepted)
}

fn spec(uri: Uri) -> LoadSpec {
    LoadSpec {
        connections: 2,
        duration: Some(Duration::from_millis(600)),
        warmup: Duration::ZERO,
        timeout: Duration::from_secs(5),
        ..LoadSpec::get(uri)
    }
}

#[tokio::test]
async fn closed_loop_with_both_http1_clients() {
    let (uri, _) = server(Duration::ZERO).await;
    for client in [H1Client::Fast, H1Client::Hyper] {
        let result = run(
            LoadSpec {
                h1_client: client,
                ..spec(uri.clone())
            },
            None,
        )
        .await
        .unwrap();
        assert!(result.ok > 100, "{client:?}: {result:?}");
        assert_eq!(result.error_count(), 0, "{client:?}");
        assert_eq!(result.response_bytes, result.ok * 5);
        assert_eq!(result.timeline.iter().sum::<u64>(), result.ok);
    }
}

#[tokio::test]
async fn open_loop_counts_the_wait_for_a_busy_connection() {
    // One connection, a 50 ms server, 100 requests/s: requests queue up behind each other.
    // Latency from the due time includes the queueing; from the send time it would be 50 ms.
    let (uri, _) = server(Duration::from_millis(50)).await;
    let open = run(
        LoadSpec {
            connections: 1,
            rate: Some(100.0),
            max_in_flight: 10,
            duration: Some(Duration::from_secs(1)),
            ..spec(uri.clone())
        },
        None,
    )
    .await
    .unwrap();
    let p50 = open.latency_ms_at(0.5);
    assert!(p50 > 200.0, "queueing must count: p50 {p50} ms");
    let dropped = open.errors[ErrorKind::ALL
        .iter()
        .position(|k| *k == ErrorKind::Dropped)
        .unwrap()];
    assert!(dropped > 0, "beyond max-in-flight requests are dropped");
    assert!(open.schedule_lag_max.is_some());

    let closed = run(
        LoadSpec {
            connections: 1,
            ..spec(uri)
        },
        None,
    )
    .await
    .unwrap();
    let closed_p50 = closed.latency_ms_at(0.5);
    assert!(
        (45.0..120.0).contains(&closed_p50),
        "closed loop sees only the service time: {closed_p50} ms"
    );
}

#[tokio::test]
async fn open_loop_holds_the_rate_against_a_fast_server() {
    let (uri, _) = server(Duration::ZERO).await;
    let result = run(
        LoadSpec {
            rate: Some(200.0),
            duration: Some(Duration::from_secs(1)),
            ..spec(uri)
        },
        None,
    )
    .await
    .unwrap();
    assert!((190..=210).contains(&result.ok), "{result:?}");
    assert_eq!(result.error_count(), 0);
    assert!(result.latency_ms_at(0.5) < 20.0);
}

#[tokio::test]
async fn http2_streams_share_connections() {
    let (uri, accepted) = server(Duration::ZERO).await;
    let result = run(
        LoadSpec {
            http2: true,
            h2_streams: 4,
            ..spec(uri)
        },
        None,
    )
    .await
    .unwrap();
    assert!(result.ok > 100, "{result:?}");
    assert_eq!(result.error_count(), 0);
    assert_eq!(
        accepted.load(Ordering::Relaxed),
        2,
        "2 connections × 4 streams"
    );
}

#[tokio::test]
async fn new_connection_per_request_and_request_count() {
    let (uri, accepted) = server(Duration::ZERO).await;
    let result = run(
        LoadSpec {
            new_connection_per_request: true,
            duration: None,
            requests: Some(50),
            ..spec(uri)
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(result.requests, 50);
    assert_eq!(result.ok, 50);
    assert!(accepted.load(Ordering::Relaxed) >= 50);
}

#[tokio::test]
async fn timeouts_are_errors_not_latencies() {
    let (uri, _) = server(Duration::from_millis(400)).await;
    let result = run(
        LoadSpec {
            connections: 1,
            timeout: Duration::from_millis(100),
            duration: Some(Duration::from_millis(300)),
            ..spec(uri)
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(result.ok, 0);
    assert!(result.error_count() >= 2, "{result:?}");
    assert_eq!(result.error_count(), result.requests);
}

#[tokio::test]
async fn a_closed_port_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url: Uri = format!("http://{}/", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    drop(listener);
    let failure = probe(&spec(url.clone())).await.unwrap_err();
    assert_eq!(failure.kind, ErrorKind::Connect);
    let result = run(
        LoadSpec {
            duration: Some(Duration::from_millis(100)),
            ..spec(url)
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(result.ok, 0);
    assert!(result.errors[0] > 0, "connect errors: {result:?}");
}
