//! Why an isolate could not start a worker, in words a developer can act on.

use std::sync::Arc;

use deno_core::error::{CoreError, CoreErrorKind, JsError};

use crate::worker::WorkerSource;

/// Starting a worker in a new isolate failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StartError {
    /// The runtime itself failed (not the worker's fault), as told in words (a JavaScript
    /// error's text, which [`StartError::naming`] can rewrite).
    #[error("isolate failed to start: {0}")]
    Runtime(String),
    /// The runtime itself failed (not the worker's fault), with this cause.
    #[error("isolate failed to start: {0}")]
    Fault(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// The system refused a thread or a tokio runtime (`what`) for the isolate.
    #[error("isolate failed to start: cannot start {what}: {source}")]
    System {
        /// What could not be started.
        what: &'static str,
        /// Why.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The module does not parse: `file:line:column: message`.
    #[error("{location}: {message}")]
    Syntax {
        /// `path:line:column` of the error.
        location: String,
        /// V8's message.
        message: String,
    },
    /// The module threw while it was evaluated (its top level).
    #[error("the worker threw while starting: {0}")]
    Evaluation(String),
    /// The module has no usable entry point.
    #[error("{0}")]
    NoHandler(String),
    /// Evaluating the module crossed a limit (its config key) and the isolate was killed.
    #[error("the worker exceeded its {0} limit while starting")]
    LimitExceeded(&'static str),
    /// The isolate was not ready within `startup_wall_ms` (e.g. a top level that awaits
    /// something slow); the start was abandoned.
    #[error("the worker did not start within startup_wall_ms ({0} ms)")]
    StartupTimeout(u64),
}

impl StartError {
    /// This error with the worker's file (its path and module specifier, which are server
    /// paths) named `module` instead, for answers to whoever uploaded it.
    pub fn naming(self, worker: &WorkerSource, module: &str) -> Self {
        let path = worker.path.display().to_string();
        let rename = |text: String| {
            text.replace(worker.specifier.as_str(), module)
                .replace(&path, module)
        };
        match self {
            Self::Runtime(text) => Self::Runtime(rename(text)),
            Self::Syntax { location, message } => Self::Syntax {
                location: rename(location),
                message: rename(message),
            },
            Self::Evaluation(text) => Self::Evaluation(rename(text)),
            Self::NoHandler(text) => Self::NoHandler(rename(text)),
            other @ (Self::Fault(_)
            | Self::System { .. }
            | Self::LimitExceeded(_)
            | Self::StartupTimeout(_)) => other,
        }
    }

    /// A failure of the runtime itself, keeping `error` as its cause.
    pub(crate) fn fault(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Fault(Arc::new(error))
    }

    /// A start that the system refused `what` (a thread, a tokio runtime).
    pub(crate) fn system(what: &'static str) -> impl FnOnce(std::io::Error) -> Self {
        move |source| Self::System {
            what,
            source: Arc::new(source),
        }
    }

    pub(crate) fn from_core(error: CoreError, worker: &WorkerSource) -> Self {
        match *error.0 {
            CoreErrorKind::Js(js) => Self::from_js(*js, worker),
            // Kept as text: it may name the worker's file, which `naming` rewrites.
            other => Self::Runtime(other.to_string()),
        }
    }

    fn from_js(error: JsError, worker: &WorkerSource) -> Self {
        let message = error
            .exception_message
            .strip_prefix("Uncaught ")
            .unwrap_or(&error.exception_message)
            .to_owned();
        if error.name.as_deref() == Some("SyntaxError") || message.starts_with("SyntaxError") {
            let location = error
                .frames
                .iter()
                .find_map(|frame| {
                    let line = frame.line_number?;
                    let column = frame.column_number?;
                    let file = match frame.file_name.as_deref() {
                        Some(name) if name != worker.specifier.as_str() => name.to_owned(),
                        _ => worker.path.display().to_string(),
                    };
                    Some(format!("{file}:{line}:{column}"))
                })
                .unwrap_or_else(|| worker.path.display().to_string());
            return Self::Syntax { location, message };
        }
        Self::Evaluation(error.to_string())
    }
}
