//! `isola_html_rewriter`: Cloudflare's `HTMLRewriter` on lol-html, Cloudflare's streaming HTML
//! rewriter.
//!
//! JavaScript (`js/40_html_rewriter.js`) pumps the response body through a [`Rewriter`] chunk
//! by chunk: each op feeds it and returns either "idle" (the chunk is consumed; the rewritten
//! bytes are taken with `op_html_rewriter_output`) or a handler to call. The handler gets
//! wrappers whose methods call the unit ops below on the unit lol-html is paused on
//! ([`machine`] explains how it pauses), and may return a promise; when it has settled,
//! `op_html_rewriter_resume` continues the rewriting. Memory is bounded: lol-html buffers at
//! most [`machine::MAX_BUFFERED_BYTES`], and output is handed over after every chunk.

mod machine;
mod units;

use std::cell::RefCell;
use std::str::FromStr;

use deno_core::convert::Uint8Array;
use deno_core::{GarbageCollected, op2, v8};
use lol_html::{AsciiCompatibleEncoding, Selector};

use machine::{Input, Machine, Plan, Step};

use units::{
    op_html_rewriter_attribute, op_html_rewriter_attributes, op_html_rewriter_doctype,
    op_html_rewriter_has_attribute, op_html_rewriter_insert, op_html_rewriter_last_in_text_node,
    op_html_rewriter_name, op_html_rewriter_namespace, op_html_rewriter_on_end_tag,
    op_html_rewriter_remove, op_html_rewriter_remove_attribute, op_html_rewriter_removed,
    op_html_rewriter_set_attribute, op_html_rewriter_set_name, op_html_rewriter_set_text,
    op_html_rewriter_text,
};

deno_core::extension!(
    isola_html_rewriter,
    deps = [deno_web, deno_fetch],
    ops = [
        op_html_rewriter_check_selector,
        op_html_rewriter_new,
        op_html_rewriter_write,
        op_html_rewriter_end,
        op_html_rewriter_resume,
        op_html_rewriter_output,
        op_html_rewriter_name,
        op_html_rewriter_set_name,
        op_html_rewriter_namespace,
        op_html_rewriter_attribute,
        op_html_rewriter_has_attribute,
        op_html_rewriter_set_attribute,
        op_html_rewriter_remove_attribute,
        op_html_rewriter_attributes,
        op_html_rewriter_insert,
        op_html_rewriter_remove,
        op_html_rewriter_removed,
        op_html_rewriter_text,
        op_html_rewriter_set_text,
        op_html_rewriter_last_in_text_node,
        op_html_rewriter_doctype,
        op_html_rewriter_on_end_tag,
    ],
    esm = [dir "../js", "40_html_rewriter.js"],
);

/// Why an HTMLRewriter op failed (all surface as `TypeError`, as on Workers).
#[derive(Debug, thiserror::Error, deno_error::JsError)]
pub enum HtmlRewriterError {
    /// `on()` got a selector lol-html does not support.
    #[class(type)]
    #[error("Invalid selector {selector:?}: {reason}")]
    Selector {
        /// The selector as written.
        selector: String,
        /// lol-html's reason.
        reason: String,
    },
    /// The response's charset is not an ASCII-compatible encoding.
    #[class(type)]
    #[error("HTMLRewriter cannot rewrite the encoding {0:?} (only ASCII-compatible ones)")]
    Encoding(String),
    /// A unit (element, text, …) was used after its handler finished.
    #[class(type)]
    #[error("This {0} is no longer valid: it can only be used while its handler runs")]
    Stale(&'static str),
    /// A mutation lol-html refused (a bad tag or attribute name, a comment closing itself).
    #[class(type)]
    #[error("{0}")]
    Refused(String),
    /// The rewriting failed (memory bound passed, ambiguous markup, a handler failed).
    #[class(type)]
    #[error("HTMLRewriter: {0}")]
    Rewriting(String),
    /// The rewriter was used after it finished, or from inside one of its own ops.
    #[class(type)]
    #[error("HTMLRewriter: the transformation has already finished")]
    Finished,
    /// No stack could be reserved for the rewriter.
    #[class(range)]
    #[error("HTMLRewriter: no memory for the rewriter's stack: {0}")]
    Stack(String),
}

/// One `transform()`'s rewriter, held by JavaScript until the stream ends (or is collected).
pub struct Rewriter(RefCell<Machine>);

// SAFETY: `Rewriter` holds no V8 references, so there is nothing to trace; cppgc drops it on
// the isolate's thread.
#[allow(unsafe_code, reason = "cppgc objects implement an unsafe marker trait")]
unsafe impl GarbageCollected for Rewriter {
    fn trace(&self, _visitor: &mut v8::cppgc::Visitor) {}

    fn get_name(&self) -> &'static std::ffi::CStr {
        c"IsolaHtmlRewriter"
    }
}

impl Rewriter {
    fn step(&self, input: Input) -> Result<u32, HtmlRewriterError> {
        let mut machine = self
            .0
            .try_borrow_mut()
            .map_err(|_| HtmlRewriterError::Finished)?;
        match machine.step(input) {
            Ok(Step::Idle) => Ok(0),
            Ok(Step::Handler(code)) => Ok(code),
            Err(Some(reason)) => Err(HtmlRewriterError::Rewriting(reason)),
            Err(None) => Err(HtmlRewriterError::Finished),
        }
    }
}

fn parse_selector(selector: &str) -> Result<Selector, HtmlRewriterError> {
    Selector::from_str(selector).map_err(|e| HtmlRewriterError::Selector {
        selector: selector.to_owned(),
        reason: e.to_string(),
    })
}

/// `on(selector, …)`: checks the selector at once, so a bad one throws where it is written.
#[op2(fast)]
fn op_html_rewriter_check_selector(#[string] selector: &str) -> Result<(), HtmlRewriterError> {
    parse_selector(selector).map(drop)
}

/// `transform()`: a rewriter for the handler sets (`[selector, flags]` pairs, document flags)
/// and the body's charset label.
#[op2]
#[cppgc]
fn op_html_rewriter_new(
    #[serde] elements: Vec<(String, u8)>,
    #[serde] documents: Vec<u8>,
    #[string] charset: &str,
) -> Result<Rewriter, HtmlRewriterError> {
    let encoding = encoding_rs::Encoding::for_label(charset.as_bytes())
        .and_then(AsciiCompatibleEncoding::new)
        .ok_or_else(|| HtmlRewriterError::Encoding(charset.to_owned()))?;
    let elements = elements
        .into_iter()
        .map(|(selector, flags)| Ok((parse_selector(&selector)?, flags)))
        .collect::<Result<Vec<_>, HtmlRewriterError>>()?;
    let plan = Plan {
        elements,
        documents,
        encoding,
    };
    let machine = Machine::new(plan).map_err(|e| HtmlRewriterError::Stack(e.to_string()))?;
    Ok(Rewriter(RefCell::new(machine)))
}

/// Feeds a chunk: 0 when it is consumed, else the code of the handler to call.
#[op2]
fn op_html_rewriter_write(
    #[cppgc] rewriter: &Rewriter,
    #[anybuffer] chunk: &[u8],
) -> Result<u32, HtmlRewriterError> {
    rewriter.step(Input::Chunk(chunk.to_vec()))
}

/// Ends the input: 0 when the rewriting has finished, else the code of the handler to call.
#[op2(fast)]
fn op_html_rewriter_end(#[cppgc] rewriter: &Rewriter) -> Result<u32, HtmlRewriterError> {
    rewriter.step(Input::End)
}

/// The handler has settled (`ok`: fulfilled; else the rewriting stops): continues, as
/// `write`/`end` do.
#[op2(fast)]
fn op_html_rewriter_resume(
    #[cppgc] rewriter: &Rewriter,
    ok: bool,
) -> Result<u32, HtmlRewriterError> {
    rewriter.step(Input::Resume(ok))
}

/// Takes the bytes rewritten so far.
#[op2]
fn op_html_rewriter_output(#[cppgc] rewriter: &Rewriter) -> Result<Uint8Array, HtmlRewriterError> {
    let machine = rewriter
        .0
        .try_borrow()
        .map_err(|_| HtmlRewriterError::Finished)?;
    let bytes = std::mem::take(&mut *machine.bridge.output.borrow_mut());
    Ok(bytes.into())
}
