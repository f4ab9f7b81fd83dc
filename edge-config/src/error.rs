//! Configuration errors that say where and what.

use std::fmt;
use std::path::PathBuf;

/// A config file (or a config built in code) is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the problem is in.
    pub file: PathBuf,
    /// Where in the file: a dotted key path, or `line:column` for syntax errors.
    pub at: Location,
    /// What was wrong and what was expected.
    pub message: String,
}

/// Where a config problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A key path such as `workers.api.limits.cpu_ms`.
    Key(String),
    /// A position in the text (1-based).
    Position {
        /// Line.
        line: usize,
        /// Column.
        column: usize,
    },
    /// The file as a whole (it could not be read).
    File,
}

impl ConfigError {
    pub(crate) fn key(
        file: &std::path::Path,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.to_owned(),
            at: Location::Key(key.into()),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        match &self.at {
            Location::Key(key) if key.is_empty() => write!(f, "{file}: {}", self.message),
            Location::Key(key) => write!(f, "{file}: `{key}`: {}", self.message),
            Location::Position { line, column } => {
                write!(f, "{file}:{line}:{column}: {}", self.message)
            }
            Location::File => write!(f, "{file}: {}", self.message),
        }
    }
}

impl std::error::Error for ConfigError {}
