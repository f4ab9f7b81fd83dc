//! Gives a killed isolate's memory back to the kernel. glibc keeps freed chunks in its
//! arenas (chunks up to 32 MiB come from the arenas once a large one has been freed), so the
//! hundreds of MiB a memory bomb held would stay resident after its isolate is discarded.

/// Returns the free memory of all malloc arenas to the kernel.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code, reason = "malloc_trim is a C function")]
pub(crate) fn release_free_memory() {
    // SAFETY: malloc_trim takes no pointers; it walks glibc's own arenas under their locks.
    unsafe { libc::malloc_trim(0) };
}

/// Returns the free memory of the allocator to the kernel (nothing to do off glibc).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn release_free_memory() {}
