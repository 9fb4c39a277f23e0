//! Running a `cpu_opv()` vector without ever touching a caller address
//! directly: every load and store of the vector goes through the kernel
//! (`process_vm_readv` / `process_vm_writev` on the calling process
//! itself), so that an address that is bad, or that another thread
//! unmaps or write-protects between the checks and the access, gives
//! EFAULT (EAGAIN with `expect_fault`) instead of SIGSEGV or SIGBUS, with
//! the ownership word released like on any other return.
//!
//! This is the fallback path of [`super::opv`]: the default runs the
//! vector on the caller's memory directly and recovers from faults with
//! the library's SIGSEGV/SIGBUS handler ([`super::fault`], no system call
//! per access). This path is taken on ARMv8.0 without LSE atomics (the
//! direct path's write check is a compare-and-swap), with
//! `RSEQ_CPU_OPV_KERNEL_COPY=1`, when the handler cannot be installed,
//! and for a vector that must hold a word while a program's handler has
//! replaced the library's (see [`super::fault::handler_current`]). It
//! costs a system call per operation (two for an arithmetic operation),
//! and nothing at all per page.
//!
//! # What a fault can leave done
//!
//! The kernel's `cpu_opv` pinned every page before running anything.
//! Here the operations run in order, so a fault at operation `k` leaves
//! the operations before `k` done. [`probe_plan`] makes that invisible
//! for bad addresses that are bad before the call: nothing is written
//! before the first writing operation, and a write within one page either
//! happens whole or not at all, so only the ranges of the operations
//! after the first writing one (and those of the first writing one that
//! span two pages) are probed beforehand ([`super::access`]). A one-op
//! vector, and any vector whose only write is its last operation within a
//! page, costs no probe. Only an address unmapped by another thread
//! while the vector runs can stop it half way (the caller's race, as with
//! a buffer freed during any system call); it still returns EFAULT, never
//! a signal.

use super::access;
use super::vector::{ranges, CpuOp, OpType, Range};
use crate::sys::{self, Errno};
use core::sync::atomic::{fence, AtomicU8, Ordering};

/// How an execution stopped early.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// A kernel copy met an inaccessible address (EFAULT): operation
    /// index.
    Fault(usize),
}

const PAGE: usize = 4096;

fn spans_pages(r: &Range) -> bool {
    r.len != 0 && (r.addr / PAGE) != ((r.addr + r.len - 1) / PAGE)
}

fn writes(op: &CpuOp) -> bool {
    !matches!(
        OpType::from_raw(op.op),
        Some(OpType::CompareEq | OpType::CompareNe | OpType::Mb) | None
    )
}

/// The ranges to probe before running (see the module documentation), in
/// the order the kernel checked them.
pub fn probe_plan(
    ops: &[CpuOp],
    mut each: impl FnMut(&Range) -> Result<(), Errno>,
) -> Result<(), Errno> {
    let first_write = ops.iter().position(writes);
    for (i, op) in ops.iter().enumerate() {
        let (rs, n) = ranges(op);
        for r in rs.iter().take(n).flatten() {
            let probe = match first_write {
                Some(w) if i > w => true,
                Some(w) if i == w => spans_pages(r),
                _ => false,
            };
            if probe {
                each(r)?;
            }
        }
    }
    Ok(())
}

static KERNEL_COPY: AtomicU8 = AtomicU8::new(0);

/// Whether the kernel copies work for this process (a sandbox may refuse
/// `process_vm_readv` / `process_vm_writev`): `Ok`, or the errno the
/// kernel (or its filter) gave, which `cpu_opv` then returns instead of
/// touching memory it cannot check. Probed once on a word of the stack.
pub fn kernel_copy_available() -> Result<(), Errno> {
    match KERNEL_COPY.load(Ordering::Relaxed) {
        1 => return Ok(()),
        2 => return Err(Errno(libc::ENOSYS)),
        _ => {}
    }
    let a = 0u64;
    let mut b = 1u64;
    let pa = &a as *const u64 as usize;
    let pb = &mut b as *mut u64 as usize;
    let r = sys::copy_checked(pb, pa, 8, false).and_then(|_| sys::copy_checked(pb, pa, 8, true));
    match r {
        Ok(_) => {
            KERNEL_COPY.store(1, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => {
            // Remember only the refusal; report the refusal's errno now,
            // ENOSYS later.
            KERNEL_COPY.store(2, Ordering::Relaxed);
            Err(e)
        }
    }
}

/// Reads `dst.len()` bytes at caller address `src`.
fn read(dst: &mut [u8], src: usize) -> bool {
    dst.is_empty()
        || sys::copy_checked(dst.as_mut_ptr() as usize, src, dst.len(), false) == Ok(dst.len())
}

/// Writes `src` at caller address `dst`.
fn write(dst: usize, src: &[u8]) -> bool {
    src.is_empty()
        || sys::copy_checked(dst, src.as_ptr() as usize, src.len(), true) == Ok(src.len())
}

const CHUNK: usize = 512;

fn compare(a: usize, b: usize, len: usize) -> Option<bool> {
    let mut x = [0u8; CHUNK];
    let mut y = [0u8; CHUNK];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(CHUNK);
        if !read(&mut x[..n], a + off) || !read(&mut y[..n], b + off) {
            return None;
        }
        if x[..n] != y[..n] {
            return Some(false);
        }
        off += n;
    }
    Some(true)
}

fn memmove(dst: usize, src: usize, len: usize) -> bool {
    if len == 0 || dst == src {
        return true;
    }
    let overlap = dst < src.wrapping_add(len) && src < dst.wrapping_add(len);
    if !overlap {
        // One call: the kernel reads `src` with copy_from_user and writes
        // the pinned pages of `dst`.
        return sys::copy_checked(dst, src, len, true) == Ok(len);
    }
    let mut buf = [0u8; CHUNK];
    // Overlapping: through a bounce buffer, in the direction that reads
    // every byte before it is overwritten.
    let chunks = len.div_ceil(CHUNK);
    for k in 0..chunks {
        let idx = if dst > src { chunks - 1 - k } else { k };
        let off = idx * CHUNK;
        let n = (len - off).min(CHUNK);
        if !read(&mut buf[..n], src + off) || !write(dst + off, &buf[..n]) {
            return false;
        }
    }
    true
}

fn rmw(p: usize, len: usize, f: impl Fn(u64) -> u64) -> bool {
    let mut b = [0u8; 8];
    if !read(&mut b[..len], p) {
        return false;
    }
    let v = match len {
        1 => u64::from(b[0]),
        2 => u64::from(u16::from_ne_bytes([b[0], b[1]])),
        4 => u64::from(u32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
        _ => u64::from_ne_bytes(b),
    };
    let r = f(v);
    let out = r.to_ne_bytes();
    let bytes: &[u8] = match len {
        1 => &[r as u8],
        2 => &(r as u16).to_ne_bytes()[..],
        4 => &(r as u32).to_ne_bytes()[..],
        _ => &out[..],
    };
    let mut tmp = [0u8; 8];
    tmp[..len].copy_from_slice(&bytes[..len]);
    write(p, &tmp[..len])
}

/// Runs a validated vector through kernel copies. `Ok(0)` done, `Ok(n)`
/// compare `n` (1-based) failed, `Err(Stop::Fault(i))` operation `i` met
/// an inaccessible address (operations before it ran).
pub fn execute(ops: &[CpuOp]) -> Result<usize, Stop> {
    for (i, op) in ops.iter().enumerate() {
        let len = op.len as usize;
        let p = op.addr0();
        let done = match OpType::from_raw(op.op) {
            Some(OpType::CompareEq) => compare(op.addr0(), op.addr1(), len),
            Some(OpType::CompareNe) => compare(op.addr0(), op.addr1(), len).map(|eq| !eq),
            Some(OpType::Memcpy) => memmove(op.addr0(), op.addr1(), len).then_some(true),
            Some(OpType::Add) => rmw(p, len, |x| x.wrapping_add(op.count() as u64)).then_some(true),
            Some(OpType::Or) => rmw(p, len, |x| x | op.mask()).then_some(true),
            Some(OpType::And) => rmw(p, len, |x| x & op.mask()).then_some(true),
            Some(OpType::Xor) => rmw(p, len, |x| x ^ op.mask()).then_some(true),
            Some(OpType::Lshift) => rmw(p, len, |x| x << op.bits()).then_some(true),
            Some(OpType::Rshift) => rmw(p, len, |x| x >> op.bits()).then_some(true),
            Some(OpType::Mb) => {
                fence(Ordering::SeqCst);
                Some(true)
            }
            None => unreachable!("validated vector"),
        };
        match done {
            Some(true) => {}
            Some(false) => return Ok(i + 1),
            None => return Err(Stop::Fault(i)),
        }
    }
    Ok(0)
}

/// The errno for a fault at operation `i`: the first of its ranges that
/// is inaccessible now decides (EAGAIN when it expects a fault); EFAULT
/// when none is any more (remapped meanwhile).
pub fn fault_errno(op: &CpuOp) -> Errno {
    let (rs, n) = ranges(op);
    for r in rs.iter().take(n).flatten() {
        if let Err(e @ Errno(libc::EFAULT | libc::EAGAIN)) = access::check(r) {
            return e;
        }
    }
    Errno(libc::EFAULT)
}
