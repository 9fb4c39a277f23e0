//! Fuzz target: `rseq::cpu_op::opv()` (and the C `cpu_opv()`) with
//! arbitrary vectors over a sandbox, checked against a reference model.
//!
//! The sandbox is one mapping of five pages:
//!
//! ```text
//! [ buf: 2 pages, read-write ][ PROT_NONE ][ read-only ][ PROT_NONE ]
//! ```
//!
//! Every address of a decoded operation points into `buf`, the read-only
//! page, a PROT_NONE page, near NULL, or to a place no user mapping can be
//! (kernel half, non-canonical, wrapping around). A range that starts in
//! `buf` or the read-only page and runs past it ends in a PROT_NONE page,
//! so the model knows exactly which ranges are accessible.
//!
//! The model (plain Rust, from API.md 4.2/4.3, not from the library):
//! flags other than 0 and `CPU_OP_VEC_FLAG_MM_CID` -> EINVAL; more than 16
//! operations, an unknown op, a compare/memcpy longer than 4096, an
//! arithmetic length not 1/2/4/8, a shift by >= the width, or a total
//! length (MB excluded) over 4216 -> EINVAL; a target that is not a
//! possible CPU (an mm_cid >= the number of possible CPUs) -> EINVAL; no
//! operations -> 0; a non-empty range that cannot be read (compare a/b,
//! memcpy src) or written (memcpy dst, arithmetic p) -> EFAULT, or EAGAIN
//! if that range's expect_fault byte is non-zero, checking the operations
//! and their ranges in order; nothing changes on any error. Otherwise the
//! operations run in order on a copy of `buf`: compares of bytes (an empty
//! compare is "equal"), memmove, modular add, or/and/xor with the mask
//! truncated to the length, logical shifts, MB does nothing; a failing
//! compare returns its 1-based index and leaves earlier operations applied.
//! The result and the whole sandbox must match the model.
#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rseq::cpu_op::{self, CpuOp};

const PAGE: usize = 4096;
const BUF_LEN: usize = 2 * PAGE;
const OP_LEN_MAX: usize = 16;
const DATA_LEN_MAX: u64 = 4096;
const VEC_DATA_LEN_MAX: u64 = 4096 + 15 * 8;
const FLAG_MM_CID: i32 = 1;

const EINVAL: i32 = libc::EINVAL;
const EFAULT: i32 = libc::EFAULT;
const EAGAIN: i32 = libc::EAGAIN;

extern "C" {
    /// The C entry point of the same library (exported by the crate).
    fn cpu_opv(cpuopv: *mut CpuOp, cpuopcnt: libc::c_int, cpu: libc::c_int, flags: libc::c_int)
        -> libc::c_int;
}

struct Sandbox {
    base: usize,
    /// Possible CPUs, from sysfs (the model's own reading).
    possible: Vec<bool>,
}

impl Sandbox {
    fn buf(&self) -> usize {
        self.base
    }
    fn none1(&self) -> usize {
        self.base + BUF_LEN
    }
    fn ro(&self) -> usize {
        self.base + BUF_LEN + PAGE
    }
}

fn ro_byte(i: usize) -> u8 {
    (i as u8).wrapping_mul(7).wrapping_add(3)
}

fn parse_cpu_list(s: &str) -> Vec<bool> {
    let mut v = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()),
            None => {
                let a = part.parse::<usize>().unwrap();
                (a, a)
            }
        };
        if v.len() <= hi {
            v.resize(hi + 1, false);
        }
        for c in lo..=hi {
            v[c] = true;
        }
    }
    v
}

fn sandbox() -> &'static Sandbox {
    static SB: OnceLock<Sandbox> = OnceLock::new();
    SB.get_or_init(|| {
        assert_eq!(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }, PAGE as libc::c_long);
        // SAFETY: a fresh anonymous mapping.
        let base = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                BUF_LEN + 3 * PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(base != libc::MAP_FAILED);
        let base = base as usize;
        let sb = Sandbox {
            base,
            possible: parse_cpu_list(
                &std::fs::read_to_string("/sys/devices/system/cpu/possible")
                    .expect("/sys/devices/system/cpu/possible"),
            ),
        };
        // SAFETY: pages of the mapping above.
        unsafe {
            for i in 0..PAGE {
                *((sb.ro() + i) as *mut u8) = ro_byte(i);
            }
            assert_eq!(libc::mprotect(sb.none1() as *mut _, PAGE, libc::PROT_NONE), 0);
            assert_eq!(libc::mprotect(sb.ro() as *mut _, PAGE, libc::PROT_READ), 0);
            assert_eq!(
                libc::mprotect((sb.ro() + PAGE) as *mut _, PAGE, libc::PROT_NONE),
                0
            );
        }
        sb
    })
}

/// Reads the input; bytes past its end read as 0.
struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        (self.u32() as u64) | ((self.u32() as u64) << 32)
    }
}

/// An address in one of the sandbox's regions (or a bad one).
fn address(sb: &Sandbox, region: u8, off: u16, first: u64) -> u64 {
    let off = off as usize;
    (match region % 10 {
        0..=2 => sb.buf() + off % BUF_LEN,
        // Relative to the first address: same offset or one page apart,
        // so that compares find equal bytes.
        3 => {
            let rel = (first as usize).wrapping_sub(sb.buf());
            if rel < BUF_LEN {
                sb.buf() + (rel + (off & 1) * PAGE + (off >> 1) % 3 * 256) % BUF_LEN
            } else {
                sb.buf() + off % BUF_LEN
            }
        }
        4 => sb.ro() + off % PAGE,
        5 => sb.none1() + off % PAGE,
        6 => off % PAGE,
        7 => match off % 4 {
            0 => usize::MAX - off as usize % PAGE,
            1 => 0xffff_8000_0000_0000 + off,
            2 => 0x8000_0000_0000_0000 + off,
            _ => 0x0000_8000_0000_0000 - 8 + off % 8,
        },
        8 => sb.buf() + BUF_LEN - 1 - off % 16,
        _ => sb.ro() + PAGE - 1 - off % 16,
    }) as u64
}

fn op_len(sel: u8, raw: u16) -> u32 {
    match sel % 16 {
        0 => 0,
        1 => 1,
        2 => 2,
        3 => 3,
        4 => 4,
        5 | 12 => 8,
        6 => 16,
        7 => raw as u32 % 4097,
        8 => 4096,
        9 => 4097,
        10 => raw as u32,
        11 => u32::MAX - raw as u32 % 4,
        13 => 1 << (raw % 4),
        _ => raw as u32 % 64,
    }
}

/// The decoded fields of one operation (what the model reads).
#[derive(Clone, Copy, Debug)]
struct Decoded {
    op: i32,
    len: u32,
    a0: u64,
    a1: u64,
    value: u64,
    bits: u32,
    ef0: u8,
    ef1: u8,
}

fn encode(d: &Decoded, garbage: u8) -> CpuOp {
    // v12 layout of the union (offsets from the start of `arg`).
    let mut arg = [garbage; 24];
    match d.op {
        3..=6 => {
            arg[0..8].copy_from_slice(&d.a0.to_ne_bytes());
            arg[8..16].copy_from_slice(&d.value.to_ne_bytes());
            arg[16] = d.ef0;
        }
        7 | 8 => {
            arg[0..8].copy_from_slice(&d.a0.to_ne_bytes());
            arg[8..12].copy_from_slice(&d.bits.to_ne_bytes());
            arg[12] = d.ef0;
        }
        9 => {}
        _ => {
            arg[0..8].copy_from_slice(&d.a0.to_ne_bytes());
            arg[8..16].copy_from_slice(&d.a1.to_ne_bytes());
            arg[16] = d.ef0;
            arg[17] = d.ef1;
        }
    }
    CpuOp {
        op: d.op,
        len: d.len,
        arg,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Done(usize),
    Error(i32),
}

struct Model<'a> {
    sb: &'a Sandbox,
    buf: Vec<u8>,
}

impl Model<'_> {
    /// Whether `[addr, addr + len)` lies entirely in memory that allows the
    /// access.
    fn accessible(&self, addr: u64, len: u64, write: bool) -> bool {
        if len == 0 {
            return true;
        }
        let Some(end) = addr.checked_add(len) else {
            return false;
        };
        let (buf, ro) = (self.sb.buf() as u64, self.sb.ro() as u64);
        if addr >= buf && end <= buf + BUF_LEN as u64 {
            return true;
        }
        !write && addr >= ro && end <= ro + PAGE as u64
    }

    fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        if len == 0 {
            return Vec::new();
        }
        let (buf, ro) = (self.sb.buf() as u64, self.sb.ro() as u64);
        if addr >= buf && addr < buf + BUF_LEN as u64 {
            let o = (addr - buf) as usize;
            self.buf[o..o + len].to_vec()
        } else {
            let o = (addr - ro) as usize;
            (o..o + len).map(ro_byte).collect()
        }
    }

    fn write(&mut self, addr: u64, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let o = (addr - self.sb.buf() as u64) as usize;
        self.buf[o..o + bytes.len()].copy_from_slice(bytes);
    }

    fn run(&mut self, ops: &[Decoded], cpu: i32, flags: i32) -> Outcome {
        if flags & !FLAG_MM_CID != 0 {
            return Outcome::Error(EINVAL);
        }
        if ops.len() > OP_LEN_MAX {
            return Outcome::Error(EINVAL);
        }
        let mut total: u64 = 0;
        for d in ops {
            let len = d.len as u64;
            match d.op {
                0..=2 if len > DATA_LEN_MAX => return Outcome::Error(EINVAL),
                0..=2 => {}
                3..=6 if !matches!(len, 1 | 2 | 4 | 8) => return Outcome::Error(EINVAL),
                3..=6 => {}
                7 | 8 if !matches!(len, 1 | 2 | 4 | 8) || d.bits as u64 >= 8 * len => {
                    return Outcome::Error(EINVAL)
                }
                7 | 8 => {}
                9 => continue,
                _ => return Outcome::Error(EINVAL),
            }
            total += len;
        }
        if total > VEC_DATA_LEN_MAX {
            return Outcome::Error(EINVAL);
        }
        let target_ok = if flags & FLAG_MM_CID != 0 {
            cpu >= 0 && (cpu as usize) < self.sb.possible.len()
        } else {
            cpu >= 0 && self.sb.possible.get(cpu as usize).copied().unwrap_or(false)
        };
        if !target_ok {
            return Outcome::Error(EINVAL);
        }
        if ops.is_empty() {
            return Outcome::Done(0);
        }
        for d in ops {
            let len = d.len as u64;
            // (address, writable, expect_fault) in the kernel's order.
            let ranges: &[(u64, bool, u8)] = match d.op {
                0 | 1 => &[(d.a0, false, d.ef0), (d.a1, false, d.ef1)],
                2 => &[(d.a0, true, d.ef0), (d.a1, false, d.ef1)],
                3..=8 => &[(d.a0, true, d.ef0)],
                _ => &[],
            };
            for &(addr, write, ef) in ranges {
                if !self.accessible(addr, len, write) {
                    return Outcome::Error(if ef != 0 { EAGAIN } else { EFAULT });
                }
            }
        }
        for (i, d) in ops.iter().enumerate() {
            let len = d.len as usize;
            match d.op {
                0 | 1 => {
                    let equal = self.read(d.a0, len) == self.read(d.a1, len);
                    if equal != (d.op == 0) {
                        return Outcome::Done(i + 1);
                    }
                }
                2 => {
                    let src = self.read(d.a1, len);
                    self.write(d.a0, &src);
                }
                3..=8 => {
                    let mut b = [0u8; 8];
                    b[..len].copy_from_slice(&self.read(d.a0, len));
                    let x = u64::from_le_bytes(b);
                    let y = match d.op {
                        3 => x.wrapping_add(d.value),
                        4 => x | d.value,
                        5 => x & d.value,
                        6 => x ^ d.value,
                        7 => x << d.bits,
                        _ => x >> d.bits,
                    };
                    let out = y.to_le_bytes();
                    self.write(d.a0, &out[..len]);
                }
                _ => {}
            }
        }
        Outcome::Done(0)
    }
}

/// Outcome counts, printed every 2^16 runs when `CPU_OPV_FUZZ_STATS` is
/// set: done (all ops ran), compare failed, EINVAL, EFAULT, EAGAIN, other.
static STATS: [AtomicU64; 6] = [const { AtomicU64::new(0) }; 6];

fn record(o: &Outcome) {
    let i = match o {
        Outcome::Done(0) => 0,
        Outcome::Done(_) => 1,
        Outcome::Error(EINVAL) => 2,
        Outcome::Error(EFAULT) => 3,
        Outcome::Error(EAGAIN) => 4,
        Outcome::Error(_) => 5,
    };
    let n = STATS[i].fetch_add(1, Ordering::Relaxed);
    static SHOW: OnceLock<bool> = OnceLock::new();
    let total: u64 = STATS.iter().map(|s| s.load(Ordering::Relaxed)).sum();
    if total % 65536 == 0 && *SHOW.get_or_init(|| std::env::var_os("CPU_OPV_FUZZ_STATS").is_some()) {
        let s: Vec<u64> = STATS.iter().map(|s| s.load(Ordering::Relaxed)).collect();
        eprintln!(
            "cpu_opv stats after {total} runs: done {} compare-failed {} EINVAL {} EFAULT {} EAGAIN {} other {}",
            s[0], s[1], s[2], s[3], s[4], s[5]
        );
    }
    let _ = n;
}

fuzz_target!(|data: &[u8]| {
    let sb = sandbox();
    let mut inp = Input { data, pos: 0 };
    let n = (inp.u8() % 18) as usize;
    let cpu_sel = inp.u8();
    let flags_sel = inp.u8();
    let seed = inp.u8();
    let period_sel = inp.u8();

    // SAFETY: sched_getcpu has no preconditions.
    let cur = unsafe { libc::sched_getcpu() };
    let nposs = sb.possible.len().max(1) as i32;
    let cpu = match cpu_sel % 8 {
        0..=4 => cur,
        5 => (cur + 1) % nposs,
        6 => inp.u8() as i8 as i32,
        _ => inp.u32() as i32,
    };
    let flags = match flags_sel % 16 {
        0..=11 => 0,
        12 | 13 => FLAG_MM_CID,
        14 => 2,
        _ => inp.u32() as i32,
    };

    let mut decoded = Vec::with_capacity(n);
    let mut ops = Vec::with_capacity(n);
    for _ in 0..n {
        let op_sel = inp.u8();
        let len_sel = inp.u8();
        let len_raw = inp.u16();
        let r0 = inp.u8();
        let o0 = inp.u16();
        let r1 = inp.u8();
        let o1 = inp.u16();
        let value = inp.u64();
        let ef = inp.u8();
        let garbage = inp.u8();
        let op = match op_sel % 14 {
            v @ 0..=9 => v as i32,
            10 => -1,
            11 => 10,
            12 => i32::MIN,
            _ => 11 + op_sel as i32,
        };
        let len = op_len(len_sel, len_raw);
        let a0 = address(sb, r0, o0, 0);
        let a1 = address(sb, r1, o1, a0);
        let bits = if ef & 0x80 != 0 {
            value as u32
        } else {
            (value as u32) % 66
        };
        let d = Decoded {
            op,
            len,
            a0,
            a1,
            value,
            bits,
            ef0: (ef & 1) * (1 + (ef >> 4 & 3)),
            ef1: (ef >> 1 & 1) * (1 + (ef >> 6 & 1)),
        };
        ops.push(encode(&d, garbage));
        decoded.push(d);
    }

    // Known content: a repeating pattern (period 1 makes every compare of
    // `buf` equal; period 4096 makes the two pages equal).
    let period = [1usize, 2, 8, 64, 256, 4096][period_sel as usize % 6];
    let initial: Vec<u8> = (0..BUF_LEN)
        .map(|i| ((i % period) as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    // SAFETY: buf is the sandbox's read-write pages.
    let buf = unsafe { core::slice::from_raw_parts_mut(sb.buf() as *mut u8, BUF_LEN) };
    buf.copy_from_slice(&initial);

    let mut model = Model {
        sb,
        buf: initial.clone(),
    };
    let expected = model.run(&decoded, cpu, flags);

    let via_c = period_sel & 0x80 != 0;
    let got = if via_c {
        // SAFETY: the vector is valid memory of ops.len() operations.
        let r = unsafe { cpu_opv(ops.as_mut_ptr(), ops.len() as libc::c_int, cpu, flags) };
        if r < 0 {
            Outcome::Error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        } else {
            Outcome::Done(r as usize)
        }
    } else {
        // SAFETY: the vector's addresses point into this target's own
        // buffers (or are meant to fault, which opv reports).
        match unsafe { cpu_op::opv(&ops, cpu, flags) } {
            Ok(i) => Outcome::Done(i),
            Err(e) => Outcome::Error(e.0),
        }
    };

    record(&expected);
    let first_diff = buf.iter().zip(&model.buf).position(|(a, b)| a != b);
    // SAFETY: the read-only page stays readable.
    let ro_changed = (0..PAGE).find(|&i| unsafe { *((sb.ro() + i) as *const u8) } != ro_byte(i));
    if got != expected || first_diff.is_some() || ro_changed.is_some() {
        let offsets: Vec<String> = decoded
            .iter()
            .map(|d| {
                let rel = |a: u64| {
                    let a = a as usize;
                    if a.wrapping_sub(sb.buf()) < BUF_LEN {
                        format!("buf+{}", a - sb.buf())
                    } else if a.wrapping_sub(sb.none1()) < 3 * PAGE {
                        format!("none1+{}", a - sb.none1())
                    } else {
                        format!("{a:#x}")
                    }
                };
                format!(
                    "op {} len {} a0 {} a1 {} value {:#x} bits {} ef {}/{}",
                    d.op,
                    d.len,
                    rel(d.a0),
                    rel(d.a1),
                    d.value,
                    d.bits,
                    d.ef0,
                    d.ef1
                )
            })
            .collect();
        panic!(
            "model mismatch ({}): cpu {cpu} flags {flags:#x} ops {}:\n  {}\n\
             expected {expected:?}, got {got:?}; first differing buf byte {first_diff:?} \
             (library {:?}, model {:?}); read-only page changed at {ro_changed:?}",
            if via_c { "C cpu_opv" } else { "rseq::cpu_op::opv" },
            decoded.len(),
            offsets.join("\n  "),
            first_diff.map(|i| buf[i]),
            first_diff.map(|i| model.buf[i]),
        );
    }
});
