//! When an answer the worker gave at once is written. A request for an isolate on the
//! connection's own executor is run as it is sent (`isolate::inline`), so its answer is ready
//! in the poll that read it. Written at once, one by one as the requests were read, each
//! write woke a client waiting for it (64 connections, hello: 0.04 → 0.17–0.25 context
//! switches of the load generator per request); so while the executor serves other
//! connections, such an answer waits for the executor's next round (`yield_now`: after the
//! I/O driver's next poll) and goes out with the others answered in this one. A lone
//! connection's answer is written at once: waiting would cost it a poll of the I/O driver
//! (a system call) and of its connection for nothing.

/// Waits for the executor's next round if it serves other connections (see the module).
pub(crate) async fn join() {
    if crate::executor::serves_other_connections() {
        tokio::task::yield_now().await;
    }
}
