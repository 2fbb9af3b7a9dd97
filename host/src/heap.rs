//! Handing freed heap back to the system after the big one-off allocations.
//!
//! Compiling components (Cranelift) and loading tenants allocate and free tens
//! of megabytes once. glibc keeps freed memory in its arenas for reuse, and
//! only trims above a threshold that grows with the largest freed block, so a
//! host that compiled at start kept ~16 MB it never needs again. Trimming once
//! after loading returns it, without the cost of trimming on every `free`
//! (`GLIBC_TUNABLES=glibc.malloc.trim_threshold=…` made plugin calls take about
//! a tenth more CPU; `docs/performance.md`).

/// Returns freed heap memory to the system (glibc); a no-op elsewhere.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes a plain integer, touches only the allocator's
    // own free lists under its own locks, and is safe to call from any thread
    // at any time (glibc manual, "Memory Allocation Tunables" / malloc_trim(3)).
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}
