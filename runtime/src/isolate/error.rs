//! Why an isolate could not start a worker, in words a developer can act on.

use std::sync::Arc;

use deno_core::error::{CoreError, CoreErrorKind, JsError};

use crate::code::{CodeError, Content, SourceError};
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
    /// A module does not parse: `file:line:column: message`, the source line and a caret.
    #[error("{0}")]
    Syntax(SourceError),
    /// The module threw while it was evaluated (its top level).
    #[error("the worker threw while starting (at its top level): {0}")]
    Evaluation(String),
    /// The module has no usable entry point.
    #[error("{0}")]
    NoHandler(String),
    /// Evaluating the module crossed a limit (its config key) and the isolate was killed.
    #[error("the worker exceeded its {0} limit while starting{hint}", hint = limit_hint(.0))]
    LimitExceeded(&'static str),
    /// The isolate was not ready within `startup_wall_ms` (e.g. a top level that awaits
    /// something slow); the start was abandoned.
    #[error("the worker did not start within startup_wall_ms ({0} ms)")]
    StartupTimeout(u64),
}

impl StartError {
    /// This error with the worker's files (their paths and module URLs, which are server
    /// paths) named relative to the worker's directory, for answers to whoever uploaded it.
    pub fn naming(self, worker: &WorkerSource) -> Self {
        let root = worker.graph.root().as_str();
        let dir = worker
            .graph
            .root()
            .to_file_path()
            .map(|p| format!("{}/", p.display()))
            .unwrap_or_else(|()| root.to_owned());
        let rename = |text: String| text.replace(root, "").replace(&dir, "");
        match self {
            Self::Runtime(text) => Self::Runtime(rename(text)),
            Self::Syntax(error) => Self::Syntax(SourceError {
                file: rename(error.file),
                message: rename(error.message),
                ..error
            }),
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
            let (file, line, column) = error
                .frames
                .iter()
                .find_map(|frame| {
                    let line = frame.line_number?;
                    let column = frame.column_number?;
                    let file = frame
                        .file_name
                        .clone()
                        .unwrap_or_else(|| worker.specifier.to_string());
                    Some((file, line, column))
                })
                .unwrap_or_else(|| (worker.specifier.to_string(), 1, 1));
            let number = |n: i64| u32::try_from(n).unwrap_or(1);
            let source_line =
                error
                    .source_line
                    .clone()
                    .or_else(|| match &worker.graph.get(&file)?.content {
                        Content::Code { code, .. } => code
                            .lines()
                            .nth(usize::try_from(line).ok()?.checked_sub(1)?)
                            .map(str::to_owned),
                        _ => None,
                    });
            return Self::Syntax(SourceError {
                file,
                line: number(line),
                column: number(column),
                source_line,
                message,
            });
        }
        Self::Evaluation(error.to_string())
    }

    /// Where the error is in the worker's source, when it is a syntax error.
    pub fn source_error(&self) -> Option<&SourceError> {
        match self {
            Self::Syntax(error) => Some(error),
            _ => None,
        }
    }
}

impl From<CodeError> for StartError {
    /// Modules that cannot be read, parsed or resolved fail the start like a syntax error.
    fn from(error: CodeError) -> Self {
        match error {
            CodeError::Syntax(error) | CodeError::Import(error) => Self::Syntax(*error),
            other => Self::Runtime(other.to_string()),
        }
    }
}

/// What usually makes a start cross `limit`.
fn limit_hint(limit: &str) -> &'static str {
    match limit {
        "startup_cpu_ms" => {
            " (its top-level code ran too long on the CPU: an infinite loop, or work to move into the handler)"
        }
        "memory_mb" => " (its top-level code allocated too much)",
        _ => "",
    }
}
