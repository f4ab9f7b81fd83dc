//! Request bodies as deno_core resources: JavaScript reads them through `ReadableStream`s made
//! by deno_web's `readableStreamForRid`, chunk by chunk, as the front end receives them.

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use deno_core::{AsyncRefCell, AsyncResult, BufView, CancelFuture, CancelHandle, RcRef, Resource};
use deno_error::JsErrorBox;
use tokio::sync::mpsc;

/// Why a request body stream ended early.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BodyError {
    /// The body grew past the deployment's `max_body_bytes`.
    #[error("request body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit that was crossed.
        limit: u64,
    },
    /// The client's connection failed while the body was being received.
    #[error("request body could not be read: {0}")]
    Io(String),
}

/// Chunks of a request body as the front end receives them.
pub type BodyReceiver = mpsc::Receiver<Result<Bytes, BodyError>>;

/// A request body being received, readable once from JavaScript.
pub struct RequestBodyResource {
    chunks: AsyncRefCell<BodyReceiver>,
    leftover: RefCell<Option<Bytes>>,
    cancel: CancelHandle,
}

impl RequestBodyResource {
    /// Wraps the receiving end of the front end's body channel.
    pub fn new(chunks: BodyReceiver) -> Self {
        Self {
            chunks: AsyncRefCell::new(chunks),
            leftover: RefCell::new(None),
            cancel: CancelHandle::new(),
        }
    }

    fn split(&self, mut chunk: Bytes, limit: usize) -> BufView {
        if chunk.len() > limit && limit > 0 {
            let rest = chunk.split_off(limit);
            *self.leftover.borrow_mut() = Some(rest);
        }
        BufView::from(chunk)
    }
}

impl Resource for RequestBodyResource {
    fn name(&self) -> Cow<'_, str> {
        "isolaRequestBody".into()
    }

    fn read(self: Rc<Self>, limit: usize) -> AsyncResult<BufView> {
        Box::pin(async move {
            let leftover = self.leftover.borrow_mut().take();
            if let Some(chunk) = leftover {
                return Ok(self.split(chunk, limit));
            }
            let next = {
                let mut chunks = RcRef::map(&self, |r| &r.chunks).borrow_mut().await;
                let cancel = RcRef::map(&self, |r| &r.cancel);
                chunks.recv().or_cancel(cancel).await
            };
            match next {
                Ok(Some(Ok(chunk))) => Ok(self.split(chunk, limit)),
                Ok(Some(Err(error))) => Err(JsErrorBox::type_error(error.to_string())),
                Ok(None) => Ok(BufView::empty()),
                Err(_) => Err(JsErrorBox::generic("request body read was cancelled")),
            }
        })
    }

    fn close(self: Rc<Self>) {
        self.cancel.cancel();
    }
}
