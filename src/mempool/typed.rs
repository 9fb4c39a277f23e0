//! A typed per-CPU allocation: one `T` per CPU, reachable as `&T`.

use core::marker::PhantomData;
use core::mem::{align_of, needs_drop, size_of};

use super::Mempool;
use crate::sys::Errno;

/// Types for which all-zero bytes are a valid value (so a zeroed
/// allocation, which keeps copy-on-write pages shared, is a valid `T`).
///
/// # Safety
///
/// All-zero bytes must be a valid value of the type.
pub unsafe trait Zeroable {}

macro_rules! zeroable {
    ($($t:ty),*) => { $(
        // SAFETY: zero is a valid value of every integer and atomic integer.
        unsafe impl Zeroable for $t {}
    )* };
}
zeroable!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);
zeroable!(
    core::sync::atomic::AtomicU8,
    core::sync::atomic::AtomicU16,
    core::sync::atomic::AtomicU32,
    core::sync::atomic::AtomicU64,
    core::sync::atomic::AtomicUsize,
    core::sync::atomic::AtomicI32,
    core::sync::atomic::AtomicI64,
    core::sync::atomic::AtomicIsize,
    core::sync::atomic::AtomicBool
);
// SAFETY: an array of zeroable values is zeroable.
unsafe impl<T: Zeroable, const N: usize> Zeroable for [T; N] {}

/// One `T` per CPU of a per-CPU pool (one `T` for a global pool); freed
/// (and each copy dropped) when dropped. Holds the pool alive.
pub struct PerCpuBox<T> {
    pool: Mempool,
    ptr: *mut T,
    _owns: PhantomData<T>,
}

// SAFETY: the box owns its `T`s; handing it to another thread moves
// them (Send) and shares them with whoever reads copies (Sync).
unsafe impl<T: Send + Sync> Send for PerCpuBox<T> {}
// SAFETY: `&PerCpuBox` only gives `&T` (of any CPU's copy).
unsafe impl<T: Sync> Sync for PerCpuBox<T> {}

impl<T> PerCpuBox<T> {
    fn check(pool: &Mempool) -> Result<(), Errno> {
        // Items are `item_len`-aligned inside page-aligned ranges.
        if size_of::<T>() > pool.item_len() || align_of::<T>() > pool.item_len().min(4096) {
            return Err(Errno(libc::EINVAL));
        }
        Ok(())
    }

    /// Allocates one `T` per CPU with every copy zero (copy-on-write
    /// pages stay shared until a CPU writes). EINVAL when `T` does not fit
    /// the pool's items.
    pub fn new_zeroed(pool: &Mempool) -> Result<PerCpuBox<T>, Errno>
    where
        T: Zeroable,
    {
        Self::check(pool)?;
        let ptr = pool.alloc(true, None)?.cast();
        Ok(PerCpuBox {
            pool: pool.clone(),
            ptr,
            _owns: PhantomData,
        })
    }

    /// Allocates one `T` per CPU, CPU `n`'s copy being `init(n)` (this
    /// writes, so populates, every CPU's copy).
    pub fn new_with(pool: &Mempool, mut init: impl FnMut(usize) -> T) -> Result<Self, Errno> {
        Self::check(pool)?;
        let ptr: *mut T = pool.alloc(false, None)?.cast();
        for cpu in 0..pool.nr_cpus() {
            let p = ptr.wrapping_byte_add(cpu * pool.stride());
            // SAFETY: `p` is CPU `cpu`'s copy, inside the pool's mapping,
            // sized and aligned for T (checked), not yet initialised.
            // (A panic in `init` leaks the item: never unsound.)
            unsafe { p.write(init(cpu)) };
        }
        Ok(PerCpuBox {
            pool: pool.clone(),
            ptr,
            _owns: PhantomData,
        })
    }

    /// The number of copies.
    pub fn nr_cpus(&self) -> usize {
        self.pool.nr_cpus()
    }

    /// CPU `cpu`'s copy, `None` past the pool's CPUs.
    pub fn get(&self, cpu: usize) -> Option<&T> {
        if cpu >= self.nr_cpus() {
            return None;
        }
        // SAFETY: an initialised copy of this box, alive as long as `self`.
        Some(unsafe { &*self.as_ptr(cpu) })
    }

    /// Raw pointer to CPU `cpu`'s copy (for the rseq operations; mutate
    /// only through interior mutability or per-CPU exclusive sections).
    /// `cpu` must be below [`Self::nr_cpus`] for the pointer to be valid.
    pub fn as_ptr(&self, cpu: usize) -> *mut T {
        self.ptr.wrapping_byte_add(cpu * self.pool.stride())
    }

    /// Every CPU's copy, in CPU order.
    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        (0..self.nr_cpus()).filter_map(|c| self.get(c))
    }
}

impl<T> Drop for PerCpuBox<T> {
    fn drop(&mut self) {
        if needs_drop::<T>() {
            for cpu in 0..self.nr_cpus() {
                // SAFETY: each copy is initialised and dropped once, here.
                unsafe { core::ptr::drop_in_place(self.as_ptr(cpu)) };
            }
        }
        let _ = self.pool.free_item(self.ptr as usize, self.pool.stride());
    }
}
