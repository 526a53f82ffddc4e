#!/usr/bin/env python3
"""Runs some of mimalloc-bench's programs under LD_PRELOAD against the peers.

usage: python3 bench/mimalloc-bench.py CHECKOUT [--reps N] [--procs P] [TEST ...]

CHECKOUT is a checkout of https://github.com/daanx/mimalloc-bench (only its `bench/` folder is
read; nothing of it is copied into this repository). The programs are built with -O3 into
target/mimalloc-bench/, this crate's preload library is built (`cargo build --release -p
arena-malloc-preload`), and every test runs once per allocator per repetition, the order
rotating between repetitions: glibc, arena (ARENA_MALLOC_RUNS=0), arena+runs
(ARENA_MALLOC_RUNS=1), and Debian's mimalloc, jemalloc and tcmalloc where installed (`bash
bench/install-peers.sh`). Times are mimalloc-bench's own (bench.sh): the wall time, or for the
tests that run for a fixed time, the relative time it derives from their throughput. The table
gives medians, and each of ours divided by the fastest peer's (below 1: faster than every peer).

TESTs (default: all): xmalloc-testN larsonN mstressN rptestN glibc-thread cache-scratchN,
with bench.sh's arguments for P threads (default: the number of CPUs).
"""

import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "target", "mimalloc-bench")
LIBDIR = "/usr/lib/x86_64-linux-gnu"
PEERS = [
    ("mimalloc", "libmimalloc.so.2"),
    ("jemalloc", "libjemalloc.so.2"),
    ("tcmalloc", "libtcmalloc_minimal.so.4"),
]


def first_float(pattern, text):
    m = re.search(pattern, text)
    return float(m.group(1)) if m else None


def per_ops(pattern, scale):
    def f(out, _wall):
        ops = first_float(pattern, out)
        return scale / ops if ops else None

    return f


def tests(procs):
    """name -> (program, source files, compiler, arguments, how to read its time)."""
    p = str(procs)
    wall = lambda _out, t: t  # noqa: E731
    return {
        "xmalloc-testN": ("xmalloc-test", ["xmalloc-test/xmalloc-test.c"], "cc",
                          ["-w", p, "-t", "5", "-s", "64"],
                          lambda out, _t: first_float(r"rtime: ([0-9.]+)", out)),
        "larsonN": ("larson", ["larson/larson.cpp"], "c++",
                    ["5", "8", "1000", "5000", "100", "4141", p],
                    lambda out, _t: first_float(r" time: ([0-9.]+)", out)),
        "mstressN": ("mstress", ["mstress/mstress.c"], "cc", [p, "50", "25"], wall),
        "rptestN": ("rptest", ["rptest/rptest.c", "rptest/thread.c", "rptest/timer.c"], "cc",
                    [p, "0", "1", "2", "500", "1000", "100", "8", "16000"],
                    per_ops(r"\.\.\.([0-9]+) memory ops", 2e6)),
        "glibc-thread": ("glibc-thread", ["glibc-bench/bench-malloc-thread.c"], "cc", [p],
                         per_ops(r"^\s*([0-9.]+)", 1e9)),
        "cache-scratchN": ("cache-scratch", ["cache-scratch/cache-scratch.cpp"], "c++",
                           [p, "1000", "1", "2000000", p], wall),
    }


def build(checkout, spec):
    prog, srcs, compiler, _, _ = spec
    exe = os.path.join(OUT, prog)
    files = [os.path.join(checkout, "bench", s) for s in srcs]
    incl = ["-I" + os.path.dirname(files[0])]
    libs = ["-lm"] if compiler == "cc" else []
    subprocess.run([compiler, "-O3", "-pthread", *incl, *files, "-o", exe, *libs],
                   check=True, stderr=subprocess.DEVNULL)
    return exe


# A child forked from this Python process starts with its resident pages, and its peak RSS
# (ru_maxrss) counts them even after exec: GNU time, a small process, measures the program.
GNU_TIME = "/usr/bin/time"
# Most seconds one run may take: rptest has hung (every thread asleep, under glibc too).
TIMEOUT_S = 120


def run_once(exe, args, env):
    """Runs one test; returns its output, wall time, peak RSS in MiB (nan unknown), status."""
    with tempfile.TemporaryFile() as f, tempfile.NamedTemporaryFile("r") as peak:
        cmd = [exe, *args]
        if os.path.exists(GNU_TIME):
            cmd = [GNU_TIME, "-f", "%M", "-o", peak.name, *cmd]
        start = time.monotonic()
        # A session of its own: a timeout kills GNU time and the program under it.
        proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, cwd=OUT,
                                start_new_session=True)
        try:
            status = proc.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            status = "timeout"
        wall = time.monotonic() - start
        f.seek(0)
        out = f.read().decode(errors="replace")
        kib = peak.read().strip().splitlines()
    mib = int(kib[-1]) / 1024 if kib and kib[-1].isdigit() else float("nan")
    return out, wall, mib, status


def main():
    argv = sys.argv[1:]
    if not argv or argv[0].startswith("-"):
        sys.exit(__doc__)
    checkout, rest = argv[0], argv[1:]
    reps, procs, wanted = 3, os.cpu_count() or 2, []
    while rest:
        a = rest.pop(0)
        if a == "--reps":
            reps = int(rest.pop(0))
        elif a == "--procs":
            procs = int(rest.pop(0))
        else:
            wanted.append(a)
    table = tests(procs)
    for w in wanted:
        if w not in table:
            sys.exit(f"unknown test {w}; known: {' '.join(table)}")
    wanted = wanted or list(table)
    os.makedirs(OUT, exist_ok=True)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "arena-malloc-preload"],
                   cwd=ROOT, check=True)
    lib = os.path.join(ROOT, "target", "release", "libarena_malloc.so")
    allocs = [("glibc", {}),
              ("arena", {"LD_PRELOAD": lib, "ARENA_MALLOC_RUNS": "0"}),
              ("arena+runs", {"LD_PRELOAD": lib, "ARENA_MALLOC_RUNS": "1"})]
    for name, so in PEERS:
        path = os.path.join(LIBDIR, so)
        if os.path.exists(path):
            allocs.append((name, {"LD_PRELOAD": path}))
        else:
            print(f"note: {path} missing (bash bench/install-peers.sh); {name} skipped")
    names = [a for a, _ in allocs]
    print(f"mimalloc-bench, {procs} threads, {reps} repetitions, medians: seconds / peak MiB"
          + ("" if os.path.exists(GNU_TIME) else f" (no {GNU_TIME}: peak RSS unknown)") + "\n")
    print("| test | " + " | ".join(names) + " | arena ÷ fastest peer | arena+runs ÷ fastest peer |")
    print("|---" * (len(names) + 3) + "|")
    ratios = {"arena": [], "arena+runs": []}
    for test in wanted:
        spec = table[test]
        exe = build(checkout, spec)
        times = {a: [] for a in names}
        rss = {a: [] for a in names}
        for i in range(reps):
            k = i % len(allocs)
            for a, extra in allocs[k:] + allocs[:k]:
                env = dict(os.environ)
                env.pop("LD_PRELOAD", None)
                env.update(extra)
                out, wall, peak, status = run_once(exe, spec[3], env)
                t = spec[4](out, wall) if status == 0 else None
                times[a].append(t if t is not None else float("nan"))
                rss[a].append(peak)
                if t is None:
                    print(f"note: {test} under {a} failed (status {status}): {out[-200:]!r}")
        med = {a: statistics.median(times[a]) for a in names}
        peers = [med[a] for a in names if not a.startswith("arena") and med[a] == med[a]]
        best = min(peers) if peers else float("nan")
        cells = [f"{med[a]:.3f} / {statistics.median(rss[a]):.0f}" for a in names]
        ours = []
        for a in ("arena", "arena+runs"):
            r = med[a] / best
            ratios[a].append(r)
            ours.append(f"{r:.2f}×")
        print(f"| {test} | " + " | ".join(cells) + " | " + " | ".join(ours) + " |", flush=True)
    geo = {a: statistics.geometric_mean([r for r in v if r == r] or [float("nan")])
           for a, v in ratios.items()}
    print("| geomean | " + " | ".join("" for _ in names)
          + f" | {geo['arena']:.2f}× | {geo['arena+runs']:.2f}× |")


if __name__ == "__main__":
    main()
