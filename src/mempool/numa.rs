//! `rseq_mempool_range_init_numa` without libnuma: the node of a CPU
//! comes from sysfs, the policy is set with the `mbind` system call.

use crate::sys::Errno;

const MPOL_PREFERRED: libc::c_int = 1;
const MPOL_MF_STRICT: i32 = 1 << 0;
const MPOL_MF_MOVE: i32 = 1 << 1;
const MPOL_MF_MOVE_ALL: i32 = 1 << 2;

/// The NUMA node of `cpu` (`/sys/devices/system/cpu/cpuN/nodeM`), or
/// `None` where sysfs shows no node (a kernel without NUMA).
pub fn node_of_cpu(cpu: u32) -> Option<u32> {
    let dir = std::fs::read_dir(format!("/sys/devices/system/cpu/cpu{cpu}")).ok()?;
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("node")?.parse().ok())
        .next()
}

/// Makes the kernel place the pages of `addr .. addr + len` (one CPU's
/// slice of a range, page aligned) on the node of `cpu`: `mbind` with
/// `MPOL_PREFERRED` for the pages not yet populated, and `numa_flags`
/// (`MPOL_MF_MOVE`, `MPOL_MF_MOVE_ALL`, `MPOL_MF_STRICT`, as librseq
/// passes them to `move_pages`) for the pages already there. `cpu` < 0
/// (a global pool) and kernels without NUMA (no node in sysfs, or
/// `mbind` answering ENOSYS) succeed without doing anything, as librseq
/// built without libnuma does. Errors: EINVAL (unaligned address, unknown
/// flags), and `mbind`'s own.
pub fn range_init_numa(addr: usize, len: usize, cpu: i32, numa_flags: i32) -> Result<(), Errno> {
    if numa_flags & !(MPOL_MF_STRICT | MPOL_MF_MOVE | MPOL_MF_MOVE_ALL) != 0 {
        return Err(Errno(libc::EINVAL));
    }
    if cpu < 0 || len == 0 {
        return Ok(());
    }
    let Some(node) = node_of_cpu(cpu as u32) else {
        return Ok(());
    };
    let bits = 8 * core::mem::size_of::<libc::c_ulong>();
    let mut mask = vec![0 as libc::c_ulong; node as usize / bits + 1];
    mask[node as usize / bits] |= 1 << (node as usize % bits);
    // SAFETY: mbind only changes the memory policy of our own mapping
    // (or fails); `mask` holds `maxnode` bits.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mbind,
            addr,
            len,
            MPOL_PREFERRED,
            mask.as_ptr(),
            (mask.len() * bits) as libc::c_ulong,
            numa_flags as libc::c_uint,
        )
    };
    if r == 0 {
        return Ok(());
    }
    match Errno::last() {
        Errno(libc::ENOSYS) => Ok(()),
        e => Err(e),
    }
}
