//! The placement rules on executors: a request stays with the isolates on its own thread
//! while one of them frees up soon, and no longer than `LOCAL_FIRST_FOR`.

#![allow(clippy::expect_used, reason = "tests fail loudly")]
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{LOCAL_FIRST_FOR, Reach, Slot, State, Waiter};
use crate::exchange::IncomingRequest;
use crate::isolate::TurnReport;
use crate::isolate::handle::IsolateThread;
use crate::worker::WorkerSource;

const A: Option<usize> = Some(0);
const B: Option<usize> = Some(1);

/// An isolate handle on `executor` (its channel kept open by the receiver).
struct Fake {
    _receiver: Box<dyn std::any::Any>,
    report: Arc<TurnReport>,
}

fn worker() -> Arc<WorkerSource> {
    let dir = std::env::temp_dir().join(format!("isola-pool-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("hello.js");
    std::fs::write(
        &file,
        "export default { fetch() { return new Response('hi'); } };\n",
    )
    .expect("write worker");
    let mut config = edge_config::Worker::with_defaults("pool-test", file);
    config.limits.max_isolates = 4;
    Arc::new(WorkerSource::load(&config).expect("load worker"))
}

/// A pool state with one isolate per entry of `executors`, all idle.
fn state(executors: &[Option<usize>]) -> (State, Vec<Fake>) {
    let mut fakes = Vec::new();
    let mut slots = Vec::new();
    for &executor in executors {
        let (isolate, receiver, report) = IsolateThread::detached(executor);
        fakes.push(Fake {
            _receiver: receiver,
            report,
        });
        slots.push(Slot {
            isolate: Arc::new(isolate),
            generation: 0,
            in_flight: 0,
            sockets: 0,
            last_used: Instant::now(),
        });
    }
    let state = State {
        worker: worker(),
        generation: 0,
        slots,
        starting: 0,
        waiters: VecDeque::new(),
    };
    (state, fakes)
}

fn waiter(executor: Option<usize>, since: Instant) -> Waiter {
    let (responder, _) = oneshot::channel();
    let (placed, _) = oneshot::channel();
    Waiter {
        request: Box::new(IncomingRequest {
            context: isola_bindings::context::RequestContext {
                id: 1,
                request_id: Arc::from("test"),
                trace: isola_wire::trace::TraceParent::root(),
                trace_from_client: false,
                deadline: since + Duration::from_secs(30),
                max_body_bytes: 0,
                loop_chain: None,
                tail: None,
                client_address: None,
            },
            method: http::Method::GET,
            url: "http://example.com/".to_owned(),
            headers: http::HeaderMap::new(),
            body: None,
            responder,
            lease: None,
            write_timeout: Duration::from_secs(1),
        }),
        placed,
        executor,
        since,
    }
}

fn lives_on(isolate: &IsolateThread) -> Option<usize> {
    [A, B].into_iter().find(|&e| isolate.lives_on(e)).flatten()
}

#[test]
fn a_request_takes_an_isolate_on_its_own_thread_first() {
    let (mut state, _fakes) = state(&[B, A]);
    let taken = state
        .take_warm(A, Reach::Near, Instant::now())
        .expect("A's isolate is free");
    assert_eq!(lives_on(&taken), A);
    assert!(
        state.take_warm(A, Reach::Near, Instant::now()).is_none(),
        "only B's isolate is left"
    );
    let taken = state
        .take_warm(A, Reach::Any, Instant::now())
        .expect("B's isolate is free");
    assert_eq!(lives_on(&taken), B);
}

#[test]
fn a_request_waits_for_its_threads_isolate_only_while_that_frees_up_soon() {
    let (mut state, fakes) = state(&[A, B]);
    state
        .take_warm(A, Reach::Near, Instant::now())
        .expect("A's isolate is free");
    let now = Instant::now();
    assert!(
        state.waits_near(A, now),
        "A's isolate was just taken and B's is free: wait for A's rather than wake B"
    );
    assert!(
        !state.waits_near(A, now + LOCAL_FIRST_FOR),
        "taken LOCAL_FIRST_FOR ago, A's isolate may be stuck: go to B"
    );
    fakes[0].report.record(0, true);
    assert!(
        !state.waits_near(A, now),
        "A's request waits on I/O, so its isolate may stay taken: go to B"
    );
    fakes[0].report.record(0, false);
    state
        .take_warm(B, Reach::Near, Instant::now())
        .expect("B's isolate is free");
    assert!(
        !state.waits_near(A, now),
        "nothing is free elsewhere: the usual rules (start an isolate, or queue)"
    );
    assert!(
        !state.waits_near(None, now),
        "off the executors every isolate is elsewhere"
    );
}

#[test]
fn a_freed_isolate_serves_its_own_threads_queue_and_leaves_other_threads_to_theirs() {
    let (mut state, fakes) = state(&[A, B]);
    state
        .take_warm(B, Reach::Near, Instant::now())
        .expect("B's isolate is free");
    let now = Instant::now();
    state.waiters.push_back(waiter(B, now));
    state.waiters.push_back(waiter(A, now));
    let (place, next) = state.next_waiter(A, now).expect("A's waiter");
    assert_eq!(
        (place, next.executor),
        (1, A),
        "A's own waiter, though younger"
    );
    assert!(
        state.next_waiter(A, now).is_none(),
        "B's waiter is left to B's isolate, which frees up soon"
    );
    let (_, next) = state
        .next_waiter(A, now + LOCAL_FIRST_FOR)
        .expect("B's waiter waited LOCAL_FIRST_FOR");
    assert_eq!(next.executor, B);

    state.waiters.push_back(waiter(B, now));
    fakes[1].report.record(0, true);
    let (_, next) = state
        .next_waiter(A, now)
        .expect("B's isolate waits on I/O: A serves B's waiter");
    assert_eq!(next.executor, B);

    state.waiters.push_back(waiter(B, now));
    fakes[1].report.record(0, false);
    let (_, next) = state
        .next_waiter(None, now)
        .expect("off the executors (the sweeper), the oldest");
    assert_eq!(next.executor, B);
}

#[test]
fn a_waiter_takes_only_its_threads_isolates_while_one_frees_up_soon() {
    let (mut state, _fakes) = state(&[A, A, B]);
    state
        .take_warm(A, Reach::Near, Instant::now())
        .expect("one of A's isolates");
    let now = Instant::now();
    let fresh = waiter(A, now);
    assert_eq!(state.reach_for(&fresh, A, now), Reach::Near);
    assert_eq!(
        state.reach_for(&fresh, B, now),
        Reach::Near,
        "also when B's isolate freed up"
    );
    assert_eq!(
        state.reach_for(&fresh, None, now),
        Reach::Any,
        "the sweeper serves from anywhere"
    );
    let later = now + LOCAL_FIRST_FOR;
    assert_eq!(
        state.reach_for(&waiter(A, now), A, later),
        Reach::Any,
        "after LOCAL_FIRST_FOR, any isolate"
    );
    let taken = state
        .take_warm(A, Reach::Near, Instant::now())
        .expect("A's other isolate");
    assert_eq!(lives_on(&taken), A);
    assert!(
        state.take_warm(A, Reach::Near, Instant::now()).is_none(),
        "Near never reaches B's isolate"
    );
}
