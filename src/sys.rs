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
/// `Ok(readable)`, or `Err` with the errno of a kernel (or sandbox) that
/// refuses the probe: then nothing is known about the address.
pub fn probe_readable(addr: usize) -> Result<bool> {
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
    probe_answer(ret, &[libc::EAGAIN])
}

/// Maps a probe's return value: success (or an errno in `fine`) means
/// accessible, EFAULT inaccessible, anything else a refusal.
fn probe_answer(ret: libc::c_long, fine: &[i32]) -> Result<bool> {
    if ret >= 0 {
        return Ok(true);
    }
    match Errno::last() {
        Errno(libc::EFAULT) => Ok(false),
        Errno(e) if fine.contains(&e) => Ok(true),
        e => Err(e),
    }
}

/// Asks the kernel whether the aligned 32-bit word at `addr` can be
/// written, without changing it and without any risk of a signal:
/// `FUTEX_WAKE_OP` atomically adds 0 to `*addr` (a real write access that
/// stores the value it read) and wakes nobody. Fails with EFAULT when the
/// page is not writable. `Ok(writable)`, or `Err` for a refusal (as
/// [`probe_readable`]).
pub fn probe_writable(addr: usize) -> Result<bool> {
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
    probe_answer(ret, &[])
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

/// A kernel signal set (`sizeof(kernel_sigset_t)` is 8 on every Linux
/// architecture this library supports).
pub type KernelSigset = u64;

/// `rt_sigprocmask(SIG_SETMASK, set)` issued directly, returning the
/// previous mask. glibc's `sigprocmask` silently keeps its internal
/// signals (thread cancellation, `setxid`) unblocked; the cpu-op engine
/// needs them blocked too, so that no handler at all (and no asynchronous
/// cancellation) runs while it holds an ownership word. SIGKILL and
/// SIGSTOP cannot be blocked (the kernel ignores them in the set).
#[inline]
pub fn set_sigmask(set: KernelSigset) -> KernelSigset {
    let mut old: KernelSigset = 0;
    // SAFETY: both sets are valid 8-byte kernel sigsets.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &set as *const KernelSigset,
            &mut old as *mut KernelSigset,
            core::mem::size_of::<KernelSigset>(),
        );
    }
    old
}

/// `FUTEX_LOCK_PI_PRIVATE`: takes a priority-inheritance futex word
/// (0 free, else the owner's tid), in the kernel when it is owned (the
/// owner inherits the caller's priority meanwhile), or when the caller
/// cannot make progress with a user-space compare-and-swap. Restarted by
/// the kernel after signals; returns 0 once the caller owns the word.
pub fn futex_lock_pi(word: &core::sync::atomic::AtomicU32) -> Result<()> {
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call.
    check(unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_LOCK_PI | libc::FUTEX_PRIVATE_FLAG,
            0,
            ptr::null::<libc::timespec>(),
        )
    })
    .map(drop)
}

/// `FUTEX_TRYLOCK_PI_PRIVATE`: takes a free priority-inheritance word in
/// the kernel, never sleeping (EWOULDBLOCK / EAGAIN when owned).
pub fn futex_trylock_pi(word: &core::sync::atomic::AtomicU32) -> Result<()> {
    // SAFETY: as in `futex_lock_pi`.
    check(unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_TRYLOCK_PI | libc::FUTEX_PRIVATE_FLAG,
            0,
            ptr::null::<libc::timespec>(),
        )
    })
    .map(drop)
}

/// `FUTEX_UNLOCK_PI_PRIVATE`: releases a priority-inheritance word the
/// caller owns, handing it to the highest-priority waiter if any.
pub fn futex_unlock_pi(word: &core::sync::atomic::AtomicU32) -> Result<()> {
    // SAFETY: as in `futex_lock_pi`.
    check(unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_UNLOCK_PI | libc::FUTEX_PRIVATE_FLAG,
            0,
        )
    })
    .map(drop)
}

/// Copies `len` bytes of the calling process's own memory from `src` to
/// `dst` through the kernel (`process_vm_writev` on itself, or
/// `process_vm_readv`: either way the kernel reads one side with
/// `copy_from_user` and writes the other through pinned pages), so that
/// a bad or concurrently unmapped address gives EFAULT instead of a
/// signal. `Ok(n)`: `n` bytes were copied (fewer than `len` when a page
/// of the second range failed after the first ones were copied). The
/// ranges must not overlap (the kernel copies forwards).
pub fn copy_checked(dst: usize, src: usize, len: usize, dst_is_remote: bool) -> Result<usize> {
    let local = libc::iovec {
        iov_base: (if dst_is_remote { src } else { dst }) as *mut libc::c_void,
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: (if dst_is_remote { dst } else { src }) as *mut libc::c_void,
        iov_len: len,
    };
    let nr = if dst_is_remote {
        libc::SYS_process_vm_writev
    } else {
        libc::SYS_process_vm_readv
    };
    // SAFETY: the kernel validates both ranges itself (EFAULT); the iovec
    // arrays are valid for one element each.
    check(unsafe {
        libc::syscall(
            nr,
            libc::getpid(),
            &local as *const libc::iovec,
            1usize,
            &remote as *const libc::iovec,
            1usize,
            0usize,
        )
    })
    .map(|n| n as usize)
}

/// Whether CPU `cpu` is online, from the kernel's online mask
/// (`/sys/devices/system/cpu/online`, a list such as `0-3,8`) read with raw
/// system calls into a stack buffer: no allocation, no cancellation point
/// (glibc's `open`/`read` are cancellation points; `syscall()` is not).
/// A CPU outside the mask runs no task; that also covers possible CPUs
/// that were never present (they have no `cpuN` directory at all). A mask
/// that cannot be read: online (the caller then fails rather than skips a
/// fence).
pub fn cpu_online(cpu: i32) -> bool {
    let mut buf = [0u8; 1024];
    // SAFETY: a NUL-terminated path; raw openat/read/close on a local
    // buffer, reads within its bounds.
    let len = unsafe {
        let fd = libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            c"/sys/devices/system/cpu/online".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return true;
        }
        let mut len = 0;
        while len < buf.len() {
            let n = libc::syscall(libc::SYS_read, fd, buf[len..].as_mut_ptr(), buf.len() - len);
            if n <= 0 {
                break;
            }
            len += n as usize;
        }
        libc::syscall(libc::SYS_close, fd);
        len
    };
    // A list longer than the buffer is cut: trust only complete ranges.
    let text = &buf[..len];
    let text = if len == buf.len() {
        &text[..text.iter().rposition(|&b| b == b',').unwrap_or(0)]
    } else {
        text
    };
    cpu_list_contains(text, cpu).unwrap_or(true)
}

/// Whether a kernel CPU list (`0-3,8,10-11`) holds `cpu`; `None` when the
/// text is not such a list.
fn cpu_list_contains(text: &[u8], cpu: i32) -> Option<bool> {
    fn number(s: &[u8]) -> Option<i64> {
        if s.is_empty() || s.len() > 9 || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(s.iter().fold(0i64, |n, &d| n * 10 + i64::from(d - b'0')))
    }
    let mut found = false;
    for part in text
        .trim_ascii()
        .split(|&b| b == b',')
        .filter(|p| !p.is_empty())
    {
        let (lo, hi) = match part.iter().position(|&b| b == b'-') {
            Some(dash) => (number(&part[..dash])?, number(&part[dash + 1..])?),
            None => {
                let n = number(part)?;
                (n, n)
            }
        };
        found |= (lo..=hi).contains(&i64::from(cpu));
    }
    Some(found)
}
