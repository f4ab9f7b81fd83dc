//! HTTP rules with no I/O: request authority and path normalisation, Cache-Control and Vary
//! parsing. Pure functions over `http` types, small enough to fuzz without the runtime.
#![forbid(unsafe_code)]

pub mod authority;
pub mod cache_control;
pub mod vary;
