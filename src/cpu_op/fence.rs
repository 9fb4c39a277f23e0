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
//!    back. A CPU that is offline (or possible but not present) runs
//!    nothing and needs no fence; one in a hotplug transition is retried
//!    until it is either reachable or offline. A CPU the caller may not
//!    run on (outside its cpuset) cannot be fenced this way: EINVAL
//!    (after about a second of retries, see `REACH_ATTEMPTS`).

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

/// Whether `cpu` is in the kernel's online mask, read from sysfs without
/// allocating (a cpu-op may run in a signal handler). `None` when the
/// mask cannot be read (no sysfs).
///
/// A CPU outside the mask runs no task, so no section can be running
/// there: a cpu-op needs no fence for it. This covers possible CPUs that
/// were never present (they have no `cpuN` directory at all). The mask is
/// read after the ownership word was set: a section that checked the word
/// before that ran on the CPU then, and the CPU going offline since
/// preempted it (the kernel aborts preempted sections).
fn cpu_online(cpu: i32) -> Option<bool> {
    let mut buf = [0u8; 1024];
    // SAFETY: a NUL-terminated path; open has no other preconditions.
    let fd = unsafe {
        libc::open(
            c"/sys/devices/system/cpu/online".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    let mut len = 0;
    while len < buf.len() {
        // SAFETY: reads into the unused tail of `buf`, within bounds.
        let n = unsafe { libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len) };
        if n <= 0 {
            break;
        }
        len += n as usize;
    }
    // SAFETY: `fd` is the descriptor opened above, closed once.
    unsafe { libc::close(fd) };
    // A list longer than the buffer is cut: trust only complete ranges.
    let text = &buf[..len];
    let text = if len == buf.len() {
        &text[..text.iter().rposition(|&b| b == b',').unwrap_or(0)]
    } else {
        text
    };
    cpu_list_contains(text, cpu)
}

/// Whether a kernel CPU list (`0-3,8,10-11`) holds `cpu`; `None` when the
/// text is not such a list.
fn cpu_list_contains(text: &[u8], cpu: i32) -> Option<bool> {
    fn number(s: &[u8]) -> Option<i64> {
        if s.is_empty() || s.len() > 9 || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(s.iter().fold(0i64, |n, &d| n * 10 + i64::from(d - b'0')))
    }
    let text = text.trim_ascii();
    let mut found = false;
    for part in text.split(|&b| b == b',').filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.iter().position(|&b| b == b'-') {
            Some(dash) => (number(&part[..dash])?, number(&part[dash + 1..])?),
            None => {
                let n = number(part)?;
                (n, n)
            }
        };
        found |= (lo..=hi).contains(&i64::from(cpu));
    }
    Some(found)
}

/// How many times [`reach`] tries to run on a CPU that is online but
/// refuses the caller: a hotplug transition (the CPU is online but not
/// yet, or no longer, active) lasts milliseconds; a CPU outside the
/// caller's cpuset refuses for ever, and costs this bound (about one
/// second) before EINVAL.
const REACH_ATTEMPTS: u32 = 1000;

/// Runs the caller on `target` (its affinity set to `one`, that CPU
/// alone), or finds the CPU offline. Retries during hotplug transitions.
fn reach(target: i32, one: &libc::cpu_set_t) -> Result<(), Errno> {
    for attempt in 0..REACH_ATTEMPTS {
        // sched_setaffinity returns once the caller runs on an allowed
        // CPU; check rather than trust (the CPU may go down meanwhile).
        if sys::set_affinity(one).is_ok() && on_target(target, PercpuMode::CpuId) {
            return Ok(());
        }
        match cpu_online(target) {
            Some(false) => return Ok(()),
            // Without sysfs a refusal cannot be told from a transition.
            None => return Err(Errno(libc::EINVAL)),
            Some(true) if attempt < 16 => {
                // SAFETY: sched_yield has no preconditions.
                unsafe { libc::sched_yield() };
            }
            Some(true) => {
                let pause = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 1_000_000,
                };
                // SAFETY: `pause` is a valid timespec; no remainder wanted.
                unsafe { libc::nanosleep(&pause, core::ptr::null_mut()) };
            }
        }
    }
    Err(Errno(libc::EINVAL))
}

/// Runs the caller on each CPU of `targets` in turn, then restores its
/// affinity. Offline targets (also possible CPUs that are not present)
/// need no visit. Fails with EINVAL if an online target cannot be reached
/// (outside the caller's cpuset).
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
        result = reach(target, &one);
        if result.is_err() {
            break;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_are_parsed_without_allocating() {
        let list = b"0-3,8,10-11\n";
        for cpu in [0, 1, 3, 8, 10, 11] {
            assert_eq!(cpu_list_contains(list, cpu), Some(true), "{cpu}");
        }
        for cpu in [-1, 4, 7, 9, 12, 4096] {
            assert_eq!(cpu_list_contains(list, cpu), Some(false), "{cpu}");
        }
        assert_eq!(cpu_list_contains(b"0\n", 0), Some(true));
        assert_eq!(cpu_list_contains(b"\n", 0), Some(false));
        assert_eq!(cpu_list_contains(b"0-x", 0), None);
        assert_eq!(cpu_list_contains(b"-3", 0), None);
    }

    #[test]
    fn the_running_cpu_is_online() {
        let (cpu, _) = sys::getcpu().unwrap();
        assert_eq!(cpu_online(cpu as i32), Some(true));
        assert_eq!(cpu_online(1 << 20), Some(false));
    }
}
