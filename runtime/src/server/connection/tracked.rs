//! A request counted as in flight on its connection from its head until its response body
//! is sent (or dropped), so the connection's idle time starts only after it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body::{Frame, SizeHint};

use super::ConnectionState;

/// A request in flight on its connection; dropping it ends it.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<ConnectionState>);

impl InFlight {
    /// A request whose head just arrived on the connection of `state`.
    pub(crate) fn begin(state: &Arc<ConnectionState>, version: http::Version) -> Self {
        state.request_started(version == http::Version::HTTP_2);
        Self(state.clone())
    }

    /// `response` with its body keeping the request in flight until it is sent.
    pub(crate) fn hold<B>(self, response: http::Response<B>) -> http::Response<Tracked<B>> {
        response.map(|inner| Tracked {
            inner,
            _in_flight: self,
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// A response body that keeps its request in flight.
#[derive(Debug)]
pub(crate) struct Tracked<B> {
    inner: B,
    _in_flight: InFlight,
}

impl<B: http_body::Body + Unpin> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
