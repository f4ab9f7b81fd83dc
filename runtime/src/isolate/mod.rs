//! One V8 isolate running one worker: started from the snapshot, the worker module evaluated,
//! requests dispatched into JavaScript, the event loop polled by the isolate's own thread.

pub mod code_cache;
mod error;
pub(crate) mod handle;
mod host;
pub(crate) mod inline;
mod limits;
pub use limits::set_allocator_release;
mod module_loader;
mod served;
pub(crate) mod spare;
mod thread;

#[cfg(test)]
pub(crate) use served::TurnReport;

use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use deno_core::{JsRuntime, PollEventLoopOptions, RuntimeOptions, v8};
use isola_bindings::body::RequestBodyResource;
use isola_bindings::clock::TurnClock;
use isola_bindings::console::WorkerName;
use isola_bindings::context::{ContextTable, SharedContexts};
use isola_bindings::extensions::{IsolateExtensionOptions, fetch_options, for_isolate};
use isola_bindings::http::{
    ExchangeEvent, Exchanges, HandlerError, Retired, SharedExchanges, one_byte_string,
};
use isola_bindings::outbound::{OutboundPolicy, StaticResolver, guard};
use tokio::sync::mpsc;

pub use error::StartError;
use limits::{Enforcer, Limit, MemoryGuard};
use module_loader::WorkerModuleLoader;

use crate::exchange::IncomingRequest;
use crate::snapshot::{RESIDUAL_ESM, RESIDUAL_JS, SNAPSHOT};
use crate::worker::WorkerSource;

/// The JavaScript functions Rust calls (from `js/10_fetch_event.js`).
struct Entrypoints {
    dispatch: v8::Global<v8::Function>,
    finish: v8::Global<v8::Function>,
}

/// A started isolate with the worker loaded and ready for requests.
pub(crate) struct Isolate {
    /// Declared (so dropped) before the runtime, whose isolate it refers to.
    enforcer: Enforcer,
    runtime: host::Runtime,
    entry: Entrypoints,
    /// The isolate's V8 context, held here so a request enters it by reference:
    /// `deno_core::scope!` clones `main_context()`, a global handle made and freed per call
    /// (1 % of the CPU round robin over 1,000 tenants).
    context: v8::Global<v8::Context>,
    events: mpsc::UnboundedReceiver<ExchangeEvent>,
    /// The contexts of the requests live in this isolate.
    contexts: SharedContexts,
    /// Where finished requests' CPU time and subrequests are counted.
    meters: std::sync::Arc<crate::metrics::WorkerMeters>,
    /// Heap + external bytes after the last turn.
    memory_used: u64,
    /// Whether OpState has the [`IsolateHolder`] yet (from the first request's lease).
    holder_known: bool,
    /// The worker's clock, retirement flag and exchanges, as in OpState (read there by ops),
    /// held here so that a turn reaches them without a lookup in OpState's map.
    clock: TurnClock,
    retired: Retired,
    exchanges: SharedExchanges,
}

/// How this isolate is held for a WebSocket a worker opens when no request's lease is at hand
/// (from `waitUntil` work after the response): taken from the first lease it was lent.
struct IsolateHolder(crate::lease::Holder);

/// An isolate created from the snapshot with no worker loaded yet: the expensive part of a
/// start (V8 deserialising the snapshot), which spares do ahead of time. Its heap limit is
/// fixed here, so it only takes workers with the same `memory_mb`.
pub(crate) struct Blank {
    runtime: host::Runtime,
    memory: MemoryGuard,
    memory_mb: u64,
    loader: Rc<WorkerModuleLoader>,
    events: mpsc::UnboundedReceiver<ExchangeEvent>,
    contexts: SharedContexts,
}

impl Blank {
    /// Creates an isolate from the snapshot on this thread, for a worker of `memory_mb`.
    pub(crate) fn create(memory_mb: u64) -> Result<Self, StartError> {
        let _deserialising = crate::executor::deserialising();
        let (events_tx, events) = mpsc::unbounded_channel();
        let limit_bytes =
            usize::try_from(memory_mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX);
        let (memory, create_params) = MemoryGuard::new(limit_bytes);
        let contexts = ContextTable::shared();
        let extensions = for_isolate(IsolateExtensionOptions {
            worker: WorkerName("(spare)".into()),
            exchanges: Exchanges::new(events_tx, contexts.clone()),
            permissions: isola_bindings::outbound::permissions().map_err(StartError::fault)?,
            resolver: Arc::new(StaticResolver::new(
                &Default::default(),
                Arc::new(OutboundPolicy::new(&Default::default())),
            )),
            memory: memory.account(),
        });
        let loader = Rc::new(WorkerModuleLoader::default());
        let runtime = host::Runtime::new(
            JsRuntime::try_new(RuntimeOptions {
                startup_snapshot: Some(SNAPSHOT),
                create_params: Some(create_params),
                residual_lazy_js_sources: RESIDUAL_JS,
                residual_lazy_esm_sources: RESIDUAL_ESM,
                extensions,
                module_loader: Some(loader.clone()),
                ..Default::default()
            })
            .map_err(StartError::fault)?,
        );
        Ok(Self {
            runtime,
            memory,
            memory_mb,
            loader,
            events,
            contexts,
        })
    }

    /// The `memory_mb` this isolate was made for.
    pub(crate) fn memory_mb(&self) -> u64 {
        self.memory_mb
    }
}

impl Isolate {
    /// Creates an isolate from the snapshot and evaluates the worker's module in it.
    pub(crate) async fn start(worker: &WorkerSource) -> Result<Self, StartError> {
        let blank = Blank::create(worker.limits.memory_mb)?;
        Self::load(blank, worker).await
    }

    /// Gives a blank isolate its worker: name, outbound policy, limits, then the module's
    /// evaluation (under `startup_cpu_ms`).
    pub(crate) async fn load(blank: Blank, worker: &WorkerSource) -> Result<Self, StartError> {
        let Blank {
            mut runtime,
            memory,
            loader,
            events,
            contexts,
            ..
        } = blank;
        loader.set_worker(worker.graph.clone(), worker.code_cache.clone());
        {
            let state = runtime.op_state();
            let mut state = state.borrow_mut();
            state.put(WorkerName(worker.name.clone()));
            state.put(isola_bindings::console::WorkerVersion(
                worker.meters.version().clone(),
            ));
            state.put(isola_bindings::console::ConsoleTapSlot(
                std::sync::Arc::new(crate::tail::ConsoleToTails {
                    tails: worker.meters.tails().clone(),
                    secrets: worker.secrets.clone(),
                }),
            ));
            state.put(fetch_options(worker.resolver.clone()));
            if let Some(caches) = &worker.caches {
                state.put(isola_bindings::cache::CacheSlot(caches.clone()));
            }
            state.put(isola_bindings::websocket::SocketLimits {
                message_max_bytes: usize::try_from(worker.limits.websocket_message_max_bytes)
                    .unwrap_or(usize::MAX),
                send_buffer_bytes: usize::try_from(worker.limits.websocket_send_buffer_bytes)
                    .unwrap_or(usize::MAX),
                max_per_isolate: worker.limits.websocket_max_per_isolate as usize,
                idle_timeout: worker.limits.websocket_idle_timeout(),
            });
            state.put(isola_bindings::websocket::SocketResolver(
                worker.resolver.clone(),
            ));
            state.put(isola_bindings::websocket::SocketPin(Rc::new(pin_socket)));
        }
        restrict_code_generation(&mut runtime, worker);
        guard::install(
            worker.outbound.clone(),
            &worker.name,
            worker.limits.max_subrequests,
            contexts.clone(),
        );
        // Atomics.wait would block the isolate's thread without spending CPU.
        runtime.v8_isolate().set_allow_atomics_wait(false);
        let enforcer = Enforcer::install(&mut runtime, &worker.limits, memory);
        runtime.op_state().borrow_mut().put(enforcer.turn_split());
        enforcer.enter(Limit::StartupCpu);
        let loaded = Self::load_worker(&mut runtime, worker).await;
        let memory_used = enforcer.leave(&mut runtime, &mut contexts.borrow_mut()) as u64;
        if let Some(limit) = enforcer.killed() {
            crate::metrics::metrics()
                .isolate_kills
                .with_label_values(&[&*worker.name, limit.key()])
                .inc();
            return Err(StartError::LimitExceeded(limit.key()));
        }
        let entry = loaded?;
        let context = runtime.main_context();
        let (clock, retired, exchanges) = {
            let state = runtime.op_state();
            let state = state.borrow();
            (
                state.borrow::<TurnClock>().clone(),
                state.borrow::<Retired>().clone(),
                state.borrow::<SharedExchanges>().clone(),
            )
        };
        Ok(Self {
            clock,
            retired,
            exchanges,
            runtime,
            enforcer,
            entry,
            context,
            events,
            contexts,
            meters: worker.meters.clone(),
            memory_used,
            holder_known: false,
        })
    }

    /// Evaluates the worker's module (its top level) and finds the JavaScript entry points.
    async fn load_worker(
        runtime: &mut JsRuntime,
        worker: &WorkerSource,
    ) -> Result<Entrypoints, StartError> {
        let internal = take_internal(runtime)?;
        call_internal(runtime, &internal, "init", &[])?;

        // The worker's own WebAssembly modules are compiled as the graph loads (no worker code
        // runs then), also where compiling WebAssembly from bytes is refused.
        LOADING_MODULES.set(true);
        let loaded = runtime.load_main_es_module(&worker.specifier).await;
        LOADING_MODULES.set(false);
        let module_id = loaded.map_err(|e| StartError::from_core(e, worker))?;
        let namespace = runtime
            .get_module_namespace(module_id)
            .map_err(StartError::fault)?;
        if !has_exports(runtime, &namespace) {
            // Service-worker syntax: vars are globals, defined before the script runs.
            call_internal(
                runtime,
                &internal,
                "installGlobals",
                &[JsArg::Str(&worker.vars_json)],
            )?;
        }
        let evaluation = runtime.mod_evaluate(module_id);
        runtime
            .with_event_loop_future(evaluation, PollEventLoopOptions::default())
            .await
            .map_err(|e| StartError::from_core(e, worker))?;
        // A top-level throw surfaces as a rejection that the next event-loop turn reports.
        std::future::poll_fn(|cx| {
            let _ = runtime.poll_event_loop(cx, PollEventLoopOptions::default());
            Poll::Ready(())
        })
        .await;
        if let Some(thrown) = call_internal(runtime, &internal, "takeStartupError", &[])? {
            return Err(StartError::Evaluation(thrown));
        }

        let namespace_value = {
            deno_core::scope!(scope, runtime);
            let local = v8::Local::new(scope, &namespace);
            v8::Global::new(scope, v8::Local::<v8::Value>::from(local))
        };
        let problem = call_internal(
            runtime,
            &internal,
            "setHandler",
            &[
                JsArg::Value(&namespace_value),
                JsArg::Str(&worker.vars_json),
                JsArg::Str(&worker.limits.wait_until_ms.to_string()),
            ],
        )?;
        if let Some(problem) = problem {
            return Err(StartError::NoHandler(problem));
        }
        let entry = Entrypoints {
            dispatch: internal_function(runtime, &internal, "dispatch")?,
            finish: internal_function(runtime, &internal, "finish")?,
        };
        Ok(entry)
    }

    /// Hands a request to the worker. The response arrives through the request's responder.
    pub(crate) fn dispatch(&mut self, request: Box<IncomingRequest>) {
        let IncomingRequest {
            context,
            method,
            url,
            headers,
            body,
            responder,
            lease,
            write_timeout,
        } = *request;
        let id = context.id;
        let op_state = self.runtime.op_state();
        let body_rid = {
            let mut state = op_state.borrow_mut();
            if !self.holder_known
                && let Some(holder) = lease.as_ref().and_then(crate::lease::Lease::holder)
            {
                state.put(IsolateHolder(holder));
                self.holder_known = true;
            }
            let guard = lease.map(|lease| Box::new(lease) as isola_bindings::http::Guard);
            self.exchanges
                .borrow_mut()
                .insert(&context, responder, guard, write_timeout);
            body.map(|chunks| state.resource_table.add(RequestBodyResource::new(chunks)))
        };
        // The worker takes them when it reads them (`op_isola_request_headers`).
        self.contexts.borrow_mut().keep_headers(id, headers);
        self.enforcer.request_opened(&self.contexts.borrow());
        let failure = {
            v8::scope_with_context!(let scope, self.runtime.v8_isolate(), &self.context);
            let args: [v8::Local<v8::Value>; 4] = [
                v8::Number::new(scope, id as f64).into(),
                method_value(scope, &method),
                if url.is_ascii() {
                    one_byte_string(scope, url.as_bytes())
                } else {
                    v8::String::new(scope, &url)
                        .map_or_else(|| v8::undefined(scope).into(), Into::into)
                },
                match body_rid {
                    Some(rid) => v8::Integer::new_from_unsigned(scope, rid).into(),
                    None => v8::null(scope).into(),
                },
            ];
            let dispatch = v8::Local::new(scope, &self.entry.dispatch);
            v8::tc_scope!(let scope, scope);
            let receiver = v8::undefined(scope).into();
            match dispatch.call(scope, receiver, &args) {
                Some(_) => None,
                None => Some(describe_exception(scope)),
            }
        };
        // A killed isolate's exchanges are failed together once it stops taking requests.
        if let Some(message) = failure
            && self.killed().is_none()
        {
            self.exchanges
                .borrow_mut()
                .fail_with(id, HandlerError::handler(message));
        }
    }

    /// Polls the event loop and forwards exchange events. `Ready(Ok)` means idle.
    pub(crate) fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), deno_core::error::CoreError>> {
        while let Poll::Ready(Some(event)) = self.events.poll_recv(cx) {
            self.finish(event);
        }
        self.runtime
            .poll_event_loop(cx, PollEventLoopOptions::default())
    }

    /// Runs the microtasks JavaScript queued (promise reactions, `queueMicrotask`) until none is
    /// left, as the event loop does first on each poll; an exception one throws reaches the
    /// runtime's message handler, and so the next poll of the event loop, as it would there.
    pub(crate) fn run_microtasks(&mut self) {
        v8::scope_with_context!(let scope, self.runtime.v8_isolate(), &self.context);
        scope.perform_microtask_checkpoint();
    }

    /// Heap + external (ArrayBuffer) memory after the last turn, as the memory limit measured
    /// it: what counts against the node's budget.
    pub(crate) fn memory_in_use(&self) -> u64 {
        self.memory_used
    }

    /// Whether the isolate should be discarded once its responses are out: its `waitUntil`
    /// work ran out of time, or its thread could not leave background priority.
    pub(crate) fn retired(&self) -> bool {
        self.enforcer.stuck_in_background() || self.retired.is_retired()
    }

    /// Number of exchanges still waiting for the worker's response.
    pub(crate) fn pending_exchanges(&self) -> usize {
        self.exchanges.borrow().len()
    }

    /// JavaScript is about to run for requests: CPU is counted against `cpu_ms`, and the
    /// worker's clock moves to now (it stands still until the next turn).
    pub(crate) fn enter(&self) {
        let now = self.enforcer.enter(Limit::Cpu);
        self.clock.tick_at(now);
    }

    /// JavaScript stopped running: the event loop waits for I/O or requests. The turn's CPU
    /// time is charged to the requests it ran for (see [`limits`]).
    pub(crate) fn leave(&mut self) {
        let mut contexts = self.contexts.borrow_mut();
        self.memory_used = self.enforcer.leave(&mut self.runtime, &mut contexts) as u64;
        for usage in contexts.take_finished() {
            self.meters.usage(usage.cpu_ns, usage.subrequests);
        }
    }

    /// Tells the deployment's pool that this isolate's requests wait (see
    /// [`crate::lease::Lender::waits`]).
    pub(crate) fn tell_pool_waiting(&self) {
        let holder = self
            .runtime
            .op_state()
            .borrow()
            .try_borrow::<IsolateHolder>()
            .map(|holder| holder.0.clone());
        if let Some(holder) = holder {
            holder.tell_waiting();
        }
    }

    /// The CPU time (ms) per request of the last turn if it ran long (see
    /// `WorkerSource::runs_long_turns`).
    pub(crate) fn last_turn_was_long(&self) -> Option<f64> {
        self.enforcer.last_turn_was_long()
    }

    /// Logs a kill for the post-mortem: deployment, requests in flight, limit, measured value
    /// and the JavaScript stack at the kill where V8 could provide it.
    pub(crate) fn log_kill(&self, worker: &str) {
        let Some((kill, stack)) = self.enforcer.kill_report() else {
            return;
        };
        let requests: Vec<std::sync::Arc<str>> = self.contexts.borrow().request_ids();
        crate::metrics::metrics()
            .isolate_kills
            .with_label_values(&[worker, kill.limit.key()])
            .inc();
        let unit = if kill.limit == Limit::Memory {
            "MB"
        } else {
            "ms"
        };
        tracing::warn!(
            worker,
            request_ids = requests.join(","),
            limit = kill.limit.key(),
            measured = format_args!("{:.1} {unit}", kill.measured),
            budget = format_args!("{:.0} {unit}", kill.budget),
            "isolate killed: it exceeded its {} limit ({:.1} {unit} used of {:.0}); discarding it{}",
            kill.limit.key(),
            kill.measured,
            kill.budget,
            stack
                .map(|s| format!(
                    "; JavaScript stack at the kill:{}",
                    isola_bindings::console::log_text(&s)
                ))
                .unwrap_or_default()
        );
    }

    /// The limit that terminated this isolate, if one did; a killed isolate is discarded.
    pub(crate) fn killed(&self) -> Option<&'static str> {
        self.enforcer.killed().map(Limit::key)
    }

    /// Fails every exchange still waiting (the isolate is going away).
    pub(crate) fn fail_pending(&mut self, message: &str) {
        let error = self.failure(message.to_owned());
        self.exchanges.borrow_mut().fail_all(&error);
    }

    /// A failure report that names the limit that killed the isolate, if one did.
    fn failure(&self, message: String) -> HandlerError {
        match self.killed() {
            Some(limit) => HandlerError {
                message: format!("the isolate exceeded its {limit} limit and was discarded"),
                limit: Some(limit),
            },
            None => HandlerError::handler(message),
        }
    }

    fn finish(&mut self, event: ExchangeEvent) {
        let (id, aborted) = match event {
            ExchangeEvent::Finished(id) => (id, false),
            ExchangeEvent::Aborted(id) => (id, true),
        };
        v8::scope_with_context!(let scope, self.runtime.v8_isolate(), &self.context);
        let finish = v8::Local::new(scope, &self.entry.finish);
        let args: [v8::Local<v8::Value>; 2] = [
            v8::Number::new(scope, id as f64).into(),
            v8::Boolean::new(scope, aborted).into(),
        ];
        v8::tc_scope!(let scope, scope);
        let receiver = v8::undefined(scope).into();
        if finish.call(scope, receiver, &args).is_none() {
            tracing::warn!(
                request_id = id,
                "finishing a request failed: {}",
                describe_exception(scope)
            );
        }
    }

    /// Tells the isolate its client went away (the front end dropped the exchange): the
    /// exchange is forgotten and `request.signal` aborts.
    pub(crate) fn abort(&mut self, id: isola_bindings::http::RequestId) {
        self.exchanges
            .borrow_mut()
            .fail_with(id, HandlerError::handler("the client went away".to_owned()));
        self.finish(ExchangeEvent::Aborted(id));
    }
}

/// Cold-start times of one worker, measured alternately in one run.
#[derive(Debug, Default)]
pub struct StartupTimes {
    /// Starts that compiled the worker's modules from source (no code cache).
    pub compiled: Vec<std::time::Duration>,
    /// Starts that had the version's code cache, left by an earlier isolate.
    pub cached: Vec<std::time::Duration>,
}

/// Starts `worker` in a fresh isolate `iterations` times each way on this thread (one at a
/// time, alternating): with its modules compiled from source, and from the code cache an
/// earlier isolate left. Each time covers creation from the snapshot plus module evaluation:
/// the cold-start cost a request pays when no warm isolate exists.
pub fn startup_times(
    mut worker: WorkerSource,
    iterations: usize,
) -> Result<StartupTimes, StartError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(StartError::fault)?;
    let cache = std::sync::Arc::clone(&worker.code_cache);
    runtime.block_on(async {
        // Fills the cache.
        drop(Isolate::start(&worker).await?);
        let mut times = StartupTimes::default();
        for _ in 0..iterations {
            for cached in [false, true] {
                worker.code_cache = match cached {
                    true => std::sync::Arc::clone(&cache),
                    false => std::sync::Arc::new(code_cache::CodeCache::off(worker.name.clone())),
                };
                let started = std::time::Instant::now();
                let isolate = Isolate::start(&worker).await?;
                let took = started.elapsed();
                drop(isolate);
                match cached {
                    true => times.cached.push(took),
                    false => times.compiled.push(took),
                }
            }
        }
        Ok(times)
    })
}

/// Refuses `eval`/`new Function` and WebAssembly compilation from bytes, unless the worker
/// allows them (as Workers do by default).
fn restrict_code_generation(runtime: &mut JsRuntime, worker: &WorkerSource) {
    if !worker.allow_wasm_compile {
        runtime
            .v8_isolate()
            .set_allow_wasm_code_generation_callback(refuse_wasm_code_generation);
    }
    if !worker.allow_eval {
        deno_core::scope!(scope, runtime);
        scope
            .get_current_context()
            .set_allow_generation_from_strings(false);
    }
}

thread_local! {
    /// Whether this thread is loading a worker's module graph (see `load_worker`).
    static LOADING_MODULES: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Sets whether this thread is loading a worker's module graph and returns what it was (a
/// thread that hosts several isolates swaps each one's flag in while it runs).
fn swap_loading_modules(loading: bool) -> bool {
    LOADING_MODULES.replace(loading)
}

extern "C" fn refuse_wasm_code_generation(
    _context: v8::Local<v8::Context>,
    _source: v8::Local<v8::String>,
) -> bool {
    LOADING_MODULES.get()
}

/// The methods `dispatch` knows by number (`METHODS` in `js/10_fetch_event.js`, same order):
/// a number costs V8 no string.
const KNOWN_METHODS: [http::Method; 7] = [
    http::Method::GET,
    http::Method::HEAD,
    http::Method::POST,
    http::Method::PUT,
    http::Method::DELETE,
    http::Method::OPTIONS,
    http::Method::PATCH,
];

/// The request's method for `dispatch`: its index in [`KNOWN_METHODS`], else its name.
fn method_value<'s>(
    scope: &mut v8::PinScope<'s, '_>,
    method: &http::Method,
) -> v8::Local<'s, v8::Value> {
    match KNOWN_METHODS.iter().position(|known| known == method) {
        Some(index) => v8::Integer::new(scope, index as i32).into(),
        None => one_byte_string(scope, method.as_str().as_bytes()),
    }
}

fn describe_exception(
    scope: &mut v8::PinnedRef<'_, v8::TryCatch<'_, '_, v8::HandleScope<'_>>>,
) -> String {
    if scope.is_execution_terminating() {
        return "execution was terminated".to_owned();
    }
    match scope.exception() {
        Some(exception) => {
            let error = deno_core::error::JsError::from_v8_exception(scope, exception);
            error.to_string()
        }
        None => "unknown error".to_owned(),
    }
}

/// Takes the bootstrap's internal object off the global object, before user code can see it.
fn take_internal(runtime: &mut JsRuntime) -> Result<v8::Global<v8::Value>, StartError> {
    runtime
        .execute_script(
            "isola:internal",
            "(() => { const key = Symbol.for('isola.internal'); const internal = globalThis[key]; delete globalThis[key]; return internal; })()",
        )
        .map_err(StartError::fault)
}

enum JsArg<'a> {
    Str(&'a str),
    Value(&'a v8::Global<v8::Value>),
}

/// Calls `internal[name](...args)`; returns the result if it is a string.
fn call_internal(
    runtime: &mut JsRuntime,
    internal: &v8::Global<v8::Value>,
    name: &str,
    args: &[JsArg<'_>],
) -> Result<Option<String>, StartError> {
    let function = internal_function(runtime, internal, name)?;
    deno_core::scope!(scope, runtime);
    let mut locals = Vec::with_capacity(args.len());
    for arg in args {
        locals.push(match arg {
            JsArg::Str(s) => {
                v8::String::new(scope, s).map_or_else(|| v8::undefined(scope).into(), Into::into)
            }
            JsArg::Value(v) => v8::Local::new(scope, *v),
        });
    }
    let function = v8::Local::new(scope, &function);
    v8::tc_scope!(let scope, scope);
    let receiver = v8::undefined(scope).into();
    match function.call(scope, receiver, &locals) {
        Some(result) if result.is_string() => Ok(Some(result.to_rust_string_lossy(scope))),
        Some(_) => Ok(None),
        None => Err(StartError::Runtime(format!(
            "{name}: {}",
            describe_exception(scope)
        ))),
    }
}

fn internal_function(
    runtime: &mut JsRuntime,
    internal: &v8::Global<v8::Value>,
    name: &str,
) -> Result<v8::Global<v8::Function>, StartError> {
    deno_core::scope!(scope, runtime);
    let object = v8::Local::new(scope, internal);
    let function = object
        .to_object(scope)
        .and_then(|object| {
            let key = v8::String::new(scope, name)?;
            object.get(scope, key.into())
        })
        .and_then(|value| v8::Local::<v8::Function>::try_from(value).ok())
        .ok_or_else(|| StartError::Runtime(format!("the bootstrap provides no {name}()")))?;
    Ok(v8::Global::new(scope, function))
}

/// Whether the module has a default export (module syntax) or not (service-worker syntax).
/// Uses `[[HasProperty]]`, which does not touch the not yet initialised bindings.
fn has_exports(runtime: &mut JsRuntime, namespace: &v8::Global<v8::Object>) -> bool {
    deno_core::scope!(scope, runtime);
    let namespace = v8::Local::new(scope, namespace);
    let Some(key) = v8::String::new(scope, "default") else {
        return false;
    };
    namespace.has(scope, key.into()).unwrap_or(false)
}

/// A hold on the isolate for an outbound WebSocket of request `id`, from its lease (while it
/// awaits its response): the pool neither evicts nor recycles the isolate while it is held.
fn pin_socket(
    state: &deno_core::OpState,
    id: isola_bindings::context::RequestId,
) -> Option<isola_bindings::http::Guard> {
    let from_lease = state.try_borrow::<SharedExchanges>().and_then(|exchanges| {
        let exchanges = exchanges.borrow();
        let lease = exchanges
            .guard_of(id)?
            .downcast_ref::<crate::lease::Lease>()?;
        Some(lease.socket_hold())
    });
    let hold = match from_lease {
        Some(hold) => hold,
        // The request's response went out (its lease with it): hold the isolate directly.
        None => state.try_borrow::<IsolateHolder>()?.0.hold(),
    }?;
    Some(Box::new(hold))
}
