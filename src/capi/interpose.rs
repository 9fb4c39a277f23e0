//! Functions of other libraries that the library interposes (exported,
//! but declared by their own headers, not by cbindgen).

use core::ffi::{c_int, c_void};

use super::guard;
use crate::registration;

/// A thread start routine, as pthread_create takes it.
type StartRoutine = extern "C-unwind" fn(*mut c_void) -> *mut c_void;
/// pthread_create's signature.
type PthreadCreate = unsafe extern "C-unwind" fn(
    *mut libc::pthread_t,
    *const libc::pthread_attr_t,
    Option<StartRoutine>,
    *mut c_void,
) -> c_int;

/// The next `pthread_create` in the symbol search order (glibc's).
fn next_pthread_create() -> Option<PthreadCreate> {
    static NEXT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    // SAFETY: dlsym with a NUL-terminated name; RTLD_NEXT finds the
    // definition after this library's own.
    let p = *NEXT.get_or_init(
        || unsafe { libc::dlsym(libc::RTLD_NEXT, c"pthread_create".as_ptr()) } as usize,
    );
    // SAFETY: a non-null result is glibc's pthread_create, which has
    // exactly this signature.
    (p != 0).then(|| unsafe { core::mem::transmute::<usize, PthreadCreate>(p) })
}

/// What the trampoline needs to start the caller's routine.
struct Start {
    routine: StartRoutine,
    arg: *mut c_void,
}

/// Registers the new thread, then runs the caller's routine.
extern "C-unwind" fn registered_start(p: *mut c_void) -> *mut c_void {
    // SAFETY: `p` is the Box leaked by pthread_create below, for this
    // thread only.
    let Start { routine, arg } = *unsafe { Box::from_raw(p.cast::<Start>()) };
    registration::on_thread_start();
    routine(arg)
}

/// `pthread_create`, interposed: when the library owns rseq registration
/// (no glibc registration), the new thread is registered before its start
/// routine runs, so that the threads of any program get rseq, also one
/// that knows nothing of it (`LD_PRELOAD`). Otherwise it is glibc's
/// `pthread_create`, called directly.
///
/// # Safety
/// As `pthread_create(3)`.
#[no_mangle]
pub unsafe extern "C-unwind" fn pthread_create(
    thread: *mut libc::pthread_t,
    attr: *const libc::pthread_attr_t,
    routine: Option<StartRoutine>,
    arg: *mut c_void,
) -> c_int {
    guard(libc::EAGAIN, || {
        let Some(next) = next_pthread_create() else {
            return libc::EAGAIN;
        };
        registration::init();
        let Some(routine) =
            routine.filter(|_| registration::owner() == registration::Owner::Library)
        else {
            // SAFETY: forwarded arguments.
            return unsafe { next(thread, attr, routine, arg) };
        };
        let start = Box::into_raw(Box::new(Start { routine, arg }));
        // SAFETY: forwarded arguments; the trampoline takes the Box.
        let r = unsafe { next(thread, attr, Some(registered_start), start.cast()) };
        if r != 0 {
            // SAFETY: the thread was not created: the Box is still ours.
            drop(unsafe { Box::from_raw(start) });
        }
        r
    })
}
