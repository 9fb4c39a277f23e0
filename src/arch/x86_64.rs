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

/// Reads the 32-bit field at byte `FIELD` of the calling thread's rseq
/// area through `%fs` (one load; no separate read of the thread pointer).
#[inline(always)]
pub fn area_u32<const FIELD: usize>(rseq_offset: isize) -> u32 {
    let v: u32;
    // SAFETY: the caller passes the offset of the calling thread's live
    // rseq area; the read has no side effect. Not `pure`: the kernel
    // changes the field between reads.
    unsafe {
        core::arch::asm!(
            "mov {v:e}, dword ptr fs:[{off} + {field}]",
            v = out(reg) v,
            off = in(reg) rseq_offset,
            field = const FIELD,
            options(nostack, readonly, preserves_flags),
        );
    }
    v
}
