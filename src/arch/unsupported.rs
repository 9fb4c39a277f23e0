//! Architectures without sequence templates: the library builds, never
//! registers a thread, and every critical section reports an abort, so
//! callers take their fallback (the `percpu_*` wrappers run a cpu-op).
//! `rseq_available()` answers false with errno ENOTSUP.

/// No sequences for this architecture.
pub const SUPPORTED: bool = false;

extern "C" {
    fn rseq_impl_thread_pointer() -> *mut u8;
}

/// The calling thread's thread pointer, from the C compiler's builtin.
#[inline(always)]
pub fn thread_pointer() -> *mut u8 {
    // SAFETY: a plain accessor in area.c.
    unsafe { rseq_impl_thread_pointer() }
}

/// The area operand (unused: the stand-in sequences ignore it).
#[inline(always)]
pub fn area_operand(rseq_offset: isize) -> usize {
    rseq_offset as usize
}

/// Reads the 32-bit field at byte `FIELD` of the calling thread's rseq
/// area.
#[inline(always)]
pub fn area_u32<const FIELD: usize>(rseq_offset: isize) -> u32 {
    let p = thread_pointer()
        .wrapping_offset(rseq_offset)
        .wrapping_add(FIELD);
    // SAFETY: the caller passes the offset of the calling thread's live
    // rseq area; the kernel updates the field from this thread's context
    // only, so a volatile read sees a whole value.
    unsafe { core::ptr::read_volatile(p.cast::<u32>()) }
}
