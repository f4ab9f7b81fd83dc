//! The pump that feeds a request body to the isolate chunk by chunk under the size limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use isola_bindings::body::{BodyError, BodyReceiver};
use tokio::sync::mpsc;

/// Request body chunks buffered ahead of the worker: the backpressure window.
const REQUEST_WINDOW_CHUNKS: usize = 4;

/// What went wrong with a request body, so a handler that fails reading it becomes a 413
/// (too large) or 400 (malformed framing, e.g. a bad chunk size), not a 500.
#[derive(Debug, Clone, Default)]
pub struct BodyFault(Arc<AtomicU8>);

const TOO_LARGE: u8 = 1;
const MALFORMED: u8 = 2;

impl BodyFault {
    /// Whether the size limit was crossed.
    pub fn too_large(&self) -> bool {
        self.0.load(Ordering::Relaxed) == TOO_LARGE
    }

    /// Whether the body could not be read as HTTP framing.
    pub fn malformed(&self) -> bool {
        self.0.load(Ordering::Relaxed) == MALFORMED
    }

    fn set(&self, fault: u8) {
        self.0.store(fault, Ordering::Relaxed);
    }
}

/// Whether a body error is the client's broken framing (a bad chunk size or the like),
/// which hyper reports as an I/O error of kind `InvalidInput`/`InvalidData` inside it.
fn is_malformed(error: &hyper::Error) -> bool {
    let mut cause = std::error::Error::source(error);
    while let Some(error) = cause {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData
            );
        }
        cause = error.source();
    }
    error.is_parse()
}

/// Forwards `incoming` to the isolate chunk by chunk, at most `limit` bytes; the body stream
/// errors once the limit is crossed. Stops when the worker stops reading.
pub fn pump_request_body(mut incoming: Incoming, limit: u64) -> (BodyReceiver, BodyFault) {
    let (sender, receiver) = mpsc::channel(REQUEST_WINDOW_CHUNKS);
    let fault = BodyFault::default();
    let flag = fault.clone();
    tokio::spawn(async move {
        let mut received: u64 = 0;
        loop {
            let frame = tokio::select! {
                frame = incoming.frame() => frame,
                () = sender.closed() => return,
            };
            let chunk = match frame {
                None => return,
                Some(Err(error)) => {
                    if is_malformed(&error) {
                        flag.set(MALFORMED);
                    }
                    Err(BodyError::Io(error.to_string()))
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        received += data.len() as u64;
                        if received > limit {
                            flag.set(TOO_LARGE);
                            Err(BodyError::TooLarge { limit })
                        } else {
                            Ok(data)
                        }
                    }
                    Err(_trailers) => continue,
                },
            };
            let last = chunk.is_err();
            if sender.send(chunk).await.is_err() || last {
                return;
            }
        }
    });
    (receiver, fault)
}
