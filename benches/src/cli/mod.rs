//! The command line, shared by `isola-bench` and `isola bench`: parse [`BenchCli`] with
//! clap and hand it to [`run`] with a [`BenchEnv`] saying how to reach the programs it starts.

mod args;
mod compare_files;
mod load;
mod measure;
mod node;
mod scrape;
mod self_check;
mod soak;
mod startup;
mod tail_client;
mod targets;
mod tenants;
mod websocket_echo;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::baseline::BaselineOptions;

pub use args::RunArgs;

/// Measures the isolate start-up of a worker `iterations` times (only the `isola` binary,
/// which contains the runtime, can provide this).
pub type StartupProbe = fn(worker: &Path, iterations: usize) -> anyhow::Result<StartupSamples>;

/// Isolate start-up times measured by the probe, alternating in one run.
#[derive(Debug, Default)]
pub struct StartupSamples {
    /// Starts that compiled the worker's modules from source.
    pub compiled: Vec<Duration>,
    /// Starts from the version's code cache.
    pub cached: Vec<Duration>,
}

/// How the CLI reaches the programs it starts.
pub struct BenchEnv {
    /// The `isola` binary to benchmark (`--isola-bin` overrides it).
    pub isola_exe: Option<PathBuf>,
    /// How to run this same CLI as a child process: `[exe]` for `isola-bench`,
    /// `[exe, "bench"]` for `isola`.
    pub self_cmd: Vec<OsString>,
    /// Isolate start-up measurement, when running inside `isola`.
    pub startup_probe: Option<StartupProbe>,
}

fn after_help() -> String {
    format!(
        "Scenarios (`--scenario NAME`; default hello):\n{}\nEvery run also measures a raw hyper \
         server (the baseline) with the same client settings, unless --no-baseline.",
        crate::scenario::list()
    )
}

/// Load-test Isola (or any URL) next to a raw hyper baseline measured in the same run.
#[derive(Debug, Parser)]
#[command(
    name = "isola-bench",
    version,
    about = "Load-test Isola (or any URL) next to a raw hyper baseline measured in the same run",
    after_help = after_help(),
    args_conflicts_with_subcommands = true
)]
pub struct BenchCli {
    #[command(subcommand)]
    command: Option<BenchCommand>,
    #[command(flatten)]
    run: RunArgs,
}

impl BenchCli {
    /// The `--isola-bin` path (or `ISOLA_BIN`), if given.
    pub fn isola_bin(&self) -> Option<&Path> {
        self.run.isola_bin.as_deref()
    }
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// List the built-in scenarios.
    Scenarios,
    /// Compare two JSON reports (medians of repeats); exits non-zero on a regression.
    Compare {
        /// The reference run.
        a: PathBuf,
        /// The run to judge.
        b: PathBuf,
        /// A metric worse by more than this (percent) is a regression.
        #[arg(long, default_value_t = 5.0)]
        threshold_pct: f64,
        /// Compare runs from different machines anyway.
        #[arg(long)]
        force: bool,
    },
    /// Check that the generator is not the bottleneck: it (1 thread) and wrk (`-t1`, if
    /// installed) measure the raw hyper baseline with the same connections and duration, in
    /// alternating rounds, server and client pinned to separate cores.
    SelfCheck {
        /// How long each tool runs.
        #[arg(long, value_parser = crate::duration::parse, default_value = "5s")]
        duration: Duration,
        /// Connections.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Worker threads of the baseline server.
        #[arg(long, default_value_t = 1)]
        baseline_threads: usize,
        /// Rounds (each: isola-bench, then wrk); the medians are compared.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Do not pin the server and the client to separate cores.
        #[arg(long)]
        no_pin: bool,
    },
    /// Measure isolate start-up (create from the snapshot + evaluate the worker); `isola
    /// bench` only.
    Startup {
        /// The worker to start.
        #[arg(default_value = "examples/hello.js")]
        worker: PathBuf,
        /// How many isolates to start.
        #[arg(long, default_value_t = 200)]
        iterations: usize,
        /// Write the result as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Multi-tenant measurements of the isolate pool on a node started from a generated
    /// config: memory per warm idle tenant, cold start, noisy neighbour, CPU-limit kills.
    Tenants {
        /// Deployments for the memory measurement (each served once).
        #[arg(long, default_value_t = 1000)]
        deployments: usize,
        /// Deployments for the cold-start measurement (each hit once cold, once warm).
        #[arg(long, default_value_t = 200)]
        cold_deployments: usize,
        /// How long each noisy-neighbour load runs.
        #[arg(long, value_parser = crate::duration::parse, default_value = "5s")]
        duration: Duration,
        /// Load before each round robin is measured (many tenants, and one deployment),
        /// excluded from the results: some 25s lets every tenant's JIT tier up, so warm
        /// deployments are compared with a warm one.
        #[arg(long, value_parser = crate::duration::parse, default_value = "500ms")]
        warmup: Duration,
        /// Where hello.js and cpu-hog.js are.
        #[arg(long, default_value = "examples")]
        examples_dir: PathBuf,
        /// Write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// The node's `[node] executor_threads` (default: the node's default, one per core;
        /// 0: a thread per isolate), to compare the thread models.
        #[arg(long)]
        executor_threads: Option<usize>,
    },
    /// Soak: a node under a mixed load (hello, streaming, cache hits, CPU and memory kills,
    /// slow clients, redeploys) for a long time, its RSS, open fds and threads sampled every
    /// second; exits non-zero when one of them leaked.
    Soak {
        /// How long the load runs (the first 20 %, at least 60 s, is warm-up).
        #[arg(long, value_parser = crate::duration::parse, default_value = "30m")]
        duration: Duration,
        /// Where the example workers are.
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"))]
        examples_dir: PathBuf,
        /// Write the JSON report (with every sample) here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write report.md and soak.svg (the curve) into this directory.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Serve the raw hyper baseline (the harness starts it itself).
    #[command(hide = true)]
    ServeBaseline {
        /// Port on 127.0.0.1 (0 picks one).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Tokio worker threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Serve HTTPS with a fresh self-signed certificate.
        #[arg(long)]
        tls: bool,
        /// Exit when standard input closes.
        #[arg(long)]
        exit_on_stdin_eof: bool,
    },
}

/// Runs the CLI (building its own tokio runtimes as needed).
pub fn run(cli: BenchCli, env: BenchEnv) -> anyhow::Result<()> {
    let env = BenchEnv {
        isola_exe: cli.run.isola_bin.clone().or(env.isola_exe),
        ..env
    };
    match cli.command {
        Some(BenchCommand::ServeBaseline {
            port,
            threads,
            tls,
            exit_on_stdin_eof,
        }) => Ok(crate::baseline::serve(&BaselineOptions {
            port,
            threads,
            tls,
            exit_on_stdin_eof,
        })?),
        Some(BenchCommand::Scenarios) => {
            print!("{}", crate::scenario::list());
            Ok(())
        }
        Some(BenchCommand::Compare {
            a,
            b,
            threshold_pct,
            force,
        }) => compare_files::run(&a, &b, threshold_pct, force),
        Some(BenchCommand::SelfCheck {
            duration,
            connections,
            baseline_threads,
            repeat,
            no_pin,
        }) => self_check::run(
            &env,
            self_check::SelfCheckArgs {
                duration,
                connections,
                baseline_threads,
                repeat,
                pin: !no_pin,
            },
        ),
        Some(BenchCommand::Startup {
            worker,
            iterations,
            json,
        }) => startup::run(&env, &worker, iterations, json.as_deref()),
        Some(BenchCommand::Tenants {
            deployments,
            cold_deployments,
            duration,
            warmup,
            examples_dir,
            json,
            executor_threads,
        }) => tenants::run(
            &env,
            &tenants::TenantsArgs {
                deployments,
                cold_deployments,
                duration,
                warmup,
                examples_dir,
                json,
                parts: tenants::Part::ALL.to_vec(),
                executor_threads,
            },
        ),
        Some(BenchCommand::Soak {
            duration,
            examples_dir,
            json,
            report,
        }) => soak::run(
            &env,
            &soak::SoakArgs {
                duration,
                examples_dir,
                json,
                report,
            },
        ),
        None => load::run(cli.run, &env),
    }
}
