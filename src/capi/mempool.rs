//! The per-CPU memory pool (`<rseq/mempool.h>`, librseq's
//! `rseq_mempool_*`). Declared in `generated/mempool-api.h`.
//!
//! Handles: a `struct rseq_mempool *` is a boxed `Arc<Pool>` given to C (the
//! set takes it over in `rseq_mempool_set_add_pool`), a `struct
//! rseq_mempool_attr *` a boxed [`Attr`], a `struct rseq_mempool_set *` a
//! boxed [`MempoolSet`]. Pointer-returning functions return NULL with
//! errno on failure; int-returning ones 0, or -1 with errno.

use core::ffi::{c_char, c_int, c_uint, c_ulong, c_void, CStr};
use std::sync::Arc;

use super::{fail, guard};
use crate::mempool::{self, Attr, Kind, MempoolSet, Pool, Populate};
use crate::sys::Errno;
use libc::{size_t, uintptr_t};

/// C `struct rseq_mempool` (opaque).
#[repr(C)]
pub struct RseqMempool {
    _opaque: [u8; 0],
}

/// C `struct rseq_mempool_attr` (opaque).
#[repr(C)]
pub struct RseqMempoolAttr {
    _opaque: [u8; 0],
}

/// C `struct rseq_mempool_set` (opaque).
#[repr(C)]
pub struct RseqMempoolSet {
    _opaque: [u8; 0],
}

/// C `enum rseq_mempool_populate_policy`, validated before use.
#[repr(transparent)]
#[derive(Clone, Copy, Debug)]
pub struct RseqMempoolPopulatePolicy(pub c_uint);

/// The user's `priv` pointer, passed back to the user's callback only.
#[derive(Clone, Copy)]
struct Priv(*mut c_void);
// SAFETY: the pointer is never dereferenced by the library; librseq calls
// the callback from whichever thread creates a range, and so do we.
unsafe impl Send for Priv {}
// SAFETY: as above.
unsafe impl Sync for Priv {}

fn null<T>(errno: i32) -> *mut T {
    Errno(errno).set();
    core::ptr::null_mut()
}

fn attr_mut<'a>(attr: *mut RseqMempoolAttr) -> Option<&'a mut Attr> {
    // SAFETY: a non-NULL attr comes from rseq_mempool_attr_create (a boxed
    // Attr) and is not destroyed yet, by contract.
    unsafe { attr.cast::<Attr>().as_mut() }
}

fn pool_ref<'a>(pool: *mut RseqMempool) -> Option<&'a Arc<Pool>> {
    if pool.is_null() {
        return None;
    }
    // SAFETY: a non-NULL pool comes from rseq_mempool_create (a boxed
    // Arc<Pool>) and is not destroyed yet, by contract.
    Some(unsafe { &*(pool as *const Arc<Pool>) })
}

/// Creates a pool of `item_len`-byte items (rounded up to a power of two,
/// at least a pointer) with `attr` (NULL: per-CPU, 64 KiB stride, one copy
/// per possible CPU, copy-on-write init). `pool_name` (may be NULL) is
/// copied. NULL with errno EINVAL (`item_len` 0 or above the stride, bad
/// stride or CPU count, unknown policy), ENOMEM, or the init callback's
/// errno.
#[no_mangle]
pub extern "C" fn rseq_mempool_create(
    pool_name: *const c_char,
    item_len: size_t,
    attr: *const RseqMempoolAttr,
) -> *mut RseqMempool {
    guard(core::ptr::null_mut(), || {
        let name = if pool_name.is_null() {
            None
        } else {
            // SAFETY: a non-NULL name is a C string, by contract.
            Some(unsafe { CStr::from_ptr(pool_name) }.to_string_lossy())
        };
        let default = Attr::default();
        // SAFETY: as in `attr_mut`, read only.
        let attr = unsafe { attr.cast::<Attr>().as_ref() }.unwrap_or(&default);
        match Pool::new(name.as_deref(), item_len, attr) {
            // The handle is a boxed Arc, so that `pool_ref` can lend it.
            Ok(pool) => Box::into_raw(Box::new(pool)).cast(),
            Err(e) => null(e.0),
        }
    })
}

/// Destroys a pool and returns its memory (items still allocated become
/// invalid; a robust pool aborts instead, with a message). NULL: 0.
#[no_mangle]
pub extern "C" fn rseq_mempool_destroy(pool: *mut RseqMempool) -> c_int {
    guard(-1, || {
        if pool.is_null() {
            return 0;
        }
        // SAFETY: the handle is a boxed Arc from rseq_mempool_create,
        // destroyed once, by contract.
        let pool = unsafe { Box::from_raw(pool.cast::<Arc<Pool>>()) };
        pool.destroy();
        0
    })
}

fn pool_alloc(pool: *mut RseqMempool, zero: bool, init: Option<&[u8]>) -> *mut c_void {
    let Some(pool) = pool_ref(pool) else {
        return null(libc::EINVAL);
    };
    match pool.alloc(zero, init) {
        Ok(p) => p.cast(),
        Err(e) => null(e.0),
    }
}

fn init_slice<'a>(init_ptr: *mut c_void, init_len: size_t) -> Result<Option<&'a [u8]>, Errno> {
    if init_len == 0 {
        return Ok(Some(&[]));
    }
    if init_ptr.is_null() {
        return Err(Errno(libc::EINVAL));
    }
    // SAFETY: `init_ptr` points to `init_len` readable bytes, by contract.
    Ok(Some(unsafe {
        core::slice::from_raw_parts(init_ptr.cast::<u8>(), init_len)
    }))
}

/// Allocates an item (contents: the pool's initial values, the poison,
/// or what the last user left). Returns CPU 0's copy; CPU n's copy is at
/// `+ n * stride` (`rseq_percpu_ptr()`). NULL with errno ENOMEM or EINVAL.
#[no_mangle]
pub extern "C" fn rseq_mempool_percpu_malloc(pool: *mut RseqMempool) -> *mut c_void {
    guard(core::ptr::null_mut(), || pool_alloc(pool, false, None))
}

/// Allocates an item with every CPU's copy zeroed (copies that already
/// read as zero are not written, so their pages stay shared).
#[no_mangle]
pub extern "C" fn rseq_mempool_percpu_zmalloc(pool: *mut RseqMempool) -> *mut c_void {
    guard(core::ptr::null_mut(), || pool_alloc(pool, true, None))
}

/// Allocates an item and copies `init_len` bytes from `init_ptr` into
/// every CPU's copy (EINVAL when `init_len` exceeds the item size).
#[no_mangle]
pub extern "C" fn rseq_mempool_percpu_malloc_init(
    pool: *mut RseqMempool,
    init_ptr: *mut c_void,
    init_len: size_t,
) -> *mut c_void {
    guard(core::ptr::null_mut(), || {
        match init_slice(init_ptr, init_len) {
            Ok(init) => pool_alloc(pool, false, init),
            Err(e) => null(e.0),
        }
    })
}

/// Frees an item (CPU 0's copy) of any pool; `stride` must be its pool's.
/// NULL is a no-op. A pointer of no pool, an interior pointer, a wrong
/// stride or a double free is reported on stderr and ignored, with errno
/// EINVAL; in a robust pool it aborts the process.
#[no_mangle]
pub extern "C" fn librseq_mempool_percpu_free(ptr: *mut c_void, stride: size_t) {
    guard((), || {
        if let Err(e) = mempool::free(ptr as usize, stride) {
            e.set();
        }
    })
}

/// Creates an empty pool set. NULL with errno ENOMEM.
#[no_mangle]
pub extern "C" fn rseq_mempool_set_create() -> *mut RseqMempoolSet {
    guard(core::ptr::null_mut(), || {
        Box::into_raw(Box::new(MempoolSet::new())).cast()
    })
}

/// Destroys a set and every pool added to it. NULL: 0.
#[no_mangle]
pub extern "C" fn rseq_mempool_set_destroy(set: *mut RseqMempoolSet) -> c_int {
    guard(-1, || {
        if set.is_null() {
            return 0;
        }
        // SAFETY: a set from rseq_mempool_set_create, destroyed once.
        let set = unsafe { Box::from_raw(set.cast::<MempoolSet>()) };
        set.destroy();
        0
    })
}

/// Adds `pool` to `set`, which owns it from then on (destroy the set, not
/// the pool). -1 with EINVAL (NULL) or EBUSY (the set has a pool of that
/// item size; the pool stays the caller's).
#[no_mangle]
pub extern "C" fn rseq_mempool_set_add_pool(
    set: *mut RseqMempoolSet,
    pool: *mut RseqMempool,
) -> c_int {
    guard(-1, || {
        // SAFETY: a non-NULL set comes from rseq_mempool_set_create.
        let Some(s) = (unsafe { set.cast::<MempoolSet>().as_ref() }) else {
            return fail(libc::EINVAL);
        };
        let Some(p) = pool_ref(pool) else {
            return fail(libc::EINVAL);
        };
        match s.add_pool(p.clone()) {
            Ok(()) => {
                // The set holds the pool now: free the C handle (its Arc).
                // SAFETY: the boxed Arc from rseq_mempool_create.
                drop(unsafe { Box::from_raw(pool.cast::<Arc<Pool>>()) });
                0
            }
            Err(e) => fail(e.0),
        }
    })
}

fn set_alloc(
    set: *mut RseqMempoolSet,
    len: size_t,
    zero: bool,
    init: Option<&[u8]>,
) -> *mut c_void {
    // SAFETY: a non-NULL set comes from rseq_mempool_set_create.
    let Some(s) = (unsafe { set.cast::<MempoolSet>().as_ref() }) else {
        return null(libc::EINVAL);
    };
    match s.alloc(len, zero, init) {
        Ok((p, _)) => p.cast(),
        Err(e) => null(e.0),
    }
}

/// Allocates `len` bytes from the set's smallest fitting pool (the next
/// one when it is full). NULL with errno ENOMEM (no pool fits or has room).
#[no_mangle]
pub extern "C" fn rseq_mempool_set_percpu_malloc(
    set: *mut RseqMempoolSet,
    len: size_t,
) -> *mut c_void {
    guard(core::ptr::null_mut(), || set_alloc(set, len, false, None))
}

/// As `rseq_mempool_set_percpu_malloc`, every CPU's copy zeroed.
#[no_mangle]
pub extern "C" fn rseq_mempool_set_percpu_zmalloc(
    set: *mut RseqMempoolSet,
    len: size_t,
) -> *mut c_void {
    guard(core::ptr::null_mut(), || set_alloc(set, len, true, None))
}

/// As `rseq_mempool_set_percpu_malloc` for `len` bytes, each CPU's copy
/// initialised from `init_ptr`.
#[no_mangle]
pub extern "C" fn rseq_mempool_set_percpu_malloc_init(
    set: *mut RseqMempoolSet,
    init_ptr: *mut c_void,
    len: size_t,
) -> *mut c_void {
    guard(core::ptr::null_mut(), || match init_slice(init_ptr, len) {
        Ok(init) => set_alloc(set, len, false, init),
        Err(e) => null(e.0),
    })
}

/// Creates an attribute set with the defaults (see `rseq_mempool_create`).
#[no_mangle]
pub extern "C" fn rseq_mempool_attr_create() -> *mut RseqMempoolAttr {
    guard(core::ptr::null_mut(), || {
        Box::into_raw(Box::new(Attr::default())).cast()
    })
}

/// Destroys an attribute set (pools created with it are not affected).
#[no_mangle]
pub extern "C" fn rseq_mempool_attr_destroy(attr: *mut RseqMempoolAttr) {
    guard((), || {
        if !attr.is_null() {
            // SAFETY: a boxed Attr from rseq_mempool_attr_create, once.
            drop(unsafe { Box::from_raw(attr.cast::<Attr>()) });
        }
    })
}

fn with_attr(attr: *mut RseqMempoolAttr, f: impl FnOnce(&mut Attr) -> c_int) -> c_int {
    guard(-1, || match attr_mut(attr) {
        Some(a) => f(a),
        None => fail(libc::EINVAL),
    })
}

/// Sets the callback run for every CPU's slice of every new range
/// (`cpu` -1 in a global pool); a non-zero return fails the range (the
/// create or malloc that needed it fails). -1/EINVAL for a NULL attr.
#[no_mangle]
pub extern "C" fn rseq_mempool_attr_set_init(
    attr: *mut RseqMempoolAttr,
    init_func: Option<
        unsafe extern "C" fn(
            init_priv: *mut c_void,
            addr: *mut c_void,
            len: size_t,
            cpu: c_int,
        ) -> c_int,
    >,
    init_priv: *mut c_void,
) -> c_int {
    with_attr(attr, |a| {
        let priv_ = Priv(init_priv);
        a.init = init_func.map(|f| -> mempool::InitFn {
            Arc::new(move |addr, len, cpu| {
                let p = priv_;
                // SAFETY: the user's callback with the user's pointer and
                // one slice of a range, as librseq calls it.
                match unsafe { f(p.0, addr.cast(), len, cpu) } {
                    0 => Ok(()),
                    _ => Err(Errno::last()),
                }
            })
        });
        0
    })
}

/// Makes pools created with `attr` robust (misuse aborts; see README).
#[no_mangle]
pub extern "C" fn rseq_mempool_attr_set_robust(attr: *mut RseqMempoolAttr) -> c_int {
    with_attr(attr, |a| {
        a.robust = true;
        0
    })
}

/// Per-CPU pool: `stride` bytes between copies (0: 64 KiB; a power of two
/// of at least a page), `max_nr_cpus` copies (0: the possible CPUs).
/// Checked when the pool is created.
#[no_mangle]
pub extern "C" fn rseq_mempool_attr_set_percpu(
    attr: *mut RseqMempoolAttr,
    stride: size_t,
    max_nr_cpus: c_int,
) -> c_int {
    with_attr(attr, |a| {
        a.kind = Kind::PerCpu {
            stride,
            max_nr_cpus,
        };
        0
    })
}

/// Global pool (one copy) with ranges of `stride` bytes (0: 64 KiB).
#[no_mangle]
pub extern "C" fn rseq_mempool_attr_set_global(
    attr: *mut RseqMempoolAttr,
    stride: size_t,
) -> c_int {
    with_attr(attr, |a| {
        a.kind = Kind::Global { stride };
        0
    })
}

/// At most `max_nr_ranges` ranges per pool (0: unlimited); then malloc
/// fails with ENOMEM.
#[no_mangle]
pub extern "C" fn rseq_mempool_attr_set_max_nr_ranges(
    attr: *mut RseqMempoolAttr,
    max_nr_ranges: c_ulong,
) -> c_int {
    with_attr(attr, |a| {
        // c_ulong is 32 bits on i386 and 64 bits on x86_64.
        #[allow(clippy::unnecessary_cast)]
        {
            a.max_nr_ranges = max_nr_ranges as u64;
        }
        0
    })
}

/// Every word of every free item (every CPU's copy) holds `poison`.
#[no_mangle]
pub extern "C" fn rseq_mempool_attr_set_poison(
    attr: *mut RseqMempoolAttr,
    poison: uintptr_t,
) -> c_int {
    with_attr(attr, |a| {
        a.poison = Some(poison);
        0
    })
}

/// `RSEQ_MEMPOOL_POPULATE_COW_INIT` (0, default) or
/// `RSEQ_MEMPOOL_POPULATE_COW_ZERO` (1); -1/EINVAL for another value.
#[no_mangle]
pub extern "C" fn rseq_mempool_attr_set_populate_policy(
    attr: *mut RseqMempoolAttr,
    policy: RseqMempoolPopulatePolicy,
) -> c_int {
    with_attr(attr, |a| match Populate::from_raw(policy.0) {
        Some(p) => {
            a.populate = p;
            0
        }
        None => fail(libc::EINVAL),
    })
}

/// Binds one CPU's slice of a range to that CPU's NUMA node (`mbind`; no
/// libnuma needed), for use from an init callback; `numa_flags` as for
/// `move_pages` (`MPOL_MF_MOVE`, `MPOL_MF_MOVE_ALL`). Succeeds without
/// doing anything for `cpu` < 0 and on kernels without NUMA. 0, or -1
/// with errno.
#[no_mangle]
pub extern "C" fn rseq_mempool_range_init_numa(
    addr: *mut c_void,
    len: size_t,
    cpu: c_int,
    numa_flags: c_int,
) -> c_int {
    guard(-1, || {
        match mempool::range_init_numa(addr as usize, len, cpu, numa_flags) {
            Ok(()) => 0,
            Err(e) => fail(e.0),
        }
    })
}

/// The number of CPU copies of a per-CPU pool; -1/EINVAL for NULL or a
/// global pool.
#[no_mangle]
pub extern "C" fn rseq_mempool_get_max_nr_cpus(pool: *mut RseqMempool) -> c_int {
    guard(-1, || match pool_ref(pool) {
        Some(p) if p.is_percpu() => p.nr_cpus() as c_int,
        _ => fail(libc::EINVAL),
    })
}
