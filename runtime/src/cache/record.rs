//! Storing a streamed response as it passes to the client: the chunks are kept (reference
//! counted, not copied) and stored when the stream ends, unless it grows past the object limit
//! or fails.

use bytes::{Bytes, BytesMut};

use super::entry::Stored;
use super::{Flight, ResponseCache};
use crate::body::Tap;

/// Collects a streamed body for the cache.
#[derive(Debug)]
pub(super) struct Recorder {
    cache: ResponseCache,
    key: u64,
    stored: Stored,
    chunks: Vec<Bytes>,
    size: u64,
    limit: u64,
    /// Requests for the same URL wait until the body is stored or given up.
    _flight: Option<Flight>,
}

impl Recorder {
    pub(super) fn new(
        cache: ResponseCache,
        key: u64,
        stored: Stored,
        limit: u64,
        flight: Option<Flight>,
    ) -> Self {
        Self {
            cache,
            key,
            stored,
            chunks: Vec::new(),
            size: 0,
            limit,
            _flight: flight,
        }
    }
}

impl Tap for Recorder {
    /// Keeps a chunk; `false` once the body is too large to store (the recorder is done).
    fn chunk(&mut self, data: &Bytes) -> bool {
        self.size += data.len() as u64;
        if self.size > self.limit {
            return false;
        }
        self.chunks.push(data.clone());
        true
    }

    /// The stream ended cleanly: store the response (then the waiting requests look again).
    fn finish(mut self: Box<Self>) {
        self.stored.body = match self.chunks.len() {
            0 => Bytes::new(),
            1 => self.chunks.swap_remove(0),
            _ => {
                let mut body = BytesMut::with_capacity(usize::try_from(self.size).unwrap_or(0));
                for chunk in &self.chunks {
                    body.extend_from_slice(chunk);
                }
                body.freeze()
            }
        };
        let Self {
            cache, key, stored, ..
        } = *self;
        cache.insert(key, stored);
    }
}
