"""The Python tracing API, checked by decoding its traces with the official schema."""

from __future__ import annotations

import collections
import os
import threading
import time

import pytest

import vperfetto
from conftest import (TYPE_BEGIN, TYPE_COUNTER, TYPE_END, TYPE_INSTANT, SEQ_CLEARED, descriptors,
                      load_trace, packet_times, pb2, resolve, slices_by_track)


def test_issue_example_structure(trace_path):
    with vperfetto.Session(trace_path, buffer_kb=8192, categories=["gfx", "io"]) as s:
        vperfetto.set_process_name("guest_app")
        with vperfetto.slice("load_textures", category="gfx", args={"count": 12, "path": "/data"}):
            vperfetto.counter("queue_depth", 3)
            vperfetto.instant("vsync", category="gfx")

        @vperfetto.traced(category="io")
        def read_block(n):
            return n * 2

        assert read_block(21) == 42
        vperfetto.begin("frame")
        vperfetto.end()
    assert s.stop() == str(trace_path)

    trace = load_trace(trace_path)
    events = resolve(trace)
    descs = descriptors(trace)
    procs = [d for d in descs.values() if d.HasField("process")]
    assert [p.process.process_name for p in procs] == ["guest_app"]
    assert procs[0].process.pid == os.getpid()
    threads = [d for d in descs.values() if d.HasField("thread")]
    assert [t.thread.tid for t in threads] == [threading.get_native_id()]
    assert threads[0].parent_uuid == procs[0].uuid

    by_name = {e.name: e for e in events if e.type == TYPE_BEGIN}
    assert by_name["load_textures"].categories == ["gfx"]
    assert by_name["load_textures"].args == {"count": 12, "path": "/data"}
    assert by_name["read_block"].categories == ["io"]
    assert by_name["frame"].categories == []
    inst = [e for e in events if e.type == TYPE_INSTANT]
    assert [(e.name, e.categories) for e in inst] == [("vsync", ["gfx"])]

    # nesting: the instant and the counter fall inside load_textures
    slices = slices_by_track(events)[threads[0].uuid]
    assert sorted(n for n, *_ in slices) == ["frame", "load_textures", "read_block"]
    lt = next(s for s in slices if s[0] == "load_textures")
    assert lt[1] <= inst[0].ts <= lt[2]

    counters = [e for e in events if e.type == TYPE_COUNTER]
    assert [c.counter for c in counters] == [3]
    ctrack = descs[counters[0].track_uuid]
    assert ctrack.name == "queue_depth" and ctrack.HasField("counter")
    assert ctrack.parent_uuid == procs[0].uuid


def test_sequences_flags_and_clock_snapshots(trace_path):
    t0 = vperfetto.boot_time_ns()
    with vperfetto.Session(trace_path):
        vperfetto.begin("a")
        vperfetto.end()
    t1 = vperfetto.boot_time_ns()
    trace = load_trace(trace_path)
    snaps = [p for p in trace.packet if p.HasField("clock_snapshot")
             and p.trusted_packet_sequence_id == 1]
    assert len(snaps) == 2  # start and end
    for s in snaps:
        clocks = {c.clock_id: c.timestamp for c in s.clock_snapshot.clocks}
        assert {pb2.BUILTIN_CLOCK_BOOTTIME, pb2.BUILTIN_CLOCK_MONOTONIC,
                pb2.BUILTIN_CLOCK_REALTIME} <= set(clocks)
        if os.uname().machine in ("x86_64", "i686"):
            assert pb2.BUILTIN_CLOCK_TSC in clocks
        assert t0 <= clocks[pb2.BUILTIN_CLOCK_BOOTTIME] <= t1
    seqs = collections.defaultdict(list)
    times = packet_times(trace)
    for i, p in enumerate(trace.packet):
        seqs[p.trusted_packet_sequence_id].append((p, times[i]))
    writer_seqs = [s for s, ps in seqs.items() if any(p.HasField("track_event") for p, _ in ps)]
    assert len(writer_seqs) == 1
    ps = seqs[writer_seqs[0]]
    # the reset: state cleared, clock 64 the default, defined at this instant
    first = ps[0][0]
    assert first.sequence_flags == SEQ_CLEARED and first.first_packet_on_sequence
    assert first.trace_packet_defaults.timestamp_clock_id == 64
    (boot, inc) = first.clock_snapshot.clocks
    assert boot.clock_id == pb2.BUILTIN_CLOCK_BOOTTIME and t0 <= boot.timestamp <= t1
    assert (inc.clock_id, inc.timestamp, inc.is_incremental) == (64, boot.timestamp, True)
    for p, t in ps[1:]:
        assert p.sequence_flags == pb2.TracePacket.SEQ_NEEDS_INCREMENTAL_STATE
        assert not p.HasField("timestamp_clock_id") and p.timestamp < t1 - t0  # deltas
        assert boot.timestamp <= t <= t1
    assert sum(1 for p, _ in ps if p.HasField("track_event")) == 2


def test_interning_each_name_once_per_sequence(trace_path):
    with vperfetto.Session(trace_path):
        for _ in range(100):
            vperfetto.begin("repeat", category="cat")
            vperfetto.end()
    trace = load_trace(trace_path)
    defs = [e for p in trace.packet if p.HasField("interned_data")
            for e in p.interned_data.event_names if e.name == "repeat"]
    assert len(defs) == 1
    cats = [e for p in trace.packet if p.HasField("interned_data")
            for e in p.interned_data.event_categories]
    assert [c.name for c in cats] == ["cat"]
    assert sum(1 for e in resolve(trace) if e.name == "repeat") == 100


def test_interning_reemitted_after_reset_in_ring_mode(trace_path):
    # A small ring makes every chunk start with a reset; each must re-define
    # the names it uses, so the surviving chunks decode on their own.
    with vperfetto.Session(trace_path, buffer_kb=64, mode="ring") as s:
        for i in range(20000):
            vperfetto.begin("ring_event", category="c", args={"i": i})
            vperfetto.end()
    trace = load_trace(trace_path)
    events = resolve(trace)  # asserts that every iid is defined after its reset
    resets = [p for p in trace.packet if p.sequence_flags & SEQ_CLEARED]
    assert len(resets) > 1
    assert s.stats["chunks_overwritten"] > 0 and s.dropped > 0
    kept = [e for e in events if e.name == "ring_event"]
    assert 0 < len(kept) < 20000
    # the newest events survive in a ring
    assert kept[-1].args["i"] == 19999


def test_annotation_types(trace_path):
    args = {"i": -5, "u": 2**63 + 1, "d": 0.25, "b": True, "f": False, "s": "héllo",
            "o": ("tuple", 1)}
    with vperfetto.Session(trace_path):
        vperfetto.instant("typed", args=args)
    (ev,) = [e for e in resolve(load_trace(trace_path)) if e.name == "typed"]
    assert ev.args == {"i": -5, "u": 2**63 + 1, "d": 0.25, "b": True, "f": False,
                       "s": "héllo", "o": ["tuple", 1]}
    trace = load_trace(trace_path)
    te = next(p.track_event for p in trace.packet
              if p.HasField("track_event") and p.track_event.debug_annotations)
    kinds = {a.WhichOneof("value") for a in te.debug_annotations}
    assert kinds == {"int_value", "uint_value", "double_value", "bool_value", "string_value", None}
    (arr,) = [a for a in te.debug_annotations if a.array_values]
    assert [v.WhichOneof("value") for v in arr.array_values] == ["string_value", "int_value"]


def test_counters_int_and_float_units(trace_path):
    with vperfetto.Session(trace_path):
        vperfetto.counter("depth", 3)
        vperfetto.counter("depth", 4)
        vperfetto.counter("temp", 36.6, unit="celsius")
        mem = vperfetto.CounterTrack("mem", unit="bytes")
        mem.set(1 << 40)
        mem.set_int(7)
        mem.set_float(1.5)
        vperfetto.counter("depth", 5, ts=vperfetto.boot_time_ns())
    trace = load_trace(trace_path)
    descs = descriptors(trace)
    events = [e for e in resolve(trace) if e.type == TYPE_COUNTER]
    by_track = collections.defaultdict(list)
    for e in events:
        by_track[descs[e.track_uuid].name].append(e.counter)
    assert by_track == {"depth": [3, 4, 5], "temp": [36.6], "mem": [1 << 40, 7, 1.5]}
    units = {d.name: d.counter for d in descs.values() if d.HasField("counter")}
    assert units["mem"].unit == pb2.CounterDescriptor.UNIT_SIZE_BYTES
    assert units["temp"].unit_name == "celsius"
    assert len({d.uuid for d in descs.values() if d.HasField("counter")}) == 3


def test_flows_tracks_and_explicit_timestamps(trace_path):
    flow = vperfetto.new_flow_id()
    with vperfetto.Session(trace_path):
        queue = vperfetto.Track("gpu queue")
        sub = vperfetto.Track("sub", parent=queue)
        t0 = vperfetto.boot_time_ns()
        with vperfetto.slice("submit", flow=flow):
            pass
        queue.begin("execute", ts=t0 + 1000, terminating_flow=[flow])
        queue.end(ts=t0 + 5000)
        with sub.slice("child", args={"k": 1}):
            sub.instant("mark")
        assert queue.uuid != sub.uuid != 0
    trace = load_trace(trace_path)
    descs = descriptors(trace)
    assert descs[queue.uuid].name == "gpu queue"
    assert descs[sub.uuid].parent_uuid == queue.uuid
    events = resolve(trace)
    submit = next(e for e in events if e.name == "submit")
    execute = next(e for e in events if e.name == "execute")
    assert submit.flows == [flow] and execute.terminating_flows == [flow]
    assert execute.track_uuid == queue.uuid and execute.ts == t0 + 1000
    slices = slices_by_track(events)
    assert slices[queue.uuid] == [("execute", t0 + 1000, t0 + 5000, 0)]
    assert [s[0] for s in slices[sub.uuid]] == ["child"]


def test_thread_names_and_per_thread_sequences(trace_path):
    def work(i):
        vperfetto.set_thread_name(f"worker-{i}")
        with vperfetto.slice("job", args={"i": i}):
            pass

    with vperfetto.Session(trace_path):
        ts = [threading.Thread(target=work, args=(i,)) for i in range(3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    trace = load_trace(trace_path)
    descs = descriptors(trace)
    names = sorted(d.thread.thread_name for d in descs.values() if d.HasField("thread"))
    assert names == ["worker-0", "worker-1", "worker-2"]
    jobs = [e for e in resolve(trace) if e.name == "job"]
    assert len({e.seq for e in jobs}) == 3
    assert len({e.track_uuid for e in jobs}) == 3


@pytest.mark.parametrize("mode", ["stream", "ring"])
def test_many_threads_nothing_lost(tmp_path, mode):
    n_threads, n = 8, 50_000
    path = tmp_path / f"{mode}.pftrace"
    ev = vperfetto.Event("hot", "mt")
    barrier = threading.Barrier(n_threads)

    def work(i):
        barrier.wait()
        b, e = ev.begin, ev.end
        for _ in range(n):
            b()
            e()

    with vperfetto.Session(path, mode=mode, buffer_kb=256 * 1024) as s:
        ts = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    assert s.dropped == 0
    trace = load_trace(path)
    events = resolve(trace)
    per_seq = collections.Counter((e.seq, e.type) for e in events if e.name == "hot" or e.type == TYPE_END)
    seqs = {seq for seq, _ in per_seq}
    assert len(seqs) == n_threads
    for seq in seqs:
        assert per_seq[(seq, TYPE_BEGIN)] == n and per_seq[(seq, TYPE_END)] == n
    # each thread's slices nest properly and timestamps never go backwards
    last = {}
    for e in events:
        assert e.ts >= last.get(e.seq, 0)
        last[e.seq] = e.ts
    assert sum(len(v) for v in slices_by_track(events).values()) == n_threads * n


def test_streaming_writes_while_running(trace_path):
    s = vperfetto.Session(trace_path, mode="stream").start()
    payload = "x" * 1000
    for i in range(2000):
        vperfetto.instant("blob", args={"p": payload})
    s.flush()
    size_mid = os.path.getsize(trace_path)
    assert size_mid > 1_000_000  # on disk before stop
    vperfetto.instant("after_flush")
    s.stop()
    events = resolve(load_trace(trace_path))
    assert sum(e.name == "blob" for e in events) == 2000
    assert events[-1].name == "after_flush"


def test_flush_in_ring_mode_keeps_trace_valid(trace_path):
    with vperfetto.Session(trace_path, mode="ring") as s:
        vperfetto.begin("outer")
        s.flush()
        vperfetto.instant("mid", category="c")
        vperfetto.end()
    events = resolve(load_trace(trace_path))
    assert [e.name for e in events if e.type != TYPE_END] == ["outer", "mid"]
    slices_by_track(events)


def test_discard_mode_counts_drops(trace_path):
    with vperfetto.Session(trace_path, mode="discard", buffer_kb=16) as s:
        for i in range(10000):
            vperfetto.instant("fill", args={"i": i})
    stats = s.stats
    assert stats["packets_dropped"] > 0 and stats["chunks_discarded"] > 0
    trace = load_trace(trace_path)
    kept = [e for e in resolve(trace) if e.name == "fill"]
    assert len(kept) + stats["packets_dropped"] >= 10000
    # the oldest survive in discard mode
    assert kept[0].args["i"] == 0
    ts = [p.trace_stats for p in trace.packet if p.HasField("trace_stats")]
    assert len(ts) == 1
    assert ts[0].buffer_stats[0].chunks_discarded == stats["chunks_discarded"]
    assert ts[0].buffer_stats[0].trace_writer_packet_loss == stats["packets_dropped"]


def test_category_filtering(trace_path):
    with vperfetto.Session(trace_path, categories=["on", "also"], disabled_categories=["also"]):
        vperfetto.begin("outer", category="on")
        vperfetto.begin("filtered", category="off")
        vperfetto.instant("filtered2", category="also")
        vperfetto.end()  # ends "filtered": nothing written
        vperfetto.instant("kept", category="on")
        vperfetto.instant("uncategorized")
        vperfetto.end()  # ends "outer"
        late = vperfetto.Event("late", category="late_cat")  # registered mid-session
        late.begin()
        late.end()
    events = resolve(load_trace(trace_path))
    assert [e.name for e in events if e.type != TYPE_END] == ["outer", "kept", "uncategorized"]
    (outer,) = slices_by_track(events).values()
    assert [s[0] for s in outer] == ["outer"]


def test_outside_session_is_a_no_op(trace_path):
    assert not vperfetto.is_tracing()
    vperfetto.begin("nothing")
    vperfetto.counter("nothing", 1)
    vperfetto.instant("nothing")
    vperfetto.end()
    with vperfetto.Session(trace_path):
        assert vperfetto.is_tracing()
        vperfetto.end()  # its begin was outside the session: ignored
        vperfetto.instant("inside")
    assert not vperfetto.is_tracing()
    vperfetto.instant("after")
    events = resolve(load_trace(trace_path))
    assert [e.name for e in events] == ["inside"]


def test_end_without_begin_is_ignored(trace_path):
    with vperfetto.Session(trace_path):
        vperfetto.end()
        vperfetto.end()
        vperfetto.begin("x")
        vperfetto.end()
        vperfetto.end()
    events = resolve(load_trace(trace_path))
    assert [e.type for e in events] == [TYPE_BEGIN, TYPE_END]


def test_event_handles_and_unicode(trace_path):
    ev = vperfetto.Event("naïve ✓", "gfx")
    with vperfetto.Session(trace_path):
        ev.begin()
        ev.instant()
        ev.end()
        with ev:
            pass
        vperfetto.begin(ev)
        vperfetto.end()
    events = resolve(load_trace(trace_path))
    assert [e.name for e in events if e.type != TYPE_END] == ["naïve ✓"] * 4


def test_traced_decorator_ends_slice_on_exception(trace_path):
    @vperfetto.traced
    def boom():
        raise KeyError("x")

    with vperfetto.Session(trace_path):
        with pytest.raises(KeyError):
            boom()
        with pytest.raises(ValueError):
            with vperfetto.slice("cm"):
                raise ValueError("y")
    events = resolve(load_trace(trace_path))
    slices = slices_by_track(events)
    assert sorted(s[0] for v in slices.values() for s in v) == [
        "boom", "cm"]


def test_session_lifecycle_and_errors(tmp_path):
    s = vperfetto.Session(tmp_path / "a.pftrace")
    with pytest.raises(vperfetto.TracingStateError):
        s.stop()  # not started
    s.start()
    with pytest.raises(vperfetto.TracingStateError, match="already active"):
        vperfetto.Session(tmp_path / "b.pftrace").start()
    with pytest.raises(vperfetto.TracingStateError):
        s.start()
    assert s.active and "active" in repr(s)
    path = s.stop()
    assert path == str(tmp_path / "a.pftrace") and s.stop() == path  # idempotent
    assert not s.active
    # a new session after the old one stopped works
    with vperfetto.Session(tmp_path / "c.pftrace"):
        vperfetto.instant("again")
    assert [e.name for e in resolve(load_trace(tmp_path / "c.pftrace"))] == ["again"]


def test_unwritable_output_raises_oserror(tmp_path):
    with pytest.raises(vperfetto.TraceIOError) as ei:
        vperfetto.Session(tmp_path / "missing-dir" / "t.pftrace").start()
    assert isinstance(ei.value, OSError)
    assert "missing-dir" in str(ei.value)
    assert not vperfetto.is_tracing()


@pytest.mark.parametrize("kwargs,exc", [
    (dict(mode="bogus"), ValueError),
    (dict(buffer_kb=1), ValueError),
    (dict(buffer_kb="big"), TypeError),
    (dict(categories="gfx"), TypeError),
    (dict(categories=[1]), TypeError),
])
def test_bad_session_arguments(tmp_path, kwargs, exc):
    with pytest.raises(exc):
        vperfetto.Session(tmp_path / "x.pftrace", **kwargs)


def test_bad_event_arguments(trace_path):
    with vperfetto.Session(trace_path):
        with pytest.raises(TypeError, match="name must be str"):
            vperfetto.begin(42)
        with pytest.raises(TypeError):
            vperfetto.begin(["unhashable"])
        with pytest.raises(TypeError, match="category"):
            vperfetto.instant("x", category=3)
        # values (and keys) never raise: see test_args.py
        vperfetto.instant("odd args", args={1: 2, "big": 1 << 70})
        with pytest.raises(TypeError, match="counter value"):
            vperfetto.counter("c", "three")
        with pytest.raises(TypeError, match="track"):
            vperfetto.begin("x", track="not a track")
        with pytest.raises(ValueError, match="ts"):
            vperfetto.begin("x", ts=-1)
        with pytest.raises(TypeError):
            vperfetto.set_process_name(None)
        vperfetto.instant("still fine")
    events = resolve(load_trace(trace_path))
    assert [e.name for e in events] == ["odd args", "still fine"]
    assert events[0].args == {"1": 2, "big": str(1 << 70)}


def test_uuid_clock_and_sleep():
    ids = {vperfetto.uuid_lsb() for _ in range(10000)}
    assert len(ids) == 10000 and 0 not in ids
    assert all(0 < i < 2**64 for i in ids)
    t0 = vperfetto.boot_time_ns()
    vperfetto.sleep_us(2000)
    dt = vperfetto.boot_time_ns() - t0
    assert dt >= 2_000_000
    # CLOCK_BOOTTIME is what time.clock_gettime_ns reports for it
    assert abs(vperfetto.boot_time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)) < 50_000_000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_emitting_after_fork_is_a_no_op(trace_path, tmp_path):
    child_path = tmp_path / "child.pftrace"
    with vperfetto.Session(trace_path) as s:
        vperfetto.instant("parent_before")
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: parent's session is not ours
            code = 0
            try:
                if vperfetto.is_tracing():
                    code = 1
                vperfetto.instant("child_event")  # no-op
                try:
                    s.stop()
                    code = 2
                except vperfetto.TracingStateError:
                    pass
                with vperfetto.Session(child_path):  # the child may trace on its own
                    vperfetto.instant("child_own")
            except BaseException:
                code = 3
            os.write(w, bytes([code]))
            os._exit(0)
        os.close(w)
        code = os.read(r, 1)
        os.close(r)
        os.waitpid(pid, 0)
        vperfetto.instant("parent_after")
    assert code == b"\x00"
    assert [e.name for e in resolve(load_trace(trace_path))] == ["parent_before", "parent_after"]
    child = load_trace(child_path)
    assert [e.name for e in resolve(child)] == ["child_own"]
    (proc,) = [d for d in descriptors(child).values() if d.HasField("process")]
    assert proc.process.pid == pid


def test_session_left_running_is_stopped_at_exit(tmp_path):
    import subprocess
    import sys
    path = tmp_path / "atexit.pftrace"
    code = ("import vperfetto\n"
            f"vperfetto.Session({str(path)!r}).start()\n"
            "vperfetto.instant('left_running')\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert [e.name for e in resolve(load_trace(path))] == ["left_running"]
