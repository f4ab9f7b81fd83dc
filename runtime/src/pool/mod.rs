//! The isolates of one deployment: warm reuse, creation on demand up to `max_isolates`,
//! `max_requests_per_isolate` requests in flight per isolate (default one, which keeps CPU
//! accounting per request exact), a bounded queue with a timeout for bursts, idle eviction and
//! replacement of isolates that died or were killed. An isolate only ever serves the
//! deployment that created it.
//!
//! A queued request waits here with its message: when a request finishes (on the isolate's
//! thread, as it hands its response over), the next queued request is sent straight into the
//! freed isolate, so a busy isolate goes from one request to the next without sleeping.
//! Queued requests are timed out by the node's sweeper ([`Pool::time_out_waiters`]), not by
//! a timer each.

mod registry;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use isola_bindings::http::RequestId;

use crate::exchange::IncomingRequest;
use crate::isolate::StartError;
use crate::isolate::handle::IsolateThread;
use crate::lease::{Lease, Lender};
use crate::metrics::metrics;
use crate::worker::WorkerSource;

pub use registry::Registry;

/// A request could not get an isolate.
#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    /// Every isolate is busy and the queue is full.
    #[error("all {isolates} isolates are busy and {queued} requests are already queued")]
    QueueFull {
        /// `max_isolates`.
        isolates: u32,
        /// `max_queue`.
        queued: u32,
    },
    /// No isolate became free in time.
    #[error("no isolate became free within queue_timeout_ms ({0} ms)")]
    QueueTimeout(u64),
    /// The node's isolate memory budget is used up by busy isolates.
    #[error("the node's isolate memory budget ({0} MB) is used up by busy isolates")]
    MemoryBudget(u64),
    /// A new isolate failed to start.
    #[error("the worker could not be started: {0}")]
    Start(#[from] StartError),
}

/// A request sent into one of a deployment's isolates: what the front end may still tell
/// that isolate about it.
#[derive(Debug)]
pub struct Dispatched {
    isolate: Arc<IsolateThread>,
    id: RequestId,
}

impl Dispatched {
    /// Tells the isolate that the request's client went away (its `request.signal` aborts).
    pub fn abort(&self) {
        self.isolate.abort(self.id);
    }
}

/// One deployment's isolates.
#[derive(Debug)]
pub struct Pool {
    state: Mutex<State>,
    registry: Arc<Registry>,
}

#[derive(Debug)]
struct State {
    /// The code new isolates run; bumped with `generation` on every reload.
    worker: Arc<WorkerSource>,
    generation: u64,
    slots: Vec<Slot>,
    /// Isolates being created (they count against `max_isolates`).
    starting: u32,
    waiters: VecDeque<Waiter>,
}

/// A queued request and where to say what became of it.
#[derive(Debug)]
struct Waiter {
    request: Box<IncomingRequest>,
    placed: oneshot::Sender<Placed>,
    /// The executor thread its connection lives on, if any.
    executor: Option<usize>,
    since: Instant,
}

/// How long requests stay with the isolates on their connection's executor thread while
/// those are busy, rather than wake an idle isolate on another thread (measured on hello:
/// 0.49 → 0.01 eventfd writes per request, and 12 % less CPU per request). It applies only
/// while one of those isolates is running or about to run a request taken within this long
/// (not one whose requests wait on I/O): a queued request is passed over for younger ones
/// on the thread of the isolate that freed up, and a new request queues for its thread's
/// isolates, for at most this long, and then takes an isolate anywhere at the next chance
/// (a request finishing or arriving in the deployment, or the sweeper).
const LOCAL_FIRST_FOR: Duration = Duration::from_millis(1);

/// Which isolates [`State::take_warm`] may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// Only those on the given executor thread.
    Near,
    /// Any, those on the given executor thread first.
    Any,
}

#[derive(Debug)]
struct Slot {
    isolate: Arc<IsolateThread>,
    generation: u64,
    in_flight: u32,
    /// WebSockets open in the isolate: it is not evicted while it has any.
    sockets: u32,
    last_used: Instant,
}

/// What became of a queued request when capacity freed up.
#[derive(Debug)]
enum Placed {
    /// It was sent to this isolate (with its lease).
    Sent(Arc<IsolateThread>),
    /// Room to create a new isolate for it (counted in `starting`).
    Start(Box<IncomingRequest>),
}

/// A request on its way to an isolate.
enum Placing {
    Sent(Arc<IsolateThread>),
    /// Starting an isolate for it, or queued.
    Later(Pin<Box<dyn Future<Output = Result<Arc<IsolateThread>, AcquireError>> + Send>>),
}

/// What `dispatch` decided under the lock.
enum Decision {
    Ready(Arc<IsolateThread>, Box<IncomingRequest>),
    Start(Box<IncomingRequest>),
    /// Queued: the answer comes through the receiver, within the queue timeout.
    Wait(oneshot::Receiver<Placed>, Duration),
}

impl State {
    fn is_current(&self, slot: &Slot) -> bool {
        slot.generation == self.generation && slot.isolate.is_alive()
    }

    /// Whether `slot` may take one more request now.
    fn is_free(&self, slot: &Slot) -> bool {
        slot.generation == self.generation
            && slot.in_flight < self.worker.limits.max_requests_per_isolate.max(1)
            && slot.isolate.is_alive()
    }

    /// Takes a request slot on the least loaded free current isolate within `reach` of the
    /// executor thread `near` (among equals, one on `near`, then the most recently used, so
    /// the others can age out).
    fn take_warm(
        &mut self,
        near: Option<usize>,
        reach: Reach,
        now: Instant,
    ) -> Option<Arc<IsolateThread>> {
        let index = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| self.is_free(s) && (reach == Reach::Any || s.isolate.lives_on(near)))
            .min_by_key(|(_, s)| {
                (
                    s.in_flight,
                    !s.isolate.lives_on(near),
                    std::cmp::Reverse(s.last_used),
                )
            })?
            .0;
        let slot = &mut self.slots[index];
        slot.in_flight += 1;
        slot.last_used = now;
        Some(slot.isolate.clone())
    }

    /// Whether an isolate on the executor thread `executor` is likely to free up soon: it was
    /// taken within [`LOCAL_FIRST_FOR`] of `now` and its requests do not wait on I/O (so it
    /// is running them, or will at its thread's next turn).
    fn frees_soon_on(&self, executor: Option<usize>, now: Instant) -> bool {
        self.slots.iter().any(|s| {
            s.in_flight > 0
                && s.isolate.lives_on(executor)
                && self.is_current(s)
                && !s.isolate.waiting()
                && now.saturating_duration_since(s.last_used) < LOCAL_FIRST_FOR
        })
    }

    /// Whether a request on the executor thread `here`, whose isolates there are all taken,
    /// should queue for them rather than take an idle isolate on another thread (which would
    /// wake that thread): one of them frees up soon and an isolate elsewhere is free
    /// (otherwise the usual rules apply, which may start a new isolate).
    fn waits_near(&self, here: Option<usize>, now: Instant) -> bool {
        self.frees_soon_on(here, now)
            && self
                .slots
                .iter()
                .any(|s| self.is_free(s) && !s.isolate.lives_on(here))
    }

    /// Which isolates `waiter` may take from the executor thread `here`: only those on its
    /// own thread while one of them frees up soon and it has not waited [`LOCAL_FIRST_FOR`];
    /// any (its own thread's first) otherwise, and always off the executors (the sweeper).
    fn reach_for(&self, waiter: &Waiter, here: Option<usize>, now: Instant) -> Reach {
        if here.is_some()
            && now.saturating_duration_since(waiter.since) < LOCAL_FIRST_FOR
            && self.frees_soon_on(waiter.executor, now)
        {
            Reach::Near
        } else {
            Reach::Any
        }
    }

    /// The queued request to serve next from the executor thread `here` (whose isolate
    /// just freed up): the oldest whose connection lives on `here`, unless an older one has
    /// waited [`LOCAL_FIRST_FOR`]. Requests of other threads are left to those threads'
    /// isolates while one of them frees up soon; off the executors (the sweeper), the oldest.
    /// Returns it with its place in the queue, to put it back there if it cannot be served.
    fn next_waiter(&mut self, here: Option<usize>, now: Instant) -> Option<(usize, Waiter)> {
        let oldest = self.waiters.front()?;
        let index = if here.is_none()
            || oldest.executor == here
            || now.saturating_duration_since(oldest.since) >= LOCAL_FIRST_FOR
        {
            0
        } else {
            // Whether the last other thread asked about has an isolate freeing up soon: with
            // two executors every other waiter is on the same one (no allocation per call).
            let mut last: Option<(Option<usize>, bool)> = None;
            self.waiters.iter().position(|w| {
                if w.executor == here {
                    return true;
                }
                let frees_soon = match last {
                    Some((executor, known)) if executor == w.executor => known,
                    _ => {
                        let known = self.frees_soon_on(w.executor, now);
                        last = Some((w.executor, known));
                        known
                    }
                };
                !frees_soon
            })?
        };
        Some((index, self.waiters.remove(index)?))
    }

    /// Whether one more isolate may be created.
    fn has_room(&self) -> bool {
        let live = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
        live.saturating_add(self.starting) < self.worker.limits.max_isolates.max(1)
    }

    /// Drops isolates that died or belong to an older generation once nothing runs in them.
    fn prune(&mut self) {
        let generation = self.generation;
        self.slots.retain(|s| {
            s.in_flight > 0
                || (s.isolate.is_alive() && (s.sockets > 0 || s.generation == generation))
        });
    }

    /// Whether the queue has room for one more request. Requests whose clients gave up are
    /// dropped from it first, but only when it looks full: serving skips them anyway, and
    /// scanning a long queue on every request would cost each one.
    fn queue_has_room(&mut self, max_queue: usize) -> bool {
        if self.waiters.len() >= max_queue {
            self.waiters.retain(|w| !w.placed.is_closed());
        }
        self.waiters.len() < max_queue
    }

    /// Gives back a request slot on the isolate `id`, which was last used `now`.
    fn untake(&mut self, id: u64, now: Instant) {
        if let Some(slot) = self.slots.iter_mut().find(|s| s.isolate.id() == id) {
            slot.in_flight = slot.in_flight.saturating_sub(1);
            slot.last_used = now;
        }
    }
}

impl Pool {
    /// Starts the deployment's first isolate (proving the worker starts) and, in the
    /// background, the rest of its `min_isolates`.
    pub async fn start(
        worker: Arc<WorkerSource>,
        registry: Arc<Registry>,
    ) -> Result<Arc<Self>, StartError> {
        // Room under the node's budget (idle isolates of other deployments go first); if busy
        // isolates use it all, the deployment still starts: proving it works matters more.
        if let Err(error) = registry.make_room() {
            tracing::warn!(worker = %worker.name, "starting over the isolate memory budget: {error}");
        }
        let first = IsolateThread::spawn(worker.clone()).await?;
        let pool = Arc::new(Self {
            state: Mutex::new(State {
                worker,
                generation: 0,
                slots: vec![Slot {
                    isolate: Arc::new(first),
                    generation: 0,
                    in_flight: 0,
                    sockets: 0,
                    last_used: Instant::now(),
                }],
                starting: 0,
                waiters: VecDeque::new(),
            }),
            registry: registry.clone(),
        });
        registry.register(&pool);
        pool.top_up();
        Ok(pool)
    }

    /// The worker new requests run.
    pub fn worker(&self) -> Arc<WorkerSource> {
        self.lock().worker.clone()
    }

    /// Starts `worker` and, if it starts, sends new requests to it; isolates running the old
    /// code finish what they have in flight and are dropped.
    pub async fn reload(self: &Arc<Self>, worker: Arc<WorkerSource>) -> Result<(), StartError> {
        let isolate = IsolateThread::spawn(worker.clone()).await?;
        let mut state = self.lock();
        state.generation += 1;
        state.worker = worker;
        let generation = state.generation;
        let now = Instant::now();
        state.slots.push(Slot {
            isolate: Arc::new(isolate),
            generation,
            in_flight: 0,
            sockets: 0,
            last_used: now,
        });
        state.prune();
        self.serve_waiters(&mut state, now);
        Ok(())
    }

    /// Sends one request to an isolate: a warm one, a new one, or one that frees up while the
    /// request waits in the bounded queue. The decision (and the send to a warm isolate) is
    /// made at the call; the future only waits for the other ways, boxed: they hold large
    /// futures (a cold start) that would otherwise make every request's future as large,
    /// and copied as often.
    pub fn dispatch(
        self: &Arc<Self>,
        request: Box<IncomingRequest>,
    ) -> impl Future<Output = Result<Dispatched, AcquireError>> + Send + use<> {
        let id = request.context.id;
        let placing: Result<Placing, AcquireError> = match self.decide(request) {
            Ok(Decision::Ready(isolate, request)) => match self.send(isolate, request) {
                Ok(isolate) => Ok(Placing::Sent(isolate)),
                Err(request) => Ok(Placing::Later(Box::pin(self.clone().place(request)))),
            },
            Ok(Decision::Start(request)) => {
                Ok(Placing::Later(Box::pin(self.clone().start_for(request))))
            }
            Ok(Decision::Wait(rx, timeout)) => {
                Ok(Placing::Later(Box::pin(self.clone().wait(rx, timeout))))
            }
            Err(error) => Err(error),
        };
        async move {
            let isolate = match placing? {
                Placing::Sent(isolate) => isolate,
                Placing::Later(placing) => placing.await?,
            };
            Ok(Dispatched { isolate, id })
        }
    }

    /// Finds `request` an isolate and sends it there; returns the isolate it went to (the
    /// slow way of [`Self::dispatch`], when an isolate died as the request was sent to it).
    async fn place(
        self: Arc<Self>,
        request: Box<IncomingRequest>,
    ) -> Result<Arc<IsolateThread>, AcquireError> {
        self.dispatch(request)
            .await
            .map(|dispatched| dispatched.isolate)
    }

    /// Where `request` goes now: a warm isolate, a new one, or the queue (or nowhere: full).
    fn decide(self: &Arc<Self>, request: Box<IncomingRequest>) -> Result<Decision, AcquireError> {
        let mut state = self.lock();
        state.prune();
        let limits = &state.worker.limits;
        let (max_isolates, max_queue, timeout) = (
            limits.max_isolates,
            limits.max_queue,
            limits.queue_timeout(),
        );
        let here = crate::executor::current();
        let now = Instant::now();
        if let Some(isolate) = state.take_warm(here, Reach::Near, now) {
            return Ok(Decision::Ready(isolate, request));
        }
        let queue_near = state.waits_near(here, now) && state.queue_has_room(max_queue as usize);
        if !queue_near && !state.waiters.is_empty() && state.slots.iter().any(|s| state.is_free(s))
        {
            // Queued requests go first to a free isolate (one of them may have waited out
            // LOCAL_FIRST_FOR for a busy isolate on its own thread).
            self.serve_waiters(&mut state, now);
        }
        let warm = if queue_near {
            None
        } else {
            state.take_warm(here, Reach::Any, now)
        };
        if let Some(isolate) = warm {
            Ok(Decision::Ready(isolate, request))
        } else if !queue_near && state.has_room() {
            state.starting += 1;
            Ok(Decision::Start(request))
        } else if queue_near || state.queue_has_room(max_queue as usize) {
            let (placed, rx) = oneshot::channel();
            state.waiters.push_back(Waiter {
                request,
                placed,
                executor: here,
                since: now,
            });
            Ok(Decision::Wait(rx, timeout))
        } else {
            refused("queue_full");
            Err(AcquireError::QueueFull {
                isolates: max_isolates,
                queued: max_queue,
            })
        }
    }

    /// Sends `request` with a lease on `isolate` (whose slot it already took), running the
    /// isolate's turn for it now when the isolate lives on this executor (no lock is held
    /// here, so the response may hand its lease back within); if the isolate died meanwhile,
    /// the request comes back, to be placed again.
    fn send(
        self: &Arc<Self>,
        isolate: Arc<IsolateThread>,
        mut request: Box<IncomingRequest>,
    ) -> Result<Arc<IsolateThread>, Box<IncomingRequest>> {
        request.lease = Some(Lease::new(self.clone(), isolate.id()));
        match isolate.send_request_now(request) {
            Ok(()) => Ok(isolate),
            Err(mut request) => {
                drop(request.lease.take());
                Err(request)
            }
        }
    }

    async fn wait(
        self: Arc<Self>,
        rx: oneshot::Receiver<Placed>,
        timeout: Duration,
    ) -> Result<Arc<IsolateThread>, AcquireError> {
        // Dropped unanswered: it waited past the timeout (`Pool::time_out_waiters`).
        let placed = rx.await.map_err(|_| queue_timeout(timeout))?;
        match placed {
            Placed::Sent(isolate) => Ok(isolate),
            // Boxed: a cold start's future is large, and every queued request's would be.
            Placed::Start(request) => Box::pin(self.start_for(request)).await,
        }
    }

    /// Hands freed capacity to queued requests, oldest first: sends them into warm isolates
    /// (this may run on an isolate's thread as it finishes a request) or gives them room to
    /// start one.
    fn serve_waiters(self: &Arc<Self>, state: &mut State, now: Instant) {
        if state.waiters.is_empty() {
            return;
        }
        let here = crate::executor::current();
        while let Some((place, mut waiter)) = state.next_waiter(here, now) {
            if waiter.placed.is_closed() {
                continue;
            }
            let reach = state.reach_for(&waiter, here, now);
            if let Some(isolate) = state.take_warm(waiter.executor, reach, now) {
                waiter.request.lease = Some(Lease::new(self.clone(), isolate.id()));
                match isolate.send_request(waiter.request) {
                    Ok(()) => {
                        let _ = waiter.placed.send(Placed::Sent(isolate));
                    }
                    Err(mut request) => {
                        // It died just now: take the slot back by hand (dropping the lease
                        // here would re-enter this lock) and try the next isolate.
                        if let Some(lease) = request.lease.take() {
                            lease.disarm();
                        }
                        state.untake(isolate.id(), now);
                        state.prune();
                        waiter.request = request;
                        state.waiters.insert(place, waiter);
                    }
                }
            } else if state.has_room() && !state.slots.iter().any(|s| state.is_free(s)) {
                state.starting += 1;
                if let Err(Placed::Start(_)) = waiter.placed.send(Placed::Start(waiter.request)) {
                    state.starting -= 1;
                }
            } else {
                state.waiters.insert(place, waiter);
                return;
            }
        }
    }

    /// Drops queued requests that waited `queue_timeout_ms` by `now` (their `wait` then fails
    /// with [`AcquireError::QueueTimeout`]) and hands free isolates to the rest (a request
    /// queued for the busy isolates on its own thread while one elsewhere was free, whose
    /// isolates then stayed busy). The node's sweeper calls it every 100 ms, as it drops idle
    /// isolates, so a request gives up at most that late. A timer per queued request did this
    /// before: registering it woke the thread's I/O driver with a system call (an eventfd
    /// write) on most requests under load.
    fn time_out_waiters(self: &Arc<Self>, now: Instant) {
        let expired = {
            let mut state = self.lock();
            if state.waiters.is_empty() {
                return;
            }
            let timeout = state.worker.limits.queue_timeout();
            let waited_out = |w: &Waiter| now.saturating_duration_since(w.since) >= timeout;
            let expired = if state.waiters.iter().any(waited_out) {
                let (expired, waiting): (VecDeque<Waiter>, VecDeque<Waiter>) =
                    std::mem::take(&mut state.waiters)
                        .into_iter()
                        .partition(waited_out);
                state.waiters = waiting;
                expired
            } else {
                VecDeque::new()
            };
            self.serve_waiters(&mut state, now);
            expired
        };
        // Dropped outside the lock: a request may hold a body and a connection's parts.
        drop(expired);
    }

    /// Starts an isolate of the current worker, for which room was reserved (`starting`),
    /// after making room under the node's memory budget. The caller gives the reservation
    /// back under the same lock in which it adds the isolate.
    async fn start_isolate(&self) -> (Result<IsolateThread, AcquireError>, u64) {
        let (worker, generation) = {
            let state = self.lock();
            (state.worker.clone(), state.generation)
        };
        let started = match self.registry.make_room() {
            Ok(()) => IsolateThread::spawn(worker)
                .await
                .map_err(AcquireError::from),
            Err(error) => Err(error),
        };
        (started, generation)
    }

    /// Creates an isolate for which room was reserved (`starting`) and sends it `request`.
    /// The start runs in a task of its own, so a request that gives up (its client left, its
    /// `wall_ms` passed) neither cancels it nor leaks the reservation: the isolate joins the
    /// pool either way, and its capacity goes to whoever waits.
    async fn start_for(
        self: Arc<Self>,
        request: Box<IncomingRequest>,
    ) -> Result<Arc<IsolateThread>, AcquireError> {
        let (started_tx, started_rx) = oneshot::channel();
        let pool = self.clone();
        tokio::spawn(async move { pool.start_reserved(started_tx).await });
        match started_rx.await {
            Ok(Ok(isolate)) => match self.send(isolate, request) {
                Ok(isolate) => Ok(isolate),
                Err(request) => self.place(request).await,
            },
            Ok(Err(error)) => Err(error),
            Err(_) => Err(AcquireError::Start(StartError::Runtime(
                "the isolate start was abandoned".to_owned(),
            ))),
        }
    }

    /// Starts an isolate for a reservation and adds it to the pool: with a request slot
    /// taken for the requester when it still waits (`started`), else idle for the queue.
    async fn start_reserved(
        self: Arc<Self>,
        started: oneshot::Sender<Result<Arc<IsolateThread>, AcquireError>>,
    ) {
        let (outcome, generation) = self.start_isolate().await;
        let mut state = self.lock();
        state.starting -= 1;
        match outcome {
            Ok(isolate) => {
                metrics()
                    .cold_starts
                    .with_label_values(&[&*state.worker.name])
                    .inc();
                let isolate = Arc::new(isolate);
                let now = Instant::now();
                state.slots.push(Slot {
                    isolate: isolate.clone(),
                    generation,
                    in_flight: 1,
                    sockets: 0,
                    last_used: now,
                });
                if started.send(Ok(isolate.clone())).is_err() {
                    state.untake(isolate.id(), now);
                    self.serve_waiters(&mut state, now);
                }
            }
            Err(error) => {
                self.serve_waiters(&mut state, Instant::now());
                let _ = started.send(Err(error));
            }
        }
    }

    /// Drops isolates idle for longer than `idle_timeout_ms`, keeping `min_isolates`.
    fn evict_idle(&self, now: Instant) -> usize {
        let mut state = self.lock();
        let limits = &state.worker.limits;
        let (idle_timeout, min) = (limits.idle_timeout(), limits.min_isolates as usize);
        let mut evicted = 0;
        while state.slots.len() > min {
            let Some(index) = state.slots.iter().position(|s| {
                s.in_flight == 0
                    && s.sockets == 0
                    && now.saturating_duration_since(s.last_used) >= idle_timeout
            }) else {
                break;
            };
            state.slots.swap_remove(index);
            evicted += 1;
            metrics()
                .isolates_evicted
                .with_label_values(&["idle"])
                .inc();
        }
        evicted
    }

    /// Starts isolates in the background until `min_isolates` are alive or starting.
    fn top_up(self: &Arc<Self>) {
        let missing = {
            let mut state = self.lock();
            state.prune();
            let min = state.worker.limits.min_isolates;
            let current = state.slots.iter().filter(|s| state.is_current(s)).count();
            let have = u32::try_from(current).unwrap_or(u32::MAX) + state.starting;
            let missing = min.saturating_sub(have);
            state.starting += missing;
            missing
        };
        for _ in 0..missing {
            let pool = self.clone();
            tokio::spawn(async move { pool.start_spare().await });
        }
    }

    async fn start_spare(self: Arc<Self>) {
        let (started, generation) = self.start_isolate().await;
        let mut state = self.lock();
        state.starting -= 1;
        match started {
            Ok(isolate) => {
                let now = Instant::now();
                state.slots.push(Slot {
                    isolate: Arc::new(isolate),
                    generation,
                    in_flight: 0,
                    sockets: 0,
                    last_used: now,
                });
                self.serve_waiters(&mut state, now);
            }
            Err(error) => {
                tracing::warn!(worker = %state.worker.name, "cannot start a warm isolate: {error}");
            }
        }
    }

    /// Idle isolates (nothing in flight) with their last use and memory, for LRU eviction.
    fn idle_isolates(&self) -> Vec<(Instant, Arc<IsolateThread>)> {
        let state = self.lock();
        let min = state.worker.limits.min_isolates as usize;
        if state.slots.len() <= min {
            return Vec::new();
        }
        state
            .slots
            .iter()
            .filter(|s| s.in_flight == 0 && s.sockets == 0)
            .map(|s| (s.last_used, s.isolate.clone()))
            .collect()
    }

    /// Drops `isolate` if it is still idle; true if it was dropped.
    fn evict(&self, isolate: &Arc<IsolateThread>) -> bool {
        let mut state = self.lock();
        let before = state.slots.len();
        state
            .slots
            .retain(|s| !(s.in_flight == 0 && s.sockets == 0 && Arc::ptr_eq(&s.isolate, isolate)));
        state.slots.len() < before
    }

    /// How many isolates the deployment has in each state, and its queue.
    fn census(&self) -> crate::metrics::Census {
        let state = self.lock();
        let busy = state
            .slots
            .iter()
            .filter(|s| s.in_flight > 0 || s.sockets > 0)
            .count();
        crate::metrics::Census {
            worker: state.worker.name.clone(),
            idle: state.slots.len() - busy,
            busy,
            starting: state.starting as usize,
            queued: state
                .waiters
                .iter()
                .filter(|w| !w.placed.is_closed())
                .count(),
            memory_bytes: state.slots.iter().map(|s| s.isolate.memory_bytes()).sum(),
        }
    }

    /// Heap + external memory of this deployment's isolates, as they last reported it.
    fn memory_bytes(&self) -> u64 {
        self.lock()
            .slots
            .iter()
            .map(|s| s.isolate.memory_bytes())
            .sum()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent-enough counters; keep serving.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Lender for Pool {
    /// A request finished with the isolate `slot`: free its slot, drop the isolate if it died
    /// or runs old code, and give the capacity to the oldest queued request.
    fn give_back(self: Arc<Self>, slot: u64) {
        let now = Instant::now();
        let mut state = self.lock();
        state.untake(slot, now);
        state.prune();
        self.serve_waiters(&mut state, now);
    }

    /// The isolate `slot` waits on its requests' I/O: queued requests left for it (as it
    /// was about to free up) may take free isolates elsewhere now.
    fn waits(self: Arc<Self>, _slot: u64) {
        let mut state = self.lock();
        if !state.waiters.is_empty() {
            // The clock is read only when someone waits.
            self.serve_waiters(&mut state, Instant::now());
        }
    }

    /// The isolate `slot` has one more (`open`) or one fewer WebSocket open.
    fn hold_socket(&self, slot: u64, open: bool) {
        let mut state = self.lock();
        if let Some(slot) = state.slots.iter_mut().find(|s| s.isolate.id() == slot) {
            slot.sockets = if open {
                slot.sockets.saturating_add(1)
            } else {
                slot.sockets.saturating_sub(1)
            };
            slot.last_used = Instant::now();
        }
        if !open {
            state.prune();
        }
    }
}

fn refused(reason: &str) {
    metrics()
        .requests_refused
        .with_label_values(&[reason])
        .inc();
}

fn queue_timeout(timeout: Duration) -> AcquireError {
    refused("queue_timeout");
    AcquireError::QueueTimeout(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX))
}
