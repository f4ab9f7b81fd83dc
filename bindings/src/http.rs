//! The bridge between HTTP exchanges and the worker's fetch handler.
//!
//! Rust hands a request to JavaScript (`dispatch` in `js/10_fetch_event.js`) together with an
//! [`Exchange`] kept in OpState; JavaScript answers through one of the `op_isola_respond_*`
//! ops, which complete the exchange. A streaming response body is pumped from its
//! `ReadableStream` resource into a bounded channel, so a slow client slows the producer.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use deno_core::{JsBuffer, OpState, Resource, ResourceId, op2, v8};
use deno_error::JsErrorBox;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use tokio::sync::{mpsc, oneshot};

use crate::context::{RequestContext, SharedContexts};

pub use crate::context::{Guard, RequestId};

/// A stream's write timeout when its exchange is no longer known.
const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest chunk pulled from a response stream at once.
const STREAM_CHUNK_BYTES: usize = 64 * 1024;
/// Chunks buffered between the isolate and the connection: the backpressure window. The
/// channel has one slot more, kept free for the error that ends a stalled stream.
const STREAM_WINDOW_CHUNKS: usize = 2;

/// The response a handler produced.
#[derive(Debug)]
pub struct JsResponse {
    /// Status code (200–599; the Response constructor enforces the range).
    pub status: StatusCode,
    /// Response headers in the order the handler set them.
    pub headers: HeaderMap,
    /// The body.
    pub body: ResponseBody,
}

/// How an exchange is answered, and what lives as long as the worker works on it.
struct PendingExchange {
    responder: oneshot::Sender<HandlerResult>,
    guard: Option<Guard>,
    write_timeout: Duration,
}

/// A response body: known up front, or produced while it is sent.
#[derive(Debug)]
pub enum ResponseBody {
    /// No body (`new Response(null)`).
    Empty,
    /// A body known in full (string or bytes).
    Full(Bytes),
    /// A body the handler streams; an `Err` item aborts the response.
    Stream(mpsc::Receiver<Result<Bytes, StreamError>>),
    /// No body: a 101 response handing the connection to a WebSocket the worker accepted
    /// (`new Response(null, { status: 101, webSocket })`); the peer holds the request's lease.
    WebSocket(Box<crate::websocket::SocketPeer>),
}

/// A response stream that failed after its head was sent.
#[derive(Debug, Clone, thiserror::Error)]
#[error("response body stream failed: {0}")]
pub struct StreamError(pub String);

/// Why a handler produced no usable response; the message is for the log, never the client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    /// What happened, with the JavaScript stack when there is one.
    pub message: String,
    /// The limit (its config key) that ended the request, when that is why: one that killed
    /// the isolate, or [`websocket::SOCKETS_FULL`](crate::websocket::SOCKETS_FULL) (the
    /// handler failed after a socket was refused; the isolate serves on).
    pub limit: Option<&'static str>,
}

impl HandlerError {
    /// A failure of the handler itself.
    pub fn handler(message: String) -> Self {
        Self {
            message,
            limit: None,
        }
    }
}

/// What the front end receives for an exchange.
pub type HandlerResult = Result<JsResponse, HandlerError>;

/// Lifecycle events the isolate loop forwards to JavaScript, which aborts `request.signal`
/// and forgets the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeEvent {
    /// The response was sent completely.
    Finished(RequestId),
    /// The client went away before the response was complete.
    Aborted(RequestId),
}

/// Sends [`ExchangeEvent`]s to the isolate loop.
pub type ExchangeEvents = mpsc::UnboundedSender<ExchangeEvent>;

/// [`Exchanges`] as the ops (through `OpState`) and the isolate share them: the isolate keeps a
/// clone, so a request reaches them without a search of `OpState`'s map by type (a B-tree over
/// every extension's state: ~80 instructions, three times per request).
pub type SharedExchanges = Rc<RefCell<Exchanges>>;

/// Exchanges awaiting a response in one isolate; lives in its OpState. Each has a context in
/// the isolate's [`ContextTable`](crate::context::ContextTable), which outlives the exchange
/// while the response streams or `waitUntil` work runs.
pub struct Exchanges {
    pending: crate::context::IdMap<PendingExchange>,
    events: ExchangeEvents,
    contexts: SharedContexts,
    /// The stream pumps' tasks: they run on the isolate's thread, which may outlive the
    /// isolate (an executor hosting many), so they end with it (see `Drop`).
    pumps: Vec<tokio::task::AbortHandle>,
}

impl Drop for Exchanges {
    /// The isolate is going away: its unfinished pumps stop, and their streams end with an
    /// error (`StreamSender`).
    fn drop(&mut self) {
        for pump in &self.pumps {
            pump.abort();
        }
    }
}

impl Exchanges {
    /// An empty table whose stream pumps report to `events`, keeping request contexts in
    /// `contexts`.
    pub fn new(events: ExchangeEvents, contexts: SharedContexts) -> Self {
        Self {
            pending: crate::context::IdMap::default(),
            events,
            contexts,
            pumps: Vec::new(),
        }
    }

    /// Registers an exchange, and opens its request's context, before its request is
    /// dispatched to JavaScript; `guard` lives until the worker is done with the response; a
    /// streamed response whose client reads nothing for `write_timeout` is ended.
    pub fn insert(
        &mut self,
        context: &RequestContext,
        responder: oneshot::Sender<HandlerResult>,
        guard: Option<Guard>,
        write_timeout: Duration,
    ) {
        self.contexts.borrow_mut().open(context);
        self.pending.insert(
            context.id,
            PendingExchange {
                responder,
                guard,
                write_timeout,
            },
        );
    }

    /// Completes an exchange with an error without involving JavaScript.
    pub fn fail_with(&mut self, id: RequestId, error: HandlerError) {
        if let Some(exchange) = self.pending.remove(&id) {
            drop(exchange.guard);
            self.contexts.borrow_mut().responded(id);
            let _ = exchange.responder.send(Err(error));
        }
    }

    /// Fails every pending exchange, e.g. when the isolate is terminated.
    pub fn fail_all(&mut self, error: &HandlerError) {
        let pending: Vec<_> = self.pending.drain().collect();
        for (id, exchange) in pending {
            drop(exchange.guard);
            self.contexts.borrow_mut().responded(id);
            let _ = exchange.responder.send(Err(error.clone()));
        }
    }

    /// What the front end attached to exchange `id` (its lease), while it awaits its response.
    pub fn guard_of(&self, id: RequestId) -> Option<&Guard> {
        self.pending.get(&id)?.guard.as_ref()
    }

    /// Number of exchanges awaiting a response.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no exchange is waiting for a response.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Hands the response (or failure) over. A streamed body's pump ends the request's
    /// response itself, when the stream ends.
    fn complete(&mut self, id: RequestId, result: HandlerResult, streamed: bool) {
        // A missing entry or a dropped receiver means the client is gone: nothing to do.
        if let Some(exchange) = self.pending.remove(&id) {
            // The request is done with its isolate (a stream's pump holds the guard itself):
            // the guard goes before the client can see the response, so its next request
            // finds the isolate free.
            drop(exchange.guard);
            if !streamed {
                self.contexts.borrow_mut().responded(id);
            }
            let _ = exchange.responder.send(result);
        }
    }

    /// Takes the guard and write timeout of exchange `id` for its stream's pump.
    fn take_for_stream(&mut self, id: RequestId) -> (Option<Guard>, Duration) {
        match self.pending.get_mut(&id) {
            Some(exchange) => (exchange.guard.take(), exchange.write_timeout),
            None => (None, DEFAULT_WRITE_TIMEOUT),
        }
    }
}

deno_core::extension!(
    isola_http,
    deps = [deno_web, deno_fetch, isola_console, isola_websocket],
    ops = [
        op_isola_request_headers,
        op_isola_respond_text,
        op_isola_respond_text_typed,
        op_isola_respond_bytes,
        op_isola_respond_empty,
        op_isola_respond_stream,
        op_isola_respond_error,
        op_isola_respond_websocket,
        op_isola_wait_until_expired,
        op_isola_wait_until_pending,
    ],
    esm = [dir "../js", "10_fetch_event.js"],
    options = { exchanges: Exchanges },
    state = |state, options| {
        state.put(options.exchanges.contexts.clone());
        state.put(SharedExchanges::new(RefCell::new(options.exchanges)));
        state.put(Retired::default());
    },
);

/// Headers that describe a connection or the framing of a message, not the response: the
/// front end alone frames bodies, so a worker's value for one of these never reaches the
/// wire (a forged `content-length` would let a body smuggle a second response).
const CONNECTION_HEADERS: [&str; 10] = [
    "connection",
    "content-length",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// A response's header list as the handler's `Response` holds it (`[[name, value], ...]`),
/// read straight from V8 into a `HeaderMap`. Through serde it was first a vector of byte
/// strings, two allocations per header, then copied into the map (about 1 % of hello's CPU).
/// A name or value HTTP refuses fails the request as the handler's error, not the op.
pub struct ResponseHeaders(Result<HeaderMap, String>);

impl<'a> deno_core::FromV8<'a> for ResponseHeaders {
    type Error = JsErrorBox;

    fn from_v8<'i>(
        scope: &mut v8::PinScope<'a, 'i>,
        value: v8::Local<'a, v8::Value>,
    ) -> Result<Self, Self::Error> {
        Ok(Self(read_header_list(scope, value)))
    }
}

/// Room for the headers the node adds to a response after the worker's (`x-request-id`, the
/// cache's `age` and `cache-status`), so adding them does not grow the map.
const ADDED_BY_THE_NODE: usize = 3;

fn read_header_list(
    scope: &v8::PinScope<'_, '_>,
    list: v8::Local<'_, v8::Value>,
) -> Result<HeaderMap, String> {
    const NOT_A_LIST: &str = "the response's header list is not a list of [name, value] pairs";
    // More than an HTTP header map holds (32,768).
    const TOO_MANY: &str = "the response has too many headers";
    let list = v8::Local::<v8::Array>::try_from(list).map_err(|_| NOT_A_LIST.to_owned())?;
    let len = list.length();
    let mut map = HeaderMap::try_with_capacity((len as usize).saturating_add(ADDED_BY_THE_NODE))
        .map_err(|_| TOO_MANY.to_owned())?;
    let mut buffer = ByteBuffer::default();
    for index in 0..len {
        let pair = list
            .get_index(scope, index)
            .and_then(|pair| v8::Local::<v8::Array>::try_from(pair).ok())
            .ok_or_else(|| NOT_A_LIST.to_owned())?;
        let (Some(name), Some(value)) = (pair.get_index(scope, 0), pair.get_index(scope, 1)) else {
            return Err(NOT_A_LIST.to_owned());
        };
        let name = buffer
            .read(scope, name)
            .and_then(|bytes| HeaderName::from_bytes(bytes).ok())
            .ok_or_else(|| {
                format!(
                    "invalid response header name {:?}",
                    name.to_rust_string_lossy(scope)
                )
            })?;
        let value = buffer
            .read(scope, value)
            .and_then(|bytes| HeaderValue::from_bytes(bytes).ok())
            .ok_or_else(|| format!("invalid value for response header {name}"))?;
        map.try_append(name, value)
            .map_err(|_| TOO_MANY.to_owned())?;
    }
    drop_connection_headers(&mut map);
    Ok(map)
}

/// Where a header's bytes are read: on the stack, unless one is longer.
struct ByteBuffer {
    short: [u8; 256],
    long: Vec<u8>,
}

impl Default for ByteBuffer {
    fn default() -> Self {
        Self {
            short: [0; 256],
            long: Vec::new(),
        }
    }
}

impl ByteBuffer {
    /// The Latin-1 bytes of `value` (a Web IDL ByteString); `None` for anything else.
    fn read(
        &mut self,
        scope: &v8::PinScope<'_, '_>,
        value: v8::Local<'_, v8::Value>,
    ) -> Option<&[u8]> {
        let string = v8::Local::<v8::String>::try_from(value).ok()?;
        if !string.contains_only_onebyte() {
            return None;
        }
        let len = string.length();
        let bytes = if len <= self.short.len() {
            &mut self.short[..len]
        } else {
            self.long.resize(len, 0);
            &mut self.long[..]
        };
        string.write_one_byte_v2(scope, 0, bytes, v8::WriteFlags::empty());
        Some(bytes)
    }
}

/// Removes [`CONNECTION_HEADERS`] and the headers a `Connection` header names (RFC 9110
/// §7.6.1).
fn drop_connection_headers(map: &mut HeaderMap) {
    // Most responses have none: one pass over their few names, no lookups.
    if !map
        .keys()
        .any(|name| CONNECTION_HEADERS.contains(&name.as_str()))
    {
        return;
    }
    let named: Vec<HeaderName> = map
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        map.remove(name);
    }
    for name in CONNECTION_HEADERS {
        map.remove(name);
    }
}

fn respond(
    state: &mut OpState,
    id: RequestId,
    status: u32,
    headers: ResponseHeaders,
    body: ResponseBody,
) {
    let streamed = matches!(body, ResponseBody::Stream(_));
    let result = match (
        u16::try_from(status)
            .ok()
            .and_then(|s| StatusCode::from_u16(s).ok()),
        headers.0,
    ) {
        (Some(status), Ok(headers)) => Ok(JsResponse {
            status,
            headers,
            body,
        }),
        (None, _) => Err(HandlerError::handler(format!(
            "the handler returned an invalid status code {status}"
        ))),
        (_, Err(message)) => Err(HandlerError::handler(message)),
    };
    state
        .borrow::<SharedExchanges>()
        .borrow_mut()
        .complete(id, result, streamed);
}

/// Responds with a body given as a string.
#[op2]
fn op_isola_respond_text(
    state: &mut OpState,
    #[number] id: u64,
    #[smi] status: u32,
    #[scoped] headers: ResponseHeaders,
    #[string] body: String,
) {
    respond(
        state,
        id,
        status,
        headers,
        ResponseBody::Full(Bytes::from(body)),
    );
}

/// How [`op_isola_respond_text_typed`] is told the response's only header, as deno_fetch's
/// `Response` records it for a body given as a string whose headers were never touched.
mod fast_header {
    /// No header at all.
    pub const NONE: u32 = 0;
    /// `content-type: text/plain;charset=UTF-8`, the default for a string body.
    pub const DEFAULT_TEXT: u32 = 1;
    /// A `content-type` given as the op's argument.
    pub const CONTENT_TYPE: u32 = 2;
}

/// The default `content-type` of a string body.
const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain;charset=UTF-8");

/// Responds with a string body and at most a `content-type` header, passed as a kind (and the
/// value, for [`fast_header::CONTENT_TYPE`]): reading a one-header list back from V8 cost
/// about 2,500 instructions per request, a twentieth of hello's.
#[op2(fast)]
fn op_isola_respond_text_typed<'s>(
    scope: &mut v8::PinScope<'s, '_>,
    state: &mut OpState,
    #[number] id: u64,
    #[smi] status: u32,
    #[smi] header_kind: u32,
    content_type: v8::Local<'s, v8::Value>,
    #[string] body: String,
) {
    let headers = match header_kind {
        fast_header::NONE => Ok(HeaderMap::with_capacity(ADDED_BY_THE_NODE)),
        fast_header::DEFAULT_TEXT => Ok(single_content_type(TEXT_PLAIN)),
        fast_header::CONTENT_TYPE => ByteBuffer::default()
            .read(scope, content_type)
            .and_then(|bytes| HeaderValue::from_bytes(bytes).ok())
            .map(single_content_type)
            .ok_or_else(|| "invalid value for response header content-type".to_owned()),
        _ => Err(format!("unknown response header kind {header_kind}")),
    };
    respond(
        state,
        id,
        status,
        ResponseHeaders(headers),
        ResponseBody::Full(Bytes::from(body)),
    );
}

fn single_content_type(value: HeaderValue) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(1 + ADDED_BY_THE_NODE);
    map.insert(http::header::CONTENT_TYPE, value);
    map
}

/// The headers of request `id` as a flat `[name, value, ...]` list of strings, made when the
/// worker first reads them (`request.headers`); `null` once the request has ended (its
/// response sent and its `waitUntil` work settled), as Deno's `Request closed`.
#[op2]
fn op_isola_request_headers<'s>(
    scope: &mut v8::PinScope<'s, '_>,
    state: &mut OpState,
    #[number] id: u64,
) -> v8::Local<'s, v8::Value> {
    let Some(headers) = state
        .borrow::<SharedContexts>()
        .borrow_mut()
        .take_headers(id)
    else {
        return v8::null(scope).into();
    };
    let mut flat = Vec::with_capacity(headers.len() * 2);
    for (name, value) in &headers {
        flat.push(one_byte_string(scope, name.as_str().as_bytes()));
        flat.push(one_byte_string(scope, value.as_bytes()));
    }
    v8::Array::new_with_elements(scope, &flat).into()
}

/// A V8 string of Latin-1 bytes (header names and values are bytes, Web IDL ByteStrings).
pub fn one_byte_string<'s>(
    scope: &mut v8::PinScope<'s, '_>,
    bytes: &[u8],
) -> v8::Local<'s, v8::Value> {
    v8::String::new_from_one_byte(scope, bytes, v8::NewStringType::Normal)
        .map_or_else(|| v8::undefined(scope).into(), Into::into)
}

/// Responds with a body given as bytes.
#[op2]
fn op_isola_respond_bytes(
    state: &mut OpState,
    #[number] id: u64,
    #[smi] status: u32,
    #[scoped] headers: ResponseHeaders,
    #[buffer] body: JsBuffer,
) {
    respond(
        state,
        id,
        status,
        headers,
        ResponseBody::Full(Bytes::copy_from_slice(&body)),
    );
}

/// Set once the isolate must be discarded as soon as no request waits for its response.
/// Cloned, it is the same flag: the isolate keeps one to read it after every turn without
/// looking it up in `OpState`.
#[derive(Debug, Clone, Default)]
pub struct Retired(Rc<Cell<bool>>);

impl Retired {
    /// Marks the isolate for discarding.
    pub fn retire(&self) {
        self.0.set(true);
    }

    /// Whether the isolate was marked for discarding.
    pub fn is_retired(&self) -> bool {
        self.0.get()
    }
}

/// `ctx.waitUntil` work is still pending after `wait_until_ms`: the isolate is discarded
/// (cancelling that work) once its in-flight responses are sent.
#[op2(fast)]
fn op_isola_wait_until_expired(state: &mut OpState, #[number] limit_ms: u64) {
    let worker = state.borrow::<crate::console::WorkerName>().0.clone();
    tracing::warn!(
        worker = %worker,
        limit = "wait_until_ms",
        "waitUntil work did not finish within wait_until_ms ({limit_ms} ms); discarding the isolate, which cancels it"
    );
    state.borrow::<Retired>().retire();
}

/// A `ctx.waitUntil` promise of request `id` was added (`1`) or settled (`-1`).
#[op2(fast)]
fn op_isola_wait_until_pending(state: &mut OpState, #[number] id: u64, #[smi] delta: i32) {
    state
        .borrow::<SharedExchanges>()
        .borrow()
        .contexts
        .borrow_mut()
        .wait_until(id, delta);
}

/// Responds without a body.
#[op2]
fn op_isola_respond_empty(
    state: &mut OpState,
    #[number] id: u64,
    #[smi] status: u32,
    #[scoped] headers: ResponseHeaders,
) {
    respond(state, id, status, headers, ResponseBody::Empty);
}

/// Responds with a body streamed from the resource `rid` (made by `resourceForReadableStream`).
#[op2]
fn op_isola_respond_stream(
    state: &mut OpState,
    #[number] id: u64,
    #[smi] status: u32,
    #[scoped] headers: ResponseHeaders,
    #[smi] rid: ResourceId,
) -> Result<(), JsErrorBox> {
    let resource = state
        .resource_table
        .take_any(rid)
        .map_err(|e| JsErrorBox::type_error(e.to_string()))?;
    let (sender, receiver) = mpsc::channel(STREAM_WINDOW_CHUNKS + 1);
    let shared = state.borrow::<SharedExchanges>().clone();
    let mut exchanges = shared.borrow_mut();
    let (guard, write_timeout) = exchanges.take_for_stream(id);
    let pump = StreamPump {
        id,
        resource,
        // Wrapped before the task first runs: a kill may drop it unpolled.
        sender: StreamSender {
            sender,
            ended: false,
        },
        events: exchanges.events.clone(),
        write_timeout,
        guard,
        contexts: exchanges.contexts.clone(),
    };
    let pump = deno_core::unsync::spawn(pump.run()).abort_handle();
    exchanges.pumps.retain(|pump| !pump.is_finished());
    exchanges.pumps.push(pump);
    drop(exchanges);
    respond(state, id, status, headers, ResponseBody::Stream(receiver));
    Ok(())
}

/// Responds with status 101 and the WebSocket `rid` (the client end of a `WebSocketPair`): the
/// front end upgrades the connection and joins it to the socket, which keeps the request's
/// lease (so its isolate) until it closes.
#[op2]
fn op_isola_respond_websocket(
    state: &mut OpState,
    #[number] id: u64,
    #[smi] status: u32,
    #[scoped] headers: ResponseHeaders,
    #[smi] rid: ResourceId,
) -> Result<(), JsErrorBox> {
    let mut peer = crate::websocket::take_peer(state, rid, id)?;
    let (guard, _) = state
        .borrow::<SharedExchanges>()
        .borrow_mut()
        .take_for_stream(id);
    peer.guard = guard;
    respond(
        state,
        id,
        status,
        headers,
        ResponseBody::WebSocket(Box::new(peer)),
    );
    Ok(())
}

/// Fails the exchange: the handler threw, rejected or returned something unusable.
#[op2(fast)]
fn op_isola_respond_error(state: &mut OpState, #[number] id: u64, #[string] message: String) {
    let mut error = HandlerError::handler(message);
    if crate::websocket::take_refused(state, id) {
        error.limit = Some(crate::websocket::SOCKETS_FULL);
    }
    state
        .borrow::<SharedExchanges>()
        .borrow_mut()
        .complete(id, Err(error), false);
}

/// Moves a streamed response body from its `ReadableStream` into the channel to the
/// connection, with backpressure; holds the exchange's guard until it is done.
struct StreamPump {
    id: RequestId,
    resource: Rc<dyn Resource>,
    sender: StreamSender,
    events: ExchangeEvents,
    write_timeout: Duration,
    guard: Option<Guard>,
    /// Where the request's response is marked complete when the stream ends.
    contexts: SharedContexts,
}

/// The pump's end of a response stream. If the pump stops before the stream ended (its
/// isolate was killed or went away, which drops the pump's task), the connection gets an error
/// instead of a clean end: the client sees an incomplete response and the cache stores nothing.
struct StreamSender {
    sender: mpsc::Sender<Result<Bytes, StreamError>>,
    ended: bool,
}

impl Drop for StreamSender {
    fn drop(&mut self) {
        if !self.ended {
            // The pump keeps one slot of the channel free for this.
            let _ = self.sender.try_send(Err(StreamError(
                "the isolate stopped before the response was complete".to_owned(),
            )));
        }
    }
}

impl StreamPump {
    async fn run(self) {
        let Self {
            id,
            resource,
            sender,
            events,
            write_timeout,
            guard,
            contexts,
        } = self;
        let mut sender = sender;
        let event = loop {
            let read = tokio::select! {
                read = resource.clone().read(STREAM_CHUNK_BYTES) => read,
                () = sender.sender.closed() => break ExchangeEvent::Aborted(id),
            };
            match read {
                Ok(view) if view.is_empty() => {
                    sender.ended = true;
                    break ExchangeEvent::Finished(id);
                }
                Ok(view) => {
                    // Room for the chunk and the spare slot, so a stall can always be told.
                    let permits =
                        match tokio::time::timeout(write_timeout, sender.sender.reserve_many(2))
                            .await
                        {
                            Ok(Ok(permits)) => permits,
                            Ok(Err(_closed)) => break ExchangeEvent::Aborted(id),
                            Err(_stalled) => {
                                sender.ended = true;
                                let _ = sender.sender.try_send(Err(StreamError(format!(
                                    "the client read nothing for {} ms",
                                    write_timeout.as_millis()
                                ))));
                                break ExchangeEvent::Aborted(id);
                            }
                        };
                    if let Some(permit) = permits.into_iter().next() {
                        permit.send(Ok(Bytes::copy_from_slice(&view)));
                    }
                }
                Err(error) => {
                    sender.ended = true;
                    let _ = sender.sender.try_send(Err(StreamError(error.to_string())));
                    break ExchangeEvent::Finished(id);
                }
            }
        };
        resource.close();
        drop(guard);
        contexts.borrow_mut().responded(id);
        let _ = events.send(event);
    }
}
