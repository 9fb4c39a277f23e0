//! Functions of other libraries that the library interposes (exported,
//! but declared by their own headers, not by cbindgen).

use core::ffi::{c_int, c_void};

use super::guard;
use crate::registration;

/// A thread start routine, as pthread_create takes it.
type StartRoutine = extern "C" fn(*mut c_void) -> *mut c_void;
/// pthread_create's signature.
type PthreadCreate = unsafe extern "C" fn(
    *mut libc::pthread_t,
    *const libc::pthread_attr_t,
    Option<StartRoutine>,
    *mut c_void,
) -> c_int;

extern "C" {
    /// glibc's pthread_create in a fully static program (src/area.c).
    fn rseq_impl_static_pthread_create() -> *mut c_void;
}

/// The next `pthread_create` in the symbol search order (glibc's); in a
/// fully static program, where `dlsym` finds nothing, glibc's under its
/// internal name.
fn next_pthread_create() -> Option<PthreadCreate> {
    static NEXT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let p = *NEXT.get_or_init(|| {
        // SAFETY: dlsym with a NUL-terminated name; RTLD_NEXT finds the
        // definition after this library's own.
        let next = unsafe { libc::dlsym(libc::RTLD_NEXT, c"pthread_create".as_ptr()) };
        if next.is_null() {
            // SAFETY: a plain accessor of area.c without preconditions.
            unsafe { rseq_impl_static_pthread_create() as usize }
        } else {
            next as usize
        }
    });
    // SAFETY: a non-null result is glibc's pthread_create, which has
    // exactly this signature.
    (p != 0).then(|| unsafe { core::mem::transmute::<usize, PthreadCreate>(p) })
}

/// What the trampoline needs to start the caller's routine (`take`
/// first: the C trampoline reads it).
#[repr(C)]
struct Start {
    take: unsafe extern "C" fn(*mut c_void, *mut Option<StartRoutine>, *mut *mut c_void),
    routine: StartRoutine,
    arg: *mut c_void,
}

// SAFETY: the trampoline's only precondition is the one pthread_create
// gives every start routine (its argument is ours), so it may be "safe".
unsafe extern "C" {
    /// The C trampoline (`area.c`): calls `take_start`, then
    /// the caller's routine, so that a forced unwind out of the routine
    /// only crosses C frames.
    safe fn rseq_impl_registered_start(start: *mut c_void) -> *mut c_void;
}

/// Called by the C trampoline in the new thread: registers it, frees the
/// start record and gives back the caller's routine and argument.
///
/// # Safety
/// `p` is the Box leaked by pthread_create below, for this thread only;
/// the out-pointers are valid.
unsafe extern "C" fn take_start(
    p: *mut c_void,
    routine: *mut Option<StartRoutine>,
    arg: *mut *mut c_void,
) {
    // SAFETY: per the contract.
    let Start {
        routine: r, arg: a, ..
    } = *unsafe { Box::from_raw(p.cast::<Start>()) };
    registration::on_thread_start();
    // SAFETY: valid out-pointers (the trampoline's locals).
    unsafe {
        routine.write(Some(r));
        arg.write(a);
    }
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
        let start = Box::into_raw(Box::new(Start {
            take: take_start,
            routine,
            arg,
        }));
        let trampoline: StartRoutine = rseq_impl_registered_start;
        // SAFETY: forwarded arguments; the trampoline takes the Box.
        let r = unsafe { next(thread, attr, Some(trampoline), start.cast()) };
        if r != 0 {
            // SAFETY: the thread was not created: the Box is still ours.
            drop(unsafe { Box::from_raw(start) });
        }
        r
    })
}
