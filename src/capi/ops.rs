//! The critical-section operations, exported under librseq's names (with
//! `enum rseq_mo` and `enum rseq_percpu_mode`) and the 2017 names.
//!
//! Return values: 0 committed, 1 a compare failed, -1 aborted (or, with
//! errno EINVAL, an order or mode the family does not accept). Pointer
//! arguments are valid by contract, as in librseq: checking them would
//! cost every call and the inline versions could not match.

use core::ffi::{c_int, c_long, c_void};

use libc::intptr_t;

use super::{fail, guard, RseqMo, RseqPercpuMode};
use crate::ops::{self, Error, Mo, PercpuMode};

/// The C return value of an operation.
#[inline(always)]
fn code(r: ops::Result) -> c_int {
    match r {
        Ok(()) => 0,
        Err(Error::InvalidOrder) => invalid(),
        Err(e) => e.code(),
    }
}

/// The EINVAL failure, out of line: the fast path then needs no stack
/// frame of its own for the errno call.
#[cold]
#[inline(never)]
fn invalid() -> c_int {
    fail(libc::EINVAL)
}

/// Validates the enums, then runs `f`. An order value that is no
/// `enum rseq_mo` at all fails exactly as an order the family does not
/// accept (EINVAL): it is passed on as `SEQ_CST`, which no family
/// accepts, so that the family's one order test covers both (for a
/// RELAXED-only family the whole validation is `mo == 0`, one compare).
#[inline(always)]
fn run(mo: RseqMo, mode: RseqPercpuMode, f: impl FnOnce(Mo, PercpuMode) -> ops::Result) -> c_int {
    guard(-1, || {
        let mo = Mo::from_raw(mo.0).unwrap_or(Mo::SeqCst);
        match PercpuMode::from_raw(mode.0) {
            Some(mode) => code(f(mo, mode)),
            None => invalid(),
        }
    })
}

/// `if (*v != expect) return 1; *v = newv;` on `cpu`.
///
/// # Safety
/// `v` is valid per-CPU data (see the Rust `ops` module).
#[no_mangle]
pub unsafe extern "C-unwind" fn rseq_load_cbne_store__ptr(
    rseq_mo: RseqMo,
    percpu_mode: RseqPercpuMode,
    v: *mut intptr_t,
    expect: intptr_t,
    newv: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    run(rseq_mo, percpu_mode, |mo, mode| unsafe {
        ops::load_cbne_store(mo, mode, v, expect, newv, cpu)
    })
}

/// List pop: `r = *v; if (r == expectnot) return 1; *load = r;
/// *v = *(intptr_t *)(r + voffp);` on `cpu`.
///
/// # Safety
/// `v`, `load` and, unless the list is empty, the node are valid.
#[no_mangle]
pub unsafe extern "C-unwind" fn rseq_load_cbeq_store_add_load_store__ptr(
    rseq_mo: RseqMo,
    percpu_mode: RseqPercpuMode,
    v: *mut intptr_t,
    expectnot: intptr_t,
    voffp: c_long,
    load: *mut intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    run(rseq_mo, percpu_mode, |mo, mode| unsafe {
        ops::load_cbeq_store_add_load_store(mo, mode, v, expectnot, voffp as isize, load, cpu)
    })
}

/// `*v += count;` on `cpu`.
///
/// # Safety
/// `v` is valid per-CPU data.
#[no_mangle]
pub unsafe extern "C-unwind" fn rseq_load_add_store__ptr(
    rseq_mo: RseqMo,
    percpu_mode: RseqPercpuMode,
    v: *mut intptr_t,
    count: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    run(rseq_mo, percpu_mode, |mo, mode| unsafe {
        ops::load_add_store(mo, mode, v, count, cpu)
    })
}

/// `*(*(intptr_t **)(*ptr + off)) += inc;` on `cpu`.
///
/// # Safety
/// `ptr` and both indirections are valid.
#[no_mangle]
pub unsafe extern "C-unwind" fn rseq_load_add_load_load_add_store__ptr(
    rseq_mo: RseqMo,
    percpu_mode: RseqPercpuMode,
    ptr: *mut intptr_t,
    off: c_long,
    inc: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    run(rseq_mo, percpu_mode, |mo, mode| unsafe {
        ops::load_add_load_load_add_store(mo, mode, ptr, off as isize, inc, cpu)
    })
}

/// `if (*v != expect) return 1; *v2 = newv2; *v = newv;` on `cpu`
/// (RELAXED or RELEASE).
///
/// # Safety
/// `v` and `v2` are valid per-CPU data.
#[no_mangle]
pub unsafe extern "C-unwind" fn rseq_load_cbne_store_store__ptr(
    rseq_mo: RseqMo,
    percpu_mode: RseqPercpuMode,
    v: *mut intptr_t,
    expect: intptr_t,
    v2: *mut intptr_t,
    newv2: intptr_t,
    newv: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    run(rseq_mo, percpu_mode, |mo, mode| unsafe {
        ops::load_cbne_store_store(mo, mode, v, expect, v2, newv2, newv, cpu)
    })
}

/// `if (*v != expect || *v2 != expect2) return 1; *v = newv;` on `cpu`.
///
/// # Safety
/// `v` and `v2` are valid per-CPU data.
#[no_mangle]
pub unsafe extern "C-unwind" fn rseq_load_cbne_load_cbne_store__ptr(
    rseq_mo: RseqMo,
    percpu_mode: RseqPercpuMode,
    v: *mut intptr_t,
    expect: intptr_t,
    v2: *mut intptr_t,
    expect2: intptr_t,
    newv: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    run(rseq_mo, percpu_mode, |mo, mode| unsafe {
        ops::load_cbne_load_cbne_store(mo, mode, v, expect, v2, expect2, newv, cpu)
    })
}

/// `if (*v != expect) return 1; memcpy(dst, src, len); *v = newv;` on
/// `cpu` (RELAXED or RELEASE).
///
/// # Safety
/// `v` is valid; `dst` and `src` are valid for `len` bytes and disjoint.
#[no_mangle]
pub unsafe extern "C-unwind" fn rseq_load_cbne_memcpy_store__ptr(
    rseq_mo: RseqMo,
    percpu_mode: RseqPercpuMode,
    v: *mut intptr_t,
    expect: intptr_t,
    dst: *mut c_void,
    src: *mut c_void,
    len: libc::size_t,
    newv: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    run(rseq_mo, percpu_mode, |mo, mode| unsafe {
        ops::load_cbne_memcpy_store(
            mo,
            mode,
            v,
            expect,
            dst.cast(),
            src.cast_const().cast(),
            len,
            newv,
            cpu,
        )
    })
}

const RELAXED: RseqMo = RseqMo(Mo::Relaxed as u32);
const RELEASE: RseqMo = RseqMo(Mo::Release as u32);
const CPU_ID: RseqPercpuMode = RseqPercpuMode(PercpuMode::CpuId as u32);

/// 2017 name of `rseq_load_cbne_store__ptr` (RELAXED, CPU_ID).
///
/// # Safety
/// As `rseq_load_cbne_store__ptr`.
#[no_mangle]
pub unsafe extern "C-unwind" fn rseq_cmpeqv_storev(
    v: *mut intptr_t,
    expect: intptr_t,
    newv: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { rseq_load_cbne_store__ptr(RELAXED, CPU_ID, v, expect, newv, cpu) }
}

/// 2017 name of `rseq_load_cbeq_store_add_load_store__ptr` (RELAXED, CPU_ID).
///
/// # Safety
/// As `rseq_load_cbeq_store_add_load_store__ptr`.
#[no_mangle]
pub unsafe extern "C-unwind" fn rseq_cmpnev_storeoffp_load(
    v: *mut intptr_t,
    expectnot: intptr_t,
    voffp: libc::off_t,
    load: *mut intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        rseq_load_cbeq_store_add_load_store__ptr(
            RELAXED,
            CPU_ID,
            v,
            expectnot,
            voffp as c_long,
            load,
            cpu,
        )
    }
}

/// 2017 name of `rseq_load_add_store__ptr` (RELAXED, CPU_ID).
///
/// # Safety
/// As `rseq_load_add_store__ptr`.
#[no_mangle]
pub unsafe extern "C-unwind" fn rseq_addv(v: *mut intptr_t, count: intptr_t, cpu: c_int) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { rseq_load_add_store__ptr(RELAXED, CPU_ID, v, count, cpu) }
}

/// 2018 name of `rseq_load_add_load_load_add_store__ptr` (RELAXED, CPU_ID).
///
/// # Safety
/// As `rseq_load_add_load_load_add_store__ptr`.
#[no_mangle]
pub unsafe extern "C-unwind" fn rseq_offset_deref_addv(
    ptr: *mut intptr_t,
    off: c_long,
    inc: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { rseq_load_add_load_load_add_store__ptr(RELAXED, CPU_ID, ptr, off, inc, cpu) }
}

/// 2017 name of `rseq_load_cbne_store_store__ptr` (RELAXED, CPU_ID).
///
/// # Safety
/// As `rseq_load_cbne_store_store__ptr`.
#[no_mangle]
pub unsafe extern "C-unwind" fn rseq_cmpeqv_trystorev_storev(
    v: *mut intptr_t,
    expect: intptr_t,
    v2: *mut intptr_t,
    newv2: intptr_t,
    newv: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { rseq_load_cbne_store_store__ptr(RELAXED, CPU_ID, v, expect, v2, newv2, newv, cpu) }
}

/// 2017 name of `rseq_load_cbne_store_store__ptr` (RELEASE, CPU_ID).
///
/// # Safety
/// As `rseq_load_cbne_store_store__ptr`.
#[no_mangle]
pub unsafe extern "C-unwind" fn rseq_cmpeqv_trystorev_storev_release(
    v: *mut intptr_t,
    expect: intptr_t,
    v2: *mut intptr_t,
    newv2: intptr_t,
    newv: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { rseq_load_cbne_store_store__ptr(RELEASE, CPU_ID, v, expect, v2, newv2, newv, cpu) }
}

/// 2017 name of `rseq_load_cbne_load_cbne_store__ptr` (RELAXED, CPU_ID).
///
/// # Safety
/// As `rseq_load_cbne_load_cbne_store__ptr`.
#[no_mangle]
pub unsafe extern "C-unwind" fn rseq_cmpeqv_cmpeqv_storev(
    v: *mut intptr_t,
    expect: intptr_t,
    v2: *mut intptr_t,
    expect2: intptr_t,
    newv: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        rseq_load_cbne_load_cbne_store__ptr(RELAXED, CPU_ID, v, expect, v2, expect2, newv, cpu)
    }
}

/// 2017 name of `rseq_load_cbne_memcpy_store__ptr` (RELAXED, CPU_ID).
///
/// # Safety
/// As `rseq_load_cbne_memcpy_store__ptr`.
#[no_mangle]
pub unsafe extern "C-unwind" fn rseq_cmpeqv_trymemcpy_storev(
    v: *mut intptr_t,
    expect: intptr_t,
    dst: *mut c_void,
    src: *mut c_void,
    len: libc::size_t,
    newv: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        rseq_load_cbne_memcpy_store__ptr(RELAXED, CPU_ID, v, expect, dst, src, len, newv, cpu)
    }
}

/// 2017 name of `rseq_load_cbne_memcpy_store__ptr` (RELEASE, CPU_ID).
///
/// # Safety
/// As `rseq_load_cbne_memcpy_store__ptr`.
#[no_mangle]
pub unsafe extern "C-unwind" fn rseq_cmpeqv_trymemcpy_storev_release(
    v: *mut intptr_t,
    expect: intptr_t,
    dst: *mut c_void,
    src: *mut c_void,
    len: libc::size_t,
    newv: intptr_t,
    cpu: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        rseq_load_cbne_memcpy_store__ptr(RELEASE, CPU_ID, v, expect, dst, src, len, newv, cpu)
    }
}
