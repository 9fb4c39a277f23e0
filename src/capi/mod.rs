//! The C API: every function the library exports, and nothing else.
//!
//! Each exported function validates what it can, reports errors the C way
//! (a return value and `errno`, as `API.md` documents for it) and never
//! lets a Rust panic unwind into C: a panic (a bug) aborts the process
//! (see [`guard`]).
//!
//! Every exported function is `extern "C-unwind"` and catches nothing, so
//! that glibc's forced unwinding (`pthread_exit()` from a signal handler
//! that interrupted the function, thread cancellation) passes through it
//! exactly as through C code. With `panic = "abort"` (the release
//! profile) no Rust frame has a landing pad, so the unwinder crosses them
//! on their CFI alone. (A `catch_unwind` here would catch the forced
//! unwind and abort: "Rust cannot catch foreign exceptions"; a plain
//! `extern "C"` function aborts at its boundary; and a frame with a
//! landing pad whose interrupted call site is a non-unwinding call makes
//! the Rust personality terminate.) The one place where pending signals
//! are delivered inside the library, the return of the `rt_sigprocmask`
//! that ends a hold, runs after the word is released.
//!
//! The files are split by the header that declares them (see `build.rs`):
//! `thread.rs` and `cpu.rs` are always called out of line; `accessors.rs`
//! and `ops.rs` also exist as inline C in `<rseq/rseq.h>`, and are
//! declared only for `RSEQ_NO_INLINE` builds.

use core::ffi::c_uint;

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

/// Runs `f` for an exported function. A Rust panic in `f` aborts the
/// process (the panic message is printed first): the release build (the
/// C library) is built with `panic = "abort"`, and in unwinding builds
/// (the Rust tests) a drop guard aborts. Anything else that unwinds
/// (glibc's forced unwinding) passes through. `_fail` is the failure
/// value the function documents; it stays so that each call site says it.
#[inline(always)]
pub(crate) fn guard<T>(_fail: T, f: impl FnOnce() -> T) -> T {
    #[cfg(panic = "unwind")]
    {
        /// Dropped during an unwind: aborts if the unwind is a Rust panic.
        struct AbortOnPanic;
        impl Drop for AbortOnPanic {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    std::process::abort();
                }
            }
        }
        let bomb = AbortOnPanic;
        let r = f();
        core::mem::forget(bomb);
        r
    }
    #[cfg(not(panic = "unwind"))]
    f()
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
