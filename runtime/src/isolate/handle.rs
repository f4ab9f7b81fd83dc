//! The handle the rest of the node holds on an isolate: starting it (on a thread of its own,
//! or as a task on an executor thread), sending it requests and aborts, and reading the
//! memory it last reported.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use isola_bindings::http::RequestId;
use tokio::sync::{mpsc, oneshot};

use super::host::Host;
use super::served::{Message, TurnReport};
use super::thread::{Order, run, serve_order};
use super::{StartError, spare};
use crate::exchange::IncomingRequest;
use crate::worker::WorkerSource;

/// Ids of isolate threads, unique in the process.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A running isolate thread; dropping every handle lets it finish its work and exit.
#[derive(Debug)]
pub(crate) struct IsolateThread {
    /// The process-wide id of this isolate (leases name it).
    id: u64,
    messages: mpsc::UnboundedSender<Message>,
    /// The executor thread hosting the isolate (none: a thread of its own).
    executor: Option<usize>,
    /// What the thread reported after its last turn.
    report: Arc<TurnReport>,
}

impl IsolateThread {
    /// Starts a thread, creates the isolate and evaluates the worker; returns once the worker
    /// is ready for requests (or failed to start).
    pub(crate) async fn spawn(worker: Arc<WorkerSource>) -> Result<Self, StartError> {
        let (messages, receiver) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let report = Arc::new(TurnReport::default());
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let order = Order {
            id,
            worker: worker.clone(),
            receiver,
            ready: ready_tx,
            report: report.clone(),
        };
        // A spare isolate (created ahead) if one fits, else one being made now, else a new
        // one. A version with long turns gets a thread of its own, away from other tenants,
        // so it cannot take a spare hosted on an executor.
        let own_thread = crate::executor::executors().is_some() && worker.runs_long_turns();
        let executors = crate::executor::executors().filter(|_| !own_thread);
        let memory_mb = worker.limits.memory_mb;
        let (order, mut executor, source) = if own_thread {
            (Some(order), None, "new")
        } else if let Some((spare, executor)) = spare::take(memory_mb) {
            match spare.send(order) {
                Ok(()) => (None, executor, "spare"),
                // The spare is gone: a new isolate after all.
                Err(order) => (Some(order), None, "new"),
            }
        } else {
            match spare::claim(memory_mb, order) {
                Ok(executor) => (None, executor, "starting_spare"),
                Err(order) => (Some(order), None, "new"),
            }
        };
        crate::metrics::metrics()
            .isolate_starts
            .with_label_values(&[source])
            .inc();
        spare::refill_avoiding(executor);
        match (order, executors) {
            (None, _) => {}
            (Some(order), Some(executors)) => {
                let index = executors.place_isolate();
                executor = Some(index);
                executors.spawn_isolate(index, move || Host::new(serve_order(None, order)));
            }
            (Some(order), None) => {
                std::thread::Builder::new()
                    .name(format!("isolate-{}", worker.name))
                    .spawn(move || run(order))
                    .map_err(StartError::system("an isolate thread"))?;
            }
        }
        // Dropping `ready_rx` (timeout, or the caller gave up) makes the thread abandon the
        // start and exit.
        match tokio::time::timeout(worker.limits.startup_wall(), ready_rx).await {
            Ok(Ok(Ok(()))) => Ok(Self {
                id,
                messages,
                executor,
                report,
            }),
            Ok(Ok(Err(error))) => Err(error),
            Ok(Err(_)) => Err(StartError::Runtime(
                "the isolate thread exited while starting".to_owned(),
            )),
            Err(_elapsed) => {
                crate::metrics::metrics()
                    .isolate_kills
                    .with_label_values(&[&*worker.name, "startup_wall_ms"])
                    .inc();
                Err(StartError::StartupTimeout(worker.limits.startup_wall_ms))
            }
        }
    }

    /// The process-wide id of this isolate.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Whether the isolate lives on executor `here` (the caller's, from
    /// `executor::current`), so sending it a request from there wakes no other thread.
    pub(crate) fn lives_on(&self, here: Option<usize>) -> bool {
        here.is_some() && self.executor == here
    }

    /// Sends a request; gives it back if the thread has exited (so it can go to a new one).
    pub(crate) fn send_request(
        &self,
        request: Box<IncomingRequest>,
    ) -> Result<(), Box<IncomingRequest>> {
        match self.messages.send(Message::Request(request)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendError(Message::Request(request))) => Err(request),
            // Never: the channel gives back what was sent.
            Err(mpsc::error::SendError(Message::Abort(_))) => Ok(()),
        }
    }

    /// Sends a request and, when the isolate lives on this executor and no isolate runs here
    /// now, runs the isolate's turn for it at once (`super::inline`), so a response given at
    /// once is ready on return. Only for callers that hold no lock the turn may take (the
    /// pool's, as a response hands its lease back). Gives the request back if the isolate
    /// has exited.
    pub(crate) fn send_request_now(
        &self,
        request: Box<IncomingRequest>,
    ) -> Result<(), Box<IncomingRequest>> {
        if !self.lives_on(crate::executor::current()) {
            return self.send_request(request);
        }
        match super::inline::run(self.id, request) {
            Ok(()) => Ok(()),
            Err(request) => self.send_request(request),
        }
    }

    /// Tells the isolate that the client of request `id` went away (its `request.signal`
    /// aborts); nothing if the thread has exited.
    pub(crate) fn abort(&self, id: RequestId) {
        let _ = self.messages.send(Message::Abort(id));
    }

    /// Whether the thread is still accepting messages.
    pub(crate) fn is_alive(&self) -> bool {
        !self.messages.is_closed()
    }

    /// Heap + external memory the isolate used after its last turn.
    pub(crate) fn memory_bytes(&self) -> u64 {
        self.report.memory_bytes()
    }

    /// Whether requests sent here were still open after the isolate's last turn (waiting on
    /// I/O, timers or a slow reader): it may stay taken a while.
    pub(crate) fn waiting(&self) -> bool {
        self.report.waiting()
    }

    /// A handle on no isolate, on executor `executor`, for the pool's unit tests: it is alive
    /// while the returned receiver is kept, and reports what the test records.
    #[cfg(test)]
    pub(crate) fn detached(
        executor: Option<usize>,
    ) -> (Self, Box<dyn std::any::Any>, Arc<TurnReport>) {
        let (messages, receiver) = mpsc::unbounded_channel();
        let report = Arc::new(TurnReport::default());
        let handle = Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            messages,
            executor,
            report: report.clone(),
        };
        (handle, Box::new(receiver), report)
    }
}
