//! The `isola` command: run a worker locally (`dev`), serve a node from a config (`serve`),
//! deploy to a node and manage its workers (`deploy`, `versions`, `rollback`, `secret`,
//! `delete`).

mod allocator;
mod client;
mod deploy;
mod dev_tail;
mod manage;
mod pretty;
mod terminal;

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use edge_config::{Config, Limits, Listener, Outbound, Route, Tls, Worker};
use isola_runtime::node::Node;

/// mimalloc for Rust's allocations: requests are built on connection threads and dropped on
/// isolate threads, and glibc's malloc serialised those frees on its arena locks (about a
/// tenth of the request path's CPU in a profile). V8's own allocations keep glibc's malloc.
#[global_allocator]
static ALLOCATOR: allocator::Mimalloc = allocator::Mimalloc;

/// `mi_option_purge_delay` in the mimalloc (v3) that `libmimalloc-sys` 0.1.49 builds.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// When freed memory goes back to the kernel, by thread model. mimalloc keeps a heap per
/// thread and returns a freed page 10 ms later, and only when that thread allocates again:
/// - with a thread per isolate (`executor_threads = 0`), an idle tenant's thread allocates
///   nothing more, so its freed pages would stay resident (measured: 7.1 instead of 3 MB per
///   warm idle tenant); each page goes back as it is freed;
/// - on executor threads, which keep allocating, the default delay stands: returning each page
///   at once cost every request an `madvise` and the page faults after it.
#[allow(
    unsafe_code,
    reason = "mimalloc's options are set through its C interface"
)]
fn tune_allocator(node: &edge_config::Node) {
    if node.executor_threads == 0 {
        // SAFETY: sets one integer option; valid at any time from any thread.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
}

/// A killed isolate's hundreds of MiB of Blobs and ArrayBuffers must not stay resident: the
/// runtime calls this on the thread that dropped it, which returns that thread's free pages
/// now, whatever the purge delay.
#[allow(
    unsafe_code,
    reason = "mimalloc's collection is called through its C interface"
)]
fn release_freed_memory_now() {
    // SAFETY: collects the calling thread's mimalloc heap; valid at any time on any thread.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

mod tail;

/// Isola: an edge runtime for JavaScript workers (V8 isolates behind HTTP/1.1, HTTP/2 and TLS).
#[derive(Debug, Parser)]
#[command(name = "isola", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `isola=debug`. RUST_LOG also
    /// works. [default: `info`; for `dev`, `info,isola::console=off,isola::exception=off`:
    /// dev prints its requests with their console lines and exceptions on stdout, so its log
    /// on stderr leaves them out unless asked for]
    #[arg(long, global = true, env = "ISOLA_LOG")]
    log: Option<String>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a worker for local development: its file and the modules it imports relatively
    /// (JavaScript, TypeScript, JSON, text, WebAssembly); reloads when any of them changes.
    /// Each finished request is printed on stdout as `isola tail` prints it (status, method,
    /// URL, outcome, times, its exception and console lines); the log on stderr has the rest.
    /// WebSockets a worker accepts (`WebSocketPair`) work here as under `serve`.
    Dev(DevArgs),
    /// Serve the listeners, routes and workers described by a config file. SIGHUP reloads
    /// it (workers, routes, TLS certificates; uploaded workers stay); a bad new config is
    /// refused with a log line naming file, key and expectation, and the old one keeps
    /// serving. Workers may accept WebSockets (`WebSocketPair`, over HTTP/1.1 upgrade and
    /// HTTP/2 extended CONNECT) under the `websocket_*` limits; on SIGTERM open sockets are
    /// closed with 1001.
    Serve(ServeArgs),
    /// Upload the project (`isola.toml`: its main module and the modules it imports
    /// relatively) to a node's admin API as a new version, active at once. The token comes
    /// from ISOLA_ADMIN_TOKEN.
    Deploy(deploy::DeployArgs),
    /// List the kept versions of a deployed worker (`*` marks the active one).
    Versions {
        /// The worker.
        name: String,
        #[command(flatten)]
        admin: manage::AdminArgs,
    },
    /// Serve a kept version again (nothing is uploaded); without ID, the version that was
    /// active before the current one.
    Rollback {
        /// The worker.
        name: String,
        /// The version (see `isola versions NAME`).
        id: Option<String>,
        #[command(flatten)]
        admin: manage::AdminArgs,
    },
    /// Set or remove a worker's secret (`env.KEY`).
    #[command(subcommand)]
    Secret(manage::SecretCommand),
    /// Delete a deployed worker: its versions, secrets, routes and cached responses.
    Delete {
        /// The worker.
        name: String,
        #[command(flatten)]
        admin: manage::AdminArgs,
    },
    /// Load-test Isola next to a raw hyper baseline (see `isola bench --help`).
    Bench(Box<isola_bench::cli::BenchCli>),
    /// Follow a worker's live tail on a node's admin API: each request (method, URL, status,
    /// outcome, wall and CPU time) with its exception and console lines, as they happen; `Authorization`, `Cookie`
    /// and secret values come redacted. The token comes from ISOLA_ADMIN_TOKEN.
    Tail(tail::TailArgs),
}

#[derive(Debug, Clone, Args)]
struct DevArgs {
    /// The worker: an ES module (`.js`, or `.ts` whose types are stripped) with `export
    /// default { fetch }`, or a service-worker script. It may import modules of its directory
    /// by relative paths (`./lib/x.ts`, `./data.json`, `./page.html`, `./add.wasm`); bundle npm
    /// packages with esbuild. Without it, the project file (`--config`, default
    /// `./isola.toml`) names the worker, its main module, vars and limits.
    file: Option<PathBuf>,
    /// The project file read when no FILE is given.
    #[arg(long, short, default_value = edge_config::PROJECT_FILE, conflicts_with = "file")]
    config: PathBuf,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8787)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// A var for the worker (`env.NAME`, or a global for service workers), over the
    /// project's `vars`; `NAME:VALUE` (wrangler's form) works too; repeatable.
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    vars: Vec<(String, String)>,
    /// Serve HTTPS; without --cert/--key a self-signed certificate for localhost is made.
    #[arg(long)]
    tls: bool,
    /// PEM certificate chain for --tls.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// PEM private key for --tls.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Do not reload when the worker's modules or its project file (isola.toml) change.
    #[arg(long)]
    no_watch: bool,
    /// Do not print each request on stdout (no tail of the worker is kept either; benchmarks
    /// use it, through ISOLA_DEV_QUIET=true, so older binaries ignore it).
    #[arg(long, env = "ISOLA_DEV_QUIET")]
    quiet: bool,
    /// Allow `eval` and `new Function` (refused by default, as on Workers).
    #[arg(long)]
    allow_eval: bool,
    /// CPU time a request's JavaScript may use over all of its turns (ms) before the isolate is
    /// terminated [default: the project's `limits`, else 50].
    #[arg(long)]
    cpu_ms: Option<u64>,
    /// Time the handler has to produce its Response (ms) before the client gets a 504
    /// [default: the project's `limits`, else 30000].
    #[arg(long)]
    wall_ms: Option<u64>,
    /// Time starting an isolate (the worker's top level included) may take (ms) [default: the
    /// project's `limits`, else 10000].
    #[arg(long)]
    startup_wall_ms: Option<u64>,
    /// Heap + ArrayBuffer memory one isolate may use (MB) before it is terminated [default:
    /// the project's `limits`, else 128].
    #[arg(long)]
    memory_mb: Option<u64>,
    /// Isolates the worker may run at once (more requests wait in a bounded queue) [default:
    /// the project's `limits`, else 4].
    #[arg(long)]
    max_isolates: Option<u32>,
    /// Serve Prometheus metrics on this port (0: any free port) at /metrics.
    #[arg(long)]
    metrics_port: Option<u16>,
    /// Put the shared response cache in front of the worker: GET responses it marks
    /// cacheable (`Cache-Control: s-maxage=…`/`max-age=…`) are served without running it.
    /// Off by default, as on Workers.
    #[arg(long)]
    cache: bool,
    /// Memory for the response cache (with --cache) and the worker's Cache API (`caches`,
    /// on whether or not --cache is given; 0 turns both off).
    #[arg(long, default_value_t = edge_config::Cache::default().max_size_mb)]
    cache_mb: u64,
    /// Threads hosting the isolates and serving connections (`[node] executor_threads`;
    /// default one per core); 0 gives every isolate an OS thread of its own.
    #[arg(long, default_value_t = edge_config::Node::default().executor_threads)]
    executor_threads: usize,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// The config file (TOML).
    #[arg(long, short)]
    config: PathBuf,
    /// Keep uploaded workers, their versions, secrets and the active version in this
    /// directory (a redb file, fsync'd on every change), so a restart serves what was
    /// active, and the per-minute usage of `GET /workers/NAME/usage` (written every 5 s and
    /// at shutdown); overrides `[node] data_dir`. Without either they live in memory and are
    /// gone at exit.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

/// `NAME=VALUE`, or wrangler's `NAME:VALUE`: split at the first `=` or `:`.
fn parse_var(text: &str) -> Result<(String, String), String> {
    match text.find(['=', ':']) {
        Some(at) if at > 0 => Ok((text[..at].to_owned(), text[at + 1..].to_owned())),
        _ => Err(format!("expected NAME=VALUE or NAME:VALUE, got `{text}`")),
    }
}

/// Proxy variables deno_fetch would honour; a proxy would put outbound fetch beyond the
/// reach of the per-worker network policy, so they are removed from this process.
const PROXY_VARIABLES: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

#[allow(unsafe_code, reason = "environment mutation before any thread exists")]
fn scrub_proxy_environment() -> Vec<&'static str> {
    let present: Vec<&'static str> = PROXY_VARIABLES
        .iter()
        .copied()
        .filter(|v| std::env::var_os(v).is_some())
        .collect();
    for variable in &present {
        // SAFETY: called first thing in `main`, while the process has a single thread.
        unsafe { std::env::remove_var(variable) };
    }
    present
}

fn main() -> ExitCode {
    isola_runtime::set_allocator_release(release_freed_memory_now);
    let scrubbed = scrub_proxy_environment();
    let cli = Cli::parse();
    let command = match cli.command {
        Command::Bench(bench) => return run_bench(*bench),
        Command::Deploy(args) => return run_client(deploy::deploy(args)),
        Command::Versions { name, admin } => {
            return run_client(async move { manage::versions(&name, &admin).await });
        }
        Command::Rollback { name, id, admin } => {
            return run_client(async move { manage::rollback(&name, id, &admin).await });
        }
        Command::Delete { name, admin } => {
            return run_client(async move { manage::delete(&name, &admin).await });
        }
        Command::Secret(command) => return run_client(manage::secret(command)),
        command @ (Command::Dev(_) | Command::Serve(_) | Command::Tail(_)) => command,
    };
    let filter = cli.log.as_deref().unwrap_or(match &command {
        Command::Dev(_) => DEV_LOG,
        _ => "info",
    });
    init_logging(filter, cli.log_format);
    if !scrubbed.is_empty() {
        tracing::info!("ignoring {scrubbed:?}: outbound fetch does not go through proxies");
    }
    if rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .is_err()
    {
        tracing::debug!("a rustls crypto provider was already installed");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Dev(args) => dev(args).await,
            Command::Serve(args) => serve_config(args).await,
            Command::Tail(args) => tail::run(args).await,
            _ => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one admin API command (`deploy`, `versions`, …) on a small runtime; its error is
/// printed as `error: …`.
fn run_client(command: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(command));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `isola bench`: the harness of `benches/`, benchmarking this very binary.
fn run_bench(cli: isola_bench::cli::BenchCli) -> ExitCode {
    let exe = std::env::current_exe().ok();
    let mut self_cmd: Vec<std::ffi::OsString> =
        exe.iter().map(|e| e.clone().into_os_string()).collect();
    self_cmd.push("bench".into());
    let env = isola_bench::cli::BenchEnv {
        isola_exe: exe,
        self_cmd,
        startup_probe: Some(startup_probe),
    };
    match isola_bench::cli::run(cli, env) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn startup_probe(
    file: &std::path::Path,
    iterations: usize,
) -> anyhow::Result<isola_bench::cli::StartupSamples> {
    let config = Worker::with_defaults("startup", file);
    let worker = isola_runtime::worker::WorkerSource::load(&config)?;
    let times = isola_runtime::startup_times(worker, iterations)?;
    Ok(isola_bench::cli::StartupSamples {
        compiled: times.compiled,
        cached: times.cached,
    })
}

fn init_logging(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// `isola dev`'s log filter unless one is given: its worker's console lines and exceptions
/// are printed under their requests on stdout (`dev_tail.rs`), not again in the log.
const DEV_LOG: &str = "info,isola::console=off,isola::exception=off";

/// The worker `isola dev` serves: FILE with the built-in defaults, or the project file's.
fn dev_worker(args: &DevArgs) -> anyhow::Result<Worker> {
    if let Some(file) = &args.file {
        let name = file
            .file_stem()
            .map_or_else(|| "worker".to_owned(), |s| s.to_string_lossy().into_owned());
        return Ok(Worker::with_defaults(name, file.clone()));
    }
    match edge_config::load_project(&args.config) {
        Ok(project) => Ok(project.worker),
        Err(error) if !args.config.exists() => Err(anyhow::anyhow!(
            "{error}\n  give the worker's file (`isola dev worker.js`) or write an isola.toml with `name` and `main`"
        )),
        Err(error) => Err(error.into()),
    }
}

/// The worker `isola dev` runs: its file or project (`isola.toml`), with the command line's
/// vars, limits and flags over it, and loopback open to its fetch.
fn dev_worker_config(args: &DevArgs) -> anyhow::Result<Worker> {
    let base = dev_worker(args)?;
    let mut vars = base.vars;
    vars.extend(
        args.vars
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))),
    );
    let limits = Limits {
        cpu_ms: args.cpu_ms.unwrap_or(base.limits.cpu_ms),
        wall_ms: args.wall_ms.unwrap_or(base.limits.wall_ms),
        startup_wall_ms: args.startup_wall_ms.unwrap_or(base.limits.startup_wall_ms),
        memory_mb: args.memory_mb.unwrap_or(base.limits.memory_mb),
        max_isolates: args.max_isolates.unwrap_or(base.limits.max_isolates),
        ..base.limits
    };
    Ok(Worker {
        name: base.name,
        file: base.file,
        root: base.root,
        vars,
        allow_eval: args.allow_eval || base.allow_eval,
        allow_wasm_compile: args.allow_eval || base.allow_wasm_compile,
        cache: args.cache || base.cache,
        outbound: Outbound {
            allow_loopback: true,
            ..base.outbound
        },
        limits,
    })
}

async fn dev(args: DevArgs) -> anyhow::Result<()> {
    let worker = dev_worker_config(&args)?;
    let name = worker.name.clone();
    let tls = if args.tls {
        let (cert, key) = match (args.cert.clone(), args.key.clone()) {
            (Some(cert), Some(key)) => (cert, key),
            _ => {
                let dir = dev_tls_dir();
                let (cert, key) = isola_runtime::server::tls::self_signed(&dir)?;
                println!(
                    "TLS: self-signed certificate for localhost, 127.0.0.1, ::1 at {}",
                    cert.display()
                );
                (cert, key)
            }
        };
        Some(Tls {
            cert,
            key,
            sni: Vec::new(),
        })
    } else {
        None
    };
    let mut config = Config::default();
    config.cache.max_size_mb = args.cache_mb;
    config.node.executor_threads = args.executor_threads;
    config.node.metrics_address = args
        .metrics_port
        .map(|port| SocketAddr::new(args.host, port));
    config.listeners.push(Listener {
        address: SocketAddr::new(args.host, args.port),
        tls,
        max_connections: edge_config::DEFAULT_MAX_CONNECTIONS,
    });
    config.routes.push(Route {
        host: None,
        path_prefix: "/".to_owned(),
        worker: name.clone(),
    });
    config.workers.insert(name.clone(), worker.clone());
    config.validate()?;

    tune_allocator(&config.node);
    let node = Node::start(&config).await?;
    if !args.quiet {
        dev_tail::print(&name)?;
    }
    announce(&node)?;
    let _watcher = if args.no_watch {
        None
    } else {
        let deployment = node
            .deployment(&name)
            .await
            .context("the dev worker is missing")?;
        // With a project file, an edit of it (vars, limits, main...) reloads the worker too.
        let project = args.file.is_none().then(|| {
            let args = args.clone();
            isola_runtime::dev::Reconfigure {
                file: args.config.clone(),
                load: Box::new(move || dev_worker_config(&args).map_err(|e| format!("{e:#}"))),
            }
        });
        Some(isola_runtime::dev::watch(
            worker,
            deployment,
            node.cache(),
            project,
        )?)
    };
    node.run(shutdown_signal()).await;
    Ok(())
}

async fn serve_config(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = edge_config::load(&args.config)?;
    if let Some(dir) = &args.data_dir {
        config.node.data_dir = Some(dir.clone());
    }
    // Installed before the node announces itself, so a SIGHUP never ends the process.
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot install the SIGHUP handler")?;
    tune_allocator(&config.node);
    let node = Node::start(&config).await?;
    let reloader = node.reloader(args.config.clone());
    tokio::spawn(reload_on_hangup(hangups, reloader, args.data_dir));
    announce(&node)?;
    node.run(shutdown_signal()).await;
    Ok(())
}

/// On each SIGHUP, reads the config file again and applies it; a config that cannot be read,
/// checked or started is refused with one error line naming the file, the key and what was
/// expected, and the running config keeps serving.
async fn reload_on_hangup(
    mut hangups: tokio::signal::unix::Signal,
    reloader: isola_runtime::node::Reloader,
    data_dir: Option<PathBuf>,
) {
    while hangups.recv().await.is_some() {
        let file = reloader.file().to_owned();
        tracing::info!("SIGHUP received: reloading {}", file.display());
        let loaded = edge_config::load(&file).map(|mut config| {
            if let Some(dir) = &data_dir {
                config.node.data_dir = Some(dir.clone());
            }
            config
        });
        let result = match loaded {
            Ok(config) => reloader.apply(config).await,
            Err(error) => Err(error),
        };
        match result {
            Ok(reloaded) => {
                tracing::info!(
                    workers = reloaded.workers,
                    unchanged_kept_running = reloaded.kept,
                    "config reloaded from {}",
                    file.display()
                );
                if !reloaded.need_restart.is_empty() {
                    tracing::warn!(
                        "changes to {} take effect after a restart",
                        reloaded.need_restart.join(", ")
                    );
                }
            }
            Err(error) => {
                tracing::error!("config reload refused, the previous config keeps serving: {error}")
            }
        }
    }
}

/// Prints one `listening on URL` line per listener on stdout (tools wait for these lines).
fn announce(node: &Node) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for url in node.urls() {
        writeln!(out, "listening on {url}")?;
    }
    if let Some(url) = node.metrics_url() {
        writeln!(out, "metrics on {url}")?;
    }
    if let Some(url) = node.admin_url() {
        writeln!(out, "admin on {url}")?;
    }
    out.flush()?;
    Ok(())
}

fn dev_tls_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("isola")
        .join("dev-tls")
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the process with SIGKILL");
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
