//! The bootstrap extension: installs the Web globals and hides the runtime's internals.
//! Its JavaScript runs once, at build time, and lives in the startup snapshot.

deno_core::extension!(
    isola_bootstrap,
    deps = [deno_webidl, deno_web, deno_fetch, deno_crypto, isola_clock, isola_console, isola_websocket, isola_http, isola_cache, isola_html_rewriter],
    esm_entry_point = "ext:isola_bootstrap/00_bootstrap.js",
    esm = [dir "../js", "00_bootstrap.js", "01_errors.js"],
    lazy_loaded_js = [dir "../js", "ext:deno_net/02_tls.js" = "99_tls_stub.js"],
);
