//! Per-architecture code: the thread pointer, how a sequence addresses
//! the rseq area, and the generated critical sections.
//!
//! The sequences themselves are not written here: `build.rs` generates
//! them from `asm/<arch>.rseq` (the single source of truth, which also
//! produces the C inline fast paths) into [`seq`]. Architectures without
//! a template get stand-ins that always abort, and [`SUPPORTED`] false.

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use x86_64::*;

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "aarch64")]
pub use aarch64::*;

#[cfg(target_arch = "x86")]
mod i386;
#[cfg(target_arch = "x86")]
pub use i386::*;

#[cfg(target_arch = "riscv64")]
mod riscv64;
#[cfg(target_arch = "riscv64")]
pub use riscv64::*;

#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "x86",
    target_arch = "riscv64"
)))]
mod unsupported;
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "x86",
    target_arch = "riscv64"
)))]
pub use unsupported::*;

/// The generated critical sections, one function per (family, memory
/// order, percpu mode). Each takes the area operand (see
/// [`area_operand`]), the address of the ownership word to check, the CPU
/// (or mm_cid) number, then the family's parameters, and returns 0
/// (committed), a positive early-exit code, or -1 (aborted).
#[allow(clippy::missing_safety_doc, clippy::too_many_arguments)]
pub mod seq {
    include!(concat!(env!("OUT_DIR"), "/sequences.rs"));
}
