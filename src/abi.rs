//! The kernel ABI of restartable sequences, in one place.
//!
//! Everything the kernel defines for rseq lives here: the per-thread area
//! (`struct rseq`), the critical-section descriptor (`struct rseq_cs`), the
//! special `cpu_id` values, flags, the per-architecture abort signature,
//! the auxiliary-vector keys that describe the area, and the `membarrier`
//! commands the cpu-op engine uses. Sources: `include/uapi/linux/rseq.h`,
//! `include/uapi/linux/membarrier.h` and `include/uapi/linux/auxvec.h`.
//!
//! The area is *extensible*: the kernel says how many bytes of it it fills
//! (`AT_RSEQ_FEATURE_SIZE`) and how it must be aligned (`AT_RSEQ_ALIGN`).
//! Only the original minimum (32 bytes, 20 of them features) is a constant;
//! everything beyond is read at run time (see [`crate::registration`]).

use core::mem::offset_of;

/// The per-thread area shared with the kernel (`struct rseq`).
///
/// Only the fields up to `mm_cid` are named; newer kernels append fields
/// after it, which is why the registered size is computed at run time.
#[repr(C, align(32))]
#[derive(Debug)]
pub struct Rseq {
    /// CPU number the thread last ran on; always a possible CPU, even
    /// before registration (then 0). Written by the kernel.
    pub cpu_id_start: u32,
    /// Current CPU number, or [`CPU_ID_UNINITIALIZED`] /
    /// [`CPU_ID_REGISTRATION_FAILED`] when the thread is not registered.
    pub cpu_id: u32,
    /// Address of the [`RseqCs`] descriptor of the critical section in
    /// progress, or 0. Written by user space, cleared by the kernel.
    pub rseq_cs: u64,
    /// Deprecated per-thread flags; always 0.
    pub flags: u32,
    /// NUMA node of `cpu_id` (Linux 6.3+).
    pub node_id: u32,
    /// Memory-map concurrency id (Linux 6.3+).
    pub mm_cid: u32,
}

/// A critical-section descriptor (`struct rseq_cs`).
#[repr(C, align(32))]
#[derive(Debug, Clone, Copy)]
pub struct RseqCs {
    /// Structure version; 0.
    pub version: u32,
    /// Deprecated flags; 0.
    pub flags: u32,
    /// First instruction of the section.
    pub start_ip: u64,
    /// Length of the section: the instruction at `start_ip +
    /// post_commit_offset` is the first one after the commit.
    pub post_commit_offset: u64,
    /// Where the kernel moves the instruction pointer on abort; the four
    /// bytes before it hold [`RSEQ_SIG`].
    pub abort_ip: u64,
}

/// Byte offset of `cpu_id_start` in the area.
pub const CPU_ID_START_OFFSET: usize = offset_of!(Rseq, cpu_id_start);
/// Byte offset of `cpu_id` in the area.
pub const CPU_ID_OFFSET: usize = offset_of!(Rseq, cpu_id);
/// Byte offset of `rseq_cs` in the area.
pub const RSEQ_CS_OFFSET: usize = offset_of!(Rseq, rseq_cs);
/// Byte offset of `node_id` in the area.
pub const NODE_ID_OFFSET: usize = offset_of!(Rseq, node_id);
/// Byte offset of `mm_cid` in the area.
pub const MM_CID_OFFSET: usize = offset_of!(Rseq, mm_cid);

/// Size of the original area, and the smallest length `rseq()` accepts.
pub const ORIG_RSEQ_ALLOC_SIZE: u32 = 32;
/// Feature size of the original ABI: the fields up to and including
/// `flags`. Kernels before 6.3 fill exactly this much.
pub const ORIG_RSEQ_FEATURE_SIZE: u32 = 20;
/// Feature size from which `node_id` is filled in.
pub const NODE_ID_FEATURE_END: u32 = (NODE_ID_OFFSET + 4) as u32;
/// Feature size from which `mm_cid` is filled in.
pub const MM_CID_FEATURE_END: u32 = (MM_CID_OFFSET + 4) as u32;

/// `cpu_id` of a thread that never registered (or has unregistered).
pub const CPU_ID_UNINITIALIZED: i32 = -1;
/// `cpu_id` of a thread whose registration failed (glibc writes it too).
pub const CPU_ID_REGISTRATION_FAILED: i32 = -2;

/// `rseq()` flag: unregister the calling thread.
pub const RSEQ_FLAG_UNREGISTER: i32 = 1;

/// Auxiliary-vector key: number of bytes of the area the kernel fills.
pub const AT_RSEQ_FEATURE_SIZE: libc::c_ulong = 27;
/// Auxiliary-vector key: required alignment of the area.
pub const AT_RSEQ_ALIGN: libc::c_ulong = 28;

/// `membarrier` command: restart the rseq critical sections of this
/// process running on the target CPU(s) (Linux 5.10+).
pub const MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ: i32 = 1 << 7;
/// `membarrier` command: register the intent to use
/// [`MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ`].
pub const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ: i32 = 1 << 8;
/// `membarrier` flag: the third argument names one CPU.
pub const MEMBARRIER_CMD_FLAG_CPU: u32 = 1;
/// `membarrier` command: ask which commands the kernel supports.
pub const MEMBARRIER_CMD_QUERY: i32 = 0;

/// The abort signature: the 32-bit value the kernel expects right before
/// every abort handler, and the one every registrant of the process
/// (glibc or this library) passes to `rseq()`.
#[cfg(target_arch = "x86_64")]
pub const RSEQ_SIG: u32 = 0x5305_3053;
/// The abort signature (`BRK #0x45E0`), as data: byte-swapped on big endian.
#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
pub const RSEQ_SIG: u32 = 0xd428_bc00;
/// The abort signature (`BRK #0x45E0`), as data: byte-swapped on big endian.
#[cfg(all(target_arch = "aarch64", target_endian = "big"))]
pub const RSEQ_SIG: u32 = 0x00bc_28d4;
/// The abort signature.
#[cfg(target_arch = "x86")]
pub const RSEQ_SIG: u32 = 0x5305_3053;
/// The abort signature.
#[cfg(target_arch = "arm")]
pub const RSEQ_SIG: u32 = 0xe7f5_def3;
/// The abort signature.
#[cfg(any(target_arch = "powerpc", target_arch = "powerpc64"))]
pub const RSEQ_SIG: u32 = 0x0fe5_000b;
/// The abort signature.
#[cfg(target_arch = "s390x")]
pub const RSEQ_SIG: u32 = 0xB2FF_0FFF;
/// The abort signature.
#[cfg(any(target_arch = "riscv32", target_arch = "riscv64"))]
pub const RSEQ_SIG: u32 = 0xf140_1073;
/// The abort signature.
#[cfg(target_arch = "loongarch64")]
pub const RSEQ_SIG: u32 = 0x002a_0010;
/// No signature is known for this architecture; rseq is never registered.
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "x86",
    target_arch = "arm",
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "s390x",
    target_arch = "riscv32",
    target_arch = "riscv64",
    target_arch = "loongarch64"
)))]
pub const RSEQ_SIG: u32 = 0;

/// The `rseq` system call number.
pub const SYS_RSEQ: libc::c_long = libc::SYS_rseq;
/// The `membarrier` system call number.
pub const SYS_MEMBARRIER: libc::c_long = libc::SYS_membarrier;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_uapi() {
        assert_eq!(CPU_ID_START_OFFSET, 0);
        assert_eq!(CPU_ID_OFFSET, 4);
        assert_eq!(RSEQ_CS_OFFSET, 8);
        assert_eq!(offset_of!(Rseq, flags), 16);
        assert_eq!(NODE_ID_OFFSET, 20);
        assert_eq!(MM_CID_OFFSET, 24);
        assert_eq!(core::mem::size_of::<Rseq>(), 32);
        assert_eq!(core::mem::align_of::<Rseq>(), 32);
        assert_eq!(offset_of!(RseqCs, start_ip), 8);
        assert_eq!(offset_of!(RseqCs, post_commit_offset), 16);
        assert_eq!(offset_of!(RseqCs, abort_ip), 24);
        assert_eq!(core::mem::size_of::<RseqCs>(), 32);
        assert_eq!(NODE_ID_FEATURE_END, 24);
        assert_eq!(MM_CID_FEATURE_END, 28);
    }
}
