//! Observability over real sockets: the request id and W3C trace context round trip (bad
//! values replaced, never echoed), per-worker metrics move by exactly the traffic sent (status
//! class and outcome, duration, subrequests, CPU against the process's own CPU clock,
//! GB-seconds, a canceled request), and a request's console output is capped.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;

use crate::support::{Isola, Proto, get, send};

fn serve(upstream: SocketAddr) -> Isola {
    serve_with(upstream, "cpu_ms = 2000\nmemory_mb = 128")
}

/// A node serving `observe.js` with metrics, reaching `upstream`, under `limits`.
fn serve_with(upstream: SocketAddr, limits: &str) -> Isola {
    Isola::serve(&format!(
        r#"
[[listeners]]
address = "127.0.0.1:0"

[node]
metrics_address = "127.0.0.1:0"

[[routes]]
worker = "observed"

[workers.observed]
file = "{{fixtures}}/observe.js"
[workers.observed.outbound]
allow = ["{ip}"]
[workers.observed.limits]
{limits}
"#,
        ip = upstream.ip()
    ))
}

/// A loopback upstream recording the `traceparent` of each request.
async fn tracing_upstream() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let kept = seen.clone();
    tokio::spawn(async move {
        for _ in 0..32 {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let kept = kept.clone();
            let service = hyper::service::service_fn(move |request: Request<_>| {
                let trace = request
                    .headers()
                    .get("traceparent")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("none")
                    .to_owned();
                kept.lock().unwrap().push(trace);
                async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("ok")))) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    (address, seen)
}

fn request(isola: &Isola, path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut builder = Request::get(format!("http://{}{path}", isola.authority()))
        .header("host", isola.authority());
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(Bytes::new())).unwrap()
}

fn json(reply: &crate::support::Reply) -> serde_json::Value {
    serde_json::from_slice(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", reply.text()))
}

#[tokio::test]
async fn request_id_and_trace_context_round_trip() {
    let (upstream, traces) = tracing_upstream().await;
    let isola = serve(upstream);
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    let reply = send(
        Proto::H1,
        &isola.authority(),
        request(
            &isola,
            "/seen",
            &[("x-request-id", "client-42.a_b"), ("traceparent", parent)],
        ),
    )
    .await;
    assert_eq!(reply.headers["x-request-id"], "client-42.a_b");
    let seen = json(&reply);
    assert_eq!(
        seen["id"], "client-42.a_b",
        "the worker sees the client's id"
    );
    assert_eq!(seen["trace"], parent, "and its trace");
    let logs = isola.wait_for_log("seen by the worker");
    assert!(
        logs.lines()
            .any(|l| l.contains("seen by the worker") && l.contains("client-42.a_b")),
        "console lines carry the client's id: {logs}"
    );

    let bad_id = "bad id <script>";
    let bad_trace = "00-zzzz-00f067aa0ba902b7-01";
    let reply = send(
        Proto::H2c,
        &isola.authority(),
        request(
            &isola,
            "/seen",
            &[("x-request-id", bad_id), ("traceparent", bad_trace)],
        ),
    )
    .await;
    let id = reply.headers["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 16, "a bad id is replaced: {id}");
    assert!(
        !reply.text().contains("script") && !reply.text().contains("zzzz"),
        "{}",
        reply.text()
    );
    let seen = json(&reply);
    assert_eq!(seen["id"], id.as_str());
    let trace = seen["trace"].as_str().unwrap().to_owned();
    assert!(
        trace.starts_with("00-") && trace.len() == 55,
        "a new trace: {trace}"
    );

    let reply = get(Proto::H1, &isola, "/missing-route-is-still-tagged").await;
    assert_eq!(reply.headers["x-request-id"].len(), 16);

    let reply = send(
        Proto::H1,
        &isola.authority(),
        request(
            &isola,
            &format!("/fetch?up=http://{upstream}"),
            &[("traceparent", parent)],
        ),
    )
    .await;
    assert_eq!(reply.text(), "fetched");
    let traces = traces.lock().unwrap().clone();
    assert_eq!(traces.len(), 2, "{traces:?}");
    for trace in &traces {
        assert!(
            trace.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && trace.ends_with("-01"),
            "subrequests continue the trace: {trace}"
        );
        assert!(
            !trace.contains("00f067aa0ba902b7"),
            "in spans of their own: {trace}"
        );
    }
    assert_ne!(traces[0], traces[1], "one span per subrequest");
}

/// The value of the series `name{labels…}` whose labels include every one of `labels`.
fn value(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|line| {
            line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
        })
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

fn process_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[tokio::test]
async fn worker_metrics_move_by_the_traffic_sent() {
    let (upstream, _traces) = tracing_upstream().await;
    let isola = serve(upstream);
    assert_eq!(get(Proto::H1, &isola, "/").await.status, 200, "warm");
    let before = isola.metrics().await;
    let worker = "worker=\"observed\"";

    for _ in 0..5 {
        assert_eq!(get(Proto::H1, &isola, "/").await.status, 200);
    }
    assert_eq!(get(Proto::H2c, &isola, "/throw").await.status, 500);
    let reply = get(Proto::H1, &isola, &format!("/fetch?up=http://{upstream}")).await;
    assert_eq!(reply.text(), "fetched");
    // A client that gives up on a slow answer.
    let authority = isola.authority();
    let slow = request(&isola, "/slow", &[]);
    let gave_up = tokio::time::timeout(Duration::from_millis(300), async move {
        send(Proto::H1, &authority, slow).await
    })
    .await;
    assert!(gave_up.is_err());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = isola.metrics().await;

    let delta =
        |name: &str, labels: &[&str]| value(&after, name, labels) - value(&before, name, labels);
    assert_eq!(
        delta(
            "isola_requests_total",
            &[worker, "status_class=\"2xx\"", "outcome=\"ok\""]
        ),
        6.0,
        "{after}"
    );
    assert_eq!(
        delta(
            "isola_requests_total",
            &[worker, "status_class=\"5xx\"", "outcome=\"exception\""]
        ),
        1.0,
        "{after}"
    );
    assert_eq!(
        delta(
            "isola_requests_total",
            &[worker, "status_class=\"none\"", "outcome=\"canceled\""]
        ),
        1.0,
        "{after}"
    );
    assert_eq!(
        delta("isola_request_duration_seconds_count", &[worker]),
        8.0,
        "{after}"
    );
    assert_eq!(delta("isola_subrequests_total", &[worker]), 2.0, "{after}");
    let gb_seconds = delta("isola_usage_gb_seconds_total", &[worker]);
    assert!(
        gb_seconds > 0.0 && gb_seconds < 8.0 * 0.125 * 1.0,
        "{gb_seconds}"
    );
    assert!(
        value(&after, "process_resident_memory_bytes", &[]) > 0.0,
        "{after}"
    );
    assert!(after.contains("process_cpu_seconds_total"), "{after}");
}

#[tokio::test]
async fn cpu_seconds_match_the_cpu_the_process_spent() {
    let (upstream, _traces) = tracing_upstream().await;
    let isola = serve(upstream);
    assert_eq!(
        get(Proto::H1, &isola, "/spin?work=1000").await.status,
        200,
        "warm"
    );
    let worker = "worker=\"observed\"";
    let before = isola.metrics().await;
    let process_before = process_cpu_seconds(isola.pid());
    for _ in 0..8 {
        let reply = get(Proto::H1, &isola, "/spin?work=60000000").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let process_spent = process_cpu_seconds(isola.pid()) - process_before;
    let after = isola.metrics().await;
    let metered = value(&after, "isola_cpu_seconds_total", &[worker])
        - value(&before, "isola_cpu_seconds_total", &[worker]);
    assert!(
        process_spent > 0.2,
        "the requests burnt CPU: {process_spent}"
    );
    assert!(
        metered > process_spent * 0.8 && metered < process_spent * 1.2,
        "metered {metered} s against the process's {process_spent} s"
    );
}

#[tokio::test]
async fn console_output_is_capped_per_request() {
    let (upstream, _traces) = tracing_upstream().await;
    let isola = serve(upstream);
    let reply = get(Proto::H1, &isola, "/loud").await;
    assert_eq!(reply.text(), "loud");
    let logs = isola.wait_for_log("console output truncated");
    assert_eq!(
        logs.matches("console output truncated").count(),
        1,
        "said once"
    );
    let lines = logs.lines().filter(|l| l.contains(" xxxxxxxx")).count();
    assert!(
        (250..=256).contains(&lines),
        "about 256 KiB kept: {lines} lines"
    );
}

#[tokio::test]
async fn isolate_gauges_follow_a_deployment_and_its_series_go_with_it() {
    let isola = Isola::serve(
        r#"
[admin]
address = "127.0.0.1:0"

[node]
metrics_address = "127.0.0.1:0"

[[listeners]]
address = "127.0.0.1:0"
"#,
    );
    let body = serde_json::json!({
        "code": "export default { fetch() { return new Response('hi'); } }",
        "routes": [{ "host": "gauged.test" }],
    })
    .to_string();
    let deployed = isola
        .admin(crate::support::ADMIN_TOKEN, "PUT", "/workers/gauged", &body)
        .await;
    assert!(deployed.status < 300, "{}", deployed.text());
    let reply = crate::support::get_host(&isola, "gauged.test", "/").await;
    assert_eq!(reply.text(), "hi");
    // The sweeper publishes the gauges every 100 ms.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = isola.metrics().await;
    let worker = "worker=\"gauged\"";
    assert_eq!(
        value(&metrics, "isola_isolates", &[worker, "state=\"idle\""]),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        value(&metrics, "isola_queue_depth", &[worker]),
        0.0,
        "{metrics}"
    );
    assert!(
        value(&metrics, "isola_isolate_memory_bytes", &[]) > 0.0,
        "{metrics}"
    );
    assert_eq!(
        value(
            &metrics,
            "isola_requests_total",
            &[worker, "outcome=\"ok\""]
        ),
        1.0
    );

    let deleted = isola
        .admin(crate::support::ADMIN_TOKEN, "DELETE", "/workers/gauged", "")
        .await;
    assert!(deleted.status < 300, "{}", deleted.text());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = isola.metrics().await;
    assert!(
        !metrics.contains(worker),
        "a deleted worker's series go: {metrics}"
    );
}

#[tokio::test]
async fn every_metric_the_grafana_dashboard_queries_exists() {
    let (upstream, _traces) = tracing_upstream().await;
    let isola = serve_with(upstream, "cpu_ms = 100");
    // Traffic that touches every series: answers, a throw, subrequests, a CPU kill.
    assert_eq!(get(Proto::H1, &isola, "/").await.status, 200);
    assert_eq!(get(Proto::H1, &isola, "/throw").await.status, 500);
    let reply = get(Proto::H1, &isola, &format!("/fetch?up=http://{upstream}")).await;
    assert_eq!(reply.text(), "fetched");
    assert_eq!(
        get(Proto::H1, &isola, "/spin?work=4000000000").await.status,
        503
    );
    // While one isolate is busy, the next request waits for a new one: a cold start.
    let authority = isola.authority();
    let slow = request(&isola, "/slow", &[]);
    let busy = tokio::spawn(async move { send(Proto::H1, &authority, slow).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(get(Proto::H1, &isola, "/").await.status, 200);
    busy.abort();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = isola.metrics().await;

    let dashboard =
        std::fs::read_to_string(crate::support::repo().join("examples/grafana-dashboard.json"))
            .unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let mut queried = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_lowercase() || c == '_')) {
                if word.starts_with("isola_") || word.starts_with("process_") {
                    queried.push(word.to_owned());
                }
            }
        }
    }
    assert!(queried.len() >= 10, "{queried:?}");
    for name in queried {
        let series = name
            .strip_suffix("_bucket")
            .map(|base| format!("{base}_bucket{{"))
            .unwrap_or_else(|| name.clone());
        assert!(
            metrics
                .lines()
                .any(|line| !line.starts_with('#') && line.starts_with(&series)),
            "the dashboard queries {name}, which the node does not export:\n{metrics}"
        );
    }
}
