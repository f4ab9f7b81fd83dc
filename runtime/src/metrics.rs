//! Process-wide counters in the Prometheus text format (served by the front end on
//! `node.metrics_address`, `isola dev --metrics-port`): isolate kills by limit, cold starts, refused requests and
//! evicted isolates, so an operator (and the benchmark harness) can see what the pool and the
//! limit enforcer did, and what the response cache holds and serves.

use std::sync::LazyLock;

use prometheus::{Encoder, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// Isola's metrics.
pub struct Metrics {
    registry: Registry,
    /// Isolates terminated by a limit, by the limit's key.
    pub isolate_kills: IntCounterVec,
    /// Requests that waited for a new isolate to start, by worker.
    pub cold_starts: IntCounterVec,
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

fn counter(registry: &Registry, name: &str, help: &str, label: &str) -> IntCounterVec {
    let counter = IntCounterVec::new(Opts::new(name, help), &[label])
        .unwrap_or_else(|e| panic!("metric {name} is malformed: {e}"));
    if let Err(error) = registry.register(Box::new(counter.clone())) {
        tracing::error!("metric {name} cannot be registered: {error}");
    }
    counter
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
    Metrics {
        isolate_kills: counter(
            &registry,
            "isola_isolate_kills_total",
            "Isolates terminated by a limit.",
            "limit",
        ),
        cold_starts: counter(
            &registry,
            "isola_cold_starts_total",
            "Requests that waited for a new isolate to start.",
            "worker",
        ),
        requests_refused: counter(
            &registry,
            "isola_requests_refused_total",
            "Requests refused by a deployment's pool.",
            "reason",
        ),
        isolates_evicted: counter(
            &registry,
            "isola_isolates_evicted_total",
            "Isolates dropped by the pool.",
            "reason",
        ),
        cache_requests: counter(
            &registry,
            "isola_cache_requests_total",
            "GET and HEAD requests by what the response cache did.",
            "result",
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

/// All metrics in the Prometheus text format.
pub fn render() -> String {
    let mut text = Vec::new();
    if let Err(error) = TextEncoder::new().encode(&METRICS.registry.gather(), &mut text) {
        tracing::error!("cannot encode metrics: {error}");
    }
    String::from_utf8_lossy(&text).into_owned()
}
