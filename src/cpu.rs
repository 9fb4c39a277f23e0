//! CPU numbers: the possible-CPU set and the per-thread accessors.
//!
//! The accessors read the calling thread's rseq area (kernel-maintained,
//! one load each) and fall back to `getcpu()` where the area cannot
//! answer. The header `rseq/rseq.h` has inline C versions of the same
//! accessors; the C API layer exports these for `RSEQ_NO_INLINE` builds
//! and other languages.

use std::sync::OnceLock;

use crate::abi;
use crate::arch;
use crate::registration;
use crate::sys;

/// The set of CPUs the kernel may ever bring online (`cpu_possible_mask`).
#[derive(Debug)]
pub struct PossibleCpus {
    /// One past the highest possible CPU number.
    len: usize,
    /// Bit `n` set when CPU `n` is possible.
    bits: Vec<u64>,
}

impl PossibleCpus {
    /// Parses a kernel CPU list such as `0-3,8,10-11`.
    pub fn parse(list: &str) -> Option<PossibleCpus> {
        let mut cpus = Vec::new();
        for part in list.trim().split(',').filter(|p| !p.is_empty()) {
            let (lo, hi) = match part.split_once('-') {
                Some((lo, hi)) => (
                    lo.trim().parse::<usize>().ok()?,
                    hi.trim().parse::<usize>().ok()?,
                ),
                None => {
                    let n = part.trim().parse::<usize>().ok()?;
                    (n, n)
                }
            };
            if lo > hi || hi >= (1 << 20) {
                return None;
            }
            cpus.push((lo, hi));
        }
        let len = cpus.iter().map(|&(_, hi)| hi + 1).max()?;
        let mut bits = vec![0u64; len.div_ceil(64)];
        for (lo, hi) in cpus {
            for cpu in lo..=hi {
                bits[cpu / 64] |= 1 << (cpu % 64);
            }
        }
        Some(PossibleCpus { len, bits })
    }

    fn all(len: usize) -> PossibleCpus {
        let mut bits = vec![0u64; len.div_ceil(64)];
        for cpu in 0..len {
            bits[cpu / 64] |= 1 << (cpu % 64);
        }
        PossibleCpus { len, bits }
    }

    /// One past the highest possible CPU number: the size of an array
    /// indexed by CPU number (or by mm_cid).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: the running CPU is possible.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `cpu` is a possible CPU.
    pub fn contains(&self, cpu: i32) -> bool {
        cpu >= 0
            && (cpu as usize) < self.len
            && self.bits[cpu as usize / 64] & (1 << (cpu as usize % 64)) != 0
    }
}

/// The possible CPUs, read once from `/sys/devices/system/cpu/possible`
/// (falling back to `sysconf(_SC_NPROCESSORS_CONF)` where sysfs is absent,
/// as in some sandboxes).
pub fn possible() -> &'static PossibleCpus {
    static POSSIBLE: OnceLock<PossibleCpus> = OnceLock::new();
    POSSIBLE.get_or_init(|| {
        let parsed = std::fs::read_to_string("/sys/devices/system/cpu/possible")
            .ok()
            .and_then(|s| PossibleCpus::parse(&s));
        parsed.unwrap_or_else(|| {
            // SAFETY: sysconf has no memory-safety preconditions.
            let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
            PossibleCpus::all(n.max(1) as usize)
        })
    })
}

/// Reads one 32-bit field of the calling thread's rseq area, or `None`
/// before the library is initialised.
#[inline(always)]
fn area_field<const FIELD: usize>() -> Option<u32> {
    let offset = registration::offset();
    // The idle area (x86_64) reads as an unregistered thread's.
    (crate::idle::ALWAYS_AN_AREA || offset != 0).then(|| arch::area_u32::<FIELD>(offset))
}

/// The raw `cpu_id` field: the current CPU, or -1 (not registered) / -2
/// (registration failed).
#[inline]
pub fn current_cpu_raw() -> i32 {
    area_field::<{ abi::CPU_ID_OFFSET }>().map_or(abi::CPU_ID_UNINITIALIZED, |v| v as i32)
}

/// The `cpu_id_start` field: always a possible CPU (0 when unregistered),
/// the number to pass to a critical section, which then checks it.
#[inline]
pub fn cpu_start() -> u32 {
    area_field::<{ abi::CPU_ID_START_OFFSET }>().unwrap_or(0)
}

/// The current CPU: from the rseq area when the thread is registered,
/// else from `getcpu()` (after trying to register the thread).
#[inline]
pub fn current_cpu() -> i32 {
    let cpu = current_cpu_raw();
    if cpu >= 0 {
        cpu
    } else {
        fallback_current_cpu()
    }
}

/// `sched_getcpu()`, after registering the thread if automatic
/// registration applies. Aborts the process if the kernel cannot say
/// (librseq's behaviour).
#[cold]
pub fn fallback_current_cpu() -> i32 {
    registration::on_slow_path();
    match sys::getcpu() {
        Ok((cpu, _)) => cpu as i32,
        Err(_) => std::process::abort(),
    }
}

/// The NUMA node of the current CPU, through `getcpu()`.
pub fn fallback_current_node() -> i32 {
    match sys::getcpu() {
        Ok((_, node)) => node as i32,
        Err(_) => std::process::abort(),
    }
}

/// Whether the kernel fills in `node_id` for this process's registration.
#[inline]
pub fn node_id_available() -> bool {
    let size = registration::active_size();
    size != u32::MAX && size >= abi::NODE_ID_FEATURE_END
}

/// The `node_id` field (meaningful when [`node_id_available`]).
#[inline]
pub fn current_node_id() -> u32 {
    area_field::<{ abi::NODE_ID_OFFSET }>().unwrap_or(0)
}

/// Whether the kernel fills in `mm_cid` for this process's registration.
#[inline]
pub fn mm_cid_available() -> bool {
    let size = registration::active_size();
    size != u32::MAX && size >= abi::MM_CID_FEATURE_END
}

/// The `mm_cid` field (meaningful when [`mm_cid_available`]).
#[inline]
pub fn current_mm_cid() -> u32 {
    area_field::<{ abi::MM_CID_OFFSET }>().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_lists() {
        let p = PossibleCpus::parse("0-3,8,10-11\n").unwrap();
        assert_eq!(p.len(), 12);
        for cpu in [0, 1, 2, 3, 8, 10, 11] {
            assert!(p.contains(cpu), "{cpu}");
        }
        for cpu in [-1, 4, 7, 9, 12, 1000] {
            assert!(!p.contains(cpu), "{cpu}");
        }
        assert_eq!(PossibleCpus::parse("0").unwrap().len(), 1);
        assert!(PossibleCpus::parse("").is_none());
        assert!(PossibleCpus::parse("3-1").is_none());
        assert!(PossibleCpus::parse("x").is_none());
    }

    #[test]
    fn the_running_cpu_is_possible() {
        let (cpu, _) = sys::getcpu().unwrap();
        assert!(possible().contains(cpu as i32));
        assert!(current_cpu() >= 0);
        assert!(possible().contains(current_cpu()));
    }
}
