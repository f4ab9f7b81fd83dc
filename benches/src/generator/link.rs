//! What a load-generator connection runs over and how it fails, shared by both HTTP/1.1
//! clients (hyper's in `connection`, the fast one in `fast_h1`).

use tokio::io::{AsyncRead, AsyncWrite};

use crate::stats::ErrorKind;

/// A byte stream hyper can run over (TCP or TLS).
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// A failed connection or exchange: its kind (for counting) and what happened (for people).
#[derive(Debug, thiserror::Error)]
#[error("{}: {detail}", kind.as_str())]
pub struct Failure {
    /// The error kind it is counted as.
    pub kind: ErrorKind,
    /// What went wrong.
    pub detail: String,
}

impl Failure {
    /// A failure of `kind`, described by `error`.
    pub(crate) fn new(kind: ErrorKind, error: impl std::fmt::Display) -> Self {
        Self {
            kind,
            detail: error.to_string(),
        }
    }
}
