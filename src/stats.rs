//! Per-process counters of everything that leaves a fast path.
//!
//! The counters are plain relaxed atomics: they are only touched on slow
//! paths (aborts, fallbacks, cpu-ops), never by a committing section.

use core::sync::atomic::{AtomicU64, Ordering};

/// A counter of slow-path events.
pub struct Counter(AtomicU64);

impl Counter {
    const fn new() -> Counter {
        Counter(AtomicU64::new(0))
    }
    /// Adds one.
    #[inline]
    pub fn bump(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// The current value.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Critical sections that aborted (any cause).
pub static ABORTS: Counter = Counter::new();

/// Records one aborted critical section.
#[inline]
pub fn record_abort() {
    ABORTS.bump();
}
