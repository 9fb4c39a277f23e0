//! Owning a CPU (or mm_cid), and running code while owning it.
//!
//! # The ownership word
//!
//! The ownership word of a slot is a futex word holding the owner's
//! kernel thread id (0: free), the layout of a priority-inheritance
//! futex. Critical sections only ever test it for non-zero.
//!
//! - By default the word is a futex mutex: a waiter sets `FUTEX_WAITERS`
//!   and sleeps in `FUTEX_WAIT`; the owner releases the word to 0, then
//!   wakes one waiter. The word is 0 between two holders, and the rseq
//!   critical sections of that CPU commit in those gaps.
//! - With `RSEQ_CPU_OP_PI=1` in the environment (read once, at load), and
//!   where the kernel offers `FUTEX_LOCK_PI` (probed, see [`protocol`]),
//!   a waiter sleeps in `FUTEX_LOCK_PI`: the owner inherits its priority
//!   while it holds the word, so a SCHED_FIFO waiter never waits behind a
//!   preempted SCHED_OTHER holder for longer than the holder's vector. The
//!   price: the kernel hands the word straight to the next waiter, so under
//!   contention the word never returns to 0 and the CPU's rseq sections
//!   starve (`cpu_op_concurrency_test`'s list phase on 2 vCPUs: 333 M
//!   section aborts and 4.3 s with PI, 4.2 M and 0.65 s without). Hence
//!   opt-in.
//!
//! - With `RSEQ_CPU_OP_HANDOVER=1` (read once, at load; off by default,
//!   see [`HANDOVER_LIMIT`] for the measured cost to rseq sections), a
//!   holder that fenced (or was handed a fenced word) and sees a
//!   waiter counted on the word hands it over instead of freeing it: the
//!   word goes to [`HANDED`] (non-zero: sections keep aborting) and the
//!   next holder takes it from there without a fence of its own, since
//!   no section can have loaded the word free after the first holder's
//!   fence. At most [`HANDOVER_MAX`] hand-overs in a row, then the word
//!   is freed to 0 as above, so that the sections of the CPU get their
//!   gap. One `membarrier` then serves a queue of remote cpu-ops.
//!
//! Uncontended, a word is taken and released with one user-space
//! compare-and-swap each, except on ARMv8.0 CPUs without LSE atomics: there
//! a compare-and-swap is an LDXR/STXR loop, which never succeeds under
//! `PTRACE_SINGLESTEP` (the debug exception clears the exclusive monitor),
//! so the word is always taken with `FUTEX_LOCK_PI` and released with
//! `FUTEX_UNLOCK_PI`: the kernel does the compare-and-swap, where no
//! single-stepping interferes. The slow-path counters are plain
//! loads and stores there for the same reason.
//!
//! # Nothing interrupts a hold
//!
//! Like the `cpu_opv` system call, a cpu-op cannot be interrupted: every
//! signal is blocked (with the raw `rt_sigprocmask` system call, which,
//! unlike glibc's, also blocks glibc's cancellation and `setxid` signals)
//! from before the word is taken until after it is released. So no signal
//! handler of the holding thread runs while it holds a word: no handler
//! can `siglongjmp` or `pthread_exit` out of a hold, none can run a cpu-op
//! or an rseq retry loop on the CPU its own thread holds, asynchronous
//! cancellation cannot act, and nothing in the hold is a cancellation
//! point. A Rust panic in the closure of [`with_cpu`] unwinds through
//! [`Hold`]'s destructor, which releases the word and restores the mask.
//! A thread waiting for a word waits with signals blocked too: it holds
//! nothing, but the word may be handed to it by the kernel at any moment,
//! and a handler must not run from then on. The wait is bounded by the
//! vectors queued ahead of it, each of which runs without handlers.
//!
//! A `cpu_opv()` vector that runs on the caller's memory directly
//! ([`with_cpu_faults_open`], see [`super::fault`]) leaves SIGSEGV and
//! SIGBUS unblocked, because a fault must reach the library's handler
//! (the kernel kills a process whose fault signal is blocked); a SIGSEGV
//! or SIGBUS *sent* to the thread meanwhile is kept by that handler and
//! sent again after the hold, so that still no program handler runs
//! inside it. That vector runs so only while the library's handler is
//! the current action of both signals (checked before each such hold).

use core::sync::atomic::{fence, AtomicPtr, AtomicU32, AtomicU8, AtomicUsize, Ordering};

use super::fence as cpu_fence;
use crate::cpu;
use crate::ops::PercpuMode;
use crate::owner::{self, Slot, COUNT_FENCES, COUNT_VECTORS, COUNT_WAITS};
use crate::registration;
use crate::sys::{self, Errno, KernelSigset};

/// Bit of a word set while a thread may sleep on it (`FUTEX_WAITERS`).
pub const WAITERS: u32 = libc::FUTEX_WAITERS;

extern "C" {
    fn rseq_impl_cpu_op_tid_ptr() -> *mut i32;
}

fn self_id() -> usize {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() as usize }
}

/// The calling thread's tid, cached in static TLS (one `gettid` per
/// thread; the fork child handler clears the cache).
#[cfg(miri)]
fn tid() -> u32 {
    // Miri runs no C and no raw system calls: a unique non-zero id per
    // thread stands in for the tid (the Plain protocol never asks the
    // kernel about it).
    use std::sync::atomic::AtomicU32 as Counter;
    static NEXT: Counter = Counter::new(1);
    std::thread_local!(static ID: u32 = NEXT.fetch_add(1, Ordering::Relaxed));
    ID.with(|id| *id)
}

#[cfg(not(miri))]
fn tid() -> u32 {
    // SAFETY: the calling thread's static-TLS word, valid for its life;
    // only this thread touches it (signal handlers write the same value).
    let cell = unsafe { rseq_impl_cpu_op_tid_ptr() };
    // SAFETY: as above.
    let t = unsafe { cell.read_volatile() };
    if t != 0 {
        return t as u32;
    }
    let t = sys::gettid();
    // SAFETY: as above.
    unsafe { cell.write_volatile(t) };
    t as u32
}

/// How waiters sleep, decided once for the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `FUTEX_LOCK_PI` / `FUTEX_UNLOCK_PI` (priority inheritance).
    Pi,
    /// `FUTEX_WAIT` / `FUTEX_WAKE` (no priority inheritance).
    Plain,
}

static PROTOCOL: AtomicU8 = AtomicU8::new(0);

/// The protocol of the words: PI when `RSEQ_CPU_OP_PI=1` and the kernel
/// takes and releases a PI futex for this process (probed on a word of
/// the caller's stack); plain otherwise. Every copy of the library in a
/// process reads the same environment and kernel, so they agree. On
/// ARMv8.0 without LSE the kernel path needs PI: there it is probed
/// whatever the environment says.
pub fn protocol() -> Protocol {
    if cfg!(miri) {
        return Protocol::Plain;
    }
    match PROTOCOL.load(Ordering::Relaxed) {
        1 => Protocol::Pi,
        2 => Protocol::Plain,
        _ => {
            // SAFETY: a NUL-terminated name; getenv allocates nothing.
            let env = unsafe { libc::getenv(c"RSEQ_CPU_OP_PI".as_ptr()) };
            // SAFETY: a non-NULL getenv result is a NUL-terminated string.
            let wanted = (!env.is_null() && unsafe { *env } == b'1' as libc::c_char)
                || !user_cas_progresses();
            if !wanted {
                PROTOCOL.store(2, Ordering::Relaxed);
                return Protocol::Plain;
            }
            let probe = AtomicU32::new(0);
            let pi = sys::futex_trylock_pi(&probe).is_ok()
                && probe.load(Ordering::Relaxed) & !WAITERS == sys::gettid() as u32
                && sys::futex_unlock_pi(&probe).is_ok();
            PROTOCOL.store(if pi { 1 } else { 2 }, Ordering::Relaxed);
            if pi {
                Protocol::Pi
            } else {
                Protocol::Plain
            }
        }
    }
}

/// Whether a user-space compare-and-swap always makes progress here
/// (false on ARMv8.0 without LSE atomics, see the module documentation).
pub fn user_cas_progresses() -> bool {
    #[cfg(target_arch = "aarch64")]
    {
        const HWCAP_ATOMICS: libc::c_ulong = 1 << 8;
        sys::getauxval(libc::AT_HWCAP) & HWCAP_ATOMICS != 0
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        true
    }
}

/// One exclusive-monitor attempt at a compare-and-swap of `word` from
/// `old` to `new` (LDAXR, compare, STLXR, no retry loop): whether it
/// stored. For ARMv8.0 without LSE, where a compare-and-swap loop never
/// completes under `PTRACE_SINGLESTEP`: an uncontended word is taken and
/// released without a system call, and a failed attempt (single-stepped,
/// contended, or a spurious monitor loss) falls back to
/// `FUTEX_LOCK_PI` / `FUTEX_UNLOCK_PI`, where the kernel makes progress.
#[cfg(target_arch = "aarch64")]
fn cas_exclusive_once(word: &AtomicU32, old: u32, new: u32) -> bool {
    let failed: u32;
    // SAFETY: `word` is a live, aligned 32-bit atomic; the sequence is an
    // atomic compare-and-swap of it (or no write at all), like one
    // iteration of `compare_exchange`.
    unsafe {
        core::arch::asm!(
            "ldaxr {cur:w}, [{p}]",
            "cmp {cur:w}, {old:w}",
            "b.ne 2f",
            "stlxr {f:w}, {new:w}, [{p}]",
            "b 3f",
            "2:",
            "clrex",
            "mov {f:w}, #1",
            "3:",
            p = in(reg) word.as_ptr(),
            old = in(reg) old,
            new = in(reg) new,
            cur = out(reg) _,
            f = out(reg) failed,
            options(nostack),
        );
    }
    failed == 0
}

/// Only aarch64 has CPUs whose compare-and-swap may not progress.
#[cfg(not(target_arch = "aarch64"))]
fn cas_exclusive_once(_word: &AtomicU32, _old: u32, _new: u32) -> bool {
    false
}

/// Adds one to a slot counter (of a slot whose word the caller holds,
/// or after a committed own-CPU section).
pub(crate) fn count(slot: &Slot, index: usize) {
    if user_cas_progresses() {
        slot.count(index);
    } else {
        // No LL/SC loop (see the module documentation); a rare lost count
        // between the two words of one slot is acceptable for statistics.
        let c = &slot.counters[index];
        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

/// Bit of a word handed over by its holder to a waiter, fenced (see
/// [`unlock`]): above every tid (`PID_MAX_LIMIT` is 2^22) and below the
/// futex flag bits. The low bits count the hand-overs since the word was
/// last free.
pub const HANDED: u32 = 1 << 29;

/// Most consecutive hand-overs before a holder releases the word to 0,
/// giving the target's rseq sections a gap to commit in, when hand-over
/// is enabled.
pub const HANDOVER_MAX: u32 = 8;

/// The hand-over limit in force: 0 (off, the default) or
/// [`HANDOVER_MAX`] with `RSEQ_CPU_OP_HANDOVER=1` in the environment
/// (read once, at load). Off by default because a word that never reads
/// 0 starves the target CPU's rseq sections while remote cpu-ops queue:
/// `cpu_op_concurrency_test`'s counter phase (`RSEQ_NO_INLINE`, library
/// registration) measured 1.35 M section aborts and 2.28 s without it,
/// 27.9 M and 4.77 s with it, and an ASan build exceeded the test's
/// 20 M consecutive-abort limit.
static HANDOVER_LIMIT: AtomicU32 = AtomicU32::new(0);

fn read_handover_limit() {
    // SAFETY: a NUL-terminated name; getenv allocates nothing.
    let env = unsafe { libc::getenv(c"RSEQ_CPU_OP_HANDOVER".as_ptr()) };
    // SAFETY: a non-NULL getenv result is a NUL-terminated string.
    if !env.is_null() && unsafe { *env } == b'1' as libc::c_char {
        HANDOVER_LIMIT.store(HANDOVER_MAX, Ordering::Relaxed);
    }
}

/// How a word was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Taken {
    /// The caller slept for it.
    pub waited: bool,
    /// Handed over fenced by the previous holder, after that many
    /// consecutive hand-overs (the caller needs no fence); `None`: taken
    /// free, the caller must fence.
    pub handed: Option<u32>,
}

/// Takes an ownership word (signals blocked by the caller), sleeping
/// while another thread holds it.
fn lock(word: &AtomicU32, holder: &AtomicUsize, waiters: &AtomicU32) -> Taken {
    let me = tid();
    let cas = user_cas_progresses();
    if cas
        && word
            .compare_exchange(0, me, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
    {
        holder.store(self_id(), Ordering::Relaxed);
        return Taken {
            waited: false,
            handed: None,
        };
    }
    if !cas && cas_exclusive_once(word, 0, me) {
        // The exclusive pair is acquire/release; the fence argument
        // needs the word's store ordered before the fence's loads.
        fence(Ordering::SeqCst);
        holder.store(self_id(), Ordering::Relaxed);
        return Taken {
            waited: false,
            handed: None,
        };
    }
    let mut handed = None;
    match protocol() {
        Protocol::Pi => loop {
            match sys::futex_lock_pi(word) {
                Ok(()) => break,
                // EINTR cannot happen (signals blocked) and EAGAIN means
                // the owner is exiting: try again. Anything else (a word
                // left by a thread that no longer exists: ESRCH) is not a
                // state this library creates; yield and try again rather
                // than run the vector without the word.
                Err(_) => {
                    // SAFETY: sched_yield has no preconditions.
                    unsafe { libc::sched_yield() };
                }
            }
        },
        Protocol::Plain => {
            // Counted from here until the word is ours: a holder that
            // sees a count hands the word over instead of freeing it,
            // and a counted thread cannot leave before it took the word
            // (signals are blocked, nothing here times out).
            waiters.fetch_add(1, Ordering::SeqCst);
            loop {
                let c = word.load(Ordering::Relaxed);
                if c == 0 {
                    if word
                        .compare_exchange(0, me | WAITERS, Ordering::SeqCst, Ordering::Relaxed)
                        .is_ok()
                    {
                        break;
                    }
                    continue;
                }
                if c & HANDED != 0 {
                    if word
                        .compare_exchange(c, me | WAITERS, Ordering::SeqCst, Ordering::Relaxed)
                        .is_ok()
                    {
                        handed = Some(c & !(HANDED | WAITERS));
                        break;
                    }
                    continue;
                }
                if c & WAITERS == 0
                    && word
                        .compare_exchange(c, c | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                        .is_err()
                {
                    continue;
                }
                sys::futex_wait(word, c | WAITERS);
            }
            waiters.fetch_sub(1, Ordering::SeqCst);
        }
    }
    // The kernel's compare-and-swap is a full barrier; this one makes the
    // order the fence argument needs (word set before the fence's loads)
    // explicit on the Rust side too.
    fence(Ordering::SeqCst);
    holder.store(self_id(), Ordering::Relaxed);
    Taken {
        waited: true,
        handed,
    }
}

/// Releases an ownership word the caller holds, handing it to a waiter
/// if there is one.
///
/// A fenced word (`fenced`: the caller's fence succeeded, or the word was
/// handed to it) is handed over rather than freed when a waiter is
/// counted and hand-over is enabled (`RSEQ_CPU_OP_HANDOVER=1`, see
/// [`HANDOVER_LIMIT`]), at most [`HANDOVER_MAX`] times in a row (`chain`: the
/// hand-overs before this one): the word then goes from holder to holder
/// without ever reading 0, so no section can have loaded it free since
/// the first holder's fence, and that fence serves every holder of the
/// chain. One `membarrier` for a queue of remote cpu-ops on a CPU instead
/// of one each.
fn unlock(word: &AtomicU32, holder: &AtomicUsize, waiters: &AtomicU32, hand: Option<u32>) {
    holder.store(0, Ordering::Relaxed);
    let me = tid();
    let cas = user_cas_progresses();
    if cas
        && word
            .compare_exchange(me, 0, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
    {
        return;
    }
    if !cas && {
        fence(Ordering::SeqCst);
        cas_exclusive_once(word, me, 0)
    } {
        return;
    }
    match protocol() {
        Protocol::Pi => {
            fence(Ordering::SeqCst);
            if sys::futex_unlock_pi(word).is_err() {
                // Only possible if the word is not ours, which no path
                // of this library allows; never leave it set.
                word.store(0, Ordering::SeqCst);
            }
        }
        Protocol::Plain => {
            let next = match hand {
                Some(chain)
                    if chain < HANDOVER_LIMIT.load(Ordering::Relaxed)
                        && waiters.load(Ordering::SeqCst) != 0 =>
                {
                    HANDED | (chain + 1)
                }
                _ => 0,
            };
            let old = word.swap(next, Ordering::SeqCst);
            if next != 0 || old & WAITERS != 0 {
                sys::futex_wake(word, 1);
            }
        }
    }
}

/// An ownership word held by the calling thread, with every signal
/// blocked; dropping it (normally or by unwinding) releases the word,
/// then restores the signal mask.
struct Hold<'a> {
    word: &'a AtomicU32,
    holder: &'a AtomicUsize,
    waiters: &'a AtomicU32,
    mask: KernelSigset,
    /// How the word was taken.
    taken: Taken,
    /// Whether the holder's fence succeeded (a word is handed over only
    /// fenced).
    fenced: bool,
}

/// The signals a hold blocks: every one, or (for a vector that runs on
/// the caller's memory directly, see [`super::fault`]) every one but
/// SIGSEGV and SIGBUS, which a fault must be able to raise.
fn hold_mask(faults_open: bool) -> KernelSigset {
    if faults_open {
        !((1 << (libc::SIGSEGV - 1)) | (1 << (libc::SIGBUS - 1)))
    } else {
        !0
    }
}

impl<'a> Hold<'a> {
    fn acquire(slot: &'a Slot, mode: PercpuMode, target: i32, block: KernelSigset) -> Hold<'a> {
        let (word, holder) = slot.word(mode);
        check_fork();
        // Before the mask: the first call of a thread fills the tid cache.
        let _ = tid();
        let mask = sys::set_sigmask(block);
        let waiters = slot.waiters(mode);
        let taken = lock(word, holder, waiters);
        if taken.waited {
            count(slot, COUNT_WAITS);
            usdt!(cpu_op, wait, target);
        }
        Hold {
            word,
            holder,
            waiters,
            mask,
            taken,
            fenced: false,
        }
    }
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        let hand = if self.fenced {
            Some(self.taken.handed.unwrap_or(0))
        } else {
            None
        };
        unlock(self.word, self.holder, self.waiters, hand);
        sys::set_sigmask(self.mask);
    }
}

/// The slot of a target, if the target is valid for the mode: a possible
/// CPU, or an mm_cid below the number of possible CPUs. EINVAL otherwise.
pub fn target_slot(target: i32, mode: PercpuMode) -> Result<&'static Slot, Errno> {
    registration::init();
    let possible = cpu::possible();
    let valid = match mode {
        PercpuMode::CpuId => possible.contains(target),
        PercpuMode::MmCid => target >= 0 && (target as usize) < possible.len(),
    };
    if !valid {
        return Err(Errno(libc::EINVAL));
    }
    owner::slot(target).ok_or(Errno(libc::EINVAL))
}

/// Runs `f` atomically with respect to every critical section of this
/// library on `target` (a CPU, or an mm_cid in [`PercpuMode::MmCid`]) and
/// every other cpu-op on it: blocks every signal, takes the target's
/// ownership word, fences the sections that started before, runs `f`,
/// releases the word, restores the signal mask. No signal handler of the
/// calling thread runs in between; a panic in `f` releases the word.
///
/// Fails with EINVAL for an invalid target or one that cannot be fenced,
/// and with EDEADLK when `f` of an enclosing `with_cpu` of the same
/// thread already holds the target (the only way to nest: signal
/// handlers cannot run inside).
pub fn with_cpu<R>(target: i32, mode: PercpuMode, f: impl FnOnce() -> R) -> Result<R, Errno> {
    with_cpu_blocking(target, mode, false, f)
}

/// [`with_cpu`] for a vector that accesses the caller's memory directly
/// under [`super::fault::call`]: SIGSEGV and SIGBUS stay open during the
/// hold (a fault must reach the library's handler), and a SIGSEGV or
/// SIGBUS sent meanwhile is kept and sent again after the hold
/// ([`super::fault::DeferGuard`]), so that still no handler of the
/// program runs inside the hold.
pub fn with_cpu_faults_open<R>(
    target: i32,
    mode: PercpuMode,
    f: impl FnOnce() -> R,
) -> Result<R, Errno> {
    let mut defer = super::fault::Defer::new();
    let _kept = super::fault::DeferGuard::new(&mut defer);
    with_cpu_blocking(target, mode, true, f)
}

fn with_cpu_blocking<R>(
    target: i32,
    mode: PercpuMode,
    faults_open: bool,
    f: impl FnOnce() -> R,
) -> Result<R, Errno> {
    let block = hold_mask(faults_open);
    let slot = target_slot(target, mode)?;
    if slot.word(mode).1.load(Ordering::Relaxed) == self_id() {
        return Err(Errno(libc::EDEADLK));
    }
    let mut offline = cpu_fence::Offline::none();
    let mut transitions = 0u32;
    loop {
        let mut hold = Hold::acquire(slot, mode, target, block);
        // A word handed over fenced needs no fence of its own (see
        // `unlock`): counted as "none needed".
        let fenced = match hold.taken.handed {
            Some(_) => Ok(cpu_fence::Fence::None),
            None => cpu_fence::fence(target, mode, &offline),
        };
        match fenced {
            Ok(kind) => {
                hold.fenced = true;
                count(slot, COUNT_FENCES + kind as usize);
                count(slot, COUNT_VECTORS);
                usdt!(cpu_op, begin, target, mode as u32, kind as u32);
                let r = f();
                usdt!(cpu_op, end, target);
                drop(hold);
                return Ok(r);
            }
            Err(cpu_fence::Failure::Errno(e)) => return Err(e),
            Err(cpu_fence::Failure::Unreachable(c)) => {
                // Whether `c` is offline (nothing to fence) or outside the
                // caller's cpuset (EINVAL) is read from sysfs, which must
                // not happen while a word is held: release, read, retry.
                drop(hold);
                if !offline.learn(c) {
                    // Online but refusing the caller: a hotplug transition
                    // (online, not yet or no longer active) lasts
                    // milliseconds; a CPU outside the caller's cpuset
                    // refuses for ever and costs this bound (about one
                    // second) before EINVAL. No word is held here.
                    transitions += 1;
                    if transitions > REACH_ATTEMPTS {
                        return Err(Errno(libc::EINVAL));
                    }
                    offline = cpu_fence::Offline::none();
                    pause_for_transition(transitions);
                }
            }
        }
    }
}

/// How many times [`with_cpu`] retries a CPU that is online but refuses
/// the caller's migration (see there).
const REACH_ATTEMPTS: u32 = 1000;

/// Waits a little for a hotplug transition: yields first, then sleeps a
/// millisecond (raw nanosleep: not a cancellation point).
fn pause_for_transition(attempt: u32) {
    if attempt < 16 {
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
        return;
    }
    let pause = libc::timespec {
        tv_sec: 0,
        tv_nsec: 1_000_000,
    };
    // SAFETY: `pause` is a valid timespec; no remainder wanted.
    unsafe {
        libc::syscall(
            libc::SYS_nanosleep,
            &pause as *const libc::timespec,
            core::ptr::null_mut::<libc::timespec>(),
        )
    };
}

/// After `fork()`, in the child: the words other threads held are freed
/// (their vectors may be half done in the child's copy of memory, as if
/// those threads had died mid-vector: the child sees a prefix of such a
/// vector, the operations before the one that was running, never a torn
/// word of a single arithmetic operation but possibly a partly copied
/// memcpy); a word the forking thread itself holds (a fork from the
/// closure of [`with_cpu`]) is kept, re-owned by the child's tid.
///
/// There is no prepare handler: holding words across `fork()` deadlocks
/// when a program's own prepare handler (run after the library's when
/// the library was loaded later) runs a cpu-op. And the child handler
/// may run too late (after a program's child handler registered earlier
/// ran its cpu-op), so the child also finds out by itself: [`FORK_PAGE`]
/// is a `MADV_WIPEONFORK` page, zero in a child until the repair ran.
fn fork_repair() {
    let me = self_id();
    let new_tid = tid();
    for slot in owner::possible_slots() {
        for mode in [PercpuMode::CpuId, PercpuMode::MmCid] {
            let (word, holder) = slot.word(mode);
            if holder.load(Ordering::Relaxed) == me && word.load(Ordering::Relaxed) != 0 {
                word.store(new_tid, Ordering::Release);
            } else {
                holder.store(0, Ordering::Relaxed);
                word.store(0, Ordering::Release);
            }
            // No thread of the parent waits in the child.
            slot.waiters(mode).store(0, Ordering::Relaxed);
        }
    }
    cpu_fence::reset_after_fork();
    fence(Ordering::SeqCst);
}

/// The `MADV_WIPEONFORK` page's first word: [`FORK_READY`] in a process
/// whose words are consistent, 0 in a fresh child (the kernel wipes it),
/// [`FORK_REPAIRING`] while one thread repairs. Shared by every copy of
/// the library in the process (see [`crate::anchor`]), so that the
/// repair runs once per child.
static FORK_PAGE: AtomicPtr<AtomicU32> = AtomicPtr::new(core::ptr::null_mut());
const FORK_REPAIRING: u32 = 1;
const FORK_READY: u32 = 2;

/// Repairs the words once in a child, whichever thread or handler comes
/// first; returns when they are consistent.
fn repair_once(page: &AtomicU32) {
    loop {
        match page.compare_exchange(0, FORK_REPAIRING, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => {
                fork_repair();
                page.store(FORK_READY, Ordering::Release);
                return;
            }
            Err(FORK_READY) => return,
            // SAFETY: sched_yield has no preconditions.
            Err(_) => unsafe {
                libc::sched_yield();
            },
        }
    }
}

/// Called before taking a word: repairs the words first in a forked
/// child whose atfork handler has not run yet. One load otherwise.
#[inline]
fn check_fork() {
    let p = FORK_PAGE.load(Ordering::Relaxed);
    if p.is_null() {
        return;
    }
    // SAFETY: the page is mapped for the life of the process.
    let page = unsafe { &*p };
    if page.load(Ordering::Acquire) != FORK_READY {
        repair_once(page);
    }
}

extern "C" fn after_fork_child() {
    // The forking thread's cached tid is its parent's.
    // SAFETY: the calling thread's static-TLS word.
    unsafe { rseq_impl_cpu_op_tid_ptr().write_volatile(0) };
    let p = FORK_PAGE.load(Ordering::Relaxed);
    if p.is_null() {
        fork_repair();
    } else {
        // SAFETY: as in `check_fork`.
        repair_once(unsafe { &*p });
    }
}

/// Address of the fork page, for other copies of the library (0: none).
pub(crate) fn fork_page() -> usize {
    FORK_PAGE.load(Ordering::Relaxed) as usize
}

/// Installs the fork handler and the fork page (once, from the library's
/// initialisation); `shared`: the fork page of a copy loaded earlier.
pub(crate) fn install_fork_handlers(shared: usize) {
    // Decided now, never while a word is held.
    let _ = protocol();
    read_handover_limit();
    if shared != 0 {
        FORK_PAGE.store(shared as *mut AtomicU32, Ordering::Relaxed);
    } else {
        // SAFETY: a fresh anonymous page; madvise only affects it.
        unsafe {
            let p = libc::mmap(
                core::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if p != libc::MAP_FAILED {
                if libc::madvise(p, 4096, libc::MADV_WIPEONFORK) == 0 {
                    (*p.cast::<AtomicU32>()).store(FORK_READY, Ordering::Release);
                    FORK_PAGE.store(p.cast(), Ordering::Release);
                } else {
                    // Before Linux 4.14: only the atfork handler repairs.
                    libc::munmap(p, 4096);
                }
            }
        }
    }
    // SAFETY: the handler is an `extern "C"` function that never unwinds
    // and lives as long as the (never unloaded) library.
    unsafe {
        libc::pthread_atfork(None, None, Some(after_fork_child));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::UnsafeCell;
    use std::sync::Arc;

    /// A slot outside the table (all-zero: every word free).
    fn fresh_slot() -> Box<Slot> {
        // SAFETY: a Slot is atomics and padding; all-zero is a valid value.
        unsafe { Box::<Slot>::new_zeroed().assume_init() }
    }

    #[test]
    fn word_states_follow_the_mutex() {
        let slot = fresh_slot();
        for mode in [PercpuMode::CpuId, PercpuMode::MmCid] {
            let (word, holder) = slot.word(mode);
            let waiters = slot.waiters(mode);
            lock(word, holder, waiters);
            assert_eq!(word.load(Ordering::Relaxed), tid());
            assert_eq!(holder.load(Ordering::Relaxed), self_id());
            unlock(word, holder, waiters, Some(0));
            assert_eq!(word.load(Ordering::Relaxed), 0);
            assert_eq!(holder.load(Ordering::Relaxed), 0);
            // Released while marked contended: back to free (and a wake
            // with no sleeper is harmless).
            lock(word, holder, waiters);
            word.store(tid() | WAITERS, Ordering::Relaxed);
            unlock(word, holder, waiters, Some(0));
            assert_eq!(word.load(Ordering::Relaxed), 0);
            // A counted waiter gets a fenced word handed over (never
            // free in between), an unfenced one is freed. (Enabling
            // hand-over for the process is harmless for other tests: it
            // is correct either way.)
            if protocol() == Protocol::Plain {
                HANDOVER_LIMIT.store(HANDOVER_MAX, Ordering::Relaxed);
                lock(word, holder, waiters);
                word.store(tid() | WAITERS, Ordering::Relaxed);
                waiters.store(1, Ordering::Relaxed);
                unlock(word, holder, waiters, Some(3));
                assert_eq!(word.load(Ordering::Relaxed), HANDED | 4);
                waiters.store(0, Ordering::Relaxed);
                let t = lock(word, holder, waiters);
                assert_eq!(t.handed, Some(4));
                assert_eq!(word.load(Ordering::Relaxed), tid() | WAITERS);
                waiters.store(1, Ordering::Relaxed);
                unlock(word, holder, waiters, None);
                assert_eq!(word.load(Ordering::Relaxed), 0, "unfenced: freed");
                lock(word, holder, waiters);
                word.store(tid() | WAITERS, Ordering::Relaxed);
                unlock(word, holder, waiters, Some(HANDOVER_MAX));
                assert_eq!(word.load(Ordering::Relaxed), 0, "chain ends: freed");
                waiters.store(0, Ordering::Relaxed);
            }
        }
        // The two words of a slot are independent.
        let (cpu, cpu_holder) = slot.word(PercpuMode::CpuId);
        let (cid, cid_holder) = slot.word(PercpuMode::MmCid);
        let (cpu_w, cid_w) = (
            slot.waiters(PercpuMode::CpuId),
            slot.waiters(PercpuMode::MmCid),
        );
        lock(cpu, cpu_holder, cpu_w);
        assert_eq!(cid.load(Ordering::Relaxed), 0);
        lock(cid, cid_holder, cid_w);
        unlock(cpu, cpu_holder, cpu_w, Some(0));
        assert_eq!(cid.load(Ordering::Relaxed), tid());
        unlock(cid, cid_holder, cid_w, Some(0));
    }

    #[test]
    #[cfg_attr(miri, ignore = "raw system calls")]
    fn a_held_word_names_its_owner_and_waiters_use_pi_where_offered() {
        let slot = fresh_slot();
        let (word, holder) = slot.word(PercpuMode::CpuId);
        let waiters = slot.waiters(PercpuMode::CpuId);
        lock(word, holder, waiters);
        assert_eq!(
            word.load(Ordering::Relaxed) & !WAITERS,
            sys::gettid() as u32
        );
        // A second thread blocks in the kernel (PI or plain futex) and
        // gets the word on release, marked as having had a waiter.
        let addr = &*slot as *const Slot as usize;
        let t = std::thread::spawn(move || {
            // SAFETY: the slot outlives the thread (joined below).
            let slot = unsafe { &*(addr as *const Slot) };
            let (word, holder) = slot.word(PercpuMode::CpuId);
            let waited = lock(word, holder, slot.waiters(PercpuMode::CpuId)).waited;
            let mine = word.load(Ordering::Relaxed) & !WAITERS == sys::gettid() as u32;
            unlock(word, holder, slot.waiters(PercpuMode::CpuId), None);
            (waited, mine)
        });
        while word.load(Ordering::Relaxed) & WAITERS == 0 {
            std::thread::yield_now();
        }
        unlock(word, holder, waiters, None);
        let (waited, mine) = t.join().unwrap();
        assert!(waited && mine);
        assert_eq!(word.load(Ordering::Relaxed), 0);
        // The protocol is decided once (plain unless RSEQ_CPU_OP_PI=1).
        let p = protocol();
        assert_eq!(p, protocol());
        eprintln!("word protocol: {p:?}");
    }

    struct Shared {
        slot: Box<Slot>,
        /// Plain data guarded by the word: Miri reports a data race if the
        /// lock/unlock pair does not order the accesses.
        data: UnsafeCell<u64>,
    }
    // SAFETY: `data` is only touched while holding the word.
    unsafe impl Sync for Shared {}

    #[test]
    fn the_word_excludes_and_orders() {
        const THREADS: usize = 4;
        const ITERS: u64 = 25;
        let shared = Arc::new(Shared {
            slot: fresh_slot(),
            data: UnsafeCell::new(0),
        });
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let s = Arc::clone(&shared);
                std::thread::spawn(move || {
                    let (word, holder) = s.slot.word(PercpuMode::CpuId);
                    let waiters = s.slot.waiters(PercpuMode::CpuId);
                    for _ in 0..ITERS {
                        // Fenced holders: the word goes from holder to
                        // holder (hand-over) while others wait.
                        let taken = lock(word, holder, waiters);
                        assert_ne!(word.load(Ordering::Relaxed), 0);
                        assert_eq!(word.load(Ordering::Relaxed) & HANDED, 0);
                        assert_eq!(holder.load(Ordering::Relaxed), self_id());
                        // SAFETY: the word is held.
                        let v = unsafe { *s.data.get() };
                        std::thread::yield_now();
                        // SAFETY: the word is held.
                        unsafe { *s.data.get() = v + 1 };
                        unlock(word, holder, waiters, Some(taken.handed.unwrap_or(0)));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let (word, holder) = shared.slot.word(PercpuMode::CpuId);
        assert_eq!(word.load(Ordering::Relaxed), 0);
        assert_eq!(holder.load(Ordering::Relaxed), 0);
        // SAFETY: every thread has been joined.
        assert_eq!(unsafe { *shared.data.get() }, THREADS as u64 * ITERS);
    }
}
