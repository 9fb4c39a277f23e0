//! i386 (32-bit x86): the area is addressed through the `%gs` segment, so
//! a sequence takes `rseq_offset` itself as its area operand, as on
//! x86_64 with `%fs`.

/// Sequences exist for this architecture.
pub const SUPPORTED: bool = true;

/// The calling thread's thread pointer (`%gs:0`).
#[inline(always)]
pub fn thread_pointer() -> *mut u8 {
    let tp: *mut u8;
    // SAFETY: %gs:0 holds the TCB self-pointer in every thread; reading it
    // has no side effect and is constant for the thread's life.
    unsafe {
        core::arch::asm!("mov {}, dword ptr gs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags, pure));
    }
    tp
}

/// The area operand of a sequence: `rseq_offset` (the sequence adds
/// `%gs` itself).
#[inline(always)]
pub fn area_operand(rseq_offset: isize) -> usize {
    rseq_offset as usize
}

/// Reads the 32-bit field at byte `FIELD` of the calling thread's rseq
/// area through `%gs` (one load; no separate read of the thread pointer).
#[inline(always)]
pub fn area_u32<const FIELD: usize>(rseq_offset: isize) -> u32 {
    let v: u32;
    // SAFETY: the caller passes the offset of the calling thread's live
    // rseq area; the read has no side effect. Not `pure`: the kernel
    // changes the field between reads.
    unsafe {
        core::arch::asm!(
            "mov {v}, dword ptr gs:[{off} + {field}]",
            v = out(reg) v,
            off = in(reg) rseq_offset,
            field = const FIELD,
            options(nostack, readonly, preserves_flags),
        );
    }
    v
}
