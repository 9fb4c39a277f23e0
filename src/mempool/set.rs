//! Pool sets: size classes (librseq's `struct rseq_mempool_set`).

use std::sync::Mutex;

use super::Mempool;
use crate::sys::Errno;

/// Orders of item sizes a set can hold (item sizes are powers of two).
const NR_ORDERS: usize = usize::BITS as usize;

/// A set of pools of distinct item sizes; an allocation of `len` bytes is
/// served by the pool with the smallest items of at least `len` bytes,
/// or by the next larger one when that pool is exhausted (ENOMEM).
/// The set owns its pools: destroying the set destroys them.
pub struct MempoolSet {
    pools: Mutex<Vec<Option<Mempool>>>,
}

impl Default for MempoolSet {
    fn default() -> Self {
        MempoolSet::new()
    }
}

impl MempoolSet {
    /// An empty set.
    pub fn new() -> MempoolSet {
        MempoolSet {
            pools: Mutex::new(vec![None; NR_ORDERS]),
        }
    }

    /// Adds `pool`; EBUSY when the set already has a pool of that item
    /// size.
    pub fn add_pool(&self, pool: Mempool) -> Result<(), Errno> {
        let order = pool.item_len().trailing_zeros() as usize;
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        if pools[order].is_some() {
            return Err(Errno(libc::EBUSY));
        }
        pools[order] = Some(pool);
        Ok(())
    }

    /// Allocates `len` bytes (see [`super::Pool::alloc`] for `zero` and
    /// `init`); returns the pointer and its pool. ENOMEM when no pool of
    /// the set fits or has room.
    pub fn alloc(
        &self,
        len: usize,
        zero: bool,
        init: Option<&[u8]>,
    ) -> Result<(*mut u8, Mempool), Errno> {
        let candidates: Vec<Mempool> = {
            let pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
            pools
                .iter()
                .flatten()
                .filter(|p| p.item_len() >= len)
                .cloned()
                .collect()
        };
        for pool in candidates {
            match pool.alloc(zero, init) {
                Ok(p) => return Ok((p, pool)),
                Err(Errno(libc::ENOMEM)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Errno(libc::ENOMEM))
    }

    /// Destroys every pool of the set.
    pub fn destroy(&self) {
        let pools = core::mem::take(&mut *self.pools.lock().unwrap_or_else(|e| e.into_inner()));
        for pool in pools.into_iter().flatten() {
            pool.destroy();
        }
    }
}
