//! The JavaScript stack at the moment of a kill, for the post-mortem log. V8 can only walk
//! the stack on the isolate's thread, so the watchdog asks for an interrupt; the interrupt
//! records the stack in a thread-local of the isolate thread and terminates execution.
#![allow(
    unsafe_code,
    reason = "V8 interrupt callbacks receive a raw isolate pointer"
)]

use std::cell::RefCell;
use std::fmt::Write;

use deno_core::v8;

/// Frames kept in the post-mortem stack.
const FRAMES: usize = 10;

thread_local! {
    static CAPTURED: RefCell<Option<String>> = const { RefCell::new(None) };
    /// The main context of the isolate on this thread, for the interrupt's scope.
    static CONTEXT: RefCell<Option<v8::Global<v8::Context>>> = const { RefCell::new(None) };
}

/// Remembers the isolate's main context (one isolate per thread).
pub(super) fn remember_context(context: v8::Global<v8::Context>) {
    CONTEXT.with(|c| *c.borrow_mut() = Some(context));
}

/// What this thread holds for the isolate running on it: its context and a recorded stack.
pub(crate) type Held = (Option<v8::Global<v8::Context>>, Option<String>);

/// Puts `held` in place as this thread's and returns what was there: a thread that hosts
/// several isolates swaps each one's in while it runs.
pub(crate) fn swap(held: Held) -> Held {
    (
        CONTEXT.with(|c| std::mem::replace(&mut *c.borrow_mut(), held.0)),
        CAPTURED.with(|c| std::mem::replace(&mut *c.borrow_mut(), held.1)),
    )
}

/// Forgets the context; must run before the isolate is disposed.
pub(super) fn forget_context() {
    CONTEXT.with(|c| c.borrow_mut().take());
}

/// Asks the isolate to record its stack and terminate at its next interrupt check.
pub(super) fn capture_then_terminate(handle: &v8::IsolateHandle) {
    if !handle.request_interrupt(capture, std::ptr::null_mut()) {
        handle.terminate_execution();
    }
}

/// The stack the last kill on this thread recorded.
pub(super) fn take() -> Option<String> {
    CAPTURED.with(|captured| captured.borrow_mut().take())
}

unsafe extern "C" fn capture(isolate: v8::UnsafeRawIsolatePtr, _data: *mut std::ffi::c_void) {
    // SAFETY: V8 runs interrupt callbacks on the isolate's own thread while it executes
    // JavaScript, so the pointer is live and the isolate is entered here.
    let mut isolate = unsafe { v8::Isolate::from_raw_isolate_ptr(isolate) };
    let stack = CONTEXT.with(|context| {
        let context = context.borrow();
        let context = context.as_ref()?;
        v8::scope!(let scope, &mut isolate);
        let context = v8::Local::new(scope, context);
        let scope = &mut v8::ContextScope::new(scope, context);
        let trace = v8::StackTrace::current_stack_trace(scope, FRAMES)?;
        let mut text = String::new();
        for index in 0..trace.get_frame_count() {
            let Some(frame) = trace.get_frame(scope, index) else {
                continue;
            };
            let function = frame
                .get_function_name(scope)
                .map(|f| f.to_rust_string_lossy(scope))
                .filter(|f| !f.is_empty())
                .unwrap_or_else(|| "<anonymous>".to_owned());
            let script = frame
                .get_script_name_or_source_url(scope)
                .map(|s| s.to_rust_string_lossy(scope))
                .unwrap_or_default();
            let _ = write!(
                text,
                "\n    at {function} ({script}:{}:{})",
                frame.get_line_number(),
                frame.get_column()
            );
        }
        Some(text)
    });
    CAPTURED.with(|captured| *captured.borrow_mut() = stack);
    isolate.terminate_execution();
}
