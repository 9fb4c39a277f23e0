//! Per-process counters of everything that leaves a fast path.
//!
//! Nothing here is touched by a committing critical section. Aborts and
//! fallbacks are counted in process-wide relaxed atomics (they are rare);
//! cpu-op events are counted in the slot of the target CPU or mm_cid
//! (the crate-private `owner::Slot`), on a cache line the cpu-op owns anyway, and
//! summed when read.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::cpu_op::fence::{Fence, KINDS};
use crate::owner::{self, COUNT_FENCES, COUNT_VECTORS, COUNT_WAITS};

/// A counter of slow-path events.
pub struct Counter(AtomicU64);

impl Counter {
    const fn new() -> Counter {
        Counter(AtomicU64::new(0))
    }
    /// Adds one.
    ///
    /// On ARMv8.0 without LSE atomics an atomic add is an LDXR/STXR loop,
    /// which never completes under `PTRACE_SINGLESTEP` (the debug
    /// exception clears the exclusive monitor): a single-stepped thread
    /// counting its first aborted section would spin there forever. There
    /// the add is a bounded number of single exclusive attempts, then a
    /// plain load and store: exact whenever the monitor works (the tests
    /// compare these counts), and a possible lost count only when it
    /// cannot (single-stepping).
    #[inline]
    pub fn bump(&self) {
        if crate::cpu_op::engine::user_cas_progresses() {
            self.0.fetch_add(1, Ordering::Relaxed);
        } else {
            bump_bounded(&self.0);
        }
    }
    /// The current value.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// [`Counter::bump`] where an atomic add may not progress: at most 64
/// single exclusive attempts, then a plain load and store.
#[cfg(target_arch = "aarch64")]
#[cold]
fn bump_bounded(c: &AtomicU64) {
    for _ in 0..64 {
        if crate::arch::increment_exclusive_once(c) {
            return;
        }
    }
    c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

/// Only aarch64 has CPUs whose atomic add may not progress.
#[cfg(not(target_arch = "aarch64"))]
#[cold]
fn bump_bounded(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Critical sections that aborted (any cause).
pub static ABORTS: Counter = Counter::new();
/// `percpu_*` operations whose rseq attempt aborted and that fell back to
/// a cpu-op.
pub static FALLBACKS: Counter = Counter::new();

/// Records one aborted critical section (the `rseq:abort` probe).
#[inline]
pub fn record_abort() {
    ABORTS.bump();
    usdt!(rseq, abort);
}

/// Records one fallback from an rseq fast path to a cpu-op (the
/// `rseq:fallback` probe, with the CPU).
#[inline]
pub fn record_fallback(cpu: i32) {
    FALLBACKS.bump();
    usdt!(rseq, fallback, cpu);
}

/// The counters (`struct cpu_op_counters` in C; new fields are only ever
/// appended).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuOpCounters {
    /// cpu-op vectors and helpers run (fences included).
    pub vectors: u64,
    /// Fences skipped: no thread could have rseq registered.
    pub fences_none: u64,
    /// Fences free: the caller ran on the target CPU (or held the mm_cid).
    pub fences_own_cpu: u64,
    /// Fences by `membarrier` on one CPU.
    pub fences_membarrier_cpu: u64,
    /// Fences by `membarrier` on every CPU (mm_cid targets).
    pub fences_membarrier_all: u64,
    /// Fences by migrating onto the target CPU(s).
    pub fences_migrate: u64,
    /// Times a cpu-op slept because another one owned its target.
    pub waits: u64,
    /// Critical sections that aborted.
    pub rseq_aborts: u64,
    /// `percpu_*` operations that fell back to a cpu-op.
    pub fallbacks: u64,
}

/// Sums the counters now.
pub fn snapshot() -> CpuOpCounters {
    let mut fences = [0u64; KINDS];
    let mut c = CpuOpCounters::default();
    for slot in owner::possible_slots() {
        let get = |i: usize| slot.counters[i].load(Ordering::Relaxed);
        c.vectors += get(COUNT_VECTORS);
        c.waits += get(COUNT_WAITS);
        for (k, f) in fences.iter_mut().enumerate() {
            *f += get(COUNT_FENCES + k);
        }
    }
    c.fences_none = fences[Fence::None as usize];
    c.fences_own_cpu = fences[Fence::OwnCpu as usize];
    c.fences_membarrier_cpu = fences[Fence::MembarrierCpu as usize];
    c.fences_membarrier_all = fences[Fence::MembarrierAll as usize];
    c.fences_migrate = fences[Fence::Migrate as usize];
    c.rseq_aborts = ABORTS.get();
    c.fallbacks = FALLBACKS.get();
    c
}
