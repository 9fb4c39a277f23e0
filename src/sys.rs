//! Thin wrappers over the system calls the library makes.
//!
//! Each wrapper issues exactly one system call and reports failure as an
//! [`Errno`]; none of them retries or interprets the result. They are the
//! only place where raw `syscall(2)` invocations appear.

use core::ptr;

use crate::abi;

/// An `errno` value reported by a failed system call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    /// The calling thread's current `errno`.
    #[inline]
    pub fn last() -> Errno {
        // SAFETY: `__errno_location` always returns a valid pointer to the
        // calling thread's errno.
        Errno(unsafe { *libc::__errno_location() })
    }

    /// Stores `self` into the calling thread's `errno`.
    #[inline]
    pub fn set(self) {
        // SAFETY: as in `last`.
        unsafe { *libc::__errno_location() = self.0 }
    }
}

impl core::fmt::Display for Errno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "errno {}", self.0)
    }
}

/// Result of a system call.
pub type Result<T> = core::result::Result<T, Errno>;

#[inline]
fn check(ret: libc::c_long) -> Result<libc::c_long> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

/// `rseq(area, len, flags, sig)`.
///
/// # Safety
/// With `flags == 0` the kernel keeps writing into `area` for the rest of
/// the thread's life (or until it unregisters): `area` must stay valid and
/// at least `len` bytes long for that long.
pub unsafe fn rseq(area: *mut abi::Rseq, len: u32, flags: i32, sig: u32) -> Result<()> {
    // SAFETY: the caller guarantees the area's lifetime; the other
    // arguments are plain integers.
    check(unsafe { libc::syscall(abi::SYS_RSEQ, area, len, flags, sig) }).map(drop)
}

/// Probes for kernel rseq support with `rseq(NULL, 0, 0, 0)`: the kernel
/// answers EINVAL when it has rseq and ENOSYS when it has none; a sandbox
/// may answer EPERM or anything else.
pub fn rseq_probe() -> Errno {
    // SAFETY: a NULL area with length 0 is rejected before any access.
    match check(unsafe { libc::syscall(abi::SYS_RSEQ, ptr::null_mut::<u8>(), 0, 0, 0) }) {
        Ok(_) => Errno(0),
        Err(e) => e,
    }
}

/// `membarrier(cmd, flags, cpu_id)`.
// c_long is already i32 on 32-bit targets.
#[allow(clippy::unnecessary_cast)]
pub fn membarrier(cmd: i32, flags: u32, cpu: i32) -> Result<i32> {
    // SAFETY: membarrier takes no pointers.
    check(unsafe { libc::syscall(abi::SYS_MEMBARRIER, cmd, flags, cpu) }).map(|r| r as i32)
}

/// `FUTEX_WAIT_PRIVATE`: sleeps while `*word == expected`, until woken.
/// Spurious returns are possible; callers loop.
pub fn futex_wait(word: &core::sync::atomic::AtomicU32, expected: u32) {
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            ptr::null::<libc::timespec>(),
        );
    }
}

/// `FUTEX_WAKE_PRIVATE`: wakes up to `n` waiters on `word`.
pub fn futex_wake(word: &core::sync::atomic::AtomicU32, n: i32) {
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            n,
        );
    }
}

/// Asks the kernel whether the aligned 32-bit word at `addr` can be read,
/// without any risk of a signal and without blocking: `FUTEX_CMP_REQUEUE`
/// reads the word to compare it, then requeues nobody. It fails with
/// EFAULT when the page cannot be read, EAGAIN on a mismatch.
pub fn probe_readable(addr: usize) -> bool {
    static DUMMY: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
    // SAFETY: the kernel validates `addr` itself; DUMMY is a valid word.
    // nr_wake and nr_requeue (the timeout slot) are 0: nobody is woken or
    // moved, whatever the comparison gives.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_futex,
            addr as *const u32,
            libc::FUTEX_CMP_REQUEUE | libc::FUTEX_PRIVATE_FLAG,
            0,
            0usize,
            DUMMY.as_ptr(),
            0u32,
        )
    };
    ret >= 0 || Errno::last().0 != libc::EFAULT
}

/// Asks the kernel whether the aligned 32-bit word at `addr` can be
/// written, without changing it and without any risk of a signal:
/// `FUTEX_WAKE_OP` atomically adds 0 to `*addr` (a real write access that
/// stores the value it read) and wakes nobody. Fails with EFAULT when the
/// page is not writable.
pub fn probe_writable(addr: usize) -> bool {
    static DUMMY: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
    // FUTEX_OP(FUTEX_OP_ADD, 0, FUTEX_OP_CMP_EQ, 0): *addr += 0.
    const OP_ADD_ZERO: u32 = (libc::FUTEX_OP_ADD as u32) << 28;
    // SAFETY: the kernel validates `addr` itself; DUMMY is a valid word.
    // nr_wake and nr_wake2 (passed in the timeout slot) are 0, so no
    // thread waiting on either word is woken.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_futex,
            DUMMY.as_ptr(),
            libc::FUTEX_WAKE_OP | libc::FUTEX_PRIVATE_FLAG,
            0,
            0usize,
            addr as *mut u32,
            OP_ADD_ZERO,
        )
    };
    ret >= 0 || Errno::last().0 != libc::EFAULT
}

/// The calling thread's kernel thread id.
#[inline]
pub fn gettid() -> i32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// `getcpu()`: the CPU and NUMA node the caller runs on.
pub fn getcpu() -> Result<(u32, u32)> {
    let mut cpu = 0u32;
    let mut node = 0u32;
    // SAFETY: both out-pointers are valid; the third argument is unused.
    check(unsafe {
        libc::syscall(
            libc::SYS_getcpu,
            &mut cpu as *mut u32,
            &mut node as *mut u32,
            ptr::null_mut::<u8>(),
        )
    })?;
    Ok((cpu, node))
}

/// `getauxval(key)`, 0 when the kernel did not provide the key.
#[inline]
pub fn getauxval(key: libc::c_ulong) -> libc::c_ulong {
    // SAFETY: getauxval only reads the auxiliary vector.
    unsafe { libc::getauxval(key) }
}

/// Blocks every signal in the calling thread and returns the previous
/// mask, to be restored with [`restore_sigmask`].
pub fn block_all_signals() -> libc::sigset_t {
    // SAFETY: the sets are valid, zero-initialised sigset_t values that
    // sigfillset and pthread_sigmask fill in.
    unsafe {
        let mut all: libc::sigset_t = core::mem::zeroed();
        let mut old: libc::sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        old
    }
}

/// Restores a signal mask saved by [`block_all_signals`].
pub fn restore_sigmask(old: &libc::sigset_t) {
    // SAFETY: `old` is a mask previously returned by pthread_sigmask.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, old, ptr::null_mut());
    }
}

/// The calling thread's CPU affinity mask.
pub fn get_affinity() -> Result<libc::cpu_set_t> {
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    unsafe {
        let mut set: libc::cpu_set_t = core::mem::zeroed();
        if libc::sched_getaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(Errno::last());
        }
        Ok(set)
    }
}

/// Sets the calling thread's CPU affinity mask.
pub fn set_affinity(set: &libc::cpu_set_t) -> Result<()> {
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    if unsafe { libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), set) } != 0 {
        return Err(Errno::last());
    }
    Ok(())
}
