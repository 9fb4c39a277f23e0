//! Build script: generates the critical sections (Rust and C) from the
//! templates in `asm/`, the C declarations of the exported functions with
//! cbindgen, compiles the small C part (the static-TLS area), and, with
//! the `capi` feature, sets the shared library's SONAME, `-z nodelete`
//! and the GNU linker.
//!
//! Generated headers land in `$OUT_DIR`; the committed copies under
//! `include/rseq/generated/` are refreshed by `make headers` and checked
//! against these by `tests/headers.rs`.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

#[path = "build/seqgen.rs"]
mod seqgen;

/// Architectures that have sequence templates.
const ARCHES: [&str; 4] = ["x86_64", "aarch64", "i386", "riscv64"];

/// The SONAME of the C library: a drop-in for librseq.
const SONAME: &str = "librseq.so.0";

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let target_arch = env::var("CARGO_CFG_TARGET_ARCH").expect("target arch");
    for path in [
        "asm",
        "build",
        "src/area.c",
        "src/capi",
        "include/rseq/thread-pointer.h",
        "cbindgen.toml",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }

    generate_sequences(&out, &target_arch);
    generate_declarations(&out);

    cc::Build::new()
        .file("src/area.c")
        .include("include")
        .flag_if_supported("-fno-strict-aliasing")
        .warnings(true)
        .extra_warnings(true)
        .compile("rseq_area");

    // Fault recovery for cpu_opv() (src/cpu_op/fault.rs). No
    // _FORTIFY_SOURCE: its longjmp check rejects a jump from a handler
    // running on an alternate signal stack.
    println!("cargo:rerun-if-changed=src/cpu_op/fault.c");
    cc::Build::new()
        .file("src/cpu_op/fault.c")
        .flag_if_supported("-U_FORTIFY_SOURCE")
        .warnings(true)
        .extra_warnings(true)
        .compile("rseq_fault");

    // The shared library exists only with the C API (the Makefile builds
    // it with `cargo rustc --crate-type cdylib,staticlib --features capi`).
    if env::var_os("CARGO_FEATURE_CAPI").is_some() {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{SONAME}");
        // The library's descriptors must outlive every thread whose
        // rseq_cs may point at them: never unload it.
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
        // GNU ld, not rustc's default rust-lld: lld's layout (the code
        // segment's file offset 0x1000 away from its address, and a probe
        // note of a discarded function left at address 0x45) makes perf
        // 6.1 and bpftrace 0.17 misplace the USDT uprobes (c-tests/
        // elf-check.sh and scenarios/usdt_perf.sh check it).
        println!("cargo:rustc-cdylib-link-arg=-fuse-ld=bfd");
    }
}

fn read(path: &str) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn generate_sequences(out: &Path, target_arch: &str) {
    let spec =
        seqgen::parse_spec(&read("asm/ops.spec")).unwrap_or_else(|e| panic!("asm/ops.spec: {e}"));
    let archs: Vec<seqgen::Arch> = ARCHES
        .iter()
        .map(|a| {
            let path = format!("asm/{a}.rseq");
            seqgen::parse_arch(&read(&path)).unwrap_or_else(|e| panic!("{path}: {e}"))
        })
        .collect();
    // An architecture file names its Rust target by `rust_cfg` (i386 is
    // Rust's "x86").
    let cfg = format!("target_arch = \"{target_arch}\"");
    let rust = match archs.iter().find(|a| a.rust_cfg == cfg) {
        Some(arch) => seqgen::emit_rust(arch, &spec),
        None => seqgen::emit_rust_unsupported(&spec),
    }
    .unwrap_or_else(|e| panic!("sequence generation: {e}"));
    fs::write(out.join("sequences.rs"), rust).expect("write sequences.rs");
    let c = seqgen::emit_c(&archs, &spec).unwrap_or_else(|e| panic!("sequence generation: {e}"));
    fs::write(out.join("sequences.h"), c).expect("write sequences.h");
}

/// One generated declaration header: which C-API files it declares.
struct Declarations {
    header: &'static str,
    guard: &'static str,
    sources: &'static [&'static str],
    about: &'static str,
}

const DECLARATIONS: [Declarations; 5] = [
    Declarations {
        header: "api.h",
        guard: "_RSEQ_GENERATED_API_H",
        sources: &["src/capi/thread.rs", "src/capi/cpu.rs"],
        about: "Functions the library always exports and the header never inlines.\n * Included by <rseq/rseq.h>; do not include directly.",
    },
    Declarations {
        header: "inline-api.h",
        guard: "_RSEQ_GENERATED_INLINE_API_H",
        sources: &["src/capi/accessors.rs", "src/capi/ops.rs"],
        about: "Exported functions that <rseq/rseq.h> also defines inline; declared\n * only when the inline definitions are not used (RSEQ_NO_INLINE, or an\n * architecture without inline sequences).\n * Included by <rseq/rseq.h>; do not include directly.",
    },
    Declarations {
        header: "cpu-op-api.h",
        guard: "_RSEQ_GENERATED_CPU_OP_API_H",
        sources: &["src/capi/cpu_op.rs"],
        about: "The cpu-op functions (always exported, never inlined).\n * Included by <rseq/cpu-op.h>; do not include directly.",
    },
    Declarations {
        header: "percpu-api.h",
        guard: "_RSEQ_GENERATED_PERCPU_API_H",
        sources: &["src/capi/percpu.rs"],
        about: "The percpu_* operations; <rseq/percpu-op.h> also defines them inline\n * and declares these only when the inline definitions are not used.\n * Included by <rseq/percpu-op.h>; do not include directly.",
    },
    Declarations {
        header: "mempool-api.h",
        guard: "_RSEQ_GENERATED_MEMPOOL_API_H",
        sources: &["src/capi/mempool.rs"],
        about: "The per-CPU memory pool functions (always exported, never inlined).\n * Included by <rseq/mempool.h>; do not include directly.",
    },
];

fn generate_declarations(out: &Path) {
    for d in DECLARATIONS {
        let mut config = cbindgen::Config::from_file("cbindgen.toml").expect("cbindgen.toml");
        config.include_guard = Some(d.guard.to_string());
        config.header = Some(format!(
            "/* SPDX-License-Identifier: MIT */\n/*\n * @generated by cbindgen from {}. Do not edit:\n * change the Rust code and run `make headers`.\n *\n * {}\n */",
            d.sources.join(", "),
            d.about
        ));
        let mut builder = cbindgen::Builder::new().with_config(config);
        for s in d.sources {
            builder = builder.with_src(s);
        }
        builder
            .generate()
            .unwrap_or_else(|e| panic!("cbindgen {}: {e}", d.header))
            .write_to_file(out.join(d.header));
    }
}
