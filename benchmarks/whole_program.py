"""Whole-program tracing: overhead per Python call, against viztracer and untraced.

    python benchmarks/whole_program.py [--quick] [--reps R]

Two workloads: recursive ``fib(24)`` (call-heavy: 150,049 calls, nothing
else) and a realistic one (stdlib ``json`` dumps/loads, ``re`` matching, a
small class hierarchy with properties and super() calls). Each is run
untraced, traced by ``vperfetto.Profiler`` (ring mode, in memory, large
enough to keep every call; and stream mode, written to the file during the
run) and traced by viztracer (its C tracer, in-memory ring,
``tracer_entries`` large enough to keep every call), round-robin for R repetitions in this process so
that machine noise falls on all alike. Figures are medians.

Per call = (traced - untraced) / calls, where calls is the number of Python
function calls and resumptions (what both tracers record), counted once with
a counting profile function. Two timings per tracer: "in the run" (from the
tracer's start to the end of the workload) and "with the trace written"
(plus stopping and writing the file: vperfetto's stop, which deflates the
ring run's trace at level 1 as profile() and run do by default, viztracer's
``save()`` of its JSON). Bytes per call: the trace file's size divided by
calls (viztracer: its JSON); the stream run is written uncompressed, for
the size without compression.

Targets (from the issue): per-call overhead at most 0.5x viztracer's on
Python >= 3.12, 1.0x on 3.11; at most 16 bytes per call.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _report import Row, machine_line, print_table  # noqa: E402

import vperfetto  # noqa: E402

try:
    import viztracer
except ImportError:
    viztracer = None


# --- workloads ----------------------------------------------------------------

def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def workload_fib():
    fib(24)


class Shape:
    def __init__(self, name):
        self.name = name

    def area(self):
        raise NotImplementedError

    def describe(self):
        return {"name": self.name, "area": round(self.area(), 3)}


class Rect(Shape):
    def __init__(self, w, h):
        super().__init__("rect")
        self.w, self.h = w, h

    def area(self):
        return self.w * self.h


class Square(Rect):
    def __init__(self, s):
        super().__init__(s, s)
        self.name = "square"


class Circle(Shape):
    def __init__(self, r):
        super().__init__("circle")
        self.r = r

    @property
    def diameter(self):
        return 2 * self.r

    def area(self):
        return 3.14159 * self.r * self.r


WORD = re.compile(r"(\w+)=(\d+)")


def parse(line):
    return {k: int(v) for k, v in WORD.findall(line)}


def workload_realistic():
    shapes = []
    for i in range(15000):
        shapes.append(Square(i) if i % 3 == 0 else Rect(i, i + 1) if i % 3 == 1 else Circle(i))
    doc = json.dumps([s.describe() for s in shapes])
    back = json.loads(doc)
    total = 0
    for d in back:
        total += parse(f"area={int(d['area'])} len={len(d['name'])}")["len"]
    return total + sum(c.diameter for c in shapes if isinstance(c, Circle))


WORKLOADS = {"fib(24)": workload_fib, "json+re+classes": workload_realistic}


def count_calls(fn) -> int:
    n = 0

    def prof(frame, event, arg):
        nonlocal n
        if event == "call":
            n += 1

    sys.setprofile(prof)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return n - 0


# --- one timed run of each kind -----------------------------------------------------

def run_untraced(fn):
    t0 = time.perf_counter_ns()
    fn()
    return time.perf_counter_ns() - t0, 0, 0


def run_vperfetto(fn, path, mode="ring", compress=1):
    with vperfetto.Session(path, mode=mode, buffer_kb=1 << 20, compress=compress):
        prof = vperfetto.Profiler()
        t0 = time.perf_counter_ns()
        prof.start()
        fn()
        t1 = time.perf_counter_ns()
        prof.stop()
    t2 = time.perf_counter_ns()
    return t1 - t0, t2 - t0, os.path.getsize(path)


def run_monitoring_floor(fn):
    """sys.monitoring's own cost: PY_START/RESUME/RETURN/YIELD/UNWIND/THROW
    delivered to C callbacks that do nothing (Python 3.12+)."""
    from vperfetto import _vperfetto_profile as _p

    mon = sys.monitoring
    tool = 4
    mon.use_tool_id(tool, "floor")
    E = mon.events
    events = (E.PY_START, E.PY_RESUME, E.PY_THROW, E.PY_RETURN, E.PY_YIELD, E.PY_UNWIND)
    for e in events:
        mon.register_callback(tool, e, _p.c_return)  # returns None at once for these arguments
    mask = 0
    for e in events:
        mask |= e
    mon.set_events(tool, mask)
    try:
        t0 = time.perf_counter_ns()
        fn()
        t1 = time.perf_counter_ns()
    finally:
        mon.set_events(tool, 0)
        for e in events:
            mon.register_callback(tool, e, None)
        mon.free_tool_id(tool)
    return t1 - t0, t1 - t0, 0


def run_viztracer(fn, path):
    tracer = viztracer.VizTracer(tracer_entries=4_000_000, verbose=0, output_file=path)
    t0 = time.perf_counter_ns()
    tracer.start()
    fn()
    t1 = time.perf_counter_ns()
    tracer.stop()
    tracer.save(path)
    t2 = time.perf_counter_ns()
    return t1 - t0, t2 - t0, os.path.getsize(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="3 repetitions")
    a = ap.parse_args()
    reps = 3 if a.quick else a.reps
    tmp = tempfile.mkdtemp(prefix="vp-bench-")
    print(machine_line())
    if viztracer is None:
        print("viztracer is not installed (pip install viztracer==1.1.1): its rows are left out")
    else:
        print(f"viztracer {viztracer.__version__}")
    hook = "sys.monitoring" if sys.version_info >= (3, 12) else "C profile hook"
    print(f"vperfetto {vperfetto.__version__} ({hook}); {reps} repetitions, medians\n")
    target = 0.5 if sys.version_info >= (3, 12) else 1.0
    gc.disable()
    for label, fn in WORKLOADS.items():
        calls = count_calls(fn)
        fn()  # warm up
        res = {"untraced": [], "vp": [], "vz": [], "vps": [], "floor": []}
        for _ in range(reps):
            res["untraced"].append(run_untraced(fn))
            if sys.version_info >= (3, 12):
                res["floor"].append(run_monitoring_floor(fn))
            res["vp"].append(run_vperfetto(fn, os.path.join(tmp, "vp.pftrace")))
            res["vps"].append(run_vperfetto(fn, os.path.join(tmp, "vps.pftrace"), "stream", 0))
            if viztracer is not None:
                res["vz"].append(run_viztracer(fn, os.path.join(tmp, "vz.json")))
        base = statistics.median(r[0] for r in res["untraced"])

        def per_call(kind, idx):
            return [(r[idx] - base) / calls for r in res[kind]]

        vp_run, vp_all = per_call("vp", 0), per_call("vp", 1)
        vp_bytes = statistics.median(r[2] for r in res["vp"]) / calls
        rows = [Row(f"untraced run ({calls} calls), ns per call",
                    [r[0] / calls for r in res["untraced"]])]
        if res["vz"]:
            vz_run, vz_all = per_call("vz", 0), per_call("vz", 1)
            vz_med, vz_all_med = statistics.median(vz_run), statistics.median(vz_all)
            rows += [
                Row("viztracer overhead per call, in the run", vz_run),
                Row("viztracer overhead per call, with the JSON written", vz_all),
                Row("vperfetto overhead per call, in the run", vp_run, vz_med, "viztracer",
                    target=target),
                Row("vperfetto overhead per call, with the trace written", vp_all, vz_all_med,
                    "viztracer", target=target),
                Row("viztracer bytes per call (JSON)",
                    [statistics.median(r[2] for r in res["vz"]) / calls], unit="B"),
            ]
        else:
            rows += [Row("vperfetto overhead per call, in the run", vp_run),
                     Row("vperfetto overhead per call, with the trace written", vp_all)]
        if res["floor"]:
            fl = per_call("floor", 0)
            rows.append(Row("  floor: sys.monitoring delivering the events to no-op C callbacks",
                            fl, statistics.median(res["vz"] and per_call("vz", 0) or vp_run),
                            "viztracer" if res["vz"] else "vperfetto"))
        rows += [
            Row("vperfetto, stream mode (file written during the run), in the run",
                per_call("vps", 0), statistics.median(per_call("vp", 0)), "ring"),
            Row("vperfetto overhead per call vs the untraced call",
                vp_run, base / calls, "untraced"),
            Row("vperfetto bytes per call (protobuf, deflated at level 1)", [vp_bytes], unit="B",
                target=16, target_kind="abs"),
            Row("vperfetto bytes per call, not compressed (the stream run, compress=0)",
                [statistics.median(r[2] for r in res["vps"]) / calls], unit="B"),
        ]
        print_table(f"{label}", rows)
    gc.enable()
    return 0


if __name__ == "__main__":
    sys.exit(main())
