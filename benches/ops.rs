//! Criterion benchmarks of the Rust API, with the baselines measured in the
//! same run: a thread-local counter (the floor), a minimal hand-written
//! rseq increment without the cpu-op ownership check (the rseq limit),
//! `sched_getcpu()` + an atomic add on a per-CPU slot, one shared atomic,
//! and a mutex. Run with `cargo bench --bench ops` (or `make bench`,
//! which also runs the C benchmark).

use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use rseq::cpu_op;
use rseq::ops::{self, Mo, PercpuMode};

#[repr(align(128))]
struct Padded<T>(T);

fn slots() -> Vec<Padded<AtomicIsize>> {
    (0..rseq::cpu::possible().len())
        .map(|_| Padded(AtomicIsize::new(0)))
        .collect()
}

/// The smallest correct rseq increment: descriptor, rseq_cs store, cpu_id
/// check, add. No ownership check, no slow path: the baseline the
/// library's sections are measured against.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn minimal_rseq_add(slots: &[Padded<AtomicIsize>]) {
    let off = rseq::registration::offset();
    loop {
        let cpu = rseq::cpu::cpu_start();
        let v = slots[cpu as usize].0.as_ptr();
        let mut aborted: u32 = 0;
        // SAFETY: the sequence stores only into the thread's rseq area and
        // the per-CPU slot, which stays valid.
        unsafe {
            core::arch::asm!(
                ".pushsection __rseq_cs, \"aw\"",
                ".balign 32",
                "3:",
                ".long 0, 0",
                ".quad 4f, (5f - 4f), 6f",
                ".popsection",
                "leaq 3b(%rip), %rax",
                "movq %rax, %fs:8({off})",
                "4:",
                "cmpl {cpu:e}, %fs:4({off})",
                "jnz 6f",
                "addq $1, ({v})",
                "5:",
                ".pushsection __rseq_failure, \"ax\"",
                ".byte 0x0f, 0xb9, 0x3d",
                ".long 0x53053053",
                "6:",
                "movl $1, {aborted:e}",
                "jmp 5b",
                ".popsection",
                off = in(reg) off,
                cpu = in(reg) cpu,
                v = in(reg) v,
                aborted = inout(reg) aborted,
                out("rax") _,
                options(att_syntax),
            );
        }
        if aborted == 0 {
            return;
        }
    }
}

#[inline(always)]
fn library_rseq_add(slots: &[Padded<AtomicIsize>], mode: PercpuMode) {
    loop {
        let i = match mode {
            PercpuMode::CpuId => rseq::cpu::cpu_start() as i32,
            PercpuMode::MmCid => rseq::cpu::current_mm_cid() as i32,
        };
        // SAFETY: a live per-CPU slot.
        if unsafe { ops::load_add_store(Mo::Relaxed, mode, slots[i as usize].0.as_ptr(), 1, i) }
            .is_ok()
        {
            return;
        }
    }
}

fn cpu_numbers(c: &mut Criterion) {
    let mut g = c.benchmark_group("cpu_number");
    g.bench_function("rseq::cpu::cpu_start", |b| {
        b.iter(|| black_box(rseq::cpu::cpu_start()))
    });
    g.bench_function("rseq::cpu::current_cpu", |b| {
        b.iter(|| black_box(rseq::cpu::current_cpu()))
    });
    // SAFETY: sched_getcpu has no preconditions.
    g.bench_function("sched_getcpu", |b| {
        b.iter(|| black_box(unsafe { libc::sched_getcpu() }))
    });
    g.finish();
}

fn counters_one_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("counter_1_thread");
    let s = slots();
    thread_local!(static LOCAL: std::cell::Cell<isize> = const { std::cell::Cell::new(0) });
    g.bench_function("baseline: thread-local", |b| {
        b.iter(|| LOCAL.with(|l| l.set(black_box(l.get() + 1))))
    });
    #[cfg(target_arch = "x86_64")]
    g.bench_function("baseline: minimal rseq (no ownership check)", |b| {
        b.iter(|| minimal_rseq_add(&s))
    });
    g.bench_function("rseq load_add_store cpu_id", |b| {
        b.iter(|| library_rseq_add(&s, PercpuMode::CpuId))
    });
    if rseq::cpu::mm_cid_available() {
        g.bench_function("rseq load_add_store mm_cid", |b| {
            b.iter(|| library_rseq_add(&s, PercpuMode::MmCid))
        });
    }
    let counter = rseq::percpu::Counter::new();
    g.bench_function("percpu::Counter::add", |b| b.iter(|| counter.add(1)));
    g.bench_function("baseline: sched_getcpu + atomic add", |b| {
        // SAFETY: sched_getcpu has no preconditions.
        b.iter(|| {
            s[unsafe { libc::sched_getcpu() } as usize]
                .0
                .fetch_add(1, Ordering::Relaxed)
        })
    });
    let shared = AtomicU64::new(0);
    g.bench_function("baseline: shared atomic", |b| {
        b.iter(|| shared.fetch_add(1, Ordering::Relaxed))
    });
    let mutex = Mutex::new(0u64);
    g.bench_function("baseline: mutex", |b| {
        b.iter(|| *mutex.lock().unwrap() += 1)
    });
    g.finish();
}

/// Nanoseconds per operation with one thread per CPU, each doing `iters`
/// operations.
fn per_thread(iters: u64, op: &(dyn Fn() + Sync)) -> Duration {
    let n = rseq::cpu::possible().len();
    let barrier = Barrier::new(n);
    let total = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let t = Instant::now();
                    for _ in 0..iters {
                        op();
                    }
                    t.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap()
    });
    total
}

fn counters_all_cpus(c: &mut Criterion) {
    let mut g = c.benchmark_group("counter_thread_per_cpu");
    let s = slots();
    #[cfg(target_arch = "x86_64")]
    g.bench_function("baseline: minimal rseq (no ownership check)", |b| {
        b.iter_custom(|i| per_thread(i, &|| minimal_rseq_add(&s)))
    });
    g.bench_function("rseq load_add_store cpu_id", |b| {
        b.iter_custom(|i| per_thread(i, &|| library_rseq_add(&s, PercpuMode::CpuId)))
    });
    let shared = AtomicU64::new(0);
    g.bench_function("baseline: shared atomic", |b| {
        b.iter_custom(|i| {
            per_thread(i, &|| {
                shared.fetch_add(1, Ordering::Relaxed);
            })
        })
    });
    g.finish();
}

fn cpu_ops(c: &mut Criterion) {
    let mut g = c.benchmark_group("cpu_op");
    let s = slots();
    let n = rseq::cpu::possible().len() as i32;
    // Pin to CPU 0 so that "own CPU" and "other CPU" mean what they say.
    // SAFETY: a zeroed cpu_set_t is empty; CPU 0 is in bounds.
    let (saved, pinned) = unsafe {
        let mut saved: libc::cpu_set_t = core::mem::zeroed();
        libc::sched_getaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &mut saved);
        let mut one: libc::cpu_set_t = core::mem::zeroed();
        libc::CPU_SET(0, &mut one);
        (
            saved,
            libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &one) == 0,
        )
    };
    if pinned {
        // SAFETY: a live slot; the cpu-op owns CPU 0 meanwhile.
        g.bench_function("cpu_op::addv own CPU", |b| {
            b.iter(|| unsafe { cpu_op::addv(s[0].0.as_ptr(), 1, 0, PercpuMode::CpuId) })
        });
        if n > 1 {
            // SAFETY: as above, for CPU 1.
            g.bench_function("cpu_op::addv other CPU", |b| {
                b.iter(|| unsafe { cpu_op::addv(s[1].0.as_ptr(), 1, 1, PercpuMode::CpuId) })
            });
            g.bench_function(
                "baseline: membarrier(PRIVATE_EXPEDITED_RSEQ, FLAG_CPU)",
                |b| {
                    b.iter(|| {
                        rseq::sys::membarrier(
                            rseq::abi::MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ,
                            rseq::abi::MEMBARRIER_CMD_FLAG_CPU,
                            1,
                        )
                    })
                },
            );
        }
        let mut v: u64 = 0;
        let ops = [cpu_op::CpuOp::add(&mut v as *mut u64 as usize, 1, 8)];
        g.bench_function("cpu_opv (checked vector, 1 add) own CPU", |b| {
            // SAFETY: the vector adds to `v`, a local only it touches.
            b.iter(|| unsafe { cpu_op::opv(&ops, 0, 0) })
        });
        // SAFETY: restoring the saved mask.
        unsafe { libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &saved) };
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = cpu_numbers, counters_one_thread, counters_all_cpus, cpu_ops
}
criterion_main!(benches);
