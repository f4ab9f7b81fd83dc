//! Ops on the unit (element, end tag, text chunk, comment, doctype, document end) whose handler
//! is running. Each names the handler call it belongs to by its token; a wrapper kept past its
//! handler is refused ([`HtmlRewriterError::Stale`]).

use deno_core::op2;
use lol_html::html_content::{
    Comment, ContentType, Doctype, DocumentEnd, Element, EndTag, TextChunk,
};

use super::machine::{self, Unit};
use super::{HtmlRewriterError, Rewriter};

/// The running handler's unit, borrowed for one op.
enum UnitMut<'a> {
    Element(&'a mut Element<'static, 'static>),
    EndTag(&'a mut EndTag<'static>),
    Text(&'a mut TextChunk<'static>),
    Comment(&'a mut Comment<'static>),
    Doctype(&'a mut Doctype<'static>),
    End(&'a mut DocumentEnd<'static>),
}

/// Runs `f` on the unit of the handler call `token`.
fn with_unit<R>(
    rewriter: &Rewriter,
    token: u32,
    what: &'static str,
    f: impl FnOnce(UnitMut<'_>) -> Result<R, HtmlRewriterError>,
) -> Result<R, HtmlRewriterError> {
    let machine = rewriter
        .0
        .try_borrow()
        .map_err(|_| HtmlRewriterError::Stale(what))?;
    // SAFETY: `Bridge::unit` returns a pointer only while the coroutine is suspended inside the
    // handler call `token` (the pointee lives in that suspended frame) and the machine is not
    // running (we hold a shared borrow of it, and `step` needs a mutable one); ops run one at a
    // time on the isolate's thread, so this is the only reference to the unit.
    #[allow(
        unsafe_code,
        reason = "the unit lives in the suspended coroutine's frame"
    )]
    let unit = unsafe {
        match machine.bridge.unit(token) {
            Unit::None => return Err(HtmlRewriterError::Stale(what)),
            Unit::Element(p) => UnitMut::Element(&mut *p),
            Unit::EndTag(p) => UnitMut::EndTag(&mut *p),
            Unit::Text(p) => UnitMut::Text(&mut *p),
            Unit::Comment(p) => UnitMut::Comment(&mut *p),
            Unit::Doctype(p) => UnitMut::Doctype(&mut *p),
            Unit::End(p) => UnitMut::End(&mut *p),
        }
    };
    let result = f(unit);
    drop(machine);
    result
}

fn wrong(what: &'static str) -> HtmlRewriterError {
    HtmlRewriterError::Stale(what)
}

/// An element's tag name or an end tag's name (lower case).
#[op2]
#[string]
pub(super) fn op_html_rewriter_name(
    #[cppgc] rewriter: &Rewriter,
    token: u32,
) -> Result<String, HtmlRewriterError> {
    with_unit(rewriter, token, "Element", |unit| match unit {
        UnitMut::Element(el) => Ok(el.tag_name()),
        UnitMut::EndTag(end) => Ok(end.name()),
        _ => Err(wrong("Element")),
    })
}

/// Renames an element or an end tag.
#[op2(fast)]
pub(super) fn op_html_rewriter_set_name(
    #[cppgc] rewriter: &Rewriter,
    token: u32,
    #[string] name: &str,
) -> Result<(), HtmlRewriterError> {
    with_unit(rewriter, token, "Element", |unit| match unit {
        UnitMut::Element(el) => el
            .set_tag_name(name)
            .map_err(|e| HtmlRewriterError::Refused(e.to_string())),
        UnitMut::EndTag(end) => {
            end.set_name_str(name.to_owned());
            Ok(())
        }
        _ => Err(wrong("Element")),
    })
}

/// An element's namespace URI.
#[op2]
#[string]
pub(super) fn op_html_rewriter_namespace(
    #[cppgc] rewriter: &Rewriter,
    token: u32,
) -> Result<&'static str, HtmlRewriterError> {
    with_unit(rewriter, token, "Element", |unit| match unit {
        UnitMut::Element(el) => Ok(el.namespace_uri()),
        _ => Err(wrong("Element")),
    })
}

/// An attribute's value, or null.
#[op2]
#[string]
pub(super) fn op_html_rewriter_attribute(
    #[cppgc] rewriter: &Rewriter,
    token: u32,
    #[string] name: &str,
) -> Result<Option<String>, HtmlRewriterError> {
    with_unit(rewriter, token, "Element", |unit| match unit {
        UnitMut::Element(el) => Ok(el.get_attribute(name)),
        _ => Err(wrong("Element")),
    })
}

/// Whether an element has an attribute.
#[op2(fast)]
pub(super) fn op_html_rewriter_has_attribute(
    #[cppgc] rewriter: &Rewriter,
    token: u32,
    #[string] name: &str,
) -> Result<bool, HtmlRewriterError> {
    with_unit(rewriter, token, "Element", |unit| match unit {
        UnitMut::Element(el) => Ok(el.has_attribute(name)),
        _ => Err(wrong("Element")),
    })
}

/// Sets an attribute.
#[op2(fast)]
pub(super) fn op_html_rewriter_set_attribute(
    #[cppgc] rewriter: &Rewriter,
    token: u32,
    #[string] name: &str,
    #[string] value: &str,
) -> Result<(), HtmlRewriterError> {
    with_unit(rewriter, token, "Element", |unit| match unit {
        UnitMut::Element(el) => el
            .set_attribute(name, value)
            .map_err(|e| HtmlRewriterError::Refused(e.to_string())),
        _ => Err(wrong("Element")),
    })
}

/// Removes an attribute.
#[op2(fast)]
pub(super) fn op_html_rewriter_remove_attribute(
    #[cppgc] rewriter: &Rewriter,
    token: u32,
    #[string] name: &str,
) -> Result<(), HtmlRewriterError> {
    with_unit(rewriter, token, "Element", |unit| match unit {
        UnitMut::Element(el) => {
            el.remove_attribute(name);
            Ok(())
        }
        _ => Err(wrong("Element")),
    })
}

/// An element's attributes as `[name, value]` pairs.
#[op2]
#[serde]
pub(super) fn op_html_rewriter_attributes(
    #[cppgc] rewriter: &Rewriter,
    token: u32,
) -> Result<Vec<(String, String)>, HtmlRewriterError> {
    with_unit(rewriter, token, "Element", |unit| match unit {
        UnitMut::Element(el) => Ok(el
            .attributes()
            .iter()
            .map(|a| (a.name(), a.value()))
            .collect()),
        _ => Err(wrong("Element")),
    })
}

/// Where content goes, as JavaScript numbers it.
const BEFORE: u8 = 0;
const AFTER: u8 = 1;
const PREPEND: u8 = 2;
const APPEND: u8 = 3;
const REPLACE: u8 = 4;
const SET_INNER: u8 = 5;

/// `before`, `after`, `prepend`, `append`, `replace`, `setInnerContent` (by `place`) with
/// `content` as HTML or as text (escaped).
#[op2(fast)]
pub(super) fn op_html_rewriter_insert(
    #[cppgc] rewriter: &Rewriter,
    token: u32,
    place: u8,
    #[string] content: &str,
    html: bool,
) -> Result<(), HtmlRewriterError> {
    let kind = if html {
        ContentType::Html
    } else {
        ContentType::Text
    };
    with_unit(rewriter, token, "content", |unit| {
        match (unit, place) {
            (UnitMut::Element(el), BEFORE) => el.before(content, kind),
            (UnitMut::Element(el), AFTER) => el.after(content, kind),
            (UnitMut::Element(el), PREPEND) => el.prepend(content, kind),
            (UnitMut::Element(el), APPEND) => el.append(content, kind),
            (UnitMut::Element(el), REPLACE) => el.replace(content, kind),
            (UnitMut::Element(el), SET_INNER) => el.set_inner_content(content, kind),
            (UnitMut::EndTag(end), BEFORE) => end.before(content, kind),
            (UnitMut::EndTag(end), AFTER) => end.after(content, kind),
            (UnitMut::EndTag(end), REPLACE) => end.replace(content, kind),
            (UnitMut::Text(text), BEFORE) => text.before(content, kind),
            (UnitMut::Text(text), AFTER) => text.after(content, kind),
            (UnitMut::Text(text), REPLACE) => text.replace(content, kind),
            (UnitMut::Comment(c), BEFORE) => c.before(content, kind),
            (UnitMut::Comment(c), AFTER) => c.after(content, kind),
            (UnitMut::Comment(c), REPLACE) => c.replace(content, kind),
            (UnitMut::End(end), APPEND) => end.append(content, kind),
            _ => return Err(wrong("content")),
        }
        Ok(())
    })
}

/// Removes the unit (`keep_content`: an element's tags only).
#[op2(fast)]
pub(super) fn op_html_rewriter_remove(
    #[cppgc] rewriter: &Rewriter,
    token: u32,
    keep_content: bool,
) -> Result<(), HtmlRewriterError> {
    with_unit(rewriter, token, "content", |unit| {
        match unit {
            UnitMut::Element(el) if keep_content => el.remove_and_keep_content(),
            UnitMut::Element(el) => el.remove(),
            UnitMut::EndTag(end) => end.remove(),
            UnitMut::Text(text) => text.remove(),
            UnitMut::Comment(c) => c.remove(),
            UnitMut::Doctype(d) => d.remove(),
            UnitMut::End(_) => return Err(wrong("content")),
        }
        Ok(())
    })
}

/// Whether the unit has been removed.
#[op2(fast)]
pub(super) fn op_html_rewriter_removed(
    #[cppgc] rewriter: &Rewriter,
    token: u32,
) -> Result<bool, HtmlRewriterError> {
    with_unit(rewriter, token, "content", |unit| match unit {
        UnitMut::Element(el) => Ok(el.removed()),
        UnitMut::EndTag(end) => Ok(end.removed()),
        UnitMut::Text(text) => Ok(text.removed()),
        UnitMut::Comment(c) => Ok(c.removed()),
        UnitMut::Doctype(d) => Ok(d.removed()),
        UnitMut::End(_) => Ok(false),
    })
}

/// A text chunk's or a comment's text.
#[op2]
#[string]
pub(super) fn op_html_rewriter_text(
    #[cppgc] rewriter: &Rewriter,
    token: u32,
) -> Result<String, HtmlRewriterError> {
    with_unit(rewriter, token, "Text", |unit| match unit {
        UnitMut::Text(text) => Ok(text.as_str().to_owned()),
        UnitMut::Comment(c) => Ok(c.text()),
        _ => Err(wrong("Text")),
    })
}

/// Sets a comment's text.
#[op2(fast)]
pub(super) fn op_html_rewriter_set_text(
    #[cppgc] rewriter: &Rewriter,
    token: u32,
    #[string] text: &str,
) -> Result<(), HtmlRewriterError> {
    with_unit(rewriter, token, "Comment", |unit| match unit {
        UnitMut::Comment(c) => c
            .set_text(text)
            .map_err(|e| HtmlRewriterError::Refused(e.to_string())),
        _ => Err(wrong("Comment")),
    })
}

/// Whether a text chunk is the last of its text node.
#[op2(fast)]
pub(super) fn op_html_rewriter_last_in_text_node(
    #[cppgc] rewriter: &Rewriter,
    token: u32,
) -> Result<bool, HtmlRewriterError> {
    with_unit(rewriter, token, "Text", |unit| match unit {
        UnitMut::Text(text) => Ok(text.last_in_text_node()),
        _ => Err(wrong("Text")),
    })
}

/// A doctype's name, public id and system id (each absent or a string).
type DoctypeIds = (Option<String>, Option<String>, Option<String>);

/// A doctype's name, public id and system id (each null when absent).
#[op2]
#[serde]
pub(super) fn op_html_rewriter_doctype(
    #[cppgc] rewriter: &Rewriter,
    token: u32,
) -> Result<DoctypeIds, HtmlRewriterError> {
    with_unit(rewriter, token, "Doctype", |unit| match unit {
        UnitMut::Doctype(d) => Ok((d.name(), d.public_id(), d.system_id())),
        _ => Err(wrong("Doctype")),
    })
}

/// `element.onEndTag(handler)`: JavaScript's end tag handler `id` runs at the element's end tag.
#[op2(fast)]
pub(super) fn op_html_rewriter_on_end_tag(
    #[cppgc] rewriter: &Rewriter,
    token: u32,
    id: u32,
) -> Result<(), HtmlRewriterError> {
    let bridge = rewriter
        .0
        .try_borrow()
        .map_err(|_| HtmlRewriterError::Stale("Element"))?
        .bridge
        .clone();
    with_unit(rewriter, token, "Element", |unit| match unit {
        UnitMut::Element(el) => machine::on_end_tag(&bridge, el, id)
            .map_err(|e| HtmlRewriterError::Refused(e.to_string())),
        _ => Err(wrong("Element")),
    })
}
