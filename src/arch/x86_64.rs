//! x86_64: the area is addressed through the `%fs` segment, so a sequence
//! takes `rseq_offset` itself as its area operand.

/// Sequences exist for this architecture.
pub const SUPPORTED: bool = true;

/// The calling thread's thread pointer (`%fs:0`).
#[inline(always)]
pub fn thread_pointer() -> *mut u8 {
    let tp: *mut u8;
    // SAFETY: %fs:0 holds the TCB self-pointer in every thread; reading it
    // has no side effect and is constant for the thread's life.
    unsafe {
        core::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags, pure));
    }
    tp
}

/// The area operand of a sequence: `rseq_offset` (the sequence adds
/// `%fs` itself).
#[inline(always)]
pub fn area_operand(rseq_offset: isize) -> usize {
    rseq_offset as usize
}
