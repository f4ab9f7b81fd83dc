//! `isola-bench`: Isola's load generator and benchmark harness.
//!
//! Every result is measured next to a baseline (a raw hyper hello-world server) in the same
//! run with the same client settings, because these machines are noisy: a ratio survives
//! noise that absolute numbers do not.
#![forbid(unsafe_code)]

pub mod baseline;
pub mod cli;
pub mod compare;
pub mod duration;
pub mod generator;
pub mod plots;
pub mod report;
pub mod server;
pub mod stats;
pub mod tls;
