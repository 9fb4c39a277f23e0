//! The cpu-op API (libcpu-op, v12 names and later additions), always
//! exported out of line.
//!
//! Return values: 0 done; a positive value: the 1-based index of the
//! compare that failed (nothing after it ran); -1 with errno: nothing ran
//! (EINVAL: invalid argument or CPU, or a CPU that cannot be fenced;
//! EFAULT / EAGAIN: an address of a `cpu_opv()` vector cannot be accessed;
//! another errno: a sandbox refuses the kernel copies `cpu_opv()` uses).
//! No signal handler of the calling thread runs while a cpu-op owns a
//! CPU (see `cpu_op::engine`), so a cpu-op from a handler never meets its
//! own thread's hold.
//!
//! `cpu_opv()` checks every address it is given. The named helpers take
//! their pointers as valid by contract, like the rseq operations, so that
//! they stay fast. The `_mode` variants take an `enum rseq_percpu_mode`
//! first: with `RSEQ_PERCPU_MM_CID`, `cpu` is an mm_cid.

use core::ffi::{c_int, c_void};

use libc::{intptr_t, off_t, size_t};

use super::{fail, guard, RseqPercpuMode};
use crate::cpu_op::{self, CpuOp, CPU_OP_VEC_LEN_MAX};
use crate::ops::PercpuMode;
use crate::stats::{self, CpuOpCounters};
use crate::sys::Errno;

/// The C return value of a cpu-op.
#[inline]
fn code(r: cpu_op::Result) -> c_int {
    match r {
        Ok(n) => n,
        Err(Errno(e)) => fail(e),
    }
}

/// Validates a C `enum rseq_percpu_mode`, then runs `f`.
#[inline]
fn with_mode(mode: RseqPercpuMode, f: impl FnOnce(PercpuMode) -> cpu_op::Result) -> c_int {
    guard(-1, || match PercpuMode::from_raw(mode.0) {
        Some(m) => code(f(m)),
        None => fail(libc::EINVAL),
    })
}

const CPU_ID: RseqPercpuMode = RseqPercpuMode(PercpuMode::CpuId as u32);

/// Runs a vector of `cpuopcnt` operations on `cpu`, atomically with
/// respect to every critical section of this library on that CPU and
/// every other vector for it. `flags`: 0, or `CPU_OP_VEC_FLAG_MM_CID`
/// (`cpu` is then an mm_cid). Everything is validated and every address
/// checked before anything runs; a bad address gives EFAULT (EAGAIN where
/// its `expect_fault` flag is set), never a signal.
///
/// # Safety
/// `cpuopv` points to `cpuopcnt` operations (it is checked, so a bad
/// pointer gives EFAULT).
#[no_mangle]
pub unsafe extern "C-unwind" fn cpu_opv(
    cpuopv: *mut CpuOp,
    cpuopcnt: c_int,
    cpu: c_int,
    flags: c_int,
) -> c_int {
    guard(-1, || {
        if cpuopcnt < 0 || cpuopcnt as usize > CPU_OP_VEC_LEN_MAX {
            return fail(libc::EINVAL);
        }
        // Works on a copy (the caller may change its vector meanwhile);
        // a bad vector pointer gives EFAULT.
        // SAFETY: the C contract of cpu_opv() is the contract of
        // opv_from_c(): the caller vouches for the addresses of its
        // vector, whose pointer is checked.
        code(
            unsafe { cpu_op::opv_from_c(cpuopv, cpuopcnt as usize, cpu, flags) }
                .map(|i| i as c_int),
        )
    })
}

/// 1 when cpu-ops work in this process: no fence is needed, or the
/// kernel offers `membarrier(PRIVATE_EXPEDITED_RSEQ)`. 0 when only CPUs
/// the caller can migrate onto can be targeted (each call then says).
#[no_mangle]
pub extern "C-unwind" fn cpu_op_available() -> c_int {
    guard(0, || cpu_op::fence::available() as c_int)
}

/// The CPU the caller runs on (`sched_getcpu()`); aborts the process if
/// the kernel cannot tell.
#[no_mangle]
pub extern "C-unwind" fn cpu_op_get_current_cpu() -> c_int {
    guard(-1, || {
        // SAFETY: sched_getcpu has no preconditions.
        let cpu = unsafe { libc::sched_getcpu() };
        if cpu < 0 {
            std::process::abort();
        }
        cpu
    })
}

/// Waits until no critical section that started on `cpu` before the call
/// can still commit, without changing anything. 0, or -1 with errno.
#[no_mangle]
pub extern "C-unwind" fn cpu_op_fence(cpu: c_int) -> c_int {
    cpu_op_fence_mode(CPU_ID, cpu)
}

/// `cpu_op_fence` for a percpu mode.
#[no_mangle]
pub extern "C-unwind" fn cpu_op_fence_mode(mode: RseqPercpuMode, cpu: c_int) -> c_int {
    with_mode(mode, |m| cpu_op::fence_target(cpu, m).map(|()| 0))
}

/// Copies the counters into `*counters` (at most `size` bytes, so that
/// callers built against an older, shorter struct keep working). 0, or -1
/// with errno EINVAL for a NULL pointer.
///
/// # Safety
/// `counters` is writable for `size` bytes.
#[no_mangle]
pub unsafe extern "C-unwind" fn cpu_op_get_counters(
    counters: *mut CpuOpCounters,
    size: size_t,
) -> c_int {
    guard(-1, || {
        if counters.is_null() {
            return fail(libc::EINVAL);
        }
        let snapshot = stats::snapshot();
        let n = size.min(core::mem::size_of::<CpuOpCounters>());
        // SAFETY: the caller gives `size` writable bytes; n <= size.
        unsafe {
            core::ptr::copy_nonoverlapping(
                (&snapshot as *const CpuOpCounters).cast::<u8>(),
                counters.cast::<u8>(),
                n,
            )
        };
        0
    })
}

/// Records that a `percpu_*` operation fell back from its rseq attempt to
/// a cpu-op (called by the inline wrappers of `<rseq/percpu-op.h>`):
/// counts it and fires the `rseq:fallback` probe.
#[no_mangle]
pub extern "C-unwind" fn percpu_op_note_fallback(cpu: c_int) {
    guard((), || stats::record_fallback(cpu))
}

/// 1 when the `percpu_*` operations always complete for every valid CPU
/// (through rseq, or through a cpu-op when rseq cannot): exactly when
/// cpu-ops can fence every CPU ([`cpu_op_available`]). 0 when the
/// fallback can fail with EINVAL for a CPU the caller cannot migrate onto.
#[no_mangle]
pub extern "C-unwind" fn percpu_op_available() -> c_int {
    guard(0, || cpu_op::fence::available() as c_int)
}

/// The CPU to pass to a `percpu_*` operation: `rseq_current_cpu()`.
#[no_mangle]
pub extern "C-unwind" fn percpu_current_cpu() -> c_int {
    guard(-1, crate::cpu::current_cpu)
}

/// `old <- *v; if (*v == *expect) *v <- *n` on `len` bytes. 0: swapped;
/// 2: the compare failed (`old` still filled).
///
/// # Safety
/// All four pointers are valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C-unwind" fn cpu_op_cmpxchg(
    v: *mut c_void,
    expect: *mut c_void,
    old: *mut c_void,
    n: *mut c_void,
    len: size_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { cpu_op_cmpxchg_mode(CPU_ID, v, expect, old, n, len, cpu) }
}

/// `cpu_op_cmpxchg` for a percpu mode.
///
/// # Safety
/// As `cpu_op_cmpxchg`.
#[no_mangle]
pub unsafe extern "C-unwind" fn cpu_op_cmpxchg_mode(
    mode: RseqPercpuMode,
    v: *mut c_void,
    expect: *mut c_void,
    old: *mut c_void,
    n: *mut c_void,
    len: size_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    with_mode(mode, |m| unsafe {
        cpu_op::cmpxchg(v.cast(), expect.cast(), old.cast(), n.cast(), len, cpu, m)
    })
}

/// `*v += count` on a `len`-byte integer (1, 2, 4 or 8; EINVAL otherwise).
///
/// # Safety
/// `v` is valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C-unwind" fn cpu_op_add(
    v: *mut c_void,
    count: i64,
    len: size_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { cpu_op_add_mode(CPU_ID, v, count, len, cpu) }
}

/// `cpu_op_add` for a percpu mode.
///
/// # Safety
/// As `cpu_op_add`.
#[no_mangle]
pub unsafe extern "C-unwind" fn cpu_op_add_mode(
    mode: RseqPercpuMode,
    v: *mut c_void,
    count: i64,
    len: size_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    with_mode(mode, |m| unsafe {
        cpu_op::add_own_cpu_first(v.cast(), count, len, cpu, m)
    })
}

/// `cpu_op_add` after a full barrier: earlier stores are visible before
/// the addition.
///
/// # Safety
/// As `cpu_op_add`.
#[no_mangle]
pub unsafe extern "C-unwind" fn cpu_op_add_release(
    v: *mut c_void,
    count: i64,
    len: size_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { cpu_op_add_release_mode(CPU_ID, v, count, len, cpu) }
}

/// `cpu_op_add_release` for a percpu mode.
///
/// # Safety
/// As `cpu_op_add`.
#[no_mangle]
pub unsafe extern "C-unwind" fn cpu_op_add_release_mode(
    mode: RseqPercpuMode,
    v: *mut c_void,
    count: i64,
    len: size_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    with_mode(mode, |m| unsafe {
        cpu_op::add(v.cast(), count, len, true, cpu, m)
    })
}

/// `*v += count`.
///
/// # Safety
/// `v` is valid.
#[no_mangle]
pub unsafe extern "C-unwind" fn cpu_op_addv(v: *mut intptr_t, count: i64, cpu: c_int) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { cpu_op_addv_mode(CPU_ID, v, count, cpu) }
}

/// `cpu_op_addv` for a percpu mode.
///
/// # Safety
/// As `cpu_op_addv`.
#[no_mangle]
pub unsafe extern "C-unwind" fn cpu_op_addv_mode(
    mode: RseqPercpuMode,
    v: *mut intptr_t,
    count: i64,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    with_mode(mode, |m| unsafe {
        cpu_op::addv_own_cpu_first(v, count, cpu, m)
    })
}

/// `if (*v != expect) return 1; *v = newv;`
///
/// # Safety
/// `v` is valid.
#[no_mangle]
pub unsafe extern "C-unwind" fn cpu_op_cmpeqv_storev(
    v: *mut intptr_t,
    expect: intptr_t,
    newv: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { cpu_op_cmpeqv_storev_mode(CPU_ID, v, expect, newv, cpu) }
}

/// `cpu_op_cmpeqv_storev` for a percpu mode.
///
/// # Safety
/// As `cpu_op_cmpeqv_storev`.
#[no_mangle]
pub unsafe extern "C-unwind" fn cpu_op_cmpeqv_storev_mode(
    mode: RseqPercpuMode,
    v: *mut intptr_t,
    expect: intptr_t,
    newv: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    with_mode(mode, |m| unsafe {
        cpu_op::cmpeqv_storev_own_cpu_first(v, expect, newv, cpu, m)
    })
}

/// List pop: `r = *v; if (r == expectnot) return 1; *load = r;
/// *v = *(intptr_t *)(r + voffp);` The head and its next pointer are read
/// while owning the CPU, so a node popped and freed concurrently is never
/// read.
///
/// # Safety
/// `v`, `load` and every node on the list are valid.
#[no_mangle]
pub unsafe extern "C-unwind" fn cpu_op_cmpnev_storeoffp_load(
    v: *mut intptr_t,
    expectnot: intptr_t,
    voffp: off_t,
    load: *mut intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { cpu_op_cmpnev_storeoffp_load_mode(CPU_ID, v, expectnot, voffp, load, cpu) }
}

/// `cpu_op_cmpnev_storeoffp_load` for a percpu mode.
///
/// # Safety
/// As `cpu_op_cmpnev_storeoffp_load`.
#[no_mangle]
pub unsafe extern "C-unwind" fn cpu_op_cmpnev_storeoffp_load_mode(
    mode: RseqPercpuMode,
    v: *mut intptr_t,
    expectnot: intptr_t,
    voffp: off_t,
    load: *mut intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    with_mode(mode, |m| unsafe {
        cpu_op::cmpnev_storeoffp_load_own_cpu_first(v, expectnot, voffp as isize, load, cpu, m)
    })
}

/// `if (*v != expect) return 1; *v2 = newv2; *v = newv;`
///
/// # Safety
/// `v` and `v2` are valid.
#[no_mangle]
pub unsafe extern "C-unwind" fn cpu_op_cmpeqv_storev_storev(
    v: *mut intptr_t,
    expect: intptr_t,
    v2: *mut intptr_t,
    newv2: intptr_t,
    newv: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { cpu_op_cmpeqv_storev_storev_mode(CPU_ID, v, expect, v2, newv2, newv, cpu) }
}

/// `cpu_op_cmpeqv_storev_storev` for a percpu mode.
///
/// # Safety
/// As `cpu_op_cmpeqv_storev_storev`.
#[no_mangle]
pub unsafe extern "C-unwind" fn cpu_op_cmpeqv_storev_storev_mode(
    mode: RseqPercpuMode,
    v: *mut intptr_t,
    expect: intptr_t,
    v2: *mut intptr_t,
    newv2: intptr_t,
    newv: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    with_mode(mode, |m| unsafe {
        cpu_op::cmpeqv_storev_storev(v, expect, v2, newv2, newv, false, cpu, m)
    })
}

/// `cpu_op_cmpeqv_storev_storev` with a full barrier between the two
/// stores (v12 name).
///
/// # Safety
/// As `cpu_op_cmpeqv_storev_storev`.
#[no_mangle]
pub unsafe extern "C-unwind" fn cpu_op_cmpeqv_storev_mb_storev(
    v: *mut intptr_t,
    expect: intptr_t,
    v2: *mut intptr_t,
    newv2: intptr_t,
    newv: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { cpu_op_cmpeqv_storev_storev_release_mode(CPU_ID, v, expect, v2, newv2, newv, cpu) }
}

/// `cpu_op_cmpeqv_storev_mb_storev` (later name).
///
/// # Safety
/// As `cpu_op_cmpeqv_storev_storev`.
#[no_mangle]
pub unsafe extern "C-unwind" fn cpu_op_cmpeqv_storev_storev_release(
    v: *mut intptr_t,
    expect: intptr_t,
    v2: *mut intptr_t,
    newv2: intptr_t,
    newv: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { cpu_op_cmpeqv_storev_storev_release_mode(CPU_ID, v, expect, v2, newv2, newv, cpu) }
}

/// `cpu_op_cmpeqv_storev_storev_release` for a percpu mode.
///
/// # Safety
/// As `cpu_op_cmpeqv_storev_storev`.
#[no_mangle]
pub unsafe extern "C-unwind" fn cpu_op_cmpeqv_storev_storev_release_mode(
    mode: RseqPercpuMode,
    v: *mut intptr_t,
    expect: intptr_t,
    v2: *mut intptr_t,
    newv2: intptr_t,
    newv: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    with_mode(mode, |m| unsafe {
        cpu_op::cmpeqv_storev_storev(v, expect, v2, newv2, newv, true, cpu, m)
    })
}

/// `if (*v != expect) return 1; if (*v2 != expect2) return 2; *v = newv;`
///
/// # Safety
/// `v` and `v2` are valid.
#[no_mangle]
pub unsafe extern "C-unwind" fn cpu_op_cmpeqv_cmpeqv_storev(
    v: *mut intptr_t,
    expect: intptr_t,
    v2: *mut intptr_t,
    expect2: intptr_t,
    newv: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { cpu_op_cmpeqv_cmpeqv_storev_mode(CPU_ID, v, expect, v2, expect2, newv, cpu) }
}

/// `cpu_op_cmpeqv_cmpeqv_storev` for a percpu mode.
///
/// # Safety
/// As `cpu_op_cmpeqv_cmpeqv_storev`.
#[no_mangle]
pub unsafe extern "C-unwind" fn cpu_op_cmpeqv_cmpeqv_storev_mode(
    mode: RseqPercpuMode,
    v: *mut intptr_t,
    expect: intptr_t,
    v2: *mut intptr_t,
    expect2: intptr_t,
    newv: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    with_mode(mode, |m| unsafe {
        cpu_op::cmpeqv_cmpeqv_storev_own_cpu_first(v, expect, v2, expect2, newv, cpu, m)
    })
}

/// `if (*v != expect) return 1; memcpy(dst, src, len); *v = newv;` with
/// `len` at most 4096 (EINVAL otherwise).
///
/// # Safety
/// `v` is valid; `dst` and `src` are valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C-unwind" fn cpu_op_cmpeqv_memcpy_storev(
    v: *mut intptr_t,
    expect: intptr_t,
    dst: *mut c_void,
    src: *mut c_void,
    len: size_t,
    newv: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { cpu_op_cmpeqv_memcpy_storev_mode(CPU_ID, v, expect, dst, src, len, newv, cpu) }
}

/// `cpu_op_cmpeqv_memcpy_storev` for a percpu mode.
///
/// # Safety
/// As `cpu_op_cmpeqv_memcpy_storev`.
#[no_mangle]
pub unsafe extern "C-unwind" fn cpu_op_cmpeqv_memcpy_storev_mode(
    mode: RseqPercpuMode,
    v: *mut intptr_t,
    expect: intptr_t,
    dst: *mut c_void,
    src: *mut c_void,
    len: size_t,
    newv: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    with_mode(mode, |m| unsafe {
        cpu_op::cmpeqv_memcpy_storev(
            v,
            expect,
            dst.cast(),
            src.cast_const().cast(),
            len,
            newv,
            false,
            cpu,
            m,
        )
    })
}

/// `cpu_op_cmpeqv_memcpy_storev` with a full barrier before the final
/// store (v12 name).
///
/// # Safety
/// As `cpu_op_cmpeqv_memcpy_storev`.
#[no_mangle]
pub unsafe extern "C-unwind" fn cpu_op_cmpeqv_memcpy_mb_storev(
    v: *mut intptr_t,
    expect: intptr_t,
    dst: *mut c_void,
    src: *mut c_void,
    len: size_t,
    newv: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { cpu_op_cmpeqv_memcpy_storev_release_mode(CPU_ID, v, expect, dst, src, len, newv, cpu) }
}

/// `cpu_op_cmpeqv_memcpy_mb_storev` (later name).
///
/// # Safety
/// As `cpu_op_cmpeqv_memcpy_storev`.
#[no_mangle]
pub unsafe extern "C-unwind" fn cpu_op_cmpeqv_memcpy_storev_release(
    v: *mut intptr_t,
    expect: intptr_t,
    dst: *mut c_void,
    src: *mut c_void,
    len: size_t,
    newv: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { cpu_op_cmpeqv_memcpy_storev_release_mode(CPU_ID, v, expect, dst, src, len, newv, cpu) }
}

/// `cpu_op_cmpeqv_memcpy_storev_release` for a percpu mode.
///
/// # Safety
/// As `cpu_op_cmpeqv_memcpy_storev`.
#[no_mangle]
pub unsafe extern "C-unwind" fn cpu_op_cmpeqv_memcpy_storev_release_mode(
    mode: RseqPercpuMode,
    v: *mut intptr_t,
    expect: intptr_t,
    dst: *mut c_void,
    src: *mut c_void,
    len: size_t,
    newv: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    with_mode(mode, |m| unsafe {
        cpu_op::cmpeqv_memcpy_storev(
            v,
            expect,
            dst.cast(),
            src.cast_const().cast(),
            len,
            newv,
            true,
            cpu,
            m,
        )
    })
}
