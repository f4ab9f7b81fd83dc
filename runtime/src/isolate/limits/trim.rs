//! Gives a killed isolate's memory back to the kernel. glibc keeps freed chunks in its
//! arenas (chunks up to 32 MiB come from the arenas once a large one has been freed), so the
//! hundreds of MiB a memory bomb held would stay resident after its isolate is discarded; the
//! binary's global allocator may keep freed pages too, for which it registers
//! [`set_allocator_release`].

use std::sync::OnceLock;

static ALLOCATOR_RELEASE: OnceLock<fn()> = OnceLock::new();

/// Registers how the global allocator returns the calling thread's free memory to the kernel
/// now (mimalloc's `mi_collect(true)` in the `isola` binary), so the allocator may otherwise
/// keep freed pages a while, as it does by default, instead of returning each at once.
pub fn set_allocator_release(release: fn()) {
    let _ = ALLOCATOR_RELEASE.set(release);
}

fn release_allocator_memory() {
    if let Some(release) = ALLOCATOR_RELEASE.get() {
        release();
    }
}

/// Returns the free memory of all malloc arenas to the kernel.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code, reason = "malloc_trim is a C function")]
pub(crate) fn release_free_memory() {
    release_allocator_memory();
    // SAFETY: malloc_trim takes no pointers; it walks glibc's own arenas under their locks.
    unsafe { libc::malloc_trim(0) };
}

/// Returns the free memory of the global allocator to the kernel.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn release_free_memory() {
    release_allocator_memory();
}
