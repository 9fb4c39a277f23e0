//! aarch64: the area is addressed as thread pointer + `rseq_offset`.

/// Sequences exist for this architecture.
pub const SUPPORTED: bool = true;

/// The calling thread's thread pointer (`tpidr_el0`).
#[inline(always)]
pub fn thread_pointer() -> *mut u8 {
    let tp: *mut u8;
    // SAFETY: reading tpidr_el0 has no side effect and is constant for
    // the thread's life.
    unsafe {
        core::arch::asm!("mrs {}, tpidr_el0", out(reg) tp, options(nostack, nomem, preserves_flags, pure));
    }
    tp
}

/// The area operand of a sequence: the address of the area.
#[inline(always)]
pub fn area_operand(rseq_offset: isize) -> usize {
    thread_pointer() as usize + rseq_offset as usize
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

/// One exclusive-monitor attempt at adding one to `counter`: LDXR, add,
/// STXR, and no retry loop. Returns whether the store-exclusive
/// succeeded.
///
/// For ARMv8.0 CPUs without LSE atomics, where an atomic add is an
/// LDXR/STXR loop that never completes under `PTRACE_SINGLESTEP` (the
/// debug exception clears the exclusive monitor): the caller bounds its
/// attempts, so a single-stepped thread still makes progress.
#[inline]
pub fn increment_exclusive_once(counter: &core::sync::atomic::AtomicU64) -> bool {
    let failed: u32;
    // SAFETY: `counter` is a live, aligned 64-bit atomic; the sequence is
    // an atomic read-modify-write of it (or no write at all if the
    // store-exclusive fails), like one iteration of `fetch_add`.
    unsafe {
        core::arch::asm!(
            "ldxr {v}, [{p}]",
            "add {v}, {v}, #1",
            "stxr {f:w}, {v}, [{p}]",
            p = in(reg) counter.as_ptr(),
            v = out(reg) _,
            f = out(reg) failed,
            options(nostack, preserves_flags),
        );
    }
    failed == 0
}
