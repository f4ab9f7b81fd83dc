//! The front end: listeners, TLS, HTTP/1.1 and HTTP/2, per-request limits, graceful shutdown.

pub mod bearer;
mod client_ip;
pub(crate) mod connection;
mod deadline;
mod drain;
mod head;
mod listener;
mod metered;
mod metrics_endpoint;
mod request_body;
mod round;
mod service;
pub mod tls;
pub mod websocket;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub use connection::ConnectionBudget;
pub use listener::BoundListener;
pub use metrics_endpoint::serve_metrics;
pub use service::Shared;

/// Serves `listeners` until `shutdown` resolves, then stops accepting and gives in-flight
/// requests up to `grace` to finish.
pub async fn run(
    listeners: Vec<BoundListener>,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let builder = Arc::new(listener::http_builder(&shared));
    let drain = Arc::new(drain::Drain::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut loops = Vec::with_capacity(listeners.len());
    for bound in listeners {
        loops.push(tokio::spawn(listener::accept_loop(
            bound,
            shared.clone(),
            builder.clone(),
            drain.clone(),
            stop_rx.clone(),
        )));
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    for accept in loops {
        let _ = accept.await;
    }
    // Upgraded connections left hyper (and the graceful watch): they close themselves (1001).
    shared.sockets.close_all(grace).await;
    let Ok(drain) = Arc::try_unwrap(drain) else {
        tracing::warn!("connections are still being accepted; not waiting for them");
        return;
    };
    tracing::info!(
        open_connections = drain.count(),
        grace_ms = grace.as_millis() as u64,
        "shutting down: draining connections"
    );
    if tokio::time::timeout(grace, drain.shutdown()).await.is_err() {
        tracing::warn!("grace period over; closing the remaining connections");
    }
}
