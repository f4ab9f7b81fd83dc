//! The full extension list in load order. The snapshot and every isolate must use the same
//! names in the same order (deno_core checks them against the snapshot).

use deno_core::Extension;
use deno_permissions::PermissionsContainer;

use crate::blob::ChargedBlobStore;
use crate::console::WorkerName;
use crate::http::Exchanges;
use crate::memory::MemoryAccount;
use crate::{
    blob, bootstrap, cache, clock, compression, console, html_rewriter, http, outbound, websocket,
};

/// Per-isolate state handed to the extensions.
pub struct IsolateExtensionOptions {
    /// The worker the isolate runs (for logs).
    pub worker: WorkerName,
    /// The isolate's table of exchanges awaiting a response.
    pub exchanges: Exchanges,
    /// The outbound fetch policy of the worker, as permissions.
    pub permissions: PermissionsContainer,
    /// How the worker's outbound requests resolve names.
    pub resolver: std::sync::Arc<crate::outbound::StaticResolver>,
    /// Where Rust-side memory made by JavaScript (Blobs, compression) is charged.
    pub memory: MemoryAccount,
}

/// Extensions as the build-time snapshot needs them (no per-isolate state).
pub fn for_snapshot() -> Vec<Extension> {
    vec![
        deno_webidl::deno_webidl::init(),
        deno_web::deno_web::lazy_init(),
        deno_fetch::deno_fetch::lazy_init(),
        deno_crypto::deno_crypto::lazy_init(),
        blob::isola_blob::lazy_init(),
        compression::isola_compression::lazy_init(),
        outbound::isola_outbound::lazy_init(),
        clock::isola_clock::init(),
        console::isola_console::lazy_init(),
        websocket::isola_websocket::init(),
        http::isola_http::lazy_init(),
        cache::isola_cache::init(),
        html_rewriter::isola_html_rewriter::init(),
        bootstrap::isola_bootstrap::init(),
    ]
}

/// deno_fetch's options for a worker: its policed resolver and the outbound guard's hook. A
/// spare isolate gets them again (put into its OpState) when a worker is loaded into it;
/// deno_fetch builds its HTTP client from them at the first fetch.
pub fn fetch_options(
    resolver: std::sync::Arc<crate::outbound::StaticResolver>,
) -> deno_fetch::Options {
    deno_fetch::Options {
        user_agent: outbound::USER_AGENT.to_owned(),
        resolver: deno_fetch::dns::Resolver::custom(resolver),
        request_builder_hook: Some(crate::outbound::guard::request_hook::<deno_fetch::ReqBody>),
        ..Default::default()
    }
}

/// Extensions for one isolate started from the snapshot.
pub fn for_isolate(options: IsolateExtensionOptions) -> Vec<Extension> {
    vec![
        deno_webidl::deno_webidl::init(),
        deno_web::deno_web::init(
            std::sync::Arc::new(ChargedBlobStore::new(options.memory.clone())),
            None,
            false,
            deno_web::InMemoryBroadcastChannel::default(),
        ),
        deno_fetch::deno_fetch::init(fetch_options(options.resolver)),
        deno_crypto::deno_crypto::init(None),
        blob::isola_blob::init(options.memory.clone()),
        compression::isola_compression::init(options.memory),
        outbound::isola_outbound::init(options.permissions),
        clock::isola_clock::init(),
        console::isola_console::init(options.worker),
        websocket::isola_websocket::init(),
        http::isola_http::init(options.exchanges),
        cache::isola_cache::init(),
        html_rewriter::isola_html_rewriter::init(),
        bootstrap::isola_bootstrap::init(),
    ]
}
