//! A request sent from an executor thread to an isolate hosted on that thread is run at once:
//! a response the worker gives without waiting is there when `Pool::dispatch` returns, before
//! anything is awaited (no wake-up of the isolate's task, no second poll of the connection).
//! A worker that waits (a timer) still answers, through its task. While the executor serves
//! other connections, the turn runs only the JavaScript and its microtasks and leaves the rest
//! of the event loop to the isolate's task (once per round): answers given after a microtask
//! are still there at once, and timers, `waitUntil` work and later requests still run. Own test
//! binary: it starts the process's executors.

#![allow(clippy::expect_used, reason = "tests fail loudly")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use isola_bindings::context::RequestContext;
use isola_bindings::http::{HandlerResult, ResponseBody};
use isola_runtime::exchange::IncomingRequest;
use isola_runtime::pool::{Pool, Registry};
use isola_runtime::worker::WorkerSource;
use tokio::sync::oneshot;

const WORKER: &str = r#"let settled = 0;
export default {
  async fetch(request, env, ctx) {
    const path = new URL(request.url).pathname;
    if (path === "/later") {
      await new Promise((resolve) => setTimeout(resolve, 20));
      return new Response("later");
    }
    if (path === "/microtask") {
      await Promise.resolve();
      return new Response("after a microtask");
    }
    if (path === "/wait-until") {
      ctx.waitUntil(new Promise((resolve) => setTimeout(resolve, 5)).then(() => settled++));
      return new Response("at once");
    }
    if (path === "/settled") {
      return new Response(String(settled));
    }
    return new Response("at once");
  },
};
"#;

fn worker() -> Arc<WorkerSource> {
    let dir = std::env::temp_dir().join(format!("isola-inline-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("worker.js");
    std::fs::write(&file, WORKER).expect("write worker");
    let config = edge_config::Worker::with_defaults("inline-test", file);
    Arc::new(WorkerSource::load(&config).expect("load worker"))
}

fn request(id: u64, path: &str) -> (Box<IncomingRequest>, oneshot::Receiver<HandlerResult>) {
    let (responder, answer) = oneshot::channel();
    let request = IncomingRequest {
        context: RequestContext {
            id,
            request_id: Arc::from(format!("test-{id}")),
            trace: isola_wire::trace::TraceParent::root(),
            trace_from_client: false,
            deadline: Instant::now() + Duration::from_secs(30),
            max_body_bytes: 1024,
            loop_chain: None,
            tail: None,
            client_address: None,
        },
        method: http::Method::GET,
        url: format!("http://inline.test{path}"),
        headers: http::HeaderMap::new(),
        body: None,
        responder,
        lease: None,
        write_timeout: Duration::from_secs(5),
    };
    (Box::new(request), answer)
}

fn text(result: HandlerResult) -> String {
    let response = result.expect("the worker answered");
    match response.body {
        ResponseBody::Full(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        other => panic!("a full body expected, got {other:?}"),
    }
}

/// Requests `path` `times` times, from `first_id` on: each is answered before anything is
/// awaited, with `expected`.
async fn answered_at_once(pool: &Arc<Pool>, first_id: u64, times: u64, path: &str, expected: &str) {
    for id in first_id..first_id + times {
        let (next, mut answer) = request(id, path);
        let dispatched = pool.dispatch(next);
        let at_once = answer.try_recv();
        dispatched.await.expect("dispatched");
        assert_eq!(
            text(at_once.expect("answered before anything was awaited")),
            expected
        );
    }
}

/// A handler that waits on a timer is answered by its isolate's task, later.
async fn answered_later(pool: &Arc<Pool>, id: u64) {
    let (later, mut answer) = request(id, "/later");
    let dispatched = pool.dispatch(later);
    assert!(
        answer.try_recv().is_err(),
        "answered before its timer fired"
    );
    dispatched.await.expect("dispatched");
    let answered = tokio::time::timeout(Duration::from_secs(10), answer)
        .await
        .expect("answered within 10 s")
        .expect("answer");
    assert_eq!(text(answered), "later");
}

#[test]
fn a_request_to_an_isolate_on_the_same_executor_is_answered_as_it_is_sent() {
    isola_runtime::executor::start(1).expect("executors");
    let executors = isola_runtime::executor::executors().expect("started");
    let outcome = executors.handle(0).spawn(async {
        let pool = Pool::start(worker(), Registry::start(1024))
            .await
            .expect("pool");
        // The first request warms the isolate (its handler compiles).
        let (first, answer) = request(1, "/");
        pool.dispatch(first).await.expect("dispatched");
        assert_eq!(text(answer.await.expect("answer")), "at once");

        // A lone connection: the whole turn, event loop included, runs as the request is sent.
        let _lone = isola_runtime::executor::ServedConnection::begin();
        answered_at_once(&pool, 2, 18, "/", "at once").await;
        answered_at_once(&pool, 20, 3, "/microtask", "after a microtask").await;
        answered_later(&pool, 23).await;

        // Another connection on the executor: the event loop is left to the isolate's task.
        let _other = isola_runtime::executor::ServedConnection::begin();
        answered_at_once(&pool, 30, 18, "/", "at once").await;
        answered_at_once(&pool, 50, 3, "/microtask", "after a microtask").await;
        answered_at_once(&pool, 60, 4, "/wait-until", "at once").await;
        answered_later(&pool, 70).await;
        // The `waitUntil` timers ran on the event loop the isolate's task polls.
        let deadline = Instant::now() + Duration::from_secs(10);
        for id in 80.. {
            let (ask, answer) = request(id, "/settled");
            pool.dispatch(ask).await.expect("dispatched");
            if text(answer.await.expect("answer")) == "4" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the waitUntil work never settled"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime
        .block_on(outcome)
        .expect("the test's task ran to its end");
}
