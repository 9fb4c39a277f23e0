//! Restartable sequences (rseq) for Linux, with a CPU op vector.
//!
//! This crate is the implementation of `librseq.so.0`, a drop-in
//! replacement for the C library librseq and for libcpu-op (the user-space
//! half of the 2017 "Restartable sequences and CPU op vector" series). It
//! builds as a Rust library; with the `capi` feature (what `make` builds,
//! as a C shared library and static archive) it also exports the C API.
//!
//! # Safety of the Rust API
//!
//! Every safe function is sound for any argument. What takes raw
//! addresses is `unsafe` with its contract in a `# Safety` section: the
//! critical sections of [`ops`], [`cpu_op::opv`] and the cpu-op helpers.
//! The internals that could break the guarantees of the others (the data
//! symbols read by every critical section, the ownership table, the
//! per-architecture sequences) are crate-private; `tests/unsafe_api.rs`
//! checks that a `#![forbid(unsafe_code)]` program cannot reach them.
//!
//! The tree follows the architecture:
//!
//! - [`abi`]: the kernel ABI (struct layouts, flags, signatures, numbers);
//! - [`sys`]: thin system-call wrappers;
//! - [`registration`]: glibc-aware registration of threads, automatic
//!   registration, and the exported data symbols;
//! - [`cpu`]: possible CPUs and CPU-number accessors;
//! - `arch` (private): per-architecture code and the critical sections
//!   generated from `asm/`;
//! - `owner` (private): the per-CPU ownership words shared by sections and
//!   cpu-ops;
//! - [`ops`]: the critical-section operations;
//! - [`cpu_op`]: the CPU op vector engine;
//! - [`mempool`]: the per-CPU memory pool (`rseq_mempool_*`);
//! - [`percpu`]: safe per-CPU data structures (a counter);
//! - [`stats`]: slow-path counters;
//! - `capi` (feature `capi`): every exported C function, in one layer;
//!   `capi::interpose` (feature `interpose`, implies `capi`) the exported
//!   `pthread_create` that registers new threads before they start.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]
// The operations mirror librseq's C signatures, which take up to nine arguments.
#![allow(clippy::too_many_arguments)]
// Without the C API, some internals only it uses are unused.
#![cfg_attr(not(feature = "capi"), allow(dead_code))]

/// A USDT probe (`probe::probe!`), compiled out under Miri, which cannot
/// run the probe's inline assembly (the arguments are still evaluated).
macro_rules! usdt {
    ($provider:ident, $name:ident $(, $arg:expr)* $(,)?) => {{
        #[cfg(not(miri))]
        probe::probe!($provider, $name $(, $arg)*);
        #[cfg(miri)]
        {
            $(let _ = $arg;)*
        }
    }};
}

pub mod abi;
mod anchor;
pub(crate) mod arch;
#[cfg(feature = "capi")]
mod capi;
pub mod cpu;
pub mod cpu_op;
mod idle;
pub mod mempool;
pub mod ops;
pub(crate) mod owner;
pub mod percpu;
pub mod registration;
pub mod stats;
pub mod sys;

/// Generated headers, for the test that keeps the committed copies in
/// step with the code (`tests/headers.rs`).
#[doc(hidden)]
pub mod generated {
    /// The Rust sequences of the target architecture (`src/arch` includes
    /// them).
    pub const SEQUENCES_RS: &str = include_str!(concat!(env!("OUT_DIR"), "/sequences.rs"));
    /// `include/rseq/generated/sequences.h`.
    pub const SEQUENCES_H: &str = include_str!(concat!(env!("OUT_DIR"), "/sequences.h"));
    /// `include/rseq/generated/api.h`.
    pub const API_H: &str = include_str!(concat!(env!("OUT_DIR"), "/api.h"));
    /// `include/rseq/generated/inline-api.h`.
    pub const INLINE_API_H: &str = include_str!(concat!(env!("OUT_DIR"), "/inline-api.h"));
    /// `include/rseq/generated/cpu-op-api.h`.
    pub const CPU_OP_API_H: &str = include_str!(concat!(env!("OUT_DIR"), "/cpu-op-api.h"));
    /// `include/rseq/generated/percpu-api.h`.
    pub const PERCPU_API_H: &str = include_str!(concat!(env!("OUT_DIR"), "/percpu-api.h"));
    /// `include/rseq/generated/mempool-api.h`.
    pub const MEMPOOL_API_H: &str = include_str!(concat!(env!("OUT_DIR"), "/mempool-api.h"));
}
