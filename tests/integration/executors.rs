//! Executor threads (`[node] executor_threads`): many isolates per thread, the connections
//! served on the same threads, and a version with long turns moved to threads of its own.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::support::{Isola, Proto, get_host, send};

/// The names of the process's threads.
fn thread_names(pid: u32) -> Vec<String> {
    let mut names = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let comm = task.unwrap().path().join("comm");
        if let Ok(name) = std::fs::read_to_string(comm) {
            names.push(name.trim().to_owned());
        }
    }
    names
}

fn count(names: &[String], prefix: &str) -> usize {
    names.iter().filter(|n| n.starts_with(prefix)).count()
}

/// A node with `workers` copies of the pool fixture (`w0.test` … by host), a CPU spinner
/// (`spin.test`), two executor threads and its metrics on a port of their own.
fn node(workers: usize) -> Isola {
    let mut toml = String::from(
        "[node]\nexecutor_threads = 2\nspare_isolates = 2\nmetrics_address = \"127.0.0.1:0\"\n\
         [[listeners]]\naddress = \"127.0.0.1:0\"\n",
    );
    for i in 0..workers {
        let _ = write!(
            toml,
            "[[routes]]\nhost = \"w{i}.test\"\nworker = \"w{i}\"\n[workers.w{i}]\nfile = \"{{fixtures}}/pool.js\"\n"
        );
    }
    toml.push_str("[[routes]]\nhost = \"spin.test\"\nworker = \"spin\"\n[workers.spin]\nfile = \"{fixtures}/cpu.js\"\n");
    Isola::serve(&toml)
}

/// A node with two executor threads and the pool fixture as worker `name` (host `NAME.test`)
/// of at most one isolate, with `limits` (TOML lines) added to its limits.
fn one_isolate_node(name: &str, limits: &str) -> Isola {
    Isola::serve(&format!(
        "[node]\nexecutor_threads = 2\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\
         [[routes]]\nhost = \"{name}.test\"\nworker = \"{name}\"\n\
         [workers.{name}]\nfile = \"{{fixtures}}/pool.js\"\n\
         [workers.{name}.limits]\nmax_isolates = 1\n{limits}"
    ))
}

#[tokio::test]
async fn isolates_of_many_workers_share_the_executor_threads() {
    let isola = node(12);
    for i in 0..12 {
        let reply = get_host(&isola, &format!("w{i}.test"), "/count").await;
        assert_eq!(reply.status, 200, "w{i}: {}", reply.text());
    }
    let names = thread_names(isola.pid());
    assert_eq!(count(&names, "executor-"), 2, "{names:?}");
    // With a thread per isolate there would be 13 or more `isolate-*` threads (and spares).
    assert_eq!(
        count(&names, "isolate-"),
        1,
        "only the CPU watchdog: {names:?}"
    );
    // Each worker kept its own isolate (its own state) although they share two threads.
    for i in 0..12 {
        let reply = get_host(&isola, &format!("w{i}.test"), "/count").await;
        assert_eq!(reply.text(), "2", "w{i} was served by its warm isolate");
    }
}

#[tokio::test]
async fn a_version_whose_turn_runs_long_gets_threads_of_its_own_and_others_keep_being_served() {
    let isola = node(1);
    assert_eq!(get_host(&isola, "w0.test", "/count").await.status, 200);
    // The spinner is killed at cpu_ms; its turn ran long, so its next isolate is not hosted on
    // an executor, where it would hold up the other tenants on that thread.
    let reply = get_host(&isola, "spin.test", "/spin").await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    isola.wait_for_log("new isolates of this version get threads of their own");
    let reply = get_host(&isola, "spin.test", "/").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let names = thread_names(isola.pid());
    assert_eq!(count(&names, "isolate-spin"), 1, "{names:?}");
    // While the spinner spins on its own thread, the quiet tenant answers quickly.
    let spinning = tokio::spawn({
        let authority = isola.authority();
        async move {
            let mut statuses = Vec::new();
            for _ in 0..5 {
                let request = http::Request::get("/spin")
                    .header("host", "spin.test")
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap();
                statuses.push(send(Proto::H1, &authority, request).await.status);
            }
            statuses
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut served, mut slow) = (0, Vec::new());
    while !spinning.is_finished() && Instant::now() < deadline && served < 2000 {
        let started = Instant::now();
        let reply = get_host(&isola, "w0.test", "/count").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        if started.elapsed() > Duration::from_millis(40) {
            slow.push(started.elapsed());
        }
        served += 1;
    }
    let statuses = spinning.await.unwrap();
    assert!(statuses.iter().all(|s| *s == 503), "{statuses:?}");
    assert!(served > 10, "the quiet tenant was served {served} times");
    // Each spin takes 50 ms of CPU before its kill; on a shared executor thread it would hold
    // up about half of the quiet requests made meanwhile (their connections share it).
    assert!(
        slow.len() <= 1,
        "{} of {served} quiet requests waited over 40 ms: {slow:?}",
        slow.len()
    );
}

#[tokio::test]
async fn a_turn_that_serves_many_short_requests_neither_kills_them_nor_moves_its_version() {
    let isola = one_isolate_node("burst", "max_requests_per_isolate = 64\ncpu_ms = 20\n");
    // Small requests one at a time first, so the bursts below run optimised: interpreted, one
    // `n=200000` request alone took 5.4 ms of CPU on a busy CI machine, a long turn by itself.
    for _ in 0..40 {
        let reply = get_host(&isola, "burst.test", "/work?n=20000").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    // 64 requests at once into one isolate: a turn dispatches all that arrived while the one
    // before it ran, and runs each handler as it dispatches it, so one turn serves a run of
    // them, together longer than `cpu_ms` (20 ms) and than the 5 ms a single request may take
    // before its version counts as running long turns; each alone takes under a millisecond.
    for _ in 0..4 {
        let mut burst = Vec::new();
        for _ in 0..64 {
            let authority = isola.authority();
            burst.push(tokio::spawn(async move {
                let request = http::Request::get("/work?n=100000")
                    .header("host", "burst.test")
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap();
                let reply = send(Proto::H1, &authority, request).await;
                (reply.status, reply.text())
            }));
        }
        for request in burst {
            let (status, text) = request.await.unwrap();
            assert_eq!(status, 200, "{text}\n{}", isola.logs());
        }
    }
    let logs = isola.logs();
    assert!(
        !logs.contains("get threads of their own"),
        "short requests served in one turn moved the version off the executors: {logs}"
    );
    assert_eq!(count(&thread_names(isola.pid()), "isolate-burst"), 0);
}

#[tokio::test]
async fn a_slow_first_request_does_not_move_its_version_but_a_slow_later_one_does() {
    let isola = one_isolate_node("lazy", "cpu_ms = 5000\n");
    // An isolate's first request pays for compiling the handler and whatever the worker sets
    // up lazily (and, in a fresh process, for warming up V8 itself): well past the 5 ms that
    // counts as a long turn later on, here 20 million loop iterations.
    let heavy = "/work?n=20000000";
    let first = get_host(&isola, "lazy.test", heavy).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let next = get_host(&isola, "lazy.test", "/count").await;
    assert_eq!(next.text(), "2", "the same isolate served both");
    assert!(
        !isola.logs().contains("get threads of their own"),
        "a slow first request moved the version: {}",
        isola.logs()
    );
    // The same work in a later request of the isolate is the worker's own long turn.
    assert_eq!(get_host(&isola, "lazy.test", heavy).await.status, 200);
    let logs = isola.wait_for_log("new isolates of this version get threads of their own");
    assert!(
        logs.contains("get threads of their own"),
        "a slow later request did not move the version: {logs}"
    );
}

/// Two requests at once on one HTTP/2 connection (so on one executor thread) to a worker with
/// two isolates, the first sleeping on a timer: the second takes the other isolate at once,
/// wherever it lives. Requests stay with the isolates on their own thread while those free
/// up soon; one whose requests wait on I/O does not, and tells its pool so as its turn ends
/// (else the second request waited for the node's sweeper, up to 100 ms).
#[tokio::test]
async fn a_request_does_not_queue_behind_an_isolate_whose_request_waits_on_a_timer() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let isola = Isola::serve(
        "[node]\nexecutor_threads = 2\nmetrics_address = \"127.0.0.1:0\"\n\
         [[listeners]]\naddress = \"127.0.0.1:0\"\n\
         [[routes]]\nhost = \"io.test\"\nworker = \"io\"\n\
         [workers.io]\nfile = \"{fixtures}/pool.js\"\n\
         [workers.io.limits]\nmin_isolates = 2\nmax_isolates = 2\n",
    );
    assert_eq!(get_host(&isola, "io.test", "/").await.status, 200);
    // The second of `min_isolates` starts in the background.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !isola
        .metrics()
        .await
        .lines()
        .any(|l| l.starts_with("isola_isolates{state=\"idle\",worker=\"io\"} 2"))
    {
        assert!(
            Instant::now() < deadline,
            "the second isolate never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stream = tokio::net::TcpStream::connect(isola.authority())
        .await
        .expect("connect");
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let get = |path: &str| {
        http::Request::get(format!("http://io.test{path}"))
            .body(Full::new(Bytes::new()))
            .expect("request")
    };
    let mut fast_ms = Vec::new();
    for _ in 0..7 {
        let mut slow_sender = sender.clone();
        let slow = slow_sender.send_request(get("/slow?ms=300"));
        let mut fast_sender = sender.clone();
        let started = Instant::now();
        let fast = async {
            let response = fast_sender.send_request(get("/")).await.expect("fast");
            let status = response.status();
            response.into_body().collect().await.expect("fast body");
            (status, started.elapsed())
        };
        let (slow, (status, took)) = tokio::join!(slow, fast);
        let slow = slow.expect("slow");
        assert_eq!((slow.status().as_u16(), status.as_u16()), (200, 200));
        slow.into_body().collect().await.expect("slow body");
        fast_ms.push(took.as_secs_f64() * 1000.0);
    }
    fast_ms.sort_by(f64::total_cmp);
    let median = fast_ms[fast_ms.len() / 2];
    assert!(
        median < 50.0,
        "the fast request waited for the sleeping one's isolate: {fast_ms:?} ms"
    );
}

/// The `isola_isolate_starts_total` count for `source`, 0 when there is none yet.
fn isolate_starts(metrics: &str, source: &str) -> u64 {
    let prefix = format!("isola_isolate_starts_total{{source=\"{source}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn cold_starts_back_to_back_claim_the_spare_being_made_instead_of_making_their_own() {
    let isola = node(12);
    // The two spares are made once the executors have been quiet a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..12 {
        let reply = get_host(&isola, &format!("w{i}.test"), "/count").await;
        assert_eq!((reply.status, reply.text()), (200, "1".into()), "w{i}");
    }
    let metrics = isola.metrics().await;
    let (ready, claimed, new) = (
        isolate_starts(&metrics, "spare"),
        isolate_starts(&metrics, "starting_spare"),
        isolate_starts(&metrics, "new"),
    );
    // The node also started each worker once as it booted.
    assert!(ready + claimed + new >= 12, "{metrics}");
    // Once the two ready spares are gone, each start makes the next spare at once on the other
    // executor, and the next start takes it, or claims it while V8 still deserialises it,
    // rather than deserialising a snapshot of its own (which the spares, waiting for a quiet
    // moment, would leave every start after the second to do).
    assert!(
        new <= 3,
        "spare {ready}, starting_spare {claimed}, new {new}: starts outran the spares"
    );
}
