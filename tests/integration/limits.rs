//! HTTP limits (URL, headers, body, wall clock) and malformed HTTP: clear refusals, and the
//! server keeps serving.

use std::io::{Read, Write};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::support::{Isola, Proto, fixture, get, rss_mib, send};

fn raw_exchange(authority: &str, request: &[u8]) -> String {
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

#[tokio::test]
async fn oversize_url_headers_and_declared_body_are_refused() {
    let isola = Isola::dev(&fixture("echo.js"), &[]);
    let long_path = format!("/{}", "a".repeat(17 * 1024));
    let reply = get(Proto::H1, &isola, &long_path).await;
    assert_eq!(reply.status, 414);

    let mut request =
        Request::get(format!("http://{}/", isola.authority())).header("host", isola.authority());
    for i in 0..20 {
        request = request.header(format!("x-big-{i}"), "v".repeat(7 * 1024));
    }
    let reply = send(
        Proto::H1,
        &isola.authority(),
        request.body(Full::new(Bytes::new())).unwrap(),
    )
    .await;
    assert_eq!(reply.status, 431);

    let raw = raw_exchange(
        &isola.authority(),
        b"POST /count HTTP/1.1\r\nhost: x\r\ncontent-length: 104857601\r\nconnection: close\r\n\r\n",
    );
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");

    let reply = get(Proto::H1, &isola, "/").await;
    assert_eq!(reply.status, 200, "still serving");
}

#[tokio::test]
async fn malformed_http_gets_400_and_the_server_keeps_serving() {
    let isola = Isola::dev(&fixture("echo.js"), &[]);
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nbad header line\r\n\r\n",
        b"\x00\x01\x02\r\n\r\n",
    ] {
        let raw = raw_exchange(&isola.authority(), garbage);
        assert!(raw.is_empty() || raw.starts_with("HTTP/1.1 400"), "{raw}");
    }
    let reply = get(Proto::H1, &isola, "/").await;
    assert_eq!(reply.status, 200);
}

fn write_config(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("edge.toml");
    std::fs::write(&path, body).unwrap();
    path
}

#[tokio::test]
async fn chunked_body_crossing_the_limit_mid_stream_is_refused() {
    let dir = std::env::temp_dir().join(format!("isola-limits-{}", std::process::id()));
    let config = write_config(
        &dir,
        &format!(
            "[[listeners]]\naddress = \"127.0.0.1:0\"\n\n[[routes]]\nworker = \"echo\"\n\n[workers.echo]\nfile = \"{}\"\n\n[workers.echo.limits]\nmax_body_bytes = 1024\nwall_ms = 500\n",
            fixture("echo.js").display()
        ),
    );
    let isola = Isola::start(&[
        "serve".to_owned(),
        "--config".to_owned(),
        config.display().to_string(),
    ]);
    let chunk = "x".repeat(600);
    let request = format!(
        "POST /count HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let raw = raw_exchange(&isola.authority(), request.as_bytes());
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");

    let small = format!(
        "POST /count HTTP/1.1\r\nhost: x\r\ncontent-length: 600\r\nconnection: close\r\n\r\n{chunk}"
    );
    let raw = raw_exchange(&isola.authority(), small.as_bytes());
    assert!(raw.contains("{\"bytes\":600}"), "{raw}");

    let reply = get(Proto::H1, &isola, "/never").await;
    assert_eq!(
        reply.status, 504,
        "wall_ms = 500 applies to a promise that never settles"
    );
    let reply = get(Proto::H1, &isola, "/").await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn infinite_loop_is_killed_at_its_cpu_limit_and_the_isolate_replaced() {
    let isola = Isola::dev(
        &fixture("cpu.js"),
        &["--cpu-ms", "50", "--metrics-port", "0"],
    );
    for round in 0..3 {
        let reply = get(Proto::H1, &isola, "/spin").await;
        assert_eq!(reply.status, 503, "round {round}: {}", reply.text());
        assert!(reply.text().contains("cpu_ms"), "{}", reply.text());
        let reply = get(Proto::H2c, &isola, "/").await;
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (200, "alive"),
            "a fresh isolate serves after the kill"
        );
    }
    // The log lines may trail the responses a little: wait (bounded) for all three.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (logs, measured) = loop {
        let logs = isola.logs();
        let measured: Vec<f64> = logs
            .lines()
            .filter_map(|l| {
                l.split("isolate killed: it exceeded its cpu_ms limit (")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .collect();
        if measured.len() >= 3 || std::time::Instant::now() > deadline {
            break (logs, measured);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(measured.len(), 3, "{logs}");
    assert!(
        logs.contains("JavaScript stack at the kill:") && logs.contains("cpu.js:"),
        "the kill log shows where the worker was: {logs}"
    );
    assert!(logs.contains("request_ids=\""), "and which request: {logs}");
    let metrics = isola.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("isola_isolate_kills_total{")
                && line.contains("limit=\"cpu_ms\"")
                && line.contains("worker=\"")
                && line.ends_with("} 3")),
        "kills are counted by worker and limit: {metrics}"
    );
    for cpu in measured {
        assert!(
            (50.0..=65.0).contains(&cpu),
            "killed at {cpu} ms of CPU; the limit is 50 ms (+20% + 5 ms): {logs}"
        );
    }
    let reply = get(Proto::H1, &isola, "/atomics-wait").await;
    assert_eq!(
        reply.status,
        403,
        "Atomics.wait is refused: {}",
        reply.text()
    );
}

#[test]
fn top_level_infinite_loop_is_stopped_by_startup_cpu_ms() {
    let file = fixture("startup-spin.js");
    let started = std::time::Instant::now();
    let (status, stderr) =
        crate::support::run_to_exit(&["dev", &file.display().to_string(), "--port", "0"]);
    assert!(!status.success());
    assert!(stderr.contains("startup_cpu_ms"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn dev_wall_ms_flag_applies() {
    let isola = Isola::dev(&fixture("echo.js"), &["--wall-ms", "300"]);
    let started = std::time::Instant::now();
    let reply = get(Proto::H1, &isola, "/never").await;
    assert_eq!(reply.status, 504);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn memory_bombs_are_stopped_near_memory_mb_and_the_process_survives() {
    let isola = Isola::dev(
        &fixture("memory.js"),
        &["--memory-mb", "64", "--cpu-ms", "10000"],
    );
    for bomb in ["/heap-bomb", "/buffer-bomb", "/array-bomb"] {
        let reply = get(Proto::H1, &isola, bomb).await;
        assert_eq!(reply.status, 503, "{bomb}: {}", reply.text());
        assert!(
            reply.text().contains("memory_mb"),
            "{bomb}: the response names the limit: {}",
            reply.text()
        );
        let reply = get(Proto::H1, &isola, "/").await;
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (200, "alive"),
            "after {bomb}"
        );
    }
    // One 4 GiB buffer: refused (RangeError) or the isolate is killed; never the process.
    let reply = get(Proto::H1, &isola, "/huge-buffer").await;
    assert!(
        (reply.status == 507 && reply.text().starts_with("RangeError"))
            || (reply.status == 503 && reply.text().contains("memory_mb")),
        "{}: {}",
        reply.status,
        reply.text()
    );
    let reply = get(Proto::H1, &isola, "/").await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "alive"));
    let logs = isola.wait_for_log("exceeded its memory_mb limit");
    assert!(logs.contains("exceeded its memory_mb limit"), "{logs}");
}

#[tokio::test]
async fn a_hundred_heap_bombs_leave_the_process_serving_and_its_memory_flat() {
    let isola = Isola::dev(
        &fixture("memory.js"),
        &["--memory-mb", "32", "--cpu-ms", "10000"],
    );
    // Warm up allocator arenas and code caches before taking the baseline.
    for _ in 0..5 {
        assert_eq!(get(Proto::H1, &isola, "/heap-bomb").await.status, 503);
    }
    let before = rss_mib(isola.pid());
    for round in 0..100 {
        let reply = get(Proto::H1, &isola, "/heap-bomb").await;
        assert_eq!(reply.status, 503, "bomb {round}: {}", reply.text());
    }
    let reply = get(Proto::H1, &isola, "/").await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "alive"));
    let after = rss_mib(isola.pid());
    assert!(
        after - before < 50.0,
        "RSS grew from {before:.1} MiB to {after:.1} MiB over 100 heap bombs"
    );
}

#[tokio::test]
async fn cpu_ms_counts_the_request_across_its_turns() {
    let isola = crate::support::Isola::dev(
        &crate::support::fixture("hardening.js"),
        &["--cpu-ms", "100"],
    );
    let reply = crate::support::get(crate::support::Proto::H1, &isola, "/spin-yield").await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(reply.text().contains("cpu_ms"), "{}", reply.text());
    let next = crate::support::get(crate::support::Proto::H1, &isola, "/").await;
    assert_eq!(next.status, 200, "a fresh isolate serves the next request");
}
