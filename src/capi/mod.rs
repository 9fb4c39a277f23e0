//! The C API: every function the library exports, and nothing else.
//!
//! Each exported function validates what it can, reports errors the C way
//! (a return value and `errno`, as `API.md` documents for it) and never
//! unwinds into C: a panic (a bug) becomes the function's failure value
//! with errno `ENOTRECOVERABLE`.
//!
//! The files are split by the header that declares them (see `build.rs`):
//! `thread.rs` and `cpu.rs` are always called out of line; `accessors.rs`
//! and `ops.rs` also exist as inline C in `<rseq/rseq.h>`, and are
//! declared only for `RSEQ_NO_INLINE` builds.

use core::ffi::c_uint;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::ops::{Mo, PercpuMode};
use crate::sys::Errno;

mod accessors;
mod cpu;
mod cpu_op;
#[cfg(all(feature = "interpose", not(miri)))]
mod interpose;
mod mempool;
mod ops;
mod percpu;
mod thread;

/// Runs `f`; a panic becomes `fail` with errno `ENOTRECOVERABLE`.
#[inline(always)]
pub(crate) fn guard<T>(fail: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => {
            Errno(libc::ENOTRECOVERABLE).set();
            fail
        }
    }
}

/// Fails with -1 and the given errno.
#[inline]
pub(crate) fn fail(errno: i32) -> i32 {
    Errno(errno).set();
    -1
}

/// A C `enum rseq_mo` argument. Any integer may arrive from C, so it is a
/// plain integer here, validated before use.
#[repr(transparent)]
#[derive(Clone, Copy, Debug)]
pub struct RseqMo(pub c_uint);

/// A C `enum rseq_percpu_mode` argument, validated before use.
#[repr(transparent)]
#[derive(Clone, Copy, Debug)]
pub struct RseqPercpuMode(pub c_uint);

/// The C `struct rseq_abi` (the kernel's `struct rseq`).
pub type RseqAbi = crate::abi::Rseq;

/// Validates the two enums of a librseq `__ptr` operation.
#[inline(always)]
pub(crate) fn modes(mo: RseqMo, mode: RseqPercpuMode) -> Option<(Mo, PercpuMode)> {
    Some((Mo::from_raw(mo.0)?, PercpuMode::from_raw(mode.0)?))
}
