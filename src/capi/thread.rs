//! Registration and availability (always exported out of line).

use core::ffi::{c_int, c_uint};

use super::guard;
use crate::registration;
use crate::sys::Errno;

/// Registers the calling thread with the kernel, unless glibc owns
/// registration (then succeeds at once). Returns 0, or -1 with errno.
/// With automatic registration this is never needed, and calling it for
/// an already registered thread is harmless; each successful call is
/// matched by one `rseq_unregister_current_thread()`.
#[no_mangle]
pub extern "C-unwind" fn rseq_register_current_thread() -> c_int {
    guard(-1, || match registration::register_current_thread() {
        Ok(()) => 0,
        Err(e) => {
            e.set();
            -1
        }
    })
}

/// Drops one explicit registration of the calling thread and unregisters
/// it when none is left; a no-op when glibc owns registration. Returns 0,
/// or -1 with errno (EINVAL: the thread was not registered).
#[no_mangle]
pub extern "C-unwind" fn rseq_unregister_current_thread() -> c_int {
    guard(-1, || match registration::unregister_current_thread() {
        Ok(()) => 0,
        Err(e) => {
            e.set();
            -1
        }
    })
}

/// `RSEQ_AVAILABLE_QUERY_KERNEL` (0): whether the kernel supports rseq and
/// lets this process use it; when not, errno says why (ENOSYS: no rseq,
/// EPERM: refused by a sandbox, ENOTSUP: no sequences for this
/// architecture). `RSEQ_AVAILABLE_QUERY_LIBC` (1): whether the C library
/// owns a working registration. Other queries: false, errno EINVAL.
#[no_mangle]
pub extern "C-unwind" fn rseq_available(query: c_uint) -> bool {
    guard(false, || match query {
        0 => match registration::kernel_unavailable_reason() {
            None => true,
            Some(e) => {
                e.set();
                false
            }
        },
        1 => {
            registration::init();
            let size = registration::active_size();
            registration::owner() == registration::Owner::Libc && size != 0 && size != u32::MAX
        }
        _ => {
            Errno(libc::EINVAL).set();
            false
        }
    })
}

/// The slow path of an aborted inline critical section: counts the abort,
/// fires the `rseq:abort` probe and registers the calling thread if
/// automatic registration applies. Returns -1 (the abort's return value);
/// errno is preserved.
#[no_mangle]
pub extern "C-unwind" fn rseq_abort_slow_path() -> c_int {
    guard(-1, || {
        let saved = Errno::last();
        crate::ops::on_abort();
        saved.set();
        -1
    })
}

/// Initialises the library now: finds out whether glibc owns
/// registration, publishes `rseq_offset`, `rseq_size` and `rseq_flags`,
/// and registers the calling thread when the library owns registration.
/// The library's constructor does the same; this lets code that runs
/// earlier (another library's constructor) use rseq safely. Idempotent
/// and thread-safe. Returns `RSEQ_INIT_OK` (0): an initialised library
/// whose kernel refuses rseq is still initialised (`rseq_available()`
/// then says why).
#[no_mangle]
pub extern "C" fn rseq_init() -> c_int {
    guard(-1, || {
        // Initialises, then registers the thread if the library owns
        // registration and the thread has none yet.
        registration::on_slow_path();
        0
    })
}

/// Whether the calling thread currently has a working rseq registration
/// (by glibc or by this library): its area's `cpu_id` is a CPU number.
/// A thread the library registers automatically reads false until its
/// first use of rseq (or `rseq_init()` / an explicit register call).
#[no_mangle]
pub extern "C" fn rseq_registered() -> bool {
    guard(false, registration::current_thread_registered)
}

/// Whether the registered area includes the kernel's time-slice
/// extension control field (Linux 7.0+: the active feature size is past
/// the original 32 bytes). False before any registration and on kernels
/// or C libraries that register only the original fields.
#[no_mangle]
pub extern "C" fn rseq_slice_ctrl_available() -> bool {
    guard(false, || {
        registration::init();
        let size = registration::active_size();
        size != u32::MAX && size > 32
    })
}
