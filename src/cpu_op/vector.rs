//! The CPU op vector ABI (`<linux/cpu_opv.h>`, v12 numbering) and its
//! validation.
//!
//! Everything here is pure logic over a copy of the caller's vector: no
//! memory of the caller is touched, so it runs under Miri. Checking that
//! the addresses can be accessed is [`super::access`]'s job; running the
//! operations is `engine`'s.

use crate::sys::Errno;

/// Most operations in one vector (`CPU_OP_VEC_LEN_MAX`).
pub const CPU_OP_VEC_LEN_MAX: usize = 16;
/// Size of an operation's argument union (`CPU_OP_ARG_LEN_MAX`).
pub const CPU_OP_ARG_LEN_MAX: usize = 24;
/// Most bytes one compare or memcpy may cover (`CPU_OP_DATA_LEN_MAX`).
pub const CPU_OP_DATA_LEN_MAX: u32 = 4096;
/// Most bytes all operations of a vector may cover together
/// (`CPU_OP_VEC_DATA_LEN_MAX`: one maximal memcpy plus 15 words).
pub const CPU_OP_VEC_DATA_LEN_MAX: u32 = 4096 + 15 * 8;
/// `cpu_opv()` flag: `cpu` is an mm_cid, the vector is atomic with respect
/// to MM_CID-mode critical sections on that id (an extension of v12).
pub const CPU_OP_VEC_FLAG_MM_CID: i32 = 1;

/// Operation types, v12 numbering (the ABI).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum OpType {
    /// Compare `len` bytes at `a` and `b`; the vector stops if they differ.
    CompareEq = 0,
    /// Compare `len` bytes at `a` and `b`; the vector stops if they are equal.
    CompareNe = 1,
    /// Copy `len` bytes from `src` to `dst`.
    Memcpy = 2,
    /// `*p += count` on a `len`-byte integer (modular).
    Add = 3,
    /// `*p |= mask` on a `len`-byte integer.
    Or = 4,
    /// `*p &= mask` on a `len`-byte integer.
    And = 5,
    /// `*p ^= mask` on a `len`-byte integer.
    Xor = 6,
    /// `*p <<= bits` on a `len`-byte integer.
    Lshift = 7,
    /// `*p >>= bits` (logical) on a `len`-byte integer.
    Rshift = 8,
    /// A full memory barrier between the operations around it.
    Mb = 9,
}

impl OpType {
    /// The type of a raw `op` value.
    pub fn from_raw(op: i32) -> Option<OpType> {
        Some(match op {
            0 => OpType::CompareEq,
            1 => OpType::CompareNe,
            2 => OpType::Memcpy,
            3 => OpType::Add,
            4 => OpType::Or,
            5 => OpType::And,
            6 => OpType::Xor,
            7 => OpType::Lshift,
            8 => OpType::Rshift,
            9 => OpType::Mb,
            _ => return None,
        })
    }
}

/// One operation (`struct cpu_op`): 32 bytes, 8-byte aligned.
///
/// The argument union is kept as raw bytes and read through the accessors
/// below, which know the v12 layout of every operation type.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuOp {
    /// The [`OpType`], as an integer.
    pub op: i32,
    /// Length in bytes of the data the operation covers.
    pub len: u32,
    /// The argument union.
    pub arg: [u8; CPU_OP_ARG_LEN_MAX],
}

const _: () = assert!(core::mem::size_of::<CpuOp>() == 32);
const _: () = assert!(core::mem::align_of::<CpuOp>() == 8);

impl CpuOp {
    fn u64_at(&self, off: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.arg[off..off + 8]);
        u64::from_ne_bytes(b)
    }
    fn set_u64_at(&mut self, off: usize, v: u64) {
        self.arg[off..off + 8].copy_from_slice(&v.to_ne_bytes());
    }
    /// First address: compare `a`, memcpy `dst`, or the operand `p`.
    pub fn addr0(&self) -> usize {
        self.u64_at(0) as usize
    }
    /// Second address: compare `b` or memcpy `src`.
    pub fn addr1(&self) -> usize {
        self.u64_at(8) as usize
    }
    /// `count` of an add.
    pub fn count(&self) -> i64 {
        self.u64_at(8) as i64
    }
    /// `mask` of or/and/xor.
    pub fn mask(&self) -> u64 {
        self.u64_at(8)
    }
    /// `bits` of a shift.
    pub fn bits(&self) -> u32 {
        u32::from_ne_bytes([self.arg[8], self.arg[9], self.arg[10], self.arg[11]])
    }
    /// `expect_fault` flag of the first address.
    pub fn expect_fault0(&self) -> bool {
        match OpType::from_raw(self.op) {
            Some(OpType::Lshift | OpType::Rshift) => self.arg[12] != 0,
            _ => self.arg[16] != 0,
        }
    }
    /// `expect_fault` flag of the second address.
    pub fn expect_fault1(&self) -> bool {
        self.arg[17] != 0
    }

    fn with(op: OpType, len: u32) -> CpuOp {
        CpuOp {
            op: op as i32,
            len,
            arg: [0; CPU_OP_ARG_LEN_MAX],
        }
    }
    /// A compare of `len` bytes at `a` and `b`.
    pub fn compare(eq: bool, a: usize, b: usize, len: u32) -> CpuOp {
        let mut o = CpuOp::with(
            if eq {
                OpType::CompareEq
            } else {
                OpType::CompareNe
            },
            len,
        );
        o.set_u64_at(0, a as u64);
        o.set_u64_at(8, b as u64);
        o
    }
    /// A copy of `len` bytes from `src` to `dst`.
    pub fn memcpy(dst: usize, src: usize, len: u32) -> CpuOp {
        let mut o = CpuOp::with(OpType::Memcpy, len);
        o.set_u64_at(0, dst as u64);
        o.set_u64_at(8, src as u64);
        o
    }
    /// `*p += count` on `len` bytes.
    pub fn add(p: usize, count: i64, len: u32) -> CpuOp {
        let mut o = CpuOp::with(OpType::Add, len);
        o.set_u64_at(0, p as u64);
        o.set_u64_at(8, count as u64);
        o
    }
    /// A bitwise or/and/xor of `mask` into `len` bytes at `p`.
    pub fn bitwise(op: OpType, p: usize, mask: u64, len: u32) -> CpuOp {
        let mut o = CpuOp::with(op, len);
        o.set_u64_at(0, p as u64);
        o.set_u64_at(8, mask);
        o
    }
    /// A shift of `len` bytes at `p` by `bits`.
    pub fn shift(op: OpType, p: usize, bits: u32, len: u32) -> CpuOp {
        let mut o = CpuOp::with(op, len);
        o.set_u64_at(0, p as u64);
        o.arg[8..12].copy_from_slice(&bits.to_ne_bytes());
        o
    }
    /// A full memory barrier.
    pub fn mb() -> CpuOp {
        CpuOp::with(OpType::Mb, 0)
    }
    /// Sets the `expect_fault` flags (first and second address).
    pub fn expect_faults(mut self, first: bool, second: bool) -> CpuOp {
        match OpType::from_raw(self.op) {
            Some(OpType::Lshift | OpType::Rshift) => self.arg[12] = first as u8,
            _ => {
                self.arg[16] = first as u8;
                self.arg[17] = second as u8;
            }
        }
        self
    }
}

/// How an operation accesses one address range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The range is read.
    Read,
    /// The range is written (and, for arithmetic, read).
    Write,
}

/// One address range an operation touches, in the order the kernel checked
/// them (memcpy: destination first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    /// First byte.
    pub addr: usize,
    /// Length in bytes.
    pub len: usize,
    /// Read or write.
    pub access: Access,
    /// Report EAGAIN instead of EFAULT when the range cannot be accessed.
    pub expect_fault: bool,
}

/// The address ranges of a validated operation.
pub fn ranges(op: &CpuOp) -> ([Option<Range>; 2], usize) {
    let len = op.len as usize;
    let r = |addr, access, expect_fault| {
        Some(Range {
            addr,
            len,
            access,
            expect_fault,
        })
    };
    match OpType::from_raw(op.op) {
        Some(OpType::CompareEq | OpType::CompareNe) => (
            [
                r(op.addr0(), Access::Read, op.expect_fault0()),
                r(op.addr1(), Access::Read, op.expect_fault1()),
            ],
            2,
        ),
        Some(OpType::Memcpy) => (
            [
                r(op.addr0(), Access::Write, op.expect_fault0()),
                r(op.addr1(), Access::Read, op.expect_fault1()),
            ],
            2,
        ),
        Some(OpType::Mb) | None => ([None, None], 0),
        Some(_) => ([r(op.addr0(), Access::Write, op.expect_fault0()), None], 1),
    }
}

/// Validates a vector as the kernel did, before anything runs: every
/// operation known, every length allowed, shifts in range, and the total
/// data length within [`CPU_OP_VEC_DATA_LEN_MAX`]. EINVAL otherwise.
pub fn validate(ops: &[CpuOp]) -> Result<(), Errno> {
    let einval = Err(Errno(libc::EINVAL));
    if ops.len() > CPU_OP_VEC_LEN_MAX {
        return einval;
    }
    let mut total: u32 = 0;
    for op in ops {
        let Some(kind) = OpType::from_raw(op.op) else {
            return einval;
        };
        match kind {
            OpType::CompareEq | OpType::CompareNe | OpType::Memcpy => {
                if op.len > CPU_OP_DATA_LEN_MAX {
                    return einval;
                }
            }
            OpType::Add | OpType::Or | OpType::And | OpType::Xor => {
                if !matches!(op.len, 1 | 2 | 4 | 8) {
                    return einval;
                }
            }
            OpType::Lshift | OpType::Rshift => {
                if !matches!(op.len, 1 | 2 | 4 | 8) || op.bits() >= op.len * 8 {
                    return einval;
                }
            }
            OpType::Mb => continue,
        }
        total = total.saturating_add(op.len);
        if total > CPU_OP_VEC_DATA_LEN_MAX {
            return einval;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_v12() {
        let op = CpuOp::compare(true, 0x1111, 0x2222, 8).expect_faults(true, false);
        // SAFETY: CpuOp is plain old data of 32 bytes.
        let bytes: [u8; 32] = unsafe { core::mem::transmute(op) };
        assert_eq!(i32::from_ne_bytes(bytes[0..4].try_into().unwrap()), 0);
        assert_eq!(u32::from_ne_bytes(bytes[4..8].try_into().unwrap()), 8);
        assert_eq!(u64::from_ne_bytes(bytes[8..16].try_into().unwrap()), 0x1111);
        assert_eq!(
            u64::from_ne_bytes(bytes[16..24].try_into().unwrap()),
            0x2222
        );
        assert_eq!((bytes[24], bytes[25]), (1, 0));
        let s = CpuOp::shift(OpType::Rshift, 0x10, 5, 4).expect_faults(true, false);
        // SAFETY: as above.
        let bytes: [u8; 32] = unsafe { core::mem::transmute(s) };
        assert_eq!(u32::from_ne_bytes(bytes[16..20].try_into().unwrap()), 5);
        assert_eq!(bytes[20], 1, "shift expect_fault_p sits after bits");
        assert!(s.expect_fault0());
    }

    #[test]
    fn validation_matches_the_kernel() {
        let buf = 0x1000usize;
        assert_eq!(validate(&[]), Ok(()));
        assert_eq!(validate(&[CpuOp::mb(); 16]), Ok(()));
        assert!(validate(&[CpuOp::mb(); 17]).is_err());
        assert!(validate(&[CpuOp {
            op: -1,
            ..CpuOp::mb()
        }])
        .is_err());
        assert!(validate(&[CpuOp {
            op: 10,
            ..CpuOp::mb()
        }])
        .is_err());
        assert_eq!(validate(&[CpuOp::memcpy(buf, buf, 4096)]), Ok(()));
        assert!(validate(&[CpuOp::memcpy(buf, buf, 4097)]).is_err());
        assert!(validate(&[CpuOp::memcpy(buf, buf, 65537)]).is_err());
        assert!(validate(&[CpuOp::memcpy(buf, buf, 4096), CpuOp::memcpy(buf, buf, 4096)]).is_err());
        let mut max = vec![CpuOp::memcpy(buf, buf, 4096)];
        max.extend(std::iter::repeat_n(CpuOp::add(buf, 1, 8), 15));
        assert_eq!(validate(&max), Ok(()));
        max[1] = CpuOp::memcpy(buf, buf, 9);
        assert!(validate(&max).is_err());
        for len in [1, 2, 4, 8] {
            assert_eq!(validate(&[CpuOp::add(buf, 1, len)]), Ok(()));
            assert_eq!(
                validate(&[CpuOp::shift(OpType::Lshift, buf, len * 8 - 1, len)]),
                Ok(())
            );
            assert!(validate(&[CpuOp::shift(OpType::Lshift, buf, len * 8, len)]).is_err());
        }
        for len in [0, 3, 5, 16] {
            assert!(validate(&[CpuOp::add(buf, 1, len)]).is_err());
            assert!(validate(&[CpuOp::bitwise(OpType::Xor, buf, 1, len)]).is_err());
        }
    }

    #[test]
    fn ranges_follow_the_kernel_order() {
        let (r, n) = ranges(&CpuOp::memcpy(0x10, 0x20, 4).expect_faults(false, true));
        assert_eq!(n, 2);
        assert_eq!(r[0].unwrap().access, Access::Write);
        assert_eq!(r[0].unwrap().addr, 0x10);
        assert!(r[1].unwrap().expect_fault);
        assert_eq!(ranges(&CpuOp::mb()).1, 0);
        assert_eq!(
            ranges(&CpuOp::add(0x30, 1, 8)).0[0].unwrap().access,
            Access::Write
        );
    }
}
