//! Why a change to the deployments was refused or failed.

use std::path::PathBuf;

use super::records::RecordError;
use crate::code::CodeError;
use crate::isolate::StartError;
use crate::store::StoreError;
use crate::worker::WorkerLoadError;

/// A change was refused or failed; the previous state keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The upload is malformed or breaks a rule (the message names the key).
    #[error("{0}")]
    Invalid(#[from] edge_config::ConfigError),
    /// A name, a value or a percentage in the request is unusable.
    #[error("{0}")]
    BadRequest(String),
    /// The worker is defined in the config file, which uploads cannot change.
    #[error(
        "worker `{0}` is defined in the config file; change it there (uploads cannot replace it)"
    )]
    Configured(String),
    /// A route of the upload already serves another deployment.
    #[error("route {route} is owned by worker `{owner}`")]
    RouteTaken {
        /// The route (`host/path_prefix`, `*` for any host).
        route: String,
        /// The deployment that has it.
        owner: String,
    },
    /// No such worker, version or secret.
    #[error("{0}")]
    NotFound(String),
    /// The code could not be read back.
    #[error("cannot store the worker's code")]
    Code(#[source] WorkerLoadError),
    /// The code could not be written to `path`.
    #[error("cannot store the worker's code: {path}")]
    Write {
        /// The file (or its directory).
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The worker failed to start (syntax error with line and column, top-level throw, no
    /// handler).
    #[error("{0}")]
    Start(#[from] StartError),
    /// The store failed or holds an unreadable record.
    #[error("cannot keep the deployment")]
    Record(#[from] RecordError),
}

impl From<WorkerLoadError> for DeployError {
    fn from(error: WorkerLoadError) -> Self {
        match error {
            // The upload's modules do not parse or import what is not there: the uploader's
            // to fix, like a syntax error V8 finds.
            WorkerLoadError::Code(
                error @ (CodeError::Syntax(_) | CodeError::Import(_) | CodeError::TooMany(_)),
            ) => Self::Start(StartError::from(error)),
            WorkerLoadError::Code(CodeError::UnknownKind(module)) => Self::Start(
                StartError::Runtime(format!("{module}: unknown kind of module")),
            ),
            other => Self::Code(other),
        }
    }
}

impl From<StoreError> for DeployError {
    fn from(error: StoreError) -> Self {
        Self::Record(RecordError::Store(error))
    }
}

/// `error` and its causes, `: `-separated (a cause already quoted by its parent is skipped).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
