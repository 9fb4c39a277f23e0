//! Owning a CPU (or mm_cid), and running code while owning it.
//!
//! The ownership word of a slot is a futex-based mutex (Drepper's
//! "mutex 2"): 0 free, [`LOCKED`], or [`CONTENDED`] when a thread may be
//! sleeping on it. Critical sections only ever test it for non-zero.

use core::sync::atomic::{fence, AtomicU32, AtomicUsize, Ordering};

use super::fence as cpu_fence;
use crate::cpu;
use crate::ops::PercpuMode;
use crate::owner::{self, Slot, COUNT_FENCES, COUNT_VECTORS, COUNT_WAITS};
use crate::registration;
use crate::sys::{self, Errno};

/// Word value: owned, nobody waits.
pub const LOCKED: u32 = 1;
/// Word value: owned, waiters may sleep on the futex.
pub const CONTENDED: u32 = 2;

extern "C" {
    fn rseq_impl_cpu_op_marker_ptr() -> *mut u64;
}

fn self_id() -> usize {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() as usize }
}

/// Takes an ownership word if it is free.
fn try_lock(word: &AtomicU32, holder: &AtomicUsize) -> bool {
    let taken = word
        .compare_exchange(0, LOCKED, Ordering::SeqCst, Ordering::Relaxed)
        .is_ok();
    if taken {
        holder.store(self_id(), Ordering::Relaxed);
    }
    taken
}

/// Takes an ownership word, sleeping on the futex while another thread
/// holds it.
fn lock(word: &AtomicU32, holder: &AtomicUsize, slot: &Slot, target: i32) {
    if !try_lock(word, holder) {
        let mut c = word.swap(CONTENDED, Ordering::SeqCst);
        while c != 0 {
            slot.count(COUNT_WAITS);
            usdt!(cpu_op, wait, target);
            sys::futex_wait(word, CONTENDED);
            c = word.swap(CONTENDED, Ordering::SeqCst);
        }
        holder.store(self_id(), Ordering::Relaxed);
    }
}

/// Releases an ownership word, waking one sleeper if there may be one.
fn unlock(word: &AtomicU32, holder: &AtomicUsize) {
    holder.store(0, Ordering::Relaxed);
    if word.swap(0, Ordering::Release) == CONTENDED {
        sys::futex_wake(word, 1);
    }
}

/// Records, for the calling thread, that it holds ownership words, so
/// that a cpu-op started by a signal handler that interrupted it knows it
/// is nested.
///
/// A nested cpu-op never sleeps: its thread already holds a word that
/// only it can release, and waiting could close a cycle (two threads each
/// interrupted while holding one CPU, each handler wanting the other's).
/// It takes its word only if the word is free, and fails with EDEADLK
/// otherwise. The kernel's cpu_opv was a system call, which no signal
/// interrupts; blocking signals around every cpu-op instead would cost two
/// system calls (about 0.7 us on the reference machine) to every one.
struct Marker {
    cell: *mut u64,
    previous: u64,
}

/// Marker value while `before_fork` holds every word.
const MARKER_ALL: u64 = u64::MAX;

impl Marker {
    fn enter(value: u64) -> Marker {
        // SAFETY: the calling thread's static-TLS word, valid for its life.
        let cell = unsafe { rseq_impl_cpu_op_marker_ptr() };
        // SAFETY: only this thread (and its signal handlers, which restore
        // it before returning) touches the cell.
        let previous = unsafe { cell.read_volatile() };
        // SAFETY: as above.
        unsafe { cell.write_volatile(value) };
        Marker { cell, previous }
    }

    /// The marker value of a target (never 0).
    fn value(target: i32, mode: PercpuMode) -> u64 {
        1 + ((target as u32 as u64) << 1 | mode as u64)
    }

    fn for_target(target: i32, mode: PercpuMode) -> Marker {
        Marker::enter(Marker::value(target, mode))
    }

    /// Whether the thread already held words when this marker was set.
    fn nested(&self) -> bool {
        self.previous != 0
    }

    /// Whether the calling thread holds any target now.
    fn active() -> bool {
        // SAFETY: as in `enter`.
        unsafe { rseq_impl_cpu_op_marker_ptr().read_volatile() != 0 }
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        // SAFETY: as in `enter`.
        unsafe { self.cell.write_volatile(self.previous) };
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
/// every other cpu-op on it: takes the target's ownership word, fences
/// the sections that started before, runs `f`, releases the word.
///
/// Fails with EINVAL for an invalid target or one that cannot be fenced,
/// EDEADLK when called from a signal handler that interrupted a cpu-op of
/// the same thread, if the target is not free (see `Marker`).
pub fn with_cpu<R>(target: i32, mode: PercpuMode, f: impl FnOnce() -> R) -> Result<R, Errno> {
    let slot = target_slot(target, mode)?;
    let marker = Marker::for_target(target, mode);
    let (word, holder) = slot.word(mode);
    if marker.nested() {
        if !try_lock(word, holder) {
            return Err(Errno(libc::EDEADLK));
        }
    } else {
        lock(word, holder, slot, target);
    }
    let result = cpu_fence::fence(target, mode).map(|kind| {
        slot.count(COUNT_FENCES + kind as usize);
        slot.count(COUNT_VECTORS);
        usdt!(cpu_op, begin, target, mode as u32, kind as u32);
        let r = f();
        usdt!(cpu_op, end, target);
        r
    });
    unlock(word, holder);
    result
}

/// How `before_fork` left the ownership words.
static FORK_STATE: AtomicU32 = AtomicU32::new(FORK_NONE);
/// No fork in progress.
const FORK_NONE: u32 = 0;
/// `before_fork` holds every word: no vector is half done.
const FORK_ALL_HELD: u32 = 1;
/// `fork()` was called from a signal handler that interrupted a cpu-op
/// of the forking thread: `before_fork` took nothing (waiting could close
/// a cycle, see [`Marker`]).
const FORK_NESTED: u32 = 2;

/// Whether the calling thread holds `word` of `target`/`mode`, according
/// to the holder field or, for a word taken a moment before the holder
/// was written, the thread's marker.
fn held_by_me(holder: &AtomicUsize, marker: u64, target: i32, mode: PercpuMode) -> bool {
    holder.load(Ordering::Relaxed) == self_id()
        || marker == 1 + ((target as u32 as u64) << 1 | mode as u64)
}

/// Before `fork()`: takes every ownership word of every possible CPU, so
/// that no cpu-op is half done when the child's memory is copied. From a
/// signal handler that interrupted a cpu-op of this thread, it takes
/// nothing: the child then frees the words of the threads it does not
/// have (their vectors may stay half done there, as if those threads had
/// died mid-vector) and keeps this thread's, which its interrupted cpu-op
/// releases when the handler returns.
extern "C" fn before_fork() {
    if Marker::active() {
        FORK_STATE.store(FORK_NESTED, Ordering::Relaxed);
        return;
    }
    // Held until after the fork: a cpu-op from a signal handler meanwhile
    // is nested and fails instead of waiting for this thread.
    core::mem::forget(Marker::enter(MARKER_ALL));
    for slot in owner::possible_slots() {
        for mode in [PercpuMode::CpuId, PercpuMode::MmCid] {
            let (word, holder) = slot.word(mode);
            lock(word, holder, slot, -1);
        }
    }
    FORK_STATE.store(FORK_ALL_HELD, Ordering::Relaxed);
}

/// Clears the marker `before_fork` left set.
fn clear_fork_marker() {
    // SAFETY: the calling thread's static-TLS word.
    unsafe { rseq_impl_cpu_op_marker_ptr().write_volatile(0) };
}

extern "C" fn after_fork_parent() {
    if FORK_STATE.swap(FORK_NONE, Ordering::Relaxed) != FORK_ALL_HELD {
        return;
    }
    clear_fork_marker();
    for slot in owner::possible_slots() {
        for mode in [PercpuMode::CpuId, PercpuMode::MmCid] {
            let (word, holder) = slot.word(mode);
            unlock(word, holder);
        }
    }
}

extern "C" fn after_fork_child() {
    // The only thread of the child is the one that forked, and nobody
    // sleeps on the words.
    let state = FORK_STATE.swap(FORK_NONE, Ordering::Relaxed);
    // SAFETY: the calling thread's static-TLS word.
    let marker = unsafe { rseq_impl_cpu_op_marker_ptr().read_volatile() };
    if state == FORK_ALL_HELD {
        clear_fork_marker();
    }
    if state != FORK_NONE {
        for (n, slot) in owner::possible_slots().enumerate() {
            for mode in [PercpuMode::CpuId, PercpuMode::MmCid] {
                let (word, holder) = slot.word(mode);
                if state == FORK_NESTED && held_by_me(holder, marker, n as i32, mode) {
                    continue;
                }
                holder.store(0, Ordering::Relaxed);
                word.store(0, Ordering::Release);
            }
        }
    }
    cpu_fence::reset_after_fork();
    fence(Ordering::SeqCst);
}

/// Installs the fork handlers (once, from the library's initialisation).
pub(crate) fn install_fork_handlers() {
    // SAFETY: the handlers are `extern "C"` functions that never unwind
    // and live as long as the (never unloaded) library.
    unsafe {
        libc::pthread_atfork(
            Some(before_fork),
            Some(after_fork_parent),
            Some(after_fork_child),
        );
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
            lock(word, holder, &slot, 0);
            assert_eq!(word.load(Ordering::Relaxed), LOCKED);
            assert_eq!(holder.load(Ordering::Relaxed), self_id());
            unlock(word, holder);
            assert_eq!(word.load(Ordering::Relaxed), 0);
            assert_eq!(holder.load(Ordering::Relaxed), 0);
            // Released while marked contended: back to free (and a wake
            // with no sleeper is harmless).
            lock(word, holder, &slot, 0);
            word.store(CONTENDED, Ordering::Relaxed);
            unlock(word, holder);
            assert_eq!(word.load(Ordering::Relaxed), 0);
        }
        // The two words of a slot are independent.
        let (cpu, cpu_holder) = slot.word(PercpuMode::CpuId);
        let (cid, cid_holder) = slot.word(PercpuMode::MmCid);
        lock(cpu, cpu_holder, &slot, 0);
        assert_eq!(cid.load(Ordering::Relaxed), 0);
        lock(cid, cid_holder, &slot, 0);
        unlock(cpu, cpu_holder);
        assert_eq!(cid.load(Ordering::Relaxed), LOCKED);
        unlock(cid, cid_holder);
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
                    for _ in 0..ITERS {
                        lock(word, holder, &s.slot, 0);
                        assert_ne!(word.load(Ordering::Relaxed), 0);
                        assert_eq!(holder.load(Ordering::Relaxed), self_id());
                        // SAFETY: the word is held.
                        let v = unsafe { *s.data.get() };
                        std::thread::yield_now();
                        // SAFETY: the word is held.
                        unsafe { *s.data.get() = v + 1 };
                        unlock(word, holder);
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
