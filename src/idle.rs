//! `rseq_offset` itself, and the value it holds while no area is in use.
//!
//! librseq's `rseq_offset` is 0 before its initialisation and after its
//! destructor, and an inline section that runs then stores its `rseq_cs`
//! at offset 8 from the thread pointer: into the thread control block.
//! This library's C sections used to test `rseq_offset` before every
//! section for that reason (two instructions per operation).
//!
//! On x86_64 the word instead starts out (and returns at the destructor
//! to) the offset of a library-owned *idle area* in static TLS (see
//! `src/area.c`), never registered with the kernel: its `cpu_id` is -1 in
//! every thread, so a section running on it aborts at its CPU check, and
//! its `rseq_cs` store is harmless. The accessors read it as an
//! unregistered thread's area (`cpu_id_start` 0, `cpu_id` -1, `mm_cid` 0),
//! which is what they returned for offset 0. The inline sections and the
//! exported ones then need no test. A caller that passes `cpu` -1 (the
//! idle `cpu_id`) reaches the ownership check, which reads the forever
//! owned slot -1 of the boot table ([`crate::owner`]) and aborts.
//!
//! Elsewhere the word starts at 0, as in librseq, and the sections test it.

/// Whether [`rseq_offset`] always designates a readable area (x86_64):
/// sections and accessors need no test for 0.
pub const ALWAYS_AN_AREA: bool = cfg!(target_arch = "x86_64");

#[cfg(target_arch = "x86_64")]
mod imp {
    use core::cell::UnsafeCell;
    use core::mem::MaybeUninit;
    use core::sync::atomic::AtomicIsize;

    extern "C" {
        /// An IFUNC of `src/area.c` whose resolver returns the idle
        /// area's offset from the thread pointer: a data word holding its
        /// address gets that offset from the dynamic linker (an IRELATIVE
        /// relocation), before any constructor runs. Never called.
        fn rseq_impl_idle_offset();
        /// The idle area's offset from the thread pointer.
        fn rseq_impl_idle_area_offset() -> isize;
    }

    /// The storage of `rseq_offset`: one pointer-sized word, initialised
    /// with the IFUNC's "address" (the idle offset) and otherwise only
    /// accessed as an [`AtomicIsize`]. `MaybeUninit`: every bit pattern
    /// the atomic stores is a valid value of the cell.
    #[repr(transparent)]
    pub struct OffsetWord(UnsafeCell<MaybeUninit<unsafe extern "C" fn()>>);

    // SAFETY: every access goes through the AtomicIsize view (Deref).
    unsafe impl Sync for OffsetWord {}

    const _: () = assert!(
        core::mem::size_of::<OffsetWord>() == core::mem::size_of::<AtomicIsize>()
            && core::mem::align_of::<OffsetWord>() == core::mem::align_of::<AtomicIsize>()
    );

    impl core::ops::Deref for OffsetWord {
        type Target = AtomicIsize;

        #[inline(always)]
        fn deref(&self) -> &AtomicIsize {
            // SAFETY: same size and alignment (checked above); the cell
            // allows shared mutation, and nothing reads it as a function
            // pointer.
            unsafe { &*self.0.get().cast::<AtomicIsize>() }
        }
    }

    /// librseq's `rseq_offset` (see [`crate::registration`]).
    #[cfg_attr(feature = "capi", no_mangle)]
    #[allow(non_upper_case_globals)] // librseq's C names
    pub static rseq_offset: OffsetWord =
        OffsetWord(UnsafeCell::new(MaybeUninit::new(rseq_impl_idle_offset)));

    /// The idle area's offset.
    #[inline]
    pub fn no_area() -> isize {
        // SAFETY: a plain accessor of area.c without preconditions.
        unsafe { rseq_impl_idle_area_offset() }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    use core::sync::atomic::AtomicIsize;

    /// librseq's `rseq_offset` (see [`crate::registration`]).
    #[cfg_attr(feature = "capi", no_mangle)]
    #[allow(non_upper_case_globals)] // librseq's C names
    pub static rseq_offset: AtomicIsize = AtomicIsize::new(0);

    /// 0: no area.
    #[inline]
    pub fn no_area() -> isize {
        0
    }
}

pub(crate) use imp::rseq_offset;

/// The value of [`rseq_offset`] while the library designates no area:
/// the idle area's offset on x86_64, else 0.
#[inline]
pub fn no_area() -> isize {
    imp::no_area()
}

/// Whether an `rseq_offset` value designates a real area (glibc's or the
/// library's own).
#[inline]
pub fn is_area(offset: isize) -> bool {
    offset != no_area()
}
