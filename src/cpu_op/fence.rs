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

fn cpu_online(target: i32) -> bool {
    let path = format!("/sys/devices/system/cpu/cpu{target}/online");
    match std::fs::read_to_string(path) {
        Ok(s) => s.trim() != "0",
        // CPU 0 often has no "online" file: it cannot go offline.
        Err(_) => true,
    }
}

/// Runs the caller on each CPU of `targets` in turn, then restores its
/// affinity. Fails with EINVAL if an online target cannot be reached.
fn migrate_onto(targets: impl Iterator<Item = i32>) -> Result<(), Errno> {
    let saved = sys::get_affinity()?;
    let mut result = Ok(());
    for target in targets {
        if target as usize >= libc::CPU_SETSIZE as usize {
            result = Err(Errno(libc::EINVAL));
            break;
        }
        // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET is in
        // bounds for targets below CPU_SETSIZE (checked above).
        let one = unsafe {
            let mut one: libc::cpu_set_t = core::mem::zeroed();
            libc::CPU_SET(target as usize, &mut one);
            one
        };
        match sys::set_affinity(&one) {
            // sched_setaffinity returns once the caller runs on an
            // allowed CPU; check rather than trust.
            Ok(()) if on_target(target, PercpuMode::CpuId) => {}
            Ok(()) => {
                result = Err(Errno(libc::EINVAL));
                break;
            }
            Err(_) if !cpu_online(target) => {}
            Err(_) => {
                result = Err(Errno(libc::EINVAL));
                break;
            }
        }
    }
    let _ = sys::set_affinity(&saved);
    result
}

/// Fences `target` (a CPU, or an mm_cid) with its ownership word held.
pub fn fence(target: i32, mode: PercpuMode) -> Result<Fence, Errno> {
    if !rseq_possibly_registered() {
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
            migrate_onto(core::iter::once(target)).map(|()| Fence::Migrate)
        }
        PercpuMode::MmCid => {
            if membarrier_ready()
                && sys::membarrier(abi::MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, 0, 0).is_ok()
            {
                return Ok(Fence::MembarrierAll);
            }
            let possible = cpu::possible();
            migrate_onto((0..possible.len() as i32).filter(|&c| possible.contains(c)))
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
