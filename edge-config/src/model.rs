//! The configuration model: what `edge.toml` holds, with defaults.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::cidr::IpCidr;

/// A whole node: listeners, routes and workers.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Process-wide settings.
    pub node: Node,
    /// HTTP limits applied before routing.
    pub http: HttpLimits,
    /// The shared response cache.
    pub cache: Cache,
    /// The admin API.
    pub admin: Admin,
    /// Limits of workers that set none (`[limits]` over the built-in defaults), also for
    /// workers deployed through the admin API.
    pub limits: Limits,
    /// Sockets to listen on.
    pub listeners: Vec<Listener>,
    /// Host + path prefix → worker.
    pub routes: Vec<Route>,
    /// Workers by name.
    pub workers: BTreeMap<String, Worker>,
}

/// Process-wide settings (`[node]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Node {
    /// How long in-flight requests may take to finish after SIGTERM. Default 30000.
    pub shutdown_grace_ms: u64,
    /// Peers whose `x-forwarded-for`/`x-real-ip` are believed (CIDRs). Default none.
    pub trusted_proxies: Vec<IpCidr>,
    /// Memory all isolates together may use (heap + ArrayBuffers). Default 2048.
    pub isolate_memory_budget_mb: u64,
    /// Where to serve Prometheus metrics (`GET /metrics`). Default none.
    pub metrics_address: Option<SocketAddr>,
    /// The environment variable holding a bearer token (at least 16 characters) that
    /// `GET /metrics` then requires: read-only, separate from the admin token. Default
    /// none: metrics are open to whoever reaches `metrics_address`.
    pub metrics_token_env: Option<String>,
    /// Isolates created from the snapshot ahead of need, so a cold start only loads the
    /// worker. Default 2.
    pub spare_isolates: usize,
    /// Threads that host isolates, each running many of them (as workerd does) and the
    /// connections whose requests they serve, so a request to an isolate on its connection's
    /// thread crosses no thread. Default: one per core. 0: every isolate gets an OS thread of
    /// its own, and connections a shared pool of threads (more CPU per request and more
    /// memory per idle tenant; see ARCHITECTURE.md).
    pub executor_threads: usize,
    /// Where uploaded deployments, their versions, secrets and per-minute usage are kept (a redb file,
    /// `isola.redb`), so a restart serves what was active. Default none: they live in
    /// memory and are gone at exit.
    pub data_dir: Option<PathBuf>,
    /// Every worker also answers at `NAME.{domain}` (any path), besides its routes; a route
    /// for that exact host wins. Default `localhost`, so `http://hello.localhost:8787/` reaches
    /// worker `hello`.
    pub domain: String,
}

impl Default for Node {
    fn default() -> Self {
        Self {
            shutdown_grace_ms: 30_000,
            trusted_proxies: Vec::new(),
            isolate_memory_budget_mb: 2048,
            metrics_address: None,
            metrics_token_env: None,
            spare_isolates: 2,
            executor_threads: std::thread::available_parallelism().map_or(1, usize::from),
            data_dir: None,
            domain: "localhost".to_owned(),
        }
    }
}

/// HTTP limits applied by the front end before a request is routed (`[http]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpLimits {
    /// Longest path + query accepted; longer gets 414. Default 16384.
    pub max_url_bytes: usize,
    /// Largest total of request header names and values; larger gets 431. Default 131072.
    pub max_header_bytes: usize,
    /// How long a client may take to send a request head, counted from the connection's
    /// start for its first request (TLS handshake and protocol detection included) and from
    /// the first byte of each later one; past it the connection is closed (HTTP/1.1 with a
    /// partial head gets 408 first). Default 30000.
    pub header_read_timeout_ms: u64,
    /// How long a connection (HTTP/1.1 keep-alive or HTTP/2) may stay open with no request in
    /// flight. Default 60000.
    pub connection_idle_timeout_ms: u64,
    /// How long a response may wait for the client to read any of it: past it a streamed
    /// response is ended (freeing its isolate) and a connection whose writes are blocked is
    /// closed. Default 30000.
    pub write_timeout_ms: u64,
    /// How often an HTTP/2 connection is pinged to detect a peer that went away. Default
    /// 20000.
    pub h2_keep_alive_interval_ms: u64,
    /// How long an HTTP/2 ping may go unanswered before the connection is closed. Default
    /// 10000.
    pub h2_keep_alive_timeout_ms: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_url_bytes: 16 * 1024,
            max_header_bytes: 128 * 1024,
            header_read_timeout_ms: 30_000,
            connection_idle_timeout_ms: 60_000,
            write_timeout_ms: 30_000,
            h2_keep_alive_interval_ms: 20_000,
            h2_keep_alive_timeout_ms: 10_000,
        }
    }
}

/// The most connections one listener keeps open by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}

/// The node's shared HTTP response cache (`[cache]`), in front of every worker: GET responses
/// a worker marks cacheable (`Cache-Control: s-maxage`/`max-age`, `Expires`) are served from
/// memory until stale, following RFC 9111 for a shared cache.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cache {
    /// Memory for cached responses (bodies and headers); 0 turns the cache off. Default 256.
    pub max_size_mb: u64,
    /// Largest body stored; larger responses pass through uncached. Default 10485760 (10 MiB).
    pub max_object_bytes: u64,
    /// How long a stale response that has a validator (`ETag`, `Last-Modified`) is kept for
    /// revalidation with a conditional request. Default 86400.
    pub stale_retention_s: u64,
}

impl Default for Cache {
    fn default() -> Self {
        Self {
            max_size_mb: 256,
            max_object_bytes: 10 * 1024 * 1024,
            stale_retention_s: 86_400,
        }
    }
}

/// The admin API (`[admin]`): operators deploy, list and delete workers and purge the cache
/// over HTTP; every request must carry `Authorization: Bearer <token>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// Where to serve it (`ip:port`); none: no admin API. Default none.
    pub address: Option<SocketAddr>,
    /// The environment variable holding the bearer token (kept out of config files; at least
    /// 16 characters). Default `ISOLA_ADMIN_TOKEN`.
    pub token_env: String,
    /// Where deployed workers' code is written. Default a new directory under the system's
    /// temporary directory.
    pub deploy_dir: Option<PathBuf>,
    /// Largest deploy request (JSON with the code). Default 10485760 (10 MiB).
    pub max_upload_bytes: u64,
}

impl Default for Admin {
    fn default() -> Self {
        Self {
            address: None,
            token_env: "ISOLA_ADMIN_TOKEN".to_owned(),
            deploy_dir: None,
            max_upload_bytes: 10 * 1024 * 1024,
        }
    }
}

/// A socket to listen on (`[[listeners]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// `ip:port`; port 0 picks a free port.
    pub address: SocketAddr,
    /// TLS settings; plain TCP (HTTP/1.1 and h2c) without them.
    #[serde(default)]
    pub tls: Option<Tls>,
    /// Connections kept open at once; at the limit a new connection makes the longest idle
    /// one close, or is closed itself when none is idle. Default 10000 (and never more than
    /// the process's file-descriptor limit minus a reserve for the admin API, metrics and
    /// isolates).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

/// TLS for a listener (`[listeners.tls]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// Default certificate chain (PEM), used when no SNI entry matches.
    pub cert: PathBuf,
    /// Private key of the default certificate (PEM).
    pub key: PathBuf,
    /// Certificates chosen by the client's SNI host name.
    #[serde(default)]
    pub sni: Vec<SniCert>,
}

/// A certificate for some host names (`[[listeners.tls.sni]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniCert {
    /// Host names (exact, or `*.example.com`).
    pub hostnames: Vec<String>,
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

/// Which worker serves which host and path (`[[routes]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Exact host, `*.example.com`, or absent/`*` for any host.
    #[serde(default)]
    pub host: Option<String>,
    /// Path prefix on segment boundaries. Default `/`.
    #[serde(default = "root_path")]
    pub path_prefix: String,
    /// The worker's name.
    pub worker: String,
}

fn root_path() -> String {
    "/".to_owned()
}

/// A worker: code, vars, settings and limits.
#[derive(Debug, Clone)]
pub struct Worker {
    /// The name (its key under `[workers]`).
    pub name: String,
    /// The JavaScript file (a bundled ES module or a service-worker script).
    pub file: PathBuf,
    /// The directory its modules may be imported from; none: `file`'s directory. A project
    /// file (`isola.toml`) sets its own directory, so `src/index.ts` may import `../data.json`.
    pub root: Option<PathBuf>,
    /// Vars: `env` of module workers, globals of service workers.
    pub vars: BTreeMap<String, serde_json::Value>,
    /// Allow `eval`/`new Function`. Default false, as on Workers.
    pub allow_eval: bool,
    /// Allow compiling WebAssembly from bytes at run time. Default false.
    pub allow_wasm_compile: bool,
    /// Put the node's shared response cache in front of this worker. Default false, as on
    /// Workers: a response meant for one browser (`max-age` on a page personalised by
    /// cookie) must not reach another user unless the worker opted in.
    pub cache: bool,
    /// Outbound fetch policy.
    pub outbound: Outbound,
    /// Resolved limits.
    pub limits: Limits,
}

impl Worker {
    /// Worker `name` running `file` with every setting at its default (no vars, no `eval`,
    /// no cache, the default outbound policy and limits): what a bare script is.
    pub fn with_defaults(name: impl Into<String>, file: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            file: file.into(),
            root: None,
            vars: BTreeMap::new(),
            allow_eval: false,
            allow_wasm_compile: false,
            cache: false,
            outbound: Outbound::default(),
            limits: Limits::default(),
        }
    }
}

/// What outbound `fetch()` may reach beyond the public internet (`[workers.x.outbound]`).
/// Loopback, private, link-local, unique-local, multicast and other special-purpose
/// addresses are refused after DNS resolution unless opened here.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Outbound {
    /// Addresses or CIDRs opened even though they are private (e.g. `["10.1.2.3"]`).
    /// Default none.
    pub allow: Vec<IpCidr>,
    /// Allow loopback targets (on for `isola dev`). Default false.
    pub allow_loopback: bool,
    /// Static DNS answers for outbound fetch, like `/etc/hosts`
    /// (e.g. `{ "api.internal" = "10.1.2.3" }`); the answers are checked like any other.
    pub resolve: BTreeMap<String, std::net::IpAddr>,
}

macro_rules! limits {
    ($( $(#[doc = $doc:literal])* $key:ident : $ty:ty = $default:expr ),* $(,)?) => {
        /// Per-worker limits, all enforced by the runtime.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct Limits {
            $( $(#[doc = $doc])* pub $key: $ty, )*
        }

        impl Default for Limits {
            fn default() -> Self {
                Self { $( $key: $default, )* }
            }
        }

        /// `[limits]` or `[workers.x.limits]`: any subset of the limits.
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(crate) struct LimitsOverride {
            $( pub(crate) $key: Option<$ty>, )*
        }

        impl LimitsOverride {
            /// These values where set, else `base`'s.
            pub(crate) fn over(&self, base: &Limits) -> Limits {
                Limits { $( $key: self.$key.unwrap_or(base.$key), )* }
            }
        }
    };
}

limits! {
    /// CPU time per request. Default 50.
    cpu_ms: u64 = 50,
    /// CPU time for evaluating the module's top level. Default 1000.
    startup_cpu_ms: u64 = 1000,
    /// Wall-clock time for starting an isolate and evaluating the module's top level
    /// (a top level that awaits forever fails to start after it). Default 10000.
    startup_wall_ms: u64 = 10_000,
    /// Time until the handler's Response is ready. Default 30000.
    wall_ms: u64 = 30_000,
    /// Time `ctx.waitUntil` work may run after the response. Default 30000.
    wait_until_ms: u64 = 30_000,
    /// Heap + ArrayBuffer memory per isolate. Default 128.
    memory_mb: u64 = 128,
    /// Outbound fetches per request. Default 50.
    max_subrequests: u32 = 50,
    /// Largest request body. Default 104857600 (100 MiB).
    max_body_bytes: u64 = 100 * 1024 * 1024,
    /// Isolates this worker may run at once. Default 4.
    max_isolates: u32 = 4,
    /// Isolates kept warm even when idle. Default 0.
    min_isolates: u32 = 0,
    /// An idle isolate is dropped after this long. Default 300000.
    idle_timeout_ms: u64 = 300_000,
    /// Requests one isolate handles at once. Default 1.
    max_requests_per_isolate: u32 = 1,
    /// Requests waiting for an isolate before 503. Default 256.
    max_queue: u32 = 256,
    /// Longest wait for an isolate before 503. Default 5000.
    queue_timeout_ms: u64 = 5000,
    /// Largest WebSocket message either way (a bigger one from the client closes the socket
    /// with 1009; the worker's `send` throws). Default 1048576 (1 MiB).
    websocket_message_max_bytes: u64 = 1024 * 1024,
    /// A WebSocket with no message either way for this long is closed (1001). Default 300000.
    websocket_idle_timeout_ms: u64 = 300_000,
    /// Bytes a worker may queue for a WebSocket client that does not read before the socket
    /// is closed (1008). Default 4194304 (4 MiB).
    websocket_send_buffer_bytes: u64 = 4 * 1024 * 1024,
    /// WebSockets open at once in one isolate (`new WebSocketPair()` throws past it).
    /// Default 100.
    websocket_max_per_isolate: u32 = 100,
}

impl Limits {
    /// `cpu_ms` as a duration.
    pub fn cpu(&self) -> Duration {
        Duration::from_millis(self.cpu_ms)
    }
    /// `startup_cpu_ms` as a duration.
    pub fn startup_cpu(&self) -> Duration {
        Duration::from_millis(self.startup_cpu_ms)
    }
    /// `startup_wall_ms` as a duration.
    pub fn startup_wall(&self) -> Duration {
        Duration::from_millis(self.startup_wall_ms)
    }
    /// `wall_ms` as a duration.
    pub fn wall(&self) -> Duration {
        Duration::from_millis(self.wall_ms)
    }
    /// `wait_until_ms` as a duration.
    pub fn wait_until(&self) -> Duration {
        Duration::from_millis(self.wait_until_ms)
    }
    /// `idle_timeout_ms` as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
    /// `queue_timeout_ms` as a duration.
    pub fn queue_timeout(&self) -> Duration {
        Duration::from_millis(self.queue_timeout_ms)
    }
    /// `websocket_idle_timeout_ms` as a duration.
    pub fn websocket_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.websocket_idle_timeout_ms)
    }
    /// `memory_mb` in bytes.
    pub fn memory_bytes(&self) -> usize {
        usize::try_from(self.memory_mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX)
    }
}

/// The file as written, before defaults are resolved.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub(crate) node: Node,
    #[serde(default)]
    pub(crate) http: HttpLimits,
    #[serde(default)]
    pub(crate) cache: Cache,
    #[serde(default)]
    pub(crate) admin: Admin,
    #[serde(default)]
    pub(crate) limits: LimitsOverride,
    #[serde(default)]
    pub(crate) listeners: Vec<Listener>,
    #[serde(default)]
    pub(crate) routes: Vec<Route>,
    #[serde(default)]
    pub(crate) workers: BTreeMap<String, RawWorker>,
}

/// A worker as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWorker {
    pub(crate) file: PathBuf,
    #[serde(default)]
    pub(crate) vars: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub(crate) allow_eval: bool,
    #[serde(default)]
    pub(crate) allow_wasm_compile: bool,
    #[serde(default)]
    pub(crate) cache: bool,
    #[serde(default)]
    pub(crate) outbound: Outbound,
    #[serde(default)]
    pub(crate) limits: LimitsOverride,
}
