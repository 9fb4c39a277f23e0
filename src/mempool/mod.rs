//! The per-CPU memory pool (librseq's `rseq_mempool_*`).
//!
//! A pool hands out items of one size. In a *per-CPU* pool every item
//! exists once per CPU: the address returned is CPU 0's copy, and CPU
//! `n`'s copy lies at `ptr + n * stride`. Memory is taken from the kernel
//! in *ranges* of `stride * max_nr_cpus` bytes (one `stride`-sized slice
//! per CPU); a range holds `stride / item_len` items. A *global* pool is
//! the same with one CPU.
//!
//! # Populate policies
//!
//! - `CowInit` (the default of per-CPU pools): a range's CPU slices are
//!   private (copy-on-write) mappings of one shared "init values" page
//!   set. Initial values are written there once; a CPU's slice gets its
//!   own pages only when that CPU's copy is written. Writing an item on
//!   every CPU skips the CPUs whose copy already holds the value (a read
//!   does not copy), so CPUs that never touch the pool cost no memory.
//! - `CowZero` (the only policy of global pools): anonymous memory; the
//!   zero page until written. `zmalloc` never writes a copy that already
//!   reads as zeroes.
//!
//! # Robustness
//!
//! Every range keeps an allocation bitmap, so a double free or a free of
//! a pointer that is not an item start is always detected: a robust pool
//! aborts the process with a message, any other pool reports it on stderr
//! (errno EINVAL) and ignores the free. A robust pool also poisons freed
//! items (default pattern `0x5555...` unless a poison is set), checks
//! the poison when an item is reused and when the pool is destroyed
//! (a write after free aborts), and aborts on destroy when items are
//! still allocated. A pointer that belongs to no pool is found through a
//! registry of all live ranges (never by reading memory near the
//! pointer), so freeing a foreign pointer is reported and changes nothing.
//!
//! Pools are thread-safe: one mutex per pool (as librseq). The C layer
//! (`src/capi/mempool.rs`) keeps a pool alive through an [`Arc`]; the
//! safe Rust handle [`PerCpuBox`] does too.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};

use crate::sys::Errno;

mod numa;
mod set;
mod typed;

pub use numa::range_init_numa;
pub use set::MempoolSet;
pub use typed::{PerCpuBox, Zeroable};

/// Default stride (librseq's `RSEQ_MEMPOOL_STRIDE`): 64 KiB per CPU.
pub const DEFAULT_STRIDE: usize = 1 << 16;

/// Poison pattern of robust pools that set none (one byte repeated).
pub const DEFAULT_POISON: usize = usize::from_ne_bytes([0x55; core::mem::size_of::<usize>()]);

/// How a pool's memory is shared between CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Populate {
    /// Copy-on-write from shared initial values (`RSEQ_MEMPOOL_POPULATE_COW_INIT`, 0).
    CowInit,
    /// Copy-on-write from the zero page (`RSEQ_MEMPOOL_POPULATE_COW_ZERO`, 1).
    CowZero,
}

impl Populate {
    /// The C enum value, if known.
    pub fn from_raw(v: u32) -> Option<Populate> {
        match v {
            0 => Some(Populate::CowInit),
            1 => Some(Populate::CowZero),
            _ => None,
        }
    }
}

/// Per-CPU or global pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One copy per CPU; `max_nr_cpus` 0 means `rseq_get_max_nr_cpus()`.
    PerCpu {
        /// Bytes between two CPUs' copies (0: [`DEFAULT_STRIDE`]).
        stride: usize,
        /// Number of CPU copies (0: the possible CPUs).
        max_nr_cpus: i32,
    },
    /// One copy.
    Global {
        /// Size of a range (0: [`DEFAULT_STRIDE`]).
        stride: usize,
    },
}

/// The range initialisation callback: `(addr, len, cpu)`, cpu -1 for a
/// global pool. An error fails the range's creation.
pub type InitFn = Arc<dyn Fn(*mut u8, usize, i32) -> Result<(), Errno> + Send + Sync>;

/// Pool attributes (librseq's `struct rseq_mempool_attr`).
#[derive(Clone)]
pub struct Attr {
    /// Per-CPU (default, stride 64 KiB, possible CPUs) or global.
    pub kind: Kind,
    /// Detect misuse and abort (see the module docs).
    pub robust: bool,
    /// Value written into every word of freed items.
    pub poison: Option<usize>,
    /// At most this many ranges (0: unlimited).
    pub max_nr_ranges: u64,
    /// Populate policy (global pools always use `CowZero`).
    pub populate: Populate,
    /// Called for every CPU slice of every new range.
    pub init: Option<InitFn>,
}

impl Default for Attr {
    fn default() -> Attr {
        Attr {
            kind: Kind::PerCpu {
                stride: 0,
                max_nr_cpus: 0,
            },
            robust: false,
            poison: None,
            max_nr_ranges: 0,
            populate: Populate::CowInit,
            init: None,
        }
    }
}

impl core::fmt::Debug for Attr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Attr")
            .field("kind", &self.kind)
            .field("robust", &self.robust)
            .field("poison", &self.poison)
            .field("max_nr_ranges", &self.max_nr_ranges)
            .field("populate", &self.populate)
            .field("init", &self.init.is_some())
            .finish()
    }
}

/// One mapping of `stride * nr_cpus` bytes.
struct Range {
    /// CPU 0's slice.
    base: usize,
    /// Shared initial values (`CowInit`), `stride` bytes.
    init: Option<usize>,
    /// One bit per item: allocated.
    bitmap: Vec<u64>,
}

struct State {
    ranges: Vec<Range>,
    /// Freed items (CPU 0 addresses), reused last-in first-out.
    free: Vec<usize>,
    /// Next never-used item offset in the last range.
    bump: usize,
    allocated: usize,
    destroyed: bool,
}

/// A memory pool. Shared through [`Arc`]: [`Mempool`] handles and every
/// [`PerCpuBox`] keep it alive; the memory returns to the kernel when the
/// last one goes (or at once with [`Pool::destroy`]).
pub struct Pool {
    name: Option<CString>,
    item_len: usize,
    stride: usize,
    nr_cpus: usize,
    percpu: bool,
    robust: bool,
    poison: Option<usize>,
    max_nr_ranges: u64,
    populate: Populate,
    init: Option<InitFn>,
    /// `item_len` bytes of poison and of zeroes, for writes and checks.
    poison_bytes: Vec<u8>,
    zero_bytes: Vec<u8>,
    state: Mutex<State>,
}

/// A shared pool handle.
pub type Mempool = Arc<Pool>;

/// Every live range: CPU 0 base -> (stride, pool).
type Registry = BTreeMap<usize, (usize, Weak<Pool>)>;

fn registry() -> &'static RwLock<Registry> {
    static REGISTRY: RwLock<Registry> = RwLock::new(BTreeMap::new());
    &REGISTRY
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    }
}

/// The number of CPU copies a per-CPU pool with `max_nr_cpus` 0 gets.
pub fn default_nr_cpus() -> usize {
    crate::cpu::possible().len()
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock (a bug, caught at the C boundary)
    // leaves the state consistent enough: every update is a single push
    // or pop after the checks.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Prints a misuse report and aborts the process (robust pools).
fn fatal(msg: &str) -> ! {
    eprintln!("librseq: {msg}");
    std::process::abort()
}

/// Prints a misuse report, sets errno EINVAL (non-robust pools).
fn report(msg: &str) -> Errno {
    eprintln!("librseq: {msg}");
    Errno(libc::EINVAL)
}

impl Pool {
    /// Creates a pool of `item_len`-byte items (rounded up to a power of
    /// two, at least the size of a pointer). Errors: EINVAL for a zero or
    /// too large `item_len` (more than the stride), a stride that is not
    /// a power of two of at least a page, a negative `max_nr_cpus`;
    /// ENOMEM when the first range cannot be mapped; the init callback's
    /// error.
    pub fn new(name: Option<&str>, item_len: usize, attr: &Attr) -> Result<Mempool, Errno> {
        let einval = Err(Errno(libc::EINVAL));
        let (stride, nr_cpus, percpu, populate) = match attr.kind {
            Kind::PerCpu {
                stride,
                max_nr_cpus,
            } => {
                if max_nr_cpus < 0 {
                    return einval;
                }
                let n = if max_nr_cpus == 0 {
                    default_nr_cpus()
                } else {
                    max_nr_cpus as usize
                };
                (stride, n, true, attr.populate)
            }
            Kind::Global { stride } => (stride, 1, false, Populate::CowZero),
        };
        let stride = if stride == 0 { DEFAULT_STRIDE } else { stride };
        if item_len == 0 || item_len > stride || !stride.is_power_of_two() || stride < page_size() {
            return einval;
        }
        if nr_cpus == 0 || stride.checked_mul(nr_cpus).is_none() {
            return einval;
        }
        let item_len = item_len
            .max(core::mem::size_of::<usize>())
            .next_power_of_two();
        let poison = match (attr.poison, attr.robust) {
            (Some(p), _) => Some(p),
            (None, true) => Some(DEFAULT_POISON),
            (None, false) => None,
        };
        let poison_bytes = poison
            .map(|p| {
                p.to_ne_bytes()
                    .iter()
                    .copied()
                    .cycle()
                    .take(item_len)
                    .collect()
            })
            .unwrap_or_default();
        let name = match name {
            Some(n) => Some(CString::new(n).map_err(|_| Errno(libc::EINVAL))?),
            None => None,
        };
        let pool = Arc::new(Pool {
            name,
            item_len,
            stride,
            nr_cpus,
            percpu,
            robust: attr.robust,
            poison,
            max_nr_ranges: attr.max_nr_ranges,
            populate,
            init: attr.init.clone(),
            poison_bytes,
            zero_bytes: vec![0; item_len],
            state: Mutex::new(State {
                ranges: Vec::new(),
                free: Vec::new(),
                bump: 0,
                allocated: 0,
                destroyed: false,
            }),
        });
        {
            let mut st = lock(&pool.state);
            pool.add_range(&mut st)?;
        }
        Ok(pool)
    }

    /// The item size (a power of two).
    pub fn item_len(&self) -> usize {
        self.item_len
    }

    /// The distance between two CPUs' copies of an item.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// The number of CPU copies (1 for a global pool).
    pub fn nr_cpus(&self) -> usize {
        self.nr_cpus
    }

    /// Whether this is a per-CPU pool.
    pub fn is_percpu(&self) -> bool {
        self.percpu
    }

    /// Whether misuse aborts the process.
    pub fn is_robust(&self) -> bool {
        self.robust
    }

    /// The pool's name, for messages.
    pub fn name(&self) -> &str {
        self.name
            .as_deref()
            .and_then(|n| n.to_str().ok())
            .unwrap_or("<unnamed>")
    }

    /// Items currently allocated.
    pub fn allocated(&self) -> usize {
        lock(&self.state).allocated
    }

    fn items_per_range(&self) -> usize {
        self.stride / self.item_len
    }

    fn map_range(&self) -> Result<Range, Errno> {
        let len = self.stride * self.nr_cpus;
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        // SAFETY: a fresh anonymous mapping chosen by the kernel.
        let base = unsafe { libc::mmap(core::ptr::null_mut(), len, prot, flags, -1, 0) };
        if base == libc::MAP_FAILED {
            return Err(Errno(libc::ENOMEM));
        }
        let base = base as usize;
        let mut init = None;
        if self.populate == Populate::CowInit {
            // A range that cannot share its init values (no memfd, e.g.
            // a sandbox) works as CowZero: correct, only costlier.
            init = self.map_cow_slices(base).ok();
        }
        let words = self.items_per_range().div_ceil(64);
        Ok(Range {
            base,
            init,
            bitmap: vec![0; words],
        })
    }

    /// Replaces every CPU slice of the anonymous mapping at `base` with a
    /// private mapping of one memfd, and maps that memfd shared for the
    /// initial values. Returns the init values' address.
    fn map_cow_slices(&self, base: usize) -> Result<usize, Errno> {
        // SAFETY: the name is NUL-terminated.
        let fd = unsafe { libc::memfd_create(c"rseq-mempool".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(Errno::last());
        }
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let result = (|| {
            // SAFETY: `fd` is our memfd.
            if unsafe { libc::ftruncate(fd, self.stride as libc::off_t) } != 0 {
                return Err(Errno::last());
            }
            // SAFETY: a new shared mapping of our memfd.
            let init = unsafe {
                libc::mmap(
                    core::ptr::null_mut(),
                    self.stride,
                    prot,
                    libc::MAP_SHARED,
                    fd,
                    0,
                )
            };
            if init == libc::MAP_FAILED {
                return Err(Errno::last());
            }
            for cpu in 0..self.nr_cpus {
                let at = (base + cpu * self.stride) as *mut libc::c_void;
                let flags = libc::MAP_PRIVATE | libc::MAP_FIXED;
                // SAFETY: `at` is inside the range we mapped and nobody
                // uses yet; MAP_FIXED replaces exactly that slice.
                let p = unsafe { libc::mmap(at, self.stride, prot, flags, fd, 0) };
                if p == libc::MAP_FAILED {
                    let e = Errno::last();
                    // SAFETY: our own shared mapping, unused.
                    unsafe { libc::munmap(init, self.stride) };
                    return Err(e);
                }
            }
            Ok(init as usize)
        })();
        // SAFETY: the mappings keep the memfd's pages; the descriptor is
        // no longer needed.
        unsafe { libc::close(fd) };
        result
    }

    fn unmap_range(&self, r: &Range) {
        // SAFETY: the range's mappings belong to this pool and no item of
        // it is used any more (destroy or error path).
        unsafe {
            libc::munmap(r.base as *mut libc::c_void, self.stride * self.nr_cpus);
            if let Some(init) = r.init {
                libc::munmap(init as *mut libc::c_void, self.stride);
            }
        }
    }

    fn add_range(self: &Arc<Self>, st: &mut State) -> Result<(), Errno> {
        if self.max_nr_ranges != 0 && st.ranges.len() as u64 >= self.max_nr_ranges {
            return Err(Errno(libc::ENOMEM));
        }
        let r = self.map_range()?;
        if self.poison.is_some() {
            // Every item of a poisoned pool starts poisoned.
            for i in 0..self.items_per_range() {
                self.write_item(&r, i * self.item_len, &self.poison_bytes);
            }
        }
        if let Some(init) = &self.init {
            for cpu in 0..self.nr_cpus {
                let addr = (r.base + cpu * self.stride) as *mut u8;
                let c = if self.percpu { cpu as i32 } else { -1 };
                if let Err(e) = init(addr, self.stride, c) {
                    self.unmap_range(&r);
                    return Err(if e.0 == 0 { Errno(libc::ENOMEM) } else { e });
                }
            }
        }
        let mut reg = registry().write().unwrap_or_else(|e| e.into_inner());
        reg.insert(r.base, (self.stride, Arc::downgrade(self)));
        drop(reg);
        st.ranges.push(r);
        st.bump = 0;
        Ok(())
    }

    /// CPU `cpu`'s copy of the item at `off` of range `r`.
    fn copy_ptr(&self, r: &Range, off: usize, cpu: usize) -> *mut u8 {
        (r.base + cpu * self.stride + off) as *mut u8
    }

    /// Makes every CPU's copy of the item at `off` start with `src`,
    /// writing only the copies that differ (so untouched copy-on-write
    /// slices stay shared).
    fn write_item(&self, r: &Range, off: usize, src: &[u8]) {
        if let Some(init) = r.init {
            // SAFETY: `init + off .. + src.len()` lies in the range's
            // init values (src.len() <= item_len, off + item_len <=
            // stride); the item is not in use.
            unsafe {
                core::ptr::copy_nonoverlapping(src.as_ptr(), (init + off) as *mut u8, src.len())
            };
        }
        for cpu in 0..self.nr_cpus {
            let p = self.copy_ptr(r, off, cpu);
            // SAFETY: the copy lies inside the range's mapping; the item
            // is not in use by anyone while it is (de)allocated.
            let cur = unsafe { core::slice::from_raw_parts(p, src.len()) };
            if cur != src {
                // SAFETY: as above.
                unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), p, src.len()) };
            }
        }
    }

    /// The CPU whose copy of the freed item at `off` lost its poison.
    fn poison_broken(&self, r: &Range, off: usize) -> Option<usize> {
        self.poison?;
        (0..self.nr_cpus).find(|&cpu| {
            let p = self.copy_ptr(r, off, cpu);
            // SAFETY: inside the range's mapping; a freed item is only
            // read here, under the pool's lock.
            let cur = unsafe { core::slice::from_raw_parts(p, self.item_len) };
            cur != self.poison_bytes.as_slice()
        })
    }

    fn find_range(st: &State, addr: usize, stride: usize) -> Option<usize> {
        st.ranges
            .iter()
            .position(|r| addr >= r.base && addr < r.base + stride)
    }

    fn take_item(self: &Arc<Self>, st: &mut State) -> Result<(usize, usize), Errno> {
        if st.destroyed {
            return Err(Errno(libc::EINVAL));
        }
        if let Some(addr) = st.free.pop() {
            let ri = Self::find_range(st, addr, self.stride).expect("freed item of a live range");
            let off = addr - st.ranges[ri].base;
            if self.robust {
                if let Some(cpu) = self.poison_broken(&st.ranges[ri], off) {
                    fatal(&format!(
                        "mempool \"{}\": corruption detected: item {addr:#x} was written after it was freed (CPU {cpu}'s copy)",
                        self.name()
                    ));
                }
            }
            return Ok((ri, off));
        }
        if st.ranges.is_empty() || st.bump >= self.items_per_range() {
            self.add_range(st)?;
        }
        let ri = st.ranges.len() - 1;
        let off = st.bump * self.item_len;
        st.bump += 1;
        Ok((ri, off))
    }

    /// Allocates an item: `init` (at most `item_len` bytes) is written into
    /// every CPU's copy; `zero` clears every copy. Returns CPU 0's copy.
    /// Errors: ENOMEM (no range left or mappable), EINVAL (`init` longer
    /// than an item, or the pool was destroyed).
    pub fn alloc(self: &Arc<Self>, zero: bool, init: Option<&[u8]>) -> Result<*mut u8, Errno> {
        if init.is_some_and(|i| i.len() > self.item_len) {
            return Err(Errno(libc::EINVAL));
        }
        let mut st = lock(&self.state);
        let (ri, off) = self.take_item(&mut st)?;
        let bit = off / self.item_len;
        let word = &mut st.ranges[ri].bitmap[bit / 64];
        if *word & (1 << (bit % 64)) != 0 {
            fatal(&format!(
                "mempool \"{}\": internal error: item allocated twice",
                self.name()
            ));
        }
        *word |= 1 << (bit % 64);
        let r = &st.ranges[ri];
        if zero {
            self.write_item(r, off, &self.zero_bytes);
        }
        if let Some(init) = init {
            self.write_item(r, off, init);
        }
        let addr = r.base + off;
        st.allocated += 1;
        Ok(addr as *mut u8)
    }

    /// Frees the item at `addr` (CPU 0's copy) allocated from this pool;
    /// `stride` must be the pool's. Misuse is detected (see the module
    /// docs). Does not touch memory outside this pool.
    pub fn free_item(&self, addr: usize, stride: usize) -> Result<(), Errno> {
        let mut st = lock(&self.state);
        let bad = |msg: String| -> Errno {
            if self.robust {
                fatal(&msg)
            }
            report(&msg)
        };
        if stride != self.stride {
            return Err(bad(format!(
                "rseq_mempool_percpu_free({addr:#x}): stride {stride} does not match the stride {} of mempool \"{}\"",
                self.stride,
                self.name()
            )));
        }
        let Some(ri) = Self::find_range(&st, addr, self.stride) else {
            return Err(bad(format!(
                "rseq_mempool_percpu_free({addr:#x}): not an item of mempool \"{}\" (destroyed?)",
                self.name()
            )));
        };
        let off = addr - st.ranges[ri].base;
        if !off.is_multiple_of(self.item_len) {
            return Err(bad(format!(
                "rseq_mempool_percpu_free({addr:#x}): not the start of an item of mempool \"{}\"",
                self.name()
            )));
        }
        let bit = off / self.item_len;
        let word = st.ranges[ri].bitmap[bit / 64];
        if word & (1 << (bit % 64)) == 0 {
            return Err(bad(format!(
                "mempool \"{}\": double free (or free of a never-allocated item) of {addr:#x}",
                self.name()
            )));
        }
        st.ranges[ri].bitmap[bit / 64] &= !(1 << (bit % 64));
        if self.poison.is_some() {
            self.write_item(&st.ranges[ri], off, &self.poison_bytes);
        }
        st.free.push(addr);
        st.allocated -= 1;
        Ok(())
    }

    /// Returns all memory to the kernel now (items still allocated become
    /// invalid). A robust pool aborts when items are still allocated or a
    /// freed item was written. Later allocations fail with EINVAL.
    pub fn destroy(&self) {
        let mut st = lock(&self.state);
        if st.destroyed {
            return;
        }
        if self.robust {
            if st.allocated != 0 {
                fatal(&format!(
                    "rseq_mempool_destroy: mempool \"{}\" still has {} allocated item(s) (memory leak)",
                    self.name(),
                    st.allocated
                ));
            }
            for &addr in &st.free {
                let ri =
                    Self::find_range(&st, addr, self.stride).expect("freed item of a live range");
                let r = &st.ranges[ri];
                if let Some(cpu) = self.poison_broken(r, addr - r.base) {
                    fatal(&format!(
                        "rseq_mempool_destroy: mempool \"{}\": corruption detected: item {addr:#x} was written after it was freed (CPU {cpu}'s copy)",
                        self.name()
                    ));
                }
            }
        }
        st.destroyed = true;
        let ranges = core::mem::take(&mut st.ranges);
        st.free.clear();
        st.allocated = 0;
        let mut reg = registry().write().unwrap_or_else(|e| e.into_inner());
        for r in &ranges {
            reg.remove(&r.base);
        }
        drop(reg);
        for r in &ranges {
            self.unmap_range(r);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // The last handle: nothing can reach the items any more. No
        // robust checks here (a Rust pool is dropped after its boxes).
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        let ranges = core::mem::take(&mut st.ranges);
        let mut reg = registry().write().unwrap_or_else(|e| e.into_inner());
        for r in &ranges {
            reg.remove(&r.base);
        }
        drop(reg);
        for r in &ranges {
            self.unmap_range(r);
        }
    }
}

/// The pool a pointer returned by an allocation belongs to (by CPU 0's
/// copy), from the registry of live ranges.
pub fn pool_of(addr: usize) -> Option<Mempool> {
    let reg = registry().read().unwrap_or_else(|e| e.into_inner());
    let (&base, (stride, pool)) = reg.range(..=addr).next_back()?;
    if addr >= base + stride {
        return None;
    }
    pool.upgrade()
}

/// librseq's `librseq_mempool_percpu_free`: frees `addr` (CPU 0's copy)
/// into whichever pool it came from. NULL is a no-op. A pointer of no
/// pool is reported on stderr and ignored (EINVAL).
pub fn free(addr: usize, stride: usize) -> Result<(), Errno> {
    if addr == 0 {
        return Ok(());
    }
    match pool_of(addr) {
        Some(pool) => pool.free_item(addr, stride),
        None => Err(report(&format!(
            "rseq_mempool_percpu_free({addr:#x}): pointer not allocated from any mempool; ignored"
        ))),
    }
}

#[cfg(test)]
mod tests;
