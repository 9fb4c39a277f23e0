#!/usr/bin/env python3
# Checks the i386 critical sections of a linked ELF file (.so or
# executable), from its bytes, relocations and disassembly:
#  - no text relocations (the descriptor address is PC-relative);
#  - every descriptor of __rseq_cs is in __rseq_cs_ptr_array, 32 bytes,
#    version/flags 0, each u64 field with the value in the low half and 0
#    in the high half (the uapi layout on a 32-bit little-endian ABI);
#  - the signature `ud1 0x53053053, %edi` right before every abort handler;
#  - before every start: call/pop/add computing the descriptor's address,
#    then its store into %gs:8(area);
#  - at every start the cpu_id (or mm_cid and registered) check against the
#    block's cpu slot, then the ownership word test, each branching to the
#    abort handler;
#  - the last instruction before the post-commit address is a store;
#  - every exit point leaves its section from a branch inside it.
#   i386-elf-check.py FILE
"""Verify the i386 rseq descriptors and sections of a linked ELF file."""
import re
import struct
import subprocess
import sys

SIG = 0x53053053
TOOLS = "i686-linux-gnu-"


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


def u32(addr):
    return struct.unpack("<I", read(addr, 4))[0]


# REL relocations: R_386_RELATIVE adds the load base to the word in place.
relative = set()
absolute = {}
for line in run(TOOLS + "readelf", "-rW", path).splitlines():
    f = line.split()
    if len(f) >= 3 and f[2] == "R_386_RELATIVE":
        relative.add(int(f[0], 16))
    elif len(f) >= 3 and f[2] == "R_386_32":
        absolute[int(f[0], 16)] = f
is_shared = "DYN" in run(TOOLS + "readelf", "-hW", path)

insns = {}
order = []
for line in run(TOOLS + "objdump", "-d", "--no-show-raw-insn", path).splitlines():
    m = re.match(r"\s+([0-9a-f]+):\s+(\S+)\s*(.*)", line)
    if m:
        addr = int(m.group(1), 16)
        insns[addr] = (m.group(2), re.sub(r"\s*<.*>", "", m.group(3)).strip())
        order.append(addr)
following = {a: b for a, b in zip(order, order[1:])}
preceding = {b: a for a, b in zip(order, order[1:])}

errors = 0


def fail(msg):
    global errors
    errors += 1
    print("FAIL", msg)


def pointer(addr, what):
    """A u64 pointer field: low half relocated (in a PIC file), high half 0."""
    if is_shared and addr not in relative:
        fail(f"{what} at {addr:#x}: no R_386_RELATIVE relocation")
    if u32(addr + 4) != 0:
        fail(f"{what} at {addr:#x}: high half not 0")
    return u32(addr)


def target(operand):
    return int(operand.split()[0], 16)


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
ptrs = sorted(pointer(pa_va + 8 * i, "ptr array entry") for i in range(pa_size // 8))
if ptrs != descs:
    fail("the ptr array does not list exactly the descriptors")

sections_by_start = {}
for d in descs:
    version, flags = struct.unpack("<II", read(d, 8))
    start = pointer(d + 8, "start_ip")
    length = u32(d + 16)
    if u32(d + 20):
        fail(f"desc {d:#x}: post_commit_offset high half not 0")
    abort = pointer(d + 24, "abort_ip")
    post = start + length
    tag = f"desc {d:#x}: start {start:#x} post {post:#x} abort {abort:#x}"
    if version or flags:
        fail(tag + ": version/flags not 0")
    if read(abort - 7, 7) != bytes([0x0F, 0xB9, 0x3D]) + struct.pack("<I", SIG):
        fail(tag + ": no `ud1 sig, %edi` before the abort handler")
    if insns.get(abort, ("",))[0] != "jmp":
        fail(tag + f": abort handler {insns.get(abort)} is not a jmp out")
    # The descriptor store: call next; pop %eax; add $(desc - next), %eax;
    # mov %eax, %gs:8(area); start.
    store = preceding.get(start)
    add = preceding.get(store)
    pop = preceding.get(add)
    call = preceding.get(pop)
    try:
        ok = (insns[call][0] == "call" and target(insns[call][1]) == pop
              and insns[pop] == ("pop", "%eax")
              and insns[add][0] == "add" and insns[add][1].endswith(",%eax")
              and pop + int(insns[add][1].split(",")[0].lstrip("$"), 16) == d)
        m = re.fullmatch(r"%eax,%gs:0x8\((%e\w\w)\)", insns[store][1])
        ok = ok and insns[store][0] == "mov" and m
    except (KeyError, ValueError):
        ok = False
    if not ok:
        fail(tag + f": no descriptor store before start ({[insns.get(a) for a in (call, pop, add, store)]})")
        continue
    area = m.group(1)
    # The checks at start.
    seq = []
    a = start
    for _ in range(9):
        seq.append(insns.get(a))
        a = following.get(a)
    m = re.fullmatch(r"(?:0x0)?\((%e\w\w)\),%eax", seq[0][1]) if seq[0][0] == "mov" else None
    if not m:
        fail(tag + f": first instruction {seq[0]} does not load the block's cpu slot")
        continue
    block = m.group(1)
    if seq[1] == ("cmp", f"%eax,%gs:0x4({area})"):
        mode, i = "cpu_id", 2
    elif seq[1] == ("cmp", f"%eax,%gs:0x18({area})"):
        mode, i = "mm_cid", 2
    else:
        fail(tag + f": {seq[1]} is no cpu_id/mm_cid check")
        continue
    if seq[i][0] != "jne" or target(seq[i][1]) != abort:
        fail(tag + f": {seq[i]} does not branch to abort")
    i += 1
    if mode == "mm_cid":
        if seq[i] != ("cmpl", f"$0x0,%gs:0x4({area})") or seq[i + 1][0] != "jl" \
                or target(seq[i + 1][1]) != abort:
            fail(tag + f": registered check {seq[i]} {seq[i + 1]}")
        i += 2
    if seq[i] != ("mov", f"0x4({block}),%eax") or seq[i + 1] != ("cmpl", "$0x0,(%eax)") \
            or seq[i + 2][0] != "jne" or target(seq[i + 2][1]) != abort:
        fail(tag + f": ownership check {seq[i:i + 3]}")
    last = insns.get(preceding.get(post))
    if not last or last[0] not in ("mov", "add") or not re.search(r",(?:0x0)?\(%e\w\w\)$", last[1]):
        fail(tag + f": last instruction {last} is not a store")
    sections_by_start[start] = (post, abort)
    print(f"ok   {tag} {mode} area={area} block={block} commit={last[0]} {last[1]}")

for i in range(ep_size // 16):
    start = pointer(ep_va + 16 * i, "exit point start")
    exit_ip = pointer(ep_va + 16 * i + 8, "exit point target")
    if start not in sections_by_start:
        fail(f"exit point {i}: {start:#x} is not a checked section start")
        continue
    post, _ = sections_by_start[start]
    branches = [target(v[1]) for a, v in insns.items()
                if start <= a < post and v[0] in ("jne", "je")]
    if exit_ip not in branches:
        fail(f"exit point {start:#x} -> {exit_ip:#x}: no branch to it inside the section")
    else:
        print(f"ok   exit point {start:#x} -> {exit_ip:#x}")
print(f"{len(descs)} descriptors, {ep_size // 16} exit points, {errors} errors")
sys.exit(1 if errors else 0)
