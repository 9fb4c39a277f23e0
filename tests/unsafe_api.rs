//! The safe Rust API cannot break memory safety: programs with
//! `#![forbid(unsafe_code)]` are compiled against this crate's rlib with
//! the `rustc` that built it. Each must-fail program uses something that
//! could write to arbitrary memory (`cpu_op::opv`, which takes raw
//! addresses; the data symbols every critical section reads; the
//! ownership table; the per-architecture sequences) and must be refused
//! with the expected error; a control program using the safe API must
//! compile, so that a failure is the API's and not the harness's.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The directory holding this test's dependencies (`target/<profile>/deps`).
fn deps_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent().expect("deps dir").to_path_buf()
}

/// The newest `librseq-*.rlib` in `deps`: the one this test was linked
/// with (cargo rebuilt it just before).
fn rlib(deps: &Path) -> PathBuf {
    std::fs::read_dir(deps)
        .expect("read deps")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("librseq-") && name.ends_with(".rlib")
        })
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .expect("no librseq-*.rlib next to the test binary")
}

/// Compiles `source` as a binary against the crate; returns (success,
/// compiler output).
fn compile(name: &str, source: &str) -> (bool, String) {
    let deps = deps_dir();
    let dir = std::env::temp_dir().join(format!("rseq-unsafe-api-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join(format!("{name}.rs"));
    std::fs::write(&src, source).unwrap();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc)
        .args([
            "--edition",
            "2021",
            "--crate-type",
            "bin",
            "--emit",
            "metadata",
        ])
        .arg("--crate-name")
        .arg(name)
        .arg("-L")
        .arg(format!("dependency={}", deps.display()))
        .arg("--extern")
        .arg(format!("rseq={}", rlib(&deps).display()))
        .arg("--out-dir")
        .arg(&dir)
        .arg(&src)
        .output()
        .expect("run rustc");
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), text)
}

const PRELUDE: &str = "#![forbid(unsafe_code)]\n";

#[test]
fn the_safe_api_compiles_under_forbid_unsafe_code() {
    let (ok, text) = compile(
        "safe_control",
        &format!(
            "{PRELUDE}
use rseq::cpu_op::{{self, CpuOp}};
use rseq::ops::PercpuMode;
fn main() {{
    let counter = rseq::percpu::Counter::new();
    counter.add(1);
    let _ = counter.sum();
    let _ = rseq::cpu::cpu_start();
    let _ = rseq::cpu::current_cpu();
    let _ = rseq::registration::offset();
    let _ = rseq::registration::register_current_thread();
    let _ = cpu_op::with_cpu(0, PercpuMode::CpuId, || 1);
    let _ = cpu_op::fence_target(0, PercpuMode::CpuId);
    let _ = CpuOp::add(8, 1, 8);
    let _ = rseq::stats::snapshot();
}}"
        ),
    );
    assert!(ok, "the safe API must compile:\n{text}");
}

/// Each case: a name, a body for `main`, and what the error must say.
const MUST_FAIL: &[(&str, &str, &str)] = &[
    (
        "opv_is_unsafe",
        "let v = 5u64;
         let op = rseq::cpu_op::CpuOp::add(&v as *const u64 as usize, 1, 8);
         let _ = rseq::cpu_op::opv(&[op], 0, 0);",
        "E0133",
    ),
    (
        "opv_in_unsafe_block_is_forbidden",
        "let _ = unsafe { rseq::cpu_op::opv(&[], 0, 0) };",
        "unsafe_code",
    ),
    (
        "rseq_offset_is_private",
        "rseq::registration::rseq_offset.store(64, std::sync::atomic::Ordering::Relaxed);",
        "private",
    ),
    (
        "rseq_size_is_private",
        "let _ = &rseq::registration::rseq_size;",
        "private",
    ),
    (
        "owner_table_is_private",
        "let _ = rseq::owner::slot(0);",
        "private",
    ),
    (
        "sequences_are_private",
        "let _ = rseq::arch::thread_pointer();",
        "private",
    ),
    (
        "sections_are_unsafe",
        "let _ = rseq::ops::load_add_store(rseq::ops::Mo::Relaxed,
             rseq::ops::PercpuMode::CpuId, 8 as *mut isize, 1, 0);",
        "E0133",
    ),
    (
        "cpu_op_helpers_are_unsafe",
        "let _ = rseq::cpu_op::addv(8 as *mut isize, 1, 0, rseq::ops::PercpuMode::CpuId);",
        "E0133",
    ),
];

#[test]
fn unsound_uses_do_not_compile() {
    let mut failures = Vec::new();
    for (name, body, expect) in MUST_FAIL {
        let (ok, text) = compile(name, &format!("{PRELUDE}fn main() {{ {body} }}\n"));
        if ok {
            failures.push(format!("{name}: compiled, must not"));
        } else if !text.contains(expect) {
            failures.push(format!("{name}: refused without `{expect}`:\n{text}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
