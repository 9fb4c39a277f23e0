// SPDX-License-Identifier: MIT
//! Another Rust staticlib, linked next to librseq.a by static_archive.sh:
//! it brings its own copy of std (formatting, allocation, a caught panic),
//! so any Rust std symbol librseq.a left global would clash with it.

/// Formats `n` with std and returns its number of decimal digits; a
/// panic caught inside checks that this library's unwinder works too.
#[no_mangle]
pub extern "C" fn other_rust_digits(n: u64) -> u32 {
    let caught = std::panic::catch_unwind(|| {
        if n == u64::MAX {
            panic!("never");
        }
        format!("{n}").len() as u32
    });
    caught.unwrap_or(0)
}
