//! The soak: a node under a mixed load for a long time (hello, streaming, cache hits, CPU
//! and memory kills, slow clients, redeploys), its resident memory, open file descriptors
//! and threads sampled every second, and a verdict on whether any of them leaked. The run
//! itself is `isola bench soak` (see `cli`); this module holds what it measures, judges,
//! plots and reports.

pub mod markdown;
pub mod plot;
pub mod report;
pub mod sampler;
pub mod verdict;
