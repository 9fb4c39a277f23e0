#!/usr/bin/env python3
# Checks the aarch64 critical sections of a linked ELF file (.so or
# executable): descriptors, ptr array, exit points, the code of each
# section (descriptor store, cpu_id/mm_cid check, ldar of the ownership
# word, signature before the abort handler, final store).
#   aarch64-elf-check.py FILE
"""Verify aarch64 rseq descriptors/sections in a linked ELF (.so or exe)."""
import re, subprocess, sys, struct
so = sys.argv[1]
P = "aarch64-linux-gnu-"
def run(*a): return subprocess.run(a, capture_output=True, text=True, check=True).stdout
# sections
secs = {}
for m in re.finditer(r"\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)", run(P+"readelf", "-SW", so)):
    secs[m.group(1)] = (int(m.group(2),16), int(m.group(3),16), int(m.group(4),16))
data = open(so, "rb").read()
def rd(addr, n):
    for name,(va,off,size) in secs.items():
        if va and va <= addr < va+size: return data[off+addr-va: off+addr-va+n]
    raise KeyError(hex(addr))
rel = {}
for line in run(P+"readelf", "-rW", so).splitlines():
    f = line.split()
    if len(f) >= 4 and f[2] == "R_AARCH64_RELATIVE": rel[int(f[0],16)] = int(f[3],16)
ins = {}
for line in run(P+"objdump", "-d", "--no-show-raw-insn", so).splitlines():
    m = re.match(r"\s+([0-9a-f]+):\s+(\S+)\s*(.*)", line)
    if m: ins[int(m.group(1),16)] = (m.group(2), re.sub(r"\s*//.*","",m.group(3)).strip())
errors = 0
def err(msg):
    global errors; errors += 1; print("FAIL", msg)
def r(name):
    va, off, size = secs[name]; return va, size
for s in ("__rseq_cs", "__rseq_cs_ptr_array", "__rseq_exit_point_array"):
    if s not in secs or secs[s][2] == 0: err(f"section {s} missing or empty")
cs_va, cs_size = r("__rseq_cs")
pa_va, pa_size = r("__rseq_cs_ptr_array")
ptrs = sorted(rel.get(pa_va+8*i) for i in range(pa_size//8))
descs = list(range(cs_va, cs_va+cs_size, 32))
if ptrs != descs: err(f"ptr array {list(map(hex,ptrs))} != descriptors")
sig = 0xd428bc00
starts = {}
for d in descs:
    ver, flags = struct.unpack("<II", rd(d, 8))
    start = rel.get(d+8); length = struct.unpack("<Q", rd(d+16, 8))[0]; abort = rel.get(d+24)
    post = start + length if start is not None else None
    tag = f"desc {d:#x}: start {start:#x} post {post:#x} abort {abort:#x}"
    if ver or flags: err(tag+" version/flags nonzero")
    if None in (start, abort): err(tag+" missing relocation"); continue
    starts[start] = (post, abort)
    if struct.unpack("<I", rd(abort-4, 4))[0] != sig: err(tag+" no signature before abort")
    # descriptor store right before start
    a, b, c = ins.get(start-12), ins.get(start-8), ins.get(start-4)
    ok = a and a[0]=="adrp" and b and b[0]=="add" and c and c[0]=="str"
    if ok:
        page = int(a[1].split(",")[1].split()[0],16)
        lo = int(re.search(r"#0x([0-9a-f]+)", b[1]).group(1),16) if "#0x" in b[1] else int(re.search(r"#(\d+)", b[1]).group(1))
        m = re.match(r"x15, \[(x\d+), #8\]", c[1])
        if page+lo != d or not m: err(tag+f" descriptor store computes {page+lo:#x} / {c}"); continue
        area = m.group(1)
    else: err(tag+f" no adrp/add/str before start: {a} {b} {c}"); continue
    # checks at start
    seq = [ins.get(start+4*i) for i in range(8)]
    if seq[0] == ("ldr", f"w15, [{area}, #4]"): mode, n = "cpu_id", 0
    elif seq[0] == ("ldr", f"w15, [{area}, #24]"): mode, n = "mm_cid", 0
    else: err(tag+f" first insn {seq[0]}"); continue
    if seq[1][0] != "cmp" or not seq[1][1].startswith("w15, w"): err(tag+f" cmp {seq[1]}")
    if seq[2][0] != "b.ne" or int(seq[2][1].split()[0],16) != abort: err(tag+f" b.ne {seq[2]}")
    i = 3
    if mode == "mm_cid":
        if seq[3] != ("ldr", f"w15, [{area}, #4]") or seq[4][0] != "tbnz" or not seq[4][1].startswith("w15, #31, ") or int(seq[4][1].split(", ")[2].split()[0],16) != abort:
            err(tag+f" mm_cid registered check {seq[3]} {seq[4]}")
        i = 5
    if seq[i][0] != "ldar" or not seq[i][1].startswith("w15, ["): err(tag+f" ldar {seq[i]}")
    if seq[i+1][0] != "cbnz" or int(seq[i+1][1].split(", ")[1].split()[0],16) != abort: err(tag+f" cbnz {seq[i+1]}")
    # commit: last insn before post-commit is a store
    last = ins.get(post-4)
    if not last or last[0] not in ("str", "stlr"): err(tag+f" last insn {last}")
    # no branch inside the section leaves it except to abort or an exit
    print(f"ok   {tag} {mode} area={area} commit={last[0]} {last[1]}")
ep_va, ep_size = r("__rseq_exit_point_array")
for i in range(ep_size//16):
    st, ex = rel.get(ep_va+16*i), rel.get(ep_va+16*i+8)
    if st not in starts: err(f"exit point {i}: start {st} not a section start"); continue
    post, abort = starts[st]
    tgts = [int(re.match(r"([0-9a-f]+)", v[1].split(", ")[-1]).group(1),16) for a,v in ins.items()
            if st <= a < post and v[0] in ("b.ne","b.eq")]
    if ex not in tgts: err(f"exit point {st:#x}->{ex:#x}: no branch to it inside section")
    else: print(f"ok   exit point {st:#x} -> {ex:#x}")
print(f"{len(descs)} descriptors, {ep_size//16} exit points, {errors} errors")
sys.exit(1 if errors else 0)
