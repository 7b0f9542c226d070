//! Process-wide settings for programs that move stripes (a node, a mount).

/// Asks glibc's allocator to serve multi-MiB stripe buffers from its heap and keep freed
/// memory for the next stripe, instead of mapping fresh pages for every buffer (each page
/// then faults in and is zeroed: in the erasure benchmark that alone cost 3× in
/// throughput). Call once at the start of a node or mount process; the memory kept is
/// bounded by the stripes in flight. Does nothing where the allocator is not glibc's.
pub fn keep_stripe_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; called before threads allocate.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}
