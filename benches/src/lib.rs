//! `isola-bench`: Isola's load generator and benchmark harness.
//!
//! Every result is measured next to a baseline (a raw hyper hello-world server) in the same
//! run with the same client settings, because these machines are noisy: a ratio survives
//! noise that absolute numbers do not. The CLI ([`cli::BenchCli`], [`cli::run`]) is shared
//! by the `isola-bench` binary and `isola bench`.
#![forbid(unsafe_code)]

pub mod baseline;
pub mod children;
pub mod cli;
pub mod compare;
pub mod cpu;
pub mod duration;
pub mod generator;
pub mod machine;
pub mod markdown;
pub mod pin;
pub mod plots;
pub mod progress;
pub mod report;
pub mod scenario;
pub mod server;
pub mod slow_clients;
pub mod soak;
pub mod stats;
pub mod table;
pub mod tls;
