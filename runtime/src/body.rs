//! The body of a response on its way to a client: empty, known in full, or streamed from the
//! worker (and then possibly tapped by the response cache, which stores it as it passes).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use isola_bindings::http::{ResponseBody, StreamError};
use tokio::sync::mpsc;

/// Sees a streamed body's chunks as they pass to the client (the response cache's recorder).
pub trait Tap: std::fmt::Debug + Send + Sync {
    /// One more chunk went by; `false` once the tap wants no more (it is then dropped).
    fn chunk(&mut self, data: &Bytes) -> bool;

    /// The stream ended cleanly.
    fn finish(self: Box<Self>);
}

/// The body of a response sent to a client.
#[derive(Debug)]
pub enum Body {
    /// No body.
    Empty,
    /// A body known in full; `None` once sent.
    Full(Option<Bytes>),
    /// Chunks as the worker produces them and, for a cacheable response, the tap (the
    /// cache's recorder) storing it as it passes.
    Stream(
        mpsc::Receiver<Result<Bytes, StreamError>>,
        Option<Box<dyn Tap>>,
    ),
}

impl Body {
    /// A body made of a static text.
    pub fn text(text: impl Into<Bytes>) -> Self {
        Self::Full(Some(text.into()))
    }
}

impl From<ResponseBody> for Body {
    fn from(body: ResponseBody) -> Self {
        match body {
            ResponseBody::Empty => Self::Empty,
            ResponseBody::Full(bytes) => Self::Full(Some(bytes)),
            ResponseBody::Stream(chunks) => Self::Stream(chunks, None),
            // The socket was not taken over (the front end answers such a response itself):
            // dropping its ends closes the worker's side.
            ResponseBody::WebSocket(_) => Self::Empty,
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = StreamError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamError>>> {
        match &mut *self {
            Self::Empty => Poll::Ready(None),
            Self::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Self::Stream(chunks, tap) => {
                let polled = chunks.poll_recv(cx);
                match &polled {
                    Poll::Ready(None) => {
                        if let Some(tap) = tap.take() {
                            tap.finish();
                        }
                    }
                    Poll::Ready(Some(Ok(data))) => {
                        if let Some(t) = tap
                            && !t.chunk(data)
                        {
                            *tap = None;
                        }
                    }
                    Poll::Ready(Some(Err(_))) => *tap = None,
                    Poll::Pending => {}
                }
                polled.map(|chunk| chunk.map(|r| r.map(Frame::data)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Full(bytes) => bytes.is_none(),
            Self::Stream(..) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Empty => SizeHint::with_exact(0),
            Self::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Self::Stream(..) => SizeHint::default(),
        }
    }
}
