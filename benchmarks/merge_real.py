"""Merge throughput on real system traces, against `cat`, on one thread and on all cores.

    python benchmarks/merge_real.py [--size-mb 400] [--reps 3] [--work-dir DIR] [--keep]

The pair is made of the real traces in ../shared/testdata/real (traces we did
not write): the guest is the Android-emulator trace
(android12_emulator_x86_64_sched_perf.pftrace: sched/ftrace, perf samples,
process data) repeated, the host the Android phone's ftrace trace
(android11_s20_sched_ftrace_sdk.perfetto-trace) repeated, half of --size-mb
each (a concatenation of traces is a valid trace: a repeated field). The guest
is moved into the host with a fixed time diff, the common offline case:

    python -m vperfetto.merge --host HOST --guest vm1=GUEST -o OUT --time-diff NS -q

Measured in one run, each a fresh process (wall, CPU and peak RSS from wait4's
rusage): `cat guest host > /dev/null` (warm cache, as the merge reads it),
`cat guest host > new file` (the cost of writing as many bytes), the merge
with --threads 1 and with the default (as many threads as pay), at the full
size and at half of it (peak RSS must not grow with the input). The outputs of
both thread counts must be the same bytes. Targets (the issue's): >= 500 MB/s
with the default threads, peak RSS <= 64 MB and flat in the input size.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from merge import MB, Result, run_child  # noqa: E402

REAL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "testdata", "real")
GUEST = "android12_emulator_x86_64_sched_perf.pftrace"
HOST = "android11_s20_sched_ftrace_sdk.perfetto-trace"
TIME_DIFF = 100_000_000_000  # the guest started tracing 100 s after the host


def make_pair(work: str, total_mb: float, tag: str):
    paths = []
    for name in (GUEST, HOST):
        with open(os.path.join(REAL, name), "rb") as f:
            data = f.read()
        reps = max(1, round(total_mb * MB / 2 / len(data)))
        path = os.path.join(work, f"{tag}-{name}")
        if not os.path.exists(path) or os.path.getsize(path) != reps * len(data):
            with open(path, "wb") as f:
                for _ in range(reps):
                    f.write(data)
        paths.append(path)
    return paths[0], paths[1], sum(os.path.getsize(p) for p in paths) / MB


def merge_cmd(guest, host, out, threads):
    return [sys.executable, "-m", "vperfetto.merge", "--host", host, "--guest", f"vm1={guest}",
            "-o", out, "--time-diff", str(TIME_DIFF), "-q", "--threads", str(threads)]


def measure(label, cmd, mb, reps, out=None):
    """`out`: the file the command writes, removed before each run (not timed),
    so that every run writes a new file as a user's merge does (replacing a
    file costs ext4 a flush of the new one and the freeing of the old one:
    ~0.5 s for 400 MB here, for cat as for the merge)."""
    runs = []
    for _ in range(reps):
        if out and os.path.exists(out):
            os.unlink(out)
        r = run_child(cmd, discard_output=True)
        if r[5] != 0:
            raise SystemExit(f"{label} failed ({r[5]}): {r[4].strip()}")
        runs.append(r)
    return Result(label, mb, runs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=float, default=400, help="guest+host size in MB (default 400)")
    ap.add_argument("--reps", type=int, default=3, help="runs of each measurement (median shown)")
    ap.add_argument("--work-dir", help="where the pair is made (default: a new temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep (and reuse) the pair")
    a = ap.parse_args(argv)
    if not os.path.isdir(REAL):
        print(f"skipped: {os.path.normpath(REAL)} (the real traces) is not beside the project")
        return 0
    work = a.work_dir or tempfile.mkdtemp(prefix="vperfetto-merge-real-")
    os.makedirs(work, exist_ok=True)
    load0 = os.getloadavg()
    try:
        guest, host, mb = make_pair(work, a.size_mb, "full")
        hguest, hhost, hmb = make_pair(work, a.size_mb / 2, "half")
        out, out1 = os.path.join(work, "out.pftrace"), os.path.join(work, "out1.pftrace")
        cat = ["cat", guest, host]
        run_child(cat, discard_output=True)  # warm the cache
        rows = [measure("cat guest host > /dev/null (warm)", cat, mb, a.reps)]
        wfile = os.path.join(work, "write-floor.tmp")
        rows.append(measure("cat guest host > new file (write floor)",
                            ["sh", "-c", 'cat "$1" "$2" > "$3"', "sh", guest, host, wfile], mb, a.reps,
                            out=wfile))
        one = measure("merge --threads 1", merge_cmd(guest, host, out1, 1), mb, a.reps, out=out1)
        auto = measure("merge (default threads)", merge_cmd(guest, host, out, 0), mb, a.reps, out=out)
        same = filecmp.cmp(out, out1, shallow=False)
        half = measure("merge (default threads), half size", merge_cmd(hguest, hhost, out, 0), hmb,
                       a.reps, out=out)
        rows += [one, auto, half]
    finally:
        if not a.keep and not a.work_dir:
            shutil.rmtree(work, ignore_errors=True)

    cat_r = rows[0]
    print(f"merge of real traces: guest {GUEST} + host {HOST}, repeated to {mb:.0f} MB "
          f"(cores: {len(os.sched_getaffinity(0))}, load at start {load0[0]:.1f})")
    print(f"{'':44} {'MB/s':>7} {'wall s':>7} {'cpu s':>6} {'RSS MB':>7} {'x cat':>6}")
    for r in rows:
        ratio = r.wall / cat_r.wall
        print(f"{r.label:44} {r.mbps:7.0f} {r.wall:7.2f} {r.cpu:6.2f} {r.rss:7.1f} {ratio:6.2f}")
    ok_speed = auto.mbps >= 500
    ok_rss = auto.rss <= 64 and auto.rss - half.rss <= 8
    print(f"target >= 500 MB/s with the default threads: {auto.mbps:.0f} MB/s "
          f"{'PASS' if ok_speed else 'MISS'}")
    print(f"target peak RSS <= 64 MB, flat: {auto.rss:.1f} MB (half size {half.rss:.1f} MB) "
          f"{'PASS' if ok_rss else 'MISS'}")
    print(f"outputs of --threads 1 and the default are the same bytes: {'PASS' if same else 'MISS'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
