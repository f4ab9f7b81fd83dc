//! The fast HTTP/1.1 client (the default for HTTP/1.1): the request serialised once per run
//! and written with one call, the response head parsed in place with httparse and the body
//! (Content-Length, chunked, or until close) counted and discarded. It costs the generator
//! about a quarter of hyper's client CPU per request, which keeps the generator from being
//! the bottleneck against fast servers; `--h1-client hyper` uses hyper's client instead.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;

use bytes::Bytes;
use http::{HeaderMap, Method};
use tokio::io::{AsyncRead, AsyncWriteExt as _, ReadBuf};

use super::link::{Failure, Io};
use crate::stats::ErrorKind;

/// Most bytes a response head may take.
const MAX_HEAD: usize = 64 * 1024;
/// Read buffer size.
const BUFFER: usize = 16 * 1024;
/// Most headers a response may have.
const MAX_HEADERS: usize = 100;

/// Serialises a request once: request line, `host`, `headers`, `content-length` when there
/// is a body (or the method expects one), then the body.
pub(crate) fn serialize(
    method: &Method,
    path: &str,
    host: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Bytes {
    let mut out = Vec::with_capacity(128 + body.len());
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if name == http::header::HOST || name == http::header::CONTENT_LENGTH {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() || matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// One kept-alive HTTP/1.1 connection.
pub(crate) struct FastH1 {
    io: Box<dyn Io>,
    buffer: Vec<u8>,
    /// Unconsumed bytes are `buffer[start..end]`.
    start: usize,
    end: usize,
}

/// How the response body ends.
enum Framing {
    None,
    Length(u64),
    Chunked,
    Close,
}

impl FastH1 {
    /// Wraps a connected stream.
    pub fn new(io: Box<dyn Io>) -> Self {
        Self {
            io,
            buffer: vec![0; BUFFER],
            start: 0,
            end: 0,
        }
    }

    /// Whether the server closed (or wrote to) the idle connection: one non-blocking read.
    pub fn is_closed(&mut self) -> bool {
        let mut probe = [0u8; 1];
        let mut read = ReadBuf::new(&mut probe);
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        !matches!(
            Pin::new(&mut self.io).poll_read(&mut cx, &mut read),
            Poll::Pending
        )
    }

    /// Reads more bytes into the buffer; `Ok(0)` at end of stream.
    async fn fill(&mut self) -> Result<usize, Failure> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buffer.len() {
            if self.start > 0 {
                self.buffer.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buffer.len() < MAX_HEAD {
                self.buffer.resize(self.buffer.len() * 2, 0);
            } else {
                return Err(failure("the response head is too large"));
            }
        }
        let (io, spare) = (&mut self.io, &mut self.buffer[self.end..]);
        let n = poll_fn(|cx| {
            let mut read = ReadBuf::new(spare);
            match Pin::new(&mut *io).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(read.filled().len())),
                Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
        .map_err(|e| Failure {
            kind: ErrorKind::Io,
            detail: e.to_string(),
        })?;
        self.end += n;
        Ok(n)
    }

    /// Sends `request` (serialised by [`serialize`]) and reads the whole response; returns
    /// the status, the body bytes and whether the connection can be reused.
    pub async fn exchange(
        &mut self,
        request: &[u8],
        head_request: bool,
    ) -> Result<(u16, u64, bool), Failure> {
        self.io.write_all(request).await.map_err(|e| Failure {
            kind: ErrorKind::Io,
            detail: e.to_string(),
        })?;
        loop {
            let (status, framing, keep_alive) = self.read_head(head_request).await?;
            if (100..200).contains(&status) && status != 101 {
                continue; // 100 Continue and other interim responses: the real one follows.
            }
            let bytes = match framing {
                Framing::None => 0,
                Framing::Length(n) => self.skip(n).await?,
                Framing::Chunked => self.skip_chunked().await?,
                Framing::Close => self.skip_to_end().await?,
            };
            let reusable = keep_alive && !matches!(framing, Framing::Close);
            return Ok((status, bytes, reusable));
        }
    }

    async fn read_head(&mut self, head_request: bool) -> Result<(u16, Framing, bool), Failure> {
        loop {
            if self.start < self.end {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut response = httparse::Response::new(&mut headers);
                match response.parse(&self.buffer[self.start..self.end]) {
                    Ok(httparse::Status::Complete(length)) => {
                        let status = response.code.unwrap_or(0);
                        let mut keep_alive = response.version == Some(1);
                        let mut framing = Framing::Close;
                        for header in response.headers.iter() {
                            if header.name.eq_ignore_ascii_case("content-length") {
                                let n = std::str::from_utf8(header.value)
                                    .ok()
                                    .and_then(|v| v.trim().parse().ok())
                                    .ok_or_else(|| failure("invalid content-length"))?;
                                if !matches!(framing, Framing::Chunked) {
                                    framing = Framing::Length(n);
                                }
                            } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                                if ends_with_chunked(header.value) {
                                    framing = Framing::Chunked;
                                }
                            } else if header.name.eq_ignore_ascii_case("connection") {
                                let value = header.value.to_ascii_lowercase();
                                if value.windows(5).any(|w| w == b"close") {
                                    keep_alive = false;
                                } else if value.windows(10).any(|w| w == b"keep-alive") {
                                    keep_alive = true;
                                }
                            }
                        }
                        if head_request
                            || (100..200).contains(&status)
                            || status == 204
                            || status == 304
                        {
                            framing = Framing::None;
                        }
                        self.start += length;
                        return Ok((status, framing, keep_alive));
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(error) => return Err(failure(error)),
                }
            }
            if self.fill().await? == 0 {
                return Err(failure("the server closed the connection"));
            }
        }
    }

    /// Consumes `n` body bytes.
    async fn skip(&mut self, n: u64) -> Result<u64, Failure> {
        let mut left = n;
        loop {
            let available = (self.end - self.start) as u64;
            let take = available.min(left);
            self.start += take as usize;
            left -= take;
            if left == 0 {
                return Ok(n);
            }
            if self.fill().await? == 0 {
                return Err(failure("the body ended early"));
            }
        }
    }

    /// Consumes a chunked body (and its trailers); returns the data bytes.
    async fn skip_chunked(&mut self) -> Result<u64, Failure> {
        let mut total = 0u64;
        loop {
            let size = loop {
                match httparse::parse_chunk_size(&self.buffer[self.start..self.end]) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.start += used;
                        break size;
                    }
                    Ok(httparse::Status::Partial) => {
                        if self.fill().await? == 0 {
                            return Err(failure("the chunked body ended early"));
                        }
                    }
                    Err(_) => return Err(failure("invalid chunk size")),
                }
            };
            if size == 0 {
                self.skip_trailers().await?;
                return Ok(total);
            }
            total += self.skip(size).await?;
            self.expect_crlf().await?;
        }
    }

    async fn expect_crlf(&mut self) -> Result<(), Failure> {
        while self.end - self.start < 2 {
            if self.fill().await? == 0 {
                return Err(failure("the chunked body ended early"));
            }
        }
        if &self.buffer[self.start..self.start + 2] != b"\r\n" {
            return Err(failure("a chunk does not end with CRLF"));
        }
        self.start += 2;
        Ok(())
    }

    /// Trailer lines up to the empty line.
    async fn skip_trailers(&mut self) -> Result<(), Failure> {
        loop {
            let pending = &self.buffer[self.start..self.end];
            if let Some(at) = pending.windows(2).position(|w| w == b"\r\n") {
                self.start += at + 2;
                if at == 0 {
                    return Ok(());
                }
                continue;
            }
            if self.fill().await? == 0 {
                return Err(failure("the trailers ended early"));
            }
        }
    }

    /// Consumes everything until the server closes.
    async fn skip_to_end(&mut self) -> Result<u64, Failure> {
        let mut total = (self.end - self.start) as u64;
        self.start = self.end;
        loop {
            let n = self.fill().await?;
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
            self.start = self.end;
        }
    }
}

/// Whether a Transfer-Encoding value's last coding is `chunked`.
fn ends_with_chunked(value: &[u8]) -> bool {
    value
        .rsplit(|b| *b == b',')
        .next()
        .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

fn failure(detail: impl std::fmt::Display) -> Failure {
    Failure {
        kind: ErrorKind::Io,
        detail: detail.to_string(),
    }
}

#[cfg(test)]
mod tests;
