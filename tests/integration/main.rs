//! Integration tests: the real `isola` binary on 127.0.0.1, real HTTP/1.1, HTTP/2 and TLS
//! clients. Every loop is bounded in count and time.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod admin;
mod apps;
mod bench;
mod cache;
mod cache_api;
mod cache_safety;
mod code;
mod code_cache;
mod connections;
mod context;
mod crash;
mod deploy_cli;
mod dev_output;
mod errors;
mod executors;
mod framing;
mod html_rewriter;
mod lifecycle;
mod limits;
mod metrics_token;
mod observability;
mod offheap;
mod outbound;
mod pool;
mod protocols;
mod reload;
mod rollout;
mod secrets;
mod slow_readers;
mod soak;
mod streaming;
mod support;
mod tail;
mod usage;
mod versions;
mod websocket;
mod websocket_client;
