//! Safe per-CPU data structures built on the critical sections, with the
//! cpu-op fallback that makes them always complete.

use core::sync::atomic::{AtomicIsize, Ordering};

use crate::cpu;
use crate::cpu_op;
use crate::ops::{self, Mo, PercpuMode};

/// rseq attempts before an operation falls back to a cpu-op (a thread
/// being single-stepped, or one whose rseq is refused, never commits).
const ATTEMPTS: usize = 4;

/// A cache-line-aligned slot.
#[repr(align(128))]
struct Slot(AtomicIsize);

/// A counter with one slot per CPU (or per mm_cid): `add` is one rseq
/// critical section, no atomic instruction; `sum` adds the slots up.
///
/// ```
/// let hits = rseq::percpu::Counter::new();
/// std::thread::scope(|s| {
///     for _ in 0..4 {
///         s.spawn(|| (0..1000).for_each(|_| hits.add(1)));
///     }
/// });
/// assert_eq!(hits.sum(), 4000);
/// ```
pub struct Counter {
    slots: Box<[Slot]>,
    mode: PercpuMode,
}

impl Default for Counter {
    fn default() -> Self {
        Counter::new()
    }
}

impl Counter {
    /// A counter indexed by CPU number.
    pub fn new() -> Counter {
        Counter::with_mode(PercpuMode::CpuId)
    }

    /// A counter indexed by CPU number or by mm_cid (compact when a
    /// process runs few threads on a big machine; needs Linux 6.3+, else
    /// every add takes the cpu-op path).
    pub fn with_mode(mode: PercpuMode) -> Counter {
        crate::registration::init();
        let n = cpu::possible().len();
        Counter {
            slots: (0..n).map(|_| Slot(AtomicIsize::new(0))).collect(),
            mode,
        }
    }

    /// The index the calling thread uses now (a hint; the section checks).
    #[inline]
    fn index(&self) -> usize {
        let i = match self.mode {
            PercpuMode::CpuId => cpu::cpu_start() as usize,
            PercpuMode::MmCid => cpu::current_mm_cid() as usize,
        };
        i.min(self.slots.len() - 1)
    }

    /// Adds `n` to the calling thread's slot.
    #[inline]
    pub fn add(&self, n: isize) {
        if !self.try_rseq(n) {
            self.add_slow(n);
        }
    }

    #[inline]
    fn try_rseq(&self, n: isize) -> bool {
        (0..ATTEMPTS).any(|_| {
            let i = self.index();
            // SAFETY: the slot is a live, aligned isize of this counter,
            // only written by critical sections and cpu-ops on index i.
            unsafe {
                ops::load_add_store(
                    Mo::Relaxed,
                    self.mode,
                    self.slots[i].0.as_ptr(),
                    n,
                    i as i32,
                )
            }
            .is_ok()
        })
    }

    /// rseq cannot commit for this thread now: add under a cpu-op on the
    /// thread's index. A cpu-op fails only in corner cases (a CPU that
    /// cannot be fenced on an old kernel, a signal handler interrupting a
    /// cpu-op on the same index); rseq is tried again then.
    #[cold]
    fn add_slow(&self, n: isize) {
        loop {
            let i = self.index();
            crate::stats::record_fallback(i as i32);
            // SAFETY: as in `try_rseq`; the cpu-op owns index i meanwhile.
            if unsafe { cpu_op::addv(self.slots[i].0.as_ptr(), n as i64, i as i32, self.mode) }
                .is_ok()
                || self.try_rseq(n)
            {
                return;
            }
        }
    }

    /// The sum of all slots (exact once the adders have finished).
    pub fn sum(&self) -> isize {
        self.slots
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .fold(0, isize::wrapping_add)
    }
}
