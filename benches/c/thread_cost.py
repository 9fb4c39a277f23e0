#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Thread create+join cost with and without the library (issue 14).

Builds c-tests/scenarios/src/syscall_count.c twice (without the library,
and against STAGE through pkg-config), then runs N threads created and
joined one by one per process, by thread kind (idle: never touches the
library; inline: inline sections; explicit: librseq-style register and
unregister), alternating all cases R times, with
GLIBC_TUNABLES=glibc.pthread.rseq=0 (the library owns registration).
Prints the medians of wall and CPU (user+sys) time per thread and their
ratios to the library-less binary. --old LIBDIR adds the same rows
against another build of the library (same headers), for before/after.

    python3 thread_cost.py --stage PREFIX [--old OLDPREFIX/lib] [-n 5000] [-r 9]
"""
import argparse, os, resource, statistics, subprocess, sys, tempfile, time

here = os.path.dirname(os.path.abspath(__file__))
src = os.path.join(here, "..", "..", "c-tests", "scenarios", "src", "syscall_count.c")
ap = argparse.ArgumentParser()
ap.add_argument("--stage", required=True)
ap.add_argument("--old", help="library directory of another build, same headers")
ap.add_argument("-n", type=int, default=5000)
ap.add_argument("-r", type=int, default=9)
a = ap.parse_args()
tmp = tempfile.mkdtemp()
pc = dict(os.environ, PKG_CONFIG_PATH=os.path.join(a.stage, "lib", "pkgconfig"))
flags = subprocess.run(["pkg-config", "--cflags", "--libs", "librseq"], env=pc, check=True,
                       stdout=subprocess.PIPE, text=True).stdout.split()
base, cnt = os.path.join(tmp, "base"), os.path.join(tmp, "cnt")
subprocess.run(["cc", "-std=gnu11", "-O2", "-DNO_LIBRARY", "-o", base, src, "-lpthread"], check=True)
subprocess.run(["cc", "-std=gnu11", "-O2", "-o", cnt, src] + flags + ["-lpthread"], check=True)
libs = [("this", os.path.join(a.stage, "lib"))] + ([("old", a.old)] if a.old else [])
cases = [("none", base, "idle", None)] + [(n, cnt, m, d) for n, d in libs for m in ("idle", "inline", "explicit")]
res = {c: ([], []) for c in cases}
for _ in range(a.r):
    for c in cases:
        env = dict(os.environ, GLIBC_TUNABLES="glibc.pthread.rseq=0")
        if c[3]:
            env["LD_LIBRARY_PATH"] = c[3]
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        if subprocess.run([c[1], c[2], str(a.n)], env=env).returncode:
            sys.exit("thread_cost.py: %s %s failed" % (c[0], c[2]))
        t1 = time.perf_counter()
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        res[c][0].append((t1 - t0) / a.n * 1e9)
        res[c][1].append((r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) / a.n * 1e9)
bw, bc = (statistics.median(v) for v in res[cases[0]])
print("%d threads per process, %d alternating rounds, GLIBC_TUNABLES=glibc.pthread.rseq=0, medians"
      % (a.n, a.r))
print("%-8s %-9s %10s %8s %10s %8s" % ("library", "thread", "wall ns", "ratio", "cpu ns", "ratio"))
for c in cases:
    w, cp = (statistics.median(v) for v in res[c])
    print("%-8s %-9s %10.0f %7.3fx %10.0f %7.3fx" % (c[0], c[2], w, w / bw, cp, cp / bc))
