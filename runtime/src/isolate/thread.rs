//! The OS thread that owns an isolate. V8 isolates are bound to the thread that created them
//! (and must be dropped in reverse creation order on it), so each isolate gets its own thread
//! with a single-threaded tokio runtime; that thread's CPU clock is the isolate's CPU clock.
//! The rest of the node talks to it over a channel (see `handle.rs`) and never blocks on
//! JavaScript. On an executor the same serving runs as a task among others (`host.rs`), and
//! the front end may run its turns (`inline.rs`).

use std::cell::RefCell;
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::served::{Message, Served, TurnReport};
use super::{Blank, Isolate, StartError};
use crate::worker::WorkerSource;

/// What a thread needs to serve a worker: the worker, its request channel, where to say it
/// started, and where to report on each turn.
pub(super) struct Order {
    /// The isolate's id (`IsolateThread::id`).
    pub(super) id: u64,
    pub(super) worker: Arc<WorkerSource>,
    pub(super) receiver: mpsc::UnboundedReceiver<Message>,
    pub(super) ready: oneshot::Sender<Result<(), StartError>>,
    pub(super) report: Arc<TurnReport>,
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
        id,
        worker,
        receiver,
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
    let isolate = match started {
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
    let served = Rc::new(RefCell::new(Served::new(
        isolate,
        receiver,
        report,
        worker.clone(),
    )));
    let registration = super::inline::register(id, &served);
    let outcome = poll_fn(|cx| served.borrow_mut().poll_task(cx)).await;
    drop(registration);
    let mut state = served.borrow_mut();
    let isolate = &mut state.isolate;
    if isolate.killed().is_none() && isolate.pending_exchanges() > 0 && outcome.is_ok() {
        isolate.fail_pending("the worker's promise never settled");
    }
    let killed = isolate.killed().is_some();
    if killed {
        isolate.log_kill(&worker.name);
        isolate.fail_pending("");
    } else if let Err(error) = outcome {
        tracing::error!(worker = %worker.name, "isolate stopped: {error}");
        isolate.fail_pending("the isolate failed while handling the request");
    }
    drop(state);
    drop(served);
    if killed {
        super::limits::release_free_memory();
    }
}
