//! Restartable critical sections: the seven operation families.
//!
//! Each function runs one critical section on per-CPU data: it commits
//! (its last store) only if the calling thread runs on `cpu` (or holds
//! mm_cid `cpu` in [`PercpuMode::MmCid`]) from start to commit and no
//! cpu-op owns that CPU; a preemption, migration or signal in between
//! makes the kernel abort it. Nothing is committed on an abort or a
//! compare failure; the caller usually retries with a fresh CPU number.
//!
//! The names and semantics are librseq's (`rseq_load_cbne_store__ptr` is
//! [`load_cbne_store`], and so on); the C API exports them under both
//! librseq's and the 2017 names.
//!
//! # Safety contract (all operations)
//!
//! Every pointer argument must be valid for the accesses the operation
//! describes (aligned `isize` loads and stores; `len` bytes for memcpy)
//! for the whole call, and the memory must only be modified by critical
//! sections and cpu-ops on the same CPU (that is what makes it per-CPU
//! data). `cpu` is normally [`crate::cpu::cpu_start`]; any value is safe:
//! a wrong one makes the operation abort.

use crate::arch::{self, seq};
use crate::owner;
use crate::registration;

/// Memory order of the commit store (`enum rseq_mo`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Mo {
    /// No ordering beyond the section itself.
    Relaxed = 0,
    /// Not accepted by any operation (librseq compatibility).
    Consume = 1,
    /// Not accepted by any operation (librseq compatibility).
    Acquire = 2,
    /// The commit store is a release store: the speculative stores and
    /// copies before it are visible first (store_store and memcpy only).
    Release = 3,
    /// Not accepted by any operation (librseq compatibility).
    AcqRel = 4,
    /// Not accepted by any operation (librseq compatibility).
    SeqCst = 5,
}

impl Mo {
    /// The order of a C `enum rseq_mo` value.
    pub fn from_raw(v: u32) -> Option<Mo> {
        Some(match v {
            0 => Mo::Relaxed,
            1 => Mo::Consume,
            2 => Mo::Acquire,
            3 => Mo::Release,
            4 => Mo::AcqRel,
            5 => Mo::SeqCst,
            _ => return None,
        })
    }
}

/// What indexes the per-CPU data (`enum rseq_percpu_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum PercpuMode {
    /// The CPU number (`cpu_id`).
    CpuId = 0,
    /// The memory-map concurrency id (`mm_cid`, Linux 6.3+): dense ids
    /// below the number of possible CPUs, one per running thread.
    MmCid = 1,
}

impl PercpuMode {
    /// The mode of a C `enum rseq_percpu_mode` value.
    pub fn from_raw(v: u32) -> Option<PercpuMode> {
        match v {
            0 => Some(PercpuMode::CpuId),
            1 => Some(PercpuMode::MmCid),
            _ => None,
        }
    }
}

/// Why an operation did not commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// A compare failed (C return value 1); nothing was stored.
    Compare,
    /// The section aborted (C return value -1): the thread was not on
    /// `cpu`, was preempted, migrated or signalled, is not registered, or
    /// a cpu-op owned the CPU. Retry, or fall back to a cpu-op.
    Abort,
    /// The memory order is not one this family accepts (C return value -1
    /// with errno EINVAL).
    InvalidOrder,
}

impl Error {
    /// The librseq return value.
    #[inline]
    pub fn code(self) -> i32 {
        match self {
            Error::Compare => 1,
            Error::Abort | Error::InvalidOrder => -1,
        }
    }
}

/// Result of an operation.
pub type Result<T = ()> = core::result::Result<T, Error>;

/// Converts a sequence's return value into a [`Result`], taking the slow
/// path on an abort.
#[inline(always)]
fn finish(code: i32) -> Result {
    match code {
        0 => Ok(()),
        c if c > 0 => Err(Error::Compare),
        _ => {
            on_abort();
            Err(Error::Abort)
        }
    }
}

/// The slow path of every abort: counts it, fires the `rseq:abort` probe,
/// registers the thread if automatic registration applies, and lets a
/// cpu-op holding the caller's CPU finish first
/// (`owner::wait_for_holder_of_current`).
///
/// `extern "C"` makes it a call that cannot unwind (a panic inside aborts
/// the process), so that the fast paths calling it need no landing pad
/// (and the exported wrappers no stack frame beyond alignment).
#[cold]
#[inline(never)]
pub extern "C" fn on_abort() {
    crate::stats::record_abort();
    crate::registration::on_slow_path();
    crate::owner::wait_for_holder_of_current();
}

/// Calls a generated sequence with the common operands, then the family's.
macro_rules! call {
    ($f:path, $area:expr, $word:expr, $cpu:expr, ($($arg:expr),*)) => {
        $f($area, $word, $cpu, $($arg),*)
    };
}

/// Runs one section: for each accepted order, the generated variants for
/// (CPU_ID, MM_CID) mode; then the family's arguments. Written without
/// any panicking path, so that the exported wrappers need no unwinding
/// landing pad.
macro_rules! section {
    ($mo:expr, $mode:expr, $cpu:expr,
     [$($order:ident => ($cpu_fn:ident, $mm_fn:ident)),+],
     $args:tt) => {{
        let mo: Mo = $mo;
        let mode: PercpuMode = $mode;
        let cpu: i32 = $cpu;
        let offset = registration::offset();
        match mo {
            $(Mo::$order => {})+
            _ => return Err(Error::InvalidOrder),
        }
        if !crate::idle::ALWAYS_AN_AREA && offset == 0 {
            // Before initialisation or after the destructor there is no
            // area to point the kernel at: report an abort. (On x86_64
            // rseq_offset then designates the idle area, on which the
            // section aborts by itself: no test.)
            return finish(-1);
        }
        let area = arch::area_operand(offset);
        let mm_cid = mode == PercpuMode::MmCid;
        let word = owner::word_address(cpu, mm_cid);
        // SAFETY: the caller upholds this module's contract; the area (or
        // the idle area) and the ownership table (or the boot table,
        // crate::owner) always exist when the section runs.
        let code = unsafe {
            match mo {
                $(Mo::$order => if mm_cid {
                    call!(seq::$mm_fn, area, word, cpu, $args)
                } else {
                    call!(seq::$cpu_fn, area, word, cpu, $args)
                },)+
                _ => -1,
            }
        };
        finish(code)
    }};
}

/// `if *v != expect -> Compare; *v = newv` (librseq
/// `rseq_load_cbne_store__ptr`, 2017 `rseq_cmpeqv_storev`).
///
/// # Safety
/// See the [module contract](self).
#[inline]
pub unsafe fn load_cbne_store(
    mo: Mo,
    mode: PercpuMode,
    v: *mut isize,
    expect: isize,
    newv: isize,
    cpu: i32,
) -> Result {
    section!(mo, mode, cpu,
        [Relaxed => (load_cbne_store_relaxed_cpu_id, load_cbne_store_relaxed_mm_cid)],
        (v, expect, newv))
}

/// List pop: `r = *v; if r == expectnot -> Compare; *load = r;
/// *v = *(r + voffp)` (librseq `rseq_load_cbeq_store_add_load_store__ptr`,
/// 2017 `rseq_cmpnev_storeoffp_load`).
///
/// # Safety
/// See the [module contract](self); in addition `*v`, unless it equals
/// `expectnot`, must point to memory whose word at `voffp` is readable.
#[inline]
pub unsafe fn load_cbeq_store_add_load_store(
    mo: Mo,
    mode: PercpuMode,
    v: *mut isize,
    expectnot: isize,
    voffp: isize,
    load: *mut isize,
    cpu: i32,
) -> Result {
    section!(mo, mode, cpu,
        [Relaxed => (load_cbeq_store_add_load_store_relaxed_cpu_id, load_cbeq_store_add_load_store_relaxed_mm_cid)],
        (v, expectnot, voffp, load))
}

/// `*v += count` (librseq `rseq_load_add_store__ptr`, 2017 `rseq_addv`).
///
/// # Safety
/// See the [module contract](self).
#[inline]
pub unsafe fn load_add_store(
    mo: Mo,
    mode: PercpuMode,
    v: *mut isize,
    count: isize,
    cpu: i32,
) -> Result {
    section!(mo, mode, cpu,
        [Relaxed => (load_add_store_relaxed_cpu_id, load_add_store_relaxed_mm_cid)],
        (v, count))
}

/// `p = *ptr + off; q = *(isize **)p; *q += inc` (librseq
/// `rseq_load_add_load_load_add_store__ptr`, 2018 `rseq_offset_deref_addv`).
///
/// # Safety
/// See the [module contract](self); both indirections must be valid.
#[inline]
pub unsafe fn load_add_load_load_add_store(
    mo: Mo,
    mode: PercpuMode,
    ptr: *mut isize,
    off: isize,
    inc: isize,
    cpu: i32,
) -> Result {
    section!(mo, mode, cpu,
        [Relaxed => (load_add_load_load_add_store_relaxed_cpu_id, load_add_load_load_add_store_relaxed_mm_cid)],
        (ptr, off, inc))
}

/// `if *v != expect -> Compare; *v2 = newv2; *v = newv` (librseq
/// `rseq_load_cbne_store_store__ptr`, 2017
/// `rseq_cmpeqv_trystorev_storev[_release]`). The store to `v2` is
/// speculative: it may happen even when the section aborts.
///
/// # Safety
/// See the [module contract](self).
#[inline]
pub unsafe fn load_cbne_store_store(
    mo: Mo,
    mode: PercpuMode,
    v: *mut isize,
    expect: isize,
    v2: *mut isize,
    newv2: isize,
    newv: isize,
    cpu: i32,
) -> Result {
    section!(mo, mode, cpu,
        [Relaxed => (load_cbne_store_store_relaxed_cpu_id, load_cbne_store_store_relaxed_mm_cid),
         Release => (load_cbne_store_store_release_cpu_id, load_cbne_store_store_release_mm_cid)],
        (v, expect, v2, newv2, newv))
}

/// `if *v != expect || *v2 != expect2 -> Compare; *v = newv` (librseq
/// `rseq_load_cbne_load_cbne_store__ptr`, 2017 `rseq_cmpeqv_cmpeqv_storev`).
///
/// # Safety
/// See the [module contract](self).
#[inline]
pub unsafe fn load_cbne_load_cbne_store(
    mo: Mo,
    mode: PercpuMode,
    v: *mut isize,
    expect: isize,
    v2: *mut isize,
    expect2: isize,
    newv: isize,
    cpu: i32,
) -> Result {
    section!(mo, mode, cpu,
        [Relaxed => (load_cbne_load_cbne_store_relaxed_cpu_id, load_cbne_load_cbne_store_relaxed_mm_cid)],
        (v, expect, v2, expect2, newv))
}

/// `if *v != expect -> Compare; copy len bytes src -> dst; *v = newv`
/// (librseq `rseq_load_cbne_memcpy_store__ptr`, 2017
/// `rseq_cmpeqv_trymemcpy_storev[_release]`). The copy is speculative.
///
/// # Safety
/// See the [module contract](self); `dst` and `src` must be valid for
/// `len` bytes and must not overlap.
#[inline]
pub unsafe fn load_cbne_memcpy_store(
    mo: Mo,
    mode: PercpuMode,
    v: *mut isize,
    expect: isize,
    dst: *mut u8,
    src: *const u8,
    len: usize,
    newv: isize,
    cpu: i32,
) -> Result {
    section!(mo, mode, cpu,
        [Relaxed => (load_cbne_memcpy_store_relaxed_cpu_id, load_cbne_memcpy_store_relaxed_mm_cid),
         Release => (load_cbne_memcpy_store_release_cpu_id, load_cbne_memcpy_store_release_mm_cid)],
        (v, expect, dst, src, len, newv))
}
