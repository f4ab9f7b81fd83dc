//! `--scenario websocket-echo`: messages per second through an Isola echo worker
//! (`examples/websocket-echo.js`) against a raw tokio-tungstenite echo server in the same
//! process, measured in the same run, one after the other, with the same clients: each of
//! `--connections` sockets sends a 64-byte text message and waits for its echo, for
//! `--duration` (after `--warmup`). The ratio is Isola's rate over the raw server's.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use super::BenchEnv;
use super::args::RunArgs;
use super::node::{self, NodeWorker};

/// The message each client sends and expects back.
const MESSAGE: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Runs the scenario and prints (and with `--json` writes) both rates and their ratio.
pub(super) fn run(args: &RunArgs, env: &BenchEnv) -> anyhow::Result<()> {
    let isola = node::isola_binary(env)?;
    let examples = std::fs::canonicalize(&args.examples_dir)
        .with_context(|| format!("{} (set --examples-dir)", args.examples_dir.display()))?;
    let worker = NodeWorker::new("ws", &examples.join("websocket-echo.js"), "");
    let node = node::start_node(&isola, &[worker])?;
    let duration = args.duration.unwrap_or(Duration::from_secs(5));
    let connections = args.connections.max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    let (isola_rate, raw_rate) = runtime.block_on(async {
        let raw = TcpListener::bind("127.0.0.1:0").await?;
        let raw_url = format!("ws://{}/", raw.local_addr()?);
        tokio::spawn(serve_raw(raw));
        let isola_url = format!("ws://{}/ws", node.authority());
        let isola_rate = measure(&isola_url, connections, args.warmup, duration).await?;
        let raw_rate = measure(&raw_url, connections, args.warmup, duration).await?;
        anyhow::Ok((isola_rate, raw_rate))
    })?;
    let ratio = isola_rate / raw_rate.max(f64::MIN_POSITIVE);
    println!("websocket-echo: {connections} connections, {duration:?}, 64-byte text messages");
    println!("| target | messages/s |");
    println!("|---|---|");
    println!("| raw tokio-tungstenite echo | {raw_rate:.0} |");
    println!("| isola (examples/websocket-echo.js) | {isola_rate:.0} |");
    println!("ratio isola / raw: {ratio:.3}");
    if let Some(path) = &args.json {
        let report = serde_json::json!({
            "scenario": "websocket-echo",
            "connections": connections,
            "duration_ms": u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            "isola_messages_per_second": isola_rate,
            "raw_messages_per_second": raw_rate,
            "ratio": ratio,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The raw baseline: every connection's messages echoed by tokio-tungstenite, nothing else.
async fn serve_raw(listener: TcpListener) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            while let Some(Ok(message)) = socket.next().await {
                if message.is_text() || message.is_binary() {
                    if socket.send(message).await.is_err() {
                        return;
                    }
                } else if message.is_close() {
                    return;
                }
            }
        });
    }
}

/// Echoed messages per second over `connections` sockets to `url`, after `warmup`.
async fn measure(
    url: &str,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<f64> {
    let start = Instant::now() + warmup;
    let end = start + duration;
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        let url = url.to_owned();
        clients.push(tokio::spawn(async move { client(&url, start, end).await }));
    }
    let mut echoed = 0u64;
    for client in clients {
        echoed += client.await??;
    }
    Ok(echoed as f64 / duration.as_secs_f64())
}

/// One socket's echoes between `start` and `end`.
async fn client(url: &str, start: Instant, end: Instant) -> anyhow::Result<u64> {
    let authority = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap_or_default();
    let stream = TcpStream::connect(authority).await?;
    stream.set_nodelay(true)?;
    let (mut socket, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .with_context(|| format!("WebSocket handshake with {url}"))?;
    let mut echoed = 0;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        socket.send(Message::text(MESSAGE)).await?;
        match socket.next().await {
            Some(Ok(message)) if message.is_text() => {}
            other => anyhow::bail!("{url} answered {other:?} instead of the echo"),
        }
        if now >= start {
            echoed += 1;
        }
    }
    let _ = socket.close(None).await;
    Ok(echoed)
}
