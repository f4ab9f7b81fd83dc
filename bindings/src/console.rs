//! `console.*` output of workers, routed into the operator's structured logs.

use deno_core::{OpState, op2};

use crate::context::{ConsoleAllowance, MAX_CONSOLE_BYTES, SharedContexts};

/// Where an isolate's console lines also go besides the log (live tails), put in its
/// OpState by the runtime; asked first whether anyone listens, so a line costs nothing more
/// when no one does.
pub trait ConsoleTap: Send + Sync {
    /// Whether a tail listens now.
    fn active(&self) -> bool;
    /// One console line of request `request_id` (none: the worker's own work) at `level`
    /// (`debug`, `log`, `warn`, `error`).
    fn line(&self, request_id: Option<&str>, level: &'static str, message: &str);
    /// An uncaught exception (message and stack) of request `request_id`'s work after the
    /// request's own tail event went out (or when it has none), as an event of its own.
    fn exception(&self, request_id: Option<&str>, text: &str);
}

/// The isolate's [`ConsoleTap`], in its OpState.
#[derive(Clone)]
pub struct ConsoleTapSlot(pub std::sync::Arc<dyn ConsoleTap>);

/// Which worker an isolate runs; put in each isolate's OpState so logs can name it.
#[derive(Clone, Debug)]
pub struct WorkerName(pub std::sync::Arc<str>);

/// Which version of its worker an isolate runs (a content hash, or `config`); put in its
/// OpState by whoever loads the worker, so log lines name it (`?` before that).
#[derive(Clone, Debug)]
pub struct WorkerVersion(pub std::sync::Arc<str>);

deno_core::extension!(
    isola_console,
    deps = [deno_web],
    ops = [op_isola_log, op_isola_exception],
    esm = [dir "../js", "05_console.js"],
    options = { worker: WorkerName },
    state = |state, options| {
        state.put(options.worker);
    },
);

/// Records one console line for request `request` (the request number from the calling
/// code's async context; 0 for the worker's own work), tagged with the request's id. A
/// request's output is capped at [`MAX_CONSOLE_BYTES`]. Levels follow deno_web's Console: 0
/// debug, 1 log/info, 2 warn, 3 and above error.
#[op2(fast)]
fn op_isola_log(
    state: &mut OpState,
    #[smi] level: u32,
    #[string] message: &str,
    #[number] request: u64,
) {
    let allowance = state
        .try_borrow::<SharedContexts>()
        .map_or(ConsoleAllowance::Write(None), |contexts| {
            contexts.borrow_mut().console_line(request, message.len())
        });
    let worker = state.try_borrow::<WorkerName>().map_or("?", |w| &w.0);
    let version = state.try_borrow::<WorkerVersion>().map_or("?", |v| &v.0);
    let (request_id, message) = match &allowance {
        ConsoleAllowance::Write(id) => (
            id.as_deref(),
            log_text(message.strip_suffix('\n').unwrap_or(message)),
        ),
        ConsoleAllowance::Truncate(id) => {
            log_truncated(worker, version, id);
            return;
        }
        ConsoleAllowance::Drop => return,
    };
    if let Some(tap) = state.try_borrow::<ConsoleTapSlot>()
        && tap.0.active()
    {
        let name = match level {
            0 => "debug",
            1 => "log",
            2 => "warn",
            _ => "error",
        };
        tap.0.line(request_id, name, &message);
    }
    match level {
        0 => tracing::debug!(target: "isola::console", worker, version, request_id, "{message}"),
        1 => tracing::info!(target: "isola::console", worker, version, request_id, "{message}"),
        2 => tracing::warn!(target: "isola::console", worker, version, request_id, "{message}"),
        _ => tracing::error!(target: "isola::console", worker, version, request_id, "{message}"),
    }
}

/// Logs, once per request, that its console output reached [`MAX_CONSOLE_BYTES`].
fn log_truncated(worker: &str, version: &str, request_id: &str) {
    tracing::warn!(
        target: "isola::console",
        worker,
        version,
        request_id,
        "console output truncated: the request wrote more than {MAX_CONSOLE_BYTES} bytes"
    );
}

/// Records an uncaught exception (`text`: message and stack) of request `request`'s work: a
/// timer callback that threw, a `waitUntil` promise or another promise that rejected
/// unhandled. It goes into the log at level error (target `isola::exception`) naming the
/// request, also when the request ended a while ago, and onto the request's tail event while
/// the request is live, else to its tails as an `exception` event naming it. It counts
/// against the request's console cap like a console line.
#[op2(fast)]
fn op_isola_exception(state: &mut OpState, #[string] text: &str, #[number] request: u64) {
    let (allowance, tail) = match state.try_borrow::<SharedContexts>() {
        Some(contexts) => {
            let mut contexts = contexts.borrow_mut();
            (
                contexts.console_line(request, text.len()),
                contexts.tail_of(request),
            )
        }
        None => (ConsoleAllowance::Write(None), None),
    };
    let worker = state.try_borrow::<WorkerName>().map_or("?", |w| &w.0);
    let version = state.try_borrow::<WorkerVersion>().map_or("?", |v| &v.0);
    let request_id = match &allowance {
        ConsoleAllowance::Write(id) => id.as_deref(),
        ConsoleAllowance::Truncate(id) => {
            log_truncated(worker, version, id);
            return;
        }
        ConsoleAllowance::Drop => return,
    };
    let text = text.strip_suffix('\n').unwrap_or(text);
    match tail {
        Some(tail) => tail.0.exception(text),
        None => {
            if let Some(tap) = state.try_borrow::<ConsoleTapSlot>()
                && tap.0.active()
            {
                tap.0.exception(request_id, text);
            }
        }
    }
    tracing::error!(target: "isola::exception", worker, version, request_id, "{}", log_text(text));
}

/// `message` as the text of one log record, readable and unforgeable: a multi-line message
/// (a stack) keeps its lines, each continuation line starting with whitespace (four spaces
/// added where it had none), so no line a worker writes can pass for a record of its own,
/// which always starts with its timestamp; other control characters (tabs excepted) are
/// escaped. JSON logs escape the newlines again, as JSON must.
pub fn log_text(message: &str) -> std::borrow::Cow<'_, str> {
    if !message.chars().any(|c| c.is_control() && c != '\t') {
        return message.into();
    }
    let mut escaped = String::with_capacity(message.len() + 8);
    let mut chars = message.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\t' => escaped.push(c),
            '\n' => {
                escaped.push('\n');
                if !matches!(chars.peek(), Some(' ' | '\t')) {
                    escaped.push_str("    ");
                }
            }
            '\r' => escaped.push_str("\\r"),
            c if c.is_control() => escaped.extend(c.escape_unicode()),
            c => escaped.push(c),
        }
    }
    escaped.into()
}

#[cfg(test)]
mod tests {
    use super::log_text;

    #[test]
    fn continuation_lines_are_indented_and_controls_escaped() {
        assert_eq!(log_text("plain\ttext"), "plain\ttext");
        assert_eq!(
            log_text("a\n2026-01-01T00:00:00Z ERROR forged\r\u{1b}[31m"),
            "a\n    2026-01-01T00:00:00Z ERROR forged\\r\\u{1b}[31m"
        );
        assert_eq!(
            log_text("Error: x\n    at f (w.js:1:2)\n\tat g"),
            "Error: x\n    at f (w.js:1:2)\n\tat g"
        );
    }
}
