//! One context per request, proved with two requests interleaved in one isolate
//! (`max_isolates = 1`, `max_requests_per_isolate = 2`): each request's subrequest count, loop
//! chain, log lines and CPU time stay its own while the other runs, also for `waitUntil` work
//! that runs after the next request began.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;

use crate::support::{Isola, Proto, get, send};

/// `(who, CDN-Loop)` of each subrequest the upstream received.
type Records = Arc<Mutex<Vec<(String, String)>>>;

/// A loopback upstream recording the `who` query and `CDN-Loop` header of each request.
async fn recording_upstream() -> (SocketAddr, Records) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let records: Records = Arc::default();
    let kept = records.clone();
    tokio::spawn(async move {
        // Bounded: a test makes a handful of connections.
        for _ in 0..64 {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let kept = kept.clone();
            let service = hyper::service::service_fn(move |request: Request<_>| {
                let who = request
                    .uri()
                    .query()
                    .unwrap_or("")
                    .trim_start_matches("who=")
                    .to_owned();
                let chain = request
                    .headers()
                    .get("cdn-loop")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let leaked = request.headers().contains_key("isola-context");
                kept.lock().unwrap().push((
                    who,
                    if leaked {
                        format!("LEAKED CONTEXT HEADER {chain}")
                    } else {
                        chain
                    },
                ));
                async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("ok")))) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    (address, records)
}

fn serve(upstream: SocketAddr, limits: &str) -> Isola {
    Isola::serve(&format!(
        r#"
[[listeners]]
address = "127.0.0.1:0"

[[routes]]
worker = "w"

[workers.w]
file = "{{fixtures}}/context.js"
[workers.w.outbound]
allow = ["{ip}"]
[workers.w.limits]
max_isolates = 1
max_requests_per_isolate = 2
{limits}
"#,
        ip = upstream.ip()
    ))
}

fn chain_of(records: &Records, who: &str) -> Option<String> {
    records
        .lock()
        .unwrap()
        .iter()
        .find(|(w, _)| w == who)
        .map(|(_, chain)| chain.clone())
}

async fn wait_for_record(records: &Records, who: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while chain_of(records, who).is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The `request_id` of the first log line containing `message`.
fn request_id_of(logs: &str, message: &str) -> String {
    let line = logs
        .lines()
        .find(|line| line.contains(message))
        .unwrap_or_else(|| panic!("no log line with {message:?} in:\n{logs}"));
    let id = line
        .split("request_id=")
        .nth(1)
        .unwrap_or_else(|| panic!("no request_id in {line:?}"));
    id.trim_start_matches('"')
        .split(|c: char| !c.is_ascii_hexdigit())
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// GET `path` with one header `name: value`.
fn with_header(isola: &Isola, path: &str, name: &str, value: &str) -> Request<Full<Bytes>> {
    Request::get(format!("http://{}{path}", isola.authority()))
        .header("host", isola.authority())
        .header(name, value)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn with_chain(isola: &Isola, path: &str, chain: &str) -> Request<Full<Bytes>> {
    with_header(isola, path, "cdn-loop", chain)
}

#[tokio::test]
async fn interleaved_requests_keep_their_subrequest_count_loop_chain_and_log_id() {
    let (upstream, records) = recording_upstream().await;
    let isola = serve(upstream, "max_subrequests = 3");
    let up = format!("http://{upstream}");
    let a_request = with_chain(&isola, &format!("/a?up={up}"), "isola; id=00ff");
    let authority = isola.authority();
    let a = tokio::spawn(async move { send(Proto::H1, &authority, a_request).await });
    wait_for_record(&records, "a2").await;
    let b = get(Proto::H1, &isola, &format!("/b?up={up}")).await;
    let a = a.await.unwrap();

    assert_eq!(
        a.text(),
        "third: ok; fourth: too many subrequests: a request may make at most 3 (max_subrequests)",
        "A counts its own subrequests, not reset by B"
    );
    assert_eq!(b.text(), "first: ok; second: ok", "B counts from zero");
    let a3 = chain_of(&records, "a3").expect("a3 reached the upstream");
    assert!(
        a3.starts_with("isola; id=00ff, isola; id="),
        "A's subrequest after B arrived carries A's chain: {a3}"
    );
    let b1 = chain_of(&records, "b1").expect("b1 reached the upstream");
    assert!(
        b1.starts_with("isola; id=") && !b1.contains("00ff"),
        "B's subrequests carry B's chain: {b1}"
    );
    let logs = isola.wait_for_log("a-after-b");
    let (a_start, a_after, b_start) = (
        request_id_of(&logs, "a-start"),
        request_id_of(&logs, "a-after-b"),
        request_id_of(&logs, "b-start"),
    );
    assert_eq!(a_start.len(), 16, "{a_start}");
    let line = logs
        .lines()
        .find(|l| l.contains("a-start"))
        .unwrap_or_default();
    assert!(
        line.contains("worker=") && line.contains("version=") && line.contains("config"),
        "a console line names its deployment and version: {line}"
    );
    assert_eq!(a_start, a_after, "A's log lines name A, also after B began");
    assert_ne!(a_start, b_start);
}

#[tokio::test]
async fn wait_until_work_after_the_next_request_began_stays_in_its_request() {
    let (upstream, records) = recording_upstream().await;
    let isola = serve(upstream, "max_subrequests = 3");
    let up = format!("http://{upstream}");
    let w = send(
        Proto::H1,
        &isola.authority(),
        with_chain(&isola, &format!("/w?up={up}"), "isola; id=00aa"),
    )
    .await;
    assert_eq!(w.text(), "w");
    let x = get(Proto::H1, &isola, "/x").await;
    assert_eq!(x.text(), "x");

    let logs = isola.wait_for_log("w-late third");
    assert!(
        logs.contains(
            "w-late third: ok; fourth: too many subrequests: a request may make at most 3"
        ),
        "W's waitUntil counts against W:\n{logs}"
    );
    let w3 = chain_of(&records, "w3").expect("w3 reached the upstream");
    assert!(
        w3.starts_with("isola; id=00aa, isola; id="),
        "W's waitUntil subrequest carries W's chain: {w3}"
    );
    let w_start = request_id_of(&logs, "w-start");
    assert_eq!(request_id_of(&logs, "w-late"), w_start);
    assert_ne!(request_id_of(&logs, "x-start"), w_start);
}

/// Headers reach the worker when it first reads them (not as V8 strings up front): each
/// request reads its own, also from `waitUntil` work that runs after the next request began;
/// read for the first time after the request ended, they throw (as Deno's do).
#[tokio::test]
async fn each_request_reads_its_own_headers_until_it_ends() {
    let (upstream, _records) = recording_upstream().await;
    let isola = serve(upstream, "");
    let authority = isola.authority();
    let as_who = |path, who| {
        send(
            Proto::H1,
            &authority,
            with_header(&isola, path, "x-who", who),
        )
    };
    assert_eq!(as_who("/h1", "one").await.text(), "h1");
    assert_eq!(as_who("/h2", "two").await.text(), "h2 own header: two");
    let logs = isola.wait_for_log("h1-late header");
    assert!(logs.contains("h1-late header: one"), "{logs}");
    assert_eq!(as_who("/keep", "kept").await.text(), "kept");
    let h3 = as_who("/h3", "three").await;
    assert!(
        h3.text().starts_with("TypeError: Request closed"),
        "{}",
        h3.text()
    );
}

#[tokio::test]
async fn cpu_ms_counts_all_turns_of_a_request_while_others_come_and_go() {
    let (upstream, _records) = recording_upstream().await;
    // Each slice is a few milliseconds, far under cpu_ms; 60 of them are far over it.
    let isola = serve(upstream, "cpu_ms = 50");
    let spin = tokio::spawn(get_owned(isola.authority(), "/spin?slices=60&work=3000000"));
    let mut quick = 0;
    // Other requests keep arriving in the same isolate while the spinning one works.
    while !spin.is_finished() && quick < 200 {
        let reply = get_owned(isola.authority(), "/quick").await;
        if reply.0 == 200 {
            quick += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (status, text) = spin.await.unwrap();
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("cpu_ms"), "{text}");
    assert!(quick > 0, "requests came and went meanwhile");
    let logs = isola.wait_for_log("isolate killed");
    assert!(
        logs.contains("limit=cpu_ms") || logs.contains("limit=\"cpu_ms\""),
        "{logs}"
    );
}

async fn get_owned(authority: String, path: &str) -> (u16, String) {
    let request = Request::get(format!("http://{authority}{path}"))
        .header("host", &authority)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = send(Proto::H1, &authority, request).await;
    (reply.status, reply.text())
}
