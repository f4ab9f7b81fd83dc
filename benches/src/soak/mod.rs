//! The soak: a node under a mixed load for a long time, sampled every second.

pub mod sampler;
