#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Counts the instructions of one iteration of the benchmark's measured loops.

For each loop_{counter,spinlock,list,buffer}_{lib,min}_{cpu_id,mm_cid}
function of the given binaries (objdump -d), takes the backward jump with
the earliest target (the outer loop's back edge) and counts the
instructions from that target to the jump: the fall-through hot path of
one iteration when nothing aborts.

    python3 hotloop.py bin/rseq_bench-inline bin/rseq_bench-librseq

Standard library only.
"""

import re
import subprocess
import sys

LOOP = re.compile(r"loop_(counter|list|buffer|spinlock)_(lib|min)_(cpu_id|mm_cid)$")


def functions(binary):
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", binary],
                         capture_output=True, text=True, check=True).stdout
    funcs, cur = {}, None
    for line in out.splitlines():
        m = re.match(r"^([0-9a-f]+) <(\S+)>:$", line)
        if m:
            cur = m.group(2)
            funcs[cur] = []
            continue
        m = re.match(r"^\s+([0-9a-f]+):\s+(\S+)\s*(.*)$", line)
        if m and cur:
            funcs[cur].append((int(m.group(1), 16), m.group(2), m.group(3)))
    return funcs


def hot_path(insns):
    best = None
    for addr, op, arg in insns:
        m = re.match(r"([0-9a-f]+) <", arg)
        if op.startswith("j") and m:
            target = int(m.group(1), 16)
            if target < addr and (best is None or target < best[0]):
                best = (target, addr)
    if best is None:
        return None
    return sum(1 for a, _, _ in insns if best[0] <= a <= best[1])


def main():
    for binary in sys.argv[1:]:
        funcs = functions(binary)
        for name in sorted(funcs):
            if LOOP.match(name):
                print("%s\t%s\t%s" % (binary, name, hot_path(funcs[name])))


if __name__ == "__main__":
    main()
