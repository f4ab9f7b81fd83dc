//! Metering over real sockets (`GET /workers/NAME/usage` on the admin API): invocations and
//! cache hits counted exactly and apart, CPU time within 20 % of what the process spent,
//! GB-seconds bounded by the requests' wall time, buckets that survive a SIGTERM restart
//! (flushed at shutdown) and a SIGKILL after a flush interval, 400 naming a bad parameter,
//! 404 for unknown and deleted workers.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{ADMIN_TOKEN, Isola, get_host};
use crate::versions::{body, data_dir};

/// A worker that spins `?n=` iterations, and answers `/cached` cacheably.
const SPIN: &str = r#"export default { fetch(request) {
  const url = new URL(request.url);
  if (url.pathname === '/cached') {
    return new Response('cached', { headers: { 'cache-control': 'max-age=600' } });
  }
  const n = Number(url.searchParams.get('n') || 0);
  let x = 0;
  for (let i = 0; i < n; i++) { x = (x + i * 7) % 1000003; }
  return new Response(String(x));
} }"#;

fn node(dir: &Path) -> Isola {
    Isola::serve(&format!(
        r#"
[node]
data_dir = "{}"

[admin]
address = "127.0.0.1:0"

[[listeners]]
address = "127.0.0.1:0"
"#,
        dir.display()
    ))
}

async fn usage(isola: &Isola, name: &str, query: &str) -> (u16, serde_json::Value) {
    let reply = isola
        .admin(
            ADMIN_TOKEN,
            "GET",
            &format!("/workers/{name}/usage{query}"),
            "",
        )
        .await;
    (reply.status, body(&reply))
}

async fn total(isola: &Isola) -> serde_json::Value {
    let (status, answer) = usage(isola, "meter", "").await;
    assert_eq!(status, 200, "{answer}");
    answer["total"].clone()
}

/// The totals once their CPU time stands still for 300 ms (bounded).
async fn settled(isola: &Isola) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = total(isola).await;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = total(isola).await;
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

async fn spin(isola: &Isola, n: u64) -> Duration {
    let started = Instant::now();
    let reply = get_host(isola, "meter.localhost", &format!("/spin?n={n}")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    started.elapsed()
}

#[tokio::test]
async fn usage_counts_invocations_cache_hits_cpu_and_survives_restarts() {
    let dir = data_dir("usage");
    let mut isola = node(&dir);
    let upload = serde_json::json!({
        "code": SPIN,
        "cache": true,
        "limits": { "cpu_ms": 5000, "wall_ms": 30000 },
    });
    let reply = isola
        .admin(ADMIN_TOKEN, "PUT", "/workers/meter", &upload.to_string())
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let version = body(&reply)["version"]
        .as_str()
        .expect("version")
        .to_owned();

    // Warm (the first request may start an isolate), then measure.
    spin(&isola, 1).await;
    let before = settled(&isola).await;
    assert_eq!(before["invocations"], 1, "{before}");
    let cpu_before = crate::support::thread_cpu_seconds(isola.pid());
    let mut wall = Duration::ZERO;
    for _ in 0..5 {
        wall += spin(&isola, 30_000_000).await;
    }
    // A request's CPU is added as its isolate's turn ends, which a loaded machine may delay
    // (a long slice runs at nice 19): wait until the count stands still.
    let after = settled(&isola).await;
    let process_cpu = crate::support::thread_cpu_seconds(isola.pid()) - cpu_before;
    let metered_cpu =
        (after["cpu_ms"].as_f64().unwrap() - before["cpu_ms"].as_f64().unwrap()) / 1000.0;
    eprintln!("metered CPU {metered_cpu:.3} s, the process's {process_cpu:.3} s, wall {wall:?}");
    assert!(
        process_cpu > 0.2,
        "the spin must burn measurable CPU (process: {process_cpu:.3} s)"
    );
    assert!(
        (metered_cpu - process_cpu).abs() <= 0.2 * process_cpu,
        "metered CPU {metered_cpu:.3} s vs the process's {process_cpu:.3} s"
    );
    let gb_seconds = after["gb_seconds"].as_f64().unwrap() - before["gb_seconds"].as_f64().unwrap();
    // 128 MB (the default memory_mb) for at most the wall time the client saw, at least the CPU.
    let gb = 128.0 / 1024.0;
    assert!(
        gb_seconds <= gb * wall.as_secs_f64() * 1.01 && gb_seconds >= gb * metered_cpu * 0.99,
        "GB-seconds {gb_seconds} for {wall:?} of wall and {metered_cpu} s of CPU"
    );

    // One miss runs the worker, three hits do not.
    for _ in 0..4 {
        let reply = get_host(&isola, "meter.localhost", "/cached").await;
        assert_eq!(reply.text(), "cached");
    }
    let (status, answer) = usage(&isola, "meter", "").await;
    assert_eq!(status, 200);
    assert_eq!(answer["total"]["invocations"], 7, "{answer}");
    assert_eq!(answer["total"]["cache_hits"], 3, "{answer}");
    assert_eq!(answer["versions"][&version]["invocations"], 7, "{answer}");
    let minutes = answer["minutes"].as_array().expect("minutes");
    assert!(!minutes.is_empty() && minutes.iter().all(|m| m["version"] == version.as_str()));
    let now = answer["to"].as_u64().expect("to");
    let first = minutes[0]["start"].as_u64().expect("start");
    assert!(first % 60 == 0 && first + 600 > now, "{answer}");

    // A range after now holds nothing; a bad parameter is named; unknown workers are 404.
    let (status, later) = usage(
        &isola,
        "meter",
        &format!("?from={}&to={}", now + 120, now + 240),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(later["total"]["invocations"], 0, "{later}");
    assert_eq!(later["minutes"], serde_json::json!([]));
    let (status, bad) = usage(&isola, "meter", "?from=yesterday").await;
    assert_eq!(status, 400);
    assert!(bad["error"].as_str().unwrap().contains("`from`"), "{bad}");
    let (status, bad) = usage(&isola, "meter", &format!("?from={now}&to=1")).await;
    assert_eq!(status, 400);
    assert!(bad["error"].as_str().unwrap().contains("`from`"), "{bad}");
    assert_eq!(usage(&isola, "nobody", "").await.0, 404);

    // SIGTERM writes what is pending: a restart answers the same.
    let written = settled(&isola).await;
    assert!(isola.terminate().success());
    drop(isola);
    let isola = node(&dir);
    let (status, restarted) = usage(&isola, "meter", "").await;
    assert_eq!(status, 200);
    assert_eq!(restarted["total"], written, "{restarted}");

    // After a flush interval even a SIGKILL loses nothing.
    spin(&isola, 1).await;
    spin(&isola, 1).await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    drop(isola);
    let isola = node(&dir);
    let killed = total(&isola).await;
    assert_eq!(killed["invocations"], 9, "{killed}");
    assert_eq!(killed["cache_hits"], 3, "{killed}");

    // A deleted worker's usage goes with it.
    assert_eq!(
        isola
            .admin(ADMIN_TOKEN, "DELETE", "/workers/meter", "")
            .await
            .status,
        204
    );
    assert_eq!(usage(&isola, "meter", "").await.0, 404);
    drop(isola);
    let _ = std::fs::remove_dir_all(&dir);
}
