//! The critical-section generator.
//!
//! `asm/ops.spec` lists the operation families (parameters, early exits,
//! memory orders); `asm/<arch>.rseq` gives, per architecture, the
//! fragments every section shares (descriptor, start, CPU and ownership
//! checks, abort handler) and one body per family. This module expands
//! each (family, order, mode) into one assembly template and writes it
//! out twice: as a Rust function around `asm!` (the library's sequences)
//! and as a C `static inline` function around `asm goto` (the header's
//! inline fast paths). Both are the same text with the operand syntax
//! translated, so the two can never drift apart.
//!
//! Two kinds of template lines exist only in the C expansion (the Rust
//! sections never have them, see `asm/injection.md`):
//! - `@INJECT(n)@`, an injection point: becomes librseq's
//!   `RSEQ_INJECT_ASM(n)` hook, which expands to nothing unless a test
//!   program defines it, so the default C code stays the Rust code;
//! - `?twice <line>`, the `RSEQ_COMPARE_TWICE` re-checks before the
//!   commit, emitted inside `#ifdef RSEQ_COMPARE_TWICE`, jumping to the
//!   labels `{error1}` (CPU/mm_cid changed) and `{error2}`, `{error3}`
//!   (first/second compared value changed), which call `rseq_bug()`.
//!   `?twice @CHECK@` stands for the arch's `twice_<mode>` fragment.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One parameter of a family.
#[derive(Clone, Debug)]
pub struct Param {
    pub name: String,
    pub ty: String,
}

/// One operation family of `asm/ops.spec`.
#[derive(Clone, Debug)]
pub struct Family {
    pub name: String,
    pub params: Vec<Param>,
    /// Early exits: (label, return value).
    pub exits: Vec<(String, i32)>,
    /// Memory orders: "relaxed" and maybe "release".
    pub orders: Vec<String>,
}

/// A 2017-API name for one family at one order.
#[derive(Clone, Debug)]
pub struct Alias {
    pub name: String,
    pub family: String,
    pub order: String,
    /// Parameters whose C type differs from the family's.
    pub overrides: Vec<(String, String)>,
}

/// The parsed `asm/ops.spec`.
#[derive(Debug)]
pub struct Spec {
    pub families: Vec<Family>,
    pub aliases: Vec<Alias>,
    /// Bytes per slot of the ownership table.
    pub owner_slot: usize,
    /// Offset of each mode's word in a slot, by mode name.
    pub owner_words: Vec<(String, usize)>,
}

/// One family body of an architecture file.
#[derive(Clone, Debug, Default)]
pub struct Body {
    pub lines: Vec<String>,
    pub clobbers: Vec<String>,
}

/// A parsed `asm/<arch>.rseq`.
#[derive(Debug, Default)]
pub struct Arch {
    pub name: String,
    pub c_cond: String,
    pub rust_cfg: String,
    pub rust_options: Vec<String>,
    pub c_area: String,
    /// The area operand computed from an area address (`@ABI@`), for
    /// programs that define `RSEQ_GET_ABI_OVERRIDE`; optional.
    pub c_area_abi: Option<String>,
    pub sig: String,
    pub clobbers: Vec<String>,
    /// Bytes per slot of the operand block (0: the architecture has none).
    pub block_slot: usize,
    /// How a section addresses a block slot: `@OFF@` is the byte offset,
    /// `{block}` the register holding the block's address.
    pub block_operand: String,
    /// C operands as librseq's x86 code takes them (`c_operands librseq`):
    /// a pointer used only as `({x})` becomes a memory operand, a word
    /// used only as the source of a two-operand instruction may be an
    /// immediate. The Rust sections keep registers (asm! has neither).
    pub c_librseq_operands: bool,
    /// `rseq_offset` always designates a readable area (`always_an_area`;
    /// the library's idle area before initialisation, see src/idle.rs):
    /// the C sections need no `rseq_offset == 0` test.
    pub always_an_area: bool,
    pub fragments: BTreeMap<String, Vec<String>>,
    pub ops: BTreeMap<String, Body>,
}

/// The percpu modes, as named in variant names and fragments.
pub const MODES: [&str; 2] = ["cpu_id", "mm_cid"];

/// Prefix of an expanded line that exists only in the C expansion under
/// `#ifdef RSEQ_COMPARE_TWICE`.
const TWICE: &str = "@TWICE@";

/// The C-only labels of the COMPARE_TWICE re-checks and what each one
/// reports through `rseq_bug()` (librseq's messages).
const ERROR_LABELS: [(&str, &str); 3] = [
    ("error1", "cpu_id comparison failed"),
    ("error2", "expected value comparison failed"),
    ("error3", "2nd expected value comparison failed"),
];

/// The number of an injection-point line (`@INJECT(n)@`), if it is one.
fn inject_point(line: &str) -> Option<&str> {
    line.trim()
        .strip_prefix("@INJECT(")
        .and_then(|r| r.strip_suffix(")@"))
}

/// Whether an expanded line belongs to the Rust sections too (injection
/// points and COMPARE_TWICE lines are C-only).
fn in_rust(line: &str) -> bool {
    inject_point(line).is_none() && !line.starts_with(TWICE)
}

/// Operands every section takes besides the family's parameters.
const COMMON: [(&str, &str, &str); 3] = [
    ("area", "usize", "uintptr_t"),
    ("owner", "*const u32", "const uint32_t *"),
    ("cpu", "i32", "int"),
];

fn rust_type(ty: &str) -> Result<&'static str, String> {
    Ok(match ty {
        "ptr" => "*mut isize",
        "word" | "long" => "isize",
        "mem" => "*mut u8",
        "cmem" => "*const u8",
        "size" => "usize",
        _ => return Err(format!("unknown parameter type {ty}")),
    })
}

/// The C type of a spec parameter type.
pub fn c_type(ty: &str) -> Result<&'static str, String> {
    Ok(match ty {
        "ptr" => "intptr_t *",
        "word" => "intptr_t",
        "long" => "long",
        "mem" | "cmem" => "void *",
        "size" => "size_t",
        _ => return Err(format!("unknown parameter type {ty}")),
    })
}

fn meaningful(line: &str) -> Option<&str> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        None
    } else {
        Some(t)
    }
}

/// Parses `asm/ops.spec`.
pub fn parse_spec(text: &str) -> Result<Spec, String> {
    let mut spec = Spec {
        families: Vec::new(),
        aliases: Vec::new(),
        owner_slot: 0,
        owner_words: Vec::new(),
    };
    for line in text.lines().filter_map(meaningful) {
        if let Some(rest) = line.strip_prefix("family ") {
            let cols: Vec<&str> = rest.split('|').map(str::trim).collect();
            if cols.len() != 4 {
                return Err(format!("bad family line: {line}"));
            }
            let params = cols[1]
                .split_whitespace()
                .map(|p| {
                    let (name, ty) = p.split_once(':').ok_or(format!("bad parameter {p}"))?;
                    rust_type(ty)?;
                    Ok(Param {
                        name: name.into(),
                        ty: ty.into(),
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            let exits = cols[2]
                .split_whitespace()
                .map(|e| {
                    let (label, code) = e.split_once('=').ok_or(format!("bad exit {e}"))?;
                    Ok((
                        label.into(),
                        code.parse::<i32>().map_err(|x| x.to_string())?,
                    ))
                })
                .collect::<Result<Vec<_>, String>>()?;
            spec.families.push(Family {
                name: cols[0].into(),
                params,
                exits,
                orders: cols[3].split_whitespace().map(String::from).collect(),
            });
        } else if let Some(rest) = line.strip_prefix("owner_slot ") {
            spec.owner_slot = rest
                .trim()
                .parse()
                .map_err(|_| format!("bad slot size: {line}"))?;
        } else if let Some(rest) = line.strip_prefix("owner_word ") {
            let (mode, off) = rest
                .trim()
                .split_once(char::is_whitespace)
                .ok_or(format!("bad word: {line}"))?;
            spec.owner_words.push((
                mode.into(),
                off.trim()
                    .parse()
                    .map_err(|_| format!("bad word offset: {line}"))?,
            ));
        } else if let Some(rest) = line.strip_prefix("alias ") {
            let (name, def) = rest.split_once('=').ok_or(format!("bad alias: {line}"))?;
            let mut words = def.split_whitespace();
            let family = words.next().ok_or("alias without family")?.to_string();
            let order = words.next().ok_or("alias without order")?.to_string();
            let overrides = words
                .map(|w| {
                    let (p, t) = w.split_once(':').ok_or(format!("bad override {w}"))?;
                    Ok((p.to_string(), t.to_string()))
                })
                .collect::<Result<Vec<_>, String>>()?;
            spec.aliases.push(Alias {
                name: name.trim().into(),
                family,
                order,
                overrides,
            });
        } else {
            return Err(format!("unknown spec line: {line}"));
        }
    }
    if spec.owner_slot == 0
        || MODES
            .iter()
            .any(|m| !spec.owner_words.iter().any(|(w, _)| w == m))
    {
        return Err("ops.spec must give owner_slot and an owner_word per mode".into());
    }
    for a in &spec.aliases {
        let f = spec
            .families
            .iter()
            .find(|f| f.name == a.family)
            .ok_or(format!("alias {} of unknown family {}", a.name, a.family))?;
        if !f.orders.contains(&a.order) {
            return Err(format!("alias {}: family has no order {}", a.name, a.order));
        }
    }
    Ok(spec)
}

/// Parses one architecture file.
pub fn parse_arch(text: &str) -> Result<Arch, String> {
    let mut arch = Arch::default();
    let mut lines = text.lines();
    while let Some(raw) = lines.next() {
        let Some(line) = meaningful(raw) else {
            continue;
        };
        let (key, value) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let value = value.trim();
        match key {
            "arch" => arch.name = value.into(),
            "c_cond" => arch.c_cond = value.into(),
            "rust_cfg" => arch.rust_cfg = value.into(),
            "rust_options" => {
                arch.rust_options = value.split_whitespace().map(String::from).collect()
            }
            "c_area" => arch.c_area = value.into(),
            "c_area_abi" => arch.c_area_abi = Some(value.into()),
            "sig" => arch.sig = value.into(),
            "clobber" => arch.clobbers = value.split_whitespace().map(String::from).collect(),
            "block_slot" => {
                arch.block_slot = value
                    .parse()
                    .map_err(|_| format!("bad block_slot: {line}"))?
            }
            "block_operand" => arch.block_operand = value.into(),
            "always_an_area" => arch.always_an_area = true,
            "c_operands" => match value {
                "librseq" => arch.c_librseq_operands = true,
                "registers" => arch.c_librseq_operands = false,
                _ => return Err(format!("bad c_operands: {line}")),
            },
            "fragment" | "op" => {
                let mut body = Body::default();
                loop {
                    let raw = lines.next().ok_or(format!("{key} {value}: missing end"))?;
                    let t = raw.trim();
                    if t == "end" {
                        break;
                    }
                    if t.starts_with('#') || t.is_empty() {
                        continue;
                    }
                    if let Some(regs) = t.strip_prefix("clobber ") {
                        body.clobbers
                            .extend(regs.split_whitespace().map(String::from));
                        continue;
                    }
                    body.lines.push(raw.trim_end().to_string());
                }
                if key == "fragment" {
                    arch.fragments.insert(value.into(), body.lines);
                } else {
                    arch.ops.insert(value.into(), body);
                }
            }
            _ => return Err(format!("unknown arch line: {line}")),
        }
    }
    for (what, v) in [
        ("arch", &arch.name),
        ("c_cond", &arch.c_cond),
        ("rust_cfg", &arch.rust_cfg),
        ("c_area", &arch.c_area),
        ("sig", &arch.sig),
    ] {
        if v.is_empty() {
            return Err(format!("architecture file lacks `{what}`"));
        }
    }
    if (arch.block_slot == 0) != arch.block_operand.is_empty() {
        return Err("block_slot and block_operand go together".into());
    }
    Ok(arch)
}

/// The name of one generated sequence.
pub fn variant_name(family: &str, order: &str, mode: &str) -> String {
    format!("{family}_{order}_{mode}")
}

/// One expanded section: template lines (operand syntax still `{x}`),
/// the registers it clobbers, and the operands it reads from its block.
pub struct Expanded {
    pub lines: Vec<String>,
    pub clobbers: Vec<String>,
    /// Operands passed in memory (`{name:m}`), in slot order; the lines
    /// address them through the `{block}` operand.
    pub block: Vec<String>,
}

/// The name of the operand holding the block's address.
pub const BLOCK: &str = "block";

/// Replaces every `{name:m}` by the architecture's block addressing, one
/// slot per operand in order of first use.
fn use_block(arch: &Arch, lines: Vec<String>) -> Result<(Vec<String>, Vec<String>), String> {
    let mut block: Vec<String> = Vec::new();
    let mut out = Vec::with_capacity(lines.len());
    for l in &lines {
        let mut s = String::new();
        for p in pieces(l)? {
            match p {
                Piece::Text(t) => s.push_str(t),
                Piece::Operand {
                    name,
                    modifier: Some("m"),
                } => {
                    if arch.block_slot == 0 {
                        return Err(format!("{}: {{{name}:m}} without a block", arch.name));
                    }
                    let slot = match block.iter().position(|b| b == name) {
                        Some(i) => i,
                        None => {
                            block.push(name.to_string());
                            block.len() - 1
                        }
                    };
                    let off = (slot * arch.block_slot).to_string();
                    s.push_str(&arch.block_operand.replace("@OFF@", &off));
                }
                Piece::Operand { name, modifier } => {
                    s.push('{');
                    s.push_str(name);
                    if let Some(m) = modifier {
                        s.push(':');
                        s.push_str(m);
                    }
                    s.push('}');
                }
            }
        }
        out.push(s);
    }
    Ok((out, block))
}

fn fragment<'a>(arch: &'a Arch, name: &str) -> Result<&'a [String], String> {
    arch.fragments
        .get(name)
        .map(Vec::as_slice)
        .ok_or(format!("{}: missing fragment {name}", arch.name))
}

/// Expands one (family, order, mode) of one architecture.
pub fn expand(arch: &Arch, family: &Family, order: &str, mode: &str) -> Result<Expanded, String> {
    let body = arch
        .ops
        .get(&family.name)
        .ok_or(format!("{}: no body for {}", arch.name, family.name))?;
    let mut lines: Vec<String> = Vec::new();
    lines.extend(fragment(arch, "table")?.iter().cloned());
    for (label, _) in &family.exits {
        for l in fragment(arch, "exit_point")? {
            lines.push(l.replace("@EXIT@", &format!("{{{label}}}")));
        }
    }
    // The COMPARE_TWICE lines of the body, and the error labels they use
    // (each also gets an exit point, as librseq declares them).
    let mut twice: Vec<String> = Vec::new();
    for l in &body.lines {
        if let Some(code) = l.trim_start().strip_prefix("?twice") {
            let code = code.trim();
            if code == "@CHECK@" {
                twice.extend(fragment(arch, &format!("twice_{mode}"))?.iter().cloned());
            } else {
                twice.push(format!("\t{code}"));
            }
        }
    }
    for label in ERROR_LABELS.iter().map(|(l, _)| *l) {
        if twice.iter().any(|l| l.contains(&format!("{{{label}}}"))) {
            for l in fragment(arch, "exit_point")? {
                lines.push(format!(
                    "{TWICE}{}",
                    l.replace("@EXIT@", &format!("{{{label}}}"))
                ));
            }
        }
    }
    lines.extend(fragment(arch, "start")?.iter().cloned());
    lines.extend(fragment(arch, &format!("check_{mode}"))?.iter().cloned());
    for l in &body.lines {
        let t = l.trim_start();
        if t.starts_with("?twice") {
            // Emitted once, at the first `?twice` line of the body.
            if !twice.is_empty() {
                lines.extend(twice.drain(..).map(|c| format!("{TWICE}{c}")));
            }
        } else if let Some(rest) = t.strip_prefix('?') {
            let (when, code) = rest
                .split_once(char::is_whitespace)
                .ok_or(format!("bad line {l}"))?;
            if when == order {
                lines.push(format!("\t{}", code.trim()));
            }
        } else {
            lines.push(l.clone());
        }
    }
    lines.extend(fragment(arch, "abort")?.iter().cloned());
    for l in &lines {
        if let Some(n) = inject_point(l) {
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("{}: bad injection point {l}", arch.name));
            }
        }
    }
    let lines = lines
        .into_iter()
        .map(|l| l.replace("@SIG@", &arch.sig))
        .collect();
    let (lines, block) = use_block(arch, lines)?;
    let mut clobbers = arch.clobbers.clone();
    clobbers.extend(body.clobbers.iter().cloned());
    Ok(Expanded {
        lines,
        clobbers,
        block,
    })
}

/// A piece of a template line: literal text or an operand reference.
enum Piece<'a> {
    Text(&'a str),
    Operand {
        name: &'a str,
        modifier: Option<&'a str>,
    },
}

fn pieces(line: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(open) = rest.find('{') {
        out.push(Piece::Text(&rest[..open]));
        let close = rest[open..]
            .find('}')
            .ok_or(format!("unclosed operand in {line}"))?
            + open;
        let inner = &rest[open + 1..close];
        let (name, modifier) = match inner.split_once(':') {
            Some((n, m)) => (n, Some(m)),
            None => (inner, None),
        };
        out.push(Piece::Operand { name, modifier });
        rest = &rest[close + 1..];
    }
    out.push(Piece::Text(rest));
    Ok(out)
}

/// Operand names in order of first use.
fn operands(lines: &[String]) -> Result<Vec<String>, String> {
    let mut seen: Vec<String> = Vec::new();
    for l in lines {
        for p in pieces(l)? {
            if let Piece::Operand { name, .. } = p {
                if !seen.iter().any(|s| s == name) {
                    seen.push(name.to_string());
                }
            }
        }
    }
    Ok(seen)
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Labels of a family: its early exits, then `abort`.
fn labels(family: &Family) -> Vec<(String, i32)> {
    let mut l = family.exits.clone();
    l.push(("abort".into(), -1));
    l
}

/// The ownership-table layout, as Rust constants.
fn emit_rust_layout(out: &mut String, spec: &Spec) {
    writeln!(
        out,
        "\n/// Bytes per slot of the ownership table.\npub const OWNER_SLOT_SIZE: usize = {};",
        spec.owner_slot
    )
    .unwrap();
    for (mode, off) in &spec.owner_words {
        writeln!(out, "/// Offset of the {mode} ownership word in a slot.\npub const OWNER_WORD_{}: usize = {off};", mode.to_uppercase()).unwrap();
    }
}

/// Writes the Rust sequences of one architecture.
pub fn emit_rust(arch: &Arch, spec: &Spec) -> Result<String, String> {
    let mut out = String::new();
    writeln!(
        out,
        "// @generated by build.rs from asm/{}.rseq and asm/ops.spec. Do not edit.",
        arch.name
    )
    .unwrap();
    emit_rust_layout(&mut out, spec);
    for family in &spec.families {
        let labels = labels(family);
        for order in &family.orders {
            for mode in MODES {
                let mut x = expand(arch, family, order, mode)?;
                x.lines.retain(|l| in_rust(l));
                let used = operands(&x.lines)?;
                let name = variant_name(&family.name, order, mode);
                writeln!(
                    out,
                    "\n/// `{}`, {order}, {mode} mode: 0 committed, {} -1 aborted.",
                    family.name,
                    family
                        .exits
                        .iter()
                        .map(|(l, c)| format!("{c} on `{l}`,"))
                        .collect::<String>()
                )
                .unwrap();
                writeln!(
                    out,
                    "///\n/// # Safety\n/// The caller upholds the contract of [`crate::ops`]."
                )
                .unwrap();
                writeln!(out, "#[inline(always)]").unwrap();
                write!(out, "pub unsafe fn {name}(").unwrap();
                let mut args: Vec<String> =
                    COMMON.iter().map(|(n, t, _)| format!("{n}: {t}")).collect();
                for p in &family.params {
                    args.push(format!("{}: {}", p.name, rust_type(&p.ty)?));
                }
                writeln!(out, "{}) -> i32 {{", args.join(", ")).unwrap();
                if !x.block.is_empty() {
                    let slots: Vec<String> = x
                        .block
                        .iter()
                        .map(|b| {
                            let ty = COMMON
                                .iter()
                                .find(|c| c.0 == b)
                                .map(|c| Ok(c.1))
                                .or_else(|| {
                                    family
                                        .params
                                        .iter()
                                        .find(|p| p.name == *b)
                                        .map(|p| rust_type(&p.ty))
                                })
                                .ok_or(format!("{name}: unknown block operand {b}"))??;
                            Ok(if ty == "usize" {
                                b.clone()
                            } else {
                                format!("{b} as usize")
                            })
                        })
                        .collect::<Result<_, String>>()?;
                    writeln!(
                        out,
                        "    // The operands the section reads from memory (asm/{}.rseq).",
                        arch.name
                    )
                    .unwrap();
                    writeln!(
                        out,
                        "    let {BLOCK}: [usize; {}] = [{}];",
                        slots.len(),
                        slots.join(", ")
                    )
                    .unwrap();
                }
                writeln!(
                    out,
                    "    // SAFETY: the section only touches the memory the caller vouched for,"
                )
                .unwrap();
                writeln!(
                    out,
                    "    // the thread's rseq area, the ownership word and its own descriptor."
                )
                .unwrap();
                writeln!(out, "    unsafe {{").unwrap();
                writeln!(out, "        core::arch::asm!(").unwrap();
                for l in &x.lines {
                    writeln!(
                        out,
                        "            \"{}\",",
                        quote(&l.replace("@RETAIN@", "awR"))
                    )
                    .unwrap();
                }
                let all_inputs: Vec<&str> = COMMON
                    .iter()
                    .map(|c| c.0)
                    .chain(family.params.iter().map(|p| p.name.as_str()))
                    .collect();
                for op in &used {
                    if let Some((label, code)) = labels.iter().find(|(l, _)| l == op) {
                        writeln!(out, "            {label} = label {{ return {code}; }},").unwrap();
                    } else if op == BLOCK && !x.block.is_empty() {
                        writeln!(out, "            {BLOCK} = in(reg) {BLOCK}.as_ptr(),").unwrap();
                    } else if all_inputs.contains(&op.as_str()) {
                        writeln!(out, "            {op} = in(reg) {op},").unwrap();
                    } else {
                        return Err(format!("{name}: unknown operand {{{op}}}"));
                    }
                }
                for input in &all_inputs {
                    if !used.iter().chain(&x.block).any(|u| u == input) {
                        return Err(format!("{name}: parameter {input} is never used"));
                    }
                }
                for c in &x.clobbers {
                    writeln!(out, "            out(\"{c}\") _,").unwrap();
                }
                if !arch.rust_options.is_empty() {
                    writeln!(
                        out,
                        "            options({}),",
                        arch.rust_options.join(", ")
                    )
                    .unwrap();
                }
                writeln!(out, "        );\n    }}\n    0\n}}").unwrap();
            }
        }
    }
    Ok(out)
}

/// Writes Rust stand-ins for architectures without sequences: every
/// operation reports an abort.
pub fn emit_rust_unsupported(spec: &Spec) -> Result<String, String> {
    let mut out = String::new();
    writeln!(
        out,
        "// @generated by build.rs from asm/ops.spec. Do not edit."
    )
    .unwrap();
    emit_rust_layout(&mut out, spec);
    for family in &spec.families {
        for order in &family.orders {
            for mode in MODES {
                let name = variant_name(&family.name, order, mode);
                let mut args: Vec<String> = COMMON
                    .iter()
                    .map(|(n, t, _)| format!("_{n}: {t}"))
                    .collect();
                for p in &family.params {
                    args.push(format!("_{}: {}", p.name, rust_type(&p.ty)?));
                }
                writeln!(out, "\n/// No sequence on this architecture: always aborts.\n///\n/// # Safety\n/// None needed; it touches nothing.").unwrap();
                writeln!(
                    out,
                    "#[inline(always)]\npub unsafe fn {name}({}) -> i32 {{\n    -1\n}}",
                    args.join(", ")
                )
                .unwrap();
            }
        }
    }
    Ok(out)
}

/// A C parameter declaration: `intptr_t *v`, `int cpu`.
fn c_decl(ty: &str, name: &str) -> String {
    if ty.ends_with('*') {
        format!("{ty}{name}")
    } else {
        format!("{ty} {name}")
    }
}

/// How a C section takes one operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum COperand {
    /// A register (`"r"`).
    Reg,
    /// The memory the pointer points at (`"m" (*x)`; `({x})` in the
    /// template becomes `%[x]`).
    Mem,
    /// A register or a 32-bit sign-extended immediate (`"er"`).
    RegOrImm,
}

/// Two-operand x86 instructions whose source may be an imm32.
const IMM_SOURCE: [&str; 7] = ["movq", "addq", "subq", "cmpq", "andq", "orq", "xorq"];

/// How the C expansion takes each operand of `lines` (librseq's x86
/// constraints when the architecture asks for them, else registers):
/// `params` gives the spec type of each family parameter.
fn c_operand_kinds(
    arch: &Arch,
    lines: &[String],
    params: &[Param],
) -> Result<BTreeMap<String, COperand>, String> {
    let mut kinds: BTreeMap<String, COperand> = BTreeMap::new();
    let mut mem_ok: BTreeMap<String, bool> = BTreeMap::new();
    let mut imm_ok: BTreeMap<String, bool> = BTreeMap::new();
    for l in lines {
        let ps = pieces(l)?;
        let mnemonic = l.split_whitespace().next().unwrap_or("");
        for (i, p) in ps.iter().enumerate() {
            let Piece::Operand { name, modifier } = p else {
                continue;
            };
            kinds.insert(name.to_string(), COperand::Reg);
            let before = match i.checked_sub(1).map(|j| &ps[j]) {
                Some(Piece::Text(t)) => *t,
                _ => "",
            };
            let after = match ps.get(i + 1) {
                Some(Piece::Text(t)) => *t,
                _ => "",
            };
            let in_parens = modifier.is_none() && before.ends_with('(') && after.starts_with(')');
            let source = modifier.is_none()
                && IMM_SOURCE.contains(&mnemonic)
                && before.trim() == mnemonic
                && after.trim_start().starts_with(',');
            *mem_ok.entry(name.to_string()).or_insert(true) &= in_parens;
            *imm_ok.entry(name.to_string()).or_insert(true) &= source;
        }
    }
    if !arch.c_librseq_operands {
        return Ok(kinds);
    }
    for (name, kind) in kinds.iter_mut() {
        let ty = params
            .iter()
            .find(|p| p.name == *name)
            .map(|p| p.ty.as_str());
        let pointer = ty == Some("ptr") || name == "owner";
        let word = matches!(ty, Some("word" | "long" | "size"));
        if pointer && mem_ok[name] {
            *kind = COperand::Mem;
        } else if word && imm_ok[name] {
            *kind = COperand::RegOrImm;
        }
    }
    Ok(kinds)
}

fn c_line(
    arch: &Arch,
    line: &str,
    labels: &[(String, i32)],
    kinds: &BTreeMap<String, COperand>,
) -> Result<String, String> {
    let mut out = String::new();
    // A memory operand replaces its parentheses too.
    let mut skip_paren = false;
    for p in pieces(line)? {
        match p {
            Piece::Text(t) => {
                let t = if skip_paren { &t[1..] } else { t };
                skip_paren = false;
                out.push_str(&t.replace('%', "%%").replace("@RETAIN@", "aw"))
            }
            Piece::Operand { name, modifier } if labels.iter().any(|(l, _)| l == name) => {
                if modifier.is_some() {
                    return Err(format!("label {name} takes no modifier"));
                }
                let _ = write!(out, "%l[{name}]");
            }
            Piece::Operand { name, .. } if kinds.get(name) == Some(&COperand::Mem) => {
                out.pop();
                skip_paren = true;
                let _ = write!(out, "%[{name}]");
            }
            Piece::Operand { name, modifier } => {
                let m = match (arch.name.as_str(), modifier) {
                    (_, None) => "",
                    ("x86_64", Some("e")) => "k",
                    ("aarch64", Some("w")) => "w",
                    (a, Some(m)) => return Err(format!("{a}: unknown operand modifier {m}")),
                };
                let _ = write!(out, "%{m}[{name}]");
            }
        }
    }
    Ok(out)
}

/// Writes the C inline sequences of every architecture, and the public
/// inline API on top of them, as one header.
pub fn emit_c(archs: &[Arch], spec: &Spec) -> Result<String, String> {
    let mut out = String::new();
    out.push_str(
        "/* SPDX-License-Identifier: MIT */\n\
         /*\n * @generated by build.rs from asm/<arch>.rseq and asm/ops.spec. Do not edit:\n\
         \x20* change the templates and run `make headers`.\n *\n\
         \x20* Inline critical sections, the same sequences as the library's own.\n\
         \x20* Included by <rseq/rseq.h>; do not include directly.\n */\n\
         #ifndef _RSEQ_GENERATED_SEQUENCES_H\n#define _RSEQ_GENERATED_SEQUENCES_H\n\n",
    );
    writeln!(
        out,
        "/* The cpu-op ownership table every section checks (one slot per CPU or mm_cid). */"
    )
    .unwrap();
    writeln!(out, "#define RSEQ_CPU_OP_SLOT_SIZE {}", spec.owner_slot).unwrap();
    for (mode, off) in &spec.owner_words {
        writeln!(
            out,
            "#define RSEQ_CPU_OP_WORD_{} {off}",
            mode.to_uppercase()
        )
        .unwrap();
    }
    out.push_str(
        "\nstatic inline __attribute__((always_inline))\n\
         const uint32_t *rseq_cpu_op_owner_word(int cpu, unsigned int word)\n{\n\
         \treturn (const uint32_t *)(rseq_cpu_op_owners + (intptr_t)cpu * RSEQ_CPU_OP_SLOT_SIZE + word);\n}\n\n",
    );
    for (i, arch) in archs.iter().enumerate() {
        writeln!(
            out,
            "#{} {}",
            if i == 0 { "if" } else { "elif" },
            arch.c_cond
        )
        .unwrap();
        writeln!(out, "#define RSEQ_ARCH_HAS_SEQUENCES 1").unwrap();
        // Whether rseq_offset is never 0 (the library's idle area): the
        // sections then skip the test.
        writeln!(
            out,
            "#define RSEQ_ARCH_ALWAYS_AN_AREA {}",
            u8::from(arch.always_an_area)
        )
        .unwrap();
        // librseq's feature macro for the pointer-chasing family (programs
        // test it with #ifdef, so it is defined empty).
        if arch.ops.contains_key("load_add_load_load_add_store") {
            writeln!(out, "#define rseq_arch_has_load_add_load_load_add_store").unwrap();
        }
        // The area operand: from the program's rseq_get_abi() when it
        // overrides it (RSEQ_GET_ABI_OVERRIDE), else from rseq_offset.
        writeln!(out, "#ifdef RSEQ_GET_ABI_OVERRIDE").unwrap();
        match &arch.c_area_abi {
            Some(e) => writeln!(
                out,
                "#define RSEQ_ARCH_AREA() ({})",
                e.replace("@ABI@", "(uintptr_t)rseq_get_abi()")
            )
            .unwrap(),
            None => writeln!(
                out,
                "#error \"RSEQ_GET_ABI_OVERRIDE: asm/{}.rseq gives no c_area_abi\"",
                arch.name
            )
            .unwrap(),
        }
        writeln!(out, "#else").unwrap();
        writeln!(out, "#define RSEQ_ARCH_AREA() ({})", arch.c_area).unwrap();
        writeln!(out, "#endif").unwrap();
        for family in &spec.families {
            let labels = labels(family);
            for order in &family.orders {
                for mode in MODES {
                    let x = expand(arch, family, order, mode)?;
                    let c_labels: Vec<(String, i32)> = labels
                        .iter()
                        .cloned()
                        .chain(ERROR_LABELS.iter().map(|(l, _)| (l.to_string(), -1)))
                        .collect();
                    let plain: Vec<String> = x
                        .lines
                        .iter()
                        .map(|l| l.strip_prefix(TWICE).unwrap_or(l).to_string())
                        .collect();
                    let used = operands(&plain)?;
                    let kinds = c_operand_kinds(arch, &plain, &family.params)?;
                    let name = variant_name(&family.name, order, mode);
                    let mut params: Vec<String> =
                        COMMON.iter().map(|(n, _, t)| c_decl(t, n)).collect();
                    for p in &family.params {
                        params.push(c_decl(c_type(&p.ty)?, &p.name));
                    }
                    writeln!(out, "\nstatic inline __attribute__((always_inline)) int\nrseq_arch_{name}({})\n{{", params.join(", ")).unwrap();
                    // librseq's C injection point, at the top of each section.
                    writeln!(out, "\tRSEQ_INJECT_C(9)").unwrap();
                    if !x.block.is_empty() {
                        let slots: Vec<String> =
                            x.block.iter().map(|b| format!("(uintptr_t){b}")).collect();
                        writeln!(
                            out,
                            "\tconst uintptr_t __rseq_block[{}] = {{ {} }};",
                            slots.len(),
                            slots.join(", ")
                        )
                        .unwrap();
                    }
                    writeln!(out, "\t__asm__ __volatile__ goto (").unwrap();
                    let mut in_twice = false;
                    for l in &x.lines {
                        let twice = l.starts_with(TWICE);
                        if twice != in_twice {
                            writeln!(
                                out,
                                "{}",
                                if twice {
                                    "#ifdef RSEQ_COMPARE_TWICE"
                                } else {
                                    "#endif"
                                }
                            )
                            .unwrap();
                            in_twice = twice;
                        }
                        if let Some(n) = inject_point(l) {
                            writeln!(out, "\t\tRSEQ_INJECT_ASM({n})").unwrap();
                            continue;
                        }
                        let l = l.strip_prefix(TWICE).unwrap_or(l);
                        writeln!(
                            out,
                            "\t\t\"{}\\n\"",
                            quote(&c_line(arch, l, &c_labels, &kinds)?)
                        )
                        .unwrap();
                    }
                    if in_twice {
                        writeln!(out, "#endif").unwrap();
                    }
                    writeln!(out, "\t\t: /* no outputs */").unwrap();
                    let inputs: Vec<String> = used
                        .iter()
                        .filter(|u| !c_labels.iter().any(|(l, _)| l == *u))
                        .map(|u| {
                            if u == BLOCK && !x.block.is_empty() {
                                format!("[{u}] \"r\" (__rseq_block)")
                            } else {
                                match kinds.get(u.as_str()) {
                                    Some(COperand::Mem) => format!("[{u}] \"m\" (*{u})"),
                                    Some(COperand::RegOrImm) => format!("[{u}] \"er\" ({u})"),
                                    _ => format!("[{u}] \"r\" ({u})"),
                                }
                            }
                        })
                        .collect();
                    writeln!(out, "\t\t: {}", inputs.join(",\n\t\t  ")).unwrap();
                    writeln!(out, "\t\t  RSEQ_INJECT_INPUT").unwrap();
                    let clobbers: Vec<String> = ["memory", "cc"]
                        .iter()
                        .map(|s| s.to_string())
                        .chain(x.clobbers.iter().cloned())
                        .map(|c| format!("\"{c}\""))
                        .collect();
                    writeln!(out, "\t\t: {}", clobbers.join(", ")).unwrap();
                    writeln!(out, "\t\t  RSEQ_INJECT_CLOBBER").unwrap();
                    let used_labels: Vec<&str> = labels
                        .iter()
                        .filter(|(l, _)| used.contains(l))
                        .map(|(l, _)| l.as_str())
                        .collect();
                    let errors: Vec<(&str, &str)> = ERROR_LABELS
                        .iter()
                        .filter(|(l, _)| used.iter().any(|u| u == l))
                        .copied()
                        .collect();
                    writeln!(out, "\t\t: {}", used_labels.join(", ")).unwrap();
                    if !errors.is_empty() {
                        writeln!(out, "#ifdef RSEQ_COMPARE_TWICE").unwrap();
                        for (l, _) in &errors {
                            writeln!(out, "\t\t  , {l}").unwrap();
                        }
                        writeln!(out, "#endif").unwrap();
                    }
                    writeln!(out, "\t);").unwrap();
                    writeln!(out, "\treturn 0;").unwrap();
                    for (l, code) in &labels {
                        if used.contains(l) {
                            let failed = if l == "abort" {
                                "\tRSEQ_INJECT_FAILED\n"
                            } else {
                                ""
                            };
                            writeln!(out, "{l}:\n{failed}\treturn {code};").unwrap();
                        }
                    }
                    if !errors.is_empty() {
                        writeln!(out, "#ifdef RSEQ_COMPARE_TWICE").unwrap();
                        for (l, msg) in &errors {
                            writeln!(out, "{l}:\n\trseq_bug(\"{msg}\");").unwrap();
                        }
                        writeln!(out, "#endif").unwrap();
                    }
                    writeln!(out, "}}").unwrap();
                }
            }
        }
    }
    writeln!(out, "#endif\n").unwrap();
    emit_c_api(&mut out, spec)?;
    writeln!(out, "\n#endif /* _RSEQ_GENERATED_SEQUENCES_H */").unwrap();
    Ok(out)
}

/// The public inline functions: librseq's `__ptr` names dispatching on
/// memory order and percpu mode, and the 2017 names on top of them.
fn emit_c_api(out: &mut String, spec: &Spec) -> Result<(), String> {
    writeln!(
        out,
        "#if defined(RSEQ_ARCH_HAS_SEQUENCES) && !defined(RSEQ_NO_INLINE)"
    )
    .unwrap();
    for family in &spec.families {
        let mut params = vec![
            "enum rseq_mo rseq_mo".to_string(),
            "enum rseq_percpu_mode percpu_mode".to_string(),
        ];
        for p in &family.params {
            params.push(c_decl(c_type(&p.ty)?, &p.name));
        }
        params.push("int cpu".into());
        let args: Vec<&str> = family.params.iter().map(|p| p.name.as_str()).collect();
        writeln!(
            out,
            "\nstatic inline __attribute__((always_inline))\nint rseq_{}__ptr({})\n{{",
            family.name,
            params.join(", ")
        )
        .unwrap();
        writeln!(out, "\tint __ret;\n").unwrap();
        for (i, order) in family.orders.iter().enumerate() {
            writeln!(
                out,
                "\t{}if (rseq_mo == RSEQ_MO_{}) {{",
                if i == 0 { "" } else { "} else " },
                order.to_uppercase()
            )
            .unwrap();
            for (j, mode) in MODES.iter().enumerate() {
                writeln!(
                    out,
                    "\t\t{}if (percpu_mode == RSEQ_PERCPU_{}) {{",
                    if j == 0 { "" } else { "} else " },
                    mode.to_uppercase()
                )
                .unwrap();
                writeln!(out, "\t\t\tif (!RSEQ_ARCH_ALWAYS_AN_AREA && rseq_unlikely(!rseq_offset))\n\t\t\t\treturn rseq_abort_slow_path();").unwrap();
                writeln!(
                    out,
                    "\t\t\t__ret = rseq_arch_{}(RSEQ_ARCH_AREA(), rseq_cpu_op_owner_word(cpu, RSEQ_CPU_OP_WORD_{}), cpu, {});",
                    variant_name(&family.name, order, mode),
                    mode.to_uppercase(),
                    args.join(", ")
                )
                .unwrap();
            }
            writeln!(
                out,
                "\t\t}} else {{\n\t\t\treturn rseq_invalid_argument();\n\t\t}}"
            )
            .unwrap();
        }
        writeln!(
            out,
            "\t}} else {{\n\t\treturn rseq_invalid_argument();\n\t}}"
        )
        .unwrap();
        writeln!(out, "\tif (rseq_unlikely(__ret < 0))\n\t\treturn rseq_abort_slow_path();\n\treturn __ret;\n}}").unwrap();
    }
    writeln!(out, "\n/* The 2017 API (CPU-number mode). */").unwrap();
    for alias in &spec.aliases {
        let family = spec
            .families
            .iter()
            .find(|f| f.name == alias.family)
            .unwrap();
        let mut params = Vec::new();
        for p in &family.params {
            let ty = match alias.overrides.iter().find(|(n, _)| *n == p.name) {
                Some((_, t)) => t.as_str(),
                None => c_type(&p.ty)?,
            };
            params.push(c_decl(ty, &p.name));
        }
        params.push("int cpu".into());
        let args: Vec<&str> = family.params.iter().map(|p| p.name.as_str()).collect();
        writeln!(
            out,
            "\nstatic inline __attribute__((always_inline))\nint {}({})\n{{\n\treturn rseq_{}__ptr(RSEQ_MO_{}, RSEQ_PERCPU_CPU_ID, {}, cpu);\n}}",
            alias.name,
            params.join(", "),
            family.name,
            alias.order.to_uppercase(),
            args.join(", ")
        )
        .unwrap();
    }
    writeln!(
        out,
        "#endif /* RSEQ_ARCH_HAS_SEQUENCES && !RSEQ_NO_INLINE */"
    )
    .unwrap();
    Ok(())
}
