//! The `observability` scenario's tail: one client of a node's live tail (`GET
//! /workers/NAME/tail` on its admin API), connected for the whole run and reading every event
//! as `isola tail` would, counting them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;

/// A connected tail; it reads until the node closes it (the node's end).
pub(super) struct TailClient {
    events: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
}

impl TailClient {
    /// Connects to the tail of `worker` on the admin API at `admin` (`host:port`) and reads
    /// it from a thread of its own.
    pub(super) fn connect(admin: &str, token: &str, worker: &str) -> anyhow::Result<Self> {
        let runtime = super::measure::runtime(1)?;
        let request = http::Request::get(format!("/workers/{worker}/tail"))
            .header(http::header::HOST, admin)
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Empty::<Bytes>::new())?;
        let mut body = runtime.block_on(async {
            let stream = tokio::net::TcpStream::connect(admin).await?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            let response = sender.send_request(request).await?;
            anyhow::ensure!(
                response.status() == http::StatusCode::OK,
                "the tail answered {}",
                response.status()
            );
            anyhow::Ok(response.into_body())
        })?;
        let events = Arc::new(AtomicU64::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let (counted, lost) = (Arc::clone(&events), Arc::clone(&dropped));
        std::thread::Builder::new()
            .name("tail-client".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut pending = String::new();
                    while let Some(Ok(frame)) = body.frame().await {
                        let Ok(data) = frame.into_data() else {
                            continue;
                        };
                        pending.push_str(&String::from_utf8_lossy(&data));
                        while let Some(end) = pending.find('\n') {
                            let line: String = pending.drain(..=end).collect();
                            let Some(json) = line.trim_end().strip_prefix("data: ") else {
                                continue;
                            };
                            if let Ok(event) = serde_json::from_str::<serde_json::Value>(json) {
                                counted.fetch_add(1, Ordering::Relaxed);
                                if let Some(n) = event["dropped"].as_u64() {
                                    lost.fetch_add(n, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                });
            })
            .context("cannot start the tail client's thread")?;
        Ok(Self { events, dropped })
    }

    /// Events read so far, and events the node dropped for this tail.
    pub(super) fn counts(&self) -> (u64, u64) {
        (
            self.events.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        )
    }
}
