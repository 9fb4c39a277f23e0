//! The Rust API: critical sections, cpu-ops and the per-CPU counter, with
//! real threads, in both registration modes (the test binary runs itself
//! again with glibc's registration disabled).

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use rseq::cpu_op::{self, CpuOp, OpType};
use rseq::ops::{self, Error, Mo, PercpuMode};
use rseq::registration::{self, Owner};

const THREADS: usize = 8;
const REPS: usize = 20_000;

fn modes() -> Vec<PercpuMode> {
    let mut m = vec![PercpuMode::CpuId];
    if rseq::cpu::mm_cid_available() {
        m.push(PercpuMode::MmCid);
    }
    m
}

/// Whether critical sections can commit here. They cannot where the
/// architecture has no sequences or the kernel refuses rseq (qemu-user, a
/// sandbox): every section then aborts, and the tests take the cpu-op
/// fallback (as the `percpu_*` wrappers do) instead of retrying forever.
fn sections_commit() -> bool {
    registration::kernel_unavailable_reason().is_none()
}

/// Adds 1 to per-CPU slot `i` with a critical section, retrying on
/// aborts; where sections cannot commit, with a cpu-op on `i` instead.
fn add_one(slots: &[AtomicUsize], mode: PercpuMode, index: impl Fn() -> i32) {
    loop {
        let i = index();
        let slot = slots[i as usize].as_ptr() as *mut isize;
        // SAFETY: per-CPU slot of this test, touched by sections and
        // cpu-ops only.
        match unsafe { ops::load_add_store(Mo::Relaxed, mode, slot, 1, i) } {
            Ok(()) => return,
            Err(Error::Abort) if !sections_commit() => {
                cpu_op::with_cpu(i, mode, || {
                    let v = slots[i as usize].load(Ordering::Relaxed);
                    slots[i as usize].store(v + 1, Ordering::Relaxed);
                })
                .unwrap();
                return;
            }
            Err(Error::Abort) => continue,
            Err(e) => panic!("{e:?}"),
        }
    }
}

fn index(mode: PercpuMode) -> i32 {
    match mode {
        PercpuMode::CpuId => rseq::cpu::cpu_start() as i32,
        PercpuMode::MmCid => rseq::cpu::current_mm_cid() as i32,
    }
}

#[test]
fn counters_are_exact_in_threads_that_never_register() {
    for mode in modes() {
        let slots: Vec<AtomicUsize> = (0..rseq::cpu::possible().len())
            .map(|_| AtomicUsize::new(0))
            .collect();
        thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    for _ in 0..REPS {
                        add_one(&slots, mode, || index(mode));
                    }
                    assert_eq!(registration::current_thread_registered(), sections_commit());
                });
            }
        });
        let sum: usize = slots.iter().map(|s| s.load(Ordering::Relaxed)).sum();
        assert_eq!(sum, THREADS * REPS, "{mode:?}");
    }
}

#[test]
fn operation_results_match_librseq() {
    let mut v: isize = 5;
    if !sections_commit() {
        let cpu = rseq::cpu::cpu_start() as i32;
        // SAFETY: a local.
        let r = unsafe { ops::load_cbne_store(Mo::Relaxed, PercpuMode::CpuId, &mut v, 5, 6, cpu) };
        assert_eq!(r, Err(Error::Abort), "no section commits here");
        // SAFETY: a local.
        let order =
            unsafe { ops::load_cbne_store(Mo::Release, PercpuMode::CpuId, &mut v, 5, 6, cpu) };
        assert_eq!(order, Err(Error::InvalidOrder));
        assert_eq!(v, 5);
        return;
    }
    let cpu = loop {
        let cpu = rseq::cpu::cpu_start() as i32;
        // SAFETY: a local.
        match unsafe { ops::load_cbne_store(Mo::Relaxed, PercpuMode::CpuId, &mut v, 5, 6, cpu) } {
            Err(Error::Abort) => continue,
            r => {
                assert_eq!(r, Ok(()));
                break cpu;
            }
        }
    };
    assert_eq!(v, 6);
    // SAFETY: a local.
    let wrong =
        unsafe { ops::load_cbne_store(Mo::Relaxed, PercpuMode::CpuId, &mut v, 6, 7, cpu + 1) };
    assert_eq!(wrong, Err(Error::Abort));
    // SAFETY: a local.
    let order = unsafe { ops::load_cbne_store(Mo::Release, PercpuMode::CpuId, &mut v, 6, 7, cpu) };
    assert_eq!(order, Err(Error::InvalidOrder));
    assert_eq!(v, 6);
}

#[test]
fn cpu_op_vectors() {
    let cpu = rseq::cpu::current_cpu();
    let mut a: u64 = 7;
    let b: u64 = 7;
    let mut c: u32 = 0;
    let ops = [
        CpuOp::compare(
            true,
            &a as *const u64 as usize,
            &b as *const u64 as usize,
            8,
        ),
        CpuOp::add(&mut c as *mut u32 as usize, 99, 4),
        CpuOp::mb(),
        CpuOp::add(&mut c as *mut u32 as usize, 123, 4),
        CpuOp::shift(OpType::Lshift, &mut a as *mut u64 as usize, 5, 8),
    ];
    // SAFETY (this and the calls below): the vector's addresses are
    // locals of this function, accessed only through raw pointers while
    // the vectors run.
    assert_eq!(unsafe { cpu_op::opv(&ops, cpu, 0) }, Ok(0));
    assert_eq!((a, c), (7 << 5, 222));
    assert_eq!(
        unsafe { cpu_op::opv(&ops, cpu, 0) },
        Ok(1),
        "the compare now fails"
    );
    assert_eq!(c, 222, "nothing after a failed compare runs");
    let bad = [
        CpuOp::add(&mut c as *mut u32 as usize, 1, 4),
        CpuOp::memcpy(8, &b as *const u64 as usize, 8),
    ];
    assert_eq!(
        unsafe { cpu_op::opv(&bad, cpu, 0) }.unwrap_err().0,
        libc::EFAULT
    );
    assert_eq!(
        c, 222,
        "a bad address stops the vector before anything runs"
    );
    assert_eq!(
        unsafe { cpu_op::opv(&[CpuOp::mb()], -1, 0) }.unwrap_err().0,
        libc::EINVAL
    );
}

#[test]
fn with_cpu_excludes_sections_and_other_cpu_ops() {
    let n = rseq::cpu::possible().len();
    let slots: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
    thread::scope(|s| {
        for t in 0..THREADS {
            let slots = &slots;
            s.spawn(move || {
                for r in 0..REPS / 4 {
                    if (t + r) % 3 == 0 {
                        let target = (t + r) % n;
                        // A plain read-modify-write is atomic inside with_cpu.
                        cpu_op::with_cpu(target as i32, PercpuMode::CpuId, || {
                            let v = slots[target].load(Ordering::Relaxed);
                            slots[target].store(v + 1, Ordering::Relaxed);
                        })
                        .unwrap();
                    } else {
                        add_one(slots, PercpuMode::CpuId, || rseq::cpu::cpu_start() as i32);
                    }
                }
            });
        }
    });
    let sum: usize = slots.iter().map(|s| s.load(Ordering::Relaxed)).sum();
    assert_eq!(sum, THREADS * (REPS / 4));
}

/// The calling thread's signal mask (glibc's view: its internal signals
/// are not reported).
fn sigmask() -> libc::sigset_t {
    // SAFETY: a zeroed sigset_t filled by pthread_sigmask.
    unsafe {
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut old);
        old
    }
}

fn blocked(set: &libc::sigset_t, sig: i32) -> bool {
    // SAFETY: a valid set.
    unsafe { libc::sigismember(set, sig) == 1 }
}

#[test]
fn with_cpu_blocks_signals_and_a_panic_releases_the_word() {
    // Issue 9, scenario 1 (Rust side): a panic in the closure unwinds
    // through the hold, which releases the word and restores the mask.
    let cpu = rseq::cpu::cpu_start() as i32;
    for mode in modes() {
        let target = if mode == PercpuMode::CpuId { cpu } else { 0 };
        assert!(!blocked(&sigmask(), libc::SIGUSR1));
        let inside = cpu_op::with_cpu(target, mode, || blocked(&sigmask(), libc::SIGUSR1)).unwrap();
        assert!(inside, "signals are blocked while the word is held");
        let r = std::panic::catch_unwind(|| {
            let _ = cpu_op::with_cpu(target, mode, || panic!("in a cpu-op"));
        });
        assert!(r.is_err());
        assert!(!blocked(&sigmask(), libc::SIGUSR1), "mask restored");
        // The word is free: another thread gets it (no EDEADLK, no wait).
        let other = thread::spawn(move || cpu_op::with_cpu(target, mode, || 7).unwrap());
        assert_eq!(other.join().unwrap(), 7);
        assert_eq!(cpu_op::with_cpu(target, mode, || 8), Ok(8));
        // Nesting on the same target from the closure is refused.
        let nested =
            cpu_op::with_cpu(target, mode, || cpu_op::with_cpu(target, mode, || ())).unwrap();
        assert_eq!(nested, Err(rseq::sys::Errno(libc::EDEADLK)));
    }
}

#[test]
fn percpu_counter_is_exact() {
    for mode in modes() {
        let counter = rseq::percpu::Counter::with_mode(mode);
        thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| (0..REPS).for_each(|_| counter.add(2)));
            }
        });
        assert_eq!(counter.sum(), (2 * THREADS * REPS) as isize, "{mode:?}");
    }
}

#[test]
fn registration_owner_matches_the_environment() {
    let disabled =
        std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.pthread.rseq=0"));
    registration::init();
    let owner = registration::owner();
    if !sections_commit() {
        // Nobody can register (glibc's attempt failed, or it never tried):
        // the library owns registration, and it fails too.
        assert_eq!(owner, Owner::Library);
        assert_eq!(registration::active_size(), 0);
        assert!(!registration::current_thread_registered());
        return;
    }
    if disabled {
        assert_eq!(owner, Owner::Library);
        assert_eq!(
            registration::active_size(),
            registration::kernel_feature_size()
        );
    } else {
        assert_eq!(owner, Owner::Libc);
    }
    assert!(registration::offset() != 0);
}

/// Runs every other test of this file again with glibc's registration
/// disabled, so that the library registers threads itself.
///
/// `RSEQ_TEST_NO_REEXEC` skips it where the test binary cannot start
/// itself (under qemu-user without binfmt_misc; the cross runners set it).
#[test]
fn everything_again_with_the_library_owning_registration() {
    if std::env::var_os("RSEQ_TEST_CHILD").is_some() {
        return;
    }
    if std::env::var_os("RSEQ_TEST_NO_REEXEC").is_some() {
        eprintln!("skipped: RSEQ_TEST_NO_REEXEC is set");
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--test-threads", "1", "--skip", "everything_again"])
        .env("RSEQ_TEST_CHILD", "1")
        .env("GLIBC_TUNABLES", "glibc.pthread.rseq=0")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("test result: ok. 7 passed"), "{text}");
}
