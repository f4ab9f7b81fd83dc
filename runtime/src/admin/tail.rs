//! `GET /workers/NAME/tail`: the worker's live tail as server-sent events (`text/event-stream`),
//! each `data:` line one JSON event: `{"type": "request", "request_id", "worker", "method",
//! "url", "headers", "outcome", "status", "wall_ms", "cpu_ms", "subrequests"}` once the request
//! is over on both sides (its response head went out or the client left; its work in the
//! isolate, `waitUntil` included, ended: `cpu_ms` and `subrequests` are missing only when the
//! front end did not wait for them, on a timeout or a client that left), with `"exception"`
//! (message and JavaScript stack) when the handler threw and `"exceptions"` for what its
//! timers and `waitUntil` work threw while it was open; `{"type": "exception", "request_id",
//! "exception"}` for what they threw after its event went out; `{"type": "log", "request_id",
//! "level", "message"}` per console line, as it is written (before its request's event);
//! `"dropped": N` on an event when N were dropped before it because this tail fell behind.
//! `Authorization`, `Cookie` and the worker's secret values are redacted. A comment line
//! every 15 s keeps idle connections open.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};
use isola_bindings::http::StreamError;
use tokio::sync::mpsc;

use super::{Admin, error};
use crate::body::Body;

/// Time between keep-alive comments of an idle tail.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

impl Admin {
    pub(super) async fn tail(&self, name: &str) -> Response<Body> {
        if self.deployments.get(name).await.is_none() {
            return error(StatusCode::NOT_FOUND, format!("no worker `{name}`"));
        }
        let mut subscription = match crate::tail::of(name).subscribe() {
            Ok(subscription) => subscription,
            Err(e) => return error(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
        };
        let (sender, receiver) = mpsc::channel::<Result<Bytes, StreamError>>(16);
        let opening = format!(": tail of {name}\n\n");
        tokio::spawn(async move {
            if sender.send(Ok(Bytes::from(opening))).await.is_err() {
                return;
            }
            loop {
                let chunk = tokio::select! {
                    event = subscription.next() => match event {
                        Some(event) => format!("data: {event}\n\n"),
                        None => break,
                    },
                    () = sender.closed() => break,
                    () = tokio::time::sleep(KEEP_ALIVE) => ": keep-alive\n\n".to_owned(),
                };
                if sender.send(Ok(Bytes::from(chunk))).await.is_err() {
                    break;
                }
            }
        });
        let mut response = Response::new(Body::Stream(receiver, None));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}
