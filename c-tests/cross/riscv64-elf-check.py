#!/usr/bin/env python3
# Checks the riscv64 critical sections of a linked ELF file (.so or
# executable), from its bytes, relocations and disassembly:
#  - no text relocations (the descriptor address is auipc + addi);
#  - every descriptor of __rseq_cs is in __rseq_cs_ptr_array, 32 bytes,
#    version/flags 0, start and abort relocated;
#  - RSEQ_SIG (0xf1401073) right before every abort handler, which jumps out;
#  - before every start: auipc/addi of the descriptor's address into t6 and
#    its store into 8(area);
#  - at every start the cpu_id (or mm_cid and registered) check, then the
#    ownership word load followed by `fence r,rw` (acquire), each
#    branching to the abort handler;
#  - the last instruction before the post-commit address is a store;
#  - every exit point leaves its section from a branch inside it.
#   riscv64-elf-check.py FILE
"""Verify the riscv64 rseq descriptors and sections of a linked ELF file."""
import re
import struct
import subprocess
import sys

SIG = 0xF1401073
TOOLS = "riscv64-linux-gnu-"


def run(*args):
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


path = sys.argv[1]
data = open(path, "rb").read()
sections = {}
for m in re.finditer(r"\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)",
                     run(TOOLS + "readelf", "-SW", path)):
    sections[m.group(1)] = tuple(int(m.group(i), 16) for i in (2, 3, 4))


def read(addr, n):
    for va, off, size in sections.values():
        if va and va <= addr and addr + n <= va + size:
            return data[off + addr - va: off + addr - va + n]
    raise KeyError(hex(addr))


# RELA: R_RISCV_RELATIVE's value is its addend; a non-PIC executable has
# the values in place instead.
relocs = {}
for line in run(TOOLS + "readelf", "-rW", path).splitlines():
    f = line.split()
    if len(f) >= 4 and f[2] == "R_RISCV_RELATIVE":
        relocs[int(f[0], 16)] = int(f[3], 16)
is_shared = "DYN" in run(TOOLS + "readelf", "-hW", path)


def pointer(addr):
    if is_shared:
        return relocs.get(addr)
    return struct.unpack("<Q", read(addr, 8))[0]


insns = {}
order = []
for line in run(TOOLS + "objdump", "-d", "--no-show-raw-insn", path).splitlines():
    m = re.match(r"\s+([0-9a-f]+):\s+(\S+)\s*(.*)", line)
    if m:
        addr = int(m.group(1), 16)
        comment = re.search(r"#\s*([0-9a-f]+)", m.group(3))
        operands = re.sub(r"\s*(#.*|<.*>)", "", m.group(3)).strip()
        insns[addr] = (m.group(2), operands, int(comment.group(1), 16) if comment else None)
        order.append(addr)
following = {a: b for a, b in zip(order, order[1:])}
preceding = {b: a for a, b in zip(order, order[1:])}

errors = 0


def fail(msg):
    global errors
    errors += 1
    print("FAIL", msg)


def target(insn):
    return int(insn[1].split(",")[-1], 16)


if re.search(r"TEXTREL", run(TOOLS + "readelf", "-dW", path)):
    fail("the file has text relocations")
for name in ("__rseq_cs", "__rseq_cs_ptr_array", "__rseq_exit_point_array"):
    if name not in sections or sections[name][2] == 0:
        fail(f"section {name} missing or empty")
        sys.exit(1)
cs_va, _, cs_size = sections["__rseq_cs"]
pa_va, _, pa_size = sections["__rseq_cs_ptr_array"]
ep_va, _, ep_size = sections["__rseq_exit_point_array"]
descs = list(range(cs_va, cs_va + cs_size, 32))
if sorted(pointer(pa_va + 8 * i) or 0 for i in range(pa_size // 8)) != descs:
    fail("the ptr array does not list exactly the descriptors")

by_start = {}
for d in descs:
    version, flags = struct.unpack("<II", read(d, 8))
    start, abort = pointer(d + 8), pointer(d + 24)
    if start is None or abort is None:
        fail(f"desc {d:#x}: start or abort not relocated")
        continue
    post = start + struct.unpack("<Q", read(d + 16, 8))[0]
    tag = f"desc {d:#x}: start {start:#x} post {post:#x} abort {abort:#x}"
    if version or flags:
        fail(tag + ": version/flags not 0")
    if struct.unpack("<I", read(abort - 4, 4))[0] != SIG:
        fail(tag + ": no signature before the abort handler")
    if insns.get(abort, ("",))[0] != "j":
        fail(tag + f": abort handler {insns.get(abort)} is not a jump out")
    store = preceding.get(start)
    add = preceding.get(store)
    auipc = preceding.get(add)
    try:
        m = re.fullmatch(r"t6,8\((\w+)\)", insns[store][1])
        ok = (insns[auipc][0] == "auipc" and insns[auipc][1].startswith("t6,")
              and insns[add][0] in ("addi", "add") and insns[add][2] == d
              and insns[store][0] == "sd" and m)
    except KeyError:
        ok = False
    if not ok:
        fail(tag + f": no descriptor store before start ({[insns.get(a) for a in (auipc, add, store)]})")
        continue
    area = m.group(1)
    seq = []
    a = start
    for _ in range(10):
        seq.append(insns.get(a) or ("", "", None))
        a = following.get(a)
    if seq[0][:2] == ("lw", f"t6,4({area})"):
        mode = "cpu_id"
    elif seq[0][:2] == ("lw", f"t6,24({area})"):
        mode = "mm_cid"
    else:
        fail(tag + f": first instruction {seq[0]} is no cpu_id/mm_cid load")
        continue
    if seq[1][0] != "subw" or not seq[1][1].startswith("t6,t6,") \
            or seq[2][0] != "bnez" or target(seq[2]) != abort:
        fail(tag + f": cpu check {seq[1]} {seq[2]}")
    i = 3
    if mode == "mm_cid":
        if seq[3][:2] != ("lw", f"t6,4({area})") or seq[4][0] != "bltz" or target(seq[4]) != abort:
            fail(tag + f": registered check {seq[3]} {seq[4]}")
        i = 5
    if seq[i][0] != "lw" or not re.fullmatch(r"t6,0\(\w+\)", seq[i][1]) \
            or seq[i + 1][:2] != ("fence", "r,rw") \
            or seq[i + 2][0] != "bnez" or target(seq[i + 2]) != abort:
        fail(tag + f": ownership check {seq[i:i + 3]}")
    last = insns.get(preceding.get(post))
    if not last or last[0] != "sd":
        fail(tag + f": last instruction {last} is not a store")
    by_start[start] = post
    print(f"ok   {tag} {mode} area={area} commit={last[0]} {last[1]}")

for i in range(ep_size // 16):
    start, exit_ip = pointer(ep_va + 16 * i), pointer(ep_va + 16 * i + 8)
    if start not in by_start:
        fail(f"exit point {i}: {start} is not a checked section start")
        continue
    # A far exit is assembled as the inverted branch over a `j`.
    branches = [target(v) for a, v in insns.items()
                if start <= a < by_start[start] and v[0] in ("bne", "beq", "j")]
    if exit_ip not in branches:
        fail(f"exit point {start:#x} -> {exit_ip:#x}: no branch to it inside the section")
    else:
        print(f"ok   exit point {start:#x} -> {exit_ip:#x}")
print(f"{len(descs)} descriptors, {ep_size // 16} exit points, {errors} errors")
sys.exit(1 if errors else 0)
