//! WebSockets a worker accepts (`WebSocketPair`, as on Workers): each pair is one resource
//! holding the isolate's ends of two channels; the front end, which owns the connection and
//! its framing, gets the other ends ([`SocketPeer`]) with the 101 response. Both directions
//! are bounded: the front end stops reading the client while [`INBOUND_WINDOW`] messages wait
//! for the worker, and a worker that queues more than `websocket_send_buffer_bytes` for a
//! client that does not read gets the socket closed (1008).
//!
//! A worker's own outbound sockets (`new WebSocket(url)`, [`outbound`]) are the same resource;
//! their other ends go to a [`session`] this isolate's thread runs over the connection it
//! opened through the deployment's outbound policy.

mod outbound;
pub mod session;

pub use outbound::{CONNECT_TIMEOUT, SocketResolver, WRITE_TIMEOUT};

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use deno_core::{AsyncRefCell, JsBuffer, OpState, RcRef, Resource, ResourceId, ToJsBuffer, op2};
use deno_error::JsErrorBox;
use tokio::sync::mpsc;

use crate::context::{Guard, RequestId, SharedContexts};

/// Messages from the client that may wait for the worker before the front end stops reading
/// the connection (so a fast sender slows to the worker's pace, TCP pushing back).
pub const INBOUND_WINDOW: usize = 16;

/// Close code for a socket whose other side went away without a close frame.
pub const ABNORMAL_CLOSURE: u16 = 1006;
/// Close code for a worker that queued more than its send buffer for a client not reading.
pub const POLICY_VIOLATION: u16 = 1008;

/// One WebSocket message or the close handshake, in either direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Bytes),
    /// A close frame (or, towards the worker, the end of the socket) with its code and reason.
    Close {
        /// The close code (1000 normal, 1001 going away, ...).
        code: u16,
        /// Why, at most 123 bytes of UTF-8.
        reason: String,
    },
}

impl Frame {
    /// Bytes of payload, for the send buffer's accounting.
    pub fn len(&self) -> usize {
        match self {
            Self::Text(text) => text.len(),
            Self::Binary(bytes) => bytes.len(),
            Self::Close { reason, .. } => reason.len(),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Per-isolate WebSocket settings, from the worker's limits; put in OpState when the worker
/// is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketLimits {
    /// Largest message either way (`websocket_message_max_bytes`).
    pub message_max_bytes: usize,
    /// Bytes the worker may queue for a client that does not read
    /// (`websocket_send_buffer_bytes`) before the socket is closed with 1008.
    pub send_buffer_bytes: usize,
    /// Sockets open at once in one isolate (`websocket_max_per_isolate`), accepted and
    /// outbound together.
    pub max_per_isolate: usize,
    /// How long an outbound socket may go without a message either way
    /// (`websocket_idle_timeout_ms`; the front end applies it to accepted ones).
    pub idle_timeout: Duration,
}

impl Default for SocketLimits {
    fn default() -> Self {
        Self {
            message_max_bytes: 1024 * 1024,
            send_buffer_bytes: 4 * 1024 * 1024,
            max_per_isolate: 100,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// State the isolate's and the front end's ends of one socket share.
#[derive(Debug, Default)]
pub struct SocketShared {
    /// Bytes the worker queued that the front end has not written yet.
    buffered: AtomicUsize,
    /// The worker went over its send buffer: the socket closes with 1008.
    overflowed: AtomicBool,
}

impl SocketShared {
    /// The front end wrote a message of `bytes` to the client.
    pub fn written(&self, bytes: usize) {
        let _ = self
            .buffered
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                Some(b.saturating_sub(bytes))
            });
    }

    /// Whether the worker's end stopped because it queued past its send buffer.
    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Acquire)
    }
}

/// The front end's ends of a socket, handed over with the worker's 101 response.
pub struct SocketPeer {
    /// What the worker sends to the client; ends (without a close frame) when the isolate
    /// goes away or the worker overflowed its send buffer.
    pub from_worker: mpsc::UnboundedReceiver<Frame>,
    /// What the client sends to the worker, at most [`INBOUND_WINDOW`] waiting.
    pub to_worker: mpsc::Sender<Frame>,
    /// Shared accounting.
    pub shared: Arc<SocketShared>,
    /// The request's hold on its isolate (its lease): the isolate is not evicted or given
    /// another request's slot while the socket is open.
    pub guard: Option<Guard>,
}

impl std::fmt::Debug for SocketPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketPeer")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

/// Sockets open in this isolate, against `websocket_max_per_isolate`.
#[derive(Debug, Clone, Default)]
struct OpenSockets(Rc<Cell<usize>>);

/// Pins the isolate for an outbound socket that request `id` opens: a hold (made from the
/// request's lease while it has one, else from the isolate's own weak handle on its pool)
/// that keeps the isolate from being evicted or recycled
/// until dropped, as an accepted socket's does. Put in OpState by the runtime, which knows
/// what a lease is.
#[derive(Clone)]
pub struct SocketPin(pub Rc<PinSocket>);

/// What [`SocketPin`] runs: given the isolate's OpState and the request opening the socket.
pub type PinSocket = dyn Fn(&OpState, RequestId) -> Option<Guard>;

/// The config key a request refused a socket past [`SocketLimits::max_per_isolate`] fails
/// with: the front end answers it 503 + `Retry-After`, not 500.
pub const SOCKETS_FULL: &str = "websocket_max_per_isolate";

/// Requests (the last [`REMEMBERED_REFUSALS`]) that were refused a socket because the isolate
/// had `websocket_max_per_isolate` open: if their handler then fails, that is why.
#[derive(Debug, Default)]
struct RefusedSockets(std::collections::VecDeque<RequestId>);

/// How many refused requests [`RefusedSockets`] remembers (a handler that catches the
/// refusal and answers on its own leaves its id behind).
const REMEMBERED_REFUSALS: usize = 64;

/// Whether request `id` was refused a socket past `websocket_max_per_isolate` (forgotten
/// once asked), so that its failure can be answered 503 rather than 500.
pub fn take_refused(state: &mut OpState, id: RequestId) -> bool {
    let Some(refused) = state.try_borrow_mut::<RefusedSockets>() else {
        return false;
    };
    match refused.0.iter().position(|&r| r == id) {
        Some(at) => {
            refused.0.remove(at);
            true
        }
        None => false,
    }
}

/// The isolate's end of one pair.
struct SocketResource {
    incoming: AsyncRefCell<mpsc::Receiver<Frame>>,
    outgoing: RefCell<Option<mpsc::UnboundedSender<Frame>>>,
    shared: Arc<SocketShared>,
    /// The front end's ends until the worker's response takes them.
    peer: RefCell<Option<SocketPeer>>,
    /// The request whose response carried the socket (or that opened it): its context stays
    /// open (each message starting a new `cpu_ms` budget) until the socket ends.
    hold: RefCell<Option<(SharedContexts, RequestId)>>,
    /// An outbound socket's opening handshake, until the worker's `op_isola_ws_opened` takes it.
    handshake: RefCell<Option<outbound::Handshake>>,
    /// An outbound socket's hold on its isolate ([`SocketPin`]), let go when it ends.
    pin: RefCell<Option<Guard>>,
    open: OpenSockets,
    limits: SocketLimits,
}

impl SocketResource {
    fn release(&self) {
        if let Some((contexts, id)) = self.hold.borrow_mut().take() {
            contexts.borrow_mut().wait_until(id, -1);
        }
        self.pin.borrow_mut().take();
    }
}

impl Resource for SocketResource {
    fn name(&self) -> std::borrow::Cow<'_, str> {
        "webSocket".into()
    }

    fn close(self: Rc<Self>) {
        self.outgoing.borrow_mut().take();
        self.release();
    }
}

impl Drop for SocketResource {
    fn drop(&mut self) {
        self.release();
        self.open.0.set(self.open.0.get().saturating_sub(1));
    }
}

deno_core::extension!(
    isola_websocket,
    deps = [deno_web, deno_fetch, isola_console],
    ops = [
        op_isola_ws_create,
        op_isola_ws_send_text,
        op_isola_ws_send_binary,
        op_isola_ws_close,
        op_isola_ws_recv,
        op_isola_ws_event,
        op_isola_ws_buffered,
        outbound::op_isola_ws_connect,
        outbound::op_isola_ws_opened,
    ],
    esm = [dir "../js", "50_websocket.js"],
    state = |state| {
        state.put(OpenSockets::default());
        state.put(SocketLimits::default());
        state.put(RefusedSockets::default());
    },
);

/// Why a socket operation failed, as JavaScript sees it.
fn type_error(message: impl Into<String>) -> JsErrorBox {
    JsErrorBox::type_error(message.into())
}

/// Makes a pair for request `context`: the resource holding the isolate's ends; refused past
/// `websocket_max_per_isolate`.
#[op2(fast)]
#[smi]
fn op_isola_ws_create(
    state: &mut OpState,
    #[number] context: u64,
) -> Result<ResourceId, JsErrorBox> {
    let resource = new_socket(state, context)?;
    Ok(state.resource_table.add(resource))
}

/// A socket's resource for request `context`, its other ends in `peer`, counted against
/// `websocket_max_per_isolate` (a `RangeError` past it, remembered for the request).
fn new_socket(state: &mut OpState, context: RequestId) -> Result<SocketResource, JsErrorBox> {
    let limits = *state.borrow::<SocketLimits>();
    let open = state.borrow::<OpenSockets>().clone();
    if open.0.get() >= limits.max_per_isolate {
        if let Some(refused) = state.try_borrow_mut::<RefusedSockets>() {
            if refused.0.len() >= REMEMBERED_REFUSALS {
                refused.0.pop_front();
            }
            refused.0.push_back(context);
        }
        return Err(JsErrorBox::range_error(format!(
            "this isolate has {} WebSockets open already (websocket_max_per_isolate)",
            limits.max_per_isolate
        )));
    }
    open.0.set(open.0.get() + 1);
    let (to_worker, incoming) = mpsc::channel(INBOUND_WINDOW);
    let (outgoing, from_worker) = mpsc::unbounded_channel();
    let shared = Arc::new(SocketShared::default());
    let resource = SocketResource {
        incoming: AsyncRefCell::new(incoming),
        outgoing: RefCell::new(Some(outgoing)),
        shared: shared.clone(),
        peer: RefCell::new(Some(SocketPeer {
            from_worker,
            to_worker,
            shared,
            guard: None,
        })),
        hold: RefCell::new(None),
        handshake: RefCell::new(None),
        pin: RefCell::new(None),
        open,
        limits,
    };
    Ok(resource)
}

/// `ws.bufferedAmount`: bytes the worker queued that have not been written yet.
#[op2(fast)]
#[number]
fn op_isola_ws_buffered(state: &mut OpState, #[smi] rid: ResourceId) -> u64 {
    state
        .resource_table
        .get::<SocketResource>(rid)
        .map_or(0, |socket| {
            socket.shared.buffered.load(Ordering::Acquire) as u64
        })
}

/// Queues `frame` for the client. Past the send buffer the worker's end is dropped, so the
/// front end closes the socket with 1008.
fn send(state: &mut OpState, rid: ResourceId, frame: Frame) -> Result<(), JsErrorBox> {
    let socket = state
        .resource_table
        .get::<SocketResource>(rid)
        .map_err(|_| type_error("the WebSocket is closed"))?;
    if frame.len() > socket.limits.message_max_bytes {
        return Err(JsErrorBox::range_error(format!(
            "a WebSocket message of {} bytes is over websocket_message_max_bytes ({})",
            frame.len(),
            socket.limits.message_max_bytes
        )));
    }
    let mut outgoing = socket.outgoing.borrow_mut();
    let Some(sender) = outgoing.as_ref() else {
        // Closed or overflowed: dropped, as a browser drops sends after close.
        return Ok(());
    };
    let buffered = socket
        .shared
        .buffered
        .fetch_add(frame.len(), Ordering::AcqRel)
        + frame.len();
    if buffered > socket.limits.send_buffer_bytes {
        socket.shared.overflowed.store(true, Ordering::Release);
        outgoing.take();
        return Ok(());
    }
    if sender.send(frame).is_err() {
        outgoing.take();
    }
    Ok(())
}

/// `ws.send(string)`.
#[op2(fast)]
fn op_isola_ws_send_text(
    state: &mut OpState,
    #[smi] rid: ResourceId,
    #[string] text: String,
) -> Result<(), JsErrorBox> {
    send(state, rid, Frame::Text(text))
}

/// `ws.send(ArrayBuffer | ArrayBufferView)`.
#[op2]
fn op_isola_ws_send_binary(
    state: &mut OpState,
    #[smi] rid: ResourceId,
    #[buffer] data: JsBuffer,
) -> Result<(), JsErrorBox> {
    send(state, rid, Frame::Binary(Bytes::copy_from_slice(&data)))
}

/// `ws.close(code, reason)`: the close frame goes out, then nothing more.
#[op2(fast)]
fn op_isola_ws_close(
    state: &mut OpState,
    #[smi] rid: ResourceId,
    #[smi] code: u32,
    #[string] reason: String,
) -> Result<(), JsErrorBox> {
    let socket = state
        .resource_table
        .get::<SocketResource>(rid)
        .map_err(|_| type_error("the WebSocket is closed"))?;
    let code = u16::try_from(code).map_err(|_| type_error("invalid close code"))?;
    if let Some(sender) = socket.outgoing.borrow_mut().take() {
        let _ = sender.send(Frame::Close { code, reason });
    }
    Ok(())
}

/// One event for the worker's socket, as `js/50_websocket.js` reads it.
#[derive(Debug, serde::Serialize)]
struct Received {
    /// 1 text, 2 binary, 3 close.
    kind: u8,
    text: Option<String>,
    data: Option<ToJsBuffer>,
    code: u16,
    reason: String,
    /// Whether the close handshake completed (a close frame arrived).
    clean: bool,
}

impl Received {
    fn close(code: u16, reason: String, clean: bool) -> Self {
        Self {
            kind: 3,
            text: None,
            data: None,
            code,
            reason,
            clean,
        }
    }
}

/// Waits for the next message or the close.
#[op2]
#[serde]
async fn op_isola_ws_recv(
    state: Rc<RefCell<OpState>>,
    #[smi] rid: ResourceId,
) -> Result<Received, JsErrorBox> {
    let socket = state
        .borrow()
        .resource_table
        .get::<SocketResource>(rid)
        .map_err(|_| type_error("the WebSocket is closed"))?;
    let next = {
        let mut incoming = RcRef::map(&socket, |s| &s.incoming).borrow_mut().await;
        incoming.recv().await
    };
    let received = match next {
        Some(Frame::Text(text)) => Received {
            kind: 1,
            text: Some(text),
            data: None,
            code: 0,
            reason: String::new(),
            clean: true,
        },
        Some(Frame::Binary(bytes)) => Received {
            kind: 2,
            text: None,
            data: Some(ToJsBuffer::from(bytes.to_vec())),
            code: 0,
            reason: String::new(),
            clean: true,
        },
        Some(Frame::Close { code, reason }) => {
            socket.release();
            return Ok(Received::close(code, reason, true));
        }
        None if socket.shared.overflowed() => {
            socket.release();
            return Ok(Received::close(
                POLICY_VIOLATION,
                "the client did not read what the worker sent".to_owned(),
                false,
            ));
        }
        None => {
            socket.release();
            return Ok(Received::close(ABNORMAL_CLOSURE, String::new(), false));
        }
    };
    Ok(received)
}

/// Ends the isolate's running turn, charging what ran so far to the requests it ran for,
/// starts request `id`'s new `cpu_ms` budget (`ContextTable::socket_event`) and starts the next
/// turn counted from it (put in OpState by the runtime's limits enforcer).
#[derive(Clone)]
pub struct TurnSplit(pub Rc<SplitTurn>);

/// What [`TurnSplit`] runs: given the isolate's contexts and the request whose socket got a
/// message.
pub type SplitTurn = dyn Fn(&mut crate::context::ContextTable, RequestId);

/// A message is about to be dispatched to the worker's listeners: what ran before it is
/// charged as a turn of its own, and its handlers run on a new `cpu_ms` budget of the request
/// that opened the socket (deno_core may run a quick conversation in one event-loop poll).
#[op2(fast)]
fn op_isola_ws_event(state: &mut OpState, #[smi] rid: ResourceId) {
    let split = state.try_borrow::<TurnSplit>().cloned();
    if let Ok(socket) = state.resource_table.get::<SocketResource>(rid)
        && let Some((contexts, id)) = socket.hold.borrow().as_ref()
    {
        let mut table = contexts.borrow_mut();
        match split {
            Some(split) => (split.0)(&mut table, *id),
            None => table.socket_event(*id),
        }
    }
}

/// Takes the front end's ends of socket `rid` for the response of request `id`, whose
/// context stays open while the socket is.
pub(crate) fn take_peer(
    state: &mut OpState,
    rid: ResourceId,
    id: RequestId,
) -> Result<SocketPeer, JsErrorBox> {
    let socket = state
        .resource_table
        .get::<SocketResource>(rid)
        .map_err(|_| type_error("the WebSocket is closed"))?;
    let peer = socket
        .peer
        .borrow_mut()
        .take()
        .ok_or_else(|| type_error("this WebSocket was already returned in a response"))?;
    let contexts = state.borrow::<SharedContexts>().clone();
    contexts.borrow_mut().wait_until(id, 1);
    *socket.hold.borrow_mut() = Some((contexts, id));
    Ok(peer)
}
