//! The socket under hyper, wrapped so a connection's watchdog can end it: on its order the
//! next read (hyper always has one pending while it waits for a request head) writes a 408
//! when asked to, then reports end-of-file, which hyper takes as the client closing.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::state::{Close, ConnectionState};

/// What a timed-out HTTP/1.1 request head gets before the connection closes.
const REQUEST_TIMEOUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";

/// A socket whose reads a watchdog can end.
#[derive(Debug)]
pub(crate) struct GuardedIo<T> {
    inner: T,
    state: Arc<ConnectionState>,
    /// How much of the 408 is written.
    answered: usize,
}

impl<T> GuardedIo<T> {
    /// Wraps `inner`, watched through `state`.
    pub(crate) fn new(inner: T, state: Arc<ConnectionState>) -> Self {
        Self {
            inner,
            state,
            answered: 0,
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for GuardedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.state.closing() {
            None => {}
            Some(Close::Quietly | Close::Abort) => return Poll::Ready(Ok(())),
            Some(Close::RequestTimeout) => {
                while this.answered < REQUEST_TIMEOUT.len() {
                    let written = ready!(
                        Pin::new(&mut this.inner).poll_write(cx, &REQUEST_TIMEOUT[this.answered..])
                    )?;
                    if written == 0 {
                        return Poll::Ready(Ok(()));
                    }
                    this.answered += written;
                }
                ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
                return Poll::Ready(Ok(()));
            }
        }
        let before = buf.filled().len();
        let Poll::Ready(read) = Pin::new(&mut this.inner).poll_read(cx, buf) else {
            // Only a waiting read needs the watchdog's wake-up (registering on every read
            // was 1 % of a small request's CPU); an order given since the check above is
            // seen at the next poll.
            this.state.reader.register(cx.waker());
            if this.state.closing().is_some() {
                cx.waker().wake_by_ref();
            }
            return Poll::Pending;
        };
        read?;
        if buf.filled().len() > before {
            this.state.bytes_arrived();
        }
        Poll::Ready(Ok(()))
    }
}

impl<T> GuardedIo<T> {
    /// Notes whether a write is stuck waiting for the client to read.
    fn watched<R>(&self, polled: Poll<R>) -> Poll<R> {
        self.state.write_blocked(polled.is_pending());
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GuardedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watched(polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watched(polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.watched(polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
