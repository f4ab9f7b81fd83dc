//! The built-in scenarios: which example worker Isola serves and what the load sends.

use std::fmt::Write as _;

/// A built-in scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scenario {
    /// Name for `--scenario`.
    pub name: &'static str,
    /// One line for `scenarios`.
    pub about: &'static str,
    /// The example worker (relative to the examples directory); `None` for multi-tenant
    /// scenarios, whose workers the `tenants` runner picks.
    pub worker: Option<&'static str>,
    /// Method.
    pub method: &'static str,
    /// Path (and query).
    pub path: &'static str,
    /// Request body size (bytes of `x`).
    pub body_bytes: usize,
    /// Serve over TLS (self-signed) and open a new connection per request.
    pub tls_handshake: bool,
    /// Slow clients running next to the load unless `--slow-clients` says otherwise.
    pub slow_clients: usize,
    /// Runs on a node the harness starts from a generated multi-tenant config (`tenants`).
    pub multi_tenant: bool,
    /// Isola's cache hits are read from its metrics and reported next to the numbers.
    pub counts_cache_hits: bool,
    /// The soak (`isola bench soak`): a mixed load for `--duration` with a leak verdict.
    pub soak: bool,
    /// Isola twice: with metrics scraped, JSON logs to a file and a connected tail
    /// (`isola-observed`), and with all of them off; their ratio is reported.
    pub observability: bool,
    /// Uses a Workers API that `deno serve` lacks (HTMLRewriter): deno is not measured.
    pub isola_only: bool,
    /// WebSocket echo messages per second against a raw tokio-tungstenite echo server
    /// (`cli/websocket_echo.rs`), not HTTP requests.
    pub websocket: bool,
}

impl Scenario {
    const fn available(
        name: &'static str,
        about: &'static str,
        worker: &'static str,
        method: &'static str,
        path: &'static str,
    ) -> Self {
        Self {
            name,
            about,
            worker: Some(worker),
            method,
            path,
            body_bytes: 0,
            tls_handshake: false,
            slow_clients: 0,
            multi_tenant: false,
            counts_cache_hits: false,
            soak: false,
            observability: false,
            isola_only: false,
            websocket: false,
        }
    }

    /// A scenario measured on a node started from a generated config with many deployments.
    const fn multi_tenant(name: &'static str, about: &'static str) -> Self {
        Self {
            multi_tenant: true,
            worker: None,
            ..Self::available(name, about, "", "GET", "/")
        }
    }
}

/// Every scenario.
pub const SCENARIOS: &[Scenario] = &[
    Scenario::available(
        "hello",
        "GET / of examples/hello.js (the smallest response)",
        "hello.js",
        "GET",
        "/",
    ),
    Scenario::available(
        "json-api",
        "GET /api/items of examples/json-api.js (JSON serialisation)",
        "json-api.js",
        "GET",
        "/api/items",
    ),
    Scenario::available(
        "ssr",
        "GET / of examples/router-app (hono routing + preact server rendering)",
        "router-app/dist/worker.js",
        "GET",
        "/",
    ),
    Scenario {
        body_bytes: 1 << 20,
        ..Scenario::available(
            "large-body",
            "POST 1 MiB to /echo of examples/streaming.js, 1 MiB streamed back",
            "streaming.js",
            "POST",
            "/echo",
        )
    },
    Scenario {
        slow_clients: 64,
        ..Scenario::available(
            "slow-clients",
            "hello while 64 slow clients trickle requests byte by byte or read slowly",
            "hello.js",
            "GET",
            "/",
        )
    },
    Scenario {
        tls_handshake: true,
        ..Scenario::available(
            "tls-handshake",
            "hello over TLS (isola dev --tls), a new connection and full handshake per request",
            "hello.js",
            "GET",
            "/",
        )
    },
    Scenario {
        counts_cache_hits: true,
        ..Scenario::available(
            "cache-hit",
            "GET / of examples/cached-page.js, a rendered page marked cacheable: served from Isola's response cache (hits counted by isola_cache_requests_total); deno runs the worker each time",
            "cached-page.js",
            "GET",
            "/",
        )
    },
    Scenario {
        observability: true,
        ..Scenario::available(
            "observability",
            "hello with metrics scraped every second, JSON logs (info) to a file and one connected tail (isola-observed) against all of them off (isola), in one run: the overhead as a ratio (goal <= 5 %)",
            "hello.js",
            "GET",
            "/",
        )
    },
    Scenario {
        isola_only: true,
        ..Scenario::available(
            "html-rewrite",
            "GET / of examples/html-rewrite.js: a 1 MiB page streamed through HTMLRewriter, rel set on every link (rps = MiB/s, CPU per request = CPU per MiB); isola only",
            "html-rewrite.js",
            "GET",
            "/",
        )
    },
    Scenario {
        isola_only: true,
        websocket: true,
        ..Scenario::available(
            "websocket-echo",
            "WebSocket messages per second through examples/websocket-echo.js (64-byte text, one in flight per connection) against a raw tokio-tungstenite echo server in the same run: the ratio; isola only",
            "websocket-echo.js",
            "GET",
            "/ws",
        )
    },
    Scenario::multi_tenant(
        "cold-start",
        "first request to each of 200 deployments with no warm isolate (counted by isola_cold_starts_total), then a warm one",
    ),
    Scenario::multi_tenant(
        "many-tenants",
        "1,000 deployments each served once (RSS per tenant), then load round robin over them",
    ),
    Scenario::multi_tenant(
        "noisy-neighbour",
        "a quiet tenant's p99 alone and while another spins at its CPU limit",
    ),
    Scenario::multi_tenant(
        "cpu-limit-storm",
        "how long after cpu_ms a spinning request gets its 503, alone and 32 at once",
    ),
    Scenario {
        soak: true,
        ..Scenario::multi_tenant(
            "soak",
            "hello, streaming, cache hits, CPU and memory kills, slow clients and redeploys for --duration (default 30m); fails when RSS leaves ±10 % or fds/threads grow (also `isola bench soak`)",
        )
    },
];

/// Selecting a scenario failed.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// No such scenario.
    #[error("unknown scenario `{0}`; `scenarios` lists them")]
    Unknown(String),
}

/// The scenario called `name`.
pub fn find(name: &str) -> Result<&'static Scenario, ScenarioError> {
    SCENARIOS
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ScenarioError::Unknown(name.to_owned()))
}

/// One line per scenario, for `scenarios` and `--help`.
pub fn list() -> String {
    let mut out = String::new();
    for s in SCENARIOS {
        let _ = writeln!(out, "  {:<16} {}", s.name, s.about);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_are_found_by_name() {
        assert!(find("cache-hit").is_ok_and(|s| s.counts_cache_hits));
        for name in [
            "cold-start",
            "many-tenants",
            "noisy-neighbour",
            "cpu-limit-storm",
        ] {
            assert!(find(name).is_ok_and(|s| s.multi_tenant), "{name}");
        }
        assert!(find("soak").is_ok_and(|s| s.soak));
        assert!(find("observability").is_ok_and(|s| s.observability));
        assert!(matches!(find("nope"), Err(ScenarioError::Unknown(_))));
        for name in [
            "hello",
            "json-api",
            "ssr",
            "large-body",
            "slow-clients",
            "tls-handshake",
        ] {
            assert!(find(name).is_ok(), "{name}");
        }
        assert_eq!(list().lines().count(), SCENARIOS.len());
    }
}
