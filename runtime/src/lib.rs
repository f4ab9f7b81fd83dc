//! Isola's runtime: the front end (hyper + rustls), the router, deployments and their isolates
//! (deno_core, one OS thread each, started from the build-time snapshot).
//!
//! Request flow: [`server`] accepts and parses HTTP, [`router::Router`] picks the
//! deployment's [`pool::Pool`], which lends the request one of its isolates; the isolate's
//! thread dispatches the request into the worker's JavaScript and the response (or its
//! stream) comes back over a channel.
//!
//! The `isola` command (`runtime/cli/`) is a thin layer over this library.

pub mod admin;
pub mod body;
pub mod cache;
pub mod code;
pub mod deployments;
pub mod dev;
pub mod exchange;
pub mod executor;
mod isolate;
pub mod lease;
pub mod metrics;
pub mod node;
pub mod pool;
pub mod router;
pub mod server;
mod snapshot;
pub mod store;
pub mod tail;
pub mod usage;
pub mod worker;

pub use isolate::{StartError, StartupTimes, set_allocator_release, startup_times};
