//! The process's allocator for Rust's allocations: mimalloc, asked for a plain block whenever
//! the alignment every mimalloc block has suffices.
//!
//! `mimalloc::MiMalloc` passes every request to `mi_malloc_aligned`, whose fast path covers
//! blocks up to 1 KiB only. A larger block whose size is not a power of two (a request's boxed
//! future, 2–4 KiB) took mimalloc's over-allocating fallback, even for an alignment of 8:
//! ~1,100 instructions per request in callgrind, and a block marked as holding interior
//! pointers, which its free then checks for. `mi_malloc` serves the same block directly.

#![allow(
    unsafe_code,
    reason = "a global allocator is an unsafe trait implemented over mimalloc's C interface"
)]

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

/// The alignment of every block `mi_malloc` returns of at least this size, and of every
/// smaller block to its size rounded down to a power of two (`MI_MAX_ALIGN_SIZE`).
const BLOCK_ALIGNMENT: usize = 16;

/// mimalloc as the global allocator (see the module docs).
pub struct Mimalloc;

/// Whether a plain block of `size` bytes is aligned enough for `align`: as std's `System`
/// allocator decides between `malloc` and `posix_memalign`.
fn plain_block_suffices(align: usize, size: usize) -> bool {
    align <= BLOCK_ALIGNMENT && align <= size
}

// SAFETY: each method returns a block of at least `layout.size()` bytes aligned to
// `layout.align()` (mimalloc's plain blocks meet any alignment up to `BLOCK_ALIGNMENT` that
// is not larger than the size; other requests go to its aligned functions), or null on
// failure; `mi_free` and `mi_realloc*` accept a block from any of mimalloc's functions.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: mimalloc's allocation functions accept any size and power-of-two alignment.
        unsafe {
            if plain_block_suffices(layout.align(), layout.size()) {
                libmimalloc_sys::mi_malloc(layout.size()).cast()
            } else {
                libmimalloc_sys::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe {
            if plain_block_suffices(layout.align(), layout.size()) {
                libmimalloc_sys::mi_zalloc(layout.size()).cast()
            } else {
                libmimalloc_sys::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (the caller's contract), so from mimalloc.
        unsafe { libmimalloc_sys::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from mimalloc (the caller's contract); the new block keeps the
        // alignment by the same rule as `alloc`.
        unsafe {
            if plain_block_suffices(layout.align(), new_size) {
                libmimalloc_sys::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                libmimalloc_sys::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align())
                    .cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_block_has_its_size_and_alignment_and_keeps_its_bytes_when_resized() {
        let allocator = Mimalloc;
        for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
            for size in [1, 3, 8, 15, 16, 24, 40, 1000, 1025, 2400, 3700, 70_000] {
                let Ok(layout) = Layout::from_size_align(size, align) else {
                    continue;
                };
                // SAFETY: a non-zero size; each block is written within its size, then
                // resized or freed once with its layout.
                unsafe {
                    let block = allocator.alloc(layout);
                    assert!(!block.is_null());
                    assert_eq!(block as usize % align, 0, "{size} bytes aligned to {align}");
                    block.write_bytes(0xA5, size);
                    let grown = allocator.realloc(block, layout, size * 3);
                    assert_eq!(grown as usize % align, 0, "{size} bytes grown");
                    assert_eq!(*grown.add(size - 1), 0xA5);
                    allocator.dealloc(grown, Layout::from_size_align_unchecked(size * 3, align));
                    let zeroed = allocator.alloc_zeroed(layout);
                    assert_eq!(zeroed as usize % align, 0, "{size} zeroed bytes");
                    assert_eq!(*zeroed.add(size - 1), 0);
                    allocator.dealloc(zeroed, layout);
                }
            }
        }
    }
}
