"""Cost of emitting track events from Python, against the least any tracer must do.

    python benchmarks/python_events.py [--quick] [--pairs N] [--reps R]

The floor: a begin/end pair has to take two timestamps, and the cheapest way
for Python code to read a clock is a bound ``time.perf_counter_ns`` (a C
function called with no arguments: one vectorcall, one vDSO clock read, one
int object). So ``pc(); pc()`` is what the two timestamps of a pair cost when
the interpreter takes them itself: the natural yardstick for "tracing costs
little more than reading the clock". Every row is given as a ratio to a
floor measured in the same run, which keeps the figures comparable across
machines. Counters take one timestamp and are compared with one
``pc()``; the rows without a session are compared with two bare cffi calls
(what a call that does nothing costs through the binding); two calls of a
no-op CPython builtin show what a call into C costs without cffi.

Operations measured (ns per op; for begin/end rows an op is one pair):

* ``vperfetto.begin(name)`` / ``vperfetto.end()`` with a str name;
* a pre-interned ``vperfetto.Event``: ``ev.begin(); ev.end()``, the same via
  locals ``b = ev.begin; e = vperfetto.Event.end``, and ``with ev:``;
* ``with vperfetto.slice(name):``;
* ``vperfetto.counter(name, int)`` and a ``CounterTrack``'s bound ``set_int``;
* begin/end with no session, and with a category the session disables;
* two Python threads emitting pairs at once (wall time per pair over both
  threads, against two threads running the floor the same way): the cost of
  tracing from a multi-threaded program, GIL hand-overs included;
* baseline (a): the PyPI ``perfetto`` package's ``StreamingTraceProtoBuilder``
  (and the in-memory ``TraceProtoBuilder``, serialised and written at the
  end) writing the same begin/end events: TracePacket with timestamp and
  sequence id, TrackEvent SLICE_BEGIN/SLICE_END with name and track uuid.

Traced rows run in a session in "stream" mode writing to a temporary file, so
the cost of the file writes is included; begin/end is repeated in a "ring"
session large enough that nothing is overwritten. After each session the
script checks that every timed event was recorded and none dropped.

Method: ``timeit`` loops of PAIRS ops (GC off, as timeit does), REPS
repetitions, and the benchmarks run round-robin (each once per repetition)
so that the noise of a shared machine falls on all rows alike. Figures are
medians (``best`` is the minimum) and are net of timeit's own loop overhead
(an empty statement timed in the same repetition), which makes every ratio
above 1 slightly stricter, never kinder. Bytes per pair come from two stream traces
with different numbers of pairs: the difference of the file sizes divided by
the difference of the pair counts, so the fixed header and footer cancel.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import timeit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _report import (Row, bytes_at_8_byte_timestamps, machine_line,  # noqa: E402
                     print_table, uptime_note)

import vperfetto  # noqa: E402
from vperfetto._native import lib  # noqa: E402

SDK_V7_BYTES_PER_PAIR = 44
# A fixed 63-bit track uuid (a 9-byte varint, as most random uuids), so the
# baseline's size does not change from run to run.
BASELINE_TRACK_UUID = 0x5EED_0000_0000_0001


def _baseline_modules():
    try:
        from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb2
        from perfetto.trace_builder.proto_builder import (
            StreamingTraceProtoBuilder,
            TraceProtoBuilder,
        )
    except ImportError:
        return None
    return pb2, StreamingTraceProtoBuilder, TraceProtoBuilder


# --- the statements timed -----------------------------------------------------
# Each is a (key, statement) timed with timeit in a namespace made by the
# phase that runs it. One execution of a statement is one op.

REFERENCE = [
    ("loop", "pass"),
    ("floor", "pc(); pc()"),
    ("floor1", "pc()"),
    ("bare", "nop(); nop()"),
    ("builtin", "bi(); bi()"),
]

TRACED = [
    ("begin_end", "begin('name'); end()"),
    ("event", "ev.begin(); ev.end()"),
    ("event_locals", "b(); e()"),
    ("event_with", "with ev: pass"),
    ("slice", "with slice('name'): pass"),
    ("counter", "counter('bench_counter', 5)"),
    ("set_int", "set_int(5)"),
]

RING = [
    ("ring_begin_end", "begin('name'); end()"),
    ("ring_event", "ev.begin(); ev.end()"),
]

OFF = [
    ("off_begin_end", "begin('name'); end()"),
    ("off_event", "ev.begin(); ev.end()"),
]

DISABLED = [
    ("dis_begin_end", "begin('name', 'off'); end()"),
    ("dis_event", "ev_off.begin(); ev_off.end()"),
]

# Baseline (a): one begin/end pair with the perfetto package's builders.
BASELINE_PAIR = """\
p = create()
p.timestamp = pc()
p.trusted_packet_sequence_id = 1
t = p.track_event
t.type = BEGIN
t.name = 'name'
t.track_uuid = UUID
write(p)
p = create()
p.timestamp = pc()
p.trusted_packet_sequence_id = 1
t = p.track_event
t.type = END
t.track_uuid = UUID
write(p)
"""

BASELINE_MEM_PAIR = """\
p = add()
p.timestamp = pc()
p.trusted_packet_sequence_id = 1
t = p.track_event
t.type = BEGIN
t.name = 'name'
t.track_uuid = UUID
p = add()
p.timestamp = pc()
p.trusted_packet_sequence_id = 1
t = p.track_event
t.type = END
t.track_uuid = UUID
"""


def _pairs_loop(n: int, ev) -> None:
    b, e = ev.begin, vperfetto.Event.end
    for _ in range(n):
        b()
        e()


def _floor_loop(n: int, ev) -> None:
    pc = time.perf_counter_ns
    for _ in range(n):
        pc()
        pc()


def two_threads(loop, n: int, ev) -> float:
    """Runs ``loop(n, ev)`` in 2 threads at once; wall ns per pair over both threads.

    With the GIL the threads take turns, so this is the cost of a pair when
    two threads trace (the GIL hand-overs included), not a parallel speed-up.
    """
    barrier = threading.Barrier(3)

    def body():
        barrier.wait()
        loop(n, ev)

    threads = [threading.Thread(target=body) for _ in range(2)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter_ns()
    for t in threads:
        t.join()
    return (time.perf_counter_ns() - t0) / (2 * n)


def one_thread(loop, n: int, ev, bench) -> float:
    """``loop(n, ev)`` in this thread, in a stream session: ns per pair.

    The single-thread reference for two_threads (same loop, same timing).
    """
    s = bench.session("stream")
    t0 = time.perf_counter_ns()
    loop(n, ev)
    t = (time.perf_counter_ns() - t0) / n
    bench.finish(s, 2 * n)
    return t


def namespace(**extra):
    ns = {
        "pc": time.perf_counter_ns,
        "nop": lib.vp_abi_version,
        "bi": sys.getrecursionlimit,
        "begin": vperfetto.begin,
        "end": vperfetto.end,
        "slice": vperfetto.slice,
        "counter": vperfetto.counter,
    }
    ns.update(extra)
    return ns


class Bench:
    def __init__(self, pairs: int, tmp: str):
        self.pairs = pairs
        self.tmp = tmp
        self.ns: dict = {}  # key -> [ns per op, one per repetition]
        self.loop: list = []  # timeit loop overhead per repetition
        self.ev = vperfetto.Event("name", "bench")
        self.ev_off = vperfetto.Event("name", "off")
        self.counter_track = vperfetto.CounterTrack("bench_set_int", "count")
        self.baseline = _baseline_modules()

    def time(self, stmt: str, ns: dict, number: int = 0) -> float:
        number = number or self.pairs
        return timeit.Timer(stmt, globals=ns).timeit(number) / number * 1e9

    def run(self, rep: int, stmts, ns: dict) -> None:
        for key, stmt in stmts:
            t = self.time(stmt, ns)
            if key == "loop":
                self.loop.append(t)
                continue
            self.ns.setdefault(key, []).append(t - self.loop[rep])

    def session(self, mode: str, **kw) -> vperfetto.Session:
        path = os.path.join(self.tmp, f"bench_{mode}.pftrace")
        return vperfetto.Session(path, mode=mode, **kw).start()

    def finish(self, s: vperfetto.Session, min_packets: int) -> int:
        """Stops `s`, checks that the timed events were all recorded, removes the file.

        Returns the trace file's size.
        """
        s.stop()
        st = s.stats
        if st["packets_written"] < min_packets or st["packets_dropped"]:
            sys.exit(f"python_events: {s.mode} session recorded {st['packets_written']} "
                     f"packets (expected >= {min_packets}), dropped {st['packets_dropped']}")
        size = os.path.getsize(s.path)
        os.unlink(s.path)
        return size

    def repetition(self, rep: int) -> None:
        n = self.pairs
        ev = self.ev
        self.run(rep, REFERENCE, namespace())
        self.run(rep, OFF, namespace(ev=ev))

        self.ns.setdefault("mt_floor", []).append(two_threads(_floor_loop, n, ev))
        s = self.session("stream")
        self.run(rep, TRACED, namespace(ev=ev, b=ev.begin, e=vperfetto.Event.end,
                                        set_int=self.counter_track.set_int))
        self.ns.setdefault("mt", []).append(two_threads(_pairs_loop, n, ev))
        # 5 rows of pairs, 2 of counters, 2 threads of pairs.
        self.finish(s, 2 * 5 * n + 2 * n + 2 * 2 * n)

        s = self.session("ring", buffer_kb=n * len(RING) * 64 // 1024 + 4096)
        self.run(rep, RING, namespace(ev=ev))
        self.finish(s, 2 * len(RING) * n)

        s = self.session("stream", disabled_categories=["off"])
        self.run(rep, DISABLED, namespace(ev_off=self.ev_off))
        self.finish(s, 0)

        self.ns.setdefault("mt1", []).append(one_thread(_pairs_loop, n, ev, self))
        if self.baseline:
            self.baseline_rep(rep)

    def baseline_rep(self, rep: int) -> None:
        pb2, Streaming, InMemory = self.baseline
        n = self.pairs
        consts = dict(BEGIN=pb2.TrackEvent.TYPE_SLICE_BEGIN, END=pb2.TrackEvent.TYPE_SLICE_END,
                      UUID=BASELINE_TRACK_UUID)
        path = os.path.join(self.tmp, "baseline.pftrace")
        with open(path, "wb") as f:
            builder = Streaming(f)
            self.write_track_descriptor(builder.create_packet, consts["UUID"], builder.write_packet)
            t = self.time(BASELINE_PAIR, namespace(create=builder.create_packet,
                                                    write=builder.write_packet, **consts))
            self.ns.setdefault("pb_stream", []).append(t - self.loop[rep])

        builder = InMemory()
        self.write_track_descriptor(builder.add_packet, consts["UUID"])
        loop = self.time(BASELINE_MEM_PAIR, namespace(add=builder.add_packet, **consts))
        t0 = time.perf_counter_ns()
        with open(path, "wb") as f:
            f.write(builder.serialize())
        tail = (time.perf_counter_ns() - t0) / n
        self.ns.setdefault("pb_memory", []).append(loop - self.loop[rep] + tail)
        del builder
        os.unlink(path)

    @staticmethod
    def write_track_descriptor(new_packet, uuid, write=None):
        p = new_packet()
        p.track_descriptor.uuid = uuid
        p.track_descriptor.name = "bench"
        if write:
            write(p)

    # --- bytes per pair -------------------------------------------------------

    def vp_trace_size(self, pairs: int, stmt: str, ns: dict, incremental: bool,
                      per_op: int) -> int:
        s = self.session("stream", incremental_timestamps=incremental)
        timeit.Timer(stmt, globals=ns).timeit(pairs)
        return self.finish(s, per_op * pairs)

    def bytes_per_pair(self, stmt: str, ns: dict, incremental: bool = True,
                       per_op: int = 2) -> float:
        """Bytes per execution of `stmt` (`per_op` packets): incremental
        timestamps (the default) or absolute ones (as before issue 14)."""
        n1, n2 = self.pairs // 4, self.pairs
        return ((self.vp_trace_size(n2, stmt, ns, incremental, per_op) -
                 self.vp_trace_size(n1, stmt, ns, incremental, per_op)) / (n2 - n1))

    def baseline_bytes_per_pair(self) -> float:
        pb2, Streaming, _ = self.baseline
        consts = dict(BEGIN=pb2.TrackEvent.TYPE_SLICE_BEGIN, END=pb2.TrackEvent.TYPE_SLICE_END,
                      UUID=BASELINE_TRACK_UUID)
        path = os.path.join(self.tmp, "baseline.pftrace")
        sizes = []
        for pairs in (self.pairs // 4, self.pairs):
            with open(path, "wb") as f:
                builder = Streaming(f)
                self.write_track_descriptor(builder.create_packet, consts["UUID"],
                                            builder.write_packet)
                timeit.Timer(BASELINE_PAIR, globals=namespace(
                    create=builder.create_packet, write=builder.write_packet,
                    **consts)).timeit(pairs)
            sizes.append(os.path.getsize(path))
            os.unlink(path)
        return (sizes[1] - sizes[0]) / (self.pairs - self.pairs // 4)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a short run (20k pairs, 3 reps)")
    ap.add_argument("--pairs", type=int, help="ops per timed loop (default 200000)")
    ap.add_argument("--reps", type=int, help="repetitions (default 7)")
    args = ap.parse_args()
    pairs = args.pairs or (20_000 if args.quick else 200_000)
    reps = args.reps or (3 if args.quick else 7)
    if pairs < 1000 or reps < 1:
        ap.error("--pairs must be >= 1000 and --reps >= 1")

    tmp = tempfile.mkdtemp(prefix="vp_py_bench_")
    try:
        b = Bench(pairs, tmp)
        b.repetition(0)  # warm-up: caches, interning, the writer's chunk; discarded
        b.ns.clear()
        b.loop.clear()
        for rep in range(reps):
            b.repetition(rep)
            gc.collect()
        ev_ns = dict(ev=b.ev, b=b.ev.begin, e=vperfetto.Event.end)
        bytes_event = b.bytes_per_pair("b(); e()", ev_ns)
        bytes_event_abs = b.bytes_per_pair("b(); e()", ev_ns, incremental=False)
        bytes_nocat = b.bytes_per_pair("begin('name'); end()", namespace())
        bytes_nocat_abs = b.bytes_per_pair("begin('name'); end()", namespace(), incremental=False)
        bytes_counter = b.bytes_per_pair("counter('bench_counter', 5)", namespace(), per_op=1)
        bytes_counter_abs = b.bytes_per_pair("counter('bench_counter', 5)", namespace(),
                                             incremental=False, per_op=1)
        bytes_pb = b.baseline_bytes_per_pair() if b.baseline else None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    ns = b.ns
    med = {k: statistics.median(v) for k, v in ns.items()}
    floor, floor1, bare = med["floor"], med["floor1"], med["bare"]

    def row(label, key, basis=floor, basis_name="floor", **kw):
        return Row(label, ns[key], basis, basis_name, **kw)

    rows = [
        row("floor: pc(); pc()  (pc = time.perf_counter_ns)", "floor"),
        row("one pc() call", "floor1"),
        row("2 bare cffi calls (lib.vp_abi_version)", "bare"),
        row("2 bare builtin calls (sys.getrecursionlimit)", "builtin"),
        Row("--- stream session ---", note=""),
        row("vperfetto.begin('name') / vperfetto.end()", "begin_end", target=2),
        row("ev.begin(); ev.end()   (ev = Event(name, cat))", "event", target=1.5),
        row("b(); e()   (b = ev.begin; e = Event.end)", "event_locals"),
        row("with ev:", "event_with"),
        row("with vperfetto.slice('name'):", "slice", target=5),
        row("vperfetto.counter('name', 5), per counter", "counter",
            basis=floor1, basis_name="one pc()"),
        row("CounterTrack.set_int(5) (bound), per counter", "set_int",
            basis=floor1, basis_name="one pc()"),
        row("2 threads at once, b(); e(): wall ns per pair (both)", "mt",
            basis=med["mt_floor"], basis_name="2-thr floor",
            note=f"(same loop, 1 thread: {med['mt1']:.0f} ns)"),
        row("  2-thread floor: pc(); pc() in 2 threads at once", "mt_floor"),
        Row("--- ring session (big enough, nothing overwritten) ---", note=""),
        row("vperfetto.begin('name') / vperfetto.end()", "ring_begin_end", target=2),
        row("ev.begin(); ev.end()", "ring_event", target=1.5),
        Row("--- not recording ---", note=""),
        row("no session: begin('name') / end()", "off_begin_end",
            basis=bare, basis_name="bare calls"),
        row("no session: ev.begin(); ev.end()", "off_event",
            basis=bare, basis_name="bare calls"),
        row("disabled category: begin('name', 'off') / end()", "dis_begin_end",
            basis=bare, basis_name="bare calls"),
        row("disabled category: ev_off.begin(); ev_off.end()", "dis_event",
            basis=bare, basis_name="bare calls"),
        Row("--- trace size (stream) ---", note=""),
        Row("bytes per pair: Event with category", [bytes_event], unit="B",
            target=SDK_V7_BYTES_PER_PAIR, target_kind="abs",
            note="(incremental timestamps; SDK v7 wrote 44 B: reported, not measured here)"),
        Row("  same, absolute timestamps (before issue 14)", [bytes_event_abs], unit="B"),
        Row("  same, absolute, with 8-byte timestamps (uptime > 6.5 days)",
            [bytes_at_8_byte_timestamps(bytes_event_abs)], unit="B",
            note="(computed from the row above, not measured: no verdict)"),
        Row("bytes per pair: begin('name') without category", [bytes_nocat], unit="B",
            target=SDK_V7_BYTES_PER_PAIR, target_kind="abs"),
        Row("  same, absolute timestamps", [bytes_nocat_abs], unit="B"),
        Row("bytes per sample: counter('bench_counter', 5)", [bytes_counter], unit="B",
            target=22, target_kind="abs"),
        Row("  same, absolute timestamps", [bytes_counter_abs], unit="B"),
    ]
    if b.baseline:
        rows += [
            Row("--- baseline (a): PyPI perfetto trace_builder ---", note=""),
            row("StreamingTraceProtoBuilder, begin+end packets", "pb_stream"),
            row("TraceProtoBuilder (in memory) + serialize + write", "pb_memory"),
            Row("bytes per pair: perfetto trace_builder", [bytes_pb], unit="B"),
        ]
    else:
        rows.append(Row("baseline (a): the PyPI 'perfetto' package is not installed",
                        note="(pip install perfetto)"))

    from vperfetto import tracing
    backend = ("hot calls: _vperfetto_fast builtins, the rest cffi" if tracing._fast
               else "all calls through cffi (VPERFETTO_PURE_CFFI or no _vperfetto_fast)")
    print(f"vperfetto {vperfetto.__version__} from Python ({backend})")
    print(f"machine: {machine_line()}")
    print(f"{pairs} ops per timeit loop, {reps} repetitions round-robin; ns per op, net of the "
          f"timeit loop overhead ({statistics.median(b.loop):.1f} ns/iteration, median)")
    print(f"floor (pc(); pc()) on this machine: {floor:.1f} ns median; "
          f"ratio = median / median of the row named in 'vs'")
    print()
    print_table("Python API", rows)
    print(f"trace size: {uptime_note()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
