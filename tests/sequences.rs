//! The C inline sections of `<rseq/rseq.h>` and the library's own Rust
//! sections are the same machine code: both come from one template per
//! architecture (`asm/`), and this test checks the generated texts
//! instruction by instruction, with the operand syntax of each language
//! translated back to the template's.

use std::collections::BTreeMap;

/// The C block of the architecture this test runs on.
fn c_arch_guard() -> Option<&'static str> {
    if cfg!(target_arch = "x86_64") {
        Some("defined(__x86_64__)")
    } else if cfg!(target_arch = "aarch64") {
        Some("defined(__aarch64__)")
    } else if cfg!(target_arch = "x86") {
        Some("defined(__i386__)")
    } else if cfg!(target_arch = "riscv64") {
        Some("defined(__riscv) && __riscv_xlen == 64")
    } else {
        None
    }
}

fn unquote(line: &str) -> Option<String> {
    let t = line.trim();
    let inner = t.strip_prefix('"')?;
    let end = inner.rfind('"')?;
    Some(inner[..end].replace("\\\"", "\"").replace("\\\\", "\\"))
}

/// Rust: `pub unsafe fn NAME(` ... the string lines of `asm!(`.
fn rust_sections(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        let Some(rest) = l.strip_prefix("pub unsafe fn ") else {
            continue;
        };
        let name = rest.split('(').next().unwrap().to_string();
        let mut body = Vec::new();
        for l in lines.by_ref() {
            if l.trim() == "core::arch::asm!(" {
                continue;
            }
            match unquote(l) {
                Some(s) if l.trim_end().ends_with("\",") => body.push(normalize(&s)),
                _ if body.is_empty() => continue,
                _ => break,
            }
        }
        out.insert(name, body);
    }
    out
}

/// The architecture blocks of the generated C header: (guard, text from
/// the guard line to the next block or to the end of the last one).
fn c_arch_blocks(text: &str) -> Vec<(&str, &str)> {
    const MARK: &str = "\n#define RSEQ_ARCH_HAS_SEQUENCES 1\n";
    let mut starts = Vec::new();
    let mut from = 0;
    while let Some(p) = text[from..].find(MARK) {
        let mark = from + p;
        let line = text[..mark].rfind('\n').map_or(0, |n| n + 1);
        let guard = text[line..mark]
            .strip_prefix("#if ")
            .or_else(|| text[line..mark].strip_prefix("#elif "))
            .expect("an arch guard line");
        starts.push((line, guard));
        from = mark + MARK.len();
    }
    // The last block ends with its `#endif`, before the public API.
    let last_end = text
        .find("\n#if defined(RSEQ_ARCH_HAS_SEQUENCES) && !defined(RSEQ_NO_INLINE)")
        .expect("end of the arch blocks");
    let mut out = Vec::new();
    for (i, &(start, guard)) in starts.iter().enumerate() {
        let end = starts.get(i + 1).map_or(last_end, |&(s, _)| s);
        out.push((guard, &text[start..end]));
    }
    out
}

/// The C block of one architecture.
fn c_arch_block<'a>(text: &'a str, guard: &str) -> &'a str {
    c_arch_blocks(text)
        .into_iter()
        .find(|(g, _)| *g == guard)
        .map(|(_, b)| b)
        .expect("arch block")
}

/// C: `rseq_arch_NAME(` ... the string lines of `asm goto (`.
fn c_sections(text: &str, guard: &str) -> BTreeMap<String, Vec<String>> {
    let block = c_arch_block(text, guard);
    let mut out = BTreeMap::new();
    let mut lines = block.lines();
    while let Some(l) = lines.next() {
        let Some(rest) = l.strip_prefix("rseq_arch_") else {
            continue;
        };
        let name = rest.split('(').next().unwrap().to_string();
        let mut body = Vec::new();
        for l in lines.by_ref() {
            if l.contains("__asm__") {
                break;
            }
        }
        // The C-only lines: injection points (empty unless a test program
        // defines RSEQ_INJECT_ASM) and the RSEQ_COMPARE_TWICE block, both
        // absent from a default build.
        let mut twice = false;
        for l in lines.by_ref() {
            let t = l.trim();
            if t == "#ifdef RSEQ_COMPARE_TWICE" {
                twice = true;
                continue;
            }
            if t == "#endif" && twice {
                twice = false;
                continue;
            }
            if twice || t.starts_with("RSEQ_INJECT_ASM(") {
                continue;
            }
            match unquote(l) {
                Some(s) => body.push(s.trim_end_matches("\\n").to_string()),
                None => break,
            }
        }
        // The memory operands (`[v] "m" (*v)`): `%[v]` in the C text is
        // `({v})` in the template, whose Rust sections take registers.
        let mut mem = Vec::new();
        for l in lines.by_ref() {
            let t = l.trim().trim_start_matches(':').trim();
            if t.starts_with(");") {
                break;
            }
            if let Some((op, rest)) = t.strip_prefix('[').and_then(|r| r.split_once(']')) {
                if rest.trim_start().starts_with("\"m\"") {
                    mem.push(op.to_string());
                }
            }
        }
        let body = body
            .iter()
            .map(|s| {
                let mut s = s.clone();
                for m in &mem {
                    s = s.replace(&format!("%[{m}]"), &format!("(%[{m}])"));
                }
                normalize(&c_to_template(&s))
            })
            .collect();
        out.insert(name, body);
    }
    out
}

/// `%[x]` -> `{x}`, `%k[x]` -> `{x:e}`, `%w[x]` -> `{x:w}`, `%l[x]` ->
/// `{x}`, `%%` -> `%`.
fn c_to_template(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('%') => {
                chars.next();
                out.push('%');
            }
            _ => {
                let mut modifier = String::new();
                while let Some(&m) = chars.peek() {
                    if m == '[' {
                        break;
                    }
                    modifier.push(m);
                    chars.next();
                }
                chars.next();
                let name: String = chars.by_ref().take_while(|&c| c != ']').collect();
                match modifier.as_str() {
                    "k" => out.push_str(&format!("{{{name}:e}}")),
                    "w" => out.push_str(&format!("{{{name}:w}}")),
                    _ => out.push_str(&format!("{{{name}}}")),
                }
            }
        }
    }
    out
}

/// The one intended difference: the library keeps its descriptor and
/// exit-point arrays with the retain flag (its link uses --gc-sections),
/// C programs use librseq's plain "aw".
fn normalize(s: &str) -> String {
    s.replace("\"awR\"", "\"aw\"").trim().to_string()
}

#[test]
fn c_and_rust_sections_are_the_same_code() {
    let Some(guard) = c_arch_guard() else {
        return;
    };
    let rust = rust_sections(rseq::generated::SEQUENCES_RS);
    let c = c_sections(rseq::generated::SEQUENCES_H, guard);
    assert!(rust.len() >= 18, "{} Rust sections", rust.len());
    assert_eq!(
        rust.keys().collect::<Vec<_>>(),
        c.keys().collect::<Vec<_>>(),
        "the same set of sections"
    );
    for (name, r) in &rust {
        assert!(r.len() > 15, "{name}: {} instructions", r.len());
        assert_eq!(r, &c[name], "{name}: the C and Rust sequences differ");
    }
}

/// The C text of each section of one architecture block, from its name
/// to the end of the function.
fn c_functions(block: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for chunk in block.split("\nrseq_arch_").skip(1) {
        let name = chunk.split('(').next().unwrap().to_string();
        let end = chunk.find("\n}").expect("function end");
        out.insert(name, chunk[..end].to_string());
    }
    out
}

#[test]
fn c_sections_have_librseq_injection_points_and_twice_checks() {
    // Text checks: every architecture's block, whatever the host.
    let blocks = c_arch_blocks(rseq::generated::SEQUENCES_H);
    assert!(blocks.len() >= 4, "{} arch blocks", blocks.len());
    for (guard, block) in blocks {
        let c = c_functions(block);
        assert!(c.len() >= 18, "{guard}: {} C sections", c.len());
        for (name, text) in &c {
            check_c_section(&format!("{guard}: {name}"), name, text);
        }
    }
}

/// One C section: librseq's injection points, hooks and COMPARE_TWICE
/// re-checks (`family` is the section's name, `label` names it in
/// messages).
fn check_c_section(label: &str, family: &str, text: &str) {
    // Points 1-3 in every section, in order, and the last one right
    // after the commit label.
    let mut at = 0;
    for n in 1..=3 {
        let p = text[at..]
            .find(&format!("RSEQ_INJECT_ASM({n})"))
            .unwrap_or_else(|| panic!("{label}: no injection point {n}"));
        at += p;
    }
    let last = if family.starts_with("load_add") {
        4
    } else if family.starts_with("load_cbne_store_relaxed") || family.starts_with("load_cbeq") {
        5
    } else {
        6
    };
    let commit = text
        .find("\"5:\\n\"")
        .unwrap_or_else(|| panic!("{label}: no commit label"));
    let after = &text[commit..];
    assert!(
        after
            .trim_start_matches("\"5:\\n\"")
            .trim_start()
            .starts_with(&format!("RSEQ_INJECT_ASM({last})")),
        "{label}: point {last} is not right after the commit"
    );
    assert!(
        !text.contains(&format!("RSEQ_INJECT_ASM({})", last + 1)),
        "{label}: points past {last}"
    );
    for hook in [
        "RSEQ_INJECT_C(9)",
        "RSEQ_INJECT_INPUT",
        "RSEQ_INJECT_CLOBBER",
        "RSEQ_INJECT_FAILED",
    ] {
        assert!(text.contains(hook), "{label}: no {hook}");
    }
    // The second CPU compare before the commit, reporting through
    // rseq_bug().
    let twice = text
        .find("#ifdef RSEQ_COMPARE_TWICE")
        .unwrap_or_else(|| panic!("{label}: no twice block"));
    assert!(twice < commit, "{label}: no re-check before the commit");
    assert!(
        text.contains("%l[error1]") && text.contains("rseq_bug(\"cpu_id comparison failed\")"),
        "{label}"
    );
    if family.contains("cbne") || family.contains("cbeq") {
        assert!(
            text.contains("%l[error2]"),
            "{label}: no second value compare"
        );
    }
}
