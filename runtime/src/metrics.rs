//! Metrics in the Prometheus text format (served by the front end on `node.metrics_address`,
//! `isola dev --metrics-port`), labelled by worker where they concern one (never by URL,
//! request id or client): requests by status class and outcome, their duration, CPU time,
//! subrequests and GB-seconds; isolate kills by limit, cold starts, refused requests, evicted
//! isolates; what the response cache holds and serves; the process's CPU, memory and file
//! descriptors. [`WorkerMeters`] holds one worker's series so a request costs no label lookup.

use std::sync::{LazyLock, OnceLock};

use prometheus::{
    Counter, CounterVec, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Isola's metrics.
pub struct Metrics {
    registry: Registry,
    /// Requests by worker, status class and outcome.
    requests: IntCounterVec,
    /// Time from a request's arrival to its response head, by worker.
    request_duration: HistogramVec,
    /// CPU time of requests' JavaScript, by worker.
    cpu_seconds: CounterVec,
    /// Outbound fetches of requests, by worker.
    subrequests: IntCounterVec,
    /// `memory_mb` / 1024 × wall seconds of each request, by worker (as Lambda bills).
    usage_gb_seconds: CounterVec,
    /// Isolates by worker and state (`idle`, `busy`, `starting`).
    isolates: IntGaugeVec,
    /// Requests waiting for an isolate, by worker.
    queue_depth: IntGaugeVec,
    /// Heap + external bytes of all isolates.
    pub isolate_memory: IntGauge,
    /// Open data-plane connections that have carried a request, by protocol.
    connections: IntGaugeVec,
    /// TLS handshakes by result (`ok`, `failed`, `timeout`).
    pub tls_handshakes: IntCounterVec,
    /// Isolates terminated by a limit, by worker and the limit's key.
    pub isolate_kills: IntCounterVec,
    /// Requests that waited for a new isolate to start, by worker.
    pub cold_starts: IntCounterVec,
    /// Isolates started, by where their V8 isolate came from (`spare`: made ahead and ready;
    /// `starting_spare`: a spare still being made, claimed; `new`: made for this start), so an
    /// operator sees how often starts outrun `node.spare_isolates`.
    pub isolate_starts: IntCounterVec,
    /// JavaScript modules loaded into isolates, by worker and what V8's code cache did
    /// (`compiled`: no cache yet; `offered`: compiled from the worker's cache; `rejected`:
    /// an offered cache that V8 refused and replaced).
    pub module_loads: IntCounterVec,
    /// Requests refused by the pool (`queue_full`, `queue_timeout`, `memory_budget`).
    pub requests_refused: IntCounterVec,
    /// Isolates dropped by the pool (`idle`, `memory_budget`).
    pub isolates_evicted: IntCounterVec,
    /// GET/HEAD requests by what the response cache did (`hit`, `stale`, `revalidated`,
    /// `miss`, `bypass`).
    pub cache_requests: IntCounterVec,
    /// Bytes the response cache holds.
    pub cache_bytes: IntGauge,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let counter = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name} is malformed: {e}"));
    register(registry, name, Box::new(counter.clone()));
    counter
}

fn float_counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> CounterVec {
    let counter = CounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name} is malformed: {e}"));
    register(registry, name, Box::new(counter.clone()));
    counter
}

fn register(registry: &Registry, name: &str, collector: Box<dyn prometheus::core::Collector>) {
    if let Err(error) = registry.register(collector) {
        tracing::error!("metric {name} cannot be registered: {error}");
    }
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let gauge =
        IntGauge::new(name, help).unwrap_or_else(|e| panic!("metric {name} is malformed: {e}"));
    if let Err(error) = registry.register(Box::new(gauge.clone())) {
        tracing::error!("metric {name} cannot be registered: {error}");
    }
    gauge
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let registry = Registry::new();
    #[cfg(target_os = "linux")]
    register(
        &registry,
        "process",
        Box::new(prometheus::process_collector::ProcessCollector::for_self()),
    );
    let request_duration = HistogramVec::new(
        HistogramOpts::new(
            "isola_request_duration_seconds",
            "Time from a request's arrival to its response head.",
        )
        .buckets(vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            30.0,
        ]),
        &["worker"],
    )
    .unwrap_or_else(|e| panic!("metric isola_request_duration_seconds is malformed: {e}"));
    register(
        &registry,
        "isola_request_duration_seconds",
        Box::new(request_duration.clone()),
    );
    let isolates = IntGaugeVec::new(
        Opts::new("isola_isolates", "Isolates by worker and state."),
        &["worker", "state"],
    )
    .unwrap_or_else(|e| panic!("metric isola_isolates is malformed: {e}"));
    register(&registry, "isola_isolates", Box::new(isolates.clone()));
    let queue_depth = IntGaugeVec::new(
        Opts::new("isola_queue_depth", "Requests waiting for an isolate."),
        &["worker"],
    )
    .unwrap_or_else(|e| panic!("metric isola_queue_depth is malformed: {e}"));
    register(
        &registry,
        "isola_queue_depth",
        Box::new(queue_depth.clone()),
    );
    let connections = IntGaugeVec::new(
        Opts::new(
            "isola_connections_open",
            "Open connections that have carried a request, by protocol.",
        ),
        &["protocol"],
    )
    .unwrap_or_else(|e| panic!("metric isola_connections_open is malformed: {e}"));
    register(
        &registry,
        "isola_connections_open",
        Box::new(connections.clone()),
    );
    Metrics {
        connections,
        tls_handshakes: counter(
            &registry,
            "isola_tls_handshakes_total",
            "TLS handshakes by result.",
            &["result"],
        ),
        isolates,
        queue_depth,
        isolate_memory: gauge(
            &registry,
            "isola_isolate_memory_bytes",
            "Heap and external bytes of all isolates.",
        ),
        requests: counter(
            &registry,
            "isola_requests_total",
            "Requests by worker, status class and outcome.",
            &["worker", "status_class", "outcome"],
        ),
        request_duration,
        cpu_seconds: float_counter(
            &registry,
            "isola_cpu_seconds_total",
            "CPU time of requests' JavaScript, over all of their turns.",
            &["worker"],
        ),
        subrequests: counter(
            &registry,
            "isola_subrequests_total",
            "Outbound fetches of requests (redirect hops included).",
            &["worker"],
        ),
        usage_gb_seconds: float_counter(
            &registry,
            "isola_usage_gb_seconds_total",
            "memory_mb / 1024 times the wall seconds of each request.",
            &["worker"],
        ),
        isolate_kills: counter(
            &registry,
            "isola_isolate_kills_total",
            "Isolates terminated by a limit.",
            &["worker", "limit"],
        ),
        cold_starts: counter(
            &registry,
            "isola_cold_starts_total",
            "Requests that waited for a new isolate to start.",
            &["worker"],
        ),
        isolate_starts: counter(
            &registry,
            "isola_isolate_starts_total",
            "Isolates started, by where their V8 isolate came from (spare, starting_spare, new).",
            &["source"],
        ),
        module_loads: counter(
            &registry,
            "isola_module_loads_total",
            "JavaScript modules loaded into isolates, by what the code cache did.",
            &["worker", "code_cache"],
        ),
        requests_refused: counter(
            &registry,
            "isola_requests_refused_total",
            "Requests refused by a deployment's pool.",
            &["reason"],
        ),
        isolates_evicted: counter(
            &registry,
            "isola_isolates_evicted_total",
            "Isolates dropped by the pool.",
            &["reason"],
        ),
        cache_requests: counter(
            &registry,
            "isola_cache_requests_total",
            "GET and HEAD requests by what the response cache did.",
            &["result"],
        ),
        cache_bytes: gauge(
            &registry,
            "isola_cache_size_bytes",
            "Bytes of responses the cache holds.",
        ),
        registry,
    }
});

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// How a request ended, as `isola_requests_total` labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The worker answered (whatever its status), or the cache did.
    Ok,
    /// The handler threw or returned no usable response.
    Exception,
    /// The isolate went over `cpu_ms`.
    ExceededCpu,
    /// The isolate went over `memory_mb`.
    ExceededMemory,
    /// No response head within `wall_ms`.
    ExceededWall,
    /// The client went away first.
    Canceled,
    /// The node refused it (bad request, no route, overload, loop, size limits).
    Refused,
}

impl Outcome {
    const ALL: [Self; 7] = [
        Self::Ok,
        Self::Exception,
        Self::ExceededCpu,
        Self::ExceededMemory,
        Self::ExceededWall,
        Self::Canceled,
        Self::Refused,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Exception => "exception",
            Self::ExceededCpu => "exceeded_cpu",
            Self::ExceededMemory => "exceeded_memory",
            Self::ExceededWall => "exceeded_wall",
            Self::Canceled => "canceled",
            Self::Refused => "refused",
        }
    }
}

/// Status class labels; a canceled request has no status (`none`).
const STATUS_CLASSES: [&str; 6] = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"];

/// One worker's series, looked up once per worker version instead of once per request.
#[derive(Debug)]
pub struct WorkerMeters {
    worker: std::sync::Arc<str>,
    version: std::sync::Arc<str>,
    requests: [[OnceLock<IntCounter>; Outcome::ALL.len()]; STATUS_CLASSES.len()],
    duration: Histogram,
    cpu_seconds: Counter,
    subrequests: IntCounter,
    usage_gb_seconds: Counter,
    /// The version's usage for metering (`GET /workers/NAME/usage`).
    usage: std::sync::Arc<crate::usage::UsageMeter>,
    /// The worker's live tails.
    tails: std::sync::Arc<crate::tail::TailSet>,
}

/// What answered a request, for GB-seconds and metering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Nothing did: the node refused it, or the client left first.
    Nothing,
    /// The response cache.
    Cache,
    /// An isolate of `memory_mb`.
    Worker {
        /// The worker's `memory_mb`.
        memory_mb: u64,
    },
}

impl WorkerMeters {
    /// The series of worker `worker`; its usage is metered as version `version`.
    pub fn of(worker: std::sync::Arc<str>, version: std::sync::Arc<str>) -> Self {
        let m = metrics();
        let name = [&*worker];
        Self {
            usage: crate::usage::UsageMeter::register(worker.clone(), version.clone()),
            version,
            tails: crate::tail::of(&worker),
            duration: m.request_duration.with_label_values(&name),
            cpu_seconds: m.cpu_seconds.with_label_values(&name),
            subrequests: m.subrequests.with_label_values(&name),
            usage_gb_seconds: m.usage_gb_seconds.with_label_values(&name),
            requests: Default::default(),
            worker,
        }
    }

    /// Records a request that got a response head of `status` (none: canceled) after
    /// `elapsed`, answered as `served`.
    pub fn request(
        &self,
        status: Option<u16>,
        outcome: Outcome,
        elapsed: std::time::Duration,
        served: Served,
    ) {
        let seconds = elapsed.as_secs_f64();
        let class = status.map_or(0, |s| usize::from(s / 100).clamp(1, 5));
        let outcome_index = Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        self.requests[class][outcome_index]
            .get_or_init(|| {
                metrics().requests.with_label_values(&[
                    &*self.worker,
                    STATUS_CLASSES[class],
                    outcome.label(),
                ])
            })
            .inc();
        self.duration.observe(seconds);
        match served {
            // Refused before an isolate took it (overload): nothing ran.
            Served::Nothing | Served::Worker { .. } if outcome == Outcome::Refused => {}
            Served::Nothing => {}
            Served::Cache => self.usage.cache_hit(),
            Served::Worker { memory_mb } => {
                self.usage_gb_seconds
                    .inc_by(memory_mb as f64 / 1024.0 * seconds);
                let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
                self.usage.invocation(memory_mb, micros);
            }
        }
    }

    /// The version these series meter usage for (a content hash, or `config`).
    pub fn version(&self) -> &std::sync::Arc<str> {
        &self.version
    }

    /// The worker's live tails.
    pub fn tails(&self) -> &std::sync::Arc<crate::tail::TailSet> {
        &self.tails
    }

    /// Records what a finished request used inside its isolate.
    pub fn usage(&self, cpu_ns: u64, subrequests: u32) {
        self.cpu_seconds.inc_by(cpu_ns as f64 / 1e9);
        self.usage.cpu(cpu_ns);
        self.subrequests.inc_by(u64::from(subrequests));
    }
}

/// A deployment's isolates by state, as the metrics show them.
#[derive(Debug)]
pub struct Census {
    /// The deployment's worker.
    pub worker: std::sync::Arc<str>,
    /// Isolates with no request in flight.
    pub idle: usize,
    /// Isolates with requests in flight.
    pub busy: usize,
    /// Isolates being started.
    pub starting: usize,
    /// Requests waiting for an isolate.
    pub queued: usize,
    /// Heap + external bytes of its isolates.
    pub memory_bytes: u64,
}

/// One connection in `isola_connections_open`, from its first request until it is dropped.
#[derive(Debug, Default)]
pub struct OpenConnection {
    protocol: OnceLock<IntGauge>,
}

impl OpenConnection {
    /// The connection carries a request of `version`; the first one counts it.
    pub fn carries(&self, version: http::Version) {
        self.protocol.get_or_init(|| {
            let protocol = match version {
                http::Version::HTTP_2 => "h2",
                http::Version::HTTP_3 => "h3",
                _ => "http1",
            };
            let gauge = metrics().connections.with_label_values(&[protocol]);
            gauge.inc();
            gauge
        });
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        if let Some(gauge) = self.protocol.get() {
            gauge.dec();
        }
    }
}

/// Publishes a deployment's isolates by state and its queue.
pub fn record_census(census: &Census) {
    let m = metrics();
    for (state, count) in [
        ("idle", census.idle),
        ("busy", census.busy),
        ("starting", census.starting),
    ] {
        m.isolates
            .with_label_values(&[&*census.worker, state])
            .set(count as i64);
    }
    m.queue_depth
        .with_label_values(&[&*census.worker])
        .set(census.queued as i64);
}

/// Drops every series of a deleted worker.
pub fn forget_worker(worker: &str) {
    let m = metrics();
    for state in ["idle", "busy", "starting"] {
        let _ = m.isolates.remove_label_values(&[worker, state]);
    }
    let _ = m.queue_depth.remove_label_values(&[worker]);
    for vec in [&m.cpu_seconds, &m.usage_gb_seconds] {
        let _ = vec.remove_label_values(&[worker]);
    }
    let _ = m.subrequests.remove_label_values(&[worker]);
    let _ = m.cold_starts.remove_label_values(&[worker]);
    for outcome in ["compiled", "offered", "rejected"] {
        let _ = m.module_loads.remove_label_values(&[worker, outcome]);
    }
    let _ = m.request_duration.remove_label_values(&[worker]);
    for class in STATUS_CLASSES {
        for outcome in Outcome::ALL {
            let _ = m
                .requests
                .remove_label_values(&[worker, class, outcome.label()]);
        }
    }
    for limit in ["cpu_ms", "startup_cpu_ms", "memory_mb", "startup_wall_ms"] {
        let _ = m.isolate_kills.remove_label_values(&[worker, limit]);
    }
}

/// All metrics in the Prometheus text format.
pub fn render() -> String {
    let mut text = Vec::new();
    if let Err(error) = TextEncoder::new().encode(&METRICS.registry.gather(), &mut text) {
        tracing::error!("cannot encode metrics: {error}");
    }
    String::from_utf8_lossy(&text).into_owned()
}
