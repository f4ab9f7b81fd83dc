//! An isolate serving a worker: its request channel and one turn (take requests, run
//! JavaScript until it waits, charge the turn). Its task runs turns when woken; on an
//! executor the front end also runs one as it sends a request (`super::inline`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use deno_core::error::CoreError;
use isola_bindings::http::RequestId;
use tokio::sync::mpsc;

use super::Isolate;
use crate::exchange::IncomingRequest;
use crate::worker::WorkerSource;

/// What the rest of the node sends to an isolate.
#[derive(Debug)]
pub(super) enum Message {
    /// A request to run the worker for (boxed: it passes through the pool's queue, a channel
    /// and several futures, each a copy of the whole request when unboxed).
    Request(Box<IncomingRequest>),
    /// The client of this exchange went away.
    Abort(RequestId),
}

/// What an isolate reports after each turn, for the node to read without asking it.
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

/// A started isolate with what it serves from: its channel, its report, its worker.
pub(super) struct Served {
    pub(super) isolate: Isolate,
    receiver: mpsc::UnboundedReceiver<Message>,
    /// Whether the channel may still bring requests.
    open: bool,
    report: Arc<TurnReport>,
    worker: Arc<WorkerSource>,
    /// The waker of the isolate's task, from its last poll: a turn run elsewhere leaves the
    /// isolate's I/O and timers waking the task.
    waker: Option<Waker>,
    /// The end of serving, reached in a turn run elsewhere, for the task to return.
    ended: Option<Result<(), CoreError>>,
    /// Whether turns run elsewhere leave the event loop to the task (see [`Deferral`]).
    deferral: Deferral,
}

/// How often a turn run elsewhere that would poll the event loop itself leaves it to the task
/// instead, to find out whether the task's poll would now serve several requests.
const PROBE_EVERY: u32 = 16;

/// Whether a turn run in a connection's task while the executor serves other connections
/// leaves the event loop to the isolate's task. That pays when several requests of a round
/// reach this isolate and share the task's one poll (one busy deployment); it costs when only
/// one does (round robin over many tenants: each request's isolate would then be entered a
/// second time, from cold, for its poll). So the turn leaves it while a poll is owed anyway,
/// or when the last such poll served more than one request, and tries again every
/// [`PROBE_EVERY`] turns.
#[derive(Debug)]
struct Deferral {
    /// Requests dispatched by turns that left the loop to the task since its last poll.
    owed: u32,
    /// Requests the task's last poll after such turns served.
    last_batch: u32,
    /// Turns that polled the loop themselves since the last that left it.
    since_probe: u32,
}

impl Deferral {
    fn new() -> Self {
        Self {
            owed: 0,
            last_batch: 0,
            since_probe: PROBE_EVERY,
        }
    }

    /// Whether the next turn run elsewhere leaves the loop to the task, when the executor
    /// `serves_others` (other connections than the turn's); counts it.
    fn leaves_loop(&mut self, serves_others: bool) -> bool {
        let leaves = serves_others
            && (self.owed > 0 || self.last_batch > 1 || self.since_probe >= PROBE_EVERY);
        if leaves {
            self.owed += 1;
            self.since_probe = 0;
        } else {
            self.since_probe = self.since_probe.saturating_add(1);
        }
        leaves
    }

    /// The task is polling its loop: how many requests that served.
    fn polled(&mut self) {
        if self.owed > 0 {
            self.last_batch = self.owed;
            self.owed = 0;
        }
    }
}

impl Served {
    /// Serves `isolate` from `receiver`.
    pub(super) fn new(
        isolate: Isolate,
        receiver: mpsc::UnboundedReceiver<Message>,
        report: Arc<TurnReport>,
        worker: Arc<WorkerSource>,
    ) -> Self {
        Self {
            isolate,
            receiver,
            open: true,
            report,
            worker,
            waker: None,
            ended: None,
            deferral: Deferral::new(),
        }
    }

    /// The isolate's task was woken: runs a turn. `Ready` when serving ended (the channel
    /// closed and the isolate is idle, or it was killed or failed).
    pub(super) fn poll_task(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), CoreError>> {
        if let Some(ended) = self.ended.take() {
            return Poll::Ready(ended);
        }
        if !self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            self.waker = Some(cx.waker().clone());
        }
        self.deferral.polled();
        self.turn(cx, None)
    }

    /// Runs a turn for `request` now, outside the isolate's task (on its thread, with its
    /// residence entered): gives the request back when the isolate takes no requests now.
    pub(super) fn turn_for(
        &mut self,
        request: Box<IncomingRequest>,
    ) -> Result<(), Box<IncomingRequest>> {
        if !self.open
            || self.ended.is_some()
            || self.isolate.killed().is_some()
            || self.isolate.retired()
        {
            return Err(request);
        }
        // Taken out for the turn (which does not read it) rather than cloned: no reference
        // count moves per request.
        let Some(waker) = self.waker.take() else {
            return Err(request);
        };
        let turned = if self
            .deferral
            .leaves_loop(crate::executor::serves_other_connections())
        {
            let turned = self.dispatch_turn(request);
            // The event loop, once for all the requests of this round.
            waker.wake_by_ref();
            turned
        } else {
            self.turn(&mut Context::from_waker(&waker), Some(request))
        };
        if let Poll::Ready(ended) = turned {
            self.ended = Some(ended);
            waker.wake_by_ref();
        }
        self.waker = Some(waker);
        Ok(())
    }

    /// A turn that dispatches `request` and runs the microtasks it queued (an `async`
    /// handler's answer included), and leaves the rest of the event loop (ops, timers, V8's
    /// tasks, rejections) to the isolate's task, which the caller wakes. While the executor
    /// serves several connections, one poll of the event loop (~3k instructions for hello,
    /// with three microtask checkpoints) then serves all the requests its round dispatched,
    /// instead of one each.
    fn dispatch_turn(&mut self, request: Box<IncomingRequest>) -> Poll<Result<(), CoreError>> {
        let isolate = &mut self.isolate;
        isolate.enter();
        isolate.dispatch(request);
        if isolate.killed().is_none() {
            isolate.run_microtasks();
        }
        isolate.leave();
        self.settle(Poll::Pending)
    }

    /// One turn and its accounting: the CPU charged, the report updated, the pool told when
    /// requests are left waiting.
    fn turn(
        &mut self,
        cx: &mut Context<'_>,
        request: Option<Box<IncomingRequest>>,
    ) -> Poll<Result<(), CoreError>> {
        let isolate = &mut self.isolate;
        isolate.enter();
        let polled = serve_turn(isolate, &mut self.receiver, &mut self.open, request, cx);
        isolate.leave();
        self.settle(polled)
    }

    /// After a turn that `polled`: notes a long turn, updates the report, tells the pool when
    /// requests are left waiting, and ends serving when the turn killed the isolate.
    fn settle(&mut self, polled: Poll<Result<(), CoreError>>) -> Poll<Result<(), CoreError>> {
        let isolate = &mut self.isolate;
        if let Some(cpu_ms) = isolate.last_turn_was_long() {
            self.worker.note_long_turn(cpu_ms);
        }
        let waiting = isolate.pending_exchanges() > 0;
        let was_waiting = self.report.waiting();
        self.report.record(isolate.memory_in_use(), waiting);
        if waiting && !was_waiting {
            // Requests queued for this isolate (as it was about to run) may go elsewhere.
            isolate.tell_pool_waiting();
        }
        if isolate.killed().is_some() {
            // The turn took a request over its CPU limit (charged as the turn ended).
            return stop_taking_requests(&mut self.receiver);
        }
        polled
    }
}

/// One turn: take new requests (those in the channel, then `request`), run JavaScript until
/// it waits. `Ready` ends serving.
fn serve_turn(
    isolate: &mut Isolate,
    receiver: &mut mpsc::UnboundedReceiver<Message>,
    open: &mut bool,
    request: Option<Box<IncomingRequest>>,
    cx: &mut Context<'_>,
) -> Poll<Result<(), CoreError>> {
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
    if let Some(request) = request {
        isolate.dispatch(request);
        if isolate.killed().is_some() {
            return stop_taking_requests(receiver);
        }
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
) -> Poll<Result<(), CoreError>> {
    receiver.close();
    while receiver.try_recv().is_ok() {}
    Poll::Ready(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loop_is_left_to_the_task_while_its_polls_serve_several_requests() {
        let mut deferral = Deferral::new();
        assert!(
            !deferral.leaves_loop(false),
            "a lone connection's turn polls"
        );
        // Busy: the first turn tries; the next ones of the round join the owed poll.
        assert!(deferral.leaves_loop(true));
        assert!(deferral.leaves_loop(true));
        deferral.polled();
        assert!(
            deferral.leaves_loop(true),
            "the last poll served two requests"
        );
        deferral.polled();
        // One request per poll (another tenant's isolate each time): poll in place, and try
        // again after PROBE_EVERY turns.
        for _ in 0..PROBE_EVERY {
            assert!(!deferral.leaves_loop(true));
        }
        assert!(deferral.leaves_loop(true), "the probe");
        deferral.polled();
        assert!(!deferral.leaves_loop(true));
        // A poll with nothing owed (I/O, timers) changes nothing.
        deferral.polled();
        assert!(!deferral.leaves_loop(true));
    }
}
