//! CPU-number accessors, exported for callers that cannot use the inline
//! versions of `<rseq/rseq.h>` (other languages, `RSEQ_NO_INLINE`).

use super::{guard, RseqAbi};
use crate::{arch, cpu, registration};

/// The calling thread's rseq area (`thread pointer + rseq_offset`).
#[no_mangle]
pub extern "C-unwind" fn rseq_get_abi() -> *mut RseqAbi {
    guard(core::ptr::null_mut(), || {
        arch::thread_pointer()
            .wrapping_offset(registration::offset())
            .cast()
    })
}

/// The `cpu_id` field: the current CPU, or -1 (not registered) / -2
/// (registration failed).
#[no_mangle]
pub extern "C-unwind" fn rseq_current_cpu_raw() -> i32 {
    guard(-1, cpu::current_cpu_raw)
}

/// The `cpu_id_start` field: always a possible CPU; pass it to a critical
/// section, which checks it.
#[no_mangle]
pub extern "C-unwind" fn rseq_cpu_start() -> u32 {
    guard(0, cpu::cpu_start)
}

/// The current CPU: `cpu_id`, or `rseq_fallback_current_cpu()` when the
/// thread is not registered.
#[no_mangle]
pub extern "C-unwind" fn rseq_current_cpu() -> u32 {
    guard(0, || cpu::current_cpu() as u32)
}

/// Whether the kernel fills in `node_id` (rseq_size >= 24).
#[no_mangle]
pub extern "C-unwind" fn rseq_node_id_available() -> bool {
    guard(false, cpu::node_id_available)
}

/// The `node_id` field: the NUMA node of the current CPU.
#[no_mangle]
pub extern "C-unwind" fn rseq_current_node_id() -> u32 {
    guard(0, cpu::current_node_id)
}

/// Whether the kernel fills in `mm_cid` (rseq_size >= 28).
#[no_mangle]
pub extern "C-unwind" fn rseq_mm_cid_available() -> bool {
    guard(false, cpu::mm_cid_available)
}

/// The `mm_cid` field: the thread's memory-map concurrency id.
#[no_mangle]
pub extern "C-unwind" fn rseq_current_mm_cid() -> u32 {
    guard(0, cpu::current_mm_cid)
}

/// Clears the `rseq_cs` field of the calling thread's area, so that the
/// kernel no longer refers to the last critical section's descriptor.
#[no_mangle]
pub extern "C-unwind" fn rseq_clear_rseq_cs() {
    guard((), || {
        if let Some(area) = registration::area() {
            // SAFETY: the area is the calling thread's live rseq area;
            // rseq_cs is written by this thread only (the kernel clears it
            // from this thread's context).
            unsafe { core::ptr::write_volatile(core::ptr::addr_of_mut!((*area).rseq_cs), 0) };
        }
    })
}

/// To be called by each thread between its last critical section and the
/// unloading of the code that holds the section (see librseq); clears
/// `rseq_cs`.
#[no_mangle]
pub extern "C-unwind" fn rseq_prepare_unload() {
    rseq_clear_rseq_cs()
}
