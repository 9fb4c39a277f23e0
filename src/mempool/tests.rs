use super::*;
use core::sync::atomic::{AtomicU64, Ordering};

fn percpu(stride: usize, cpus: i32) -> Attr {
    Attr {
        kind: Kind::PerCpu {
            stride,
            max_nr_cpus: cpus,
        },
        ..Attr::default()
    }
}

#[test]
fn copies_are_stride_apart_and_independent() {
    let pool = Pool::new(Some("t"), 8, &percpu(0, 4)).unwrap();
    assert_eq!(pool.stride(), DEFAULT_STRIDE);
    assert_eq!(pool.nr_cpus(), 4);
    let v: u64 = 0x1234;
    let p = pool.alloc(false, Some(&v.to_ne_bytes())).unwrap();
    for cpu in 0..4 {
        // SAFETY: CPU `cpu`'s copy of an 8-byte item.
        let c = unsafe { &mut *(p.add(cpu * DEFAULT_STRIDE) as *mut u64) };
        assert_eq!(*c, 0x1234);
        *c = cpu as u64;
    }
    for cpu in 0..4 {
        // SAFETY: as above.
        let c = unsafe { *(p.add(cpu * DEFAULT_STRIDE) as *const u64) };
        assert_eq!(c, cpu as u64);
    }
    free(p as usize, DEFAULT_STRIDE).unwrap();
    assert_eq!(pool.allocated(), 0);
}

#[test]
fn bad_input_is_rejected() {
    assert_eq!(
        Pool::new(None, 0, &Attr::default()).err(),
        Some(Errno(libc::EINVAL))
    );
    assert_eq!(
        Pool::new(None, DEFAULT_STRIDE + 1, &Attr::default()).err(),
        Some(Errno(libc::EINVAL))
    );
    assert_eq!(
        Pool::new(None, 8, &percpu(3 * 4096, 2)).err(),
        Some(Errno(libc::EINVAL))
    );
    assert_eq!(
        Pool::new(None, 8, &percpu(0, -1)).err(),
        Some(Errno(libc::EINVAL))
    );
    let pool = Pool::new(None, 16, &percpu(4096, 2)).unwrap();
    assert_eq!(
        pool.alloc(false, Some(&[0; 17])).err(),
        Some(Errno(libc::EINVAL))
    );
    let p = pool.alloc(true, None).unwrap() as usize;
    // Wrong stride, interior pointer, double free, foreign pointer.
    assert_eq!(free(p, 8192), Err(Errno(libc::EINVAL)));
    assert_eq!(free(p + 8, 4096), Err(Errno(libc::EINVAL)));
    let x = 5u64;
    assert_eq!(
        free(&x as *const u64 as usize, 4096),
        Err(Errno(libc::EINVAL))
    );
    assert_eq!(pool.allocated(), 1);
    free(p, 4096).unwrap();
    assert_eq!(free(p, 4096), Err(Errno(libc::EINVAL)));
    assert_eq!(pool.allocated(), 0);
    // Nothing was lost: the freed item comes back once.
    assert_eq!(pool.alloc(false, None).unwrap() as usize, p);
    assert_ne!(pool.alloc(false, None).unwrap() as usize, p);
}

#[test]
fn item_sizes_round_up_and_ranges_are_bounded() {
    let attr = Attr {
        max_nr_ranges: 1,
        ..percpu(4096, 2)
    };
    // At least a pointer: 8 bytes on 64-bit targets, 4 on i386.
    let pool = Pool::new(None, 3, &attr).unwrap();
    let word = core::mem::size_of::<usize>();
    assert_eq!(pool.item_len(), word);
    let items: Vec<_> = (0..4096 / word)
        .map(|_| pool.alloc(false, None).unwrap())
        .collect();
    assert_eq!(pool.alloc(false, None).err(), Some(Errno(libc::ENOMEM)));
    free(items[7] as usize, 4096).unwrap();
    assert_eq!(pool.alloc(false, None).unwrap(), items[7]);
    let unlimited = Pool::new(None, 4096, &percpu(4096, 2)).unwrap();
    let a = unlimited.alloc(false, None).unwrap();
    let b = unlimited.alloc(false, None).unwrap();
    assert_ne!(a, b);
}

#[test]
fn global_pool_poison_and_init_callback() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let attr = Attr {
        kind: Kind::Global { stride: 8192 },
        poison: Some(0xdead),
        init: Some(Arc::new(move |_, len, cpu| {
            s2.lock().unwrap().push((len, cpu));
            Ok(())
        })),
        ..Attr::default()
    };
    let pool = Pool::new(Some("g"), 16, &attr).unwrap();
    assert!(!pool.is_percpu());
    assert_eq!(*seen.lock().unwrap(), vec![(8192, -1)]);
    let p = pool.alloc(false, None).unwrap() as *mut usize;
    // SAFETY: a 16-byte item of a poisoned pool.
    unsafe {
        assert_eq!(*p, 0xdead);
        *p = 1;
    }
    free(p as usize, 8192).unwrap();
    // SAFETY: freed but still mapped: the poison was written back.
    assert_eq!(unsafe { *p.add(1) }, 0xdead);
    let failing = Attr {
        init: Some(Arc::new(|_, _, _| Err(Errno(libc::EPERM)))),
        ..percpu(4096, 2)
    };
    assert_eq!(Pool::new(None, 8, &failing).err(), Some(Errno(libc::EPERM)));
}

#[test]
fn sets_pick_the_smallest_fitting_pool() {
    let set = MempoolSet::new();
    let small = Pool::new(
        None,
        16,
        &Attr {
            max_nr_ranges: 1,
            ..percpu(4096, 2)
        },
    )
    .unwrap();
    let big = Pool::new(None, 64, &percpu(4096, 2)).unwrap();
    set.add_pool(small.clone()).unwrap();
    set.add_pool(big.clone()).unwrap();
    let same = Pool::new(None, 9, &percpu(4096, 2)).unwrap();
    assert_eq!(set.add_pool(same).err(), Some(Errno(libc::EBUSY)));
    let (_, p) = set.alloc(10, true, None).unwrap();
    assert!(Arc::ptr_eq(&p, &small));
    let (_, p) = set.alloc(17, true, None).unwrap();
    assert!(Arc::ptr_eq(&p, &big));
    assert_eq!(set.alloc(65, true, None).err(), Some(Errno(libc::ENOMEM)));
    // When the small pool is full the next size serves.
    while small.allocated() < 4096 / 16 {
        small.alloc(false, None).unwrap();
    }
    let (_, p) = set.alloc(8, false, None).unwrap();
    assert!(Arc::ptr_eq(&p, &big));
    set.destroy();
    assert_eq!(small.alloc(false, None).err(), Some(Errno(libc::EINVAL)));
}

#[test]
fn typed_boxes_give_each_cpu_its_copy() {
    let pool = Pool::new(None, 8, &percpu(0, 3)).unwrap();
    let counters = PerCpuBox::<AtomicU64>::new_zeroed(&pool).unwrap();
    assert_eq!(counters.nr_cpus(), 3);
    counters.get(1).unwrap().fetch_add(5, Ordering::Relaxed);
    let v: Vec<u64> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    assert_eq!(v, vec![0, 5, 0]);
    assert!(counters.get(3).is_none());
    let strings = PerCpuBox::new_with(&pool, |cpu| Box::new(cpu * 10)).unwrap();
    assert_eq!(**strings.get(2).unwrap(), 20);
    assert!(PerCpuBox::<[u64; 2]>::new_zeroed(&pool).is_err());
    drop(strings);
    drop(counters);
    assert_eq!(pool.allocated(), 0);
}

#[test]
fn numa_init_accepts_any_cpu_slice() {
    let pool = Pool::new(None, 8, &percpu(0, 1)).unwrap();
    let p = pool.alloc(true, None).unwrap();
    range_init_numa(p as usize, DEFAULT_STRIDE, 0, 0).unwrap();
    range_init_numa(p as usize, DEFAULT_STRIDE, -1, 0).unwrap();
    assert_eq!(
        range_init_numa(p as usize, DEFAULT_STRIDE, 0, 1 << 8).err(),
        Some(Errno(libc::EINVAL))
    );
}
