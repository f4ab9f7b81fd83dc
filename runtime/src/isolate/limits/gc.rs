//! How much CPU time this thread spent in V8's garbage collection pauses, so that placement
//! can tell a worker's own long turns from a collection that happened to land in one. A GC
//! pause runs on the thread of the isolate it collects, inside one of its turns, so a
//! per-thread total read at a turn's start and end gives the GC time of that turn (also on a
//! thread hosting many isolates, whose turns never overlap). Pauses are timed by the thread's
//! CPU clock, as turns are: wall time would count the pause's preemptions on a busy machine.
#![allow(
    unsafe_code,
    reason = "V8's GC callbacks are C functions with a raw isolate pointer"
)]

use std::cell::Cell;
use std::ffi::c_void;

use deno_core::v8;

thread_local! {
    /// CPU nanoseconds of GC pauses this thread has run, in total.
    static TOTAL_NS: Cell<u64> = const { Cell::new(0) };
    /// The thread's CPU clock when the running pause began.
    static STARTED_NS: Cell<Option<u64>> = const { Cell::new(None) };
}

/// The pauses that are timed: the atomic collections. (Incremental marking's start and its
/// finalisation are callbacks of their own that do not bracket a pause.)
fn pauses() -> v8::GCType {
    v8::GCType::kGCTypeScavenge
        | v8::GCType::kGCTypeMinorMarkSweep
        | v8::GCType::kGCTypeMarkSweepCompact
}

/// Times the GC pauses of `isolate`, created on this thread.
pub(super) fn watch(isolate: &mut v8::Isolate) {
    isolate.add_gc_prologue_callback(began, std::ptr::null_mut(), pauses());
    isolate.add_gc_epilogue_callback(ended, std::ptr::null_mut(), pauses());
}

/// CPU nanoseconds of GC pauses this thread has run so far.
pub(super) fn total_ns() -> u64 {
    TOTAL_NS.with(Cell::get)
}

unsafe extern "C" fn began(
    _isolate: v8::UnsafeRawIsolatePtr,
    _type: v8::GCType,
    _flags: v8::GCCallbackFlags,
    _data: *mut c_void,
) {
    STARTED_NS.with(|started| {
        if started.get().is_none() {
            started.set(Some(super::cpu::current_thread_cpu_ns()));
        }
    });
}

unsafe extern "C" fn ended(
    _isolate: v8::UnsafeRawIsolatePtr,
    _type: v8::GCType,
    _flags: v8::GCCallbackFlags,
    _data: *mut c_void,
) {
    if let Some(start_ns) = STARTED_NS.with(Cell::take) {
        let ns = super::cpu::current_thread_cpu_ns().saturating_sub(start_ns);
        TOTAL_NS.with(|total| total.set(total.get().saturating_add(ns)));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, reason = "tests fail loudly")]

    use deno_core::{JsRuntime, RuntimeOptions};

    use super::*;

    /// A script that allocates past the young generation runs collections, which are counted
    /// on the running thread's clock.
    #[test]
    fn collections_in_a_script_are_timed() {
        // V8 posts delayed tasks after a scavenge, which deno_core spawns on tokio.
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime for the test");
        let _entered = tokio.enter();
        let mut runtime = JsRuntime::new(RuntimeOptions::default());
        watch(runtime.v8_isolate());
        let before = total_ns();
        let allocate =
            "let kept = []; for (let i = 0; i < 200000; i++) kept.push({ i }); kept.length";
        assert!(runtime.execute_script("allocate.js", allocate).is_ok());
        assert!(total_ns() > before, "no collection was timed");
    }
}
