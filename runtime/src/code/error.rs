//! Why a worker's code cannot be used, naming the module (relative to the worker's
//! directory), the line, the column and the source line.

use std::path::PathBuf;

/// A problem at one place of one module: `file:line:column: message`, then the source line
/// with a caret under the column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError {
    /// The module, relative to the worker's directory (or its URL when outside it).
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
    /// The line of source the error is on, when known.
    pub source_line: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )?;
        if let Some(line) = self.source_line.as_deref().filter(|l| !l.trim().is_empty()) {
            // Long (minified) lines are cut around the column.
            let chars: Vec<char> = line.chars().collect();
            let column = (self.column as usize).saturating_sub(1).min(chars.len());
            let start = column.saturating_sub(60);
            let end = (column + 60).min(chars.len());
            let shown: String = chars[start..end]
                .iter()
                .map(|c| if c.is_control() { ' ' } else { *c })
                .collect();
            let caret = " ".repeat(column - start);
            write!(f, "\n  {shown}\n  {caret}^")?;
        }
        Ok(())
    }
}

impl std::error::Error for SourceError {}

/// The worker's modules cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    /// A module file could not be read.
    #[error("cannot read {file}: {source}")]
    Read {
        /// The module, as named to the user.
        file: String,
        /// The server path, for logs.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A module does not parse (TypeScript, JSON) or is not UTF-8 text.
    #[error("{0}")]
    Syntax(#[source] Box<SourceError>),
    /// An import that cannot be served from the worker's own modules.
    #[error("{0}")]
    Import(#[source] Box<SourceError>),
    /// More modules than a worker may have.
    #[error("the worker imports more than {0} modules")]
    TooMany(usize),
    /// A module's kind cannot be told from its name.
    #[error(
        "{0}: unknown kind of module (expected .js, .mjs, .ts, .mts, .json, .wasm or a text extension)"
    )]
    UnknownKind(String),
}

impl CodeError {
    /// The place in the source, for errors that have one.
    pub fn source_error(&self) -> Option<&SourceError> {
        match self {
            Self::Syntax(error) | Self::Import(error) => Some(error),
            _ => None,
        }
    }
}
