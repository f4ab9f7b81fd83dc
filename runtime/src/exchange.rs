//! One HTTP exchange as the isolate receives it.

use isola_bindings::body::BodyReceiver;
use isola_bindings::context::RequestContext;
use isola_bindings::http::HandlerResult;
use tokio::sync::oneshot;

use crate::lease::Lease;

/// A request handed from the front end to an isolate.
#[derive(Debug)]
pub struct IncomingRequest {
    /// The request's context: its id (the logs' request id), wall deadline, body limit and
    /// loop chain; the isolate keeps it while the request lives there.
    pub context: RequestContext,
    /// HTTP method.
    pub method: http::Method,
    /// The full URL the client asked for (`https://host/path?query`).
    pub url: String,
    /// Request headers; `x-forwarded-for`/`x-real-ip` are set by the front end, or by the
    /// isolate when the worker reads them (`RequestContext::client_address`).
    pub headers: http::HeaderMap,
    /// The body as it arrives, or `None` when the request has none.
    pub body: Option<BodyReceiver>,
    /// Where the worker's response (or failure) goes.
    pub responder: oneshot::Sender<HandlerResult>,
    /// The request's slot on its isolate, set by the pool; released when the worker is done
    /// with the response.
    pub lease: Option<Lease>,
    /// How long a streamed response may wait for the client to read before it is ended.
    pub write_timeout: std::time::Duration,
}
