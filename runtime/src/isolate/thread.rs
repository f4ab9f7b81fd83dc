//! The OS thread that owns an isolate. V8 isolates are bound to the thread that created them
//! (and must be dropped in reverse creation order on it), so each isolate gets its own thread
//! with a single-threaded tokio runtime; that thread's CPU clock is the isolate's CPU clock.
//! The rest of the node talks to it over a channel (see `handle.rs`) and never blocks on
//! JavaScript.

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;

use isola_bindings::http::RequestId;
use tokio::sync::{mpsc, oneshot};

use super::{Blank, Isolate, StartError};
use crate::exchange::IncomingRequest;
use crate::worker::WorkerSource;

/// What the rest of the node sends to an isolate thread.
#[derive(Debug)]
pub(super) enum Message {
    /// A request to run the worker for (boxed: it passes through the pool's queue, a channel
    /// and several futures, each a copy of the whole request when unboxed).
    Request(Box<IncomingRequest>),
    /// The client of this exchange went away.
    Abort(RequestId),
}

/// What a thread needs to serve a worker: the worker, its request channel, where to say it
/// started, and where to report on each turn.
pub(super) struct Order {
    pub(super) worker: Arc<WorkerSource>,
    pub(super) receiver: mpsc::UnboundedReceiver<Message>,
    pub(super) ready: oneshot::Sender<Result<(), StartError>>,
    pub(super) report: Arc<TurnReport>,
}

/// What an isolate's thread reports after each turn, for the node to read without asking it.
#[derive(Debug, Default)]
pub(crate) struct TurnReport {
    /// Heap + external memory the turn left behind.
    memory: AtomicU64,
    /// Whether requests were still open after the turn: they wait on I/O, timers or a client
    /// reading a stream, so the isolate may stay taken a while (see `pool::State::waits_near`).
    waiting: AtomicBool,
}

impl TurnReport {
    /// Heap + external memory after the last turn.
    pub(crate) fn memory_bytes(&self) -> u64 {
        self.memory.load(Ordering::Relaxed)
    }

    /// Whether requests were still open after the last turn.
    pub(crate) fn waiting(&self) -> bool {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Records a turn's end.
    pub(crate) fn record(&self, memory_bytes: u64, waiting: bool) {
        self.memory.store(memory_bytes, Ordering::Relaxed);
        self.waiting.store(waiting, Ordering::Relaxed);
    }
}

/// A new isolate thread: a runtime, then the isolate.
pub(super) fn run(order: Order) {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(serve_order(None, order)),
        Err(e) => {
            let _ = order
                .ready
                .send(Err(StartError::system("a tokio runtime")(e)));
        }
    }
}

/// Loads the worker into `blank` (a spare's isolate) or a new isolate, reports readiness, and
/// serves until the channel closes or the isolate is killed.
pub(super) async fn serve_order(blank: Option<Blank>, order: Order) {
    let Order {
        worker,
        mut receiver,
        mut ready,
        report,
    } = order;
    let start = async {
        match blank {
            Some(blank) => Isolate::load(blank, &worker).await,
            None => Isolate::start(&worker).await,
        }
    };
    // Nobody waits any more (startup_wall_ms passed): drop the half-started isolate.
    let started = tokio::select! {
        started = start => started,
        () = ready.closed() => return,
    };
    let mut isolate = match started {
        Ok(isolate) => isolate,
        Err(error) => {
            if matches!(error, StartError::LimitExceeded(_)) {
                super::limits::release_free_memory();
            }
            let _ = ready.send(Err(error));
            return;
        }
    };
    report.record(isolate.memory_in_use(), false);
    if ready.send(Ok(())).is_err() {
        return;
    }
    let outcome = request_loop(&mut isolate, &mut receiver, &report, &worker).await;
    let killed = isolate.killed().is_some();
    if killed {
        isolate.log_kill(&worker.name);
        isolate.fail_pending("");
    } else if let Err(error) = outcome {
        tracing::error!(worker = %worker.name, "isolate stopped: {error}");
        isolate.fail_pending("the isolate failed while handling the request");
    }
    drop(isolate);
    if killed {
        super::limits::release_free_memory();
    }
}

/// Dispatches requests and polls the event loop until the channel closes and the isolate is
/// idle (so `waitUntil` work and streaming bodies finish before the thread exits).
async fn request_loop(
    isolate: &mut Isolate,
    receiver: &mut mpsc::UnboundedReceiver<Message>,
    report: &TurnReport,
    worker: &WorkerSource,
) -> Result<(), deno_core::error::CoreError> {
    let mut open = true;
    poll_fn(|cx| {
        isolate.enter();
        let polled = serve_turn(isolate, receiver, &mut open, cx);
        isolate.leave();
        if let Some(cpu_ms) = isolate.last_turn_was_long() {
            worker.note_long_turn(cpu_ms);
        }
        let waiting = isolate.pending_exchanges() > 0;
        let was_waiting = report.waiting();
        report.record(isolate.memory_in_use(), waiting);
        if waiting && !was_waiting {
            // Requests queued for this isolate (as it was about to run) may go elsewhere.
            isolate.tell_pool_waiting();
        }
        if isolate.killed().is_some() {
            // The turn took a request over its CPU limit (charged as the turn ended).
            return stop_taking_requests(receiver);
        }
        polled
    })
    .await?;
    if isolate.killed().is_none() && isolate.pending_exchanges() > 0 {
        isolate.fail_pending("the worker's promise never settled");
    }
    Ok(())
}

/// One turn: take new requests, run JavaScript until it waits. `Ready` ends the thread.
fn serve_turn(
    isolate: &mut Isolate,
    receiver: &mut mpsc::UnboundedReceiver<Message>,
    open: &mut bool,
    cx: &mut std::task::Context<'_>,
) -> Poll<Result<(), deno_core::error::CoreError>> {
    while *open && isolate.killed().is_none() {
        match receiver.poll_recv(cx) {
            Poll::Ready(Some(Message::Request(request))) => isolate.dispatch(request),
            Poll::Ready(Some(Message::Abort(id))) => isolate.abort(id),
            Poll::Ready(None) => *open = false,
            Poll::Pending => break,
        }
    }
    if isolate.killed().is_some() {
        return stop_taking_requests(receiver);
    }
    let polled = isolate.poll(cx);
    if isolate.retired() {
        // Retired: take nothing new. What was already sent here is still served (the next
        // turn drains the closed channel); the thread goes once the responses are out.
        if *open {
            receiver.close();
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if isolate.pending_exchanges() == 0 {
            return Poll::Ready(Ok(()));
        }
    }
    match polled {
        _ if isolate.killed().is_some() => stop_taking_requests(receiver),
        Poll::Ready(Ok(())) if !*open => Poll::Ready(Ok(())),
        Poll::Ready(Ok(())) => Poll::Pending,
        Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
        Poll::Pending => Poll::Pending,
    }
}

/// A terminated isolate is never reused: close its channel at once so the deployment starts a
/// new isolate for the next request, and drop what was queued (those clients get a 503 with
/// Retry-After). The exchanges it was running are failed by the caller, naming the limit.
fn stop_taking_requests(
    receiver: &mut mpsc::UnboundedReceiver<Message>,
) -> Poll<Result<(), deno_core::error::CoreError>> {
    receiver.close();
    while receiver.try_recv().is_ok() {}
    Poll::Ready(Ok(()))
}
