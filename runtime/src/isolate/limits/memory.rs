//! The memory limit (`memory_mb`: heap + ArrayBuffer contents of one isolate). Three guards,
//! so that V8 never aborts the process with OOM:
//! - V8's heap limit is `memory_mb`; near it, a callback records the kill, terminates
//!   execution and raises the limit so V8 can unwind (returning less aborts the process);
//! - ArrayBuffer contents go through a counting allocator: past `memory_mb` it terminates
//!   execution, past twice that it refuses (JavaScript gets a RangeError);
//! - after a turn, heap + external memory is compared with `memory_mb` once the turns since
//!   the last comparison add up to [`MEASURE_AFTER`] of wall time (so a turn that long is
//!   measured at its end), or the ArrayBuffer and off-heap bytes moved by
//!   [`MEASURE_ON_CHANGE`]. V8's heap statistics walk every space (0.7 % of hello's CPU when
//!   taken after every turn; 1.9 % of a round robin over 1,000 tenants when taken after every
//!   turn over 50 µs, as most are there, run from cold caches), and 1 ms of JavaScript cannot
//!   allocate much: a few MB at V8's fastest, under the heap limit that its own callback
//!   enforces at once.
//!
//! Memory that JavaScript makes outside V8 (Blob contents, object URLs, compression state:
//! see `isola_bindings::memory`) is charged to the same counter as ArrayBuffers, and reported
//! to V8 as external memory after each turn so that its garbage collector frees what holds it.
#![allow(
    unsafe_code,
    reason = "V8's ArrayBuffer allocator interface is a C vtable over raw memory"
)]

use std::alloc::Layout;
use std::cell::Cell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use deno_core::{JsRuntime, v8};
use isola_bindings::memory::{MemoryAccount, MemoryMeter};

use super::{Limit, Shared};

const MB: f64 = 1024.0 * 1024.0;
/// Turns' wall time, in all, after which a turn's end measures the heap.
const MEASURE_AFTER: std::time::Duration = std::time::Duration::from_millis(1);
/// A change of the ArrayBuffer and off-heap bytes that makes a turn's end measure the heap.
const MEASURE_ON_CHANGE: usize = 1 << 20;
/// Alignment of ArrayBuffer contents (what malloc gives; V8 needs at least 8).
const ALIGN: usize = 16;

/// The memory limit of one isolate, made before the isolate (V8 needs the allocator and
/// heap limits at creation).
pub(crate) struct MemoryGuard {
    counter: Arc<Counter>,
    limit_bytes: usize,
    /// Off-heap bytes V8 was last told about (as external memory).
    reported_off_heap: Cell<usize>,
    /// Heap + external bytes at the last measurement.
    measured: Cell<usize>,
    /// The counter's bytes at the last measurement.
    counted_at_measurement: Cell<usize>,
    /// Wall time of the short turns since the last measurement.
    unmeasured: Cell<std::time::Duration>,
}

/// ArrayBuffer and off-heap bytes allocated by one isolate.
struct Counter {
    used: AtomicUsize,
    /// The part of `used` charged by ops for memory outside V8.
    off_heap: AtomicUsize,
    soft: usize,
    hard: usize,
    shared: OnceLock<Arc<Shared>>,
}

impl MemoryGuard {
    /// The guard and the isolate's creation parameters for a limit of `limit_bytes`.
    pub(crate) fn new(limit_bytes: usize) -> (Self, v8::CreateParams) {
        let counter = Arc::new(Counter {
            used: AtomicUsize::new(0),
            off_heap: AtomicUsize::new(0),
            soft: limit_bytes,
            hard: limit_bytes.saturating_mul(2),
            shared: OnceLock::new(),
        });
        // SAFETY: the handle is an `Arc<Counter>` turned into a raw pointer; V8 hands it back
        // to the vtable functions below and calls `drop_counter` once, which releases it.
        let allocator =
            unsafe { v8::new_rust_allocator(Arc::into_raw(counter.clone()), &COUNTING) };
        let params = v8::CreateParams::default()
            .heap_limits(0, limit_bytes)
            .array_buffer_allocator(allocator);
        (
            Self {
                counter,
                limit_bytes,
                reported_off_heap: Cell::new(0),
                measured: Cell::new(0),
                counted_at_measurement: Cell::new(0),
                unmeasured: Cell::new(std::time::Duration::ZERO),
            },
            params,
        )
    }

    /// The account the isolate's ops charge off-heap memory to.
    pub(crate) fn account(&self) -> MemoryAccount {
        MemoryAccount::new(self.counter.clone())
    }

    /// Connects the guards to the created isolate.
    pub(super) fn install(&self, runtime: &mut JsRuntime, shared: &Arc<Shared>) {
        let _ = self.counter.shared.set(shared.clone());
        let shared = shared.clone();
        let budget_mb = self.limit_bytes as f64 / MB;
        runtime.add_near_heap_limit_callback(move |current, _initial| {
            if shared.kill(Limit::Memory, current as f64 / MB, budget_mb) {
                tracing::debug!("heap near its limit: terminating the isolate");
            }
            shared.handle.terminate_execution();
            // Room for V8 to unwind; the isolate is discarded right after.
            current.saturating_mul(2)
        });
    }

    /// After a turn of `turn_wall`: kills the isolate if heap + external memory is over the
    /// limit; returns what it measured (or, after a short turn that is not due, the last
    /// measurement, with the counter's bytes as they are now).
    pub(super) fn check(
        &self,
        runtime: &mut JsRuntime,
        shared: &Shared,
        turn_wall: std::time::Duration,
    ) -> usize {
        self.report_off_heap(runtime.v8_isolate());
        let counted = self.counter.used.load(Ordering::Relaxed);
        let unmeasured = self.unmeasured.get().saturating_add(turn_wall);
        let moved = counted.abs_diff(self.counted_at_measurement.get());
        if !measurement_due(unmeasured, moved) {
            self.unmeasured.set(unmeasured);
            return self.measured.get().max(counted);
        }
        self.unmeasured.set(std::time::Duration::ZERO);
        self.counted_at_measurement.set(counted);
        let stats = runtime.v8_isolate().get_heap_statistics();
        let used = stats
            .used_heap_size()
            .saturating_add(stats.external_memory())
            .max(counted);
        self.measured.set(used);
        if used > self.limit_bytes {
            shared.kill(
                Limit::Memory,
                used as f64 / MB,
                self.limit_bytes as f64 / MB,
            );
            shared.handle.terminate_execution();
        }
        used
    }

    /// Tells V8 how the off-heap charge changed since the last turn, so that its collector
    /// runs when garbage (a dropped Blob or stream) holds much memory outside the heap.
    fn report_off_heap(&self, isolate: &mut v8::Isolate) {
        let now = self.counter.off_heap.load(Ordering::Relaxed);
        let before = self.reported_off_heap.replace(now);
        let change =
            i64::try_from(now).unwrap_or(i64::MAX) - i64::try_from(before).unwrap_or(i64::MAX);
        if change != 0 {
            isolate.adjust_amount_of_external_allocated_memory(change);
        }
    }
}

/// Whether a turn's end measures the heap, with `unmeasured` of turns' wall time (this one's
/// included) and `moved` counted bytes since the last measurement.
fn measurement_due(unmeasured: std::time::Duration, moved: usize) -> bool {
    unmeasured >= MEASURE_AFTER || moved >= MEASURE_ON_CHANGE
}

impl MemoryMeter for Counter {
    fn charge(&self, bytes: usize) -> bool {
        if !self.reserve(bytes) {
            return false;
        }
        self.off_heap.fetch_add(bytes, Ordering::Relaxed);
        true
    }

    fn release(&self, bytes: usize) {
        self.off_heap.fetch_sub(bytes, Ordering::Relaxed);
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }
}

impl Counter {
    /// Counts `len` more bytes; false if that would pass the hard cap.
    fn reserve(&self, len: usize) -> bool {
        let before = self.used.fetch_add(len, Ordering::Relaxed);
        let after = before.saturating_add(len);
        if after > self.hard {
            self.used.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        if after > self.soft
            && let Some(shared) = self.shared.get()
        {
            shared.kill(Limit::Memory, after as f64 / MB, self.soft as f64 / MB);
            shared.handle.terminate_execution();
        }
        true
    }

    fn allocate(&self, len: usize, zeroed: bool) -> *mut c_void {
        let Ok(layout) = Layout::from_size_align(len.max(1), ALIGN) else {
            return std::ptr::null_mut();
        };
        if !self.reserve(len) {
            return std::ptr::null_mut();
        }
        // SAFETY: the layout has a non-zero size.
        let data = unsafe {
            if zeroed {
                std::alloc::alloc_zeroed(layout)
            } else {
                std::alloc::alloc(layout)
            }
        };
        if data.is_null() {
            self.used.fetch_sub(len, Ordering::Relaxed);
        }
        data.cast()
    }
}

static COUNTING: v8::RustAllocatorVtable<Counter> = v8::RustAllocatorVtable {
    allocate,
    allocate_uninitialized,
    free,
    drop: drop_counter,
};

unsafe extern "C" fn allocate(counter: &Counter, len: usize) -> *mut c_void {
    counter.allocate(len, true)
}

unsafe extern "C" fn allocate_uninitialized(counter: &Counter, len: usize) -> *mut c_void {
    counter.allocate(len, false)
}

unsafe extern "C" fn free(counter: &Counter, data: *mut c_void, len: usize) {
    if data.is_null() {
        return;
    }
    counter.used.fetch_sub(len, Ordering::Relaxed);
    if let Ok(layout) = Layout::from_size_align(len.max(1), ALIGN) {
        // SAFETY: `data` came from `allocate` with the same length, hence the same layout.
        unsafe { std::alloc::dealloc(data.cast(), layout) };
    }
}

unsafe extern "C" fn drop_counter(counter: *const Counter) {
    // SAFETY: the pointer is the `Arc::into_raw` made in `MemoryGuard::new`, dropped once.
    drop(unsafe { Arc::from_raw(counter) });
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{MEASURE_AFTER, MEASURE_ON_CHANGE, measurement_due};

    #[test]
    fn a_turn_of_a_millisecond_is_measured_at_its_end() {
        assert!(measurement_due(MEASURE_AFTER, 0));
        assert!(measurement_due(Duration::from_millis(7), 0));
    }

    #[test]
    fn shorter_turns_are_measured_once_they_add_up() {
        // A turn of 60 µs, usual for a request run from cold caches, is not measured alone.
        let turn = Duration::from_micros(60);
        assert!(!measurement_due(turn, 0));
        assert!(!measurement_due(MEASURE_AFTER - Duration::from_nanos(1), 0));
        assert!(measurement_due(turn * 17, 0));
    }

    #[test]
    fn a_short_turn_that_moved_a_mebibyte_of_buffers_is_measured() {
        let turn = Duration::from_micros(20);
        assert!(!measurement_due(turn, MEASURE_ON_CHANGE - 1));
        assert!(measurement_due(turn, MEASURE_ON_CHANGE));
    }
}
