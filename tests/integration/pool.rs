//! The isolate pool over real sockets: tenants never share an isolate, warm isolates are
//! reused, a deployment runs up to `max_isolates` at once, bursts wait in a bounded queue
//! (then 503 + Retry-After), idle isolates are dropped (but `min_isolates` stay warm), and
//! the node's memory budget evicts the least recently used idle isolate of any deployment.

use std::time::{Duration, Instant};

use crate::support::{Isola, get_host};

/// A node with tenants `a` and `b` (both `pool.js`, routed by host), each with its limits.
fn node(node: &str, a_limits: &str, b_limits: &str) -> Isola {
    Isola::serve(&format!(
        r#"
[node]
metrics_address = "127.0.0.1:0"
{node}

[[listeners]]
address = "127.0.0.1:0"

[[routes]]
host = "a.test"
worker = "a"

[[routes]]
host = "b.test"
worker = "b"

[workers.a]
file = "{{fixtures}}/pool.js"
[workers.a.limits]
{a_limits}

[workers.b]
file = "{{fixtures}}/pool.js"
[workers.b.limits]
{b_limits}
"#
    ))
}

async fn text(isola: &Isola, host: &str, path: &str) -> (u16, String) {
    let reply = get_host(isola, host, path).await;
    (reply.status, reply.text())
}

#[tokio::test]
async fn globals_of_one_tenant_are_invisible_to_another() {
    let isola = node("", "max_isolates = 1", "max_isolates = 1");
    assert_eq!(
        text(&isola, "a.test", "/set?v=s3cret").await,
        (200, "set".into())
    );
    assert_eq!(text(&isola, "a.test", "/get").await, (200, "s3cret".into()));
    assert_eq!(text(&isola, "b.test", "/get").await, (200, "unset".into()));
}

#[tokio::test]
async fn warm_isolates_are_reused_idle_ones_dropped_and_min_isolates_kept() {
    let isola = node(
        "",
        "max_isolates = 1\nidle_timeout_ms = 300",
        "max_isolates = 1\nidle_timeout_ms = 300\nmin_isolates = 1",
    );
    for tenant in ["a.test", "b.test"] {
        assert_eq!(text(&isola, tenant, "/count").await, (200, "1".into()));
        assert_eq!(
            text(&isola, tenant, "/count").await,
            (200, "2".into()),
            "{tenant}: the warm isolate served again"
        );
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        text(&isola, "a.test", "/count").await,
        (200, "1".into()),
        "a's idle isolate was dropped; a fresh one counts from 1"
    );
    assert_eq!(
        text(&isola, "b.test", "/count").await,
        (200, "3".into()),
        "b keeps min_isolates = 1 warm"
    );
}

#[tokio::test]
async fn a_deployment_runs_up_to_max_isolates_at_once() {
    let isola = node("", "max_isolates = 2", "max_isolates = 1");
    let started = Instant::now();
    let (first, second) = tokio::join!(
        text(&isola, "a.test", "/slow?ms=1000"),
        text(&isola, "a.test", "/slow?ms=1000"),
    );
    assert_eq!(first.0, 200);
    assert_eq!(second.0, 200);
    assert!(
        started.elapsed() < Duration::from_millis(1950),
        "two isolates ran the requests side by side: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_burst_waits_in_the_bounded_queue_then_gets_503_with_retry_after() {
    let isola = node(
        "",
        "max_isolates = 1\nmax_queue = 1\nqueue_timeout_ms = 10000",
        "max_isolates = 1\nqueue_timeout_ms = 200",
    );
    let started = Instant::now();
    let busy = text(&isola, "a.test", "/slow?ms=1500");
    let queued = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let reply = text(&isola, "a.test", "/count").await;
        (reply, started.elapsed())
    };
    let refused = async {
        tokio::time::sleep(Duration::from_millis(600)).await;
        let sent = Instant::now();
        let reply = get_host(&isola, "a.test", "/count").await;
        (reply, sent.elapsed())
    };
    let (busy, (queued, queued_at), (refused, refused_after)) = tokio::join!(busy, queued, refused);
    assert_eq!(busy, (200, "slept 1500 ms".into()));
    assert_eq!(queued.0, 200, "the queued request was served: {queued:?}");
    assert!(
        queued_at >= Duration::from_millis(1400),
        "it waited for the busy isolate: {queued_at:?}"
    );
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(
        refused.headers.get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    assert!(refused.text().contains("at capacity"), "{}", refused.text());
    assert!(
        refused_after < Duration::from_millis(500),
        "a full queue refuses at once: {refused_after:?}"
    );

    // b: the queue has room but the wait is capped by queue_timeout_ms.
    let busy = text(&isola, "b.test", "/slow?ms=1500");
    let timed_out = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let sent = Instant::now();
        let reply = get_host(&isola, "b.test", "/count").await;
        (reply, sent.elapsed())
    };
    let (busy, (timed_out, waited)) = tokio::join!(busy, timed_out);
    assert_eq!(busy.0, 200);
    assert_eq!(timed_out.status, 503, "{}", timed_out.text());
    assert!(timed_out.headers.contains_key("retry-after"));
    assert!(
        waited >= Duration::from_millis(190) && waited < Duration::from_millis(1400),
        "gave up after queue_timeout_ms: {waited:?}"
    );
    let logs = isola.wait_for_log("queue_timeout_ms (200 ms)");
    assert!(logs.contains("queue_timeout_ms (200 ms)"), "{logs}");
    let metrics = isola.metrics().await;
    for counted in [
        "isola_requests_refused_total{reason=\"queue_full\"} 1",
        "isola_requests_refused_total{reason=\"queue_timeout\"} 1",
    ] {
        assert!(metrics.contains(counted), "{counted}: {metrics}");
    }
}

#[tokio::test]
async fn the_memory_budget_evicts_the_least_recently_used_idle_isolate() {
    let isola = node(
        "isolate_memory_budget_mb = 40",
        "max_isolates = 2\ncpu_ms = 5000",
        "max_isolates = 2\ncpu_ms = 5000",
    );
    assert_eq!(text(&isola, "a.test", "/count").await, (200, "1".into()));
    assert_eq!(
        text(&isola, "a.test", "/retain?mb=24").await,
        (200, "retained 24 MiB".into())
    );
    assert_eq!(
        text(&isola, "b.test", "/retain?mb=24").await,
        (200, "retained 24 MiB".into())
    );
    // b is busy in its only isolate: a second request needs a new isolate, and the budget
    // (a ~25 MiB + b ~25 MiB > 40 MiB) is made by evicting a's idle isolate, used longest ago.
    let (slow, other) = tokio::join!(text(&isola, "b.test", "/slow?ms=2000"), async {
        tokio::time::sleep(Duration::from_millis(600)).await;
        text(&isola, "b.test", "/count").await
    });
    assert_eq!(slow.0, 200);
    assert_eq!(other.0, 200, "b got a second isolate: {other:?}");
    let logs = isola.wait_for_log("evicted the least recently used idle isolate");
    let metrics = isola.metrics().await;
    assert!(
        logs.contains("evicted the least recently used idle isolate"),
        "{logs}\n{metrics}\n{slow:?} {other:?}"
    );
    assert!(
        metrics.contains("isola_isolates_evicted_total{reason=\"memory_budget\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("isola_cold_starts_total{worker=\"b\"} 1"),
        "b's second isolate was a cold start: {metrics}"
    );
    assert_eq!(
        text(&isola, "a.test", "/count").await,
        (200, "1".into()),
        "a's isolate was evicted; a fresh one serves it"
    );
}

#[tokio::test]
async fn a_noisy_neighbour_spinning_at_its_cpu_limit_does_not_fail_a_quiet_tenant() {
    let isola = Isola::serve(
        r#"
[[listeners]]
address = "127.0.0.1:0"

[[routes]]
host = "noisy.test"
worker = "noisy"

[[routes]]
host = "quiet.test"
worker = "quiet"

[workers.noisy]
file = "{fixtures}/cpu.js"
[workers.noisy.limits]
max_isolates = 2

[workers.quiet]
file = "{fixtures}/pool.js"
"#,
    );
    // Bounded in count and time: a noisy loop stops after 5 kills, 200 requests or 15 s; the
    // quiet loops run until the noisy ones are done (at most 2000 requests or 15 s).
    let deadline = Instant::now() + Duration::from_secs(15);
    let noisy_done = std::sync::atomic::AtomicUsize::new(0);
    let noisy = |_: usize| async {
        let mut killed = 0;
        for _ in 0..200 {
            if Instant::now() > deadline || killed >= 5 {
                break;
            }
            let reply = get_host(&isola, "noisy.test", "/spin").await;
            killed += usize::from(reply.status == 503);
        }
        noisy_done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        killed
    };
    let quiet = |_: usize| async {
        let (mut ok, mut failed) = (0, Vec::new());
        for _ in 0..2000 {
            if Instant::now() > deadline
                || noisy_done.load(std::sync::atomic::Ordering::SeqCst) == 3
            {
                break;
            }
            let reply = get_host(&isola, "quiet.test", "/").await;
            if reply.status == 200 {
                ok += 1;
            } else {
                failed.push((reply.status, reply.text()));
            }
        }
        (ok, failed)
    };
    let (n1, n2, n3, (ok1, failed1), (ok2, failed2)) =
        tokio::join!(noisy(1), noisy(2), noisy(3), quiet(1), quiet(2));
    assert!(
        n1 + n2 + n3 > 10,
        "the noisy tenant kept hitting its CPU limit"
    );
    assert!(
        failed1.is_empty() && failed2.is_empty(),
        "the quiet tenant had failures: {failed1:?} {failed2:?}"
    );
    assert!(
        ok1 + ok2 > 50,
        "the quiet tenant kept being served: {}",
        ok1 + ok2
    );
}

#[tokio::test]
async fn a_kill_fails_every_request_in_flight_in_the_isolate_naming_the_limit() {
    let isola = node(
        "",
        "max_isolates = 1\nmax_requests_per_isolate = 4",
        "max_isolates = 1",
    );
    let slow = || async {
        let reply = get_host(&isola, "a.test", "/slow?ms=3000").await;
        (reply.status, reply.text())
    };
    let spin = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let reply = get_host(&isola, "a.test", "/spin").await;
        (reply.status, reply.text())
    };
    let started = Instant::now();
    let (first, second, spun) = tokio::join!(slow(), slow(), spin);
    for (status, text) in [first, second, spun] {
        assert_eq!(status, 503, "{text}");
        assert!(text.contains("cpu_ms"), "{text}");
    }
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "the waiting requests were failed at the kill, not after their timers"
    );
    assert_eq!(
        text(&isola, "a.test", "/count").await,
        (200, "1".into()),
        "a fresh isolate serves next"
    );
}

/// A node serving `slow-start.js` (3 s top level) or another start fixture.
fn slow_node(file: &str, limits: &str) -> Isola {
    Isola::serve(&format!(
        r#"
[node]
metrics_address = "127.0.0.1:0"
[[listeners]]
address = "127.0.0.1:0"
[[routes]]
worker = "slow"
[workers.slow]
file = "{{fixtures}}/{file}"
[workers.slow.limits]
{limits}
"#
    ))
}

/// GET / giving up after `patience`; `None` when it gave up.
async fn get_within(isola: &Isola, patience: Duration) -> Option<(u16, String)> {
    tokio::time::timeout(patience, text(isola, "slow.test", "/"))
        .await
        .ok()
}

#[tokio::test]
async fn clients_that_give_up_on_a_cold_start_leak_no_capacity() {
    let isola = slow_node(
        "slow-start.js",
        "max_isolates = 2\nidle_timeout_ms = 100\nmax_queue = 4\nqueue_timeout_ms = 5000",
    );
    // The isolate made at start-up goes idle and is dropped.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (first, second) = tokio::join!(
        get_within(&isola, Duration::from_secs(1)),
        get_within(&isola, Duration::from_secs(1)),
    );
    assert!(
        first.is_none() && second.is_none(),
        "both gave up during the cold starts"
    );
    // Both isolates are still starting: the next request waits for one of them (it would
    // wait in vain, then get 503, if the abandoned starts kept their reservations).
    let started = Instant::now();
    let later = get_within(&isola, Duration::from_secs(10)).await;
    assert_eq!(later, Some((200, "started slowly".into())));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "served by an isolate an abandoned start made: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn wall_ms_includes_waiting_for_a_cold_start() {
    let isola = slow_node("slow-start.js", "idle_timeout_ms = 100\nwall_ms = 1000");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let started = Instant::now();
    let (status, _) = get_within(&isola, Duration::from_secs(10)).await.unwrap();
    assert_eq!(status, 504, "the cold start counts against wall_ms");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_start_that_never_finishes_fails_at_startup_wall_ms() {
    let (status, stderr) = crate::support::run_to_exit(&[
        "dev",
        &crate::support::fixture("hanging-start.js")
            .display()
            .to_string(),
        "--port",
        "0",
        "--startup-wall-ms",
        "1000",
    ]);
    assert!(!status.success());
    assert!(stderr.contains("startup_wall_ms (1000 ms)"), "{stderr}");
}
