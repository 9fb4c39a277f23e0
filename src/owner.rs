//! Per-CPU ownership words: the handshake between critical sections and
//! the cpu-op engine.
//!
//! Every critical section of this library, after checking that it runs on
//! its CPU (or holds its mm_cid), loads the ownership word of that CPU (or
//! id) and aborts while it is non-zero. The cpu-op engine sets the word
//! before touching a CPU's data (see [`crate::cpu_op`] for the argument
//! that this makes a vector atomic with respect to the sections).
//!
//! The words live in one table of cache-line-sized slots, one per possible
//! CPU, exported to inline C code as the data symbol
//! `rseq_cpu_op_owners` (the address of slot 0). Each slot holds the word
//! for CPU `n` and the word for mm_cid `n`; the slot size and the word
//! offsets are ABI, shared with the generated C header.
//!
//! Slots -2 and -1 also exist and are owned forever: a section running in
//! an unregistered thread (`cpu_id` -1 or -2) that was passed a matching
//! negative `cpu` reads them and aborts, instead of committing without
//! the kernel's protection (librseq would commit).
//!
//! On a kernel that does not fill in `mm_cid` (before Linux 6.3, feature
//! size < 28) the area's `mm_cid` field stays 0 in every thread (nothing
//! ever writes it), so every MM_CID section would "hold" id 0 and commit
//! concurrently. `shut_out_mm_cid` then owns the mm_cid word of slot 0
//! forever: every MM_CID section aborts (on id 0 it finds the word owned,
//! on any other id the id check fails), which is the contract "a wrong id
//! makes the operation abort". The cpu-op engine then serialises mm_cid 0
//! on the slot's stand-in word instead, and needs no fence for mm_cids.
//! CPU_ID sections are untouched: no fast-path cost.

use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::ops::PercpuMode;

/// Size of one slot: two cache lines on every architecture, so that an
/// adjacent-line prefetcher does not couple two CPUs' words. Like the word
/// offsets, it comes from `asm/ops.spec`, which the C header shares.
pub const SLOT_SIZE: usize = crate::arch::seq::OWNER_SLOT_SIZE;
/// Byte offset of the CPU-number word in a slot.
pub const CPU_ID_WORD: usize = crate::arch::seq::OWNER_WORD_CPU_ID;
/// Byte offset of the mm_cid word in a slot.
pub const MM_CID_WORD: usize = crate::arch::seq::OWNER_WORD_MM_CID;
/// Value of the words of slots -2 and -1.
pub const OWNED_FOREVER: u32 = u32::MAX;
/// Number of slots below slot 0.
const GUARD_SLOTS: usize = 2;
/// The table always has at least this many slots, so that a CPU number
/// beyond a misreported possible-CPU count still lands inside it.
const MIN_SLOTS: usize = 4096;

/// Slow-path counters kept per slot (summed by [`crate::stats`]).
pub const SLOT_COUNTERS: usize = 2 + crate::cpu_op::fence::KINDS;
/// Counter index: vectors (and helpers) run on this CPU or id.
pub const COUNT_VECTORS: usize = 0;
/// Counter index: futex waits for this CPU or id.
pub const COUNT_WAITS: usize = 1;
/// Counter index of the first fence kind ([`crate::cpu_op::fence::Fence`]).
pub const COUNT_FENCES: usize = 2;

/// One slot of the table: the two ownership words (ABI, read by every
/// section), then what only the cpu-op engine uses. Keeping the holders
/// and counters in the slot costs no extra cache traffic: the engine owns
/// this line anyway while it holds a word.
#[repr(C, align(128))]
pub struct Slot {
    /// Ownership word of CPU `n` (0: free).
    pub cpu_id: AtomicU32,
    /// Ownership word of mm_cid `n` (0: free).
    pub mm_cid: AtomicU32,
    /// `pthread_self()` of the holder of `cpu_id` (0: none), for
    /// debuggers and to refuse a nested acquisition by the same thread.
    pub cpu_id_holder: AtomicUsize,
    /// `pthread_self()` of the holder of `mm_cid` (0: none).
    pub mm_cid_holder: AtomicUsize,
    /// Slow-path counters of this CPU and id, by `COUNT_*` index.
    pub counters: [AtomicU64; SLOT_COUNTERS],
    /// The lock cpu-ops on this mm_cid take instead of `mm_cid` while
    /// that word is owned forever (`shut_out_mm_cid`); sections never
    /// read it.
    mm_cid_stand_in: AtomicU32,
    /// Threads waiting for `cpu_id` and for `mm_cid` (or its stand-in):
    /// a holder hands a fenced word over only when one is counted (see
    /// `cpu_op::engine`).
    waiters: [AtomicU32; 2],
    _pad: [u8; SLOT_SIZE - 36 - 8 * SLOT_COUNTERS],
}

impl Slot {
    /// A slot whose two words are owned forever.
    const fn owned_forever() -> Slot {
        Slot {
            cpu_id: AtomicU32::new(OWNED_FOREVER),
            mm_cid: AtomicU32::new(OWNED_FOREVER),
            cpu_id_holder: AtomicUsize::new(0),
            mm_cid_holder: AtomicUsize::new(0),
            counters: [const { AtomicU64::new(0) }; SLOT_COUNTERS],
            mm_cid_stand_in: AtomicU32::new(0),
            waiters: [const { AtomicU32::new(0) }; 2],
            _pad: [0; SLOT_SIZE - 36 - 8 * SLOT_COUNTERS],
        }
    }

    /// The word a cpu-op takes for a percpu mode, and its holder: the
    /// ownership word, or for an mm_cid word owned forever (see
    /// `shut_out_mm_cid`) the stand-in, which only cpu-ops use.
    #[inline]
    pub fn word(&self, mode: PercpuMode) -> (&AtomicU32, &AtomicUsize) {
        match mode {
            PercpuMode::CpuId => (&self.cpu_id, &self.cpu_id_holder),
            PercpuMode::MmCid if self.mm_cid.load(Ordering::Relaxed) == OWNED_FOREVER => {
                (&self.mm_cid_stand_in, &self.mm_cid_holder)
            }
            PercpuMode::MmCid => (&self.mm_cid, &self.mm_cid_holder),
        }
    }

    /// The count of threads waiting for the word of a percpu mode.
    #[inline]
    pub fn waiters(&self, mode: PercpuMode) -> &AtomicU32 {
        &self.waiters[mode as usize & 1]
    }

    /// Adds one to a counter.
    #[inline]
    pub fn count(&self, index: usize) {
        self.counters[index].fetch_add(1, Ordering::Relaxed);
    }
}

const _: () = assert!(core::mem::size_of::<Slot>() == SLOT_SIZE);
const _: () = assert!(core::mem::align_of::<Slot>() == SLOT_SIZE);
const _: () = assert!(core::mem::offset_of!(Slot, cpu_id) == CPU_ID_WORD);
const _: () = assert!(core::mem::offset_of!(Slot, mm_cid) == MM_CID_WORD);

/// Address of slot 0 of the ownership table (of the boot table before
/// initialisation).
/// Inline critical sections compute `&rseq_cpu_op_owners[cpu]` from it.
#[cfg_attr(feature = "capi", no_mangle)]
#[allow(non_upper_case_globals)] // librseq's C names
pub(crate) static rseq_cpu_op_owners: AtomicPtr<Slot> =
    AtomicPtr::new(BOOT_TABLE.0.as_ptr().wrapping_add(GUARD_SLOTS).cast_mut());

/// What `rseq_cpu_op_owners` designates before [`init`]: the two guard
/// slots, owned forever, and slot 0, owned forever too. A section that
/// runs before initialisation (on x86_64 `rseq_offset` then designates
/// the idle area, whose `cpu_id` is -1, see [`crate::idle`]) and passes
/// `cpu` -1 gets past its CPU check, reads slot -1 here and aborts,
/// instead of reading through a null table.
#[repr(C, align(128))]
struct BootTable([Slot; GUARD_SLOTS + 1]);

static BOOT_TABLE: BootTable = BootTable([
    Slot::owned_forever(),
    Slot::owned_forever(),
    Slot::owned_forever(),
]);

/// Number of usable slots (indices `0..CAPACITY`).
pub(crate) static CAPACITY: AtomicU32 = AtomicU32::new(0);

/// Allocates the table, or adopts the table of another copy of the
/// library loaded earlier (see [`crate::anchor`]). Called once, from the
/// library's initialisation, before `rseq_offset` is published (sections
/// read the table only after finding `rseq_offset` non-zero).
pub(crate) fn init(shared: Option<&crate::anchor::Anchor>) {
    if let Some(a) = shared {
        CAPACITY.store(a.capacity as u32, Ordering::Relaxed);
        rseq_cpu_op_owners.store(a.table as usize as *mut Slot, Ordering::Release);
        return;
    }
    let slots = crate::cpu::possible().len().max(MIN_SLOTS);
    let bytes = (slots + GUARD_SLOTS) * SLOT_SIZE;
    // SAFETY: an anonymous private mapping; no existing memory is touched.
    // MAP_NORESERVE: only the pages of slots actually used are committed.
    let base = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        // No section may run without the table, and a library that
        // cannot map 1 MiB at load has nothing better to do.
        std::process::abort();
    }
    let slot0 = base.cast::<Slot>().wrapping_add(GUARD_SLOTS);
    for guard in 1..=GUARD_SLOTS {
        // SAFETY: the guard slots are inside the mapping just created.
        let s = unsafe { &*slot0.wrapping_sub(guard) };
        s.cpu_id.store(OWNED_FOREVER, Ordering::Relaxed);
        s.mm_cid.store(OWNED_FOREVER, Ordering::Relaxed);
    }
    CAPACITY.store(slots as u32, Ordering::Relaxed);
    rseq_cpu_op_owners.store(slot0, Ordering::Release);
}

/// Whether `shut_out_mm_cid` ran: no MM_CID section can commit.
static MM_CID_SHUT_OUT: AtomicBool = AtomicBool::new(false);

/// Makes every MM_CID section abort, for a process whose kernel does not
/// fill in `mm_cid`: owns slot 0's mm_cid word forever (the field reads 0
/// in every thread). Called by the library's initialisation after
/// [`init`] and before `rseq_offset` is published, so before any section
/// can read the word.
pub(crate) fn shut_out_mm_cid() {
    if let Some(s) = slot(0) {
        s.mm_cid.store(OWNED_FOREVER, Ordering::Relaxed);
        MM_CID_SHUT_OUT.store(true, Ordering::Relaxed);
    }
}

/// Whether MM_CID sections are shut out (the kernel has no mm_cid): a
/// cpu-op on an mm_cid then needs no fence.
#[inline]
pub fn mm_cid_shut_out() -> bool {
    MM_CID_SHUT_OUT.load(Ordering::Relaxed)
}

/// The word a critical section for `cpu` checks, in CPU-number mode
/// (`mm_cid == false`) or mm_cid mode. Pure address arithmetic: the
/// section itself loads it, and only after checking that `cpu` is the
/// number the kernel gave it (so in `-2..capacity`).
#[inline(always)]
pub fn word_address(cpu: i32, mm_cid: bool) -> *const u32 {
    let base = rseq_cpu_op_owners.load(Ordering::Relaxed).cast::<u8>();
    let word = if mm_cid { MM_CID_WORD } else { CPU_ID_WORD };
    base.wrapping_offset(cpu as isize * SLOT_SIZE as isize + word as isize)
        .cast()
}

/// The slot of index `n`, when `n` is inside the table.
pub fn slot(n: i32) -> Option<&'static Slot> {
    let base = rseq_cpu_op_owners.load(Ordering::Acquire);
    if base.is_null() || n < 0 || n as u32 >= CAPACITY.load(Ordering::Relaxed) {
        return None;
    }
    // SAFETY: `n` is inside the mapping, which is never unmapped.
    Some(unsafe { &*base.add(n as usize) })
}

/// The slots of every possible CPU, for operations that must visit each
/// one (fork).
pub fn possible_slots() -> impl Iterator<Item = &'static Slot> {
    (0..crate::cpu::possible().len() as i32).filter_map(slot)
}

/// How long an aborted section's slow path spins on a held word before
/// it sleeps (see [`wait_for_holder_of_current`]).
const HOLDER_SPIN_NS: i64 = 50_000;
/// The most one aborted section's slow path waits for a holder.
const HOLDER_WAIT_NS: i64 = 2_000_000;
/// One sleep of that wait.
const HOLDER_SLEEP_NS: i64 = 20_000;

// The conversions are no-ops on 64-bit targets only (i386: 32-bit time_t).
#[allow(clippy::useless_conversion)]
fn monotonic_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill; clock_gettime is async-signal-safe
    // (vDSO) and no cancellation point.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    i64::from(ts.tv_sec) * 1_000_000_000 + i64::from(ts.tv_nsec)
}

/// Whether another thread's cpu-op holds `word` now (a word owned
/// forever, see `shut_out_mm_cid`, is no hold to wait for).
fn held_by_other(word: &AtomicU32, holder: &AtomicUsize) -> bool {
    let w = word.load(Ordering::Relaxed);
    // SAFETY: pthread_self has no preconditions.
    w != 0
        && w != OWNED_FOREVER
        && holder.load(Ordering::Relaxed) != unsafe { libc::pthread_self() as usize }
}

/// How long a thread's answer to "am I a real-time thread" is reused.
const POLICY_CACHE_NS: i64 = 1_000_000;

extern "C" {
    /// The calling thread's policy cache (src/area.c, static TLS: no
    /// allocation on first use, usable from signal handlers).
    fn rseq_impl_policy_cache_ptr() -> *mut i64;
}

/// Whether the calling thread runs under a real-time policy (SCHED_FIFO,
/// SCHED_RR, SCHED_DEADLINE): one `sched_getscheduler` call per thread
/// and millisecond at most.
#[cfg(not(miri))]
fn caller_is_real_time() -> bool {
    let now = monotonic_ns();
    // SAFETY: the calling thread's own static-TLS word, valid for its
    // life; a signal handler of the thread may rewrite it with an equally
    // valid value.
    let cell = unsafe { rseq_impl_policy_cache_ptr() };
    // SAFETY: as above.
    let cached = unsafe { cell.read_volatile() };
    if cached != 0 && now.wrapping_sub(cached >> 1) < POLICY_CACHE_NS {
        return cached & 1 != 0;
    }
    // SAFETY: no preconditions.
    let policy = unsafe { libc::sched_getscheduler(0) } & !libc::SCHED_RESET_ON_FORK;
    let rt = [libc::SCHED_FIFO, libc::SCHED_RR, libc::SCHED_DEADLINE].contains(&policy);
    // SAFETY: as above.
    unsafe { cell.write_volatile((now << 1) | rt as i64) };
    rt
}

/// Miri runs no C: no thread is real-time there.
#[cfg(miri)]
fn caller_is_real_time() -> bool {
    false
}

/// After an aborted critical section: while a cpu-op of another thread
/// holds the word of the CPU the caller runs on (or of the mm_cid it
/// holds), let the holder finish instead of retrying at once.
///
/// Why (issue 9, scenario 9): a holder preempted on this CPU by a thread
/// of higher priority (SCHED_FIFO) cannot finish while that thread
/// retries its section, and every retry aborts on the held word: the
/// retry loop spun until the kernel's real-time throttling (950 ms of
/// every second by default) let the holder run. So a real-time caller
/// (SCHED_FIFO, SCHED_RR, SCHED_DEADLINE; the answer cached per thread
/// for a millisecond) that finds such a word held spins on it for up to
/// 50 µs (a running holder releases it sooner: one vector), then sleeps
/// in steps of 20 µs, which lets a
/// preempted holder on this CPU run. The wait is bounded (2 ms per
/// abort): the caller's loop retries, and its next abort waits again.
/// A caller of normal priority returns at once and retries, as before:
/// the fair scheduler preempts it for a holder, and waiting there would
/// change how sections and cpu-ops interleave on a CPU.
/// The sleep is the raw `nanosleep` system call: glibc's is a
/// cancellation point, and this runs in slow paths that must not unwind.
pub fn wait_for_holder_of_current() {
    let cpu = crate::cpu::current_cpu_raw();
    let mut words: [Option<(&AtomicU32, &AtomicUsize)>; 2] = [None, None];
    if let Some(s) = slot(cpu) {
        words[0] = Some(s.word(PercpuMode::CpuId));
    }
    if crate::cpu::mm_cid_available() {
        if let Some(s) = slot(crate::cpu::current_mm_cid() as i32) {
            words[1] = Some((&s.mm_cid, &s.mm_cid_holder));
        }
    }
    let held = || words.iter().flatten().any(|(w, h)| held_by_other(w, h));
    if !held() {
        return;
    }
    if !caller_is_real_time() {
        return;
    }
    let start = monotonic_ns();
    loop {
        for _ in 0..64 {
            core::hint::spin_loop();
        }
        if !held() {
            return;
        }
        let waited = monotonic_ns() - start;
        if waited >= HOLDER_WAIT_NS {
            return;
        }
        if waited >= HOLDER_SPIN_NS {
            let ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: HOLDER_SLEEP_NS as _,
            };
            // SAFETY: a valid timespec; the raw system call is no
            // cancellation point and touches no other memory.
            unsafe {
                libc::syscall(
                    libc::SYS_nanosleep,
                    &ts,
                    core::ptr::null_mut::<libc::timespec>(),
                )
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_word_owned_forever_is_replaced_by_the_stand_in() {
        // SAFETY: a Slot is atomics and padding; all-zero is a valid value.
        let slot = unsafe { Box::<Slot>::new_zeroed().assume_init() };
        let (w, _) = slot.word(PercpuMode::MmCid);
        assert!(core::ptr::eq(w, &slot.mm_cid));
        slot.mm_cid.store(OWNED_FOREVER, Ordering::Relaxed);
        let (w, h) = slot.word(PercpuMode::MmCid);
        assert!(core::ptr::eq(w, &slot.mm_cid_stand_in));
        assert!(core::ptr::eq(h, &slot.mm_cid_holder));
        // The CPU word is never replaced.
        let (w, _) = slot.word(PercpuMode::CpuId);
        assert!(core::ptr::eq(w, &slot.cpu_id));
    }
}
