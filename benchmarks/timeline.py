"""``python -m vperfetto.inspect TRACE --html OUT``: this package against the
pure-Python timeline it replaced, both measured in this run.

    python benchmarks/timeline.py [--trace T] [--baseline REV] [--reps N]

The trace (default) is the 17.5 MB merge of real traces from
../shared/testdata/real: Chrome's track events (the host, 9.3 MB) with three
Android guests' system traces (ftrace scheduling, process stats, perf
samples). The baseline is ``inspect --html`` as it was at REV (default the
last commit before the C++ timeline model): its summary from this
libvperfetto (the same C++ inspect pass) and the Python decoder and renderer
of REV's python/vperfetto/timeline.py, read from git. Each command runs as its
own process (interpreter start-up included), --reps times; the table shows
medians, and the ratio baseline / this package.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _report import machine_line  # noqa: E402  (benchmarks/_report.py)

ROOT = pathlib.Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "testdata" / "real"
BASELINE = "1e5bed7"   # main before the C++ timeline model (issue 15)
TARGET = 10.0

# The old command line, run from a file: the summary of this libvperfetto's
# inspect, the timeline of the old Python module (loaded as vperfetto._old_timeline).
OLD_CLI = r'''
import importlib.util, os, sys
import vperfetto
from vperfetto.inspect import format_summary, inspect
spec = importlib.util.spec_from_file_location("vperfetto._old_timeline", sys.argv[1])
old = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = old
spec.loader.exec_module(old)
trace, out = sys.argv[2], sys.argv[3]
s = inspect(trace)
model = old.model_from_trace(trace)
with open(out + ".tmp", "w", encoding="utf-8") as f:
    f.write(old.render_html(model))
os.replace(out + ".tmp", out)
print(format_summary(s))
'''


def build_trace(path: pathlib.Path) -> pathlib.Path:
    from vperfetto.merge import merge

    if path.exists():
        return path
    chrome = path.with_name("chrome89.pftrace")
    with gzip.open(REAL / "chrome89_windows_track_event.pftrace.gz") as src, open(chrome, "wb") as dst:
        shutil.copyfileobj(src, dst)
    merge(host=chrome, output=path, guests={
        "vm1": REAL / "android12_emulator_x86_64_sched_perf_callstacks.pftrace",
        "vm2": REAL / "android12_emulator_x86_64_sched_perf.pftrace",
        "vm3": REAL / "android11_s20_sched_ftrace_sdk.perfetto-trace"})
    return path


def timed(cmd: list, reps: int) -> list:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True)
        out.append(time.perf_counter() - t0)
        if p.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{p.stderr}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trace", type=pathlib.Path, help="the trace (default: the 17.5 MB merge, built once)")
    ap.add_argument("--baseline", default=BASELINE, help=f"git revision of the old timeline (default {BASELINE})")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--work", type=pathlib.Path, default=pathlib.Path(tempfile.gettempdir()) / "vp-bench-timeline")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    trace = a.trace or build_trace(a.work / "real-merge-17.5MB.pftrace")
    old_src = subprocess.run(["git", "-C", str(ROOT), "show", f"{a.baseline}:python/vperfetto/timeline.py"],
                             capture_output=True, text=True)
    if old_src.returncode:
        sys.exit(f"cannot read the baseline's timeline.py: {old_src.stderr.strip()}")
    old_py = a.work / "old_timeline.py"
    old_py.write_text(old_src.stdout, encoding="utf-8")
    runner = a.work / "old_inspect_html.py"
    runner.write_text(OLD_CLI, encoding="utf-8")
    new_out, old_out = a.work / "new.html", a.work / "old.html"
    new_cmd = [sys.executable, "-m", "vperfetto.inspect", str(trace), "--html", str(new_out)]
    old_cmd = [sys.executable, str(runner), str(old_py), str(trace), str(old_out)]
    size = os.path.getsize(trace) / 1e6
    print(machine_line())
    print(f"trace: {trace} ({size:.1f} MB); baseline: {a.baseline}; {a.reps} runs each, "
          f"interleaved, each a new process")
    new_t, old_t = [], []
    for _ in range(a.reps):   # interleaved: the machine's load hits both alike
        old_t += timed(old_cmd, 1)
        new_t += timed(new_cmd, 1)
    n, o = statistics.median(new_t), statistics.median(old_t)
    print(f"{'inspect --html':<34} {'median s':>9} {'min s':>7} {'HTML MB':>8}")
    print(f"{'baseline (Python decoder, ' + a.baseline + ')':<34} {o:>9.3f} {min(old_t):>7.3f} "
          f"{os.path.getsize(old_out) / 1e6:>8.1f}")
    print(f"{'this package (C++ reader)':<34} {n:>9.3f} {min(new_t):>7.3f} "
          f"{os.path.getsize(new_out) / 1e6:>8.1f}")
    verdict = "PASS" if o / n >= TARGET else "MISS"
    print(f"speed-up: {o / n:.1f}x (baseline median / this median); target >= {TARGET:g}x: {verdict}")
    handover(trace, a.reps)
    return 0


def handover(trace: pathlib.Path, reps: int) -> None:
    """Where model_from_trace's time goes, in this process (best of reps): the
    C++ pass that writes the model as JSON (against inspect's pass alone) and
    the Python side, json.loads and completing the lists (names, absolute
    times). A binary hand-over could save at most the JSON writing and the
    parsing; inspect --html puts the rows into the page as the reader wrote
    them, unparsed, which is why the buffer is JSON."""
    from vperfetto.inspect import inspect
    from vperfetto.timeline import model as tm

    def best(f) -> float:
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            f()
            times.append(time.perf_counter() - t0)
        return min(times)

    tracks, rows, _ = tm.read(trace)
    t_inspect = best(lambda: inspect(trace))
    t_read = best(lambda: tm.read(trace))
    t_python = best(lambda: tm.model(trace, tracks, rows))
    n = sum(len(s) + len(p) for s, p in json.loads(rows))
    mb = (len(tracks) + len(rows)) / 1e6
    print(f"model_from_trace's hand-over (JSON, {mb:.1f} MB, {n:,} slices and counter points): "
          f"C++ pass {t_read * 1e3:.0f} ms (inspect's pass alone {t_inspect * 1e3:.0f} ms), "
          f"Python side (json.loads, lists completed) {t_python * 1e3:.0f} ms = "
          f"{t_python / (t_read + t_python):.0%} of the whole")


if __name__ == "__main__":
    sys.exit(main())
