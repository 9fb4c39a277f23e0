//! CPU numbers that always come from the library (exported out of line).

use core::ffi::c_int;

use super::guard;
use crate::cpu;

/// The current CPU through `sched_getcpu()`; aborts the process if the
/// kernel cannot tell. Registers the calling thread first when automatic
/// registration applies, so that the next inline query is served by rseq.
#[no_mangle]
pub extern "C-unwind" fn rseq_fallback_current_cpu() -> i32 {
    guard(-1, cpu::fallback_current_cpu)
}

/// The current NUMA node through `getcpu()`; aborts the process if the
/// kernel cannot tell.
#[no_mangle]
pub extern "C-unwind" fn rseq_fallback_current_node() -> i32 {
    guard(-1, cpu::fallback_current_node)
}

/// The number of possible CPUs (one past the highest possible CPU
/// number): the size of an array indexed by CPU number or mm_cid.
#[no_mangle]
pub extern "C-unwind" fn rseq_get_max_nr_cpus() -> c_int {
    guard(-1, || cpu::possible().len() as c_int)
}
