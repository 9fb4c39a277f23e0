//! Registration of threads with the kernel.
//!
//! # Who owns registration
//!
//! A thread can have one rseq area registered, and glibc 2.35+ registers
//! one for every thread it creates. At initialisation the library looks up
//! glibc's `__rseq_offset`, `__rseq_size` and `__rseq_flags` at run time
//! (no link-time dependency on a glibc version): when all three exist and
//! `__rseq_size` is not 0, glibc owns registration and the library uses
//! glibc's area. Otherwise (older glibc, another libc, or
//! `GLIBC_TUNABLES=glibc.pthread.rseq=0`) the library owns registration
//! and registers its own area, an initial-exec TLS block defined in
//! `area.c`.
//!
//! # The exported data symbols
//!
//! `rseq_offset`, `rseq_size` and `rseq_flags` take exactly the values
//! librseq gives them, in every state, except that on x86_64 the offset
//! "0" of the first and last rows is the idle area's (`src/idle.rs`):
//!
//! | state | offset | size | flags |
//! |---|---|---|---|
//! | before initialisation | 0 | `u32::MAX` | 0 |
//! | glibc owns, `__rseq_size` 20 or 32 | glibc's | min(32, kernel feature size) | glibc's |
//! | glibc owns, other `__rseq_size` | glibc's | glibc's | glibc's |
//! | library owns, no thread registered yet | ours | 0 | 0 |
//! | library owns, a thread registered | ours | kernel feature size | 0 |
//! | after the library's destructor (library owned) | 0 | `u32::MAX` | 0 |
//!
//! # Automatic registration
//!
//! When the library owns registration, threads get registered without
//! calling anything, lazily: the thread that loads the library in the
//! constructor, and every other thread on its first slow path (a critical
//! section that aborts because the thread's area reads `cpu_id` -1, a
//! CPU-number query that finds no CPU, `rseq_init()`, or an explicit
//! register call). A thread that never uses the library makes no system
//! call for it; one that does makes one (`rseq()`), and none at exit.
//! Explicit register/unregister calls nest on top of that (see
//! [`register_current_thread`]).
//!
//! # Why there is no unregistration at thread exit
//!
//! The area is initial-exec TLS, which glibc allocates with the thread's
//! descriptor in the thread's stack block, exactly like glibc's own rseq
//! area (which glibc never unregisters either). The kernel writes the area
//! only on the way back to user space; a thread on its way out never goes
//! back once the kernel has cleared its tid (`CLONE_CHILD_CLEARTID`,
//! late in `exit`), and glibc neither frees nor hands a stack block to a
//! new thread before that tid reads 0. A reused block gets its TLS
//! initialised again (`cpu_id` -1, thread state 0) for its new thread. So
//! the area stays valid for every write the kernel can make, and the
//! thread stays registered through every TLS and thread-specific-data
//! destructor, which may therefore use rseq. Fork children inherit the
//! registration of the forking thread with a copy of its TLS; `exec`
//! drops the registration with the address space; the library is
//! `NODELETE`, so `dlclose` never frees its TLS.
//!
//! # Signal handlers
//!
//! A signal handler may use rseq (and so register, or call explicit
//! register/unregister) at any point of the interrupted thread's own
//! registration code. No signal is blocked for that (it would cost two
//! `rt_sigprocmask` calls per change): the per-thread state word is
//! updated only with atomic read-modify-write operations (a signal cannot
//! split them); a handler that registers the thread first makes the
//! interrupted `rseq()` answer EBUSY, which counts as success; an explicit
//! register takes its reference before the system call, so that a nested
//! register/unregister pair in a handler cannot unregister underneath it;
//! an unregistration that a nested handler already did (EINVAL, with the
//! area now reading -1) counts as done. The one exception is the first
//! successful registration of the process: `rseq_size` must become
//! non-zero before any section of the registered thread runs (the cpu-op
//! fence relies on it, see `cpu_op::fence`), so until then registration
//! runs with signals blocked.
//!
//! `RSEQ_AUTO_REGISTER=0` in the environment ([`AUTO_REGISTER_ENV`])
//! turns all of that off, for librseq's exact behaviour: only explicit
//! calls register, and `rseq_size` is 0 until the first one succeeds. A
//! failed registration leaves the area's `cpu_id` at -1, as librseq's
//! does; the failure is remembered in the thread's own state so that the
//! slow path does not retry it on every abort.
//!
//! # Several copies of the library
//!
//! A copy loaded after another copy that owns registration never
//! registers by itself: it uses the first copy's area, and its slow path
//! and explicit calls go to the first copy's `foreign_registration`
//! (found through the anchor, see `crate::anchor`).

use core::ffi::c_void;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Once;

use crate::abi;
use crate::arch;
use crate::sys::{self, Errno};

/// Offset of the calling thread's rseq area from the thread pointer
/// (librseq's `rseq_offset`); inline critical sections read it on every
/// operation.
///
/// The three data symbols are exported to C but crate-private in Rust: a
/// store into `rseq_offset` would send every critical section's stores to
/// an arbitrary address. Rust code reads them with [`offset`] and
/// [`active_size`].
///
/// Defined in [`crate::idle`]: on x86_64 it designates the idle area
/// (never 0) before initialisation and after the destructor.
pub(crate) use crate::idle::rseq_offset;

/// Size of the active rseq feature set (librseq's `rseq_size`): 0 while no
/// registration succeeded, `u32::MAX` before initialisation and after the
/// destructor.
#[cfg_attr(feature = "capi", no_mangle)]
#[allow(non_upper_case_globals)] // librseq's C names
pub(crate) static rseq_size: AtomicU32 = AtomicU32::new(u32::MAX);

/// Flags used at registration (librseq's `rseq_flags`); always 0.
#[cfg_attr(feature = "capi", no_mangle)]
#[allow(non_upper_case_globals)] // librseq's C names
pub(crate) static rseq_flags: AtomicU32 = AtomicU32::new(0);

/// Who registers threads with the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Owner {
    /// The library is not initialised yet.
    Uninit = 0,
    /// glibc registers every thread; the library only uses its area.
    Libc = 1,
    /// The library registers threads itself, in its own area.
    Library = 2,
    /// The library's destructor has run (it owned registration before).
    Finished = 3,
}

static OWNER: AtomicU8 = AtomicU8::new(Owner::Uninit as u8);
static INIT: Once = Once::new();
/// Length passed to `rseq()` for the library's own area.
static REGISTER_LEN: AtomicU32 = AtomicU32::new(abi::ORIG_RSEQ_ALLOC_SIZE);
/// `rseq_size` once a thread has registered the library's own area.
static REGISTERED_SIZE: AtomicU32 = AtomicU32::new(abi::ORIG_RSEQ_FEATURE_SIZE);
/// The registration entry of the copy of the library that owns
/// registration, when that is another copy (see [`foreign_registration`]);
/// 0 otherwise.
static FOREIGN: AtomicUsize = AtomicUsize::new(0);
/// Automatic registration (on unless [`AUTO_REGISTER_ENV`] is `0`).
static AUTO: AtomicU8 = AtomicU8::new(1);

/// The environment variable that turns automatic registration off:
/// `RSEQ_AUTO_REGISTER=0` (read once, at initialisation). Threads are
/// then registered only by `rseq_register_current_thread()`, and
/// `rseq_size` stays 0 until the first such call succeeds, exactly as
/// with librseq. Any other value (or none) keeps it on.
pub const AUTO_REGISTER_ENV: &str = "RSEQ_AUTO_REGISTER";

/// Whether the library registers threads by itself (when it owns
/// registration).
#[inline]
pub fn auto_register() -> bool {
    AUTO.load(Ordering::Relaxed) != 0
}

extern "C" {
    fn rseq_impl_area_offset() -> isize;
    fn rseq_impl_area_size() -> u32;
    fn rseq_impl_area_align() -> u32;
    fn rseq_impl_thread_state_ptr() -> *mut AtomicU64;
}

/// Who currently owns registration.
#[inline]
pub fn owner() -> Owner {
    match OWNER.load(Ordering::Acquire) {
        1 => Owner::Libc,
        2 => Owner::Library,
        3 => Owner::Finished,
        _ => Owner::Uninit,
    }
}

/// The current value of `rseq_offset` (0, or on x86_64 the idle area's offset, before
/// initialisation and after the destructor).
#[inline(always)]
pub fn offset() -> isize {
    rseq_offset.load(Ordering::Relaxed)
}

/// The current value of `rseq_size`.
#[inline]
pub fn active_size() -> u32 {
    rseq_size.load(Ordering::Relaxed)
}

/// Address of the calling thread's rseq area (glibc's or the library's),
/// or `None` before initialisation and after the destructor.
#[inline]
pub fn area() -> Option<*mut abi::Rseq> {
    let offset = offset();
    if !crate::idle::is_area(offset) {
        return None;
    }
    Some(arch::thread_pointer().wrapping_offset(offset).cast())
}

/// The kernel's rseq feature size (`AT_RSEQ_FEATURE_SIZE`, 20 on kernels
/// that predate the auxiliary-vector entry).
pub fn kernel_feature_size() -> u32 {
    match sys::getauxval(abi::AT_RSEQ_FEATURE_SIZE) {
        0 => abi::ORIG_RSEQ_FEATURE_SIZE,
        // c_ulong is already u32 on 32-bit targets.
        #[allow(clippy::unnecessary_cast)]
        n => n as u32,
    }
}

/// The kernel's required area alignment (`AT_RSEQ_ALIGN`, 32 before the
/// auxiliary-vector entry existed).
pub fn kernel_area_align() -> u32 {
    match sys::getauxval(abi::AT_RSEQ_ALIGN) {
        0 => abi::ORIG_RSEQ_ALLOC_SIZE,
        // c_ulong is already u32 on 32-bit targets.
        #[allow(clippy::unnecessary_cast)]
        n => n as u32,
    }
}

/// What glibc says about its own registration.
struct LibcRseq {
    offset: isize,
    size: u32,
    flags: u32,
}

/// Looks glibc's registration symbols up at run time. `None` when this
/// libc has none of them, or reports size 0 (registration disabled or
/// refused).
fn libc_rseq() -> Option<LibcRseq> {
    fn lookup(name: &core::ffi::CStr) -> *const c_void {
        // SAFETY: `name` is NUL-terminated; dlsym only reads it.
        unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }
    }
    let offset = lookup(c"__rseq_offset").cast::<isize>();
    let size = lookup(c"__rseq_size").cast::<u32>();
    let flags = lookup(c"__rseq_flags").cast::<u32>();
    if offset.is_null() || size.is_null() || flags.is_null() {
        return None;
    }
    // SAFETY: the three symbols are glibc's read-only data objects of the
    // types documented in <sys/rseq.h>, written once before main().
    let (offset, size, flags) = unsafe { (*offset, *size, *flags) };
    if size == 0 {
        return None;
    }
    Some(LibcRseq {
        offset,
        size,
        flags,
    })
}

/// `rseq_size` when glibc owns registration and reports `libc_size`:
/// glibc up to 2.40 reports 32 (or 20) whatever the kernel fills in, and
/// librseq then uses min(32, kernel feature size); any other value is
/// glibc's own answer.
pub fn libc_active_size(libc_size: u32, kernel_feature: u32) -> u32 {
    match libc_size {
        abi::ORIG_RSEQ_FEATURE_SIZE | abi::ORIG_RSEQ_ALLOC_SIZE => {
            kernel_feature.min(abi::ORIG_RSEQ_ALLOC_SIZE)
        }
        other => other,
    }
}

/// The length to register the library's own area with, and the
/// `rseq_size` that results, for a kernel feature size and alignment and
/// an area of `area_size` bytes aligned to `area_align`. The whole feature
/// set is registered when the area can hold it; otherwise the original
/// 32-byte registration, which every kernel accepts (and which then bounds
/// the features the kernel fills in).
pub fn own_registration(feature: u32, align: u32, area_size: u32, area_align: u32) -> (u32, u32) {
    let len = if feature <= area_size && align <= area_align {
        feature.max(abi::ORIG_RSEQ_ALLOC_SIZE)
    } else {
        abi::ORIG_RSEQ_ALLOC_SIZE
    };
    (len, feature.min(len))
}

/// Initialises the library once; cheap after the first call, safe to call
/// from any thread and from the constructor.
#[inline]
pub fn init() {
    if !INIT.is_completed() {
        INIT.call_once(init_once);
    }
}

fn init_once() {
    if std::env::var_os(AUTO_REGISTER_ENV).is_some_and(|v| v == "0") {
        AUTO.store(0, Ordering::Relaxed);
    }
    crate::cpu::possible();
    // Another copy of the library already initialised in this process
    // (see crate::anchor): share its table and its registration.
    let other = crate::anchor::find_other();
    let shared = other.filter(|a| a.layout == crate::anchor::layout());
    if other.is_some() && shared.is_none() {
        crate::anchor::warn_unshared();
    }
    crate::owner::init(shared);
    if let Some(a) = shared {
        // Its data symbols are ours when they are interposed (-rdynamic):
        // then nothing is stored (it already holds the right values).
        let interposed = a.offset_sym == rseq_offset.as_ptr() as usize as u64;
        if a.owner == Owner::Library as u64 {
            // The first copy registers threads in its own area: use that
            // area as glibc's would be used, and never register.
            if !interposed {
                rseq_flags.store(0, Ordering::Relaxed);
                rseq_size.store(a.registered_size as u32, Ordering::SeqCst);
                rseq_offset.store(a.offset as isize, Ordering::Release);
            }
            FOREIGN.store(a.register as usize, Ordering::Release);
            OWNER.store(Owner::Libc as u8, Ordering::Release);
            crate::cpu_op::on_init(a.fork_page as usize);
            return;
        }
        if interposed {
            OWNER.store(Owner::Libc as u8, Ordering::Release);
            crate::cpu_op::on_init(a.fork_page as usize);
            return;
        }
    }
    init_registration();
    crate::cpu_op::on_init(shared.map_or(0, |a| a.fork_page as usize));
    if shared.is_none() {
        crate::anchor::publish(|a| {
            a.table = crate::owner::rseq_cpu_op_owners.load(Ordering::Relaxed) as usize as u64;
            a.capacity = u64::from(crate::owner::CAPACITY.load(Ordering::Relaxed));
            a.owner = u64::from(OWNER.load(Ordering::Relaxed));
            a.offset = rseq_offset.load(Ordering::Relaxed) as i64;
            a.registered_size = u64::from(REGISTERED_SIZE.load(Ordering::Relaxed));
            a.offset_sym = rseq_offset.as_ptr() as usize as u64;
            a.size_sym = rseq_size.as_ptr() as usize as u64;
            a.flags_sym = rseq_flags.as_ptr() as usize as u64;
            a.fork_page = crate::cpu_op::fork_page() as u64;
            a.register = foreign_registration as ForeignRegistration as usize as u64;
        });
    }
}

/// Decides who registers threads and sets the data symbols accordingly.
fn init_registration() {
    match libc_rseq() {
        Some(libc) => {
            let size = libc_active_size(libc.size, kernel_feature_size());
            if kernel_lacks_mm_cid(size) {
                crate::owner::shut_out_mm_cid();
            }
            rseq_flags.store(libc.flags, Ordering::Relaxed);
            rseq_size.store(size, Ordering::Relaxed);
            OWNER.store(Owner::Libc as u8, Ordering::Release);
            rseq_offset.store(libc.offset, Ordering::Release);
        }
        None => {
            // SAFETY: plain accessors of area.c without preconditions.
            let (offset, area_size, area_align) = unsafe {
                (
                    rseq_impl_area_offset(),
                    rseq_impl_area_size(),
                    rseq_impl_area_align(),
                )
            };
            let feature = kernel_feature_size();
            let (len, size) = own_registration(feature, kernel_area_align(), area_size, area_align);
            REGISTER_LEN.store(len, Ordering::Relaxed);
            REGISTERED_SIZE.store(size, Ordering::Relaxed);
            if kernel_lacks_mm_cid(size) {
                crate::owner::shut_out_mm_cid();
            }
            rseq_flags.store(0, Ordering::Relaxed);
            rseq_size.store(0, Ordering::Relaxed);
            OWNER.store(Owner::Library as u8, Ordering::Release);
            rseq_offset.store(offset, Ordering::Release);
        }
    }
}

/// Whether the kernel has rseq but does not fill in `mm_cid` for a
/// registration of feature size `size`: MM_CID sections must then be shut
/// out (see `owner::shut_out_mm_cid`). Without rseq at all (no system
/// call, or a sandbox refusing it) no section can commit anyway, and
/// programs that play the kernel for the sections (the qemu-user smoke
/// tests) keep working.
fn kernel_lacks_mm_cid(size: u32) -> bool {
    size < abi::MM_CID_FEATURE_END && sys::rseq_probe() == Errno(libc::EINVAL)
}

/// The library's constructor: initialise, then register the loading
/// thread when the library owns registration.
#[ctor::ctor(unsafe)]
fn load() {
    init();
    if owner() == Owner::Library && auto_register() {
        let _ = register_thread(false);
    }
}

/// The library's destructor, as librseq's: when the library owned
/// registration, the data symbols return to their uninitialised values.
extern "C" fn unload() {
    if OWNER
        .compare_exchange(
            Owner::Library as u8,
            Owner::Finished as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_ok()
    {
        rseq_offset.store(crate::idle::no_area(), Ordering::Release);
        rseq_size.store(u32::MAX, Ordering::Release);
    }
}

// ctor 1.0 moved destructors to a separate crate; one `.fini_array` entry
// is all the library needs.
#[used]
#[link_section = ".fini_array"]
static UNLOAD: extern "C" fn() = unload;

/// Per-thread registration state, kept in the library's own static TLS
/// (never in kernel-owned fields of the area). Only the owning thread and
/// its signal handlers touch it, always with atomic read-modify-write
/// operations, so that a handler's update is never lost.
struct ThreadState(&'static AtomicU64);

const REFS_MASK: u64 = 0xffff_ffff;
/// The last registration attempt of this thread failed: the slow path
/// does not retry it (the area's cpu_id stays -1, as librseq leaves it).
const REGISTRATION_FAILED: u64 = 1 << 33;

impl ThreadState {
    fn current() -> ThreadState {
        // SAFETY: plain accessor of area.c; the pointer is the calling
        // thread's initial-exec TLS word (8-aligned), valid for the
        // thread's life; other threads never access it.
        ThreadState(unsafe { &*rseq_impl_thread_state_ptr() })
    }
    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    fn set_flags(&self, flags: u64) {
        self.0.fetch_or(flags, Ordering::Relaxed);
    }
    fn clear_flags(&self, flags: u64) {
        self.0.fetch_and(!flags, Ordering::Relaxed);
    }
    /// Adds one explicit reference; false when the count is saturated
    /// (then nothing was added).
    fn take_ref(&self) -> bool {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                (v & REFS_MASK != REFS_MASK).then_some(v + 1)
            })
            .is_ok()
    }
    /// Drops one explicit reference (none when there is none); returns
    /// the count before.
    fn drop_ref(&self) -> u32 {
        let prev = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(if v & REFS_MASK == 0 { v } else { v - 1 })
            })
            .unwrap_or_else(|v| v);
        (prev & REFS_MASK) as u32
    }
}

/// Runs `f` with every signal blocked.
fn with_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    let old = sys::block_all_signals();
    let r = f();
    sys::restore_sigmask(&old);
    r
}

/// The library's own area of the calling thread.
fn own_area() -> *mut abi::Rseq {
    // SAFETY: plain accessor of area.c.
    arch::thread_pointer()
        .wrapping_offset(unsafe { rseq_impl_area_offset() })
        .cast()
}

fn own_cpu_id() -> i32 {
    // SAFETY: the library's own area is valid static TLS of this thread;
    // the kernel writes it only from this thread's context.
    unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*own_area()).cpu_id)) as i32 }
}

fn sys_register(flags: i32) -> sys::Result<()> {
    if !arch::SUPPORTED {
        return Err(Errno(libc::ENOSYS));
    }
    // SAFETY: the area is this thread's static TLS, valid for every write
    // the kernel can make to it (see "Why there is no unregistration at
    // thread exit" above).
    unsafe {
        sys::rseq(
            own_area(),
            REGISTER_LEN.load(Ordering::Relaxed),
            flags,
            abi::RSEQ_SIG,
        )
    }
}

/// Registers the calling thread's own area unless it is registered.
fn register_own_area(explicit: bool) -> sys::Result<()> {
    if own_cpu_id() >= 0 {
        return Ok(());
    }
    // EBUSY: a signal handler registered the thread in the meantime.
    match sys_register(0) {
        Ok(()) | Err(Errno(libc::EBUSY)) => {
            let state = ThreadState::current();
            if state.get() & REGISTRATION_FAILED != 0 {
                state.clear_flags(REGISTRATION_FAILED);
            }
            // SeqCst: the cpu-op fence's argument (fence.rs,
            // `rseq_possibly_registered`) is Dekker's: this store and the
            // sections' later loads of an ownership word against the
            // engine's word RMW and its SeqCst load of rseq_size. While
            // rseq_size is 0, signals are blocked (see `register_thread`)
            // so that no section of this thread runs before this store.
            if rseq_size.load(Ordering::Relaxed) == 0 {
                let _ = rseq_size.compare_exchange(
                    0,
                    REGISTERED_SIZE.load(Ordering::Relaxed),
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
            }
            Ok(())
        }
        Err(e) => {
            // Remember the failure (in our own TLS, not in the area: its
            // cpu_id stays -1 as with librseq), so that the slow path does
            // not retry the system call on every abort.
            ThreadState::current().set_flags(REGISTRATION_FAILED);
            let size = rseq_size.load(Ordering::Relaxed);
            if explicit && size != 0 && size != u32::MAX {
                // librseq: after one thread registered, a failure in
                // another is an incoherent state of the process.
                std::process::abort();
            }
            Err(e)
        }
    }
}

/// Registers the calling thread (the library owns registration), counting
/// one explicit reference if `explicit`. One `rseq()` call when the thread
/// is not registered, none otherwise; signals are blocked only for the
/// first registration of the process.
fn register_thread(explicit: bool) -> sys::Result<()> {
    let state = ThreadState::current();
    // The reference comes first: a signal handler's register/unregister
    // pair nested anywhere below then never drops the count to 0.
    let counted = explicit && state.take_ref();
    let r = if rseq_size.load(Ordering::Relaxed) == 0 {
        with_signals_blocked(|| register_own_area(explicit))
    } else {
        register_own_area(explicit)
    };
    if r.is_err() && counted {
        state.drop_ref();
    }
    r
}

/// Drops one explicit reference and unregisters the calling thread when
/// none is left (the library owns registration).
fn unregister_thread() -> sys::Result<()> {
    let registered = own_cpu_id() >= 0;
    if ThreadState::current().drop_ref() > 1 {
        return Ok(());
    }
    match sys_register(abi::RSEQ_FLAG_UNREGISTER) {
        // A signal handler nested here unregistered the thread first.
        Err(Errno(libc::EINVAL)) if registered && own_cpu_id() < 0 => Ok(()),
        r => r,
    }
}

/// Registers the calling thread (librseq's `rseq_register_current_thread`).
///
/// When glibc owns registration this succeeds without a system call.
/// Otherwise it makes sure the thread is registered (a thread registered
/// automatically, or by an earlier call, is not registered again, and
/// this is no error: then no system call either) and counts one explicit
/// reference, which [`unregister_current_thread`] drops. As in librseq, a
/// failure after another thread of the process registered successfully
/// aborts the process: the process would otherwise run with incoherent
/// rseq support.
pub fn register_current_thread() -> sys::Result<()> {
    init();
    match owner() {
        Owner::Library => register_thread(true),
        Owner::Libc => foreign(FOREIGN_REGISTER),
        _ => Ok(()),
    }
}

/// Unregisters the calling thread (librseq's
/// `rseq_unregister_current_thread`).
///
/// When glibc owns registration this is a no-op. Otherwise it drops one
/// explicit reference and unregisters the thread when none is left (as
/// the 2017 library's refcount did; one `rseq()` call). A thread
/// unregistered this way is registered again automatically the next time
/// it needs rseq.
pub fn unregister_current_thread() -> sys::Result<()> {
    init();
    match owner() {
        Owner::Library => unregister_thread(),
        Owner::Libc => foreign(FOREIGN_UNREGISTER),
        _ => Ok(()),
    }
}

/// The slow path every fast path takes when it fails: registers the
/// calling thread automatically if the library owns registration and the
/// thread never registered (or unregistered). Async-signal-safe.
#[cold]
pub fn on_slow_path() {
    init();
    match owner() {
        Owner::Library
            if auto_register()
                && own_cpu_id() == abi::CPU_ID_UNINITIALIZED
                && ThreadState::current().get() & REGISTRATION_FAILED == 0 =>
        {
            let _ = register_thread(false);
        }
        Owner::Libc => {
            let _ = foreign(FOREIGN_SLOW_PATH);
        }
        _ => {}
    }
}

/// The signature of [`foreign_registration`].
pub(crate) type ForeignRegistration = extern "C" fn(u32) -> i32;
const FOREIGN_SLOW_PATH: u32 = 0;
const FOREIGN_REGISTER: u32 = 1;
const FOREIGN_UNREGISTER: u32 = 2;

/// Registration on behalf of a copy of the library loaded later (which
/// uses this copy's area, see `crate::anchor`): `what` is 0 for the slow
/// path, 1 for an explicit register, 2 for an explicit unregister.
/// Returns 0 or a negative errno. Part of the ABI between copies.
extern "C" fn foreign_registration(what: u32) -> i32 {
    let r = match what {
        FOREIGN_SLOW_PATH => {
            on_slow_path();
            Ok(())
        }
        FOREIGN_REGISTER => register_current_thread(),
        FOREIGN_UNREGISTER => unregister_current_thread(),
        _ => Err(Errno(libc::EINVAL)),
    };
    r.map_or_else(|e| -e.0, |()| 0)
}

/// Forwards a registration request to the copy that owns registration,
/// when another copy does; otherwise (glibc owns) nothing to do.
fn foreign(what: u32) -> sys::Result<()> {
    let f = FOREIGN.load(Ordering::Acquire);
    if f == 0 {
        return Ok(());
    }
    // SAFETY: FOREIGN holds the address of the first copy's
    // `foreign_registration`, published in its anchor; that copy is
    // NODELETE or outlives this one (it was loaded first).
    let f = unsafe { core::mem::transmute::<usize, ForeignRegistration>(f) };
    match f(what) {
        0 => Ok(()),
        e => Err(Errno(-e)),
    }
}

/// Whether the calling thread currently has a working registration.
pub fn current_thread_registered() -> bool {
    crate::cpu::current_cpu_raw() >= 0
}

/// Why rseq cannot be used, if it cannot: `rseq(NULL, 0, 0, 0)` answers
/// EINVAL on a kernel with rseq; ENOSYS (no rseq), EPERM (refused by a
/// sandbox) or ENOTSUP (no sequences for this architecture) otherwise.
pub fn kernel_unavailable_reason() -> Option<Errno> {
    if !arch::SUPPORTED {
        return Some(Errno(libc::ENOTSUP));
    }
    match sys::rseq_probe() {
        Errno(libc::EINVAL) => None,
        Errno(0) => Some(Errno(libc::ENOSYS)),
        e => Some(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_librseq() {
        // glibc 2.36-2.40 reports 20, older 2.35 reported 32.
        assert_eq!(libc_active_size(20, 28), 28);
        assert_eq!(libc_active_size(32, 28), 28);
        assert_eq!(libc_active_size(32, 20), 20);
        assert_eq!(libc_active_size(20, 33), 32);
        // Any other value is glibc's own, exact answer.
        assert_eq!(libc_active_size(33, 33), 33);
        assert_eq!(libc_active_size(28, 33), 28);
    }

    #[test]
    fn own_registration_uses_the_kernel_sizes() {
        // Linux < 6.3: no auxv entries, the original 20 of 32 bytes.
        assert_eq!(own_registration(20, 32, 64, 64), (32, 20));
        // This machine: feature size 28, align 32.
        assert_eq!(own_registration(28, 32, 64, 64), (32, 28));
        // Linux 7.0: feature size 33, align 64.
        assert_eq!(own_registration(33, 64, 64, 64), (33, 33));
        // ... with this library's area (64 bytes, aligned 32: see area.c):
        // the original registration.
        assert_eq!(own_registration(33, 64, 64, 32), (32, 32));
        assert_eq!(own_registration(28, 32, 64, 32), (32, 28));
        // A future kernel beyond the area: the original registration.
        assert_eq!(own_registration(80, 128, 64, 64), (32, 32));
        assert_eq!(own_registration(40, 128, 64, 64), (32, 32));
    }
}
