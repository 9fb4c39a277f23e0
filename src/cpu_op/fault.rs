//! Running a `cpu_opv()` vector on the caller's memory directly, with a
//! fault turned into EFAULT (EAGAIN with `expect_fault`) instead of a
//! signal, at no system call per access (the C half is `fault.c`).
//!
//! # The mechanism
//!
//! The first `cpu_opv()` installs the library's SIGSEGV and SIGBUS
//! handler, keeping the actions it replaces. Every access of a vector
//! runs inside [`call`], which makes a stack frame the thread's recovery
//! point and declares, before each operation, the pages that operation
//! touches. The handler treats a signal as the library's only when all
//! of these hold: the thread has a recovery point, the kernel raised the
//! signal for an access (`si_code > 0`: not `kill`, `tgkill` or
//! `sigqueue`), the faulting address is in the declared pages, the
//! interrupted instruction is in this library's code and the stack
//! pointer in the window just below the recovery frame. It then jumps
//! back to the recovery point, which returns the address. Every other
//! signal goes to the action the library replaced, run as the kernel
//! would have run it (its mask, `SA_SIGINFO` or not, the default action
//! by restoring it and letting the fault happen again). So a program's
//! own SIGSEGV handler, installed before the library's, keeps working.
//!
//! What it asks of a program: a SIGSEGV or SIGBUS handler installed
//! *after* the first `cpu_opv()` must pass on the faults it does not
//! handle to the action it replaced (as sanitizers, language runtimes and
//! crash reporters do); one that does not sees the library's faults on
//! bad `cpu_opv()` addresses, as it would see a fault in `memcpy`.
//! `RSEQ_CPU_OPV_KERNEL_COPY=1` in the environment (read once) keeps the
//! library from installing anything: every access then goes through the
//! kernel ([`super::checked`], a system call per access), as on ARMv8.0
//! without LSE atomics, whose write check needs a compare-and-swap that
//! single-stepping defeats, and under valgrind (whose memcheck would
//! report every recovered fault as an invalid access of the library).
//!
//! # What a fault leaves done
//!
//! As before ([`super::checked`]): the ranges a fault could leave half
//! done (those of the operations after the first writing one, and the
//! writing ranges of the first one that span two pages) are checked
//! first, with a load for a read and a compare-and-swap of a byte with
//! itself for a write (a real write access that changes nothing, atomic
//! with respect to every other access to that byte), inside the same
//! recovery point: a bad address that was bad before the call changes
//! nothing. Only memory unmapped by another thread while the vector runs
//! can stop it half way (EFAULT still).
//!
//! # Signals while a vector holds a CPU
//!
//! Faults must be able to reach the handler during a hold (a blocked
//! SIGSEGV raised by a fault kills the process), so a vector's hold
//! blocks every signal but SIGSEGV and SIGBUS. A SIGSEGV or SIGBUS *sent*
//! meanwhile (by `kill` and the like) is caught by the library's handler,
//! kept, and sent again to the thread with the same siginfo right after
//! the hold, when a blocked one would have been delivered: no handler of
//! the program runs inside a hold.

use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicU8, Ordering};

use super::vector::{ranges, Access, CpuOp, OpType, Range};
use crate::sys::Errno;

/// The recovery point (`struct rseq_impl_fault_rec` in `fault.c`): the
/// declared page ranges, the faulting address, then the C side's jump
/// buffer (sized for every supported architecture, checked at
/// installation).
#[repr(C, align(16))]
pub struct Recovery {
    lo: [usize; 2],
    hi: [usize; 2],
    addr: usize,
    rest: [u64; 64],
}

/// Signals kept during a hold (`struct rseq_impl_fault_defer`).
#[repr(C, align(16))]
pub struct Defer {
    raw: [u64; 48],
}

extern "C" {
    fn rseq_impl_fault_install() -> c_int;
    fn rseq_impl_fault_call(
        f: unsafe extern "C" fn(*mut c_void, *mut Recovery) -> c_int,
        arg: *mut c_void,
        rec: *mut Recovery,
    ) -> c_int;
    fn rseq_impl_fault_probe_write(addr: usize);
    fn rseq_impl_fault_defer_begin(d: *mut Defer);
    fn rseq_impl_fault_defer_end(d: *mut Defer);
    fn rseq_impl_fault_sizes(which: c_int) -> usize;
    fn rseq_impl_fault_handler_current() -> c_int;
}

/// Whether the library's handler is the current action of SIGSEGV and
/// SIGBUS now (two `sigaction` queries). A vector that must hold a word
/// runs directly only then: with a program's handler installed over the
/// library's, a SIGSEGV sent during the hold would reach that handler
/// inside the hold, so such a vector takes the kernel copies with every
/// signal blocked instead.
pub fn handler_current() -> bool {
    // SAFETY: two queries of the dispositions.
    unsafe { rseq_impl_fault_handler_current() == 1 }
}

const PAGE: usize = 4096;

static STATE: AtomicU8 = AtomicU8::new(0);

/// Whether vectors run directly with fault recovery (see the module
/// documentation): decided once, installing the handler on first use.
pub fn available() -> bool {
    match STATE.load(Ordering::Acquire) {
        1 => true,
        2 => false,
        _ => {
            let ok = decide();
            STATE.store(if ok { 1 } else { 2 }, Ordering::Release);
            ok
        }
    }
}

fn decide() -> bool {
    if cfg!(miri) || !super::engine::user_cas_progresses() {
        return false;
    }
    // SAFETY: a NUL-terminated name; getenv allocates nothing.
    let env = unsafe { libc::getenv(c"RSEQ_CPU_OPV_KERNEL_COPY".as_ptr()) };
    // SAFETY: a non-NULL getenv result is a NUL-terminated string.
    if !env.is_null() && unsafe { *env } == b'1' as libc::c_char {
        return false;
    }
    // Under valgrind (its preloaded core library names it), the direct
    // path's recovered faults would be reported as invalid accesses of
    // the library: there every access goes through the kernel, which
    // memcheck does not flag.
    // SAFETY: as above.
    let preload = unsafe { libc::getenv(c"LD_PRELOAD".as_ptr()) };
    if !preload.is_null() {
        // SAFETY: a non-NULL getenv result is a NUL-terminated string.
        let value = unsafe { core::ffi::CStr::from_ptr(preload) };
        if value.to_bytes().windows(9).any(|w| w == b"vgpreload") {
            return false;
        }
    }
    // SAFETY: plain queries of the C side's struct sizes.
    let fits = unsafe {
        rseq_impl_fault_sizes(1) <= core::mem::size_of::<Recovery>()
            && rseq_impl_fault_sizes(0) <= core::mem::size_of::<Defer>()
    };
    // SAFETY: installs the handlers once; thread-safe.
    fits && unsafe { rseq_impl_fault_install() } == 0
}

/// Declares the pages the next accesses touch (at most two ranges).
#[inline]
fn declare(rec: *mut Recovery, a: Option<(usize, usize)>, b: Option<(usize, usize)>) {
    let page = |r: Option<(usize, usize)>| match r {
        Some((addr, len)) if len != 0 => {
            let lo = addr & !(PAGE - 1);
            let hi = addr
                .saturating_add(len - 1)
                .checked_add(PAGE)
                .map_or(usize::MAX, |e| e & !(PAGE - 1));
            (lo, hi)
        }
        _ => (0, 0),
    };
    let (a, b) = (page(a), page(b));
    // SAFETY: `rec` is the live recovery point of this thread's `call`;
    // volatile, because the signal handler reads these fields.
    unsafe {
        core::ptr::addr_of_mut!((*rec).lo[0]).write_volatile(a.0);
        core::ptr::addr_of_mut!((*rec).hi[0]).write_volatile(a.1);
        core::ptr::addr_of_mut!((*rec).lo[1]).write_volatile(b.0);
        core::ptr::addr_of_mut!((*rec).hi[1]).write_volatile(b.1);
    }
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
}

unsafe extern "C" fn trampoline<F: FnMut(*mut Recovery) -> i32>(
    arg: *mut c_void,
    rec: *mut Recovery,
) -> c_int {
    // SAFETY: `arg` is the `F` that `call` passed, alive for the call.
    unsafe { (*arg.cast::<F>())(rec) }
}

/// Runs `f` with a recovery point: `Ok(f's value)`, or `Err(address)`
/// when an access to pages `f` declared faulted (`f` was cut short).
///
/// `f` must leave nothing to undo when it is cut short: no value with a
/// destructor, no lock, nothing half registered (the frames between the
/// recovery point and the fault are discarded, not unwound).
pub fn call<F: FnMut(*mut Recovery) -> i32>(mut f: F) -> Result<i32, usize> {
    let mut rec = core::mem::MaybeUninit::<Recovery>::uninit();
    // SAFETY: the trampoline matches `F`; `rec` is writable storage the C
    // side initialises before use; `f` lives across the call.
    let r = unsafe {
        rseq_impl_fault_call(trampoline::<F>, (&mut f as *mut F).cast(), rec.as_mut_ptr())
    };
    if r == -1 {
        // SAFETY: initialised by the C side (a fault sets `addr`; `f`
        // never returns -1 itself).
        return Err(unsafe { core::ptr::addr_of!((*rec.as_ptr()).addr).read_volatile() });
    }
    Ok(r)
}

/// Keeps a SIGSEGV or SIGBUS sent during a hold (see the module
/// documentation) from the creation of the guard until its drop, which
/// sends the kept signals again. Create it before the hold's mask, drop
/// it after the mask is restored.
pub struct DeferGuard<'a> {
    d: &'a mut Defer,
}

impl<'a> DeferGuard<'a> {
    /// Starts keeping signals into `d`.
    pub fn new(d: &'a mut Defer) -> DeferGuard<'a> {
        // SAFETY: `d` outlives the guard, whose drop unregisters it.
        unsafe { rseq_impl_fault_defer_begin(d) };
        DeferGuard { d }
    }
}

impl Defer {
    /// An empty buffer.
    pub fn new() -> Defer {
        Defer { raw: [0; 48] }
    }
}

impl Default for Defer {
    fn default() -> Self {
        Defer::new()
    }
}

impl Drop for DeferGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: the buffer registered by `new`.
        unsafe { rseq_impl_fault_defer_end(self.d) };
    }
}

/// Reads one operation of the caller's vector, once (volatile: the read
/// stays inside the recovery point), in four words when it is aligned as
/// C aligns it.
///
/// # Safety
/// Inside a recovery point whose declared pages hold the operation.
unsafe fn read_op(src: *const CpuOp) -> CpuOp {
    // SAFETY: per the contract; CpuOp is 32 bytes of plain data, any bit
    // pattern valid.
    unsafe {
        if (src as usize).is_multiple_of(8) {
            core::mem::transmute::<[u64; 4], CpuOp>(src.cast::<[u64; 4]>().read_volatile())
        } else {
            core::mem::transmute::<[u8; 32], CpuOp>(src.cast::<[u8; 32]>().read_volatile())
        }
    }
}

/// Copies `n` operations from caller memory (`cpu_opv()`'s vector):
/// EFAULT for a bad pointer.
///
/// # Safety
/// `src` is the caller's vector pointer (it may be bad: that is EFAULT).
pub unsafe fn copy_in(dst: &mut [CpuOp], src: *const CpuOp) -> Result<(), Errno> {
    let n = dst.len();
    let out = dst.as_mut_ptr();
    let bytes = core::mem::size_of_val(dst);
    call(|rec| {
        declare(rec, Some((src as usize, bytes)), None);
        for i in 0..n {
            // SAFETY: a fault on the declared pages is recovered; `out`
            // has room for `n` operations.
            unsafe { out.add(i).write(read_op(src.add(i))) };
        }
        0
    })
    .map(|_| ())
    .map_err(|_| Errno(libc::EFAULT))
}

/// The errno for a fault at `addr` in a vector: the range holding the
/// address (byte-exact first, then by page, in the order the kernel
/// checked them) decides between EFAULT and EAGAIN.
pub fn fault_errno(ops: &[CpuOp], addr: usize) -> Errno {
    let errno = |r: &Range| {
        Errno(if r.expect_fault {
            libc::EAGAIN
        } else {
            libc::EFAULT
        })
    };
    let all = || {
        ops.iter().flat_map(|op| {
            let (rs, n) = ranges(op);
            rs.into_iter().take(n).flatten()
        })
    };
    if let Some(r) = all().find(|r| r.len != 0 && addr.wrapping_sub(r.addr) < r.len) {
        return errno(&r);
    }
    if let Some(r) = all().find(|r| {
        r.len != 0 && {
            let lo = r.addr & !(PAGE - 1);
            let hi = (r.addr.saturating_add(r.len - 1)) | (PAGE - 1);
            addr >= lo && addr <= hi
        }
    }) {
        return errno(&r);
    }
    Errno(libc::EFAULT)
}

/// Checks every page of `r` for its access (see the module
/// documentation); a bad page faults, inside the caller's recovery point.
fn probe(rec: *mut Recovery, r: &Range) {
    if r.len == 0 {
        return;
    }
    declare(rec, Some((r.addr, r.len)), None);
    let last = r.addr.saturating_add(r.len - 1);
    let mut p = r.addr;
    loop {
        match r.access {
            // SAFETY: a fault on the declared pages is recovered.
            Access::Read => unsafe {
                (p as *const u8).read_volatile();
            },
            // SAFETY: as above; the probe changes nothing.
            Access::Write => unsafe { rseq_impl_fault_probe_write(p) },
        }
        match (p & !(PAGE - 1)).checked_add(PAGE) {
            Some(next) if next <= last => p = next,
            _ => return,
        }
    }
}

/// `len` bytes at `p` as an integer (1, 2, 4 or 8 bytes, any alignment).
///
/// # Safety
/// Inside a recovery point whose declared pages hold `p..p+len`.
unsafe fn load_int(p: usize, len: usize) -> u64 {
    // SAFETY: per the contract (a bad page faults into the recovery).
    unsafe {
        match len {
            1 => u64::from((p as *const u8).read_volatile()),
            2 => u64::from(u16::from_ne_bytes((p as *const [u8; 2]).read_volatile())),
            4 => u64::from(u32::from_ne_bytes((p as *const [u8; 4]).read_volatile())),
            _ => u64::from_ne_bytes((p as *const [u8; 8]).read_volatile()),
        }
    }
}

/// Stores the low `len` bytes of `v` at `p`.
///
/// # Safety
/// As [`load_int`].
unsafe fn store_int(p: usize, len: usize, v: u64) {
    // SAFETY: per the contract.
    unsafe {
        match len {
            1 => (p as *mut u8).write_volatile(v as u8),
            2 => (p as *mut [u8; 2]).write_volatile((v as u16).to_ne_bytes()),
            4 => (p as *mut [u8; 4]).write_volatile((v as u32).to_ne_bytes()),
            _ => (p as *mut [u8; 8]).write_volatile(v.to_ne_bytes()),
        }
    }
}

/// Whether `len` bytes at `a` and `b` are equal.
///
/// # Safety
/// As [`load_int`], for both ranges.
unsafe fn equal(a: usize, b: usize, len: usize) -> bool {
    let mut i = 0;
    // SAFETY: per the contract; 8-byte chunks, then bytes.
    unsafe {
        while i + 8 <= len {
            if ((a + i) as *const [u8; 8]).read_volatile()
                != ((b + i) as *const [u8; 8]).read_volatile()
            {
                return false;
            }
            i += 8;
        }
        while i < len {
            if ((a + i) as *const u8).read_volatile() != ((b + i) as *const u8).read_volatile() {
                return false;
            }
            i += 1;
        }
    }
    true
}

/// Copies `len` bytes (overlap allowed, as `memmove`).
///
/// # Safety
/// As [`load_int`], for both ranges.
unsafe fn copy(dst: usize, src: usize, len: usize) {
    if len == 0 || dst == src {
        return;
    }
    // SAFETY: per the contract. Forward when the destination is below
    // the source, backward otherwise: every chunk is read before a write
    // can reach it.
    unsafe {
        if dst < src {
            let mut i = 0;
            while i + 8 <= len {
                let w = ((src + i) as *const [u8; 8]).read_volatile();
                ((dst + i) as *mut [u8; 8]).write_volatile(w);
                i += 8;
            }
            while i < len {
                let b = ((src + i) as *const u8).read_volatile();
                ((dst + i) as *mut u8).write_volatile(b);
                i += 1;
            }
        } else {
            let mut i = len;
            while i >= 8 {
                i -= 8;
                let w = ((src + i) as *const [u8; 8]).read_volatile();
                ((dst + i) as *mut [u8; 8]).write_volatile(w);
            }
            while i > 0 {
                i -= 1;
                let b = ((src + i) as *const u8).read_volatile();
                ((dst + i) as *mut u8).write_volatile(b);
            }
        }
    }
}

/// The result of one arithmetic, bitwise or shift operation on `x`.
pub fn apply(op: &CpuOp, x: u64) -> u64 {
    match OpType::from_raw(op.op) {
        Some(OpType::Add) => x.wrapping_add(op.count() as u64),
        Some(OpType::Or) => x | op.mask(),
        Some(OpType::And) => x & op.mask(),
        Some(OpType::Xor) => x ^ op.mask(),
        Some(OpType::Lshift) => x << op.bits(),
        Some(OpType::Rshift) => x >> op.bits(),
        _ => x,
    }
}

/// Checks the ranges a fault could leave half done, then runs a
/// validated vector, all on the caller's memory directly. To be called
/// inside [`call`] with the target held. `0` done, `n` compare `n`
/// (1-based) failed.
pub fn run(rec: *mut Recovery, ops: &[CpuOp]) -> i32 {
    // The probe plan never fails here: a bad page faults out of `call`.
    let _ = super::checked::probe_plan(ops, |r| {
        probe(rec, r);
        Ok(())
    });
    for (i, op) in ops.iter().enumerate() {
        let len = op.len as usize;
        let (a, b) = (op.addr0(), op.addr1());
        let kind = OpType::from_raw(op.op);
        match kind {
            Some(OpType::Mb) => {
                core::sync::atomic::fence(Ordering::SeqCst);
                continue;
            }
            Some(OpType::CompareEq | OpType::CompareNe | OpType::Memcpy) => {
                declare(rec, Some((a, len)), Some((b, len)))
            }
            _ => declare(rec, Some((a, len)), None),
        }
        // SAFETY: inside the recovery point with the pages declared; the
        // caller of `cpu_opv` vouches for the ranges (see `opv`).
        unsafe {
            match kind {
                Some(OpType::CompareEq) => {
                    if !equal(a, b, len) {
                        return i as i32 + 1;
                    }
                }
                Some(OpType::CompareNe) => {
                    if equal(a, b, len) {
                        return i as i32 + 1;
                    }
                }
                Some(OpType::Memcpy) => copy(a, b, len),
                _ => store_int(a, len, apply(op, load_int(a, len))),
            }
        }
    }
    0
}

/// A one-operation vector that an own-CPU section can run: an
/// arithmetic, bitwise or shift operation on one aligned pointer-sized
/// word (one load, one commit store).
pub fn one_word_op(ops: &[CpuOp]) -> Option<(*mut isize, &CpuOp)> {
    let [op] = ops else { return None };
    let word = core::mem::size_of::<isize>();
    let rmw = matches!(
        OpType::from_raw(op.op),
        Some(
            OpType::Add | OpType::Or | OpType::And | OpType::Xor | OpType::Lshift | OpType::Rshift
        )
    );
    (rmw && op.len as usize == word && op.addr0() % word == 0)
        .then_some((op.addr0() as *mut isize, op))
}

/// Outcome of [`one_op_own_cpu`].
pub enum OneOp {
    /// The section committed: the vector is done.
    Done,
    /// Not done (not a one-word operation, another CPU, an abort, an
    /// invalid vector or target): the copy of the vector is in `dst`,
    /// take the general path, which validates it.
    Copied,
    /// The copy of the vector faulted: EFAULT.
    VectorFault,
    /// The operation's word faulted: the address.
    WordFault(usize),
}

/// `cpu_opv()` of one operation from C, in one recovery point: copies the
/// caller's operation into `dst[0]`, and when it is an arithmetic,
/// bitwise or shift operation on one aligned pointer-sized word of the
/// caller's CPU (or mm_cid), reads the word and stores the result with
/// one `load_cbne_store` section on `target` (see `cpu_op::opv` for why a
/// committed section is the vector). A fault in the section aborts it
/// (the kernel moves it to its abort handler before delivering the
/// signal) and the handler jumps back here.
///
/// # Safety
/// `src` is the caller's vector pointer (a bad one is `VectorFault`); the
/// caller of `cpu_opv` vouches for the word.
pub unsafe fn one_op_own_cpu(
    dst: &mut CpuOp,
    src: *const CpuOp,
    target: i32,
    mode: crate::ops::PercpuMode,
    may_commit: impl Fn() -> bool,
) -> OneOp {
    let out: *mut CpuOp = dst;
    let word = core::mem::size_of::<isize>();
    // 0 copying the vector, 1 on the word: the handler cuts `f` short, so
    // the stage is kept in memory (volatile) for the caller to read.
    let mut stage = 0u8;
    let stage_p: *mut u8 = &mut stage;
    let r = call(|rec| {
        declare(
            rec,
            Some((src as usize, core::mem::size_of::<CpuOp>())),
            None,
        );
        // SAFETY: a fault on the declared pages is recovered; `out` is
        // writable.
        let op = unsafe {
            let op = read_op(src);
            out.write(op);
            op
        };
        let Some((p, op)) = one_word_op(core::slice::from_ref(&op)) else {
            return 0;
        };
        let op = *op;
        if super::vector::validate(core::slice::from_ref(&op)).is_err() || !may_commit() {
            return 0;
        }
        // SAFETY: a local byte; volatile so that it is in memory before
        // the accesses below can fault.
        unsafe { stage_p.write_volatile(1) };
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
        declare(rec, Some((p as usize, word)), None);
        for _ in 0..3 {
            // SAFETY: inside the recovery point, the page declared.
            let old = unsafe { p.read_volatile() };
            let new = apply(&op, old as usize as u64) as isize;
            // SAFETY: as above; the section stores only `*p`.
            match unsafe {
                crate::ops::load_cbne_store(crate::ops::Mo::Relaxed, mode, p, old, new, target)
            } {
                Ok(()) => return 1,
                // Changed under us (another CPU's atomic): read again.
                Err(crate::ops::Error::Compare) => continue,
                Err(_) => return 0,
            }
        }
        0
    });
    match r {
        Ok(1) => OneOp::Done,
        Ok(_) => OneOp::Copied,
        // SAFETY: the local written above.
        Err(addr) => match unsafe { stage_p.read_volatile() } {
            0 => OneOp::VectorFault,
            _ => OneOp::WordFault(addr),
        },
    }
}
