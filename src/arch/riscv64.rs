//! riscv64: the area is addressed as thread pointer + `rseq_offset`.

/// Sequences exist for this architecture.
pub const SUPPORTED: bool = true;

/// The calling thread's thread pointer (`tp`).
#[inline(always)]
pub fn thread_pointer() -> *mut u8 {
    let tp: *mut u8;
    // SAFETY: reading tp has no side effect and is constant for
    // the thread's life.
    unsafe {
        core::arch::asm!("mv {}, tp", out(reg) tp, options(nostack, nomem, preserves_flags, pure));
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
