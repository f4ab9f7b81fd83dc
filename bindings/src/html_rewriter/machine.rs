//! lol-html on a stack of its own, so that a JavaScript handler may pause it.
//!
//! lol-html calls its content handlers synchronously, in the middle of `write`. workerd runs the
//! rewriter on a fiber and waits there on a handler's promise; here the rewriter runs inside a
//! stackful coroutine (corosensei) and each content handler suspends the coroutine with a
//! [`Call`] naming the JavaScript handler to run. The op that resumed the coroutine returns that
//! call to JavaScript, which runs the handler (awaiting it if it returns a promise) on the
//! isolate's own stack, the unit it handles reachable through the [`Bridge`], then resumes the
//! coroutine. V8 never runs on the coroutine's stack; only lol-html does.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult, Yielder};
use lol_html::html_content::{Comment, Doctype, DocumentEnd, Element, EndTag, TextChunk};
use lol_html::{
    AsciiCompatibleEncoding, DocumentContentHandlers, ElementContentHandlers, HandlerResult,
    HtmlRewriter, MemorySettings, Selector, Settings,
};

/// Stack of the coroutine lol-html runs on (reserved address space: pages are committed as
/// touched; lol-html's parser and selector matching do not recurse with the input).
const STACK_BYTES: usize = 1024 * 1024;
/// Most memory one rewriter's buffers may hold (a tag or comment split over chunks is
/// buffered whole); past it the transformed stream fails instead of growing.
pub(super) const MAX_BUFFERED_BYTES: usize = 4 * 1024 * 1024;

/// Kinds of handler call, in the low 4 bits of a call's code; the index of the handler set
/// (or of an end tag handler) is in the rest.
pub(super) mod kind {
    /// `on(selector, {element})`.
    pub const ELEMENT: u32 = 1;
    /// `on(selector, {comments})`.
    pub const COMMENTS: u32 = 2;
    /// `on(selector, {text})`.
    pub const TEXT: u32 = 3;
    /// `onDocument({doctype})`.
    pub const DOCTYPE: u32 = 4;
    /// `onDocument({comments})`.
    pub const DOC_COMMENTS: u32 = 5;
    /// `onDocument({text})`.
    pub const DOC_TEXT: u32 = 6;
    /// `onDocument({end})`.
    pub const DOC_END: u32 = 7;
    /// `element.onEndTag(handler)`.
    pub const END_TAG: u32 = 8;
}

/// Flags of an element handler set (`on`) or a document handler set (`onDocument`).
pub(super) mod flag {
    /// `element` (or `doctype` for a document set).
    pub const FIRST: u8 = 1;
    /// `comments`.
    pub const COMMENTS: u8 = 2;
    /// `text`.
    pub const TEXT: u8 = 4;
    /// `end` (document sets only).
    pub const END: u8 = 8;
}

/// What the rewriter is fed.
pub(super) enum Input {
    /// The next chunk of the body.
    Chunk(Vec<u8>),
    /// The body has ended.
    End,
    /// The handler that was called has finished: `true` if it succeeded, else stop.
    Resume(bool),
}

/// Why the rewriter stopped running.
pub(super) enum Call {
    /// It has consumed its input and wants more.
    NeedInput,
    /// It calls the JavaScript handler with this code (kind and index).
    Handler(u32),
}

/// The unit (element, text chunk, …) whose handler runs, as a pointer into the suspended
/// coroutine's stack: valid exactly while the coroutine is suspended in that unit's handler.
#[derive(Clone, Copy)]
pub(super) enum Unit {
    /// No handler is running.
    None,
    /// An `Element`.
    Element(*mut Element<'static, 'static>),
    /// An `EndTag`.
    EndTag(*mut EndTag<'static>),
    /// A `TextChunk`.
    Text(*mut TextChunk<'static>),
    /// A `Comment`.
    Comment(*mut Comment<'static>),
    /// A `Doctype`.
    Doctype(*mut Doctype<'static>),
    /// The `DocumentEnd`.
    End(*mut DocumentEnd<'static>),
}

/// State shared by the coroutine and the ops.
pub(super) struct Bridge {
    /// The unit whose handler runs.
    unit: Cell<Unit>,
    /// Bumped for every handler call; JavaScript's wrappers carry the token of their call,
    /// so one kept past its handler finds a different (or no) unit and is refused.
    token: Cell<u32>,
    /// Rewritten bytes not yet taken by JavaScript.
    pub(super) output: RefCell<Vec<u8>>,
    /// The coroutine's yielder, set as it starts (valid while it runs or is suspended).
    yielder: Cell<*const Yielder<Input, Call>>,
}

impl Bridge {
    fn new() -> Rc<Self> {
        Rc::new(Self {
            unit: Cell::new(Unit::None),
            token: Cell::new(0),
            output: RefCell::new(Vec::new()),
            yielder: Cell::new(std::ptr::null()),
        })
    }

    /// The unit whose handler holds `token`, if that handler is still running.
    pub(super) fn unit(&self, token: u32) -> Unit {
        if self.token.get() == token {
            self.unit.get()
        } else {
            Unit::None
        }
    }

    /// Called from a lol-html handler on the coroutine's stack: hands `unit` to JavaScript's
    /// handler `code` and waits (suspended) until it has finished.
    fn call(&self, unit: Unit, code: u32) -> HandlerResult {
        let yielder = self.yielder.get();
        if yielder.is_null() {
            return Err("the rewriter is not running".into());
        }
        self.token.set(self.token.get().wrapping_add(1));
        self.unit.set(unit);
        // SAFETY: the yielder was set by the coroutine's body, which is running (this is
        // called from lol-html inside it), so the reference it points to is alive.
        #[allow(
            unsafe_code,
            reason = "the yielder lives as long as the running coroutine"
        )]
        let input = unsafe { &*yielder }.suspend(Call::Handler(code));
        self.unit.set(Unit::None);
        match input {
            Input::Resume(true) => Ok(()),
            _ => Err("a handler failed".into()),
        }
    }
}

/// The handler sets to install: selectors with their flags, then the document sets' flags.
pub(super) struct Plan {
    /// `on(selector, handlers)`, in order.
    pub(super) elements: Vec<(Selector, u8)>,
    /// `onDocument(handlers)`, in order.
    pub(super) documents: Vec<u8>,
    /// The body's encoding.
    pub(super) encoding: AsciiCompatibleEncoding,
}

/// What the rewriter's run ended with: `Err` carries lol-html's message.
type Outcome = Result<(), String>;

/// A rewriter running (or suspended) on its own stack.
pub(super) struct Machine {
    coroutine: Option<Coroutine<Input, Call, Outcome, DefaultStack>>,
    pub(super) bridge: Rc<Bridge>,
}

/// A step of the machine.
pub(super) enum Step {
    /// It wants more input (or, after [`Input::End`], has finished).
    Idle,
    /// It waits for JavaScript's handler with this code.
    Handler(u32),
}

impl Machine {
    /// A machine for `plan`; it starts at the first input.
    pub(super) fn new(plan: Plan) -> std::io::Result<Self> {
        let bridge = Bridge::new();
        let inner = bridge.clone();
        let stack = DefaultStack::new(STACK_BYTES)?;
        let coroutine =
            Coroutine::with_stack(stack, move |yielder: &Yielder<Input, Call>, first| {
                inner.yielder.set(yielder);
                run(&inner, plan, yielder, first)
            });
        Ok(Self {
            coroutine: Some(coroutine),
            bridge,
        })
    }

    /// Feeds `input` and runs until the rewriter wants more or calls a handler. `Err` when the
    /// rewriting failed (the machine is then finished).
    pub(super) fn step(&mut self, input: Input) -> Result<Step, Option<String>> {
        let coroutine = self.coroutine.as_mut().ok_or(None)?;
        match coroutine.resume(input) {
            CoroutineResult::Yield(Call::NeedInput) => Ok(Step::Idle),
            CoroutineResult::Yield(Call::Handler(code)) => Ok(Step::Handler(code)),
            CoroutineResult::Return(outcome) => {
                self.coroutine = None;
                outcome.map(|()| Step::Idle).map_err(Some)
            }
        }
    }
}

impl Drop for Machine {
    /// A machine dropped mid-way (its stream cancelled, or collected) is told to stop, so its
    /// coroutine returns normally instead of being unwound.
    fn drop(&mut self) {
        for _ in 0..8 {
            if self.coroutine.as_ref().is_none_or(Coroutine::done) {
                return;
            }
            let _ = self.step(Input::Resume(false));
        }
    }
}

/// The coroutine's body: builds the rewriter and feeds it input until the end or a failure.
fn run(bridge: &Rc<Bridge>, plan: Plan, yielder: &Yielder<Input, Call>, first: Input) -> Outcome {
    let mut settings = Settings::new()
        .with_encoding(plan.encoding)
        .with_memory_settings(
            MemorySettings::new().with_max_allowed_memory_usage(MAX_BUFFERED_BYTES),
        );
    for (index, (selector, flags)) in plan.elements.into_iter().enumerate() {
        settings = settings.append_element_content_handler((
            Cow::Owned(selector),
            element_set(bridge, index, flags),
        ));
    }
    for (index, flags) in plan.documents.into_iter().enumerate() {
        settings = settings.append_document_content_handler(document_set(bridge, index, flags));
    }
    let sink = bridge.clone();
    let mut rewriter = HtmlRewriter::new(settings, move |bytes: &[u8]| {
        sink.output.borrow_mut().extend_from_slice(bytes);
    });
    let mut input = first;
    loop {
        match input {
            Input::Chunk(chunk) => rewriter.write(&chunk).map_err(|e| e.to_string())?,
            Input::End => return rewriter.end().map_err(|e| e.to_string()),
            Input::Resume(_) => return Err("the rewriter was stopped".to_owned()),
        }
        input = yielder.suspend(Call::NeedInput);
    }
}

fn code(index: usize, kind: u32) -> u32 {
    (u32::try_from(index).unwrap_or(u32::MAX >> 4) << 4) | kind
}

/// Erases a handler argument's lifetimes, for [`Unit`].
macro_rules! erase {
    ($variant:ident, $value:expr) => {
        Unit::$variant(std::ptr::from_mut($value).cast())
    };
}

fn element_set(bridge: &Rc<Bridge>, index: usize, flags: u8) -> ElementContentHandlers<'static> {
    let mut set = ElementContentHandlers::default();
    if flags & flag::FIRST != 0 {
        let bridge = bridge.clone();
        set = set.element(move |el: &mut Element<'_, '_>| {
            bridge.call(erase!(Element, el), code(index, kind::ELEMENT))
        });
    }
    if flags & flag::COMMENTS != 0 {
        let bridge = bridge.clone();
        set = set.comments(move |c: &mut Comment<'_>| {
            bridge.call(erase!(Comment, c), code(index, kind::COMMENTS))
        });
    }
    if flags & flag::TEXT != 0 {
        let bridge = bridge.clone();
        set = set.text(move |t: &mut TextChunk<'_>| {
            bridge.call(erase!(Text, t), code(index, kind::TEXT))
        });
    }
    set
}

fn document_set(bridge: &Rc<Bridge>, index: usize, flags: u8) -> DocumentContentHandlers<'static> {
    let mut set = DocumentContentHandlers::default();
    if flags & flag::FIRST != 0 {
        let bridge = bridge.clone();
        set = set.doctype(move |d: &mut Doctype<'_>| {
            bridge.call(erase!(Doctype, d), code(index, kind::DOCTYPE))
        });
    }
    if flags & flag::COMMENTS != 0 {
        let bridge = bridge.clone();
        set = set.comments(move |c: &mut Comment<'_>| {
            bridge.call(erase!(Comment, c), code(index, kind::DOC_COMMENTS))
        });
    }
    if flags & flag::TEXT != 0 {
        let bridge = bridge.clone();
        set = set.text(move |t: &mut TextChunk<'_>| {
            bridge.call(erase!(Text, t), code(index, kind::DOC_TEXT))
        });
    }
    if flags & flag::END != 0 {
        let bridge = bridge.clone();
        set = set.end(move |end: &mut DocumentEnd<'_>| {
            bridge.call(erase!(End, end), code(index, kind::DOC_END))
        });
    }
    set
}

/// Registers JavaScript's end tag handler `id` on `element`.
pub(super) fn on_end_tag(
    bridge: &Rc<Bridge>,
    element: &mut Element<'static, 'static>,
    id: u32,
) -> HandlerResult {
    let bridge = bridge.clone();
    let code = code(id as usize, kind::END_TAG);
    element.on_end_tag(Box::new(move |end: &mut EndTag<'_>| {
        bridge.call(erase!(EndTag, end), code)
    }))
}
