//! Metering for billing: per worker and version, invocations (cache hits counted apart), CPU
//! time and GB-seconds (`memory_mb` / 1024 × wall seconds of each request), in per-minute
//! buckets kept [`KEPT_MINUTES`] (7 days).
//!
//! A request adds to its version's [`UsageMeter`] (atomics reached through
//! `metrics::WorkerMeters`, no lock); the [`Ledger`] collects every meter into the current
//! minute each second and writes the collected minutes to the node's `Store` in one batch
//! every [`FLUSH_INTERVAL`] and at shutdown. With a data directory the buckets survive
//! restarts (a SIGKILL loses at most the last flush interval); without one the store is
//! memory and they go with the process.

mod ledger;
mod meter;
#[cfg(test)]
mod tests;

pub use ledger::{Bucket, Ledger};
pub use meter::{Counts, UsageMeter};

/// Minutes of usage kept: 7 days.
pub const KEPT_MINUTES: u64 = 7 * 24 * 60;

/// How often collected minutes are written to the store.
pub const FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The current minute: whole minutes since the Unix epoch.
pub fn current_minute() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60)
}
