//! What the soak runs: the node's workers (examples, with limits that make the pools' sizes
//! fixed) and the kinds of request sent to them, each on an open-loop schedule.

use std::path::Path;

use super::super::node::NodeWorker;
use crate::soak::report::Expect;

/// The worker uploaded through the admin API before the run and redeployed during it (not
/// in the config file: uploads cannot replace a config worker).
pub const DEPLOYED: &str = "deployed";

/// Slow clients on the streaming worker (half trickle the request, half read slowly).
pub const SLOW_CLIENTS: usize = 8;

/// A kind of request of the mix.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    /// Its name in the report.
    pub name: &'static str,
    /// The path (its first segment names the worker).
    pub path: &'static str,
    /// Requests per second (open loop, evenly spaced).
    pub rate: f64,
    /// Connections of its generator.
    pub connections: usize,
    /// What each request should get.
    pub expect: Expect,
}

/// Every kind, with rates that keep the node far from saturation on 2 cores (a soak looks
/// for leaks, not for the ceiling). The kills cost the most: 100 ms of spinning per second
/// at `cpu_ms`, and 32 MB of arrays filled once a second.
pub const KINDS: [Kind; 6] = [
    Kind {
        name: "hello",
        path: "/hello",
        rate: 100.0,
        connections: 4,
        expect: Expect::Ok,
    },
    Kind {
        name: "stream",
        path: "/stream",
        rate: 4.0,
        connections: 8,
        expect: Expect::Ok,
    },
    Kind {
        name: "cache-hit",
        path: "/cache",
        rate: 100.0,
        connections: 4,
        expect: Expect::Ok,
    },
    Kind {
        name: "deployed",
        path: "/deployed",
        rate: 20.0,
        connections: 2,
        expect: Expect::Ok,
    },
    Kind {
        name: "cpu-kill",
        path: "/cpu/spin",
        rate: 2.0,
        connections: 2,
        expect: Expect::Killed,
    },
    Kind {
        name: "memory-kill",
        path: "/memory/grow",
        rate: 1.0,
        connections: 2,
        expect: Expect::Killed,
    },
];

/// The example files the workers run.
pub const FILES: [&str; 5] = [
    "hello.js",
    "streaming.js",
    "cached-page.js",
    "cpu-hog.js",
    "memory-hog.js",
];

/// Isolates that may exist beside the steady pools at one instant: a replacement for each
/// killed isolate (cpu, memory), the redeployed worker's new version starting before the
/// old one drains (1), and the node's spare isolates being refilled (2, the default
/// `spare_isolates`). Each has its own thread.
pub const TRANSIENT_ISOLATES: u64 = 2 + 1 + 2;

/// Isolates that run JavaScript for the whole run and are never discarded: hello's 2 and
/// stream's 2 (`max_requests_per_isolate` bounds requests in flight, not an isolate's life).
/// Each holds the garbage of its requests until V8 collects its old generation (see
/// [`super::V8_GARBAGE_PER_ISOLATE_MB`]). The cache worker's isolate lives as long but runs
/// only a revalidation a minute; the others are killed or redeployed every few seconds.
pub const LONG_LIVED_ISOLATES: u64 = 2 + 2;

/// The node's workers. Every pool is kept at its maximum (`min_isolates = max_isolates`) so
/// the number of isolates, hence of threads, does not depend on how the load happened to
/// bunch up: only a leak makes it grow.
pub fn workers(examples: &Path) -> Vec<NodeWorker> {
    let fixed = |n: u32| format!("min_isolates = {n}\nmax_isolates = {n}\n");
    // The response cache serves only workers that opt in.
    let cache = NodeWorker {
        settings: "cache = true".to_owned(),
        ..NodeWorker::new("cache", &examples.join("cached-page.js"), fixed(1))
    };
    vec![
        NodeWorker::new("hello", &examples.join("hello.js"), fixed(2)),
        // Up to 4 scheduled streams and 8 slow clients at once: 16 places.
        NodeWorker::new(
            "stream",
            &examples.join("streaming.js"),
            format!("{}max_requests_per_isolate = 8", fixed(2)),
        ),
        cache,
        NodeWorker::new(
            "cpu",
            &examples.join("cpu-hog.js"),
            format!("{}cpu_ms = 50", fixed(2)),
        ),
        // The arrays reach 32 MB long before 2 s of CPU: a memory kill, not a CPU one.
        NodeWorker::new(
            "memory",
            &examples.join("memory-hog.js"),
            format!("{}memory_mb = 32\ncpu_ms = 2000", fixed(2)),
        ),
    ]
}
