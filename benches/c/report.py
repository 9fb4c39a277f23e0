#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Runs the C benchmark of librseq and prints one table.

Runs bin/rseq_bench-inline (every workload and the baselines) and
bin/rseq_bench-noinline (the library rows, through the exported
functions), then both again with GLIBC_TUNABLES=glibc.pthread.rseq=0 for
the thread create+exit and registration rows (the library owns
registration there). Prints every row with its ratios to the relevant
baselines of the same run, then the targets with PASS / MISS.

    python3 report.py --stage /path/to/prefix      # LD_LIBRARY_PATH=prefix/lib
    python3 report.py --markdown > table.md        # Markdown (BENCHMARKS.md)
    python3 report.py --csv rows.csv               # also write CSV
    python3 report.py --save-raw DIR / --load-raw DIR   # keep / reuse raw output

Standard library only.
"""

import argparse
import csv
import os
import signal
import subprocess
import sys

COLUMNS = ["workload", "variant", "threads", "mode", "median_ns", "min_ns", "max_ns", "iters",
           "runs", "aborts"]

# Display order of the workload groups.
GROUPS = ["cpu_read", "call", "counter", "spinlock", "list", "buffer", "memcpy_buffer", "cpu_op_addv",
          "membarrier_rseq_cpu", "thread_create_exit", "registration"]

# Groups measured against the librseq-equivalent baseline.
LIBRSEQ_GROUPS = ["counter", "spinlock", "list", "buffer"]

RUNS = [
    # (name, binary, extra args, environment)
    ("inline", "rseq_bench-inline", [], {}),
    # The librseq-equivalent baseline (a reconstruction of librseq's x86_64
    # inline sequences, see rseq_bench.c): only its minimal rows are kept,
    # renamed *.librseq_equiv.
    ("librseq-equiv", "rseq_bench-librseq", ["-w", ",".join(LIBRSEQ_GROUPS)], {}),
    ("noinline", "rseq_bench-noinline", ["-B"], {}),
    ("inline-libreg", "rseq_bench-inline", ["-w", "thread,reg"], {"GLIBC_TUNABLES": "glibc.pthread.rseq=0"}),
    ("noinline-libreg", "rseq_bench-noinline", ["-w", "thread,reg", "-B"],
     {"GLIBC_TUNABLES": "glibc.pthread.rseq=0"}),
]


class Row:
    def __init__(self, fields, source):
        self.workload = fields[0]
        self.variant = fields[1]
        self.threads = int(fields[2])
        self.mode = fields[3]
        self.median = float(fields[4])
        self.min = float(fields[5])
        self.max = float(fields[6])
        self.iters = int(fields[7])
        self.runs = int(fields[8])
        self.aborts = int(fields[9]) if len(fields) > 9 else 0
        self.source = source
        self.ratios = []  # (label, median ratio, min ratio) or (label, text)

    @property
    def group(self):
        return self.workload.split(".")[0]

    def key(self):
        return (self.workload, self.variant, self.threads, self.mode)


class Results:
    def __init__(self):
        self.rows = []
        self.notes = []      # (source, text)
        self.headers = {}    # source -> list of header lines
        self.failures = []   # (source, text)

    def parse(self, source, text, returncode=0):
        self.headers.setdefault(source, [])
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith("#"):
                body = line[1:].strip()
                if body.startswith("CHECK FAILED") or "FAILED" in body:
                    self.failures.append((source, body))
                elif body.startswith("columns:"):
                    pass
                elif "=" in body.split(" ")[0] or body.startswith("rseq_bench"):
                    self.headers[source].append(body)
                else:
                    self.notes.append((source, body))
                continue
            fields = line.split("\t")
            if len(fields) < 9:
                self.notes.append((source, "unparsed: " + line))
                continue
            if source == "librseq-equiv":
                if not fields[0].endswith(".minimal_rseq"):
                    continue
                fields[0] = fields[0][:-len(".minimal_rseq")] + ".librseq_equiv"
            self.rows.append(Row(fields, source))
        if returncode != 0:
            self.failures.append((source, "exit status %d" % returncode))

    def merge_rounds(self):
        """Rows measured in several rounds (same source and key): one row,
        the median of the round medians, the min of the mins, the max of
        the maxes."""
        groups = {}
        order = []
        for r in self.rows:
            k = (r.source,) + r.key()
            if k not in groups:
                groups[k] = []
                order.append(k)
            groups[k].append(r)
        merged = []
        for k in order:
            rs = groups[k]
            first = rs[0]
            if len(rs) > 1:
                meds = sorted(x.median for x in rs)
                first.median = meds[len(meds) // 2] if len(meds) % 2 else \
                    (meds[len(meds) // 2 - 1] + meds[len(meds) // 2]) / 2
                first.min = min(x.min for x in rs)
                first.max = max(x.max for x in rs)
                first.runs = sum(x.runs for x in rs)
                first.aborts = sum(x.aborts for x in rs)
            merged.append(first)
        self.rows = merged

    def find(self, workload, variant=None, threads=1, mode=None, source_prefix=None):
        for r in self.rows:
            if r.workload != workload or r.threads != threads:
                continue
            if variant is not None and r.variant != variant:
                continue
            if mode is not None and r.mode != mode:
                continue
            if source_prefix is not None and not r.source.startswith(source_prefix):
                continue
            return r
        return None


def run_binaries(args, results):
    env_base = dict(os.environ)
    libdir = args.libdir or (os.path.join(args.stage, "lib") if args.stage else None)
    if libdir:
        old = env_base.get("LD_LIBRARY_PATH")
        env_base["LD_LIBRARY_PATH"] = libdir + (":" + old if old else "")
    common = ["-r", str(args.runs), "-t", str(args.ms)]
    if args.single:
        common.append("-1")
    if args.pin:
        common.append("-p")
    glibc_owns = None
    for name, binary, extra, env in RUNS:
        if name.endswith("-libreg"):
            if args.no_libreg:
                continue
            if glibc_owns is False:
                continue  # registration rows of the main run are already library-owned
        if name.startswith("noinline") and args.inline_only:
            continue
        path = os.path.join(args.bindir, binary)
        if not os.access(path, os.X_OK):
            sys.exit("report.py: %s not found (run make first)" % path)
        cmd = [path] + common + extra
        if name == "librseq-equiv":
            if args.no_librseq:
                continue
            wanted = [g for g in LIBRSEQ_GROUPS if not args.groups or g in args.groups.split(",")]
            if not wanted:
                continue
            cmd = [path] + common + ["-w", ",".join(wanted)]
        elif args.groups and not name.endswith("-libreg"):
            cmd += ["-w", args.groups]
        e = dict(env_base)
        e.update(env)
        print("report.py: running %s%s" % (" ".join("%s=%s" % kv for kv in env.items()) + " " if env else "",
                                            " ".join(cmd)), file=sys.stderr, flush=True)
        p = subprocess.run(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if p.stderr.strip():
            sys.stderr.write(p.stderr)
        if args.save_raw:
            os.makedirs(args.save_raw, exist_ok=True)
            with open(os.path.join(args.save_raw, name + ".tsv"), "w") as f:
                f.write(p.stdout)
                f.write("# exit=%d\n" % p.returncode)
        results.parse(name, p.stdout, p.returncode)
        if name == "inline":
            glibc_owns = any("registration=glibc" in h for h in results.headers.get(name, []))
    # More rounds of the library's inline rows and the librseq-equivalent
    # baseline, alternating the two processes, so that both see the same
    # machine conditions (a busy or shared machine drifts between runs).
    wanted = [g for g in LIBRSEQ_GROUPS if not args.groups or g in args.groups.split(",")]
    if wanted and not args.no_librseq:
        for i in range(1, args.rounds):
            for name, binary in (("inline", "rseq_bench-inline"), ("librseq-equiv", "rseq_bench-librseq")):
                cmd = [os.path.join(args.bindir, binary)] + common + ["-w", ",".join(wanted)]
                print("report.py: round %d/%d: %s" % (i + 1, args.rounds, " ".join(cmd)), file=sys.stderr, flush=True)
                p = subprocess.run(cmd, env=env_base, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                if p.stderr.strip():
                    sys.stderr.write(p.stderr)
                if args.save_raw:
                    with open(os.path.join(args.save_raw, "%s.round%d.tsv" % (name, i + 1)), "w") as f:
                        f.write(p.stdout)
                        f.write("# exit=%d\n" % p.returncode)
                results.parse(name, p.stdout, p.returncode)


def load_raw(directory, results):
    rounds = sorted(f for f in os.listdir(directory) if ".round" in f and f.endswith(".tsv"))
    for name, path in [(n, os.path.join(directory, n + ".tsv")) for n, _, _, _ in RUNS] + \
            [(f.split(".round")[0], os.path.join(directory, f)) for f in rounds]:
        if not os.path.exists(path):
            continue
        rc = 0
        lines = []
        with open(path) as f:
            for line in f:
                if line.startswith("# exit="):
                    rc = int(line.split("=", 1)[1])
                else:
                    lines.append(line)
        results.parse(name, "".join(lines), rc)


# ---------------------------------------------------------------------
# Ratios


def ratio(a, b):
    if a is None or b is None or b.median <= 0 or b.min <= 0:
        return None
    return (a.median / b.median, a.min / b.min)


def same_run(res, row, workload, variant="baseline", threads=None, mode=None):
    """The reference row from the run (or the matching inline run) of `row`."""
    threads = row.threads if threads is None else threads
    src = row.source
    # Baselines live in the inline runs; the noinline runs (-B) compare with them.
    candidates = [src, src.replace("noinline", "inline"), "librseq-equiv"]
    for s in candidates:
        for r in res.rows:
            if (r.source == s and r.workload == workload and r.variant == variant
                    and r.threads == threads and (mode is None or r.mode == mode)):
                return r
    return None


def compute_ratios(res):
    for r in res.rows:
        g = r.group
        mode = r.mode if r.mode in ("cpu_id", "mm_cid") else "cpu_id"
        refs = []
        if g == "counter":
            refs = [("librseq-eq", same_run(res, r, "counter.librseq_equiv", mode=mode)),
                    ("min-rseq", same_run(res, r, "counter.minimal_rseq", mode=mode)),
                    ("atomic", same_run(res, r, "counter.shared_atomic")),
                    ("TLS", same_run(res, r, "counter.thread_local"))]
        elif g in ("spinlock", "list", "buffer", "memcpy_buffer"):
            refs = [("librseq-eq", same_run(res, r, g + ".librseq_equiv", mode=mode)),
                    ("min-seq", same_run(res, r, g + ".minimal_rseq", mode=mode))]
        elif g == "cpu_op_addv":
            refs = [("membarrier", same_run(res, r, "membarrier_rseq_cpu"))]
        elif g == "cpu_read":
            refs = [("sched_getcpu", same_run(res, r, "cpu_read.sched_getcpu"))]
        elif g == "registration":
            refs = [("raw", same_run(res, r, "registration.raw_syscall", mode=r.mode))]
        elif g == "thread_create_exit" and r.workload in ("thread_create_exit.rseq_op",
                                                          "thread_create_exit.explicit_reg"):
            e = same_run(res, r, "thread_create_exit.empty", mode=r.mode)
            if e is not None:
                r.ratios.append(("empty", "%+.0f ns vs empty" % (r.median - e.median)))
                refs = [("empty", e)]
        for label, ref in refs:
            if ref is None or ref is r:
                continue
            q = ratio(r, ref)
            if q:
                r.ratios.append((label, q[0], q[1]))


def ratio_text(r):
    out = []
    for item in r.ratios:
        if len(item) == 2:
            out.append(item[1])
        else:
            out.append("%.2fx %s" % (item[1], item[0]))
    return ", ".join(out)


# ---------------------------------------------------------------------
# Targets


def fmt_ns(x):
    if x is None:
        return "-"
    if abs(x) >= 100000:
        return "%.0f" % x
    if abs(x) >= 100:
        return "%.1f" % x
    return "%.2f" % x


def targets(res):
    """(target, measured, PASS/MISS/n/a) rows."""
    out = []
    nmax = max([r.threads for r in res.rows] or [1])

    def lib(workload, threads=1, mode="cpu_id", variant="inline", src="inline"):
        return res.find(workload, variant, threads, mode, source_prefix=src)

    def base(workload, threads=1, mode=None, src="inline"):
        return res.find(workload, "baseline", threads, mode, source_prefix=src)

    def add(name, value_text, ok):
        if ok == "info":
            out.append((name, value_text, "info"))
            return
        out.append((name, value_text, "n/a" if ok is None else ("PASS" if ok else "MISS")))

    def ratio_target(name, a, b, limit, percent=False):
        q = ratio(a, b)
        if q is None:
            add(name, "not measured", None)
            return
        if percent:
            add(name, "%+.1f %% (min-based %+.1f %%)" % ((q[0] - 1) * 100, (q[1] - 1) * 100), q[0] - 1 <= limit)
        else:
            add(name, "%.2fx (min-based %.2fx)" % q, q[0] <= limit)

    # Issue 14: the inline fast paths against librseq's inline code (the
    # librseq-equivalent reconstruction, rseq_bench-librseq, same run).
    for g, label in (("counter", "inline increment"), ("list", "inline list push+pop"),
                     ("buffer", "inline buffer push+pop"), ("spinlock", "inline spinlock lock+unlock")):
        for mode, limit in (("cpu_id", 1.05), ("mm_cid", 1.10)):
            ratio_target("%s <= %.2fx librseq-equivalent (reconstructed, not librseq's binary; 1 thread, %s)"
                         % (label, limit, mode),
                         lib(g, mode=mode), res.find(g + ".librseq_equiv", "baseline", 1, mode), limit)
    inc = lib("counter")
    minimal = base("counter.minimal_rseq", mode="cpu_id")
    ratio_target("inline per-CPU increment <= 1.15x minimal hand-written rseq increment (1 thread, cpu_id)",
                 inc, minimal, 1.15)
    ratio_target("ownership check adds <= 10 % (inline increment vs minimal, 1 thread, cpu_id)",
                 inc, minimal, 0.10, percent=True)
    q = ratio(base("counter.minimal_rseq+owner_check", mode="cpu_id"), minimal)
    if q:
        add("  the check alone: minimal increment + the 2 ownership-check instructions vs minimal",
            "%+.1f %% (min-based %+.1f %%)" % ((q[0] - 1) * 100, (q[1] - 1) * 100), "info")
    inc_mm = lib("counter", mode="mm_cid")
    minimal_mm = base("counter.minimal_rseq", mode="mm_cid")
    if inc_mm and minimal_mm:
        q = ratio(inc_mm, minimal_mm)
        add("  same, mm_cid (the library's mm_cid section also checks cpu_id >= 0)",
            "%+.1f %% (min-based %+.1f %%)" % ((q[0] - 1) * 100, (q[1] - 1) * 100), "info")
    ni = res.find("counter", "noinline", 1, "cpu_id", source_prefix="noinline")
    if ni is None:
        add("RSEQ_NO_INLINE increment <= 4 ns (1 thread, cpu_id)", "not measured", None)
    else:
        add("RSEQ_NO_INLINE increment <= 4 ns (1 thread, cpu_id)",
            "%s ns (min %s)" % (fmt_ns(ni.median), fmt_ns(ni.min)), ni.median <= 4.0)
        floor = base("call.empty_exported_function")
        if floor:
            add("  floor: one call into librseq.so of a function returning a constant (the path makes two)",
                "%s ns" % fmt_ns(floor.median), "info")
            q = ni.median / (2 * floor.median) if floor.median > 0 else None
            qmin = ni.min / (2 * floor.min) if floor.min > 0 else None
            if q is not None and qmin is not None:
                add("RSEQ_NO_INLINE increment <= 1.1x the call floor (two calls of a constant function)",
                    "%.2fx (min-based %.2fx)" % (q, qmin), q <= 1.1)
    if nmax > 1:
        a = base("counter.shared_atomic", threads=nmax)
        b = lib("counter", threads=nmax)
        q = ratio(a, b)
        name = "%d threads (one per CPU): inline increment >= 8x faster than shared atomic" % nmax
        if q:
            add(name, "%.1fx (min-based %.1fx)" % q, q[0] >= 8)
        else:
            add(name, "not measured", None)
    else:
        add("thread per CPU: inline increment >= 8x faster than shared atomic",
            "no thread-per-CPU rows (one CPU, or --single)", None)
    for g, label in (("list", "list push+pop"), ("buffer", "buffer push+pop"),
                     ("memcpy_buffer", "memcpy buffer push+pop (16-byte items)")):
        ratio_target("%s <= 1.2x the same on minimal sequences (1 thread, cpu_id)" % label,
                     lib(g), base(g + ".minimal_rseq", mode="cpu_id"), 1.2)
    own = lib("cpu_op_addv.own_cpu")
    if own:
        add("cpu_op on the caller's CPU <= 100 ns", "%s ns (min %s)" % (fmt_ns(own.median), fmt_ns(own.min)),
            own.median <= 100)
    else:
        add("cpu_op on the caller's CPU <= 100 ns", "not measured", None)
    opv = lib("cpu_op_addv.cpu_opv_own_cpu")
    ratio_target("one-op cpu_opv() on the caller's CPU <= 3x cpu_op_addv there", opv, own, 3.0)
    other = lib("cpu_op_addv.other_cpu")
    mb = base("membarrier_rseq_cpu", mode="-")
    ratio_target("cpu_op on another CPU <= 2x one membarrier(PRIVATE_EXPEDITED_RSEQ, FLAG_CPU)",
                 other, mb, 2.0)
    if other and mb:
        out[-1] = (out[-1][0], out[-1][1] + "; %s vs %s ns" % (fmt_ns(other.median), fmt_ns(mb.median)),
                   out[-1][2])
    # Remote cpu-ops with a thread running on the target: wall ns per
    # operation over all callers (issue 14: 2+ callers at least 2x the
    # throughput before it; the before figure comes from another build,
    # so the row is informational here).
    busy1 = res.find("cpu_op_addv.other_cpu_busy", "inline", 1, "cpu_id")
    for k in (2, 4):
        busyk = res.find("cpu_op_addv.other_cpu_busy", "inline", k, "cpu_id")
        if busy1 and busyk:
            add("remote cpu-op, %d callers, a thread on the target: ns per op (1 caller: %s)" % (k, fmt_ns(busy1.median)),
                "%s ns, %.2fx the throughput of one caller" % (fmt_ns(busyk.median), busy1.median / busyk.median),
                "info")
    # Automatic registration: library-owned registration rows. The binary
    # alternates empty and rseq-op thread runs and reports the per-run
    # difference (added_by_rseq_op); the difference of the medians is the
    # fallback.
    name = "automatic registration adds <= 2 us to thread create+exit (library owns registration)"
    a = res.find("thread_create_exit.added_by_rseq_op", "inline", 1, "reg:lib")
    t = res.find("thread_create_exit.rseq_op", "inline", 1, "reg:lib")
    e = res.find("thread_create_exit.empty", "baseline", 1, "reg:lib")
    if a:
        extra = " (%s vs %s ns)" % (fmt_ns(t.median), fmt_ns(e.median)) if t and e else ""
        add(name, "%+.0f ns, median of per-run differences (min %+.0f, max %+.0f)%s"
            % (a.median, a.min, a.max, extra), a.median <= 2000)
    elif t and e and t.source == e.source:
        d = t.median - e.median
        add(name, "%+.0f ns (%s vs %s ns)" % (d, fmt_ns(t.median), fmt_ns(e.median)), d <= 2000)
    else:
        add(name, "not measured (needs the GLIBC_TUNABLES=glibc.pthread.rseq=0 run)", None)
    return out


# ---------------------------------------------------------------------
# Output


def sort_key(r):
    g = r.group
    gi = GROUPS.index(g) if g in GROUPS else len(GROUPS)
    vi = {"inline": 0, "noinline": 1, "baseline": 2}.get(r.variant, 3)
    mi = {"cpu_id": 0, "mm_cid": 1, "-": 2, "reg:glibc": 3, "reg:lib": 4}.get(r.mode, 5)
    if g in ("thread_create_exit", "registration"):
        return (gi, mi, r.threads, vi, r.workload.replace("added_by", "rseq_op_z"))
    return (gi, r.threads, mi, vi, r.workload)


def table_rows(res):
    rows = []
    for r in sorted(res.rows, key=sort_key):
        rows.append([r.workload, r.variant, str(r.threads), r.mode, fmt_ns(r.median), fmt_ns(r.min),
                     fmt_ns(r.max), ratio_text(r)])
    return rows


HEAD = ["workload", "variant", "thr", "mode", "median ns/op", "min", "max", "ratios (median)"]


def print_text(res, tgts):
    rows = table_rows(res)
    widths = [max(len(HEAD[i]), *(len(x[i]) for x in rows)) if rows else len(HEAD[i]) for i in range(len(HEAD))]
    right = {4, 5, 6}

    def line(cells):
        out = []
        for i, c in enumerate(cells):
            out.append(c.rjust(widths[i]) if i in right else c.ljust(widths[i]))
        return "  ".join(out).rstrip()

    print(line(HEAD))
    print(line(["-" * w for w in widths]))
    prev = None
    for r in rows:
        g = r[0].split(".")[0]
        if prev is not None and g != prev:
            print()
        prev = g
        print(line(r))
    print()
    print("Targets (medians; PASS/MISS from the median, min-based value for reference):")
    w = max(len(t[0]) for t in tgts)
    for name, value, verdict in tgts:
        print("  %-4s  %s  %s" % (verdict, name.ljust(w), value))


def md_escape(s):
    return s.replace("|", "\\|")


def print_markdown(res, tgts):
    rows = table_rows(res)
    print("| " + " | ".join(HEAD) + " |")
    print("|" + "|".join(["---", "---", "---:", "---", "---:", "---:", "---:", "---"]) + "|")
    for r in rows:
        print("| " + " | ".join(md_escape(c) for c in r) + " |")
    print()
    print("| target | measured | |")
    print("|---|---|---|")
    for name, value, verdict in tgts:
        print("| %s | %s | %s |" % (md_escape(name.strip()), md_escape(value), verdict))


def write_csv(res, path):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["source"] + COLUMNS + ["ratios"])
        for r in sorted(res.rows, key=sort_key):
            w.writerow([r.source, r.workload, r.variant, r.threads, r.mode, "%.3f" % r.median, "%.3f" % r.min,
                        "%.3f" % r.max, r.iters, r.runs, r.aborts, ratio_text(r)])


def main():
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quiet under | head
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bindir", default=os.path.join(here, "bin"), help="where the binaries are")
    ap.add_argument("--stage", help="install prefix: runs with LD_LIBRARY_PATH=STAGE/lib")
    ap.add_argument("--libdir", help="library directory for LD_LIBRARY_PATH (overrides --stage)")
    ap.add_argument("--runs", type=int, default=11, help="runs per workload (default 11)")
    ap.add_argument("--ms", type=float, default=20, help="target ms per run (default 20)")
    ap.add_argument("--quick", action="store_true", help="5 runs of 5 ms (a smoke test, noisy)")
    ap.add_argument("--groups", help="comma-separated workload groups for the main runs "
                    "(cpu,counter,spinlock,list,buffer,memcpy,cpuop,thread,reg)")
    ap.add_argument("--single", action="store_true", help="one thread only (no thread-per-CPU rows)")
    ap.add_argument("--pin", action="store_true", help="pin the single-thread runs to one CPU")
    ap.add_argument("--inline-only", action="store_true", help="skip the RSEQ_NO_INLINE binary")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds of the inline and librseq-equivalent rows, alternating the two "
                         "processes (default 3; their figures: median of the round medians)")
    ap.add_argument("--no-librseq", action="store_true",
                    help="skip the librseq-equivalent baseline binary (rseq_bench-librseq)")
    ap.add_argument("--no-libreg", action="store_true",
                    help="skip the GLIBC_TUNABLES=glibc.pthread.rseq=0 runs (library-owned registration)")
    ap.add_argument("--markdown", action="store_true", help="print Markdown tables")
    ap.add_argument("--csv", metavar="FILE", help="also write the rows as CSV")
    ap.add_argument("--save-raw", metavar="DIR", help="keep the binaries' raw output in DIR")
    ap.add_argument("--load-raw", metavar="DIR", help="report on raw output saved earlier; runs nothing")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.ms = 5, 5

    res = Results()
    if args.load_raw:
        load_raw(args.load_raw, res)
    else:
        run_binaries(args, res)
    if not res.rows:
        sys.exit("report.py: no results")
    res.merge_rounds()
    compute_ratios(res)
    tgts = targets(res)

    hdr = res.headers.get("inline") or next(iter(res.headers.values()), [])
    if args.markdown:
        print("Environment: " + "; ".join(h for h in hdr if not h.startswith("rseq_bench")))
        print()
        print_markdown(res, tgts)
    else:
        for h in hdr:
            print("# " + h)
        print("# rows: variant inline/noinline = the library (inline sections / exported functions),")
        print("# baseline = no library operation; mode reg:lib rows ran with GLIBC_TUNABLES=glibc.pthread.rseq=0")
        print()
        print_text(res, tgts)
    if res.notes:
        print()
        print("Notes:")
        for src, n in res.notes:
            print("  [%s] %s" % (src, n))
    if args.csv:
        write_csv(res, args.csv)
    if res.failures:
        print()
        print("FAILURES:")
        for src, n in res.failures:
            print("  [%s] %s" % (src, n))
        sys.exit(1)


if __name__ == "__main__":
    main()
