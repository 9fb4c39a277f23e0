//! Functions of other libraries that the library interposes (exported,
//! but declared by their own headers, not by cbindgen).

use core::ffi::{c_int, c_void};

use super::guard;

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

/// `pthread_create`, interposed: glibc's `pthread_create`, called
/// directly. New threads are registered lazily, on their first use of
/// the library (see `registration`), so that a thread that never uses rseq
/// costs nothing; the symbol stays exported so that programs and the
/// golden symbol list built with earlier versions see the same ABI.
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
        // SAFETY: forwarded arguments.
        unsafe { next(thread, attr, routine, arg) }
    })
}
