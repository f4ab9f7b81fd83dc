//! Isola's deno_core extensions: the ops that JavaScript calls and the bootstrap that installs
//! the Web platform globals.
//!
//! One extension per spec area, as Deno does: `isola_console` (console output), `isola_http`
//! (the request/response bridge of the fetch handler), `isola_blob` and `isola_compression`
//! (deno_web's Blob and Compression Streams ops, swapped for ones charging [`memory`] to the
//! isolate's limit), `isola_html_rewriter` (`HTMLRewriter` on lol-html), `isola_bootstrap` (globals; evaluated into the startup snapshot);
//! [`context`] keeps one context per request. Deno's Web extension crates provide the Web APIs
//! themselves;//! [`extensions`] lists them all in load order, for the snapshot and for each isolate.

pub mod blob;
pub mod body;
pub mod bootstrap;
pub mod cache;
pub mod clock;
pub mod compression;
pub mod console;
pub mod context;
pub mod extensions;
pub mod html_rewriter;
pub mod http;
pub mod memory;
pub mod outbound;
pub mod snapshot;
pub mod websocket;
