//! One open WebSocket: frames between the connection (tokio-tungstenite) and the worker's
//! socket (the channels of [`super`]), until either side closes, the socket sits idle, the
//! node shuts down or the worker's isolate goes away. The front end runs it for a socket a
//! worker accepted (the "client" is the browser), [`super::outbound`] for one a worker opened
//! (the "client" is the server it connected to); framing is the same but for masking.

use std::future::Future;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error, Message};

use super::{Frame, SocketPeer};

/// Longest wait for a close frame to be written, and then for the client's reply.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// How long a socket may go without a message either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// `websocket_idle_timeout_ms`.
    pub idle_timeout: Duration,
    /// `[http] write_timeout_ms`: longest wait for the client to take one message.
    pub write_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(300),
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// Why the node ends a socket, with the close code the client (and the worker) are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Shutdown,
    Idle,
    TooBig,
    Malformed,
    WorkerGone,
    Overflow,
}

impl Ending {
    fn frame(self) -> (u16, &'static str) {
        match self {
            Self::Shutdown => (1001, "the node is shutting down"),
            Self::Idle => (1001, "idle timeout"),
            Self::TooBig => (1009, "message too big"),
            Self::Malformed => (1002, "protocol error"),
            Self::WorkerGone => (1011, "the worker stopped"),
            Self::Overflow => (1008, "the client did not read what the worker sent"),
        }
    }
}

/// Runs the socket until it closes; `shutdown` completes when the node shuts down (the socket
/// then closes with 1001).
pub async fn run<S, F>(
    socket: WebSocketStream<S>,
    peer: SocketPeer,
    settings: Settings,
    shutdown: F,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Future<Output = ()>,
{
    let SocketPeer {
        mut from_worker,
        to_worker,
        shared,
        guard,
    } = peer;
    let (mut sink, mut stream) = socket.split();
    let idle = tokio::time::sleep(settings.idle_timeout);
    tokio::pin!(idle);
    tokio::pin!(shutdown);
    let ending = loop {
        tokio::select! {
            () = &mut shutdown => break Some(Ending::Shutdown),
            () = &mut idle => break Some(Ending::Idle),
            out = from_worker.recv() => match out {
                Some(Frame::Close { code, reason }) => {
                    let frame = close_frame(code, &reason);
                    if !write(&mut sink, Message::Close(Some(frame))).await {
                        break None;
                    }
                    // The client's reply (or its end) completes the worker's close.
                    let reply = tokio::time::timeout(CLOSE_WAIT, client_close(&mut stream)).await;
                    let (code, reason) = reply.unwrap_or((1006, String::new()));
                    let _ = to_worker.try_send(Frame::Close { code, reason });
                    break None;
                }
                Some(frame) => {
                    let bytes = frame.len();
                    let message = match frame {
                        Frame::Text(text) => Message::text(text),
                        Frame::Binary(data) => Message::binary(data),
                        Frame::Close { .. } => continue,
                    };
                    let written = tokio::time::timeout(settings.write_timeout, sink.send(message)).await;
                    shared.written(bytes);
                    match written {
                        Ok(Ok(())) => {}
                        // The client stopped reading: what the worker sends waits no longer.
                        Err(_elapsed) => break Some(Ending::Overflow),
                        Ok(Err(_)) => {
                            let _ = to_worker.try_send(Frame::Close { code: 1006, reason: String::new() });
                            break None;
                        }
                    }
                    idle.as_mut().reset(tokio::time::Instant::now() + settings.idle_timeout);
                }
                None if shared.overflowed() => break Some(Ending::Overflow),
                None => break Some(Ending::WorkerGone),
            },
            // Read the client only while the worker has room for what it sends (a future
            // dropped midway loses nothing: tungstenite keeps partial frames in the stream).
            inbound = async {
                match to_worker.reserve().await {
                    Ok(permit) => Some((permit, stream.next().await)),
                    Err(_) => None,
                }
            } => {
                let Some((permit, next)) = inbound else { break Some(Ending::WorkerGone) };
                let frame = match next {
                    Some(Ok(Message::Text(text))) => Frame::Text(text.as_str().to_owned()),
                    Some(Ok(Message::Binary(data))) => Frame::Binary(data),
                    Some(Ok(Message::Close(frame))) => {
                        let (code, reason) = frame.map_or((1005, String::new()), |f| {
                            (u16::from(f.code), f.reason.as_str().to_owned())
                        });
                        permit.send(Frame::Close { code, reason });
                        // tungstenite queued the reply (the same code): send it, then end.
                        let _ = tokio::time::timeout(CLOSE_WAIT, sink.flush()).await;
                        break None;
                    }
                    Some(Ok(_ping_pong_or_raw)) => continue,
                    Some(Err(Error::Capacity(_))) => {
                        tell_worker(permit, Ending::TooBig);
                        break Some(Ending::TooBig);
                    }
                    Some(Err(Error::Protocol(_) | Error::Utf8(_))) => {
                        tell_worker(permit, Ending::Malformed);
                        break Some(Ending::Malformed);
                    }
                    Some(Err(_)) | None => {
                        permit.send(Frame::Close { code: 1006, reason: String::new() });
                        break None;
                    }
                };
                permit.send(frame);
                idle.as_mut().reset(tokio::time::Instant::now() + settings.idle_timeout);
            }
        }
    };
    if let Some(ending) = ending {
        let (code, reason) = ending.frame();
        if !matches!(ending, Ending::TooBig | Ending::Malformed) {
            let _ = to_worker.try_send(Frame::Close {
                code,
                reason: reason.to_owned(),
            });
        }
        if write(&mut sink, Message::Close(Some(close_frame(code, reason)))).await {
            let _ = tokio::time::timeout(CLOSE_WAIT, client_close(&mut stream)).await;
        }
    }
    drop(to_worker);
    drop(guard);
}

/// Tells the worker the node closed the socket for `ending`.
fn tell_worker(permit: tokio::sync::mpsc::Permit<'_, Frame>, ending: Ending) {
    let (code, reason) = ending.frame();
    permit.send(Frame::Close {
        code,
        reason: reason.to_owned(),
    });
}

fn close_frame(code: u16, reason: &str) -> CloseFrame {
    CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_owned().into(),
    }
}

/// Writes `message` (a close frame) within [`CLOSE_WAIT`]; false when that failed.
async fn write<K>(sink: &mut K, message: Message) -> bool
where
    K: futures::Sink<Message, Error = Error> + Unpin,
{
    matches!(
        tokio::time::timeout(CLOSE_WAIT, sink.send(message)).await,
        Ok(Ok(()))
    )
}

/// Reads until the client's close frame (its code and reason) or the connection's end.
async fn client_close<T>(stream: &mut T) -> (u16, String)
where
    T: futures::Stream<Item = Result<Message, Error>> + Unpin,
{
    while let Some(item) = stream.next().await {
        match item {
            Ok(Message::Close(frame)) => {
                return frame.map_or((1005, String::new()), |f| {
                    (u16::from(f.code), f.reason.as_str().to_owned())
                });
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    (1006, String::new())
}
