//! Many isolates on one executor thread. V8 wants the isolate it runs to be the thread's
//! current one, and rusty_v8 leaves an isolate entered from its creation until its drop; on an
//! executor each isolate's task instead makes sure its isolate is the one entered when it is
//! polled ([`Host`]), as does a turn the front end runs for it ([`Residence::run`]), and
//! swaps in the thread-locals that belong to that isolate (its outbound guard, the context
//! and stack the CPU watchdog's interrupt uses, the module-loading flag) around every poll.
//! The isolate stays entered after its poll (it is the thread's *resident*)
//! until another isolate's code runs, which exits it first: a thread that serves one busy
//! isolate does not exit and re-enter it for each of its requests. The thread-locals are
//! swapped out after every poll all the same, so code running between polls never sees an
//! isolate's guard. [`Runtime`] makes sure an isolate is entered exactly once when it is
//! dropped, however its task ends. Never run V8 outside a `Residence::run` on an executor.
#![allow(
    unsafe_code,
    reason = "entering and exiting a V8 isolate by hand is unsafe in rusty_v8"
)]

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use deno_core::{JsRuntime, v8};
use isola_bindings::outbound::guard;

use super::limits::{HeldStack, swap_stack};

thread_local! {
    /// The isolate entered on this thread by a `Host` poll: the running one's, or between
    /// polls the last polled one's (the resident), until another `Host` is polled.
    static ENTERED: Cell<Option<v8::UnsafeRawIsolatePtr>> = const { Cell::new(None) };
}

/// Whether isolates made on this thread are hosted (an executor thread), so entered only
/// while their task is polled.
fn hosting() -> bool {
    crate::executor::current().is_some()
}

/// A `JsRuntime` that, when hosted on an executor, is entered exactly once as it is dropped
/// (rusty_v8 asserts that the isolate dropped is the current one, and V8 refuses to dispose
/// an isolate entered twice).
pub(crate) struct Runtime {
    runtime: JsRuntime,
    hosted: bool,
}

impl Runtime {
    /// Takes a runtime just created on this thread (V8 entered its isolate on creation). On an
    /// executor, the running `Host` poll now owns that entry and exits it when the poll ends.
    pub(crate) fn new(mut runtime: JsRuntime) -> Self {
        let hosted = hosting();
        if hosted {
            // SAFETY: only the pointer is taken; `Host` uses it while the runtime lives.
            ENTERED.set(Some(unsafe { runtime.v8_isolate().as_raw_isolate_ptr() }));
        }
        Self { runtime, hosted }
    }
}

impl Deref for Runtime {
    type Target = JsRuntime;

    fn deref(&self) -> &JsRuntime {
        &self.runtime
    }
}

impl DerefMut for Runtime {
    fn deref_mut(&mut self) -> &mut JsRuntime {
        &mut self.runtime
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if !self.hosted {
            return;
        }
        let isolate = self.runtime.v8_isolate();
        // SAFETY: only the pointer is taken, to compare it.
        let ptr = unsafe { isolate.as_raw_isolate_ptr() };
        if ENTERED.get().is_some_and(|entered| same(entered, ptr)) {
            // Entered by this poll (or left entered by its last one): the runtime's drop does
            // the matching exit.
            ENTERED.set(None);
        } else {
            // SAFETY: the isolate lives on this thread (executor tasks never move) and is not
            // entered now; its drop (next, as the field drops) exits it again, which makes the
            // isolate entered before (if any) current again, and disposes it.
            unsafe { isolate.enter() };
        }
    }
}

fn same(a: v8::UnsafeRawIsolatePtr, b: v8::UnsafeRawIsolatePtr) -> bool {
    address(a) == address(b)
}

fn address(ptr: v8::UnsafeRawIsolatePtr) -> usize {
    // SAFETY: `UnsafeRawIsolatePtr` is a `repr(transparent)` raw pointer; only its address
    // is read.
    unsafe { std::mem::transmute::<v8::UnsafeRawIsolatePtr, *const u8>(ptr) }.addr()
}

thread_local! {
    /// The residence whose code runs on this thread now: a `Host` poll, or a turn the front
    /// end runs (`inline`). None between them.
    static RUNNING: Cell<Option<Rc<Residence>>> = const { Cell::new(None) };
}

/// Where an isolate lives on its executor thread: its pointer (once made), and its
/// thread-locals while another isolate's code runs. Its `Host` task and the turns the front
/// end runs for it (`super::inline`) both enter it through [`Residence::run`].
#[derive(Default)]
pub(crate) struct Residence {
    isolate: Cell<Option<v8::UnsafeRawIsolatePtr>>,
    locals: RefCell<Locals>,
}

impl Residence {
    /// Runs `code` with this residence's isolate (once there is one) entered and its
    /// thread-locals in place; the isolate stays entered afterwards, as the thread's
    /// resident, until code of another residence runs.
    pub(crate) fn run<R>(self: &Rc<Self>, code: impl FnOnce() -> R) -> R {
        let resident = ENTERED.get();
        match self.isolate.get() {
            Some(ptr) if resident.is_some_and(|entered| same(entered, ptr)) => {
                // Still entered since its code last ran.
                self.locals.borrow_mut().swap();
            }
            Some(ptr) => {
                leave(resident);
                self.locals.borrow_mut().swap();
                // SAFETY: the pointer is the live isolate made on this thread for this
                // residence (a drop clears it, see `Runtime`), and no other isolate is
                // entered now.
                unsafe { v8::Isolate::ref_from_raw_isolate_ptr(&ptr).enter() };
                ENTERED.set(Some(ptr));
            }
            // The task may make its isolate now, which V8 enters on creation: no other may
            // be left entered beneath it.
            None => leave(resident),
        }
        let outer = RUNNING.replace(Some(self.clone()));
        let output = code();
        RUNNING.set(outer);
        // Take back the isolate's thread-locals (they may have been set meanwhile).
        self.locals.borrow_mut().swap();
        // The isolate stays entered (resident) until another residence's code runs here.
        self.isolate.set(ENTERED.get());
        if self.isolate.get().is_none() {
            // The isolate is gone (or there never was one).
            *self.locals.borrow_mut() = Locals::default();
        }
        output
    }

    /// The residence whose code runs on this thread now, if any.
    pub(crate) fn running() -> Option<Rc<Self>> {
        let running = RUNNING.take();
        RUNNING.set(running.clone());
        running
    }

    /// Whether any residence's code runs on this thread now (V8 may not be entered for
    /// another isolate then).
    pub(crate) fn any_running() -> bool {
        let running = RUNNING.take();
        let any = running.is_some();
        RUNNING.set(running);
        any
    }
}

/// An isolate's task on an executor: enters the isolate (once its task made one) around each
/// poll, with that isolate's thread-locals in place.
pub(crate) struct Host<F> {
    task: Pin<Box<F>>,
    residence: Rc<Residence>,
}

impl<F: Future<Output = ()>> Host<F> {
    /// Hosts `task`, which makes (or receives) one isolate and serves with it.
    pub(crate) fn new(task: F) -> Self {
        Self {
            task: Box::pin(task),
            residence: Rc::default(),
        }
    }
}

impl<F: Future<Output = ()>> Future for Host<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let task = &mut this.task;
        this.residence.run(|| task.as_mut().poll(cx))
    }
}

/// Exits the thread's resident isolate, if any, before another is polled.
fn leave(resident: Option<v8::UnsafeRawIsolatePtr>) {
    if let Some(ptr) = resident {
        ENTERED.set(None);
        // SAFETY: the resident is alive (its drop clears `ENTERED`), on this thread, and
        // entered once, by its last poll.
        unsafe { v8::Isolate::ref_from_raw_isolate_ptr(&ptr).exit() };
    }
}

/// The thread-locals that belong to the isolate running on a thread.
#[derive(Default)]
struct Locals {
    guard: Option<guard::Guard>,
    stack: HeldStack,
    loading_modules: bool,
}

impl Locals {
    /// Exchanges these with the thread's.
    fn swap(&mut self) {
        self.guard = guard::swap(self.guard.take());
        self.stack = swap_stack(std::mem::take(&mut self.stack));
        self.loading_modules = super::swap_loading_modules(self.loading_modules);
    }
}
