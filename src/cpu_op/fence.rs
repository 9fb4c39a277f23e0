//! Fences: making sure no critical section that started before a cpu-op
//! took a CPU is still running there.
//!
//! Called with the CPU's (or mm_cid's) ownership word already set. A
//! section that loads the word after that sees it set and aborts; the
//! fence deals with the sections that loaded it before. The cheapest
//! sufficient fence is chosen:
//!
//! 1. [`Fence::None`]: no thread of the process can have rseq registered
//!    (the kernel has no rseq, or refuses it), so no section can commit.
//! 2. [`Fence::OwnCpu`]: the caller runs on the target CPU (or holds the
//!    target mm_cid) now, after taking the word: whoever ran a section
//!    there was preempted since, and the kernel aborts preempted sections.
//! 3. [`Fence::MembarrierCpu`] / [`Fence::MembarrierAll`]:
//!    `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ)` interrupts the
//!    target CPU (every CPU for an mm_cid, which cannot be targeted): a
//!    section running there is aborted on return from the interrupt, and
//!    the interrupt orders the word's store before anything that CPU does
//!    next (Linux 5.10+).
//! 4. [`Fence::Migrate`]: without that command, the caller moves itself
//!    onto the target CPU with `sched_setaffinity` (case 2 by force), then
//!    back. A CPU that is offline runs nothing and needs no fence. A CPU
//!    the caller may not run on (outside its cpuset) cannot be fenced
//!    this way: EINVAL.

use core::sync::atomic::{AtomicU8, Ordering};

use crate::abi;
use crate::cpu;
use crate::ops::PercpuMode;
use crate::registration::{self, Owner};
use crate::sys::{self, Errno};

/// How a fence was achieved (also the index of its counter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fence {
    /// No thread can have rseq registered.
    None = 0,
    /// The caller was on the target CPU, or held the target mm_cid.
    OwnCpu = 1,
    /// `membarrier` on the target CPU.
    MembarrierCpu = 2,
    /// `membarrier` on every CPU (mm_cid targets).
    MembarrierAll = 3,
    /// The caller migrated onto the target CPU(s).
    Migrate = 4,
}

/// Number of [`Fence`] kinds.
pub const KINDS: usize = 5;

const UNKNOWN: u8 = 0;
const REGISTERED: u8 = 1;
const UNAVAILABLE: u8 = 2;

/// Whether this process registered for `MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ`
/// (per address space: a forked child must register again).
static MEMBARRIER: AtomicU8 = AtomicU8::new(UNKNOWN);

fn membarrier_ready() -> bool {
    match MEMBARRIER.load(Ordering::Acquire) {
        REGISTERED => true,
        UNAVAILABLE => false,
        _ => {
            let ok =
                sys::membarrier(abi::MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0).is_ok();
            MEMBARRIER.store(if ok { REGISTERED } else { UNAVAILABLE }, Ordering::Release);
            ok
        }
    }
}

/// Forgets the membarrier registration (in a forked child).
pub(crate) fn reset_after_fork() {
    MEMBARRIER.store(UNKNOWN, Ordering::Release);
}

/// Whether some thread of the process may have a registered rseq area
/// that this library's sections use.
///
/// When the library owns registration, `rseq_size` turns non-zero (with a
/// sequentially consistent read-modify-write) the first time any thread
/// registers, before that thread can run a section. The caller has already
/// set the ownership word with a sequentially consistent RMW, so either
/// this load sees the registration, or the registering thread's sections
/// see the word (Dekker's argument). When glibc owns registration, glibc
/// registered threads successfully, so yes.
fn rseq_possibly_registered() -> bool {
    match registration::owner() {
        Owner::Library => registration::rseq_size.load(Ordering::SeqCst) != 0,
        Owner::Uninit => false,
        Owner::Libc | Owner::Finished => true,
    }
}

/// Whether the caller runs on `target` (CPU_ID) or holds mm_cid `target`.
fn on_target(target: i32, mode: PercpuMode) -> bool {
    match mode {
        PercpuMode::CpuId => {
            let raw = cpu::current_cpu_raw();
            let now = if raw >= 0 {
                raw
            } else {
                // SAFETY: sched_getcpu has no preconditions.
                unsafe { libc::sched_getcpu() }
            };
            now == target
        }
        // Only a registered thread holds an mm_cid the kernel tells it.
        PercpuMode::MmCid => cpu::current_cpu_raw() >= 0 && cpu::current_mm_cid() as i32 == target,
    }
}

/// CPUs found offline by [`crate::sys::cpu_online`] (read while no word
/// was held), which a migrating fence may skip.
pub struct Offline {
    set: libc::cpu_set_t,
    count: usize,
}

impl Offline {
    /// No CPU known offline.
    pub fn none() -> Offline {
        Offline {
            // SAFETY: a zeroed cpu_set_t is a valid empty set.
            set: unsafe { core::mem::zeroed() },
            count: 0,
        }
    }

    fn contains(&self, cpu: i32) -> bool {
        (cpu as usize) < libc::CPU_SETSIZE as usize
            // SAFETY: in bounds (checked).
            && unsafe { libc::CPU_ISSET(cpu as usize, &self.set) }
    }

    /// Reads whether `cpu` is offline (call with no word held). True: it
    /// is, and is now known; false: it is online (or already known, which
    /// means it came back online), the caller cannot reach it now.
    pub fn learn(&mut self, cpu: i32) -> bool {
        if cpu < 0
            || cpu as usize >= libc::CPU_SETSIZE as usize
            || self.contains(cpu)
            || self.count > libc::CPU_SETSIZE as usize
            || sys::cpu_online(cpu)
        {
            return false;
        }
        // SAFETY: in bounds (checked above).
        unsafe { libc::CPU_SET(cpu as usize, &mut self.set) };
        self.count += 1;
        true
    }
}

/// Why a fence failed.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// The target cannot be fenced (and nothing ran).
    Errno(Errno),
    /// The caller could not migrate onto this CPU, which is not known to
    /// be offline: the caller finds out, with no word held, and retries.
    Unreachable(i32),
}

impl From<Errno> for Failure {
    fn from(e: Errno) -> Failure {
        Failure::Errno(e)
    }
}

fn single(cpu: i32) -> libc::cpu_set_t {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET is in
    // bounds for CPUs below CPU_SETSIZE (checked by the caller).
    unsafe {
        let mut one: libc::cpu_set_t = core::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut one);
        one
    }
}

fn same_set(a: &libc::cpu_set_t, b: &libc::cpu_set_t) -> bool {
    // SAFETY: two valid cpu_set_t values compared byte by byte.
    unsafe {
        libc::memcmp(
            (a as *const libc::cpu_set_t).cast(),
            (b as *const libc::cpu_set_t).cast(),
            core::mem::size_of::<libc::cpu_set_t>(),
        ) == 0
    }
}

/// Runs the caller on each CPU of `targets` in turn, then restores its
/// affinity. A CPU the caller cannot move onto is skipped when `offline`
/// knows it offline, reported as [`Failure::Unreachable`] otherwise.
///
/// Restoring: if another thread changed the caller's affinity while it
/// migrated (`sched_setaffinity(tid)` from elsewhere), the mask found at
/// the end is no longer the one-CPU mask this function set, and it is
/// left alone: the concurrent change wins. The remaining window is
/// between the final `sched_getaffinity` and `sched_setaffinity` (two
/// system calls, about a microsecond), where a concurrent change is
/// overwritten by the saved mask. (`sched_getaffinity` also reports the
/// saved mask restricted to the CPUs online at the time.)
fn migrate_onto(targets: impl Iterator<Item = i32>, offline: &Offline) -> Result<(), Failure> {
    let saved = sys::get_affinity()?;
    let mut result = Ok(());
    let mut last_set: Option<libc::cpu_set_t> = None;
    for target in targets {
        if target < 0 || target as usize >= libc::CPU_SETSIZE as usize {
            result = Err(Failure::Errno(Errno(libc::EINVAL)));
            break;
        }
        let one = single(target);
        match sys::set_affinity(&one) {
            // sched_setaffinity returns once the caller runs on an
            // allowed CPU; check rather than trust.
            Ok(()) if on_target(target, PercpuMode::CpuId) => last_set = Some(one),
            Ok(()) => {
                // Allowed but not running there: the CPU went down
                // meanwhile (a hotplug transition); the caller retries.
                last_set = Some(one);
                result = Err(Failure::Unreachable(target));
                break;
            }
            Err(_) if offline.contains(target) => {}
            Err(_) => {
                result = Err(Failure::Unreachable(target));
                break;
            }
        }
    }
    if let Some(mine) = last_set {
        match sys::get_affinity() {
            Ok(now) if !same_set(&now, &mine) => {}
            _ => {
                let _ = sys::set_affinity(&saved);
            }
        }
    }
    result
}

/// Fences `target` (a CPU, or an mm_cid) with its ownership word held.
/// Allocates nothing, opens no file, calls no cancellation point.
pub fn fence(target: i32, mode: PercpuMode, offline: &Offline) -> Result<Fence, Failure> {
    if !rseq_possibly_registered() {
        return Ok(Fence::None);
    }
    // No MM_CID section can commit on a kernel without mm_cid (see
    // `owner::shut_out_mm_cid`): nothing to fence.
    if mode == PercpuMode::MmCid && crate::owner::mm_cid_shut_out() {
        return Ok(Fence::None);
    }
    if on_target(target, mode) {
        return Ok(Fence::OwnCpu);
    }
    match mode {
        PercpuMode::CpuId => {
            if membarrier_ready()
                && sys::membarrier(
                    abi::MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ,
                    abi::MEMBARRIER_CMD_FLAG_CPU,
                    target,
                )
                .is_ok()
            {
                return Ok(Fence::MembarrierCpu);
            }
            migrate_onto(core::iter::once(target), offline).map(|()| Fence::Migrate)
        }
        PercpuMode::MmCid => {
            if membarrier_ready()
                && sys::membarrier(abi::MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, 0, 0).is_ok()
            {
                return Ok(Fence::MembarrierAll);
            }
            let possible = cpu::possible();
            migrate_onto(
                (0..possible.len() as i32).filter(|&c| possible.contains(c)),
                offline,
            )
            .map(|()| Fence::Migrate)
        }
    }
}

/// Whether any CPU can be fenced: no fence is needed, or the kernel has
/// `membarrier(PRIVATE_EXPEDITED_RSEQ)` for this process.
pub fn available() -> bool {
    registration::init();
    !rseq_possibly_registered() || membarrier_ready()
}
