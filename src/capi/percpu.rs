//! The `percpu_*` operations of the 2017 API: one rseq attempt on `cpu`;
//! a compare failure is returned as is; an abort falls back to the cpu-op
//! equivalent on the same `cpu`, which always completes (under a
//! single-stepping debugger, where rseq is refused, and for another CPU's
//! data). `<rseq/percpu-op.h>` has inline versions; these are for
//! `RSEQ_NO_INLINE` builds and other languages. The `_mode` variants take
//! an `enum rseq_percpu_mode` first (with MM_CID, `cpu` is an mm_cid).

use core::ffi::{c_int, c_void};

use libc::{intptr_t, off_t, size_t};

use super::{fail, guard, RseqPercpuMode};
use crate::cpu_op;
use crate::ops::{self, Error, Mo, PercpuMode};
use crate::stats;
use crate::sys::Errno;

const CPU_ID: RseqPercpuMode = RseqPercpuMode(PercpuMode::CpuId as u32);

/// One rseq attempt, then the cpu-op on abort.
#[inline(always)]
fn attempt(
    mode: RseqPercpuMode,
    cpu: c_int,
    fast: impl FnOnce(PercpuMode) -> ops::Result,
    slow: impl FnOnce(PercpuMode) -> cpu_op::Result,
) -> c_int {
    guard(-1, || {
        let Some(m) = PercpuMode::from_raw(mode.0) else {
            return fail(libc::EINVAL);
        };
        match fast(m) {
            Ok(()) => 0,
            Err(Error::Compare) => 1,
            Err(Error::InvalidOrder) => fail(libc::EINVAL),
            Err(Error::Abort) => {
                stats::record_fallback(cpu);
                match slow(m) {
                    Ok(n) => n,
                    Err(Errno(e)) => fail(e),
                }
            }
        }
    })
}

/// `if (*v != expect) return 1; *v = newv;` on `cpu`.
///
/// # Safety
/// `v` is valid per-CPU data.
#[no_mangle]
pub unsafe extern "C-unwind" fn percpu_cmpeqv_storev(
    v: *mut intptr_t,
    expect: intptr_t,
    newv: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { percpu_cmpeqv_storev_mode(CPU_ID, v, expect, newv, cpu) }
}

/// `percpu_cmpeqv_storev` for a percpu mode.
///
/// # Safety
/// As `percpu_cmpeqv_storev`.
#[no_mangle]
pub unsafe extern "C-unwind" fn percpu_cmpeqv_storev_mode(
    mode: RseqPercpuMode,
    v: *mut intptr_t,
    expect: intptr_t,
    newv: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    attempt(
        mode,
        cpu,
        |m| unsafe { ops::load_cbne_store(Mo::Relaxed, m, v, expect, newv, cpu) },
        |m| unsafe { cpu_op::cmpeqv_storev(v, expect, newv, cpu, m) },
    )
}

/// List pop on `cpu`: 0 popped (`*load` is the node), 1 empty.
///
/// # Safety
/// `v`, `load` and the list's nodes are valid.
#[no_mangle]
pub unsafe extern "C-unwind" fn percpu_cmpnev_storeoffp_load(
    v: *mut intptr_t,
    expectnot: intptr_t,
    voffp: off_t,
    load: *mut intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { percpu_cmpnev_storeoffp_load_mode(CPU_ID, v, expectnot, voffp, load, cpu) }
}

/// `percpu_cmpnev_storeoffp_load` for a percpu mode.
///
/// # Safety
/// As `percpu_cmpnev_storeoffp_load`.
#[no_mangle]
pub unsafe extern "C-unwind" fn percpu_cmpnev_storeoffp_load_mode(
    mode: RseqPercpuMode,
    v: *mut intptr_t,
    expectnot: intptr_t,
    voffp: off_t,
    load: *mut intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    attempt(
        mode,
        cpu,
        |m| unsafe {
            ops::load_cbeq_store_add_load_store(
                Mo::Relaxed,
                m,
                v,
                expectnot,
                voffp as isize,
                load,
                cpu,
            )
        },
        |m| unsafe { cpu_op::cmpnev_storeoffp_load(v, expectnot, voffp as isize, load, cpu, m) },
    )
}

/// `*v += count` on `cpu`.
///
/// # Safety
/// `v` is valid per-CPU data.
#[no_mangle]
pub unsafe extern "C-unwind" fn percpu_addv(
    v: *mut intptr_t,
    count: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { percpu_addv_mode(CPU_ID, v, count, cpu) }
}

/// `percpu_addv` for a percpu mode.
///
/// # Safety
/// As `percpu_addv`.
#[no_mangle]
pub unsafe extern "C-unwind" fn percpu_addv_mode(
    mode: RseqPercpuMode,
    v: *mut intptr_t,
    count: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    attempt(
        mode,
        cpu,
        |m| unsafe { ops::load_add_store(Mo::Relaxed, m, v, count, cpu) },
        |m| unsafe { cpu_op::addv(v, count as i64, cpu, m) },
    )
}

/// `if (*v != expect) return 1; *v2 = newv2; *v = newv;` on `cpu`.
///
/// # Safety
/// `v` and `v2` are valid per-CPU data.
#[no_mangle]
pub unsafe extern "C-unwind" fn percpu_cmpeqv_storev_storev(
    v: *mut intptr_t,
    expect: intptr_t,
    v2: *mut intptr_t,
    newv2: intptr_t,
    newv: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { percpu_cmpeqv_storev_storev_mode(CPU_ID, v, expect, v2, newv2, newv, cpu) }
}

/// `percpu_cmpeqv_storev_storev` for a percpu mode.
///
/// # Safety
/// As `percpu_cmpeqv_storev_storev`.
#[no_mangle]
pub unsafe extern "C-unwind" fn percpu_cmpeqv_storev_storev_mode(
    mode: RseqPercpuMode,
    v: *mut intptr_t,
    expect: intptr_t,
    v2: *mut intptr_t,
    newv2: intptr_t,
    newv: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    attempt(
        mode,
        cpu,
        |m| unsafe { ops::load_cbne_store_store(Mo::Relaxed, m, v, expect, v2, newv2, newv, cpu) },
        |m| unsafe { cpu_op::cmpeqv_storev_storev(v, expect, v2, newv2, newv, false, cpu, m) },
    )
}

/// `percpu_cmpeqv_storev_storev` with release order on the final store.
///
/// # Safety
/// As `percpu_cmpeqv_storev_storev`.
#[no_mangle]
pub unsafe extern "C-unwind" fn percpu_cmpeqv_storev_storev_release(
    v: *mut intptr_t,
    expect: intptr_t,
    v2: *mut intptr_t,
    newv2: intptr_t,
    newv: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { percpu_cmpeqv_storev_storev_release_mode(CPU_ID, v, expect, v2, newv2, newv, cpu) }
}

/// `percpu_cmpeqv_storev_storev_release` for a percpu mode.
///
/// # Safety
/// As `percpu_cmpeqv_storev_storev`.
#[no_mangle]
pub unsafe extern "C-unwind" fn percpu_cmpeqv_storev_storev_release_mode(
    mode: RseqPercpuMode,
    v: *mut intptr_t,
    expect: intptr_t,
    v2: *mut intptr_t,
    newv2: intptr_t,
    newv: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    attempt(
        mode,
        cpu,
        |m| unsafe { ops::load_cbne_store_store(Mo::Release, m, v, expect, v2, newv2, newv, cpu) },
        |m| unsafe { cpu_op::cmpeqv_storev_storev(v, expect, v2, newv2, newv, true, cpu, m) },
    )
}

/// `if (*v != expect || *v2 != expect2) return 1; *v = newv;` on `cpu`
/// (the cpu-op fallback tells which compare failed: 1 or 2).
///
/// # Safety
/// `v` and `v2` are valid per-CPU data.
#[no_mangle]
pub unsafe extern "C-unwind" fn percpu_cmpeqv_cmpeqv_storev(
    v: *mut intptr_t,
    expect: intptr_t,
    v2: *mut intptr_t,
    expect2: intptr_t,
    newv: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { percpu_cmpeqv_cmpeqv_storev_mode(CPU_ID, v, expect, v2, expect2, newv, cpu) }
}

/// `percpu_cmpeqv_cmpeqv_storev` for a percpu mode.
///
/// # Safety
/// As `percpu_cmpeqv_cmpeqv_storev`.
#[no_mangle]
pub unsafe extern "C-unwind" fn percpu_cmpeqv_cmpeqv_storev_mode(
    mode: RseqPercpuMode,
    v: *mut intptr_t,
    expect: intptr_t,
    v2: *mut intptr_t,
    expect2: intptr_t,
    newv: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    attempt(
        mode,
        cpu,
        |m| unsafe {
            ops::load_cbne_load_cbne_store(Mo::Relaxed, m, v, expect, v2, expect2, newv, cpu)
        },
        |m| unsafe { cpu_op::cmpeqv_cmpeqv_storev(v, expect, v2, expect2, newv, cpu, m) },
    )
}

/// `if (*v != expect) return 1; memcpy(dst, src, len); *v = newv;` on
/// `cpu` (`len` at most 4096 for the fallback: EINVAL otherwise).
///
/// # Safety
/// `v` is valid; `dst` and `src` are valid for `len` bytes, disjoint.
#[no_mangle]
pub unsafe extern "C-unwind" fn percpu_cmpeqv_memcpy_storev(
    v: *mut intptr_t,
    expect: intptr_t,
    dst: *mut c_void,
    src: *mut c_void,
    len: size_t,
    newv: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { percpu_cmpeqv_memcpy_storev_mode(CPU_ID, v, expect, dst, src, len, newv, cpu) }
}

/// `percpu_cmpeqv_memcpy_storev` for a percpu mode.
///
/// # Safety
/// As `percpu_cmpeqv_memcpy_storev`.
#[no_mangle]
pub unsafe extern "C-unwind" fn percpu_cmpeqv_memcpy_storev_mode(
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
    attempt(
        mode,
        cpu,
        |m| unsafe {
            ops::load_cbne_memcpy_store(
                Mo::Relaxed,
                m,
                v,
                expect,
                dst.cast(),
                src.cast_const().cast(),
                len,
                newv,
                cpu,
            )
        },
        |m| unsafe {
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
        },
    )
}

/// `percpu_cmpeqv_memcpy_storev` with release order on the final store.
///
/// # Safety
/// As `percpu_cmpeqv_memcpy_storev`.
#[no_mangle]
pub unsafe extern "C-unwind" fn percpu_cmpeqv_memcpy_storev_release(
    v: *mut intptr_t,
    expect: intptr_t,
    dst: *mut c_void,
    src: *mut c_void,
    len: size_t,
    newv: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { percpu_cmpeqv_memcpy_storev_release_mode(CPU_ID, v, expect, dst, src, len, newv, cpu) }
}

/// `percpu_cmpeqv_memcpy_storev_release` for a percpu mode.
///
/// # Safety
/// As `percpu_cmpeqv_memcpy_storev`.
#[no_mangle]
pub unsafe extern "C-unwind" fn percpu_cmpeqv_memcpy_storev_release_mode(
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
    attempt(
        mode,
        cpu,
        |m| unsafe {
            ops::load_cbne_memcpy_store(
                Mo::Release,
                m,
                v,
                expect,
                dst.cast(),
                src.cast_const().cast(),
                len,
                newv,
                cpu,
            )
        },
        |m| unsafe {
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
        },
    )
}
