//! Checking, without touching it, that memory can be accessed.
//!
//! The kernel's `cpu_opv` pinned every page of a vector before running
//! it, so a bad pointer made it fail with EFAULT (or EAGAIN where the
//! caller expected a fault) before any operation ran, never with a signal.
//! User space gets the same answer from the kernel page by page: a
//! `FUTEX_CMP_REQUEUE` reads a word of the page, a `FUTEX_WAKE_OP` adds 0
//! to one atomically (a real write access that changes nothing), and both
//! fail with EFAULT instead of faulting (see [`crate::sys`]). Permissions
//! are per page, so one probe per page covers a range.
//!
//! When the kernel (or a seccomp filter) refuses the probes, the check
//! fails with the errno it gave instead of guessing. A page unmapped by
//! another thread between the check and the access is caught by the
//! execution itself (see [`super::checked`]).

use super::vector::{Access, Range};
use crate::sys::{self, Errno};

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as usize
    } else {
        4096
    }
}

/// Whether every byte of `range` can be accessed as it says; EFAULT, or
/// EAGAIN when the range expects a fault, otherwise (or the errno of a
/// refused probe, see the module documentation). Empty ranges are
/// never checked (the kernel pinned nothing for them).
pub fn check(range: &Range) -> Result<(), Errno> {
    if range.len == 0 {
        return Ok(());
    }
    let fail = Err(Errno(if range.expect_fault {
        libc::EAGAIN
    } else {
        libc::EFAULT
    }));
    let Some(last) = range.addr.checked_add(range.len - 1) else {
        return fail;
    };
    let page = page_size();
    // The first page is probed at the word holding the range's first
    // byte, later pages at their first word: both inside the range (but
    // for at most 3 bytes before an unaligned start), so the probes touch
    // nothing the caller did not pass (memory checkers notice otherwise).
    let mut p = range.addr & !3;
    loop {
        let ok = match range.access {
            Access::Read => sys::probe_readable(p),
            Access::Write => sys::probe_writable(p),
        };
        // A refused probe says nothing about the address: fail with the
        // refusal's errno rather than guess that it is accessible.
        if !ok? {
            return fail;
        }
        match (p & !(page - 1)).checked_add(page) {
            Some(next) if next <= last => p = next,
            _ => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(addr: usize, len: usize, access: Access) -> Range {
        Range {
            addr,
            len,
            access,
            expect_fault: false,
        }
    }

    #[test]
    fn probes_answer_like_the_kernel() {
        let page = page_size();
        // SAFETY: fresh anonymous mappings, unmapped at the end.
        let (rw, ro) = unsafe {
            let rw = libc::mmap(
                core::ptr::null_mut(),
                2 * page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            let ro = libc::mmap(
                core::ptr::null_mut(),
                page,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert!(rw != libc::MAP_FAILED && ro != libc::MAP_FAILED);
            (rw as usize, ro as usize)
        };
        // SAFETY: the second page of `rw` is ours to protect.
        unsafe { libc::mprotect((rw + page) as *mut libc::c_void, page, libc::PROT_NONE) };
        // SAFETY: rw's first page is writable.
        unsafe { *(rw as *mut u32) = 0xdead_beef };
        assert_eq!(check(&range(rw, page, Access::Write)), Ok(()));
        // SAFETY: as above.
        let after = unsafe { *(rw as *const u32) };
        assert_eq!(after, 0xdead_beef, "the write probe changes nothing");
        assert_eq!(check(&range(rw + 3, 9, Access::Read)), Ok(()));
        assert_eq!(
            check(&range(rw + page - 4, 8, Access::Read)),
            Err(Errno(libc::EFAULT)),
            "second page is PROT_NONE"
        );
        assert_eq!(check(&range(ro, 16, Access::Read)), Ok(()));
        assert_eq!(
            check(&range(ro, 16, Access::Write)),
            Err(Errno(libc::EFAULT))
        );
        assert_eq!(check(&range(0, 1, Access::Read)), Err(Errno(libc::EFAULT)));
        assert_eq!(
            check(&range(0, 0, Access::Read)),
            Ok(()),
            "empty ranges are not checked"
        );
        let expect = Range {
            expect_fault: true,
            ..range(0, 8, Access::Read)
        };
        assert_eq!(check(&expect), Err(Errno(libc::EAGAIN)));
        assert_eq!(
            check(&range(usize::MAX - 2, 8, Access::Read)),
            Err(Errno(libc::EFAULT))
        );
        // SAFETY: unmapping what was mapped above.
        unsafe {
            libc::munmap(rw as *mut libc::c_void, 2 * page);
            libc::munmap(ro as *mut libc::c_void, page);
        }
    }
}
