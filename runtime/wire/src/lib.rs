//! HTTP rules with no I/O: request authority and path normalisation, Cache-Control, Vary and Range
//! parsing, W3C `traceparent` and `x-request-id`. Pure functions over `http` types, small enough to fuzz without the runtime.
#![forbid(unsafe_code)]

pub mod authority;
pub mod cache_control;
pub mod hex;
pub mod range;
pub mod request_id;
pub mod trace;
pub mod vary;
