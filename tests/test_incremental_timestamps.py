"""Incremental timestamps (issue 14): every packet carries the delta from its
sequence's previous time on the sequence's clock 64, which each
incremental-state reset defines by a ClockSnapshot tied to BOOTTIME; a time
before the previous one is written absolute. Decoded with the official
schema as trace_processor resolves clocks (conftest.packet_times), every
event is exactly where the absolute-timestamp mode puts it, across resets,
ring-buffer wraps and threads, in every buffer mode; the readers (inspect,
--check, the timeline, the merge) place them there too.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import threading

import pytest

import vperfetto
from vperfetto import timeline
from vperfetto.inspect import inspect
from vperfetto.merge import merge
from conftest import (BOOTTIME, SEQ_CLEARED, TYPE_COUNTER, TYPE_END, load_trace, packet_times,
                      resolve)

THREADS = 3
N = 1500
# The chosen times start this far ahead of the clock, so that however slowly
# a loaded machine records, they stay after the sequence's resets (which are
# at "now"): written as deltas, as a live trace's would be.
AHEAD = 60_000_000_000


def _workload(k: int, base: int, shared, now_marks: dict) -> None:
    """Thread k: events at times it chooses (forward, and at times back by
    3 ms: those are written absolute), events at "now" (bracketed), counter
    samples, instants on a track all threads share, and thread renames (a
    descriptor mid-sequence whose delta counts too)."""
    vperfetto.set_thread_name(f"w{k}")
    for i in range(N):
        t = base + (i * THREADS + k) * 2000
        vperfetto.begin("s", category="c", args={"id": [k, i]}, ts=t)
        vperfetto.counter(f"q{k}", i, ts=t + 10)
        shared.instant("x", args={"id": [k, i]}, ts=t + 20)
        vperfetto.end(args={"id": [k, i]}, ts=t + 700)
        if i % 40 == 0:
            vperfetto.instant("back", args={"id": [k, i]}, ts=t - 3_000_000)
        if i % 10 == 0:
            lo = vperfetto.boot_time_ns()
            vperfetto.instant("now", args={"id": [k, i]})
            now_marks[(k, i)] = (lo, vperfetto.boot_time_ns())
        if i % 500 == 250:
            vperfetto.set_thread_name(f"w{k}.{i}")


def _expected(name: str, k: int, i: int, base: int) -> int:
    t = base + (i * THREADS + k) * 2000
    return {"s": t, "q": t + 10, "x": t + 20, "e": t + 700, "back": t - 3_000_000}[name]


def _record(path, mode, buffer_kb, incremental, base, one_by_one=False):
    """The workload's threads at once, or `one_by_one` (each joined before
    the next starts: a ring keeps nothing of the first)."""
    marks: dict = {}
    kwargs = {} if incremental is None else {"incremental_timestamps": incremental}
    with vperfetto.Session(path, buffer_kb=buffer_kb, mode=mode, **kwargs) as s:
        shared = vperfetto.Track("shared")
        ths = [threading.Thread(target=_workload, args=(k, base, shared, marks))
               for k in range(THREADS)]
        for t in ths:
            t.start()
            if one_by_one:
                t.join()
        for t in ths:
            t.join()
    return s, marks


def _events(path):
    """The trace and {(kind, k, i): absolute time} of its events: kind is the
    event's name ("e" for ends, "q" for counter samples, whose track names
    the thread and whose value is the iteration)."""
    trace = load_trace(path)
    counters = {p.track_descriptor.uuid: p.track_descriptor.name for p in trace.packet
                if p.HasField("track_descriptor") and p.track_descriptor.HasField("counter")}
    out = {}
    for e in resolve(trace):
        if e.type == TYPE_COUNTER:
            key = ("q", int(counters[e.track_uuid][1:]), e.counter)
        else:
            key = ("e" if e.type == TYPE_END else e.name, *e.args["id"])
        assert key not in out, key
        out[key] = e.ts
    return trace, out


MODES = [("ring", 65536), ("ring", 256), ("discard", 256), ("stream", 1024)]


@pytest.mark.parametrize("mode,buffer_kb", MODES)
def test_same_times_as_absolute_mode(tmp_path, mode, buffer_kb):
    base = vperfetto.boot_time_ns() + AHEAD
    inc_path, abs_path = tmp_path / "inc.pftrace", tmp_path / "abs.pftrace"
    s_inc, marks_inc = _record(inc_path, mode, buffer_kb, None, base)   # the default
    s_abs, _ = _record(abs_path, mode, buffer_kb, False, base)
    inc_trace, inc = _events(inc_path)
    abs_trace, ab = _events(abs_path)

    # the encodings are what they say
    inc_seqs = {p.trusted_packet_sequence_id for p in inc_trace.packet if p.HasField("track_event")}
    resets = collections.Counter(p.trusted_packet_sequence_id for p in inc_trace.packet
                                 if p.sequence_flags & SEQ_CLEARED)
    for p in inc_trace.packet:
        if p.trusted_packet_sequence_id not in inc_seqs:
            continue
        if p.sequence_flags & SEQ_CLEARED:  # every reset defines the clock
            assert p.trace_packet_defaults.timestamp_clock_id == 64
            (boot, c64) = p.clock_snapshot.clocks
            assert boot.clock_id == BOOTTIME and c64.clock_id == 64 and c64.is_incremental
        else:
            assert p.sequence_flags == 2  # SEQ_NEEDS_INCREMENTAL_STATE
            assert p.timestamp_clock_id in (0, BOOTTIME)
    back_abs = [p for p in inc_trace.packet if p.timestamp_clock_id == BOOTTIME]
    assert back_abs and all(p.timestamp > base - AHEAD - 10**10 for p in back_abs)  # BOOTTIME
    assert not any(p.HasField("timestamp_clock_id") or (p.sequence_flags & SEQ_CLEARED and
                   p.HasField("clock_snapshot")) for p in abs_trace.packet)
    wrapped = mode != "stream" and buffer_kb < 1024
    if mode != "stream":  # ring and discard reset on every chunk
        assert min(resets[q] for q in inc_seqs) >= 1
        if wrapped:
            assert sum(resets[q] for q in inc_seqs) >= 2 * len(inc_seqs)

    # the configs say which
    def te_config(trace):
        (cfg,) = [p.trace_config for p in trace.packet if p.HasField("trace_config")]
        (ds,) = cfg.data_sources
        assert ds.config.name == "track_event"
        return ds.config.track_event_config
    assert te_config(inc_trace).HasField("disable_incremental_timestamps")
    assert not te_config(inc_trace).disable_incremental_timestamps
    assert te_config(abs_trace).disable_incremental_timestamps

    # every event where it was put, in both modes: the same time
    for got in (inc, ab):
        for (kind, k, i), ts in got.items():
            if kind == "now":
                lo, hi = marks_inc[(k, i)] if got is inc else (0, 1 << 63)
                assert lo <= ts <= hi
            else:
                assert ts == _expected(kind, k, i, base), (kind, k, i)
    common = set(inc) & set(ab)
    assert all(inc[key] == ab[key] for key in common if key[0] != "now")
    if not wrapped:
        assert set(inc) == set(ab) and len(inc) == THREADS * (4 * N + len(range(0, N, 40)) + len(range(0, N, 10)))
        assert s_inc.dropped == s_abs.dropped == 0
    else:
        # the same buffer holds more events with deltas
        assert 0 < len(ab) < len(inc) < THREADS * N * 5
        assert s_inc.dropped > 0

    # inspect: nothing trace_processor would lose or misread, the process's
    # time range that of the events on its threads
    for path, got in ((inc_path, inc), (abs_path, ab)):
        check = inspect(path, check=True)
        assert not check["fails"], check["findings"]
        assert set(check["stats"]) <= {"vperfetto_slice_end_without_begin"}
        (proc,) = check["processes"]
        on_threads = [ts for key, ts in got.items() if key[0] in ("s", "e", "back", "now")]
        assert (proc["first_ts"], proc["last_ts"]) == (min(on_threads), max(on_threads))


def _timeline_matches(path, got):
    """The timeline model of the trace at `path` has the slices of every
    thread and of the shared track and the counter samples where the schema
    (`got`, from _events) puts them; a counter of a thread the ring kept
    nothing of (its descriptor went with its samples) has no track, as in
    trace_processor. Returns the model."""
    m = timeline.model_from_trace(path, max_slices=10**6, max_counter_points=10**6)
    tracks = {t["name"]: t for t in m["tracks"]}
    slices = sorted((s[0], s[1], s[2]) for t in m["tracks"] for s in t["slices"]
                    if s[2] in ("s", "x"))
    want = sorted([(got[("s", k, i)], got[("e", k, i)] - got[("s", k, i)], "s")
                   for (kind, k, i) in got if kind == "s" and ("e", k, i) in got] +
                  [(got[("x", k, i)], 0, "x") for (kind, k, i) in got if kind == "x"])
    assert slices == want
    for k in range(THREADS):
        points = sorted([got[key], key[2]] for key in got if key[:2] == ("q", k))
        if points:
            assert tracks[f"q{k}"]["counter"] == points
        else:
            assert f"q{k}" not in tracks
    return m


def test_timeline_reads_incremental_traces(tmp_path):
    """Threads at once into a ring that wraps. Which thread's chunks the
    ring keeps is up to the scheduler: one that ran ahead of the others
    (under load, under ASan) can be overwritten entirely."""
    base = vperfetto.boot_time_ns() + AHEAD
    models = {}
    for inc in (True, False):
        path = tmp_path / f"{inc}.pftrace"
        _record(path, "ring", 256, inc, base)
        _, got = _events(path)
        assert any(key[0] == "q" for key in got)
        models[inc] = _timeline_matches(path, got)
    # the same ring holds more with deltas
    assert sum(map(len, (t["slices"] for t in models[True]["tracks"]))) > \
        sum(map(len, (t["slices"] for t in models[False]["tracks"])))


@pytest.mark.parametrize("inc", [True, False])
def test_timeline_reads_a_ring_that_lost_a_thread(tmp_path, inc):
    """The threads one after another: the ring keeps nothing of the first
    (events, descriptors, resets), part of the second and the third; the
    model has what the ring kept where the schema puts it, and no track for
    the first thread's counter."""
    base = vperfetto.boot_time_ns() + AHEAD
    path = tmp_path / "t.pftrace"
    _record(path, "ring", 256, inc, base, one_by_one=True)
    _, got = _events(path)
    kept = {key[1] for key in got}
    assert kept == set(range(1, THREADS))
    _timeline_matches(path, got)


def test_readers_skip_what_lost_its_reset(tmp_path):
    """A sequence whose reset (and with it the clock's definition) is lost:
    trace_processor skips what needs the state until the next reset. The
    timeline and the summary do not read its deltas as BOOTTIME times."""
    path = tmp_path / "t.pftrace"
    base = vperfetto.boot_time_ns()
    _record(path, "ring", 65536, True, base)
    trace = load_trace(path)
    seq = next(p.trusted_packet_sequence_id for p in trace.packet if p.HasField("track_event"))
    first_reset = next(i for i, p in enumerate(trace.packet)
                       if p.trusted_packet_sequence_id == seq and p.sequence_flags & SEQ_CLEARED)
    cut = load_trace(path)
    del cut.packet[first_reset]
    cut_path = tmp_path / "cut.pftrace"
    cut_path.write_bytes(cut.SerializeToString())
    m = timeline.model_from_trace(cut_path)
    assert m["start_ns"] >= base - 3_000_000
    s = inspect(cut_path, check=True)
    assert s["first_ts"] >= base - 3_000_000
    assert all(q["first_ts"] >= base - 3_000_000 for q in s["sequences"] if q["first_ts"])
    assert "packet_skipped_seq_needs_incremental_state_invalid" in s["stats"]


def test_unit_multiplier(tmp_path):
    """timestamp_unit_ns: deltas in its units, every time within one unit of
    where it was put (never after it), the config says which."""
    base = vperfetto.boot_time_ns() + AHEAD
    path = tmp_path / "t.pftrace"
    marks: dict = {}
    with vperfetto.Session(path, buffer_kb=256, timestamp_unit_ns=1000):
        shared = vperfetto.Track("shared")
        # on a thread of its own: the workload renames its thread
        th = threading.Thread(target=_workload, args=(0, base, shared, marks))
        th.start()
        th.join()
    trace, got = _events(path)
    (c64,) = [c for p in trace.packet for c in p.clock_snapshot.clocks if c.clock_id == 64][:1]
    assert c64.unit_multiplier_ns == 1000 and c64.is_incremental
    (cfg,) = [p.trace_config for p in trace.packet if p.HasField("trace_config")]
    assert cfg.data_sources[0].config.track_event_config.timestamp_unit_multiplier == 1000
    assert len(got) > 1000
    for (kind, k, i), ts in got.items():
        want = marks[(k, i)] if kind == "now" else (_expected(kind, k, i, base),) * 2
        assert want[0] - 1000 < ts <= want[1], (kind, i, ts - want[0])


def test_session_switch_validation():
    s = vperfetto.Session("/nonexistent/x.pftrace")
    assert s.incremental_timestamps is True and s.timestamp_unit_ns == 1
    with pytest.raises(TypeError):
        vperfetto.Session("x.pftrace", incremental_timestamps=1)
    with pytest.raises(TypeError):
        vperfetto.Session("x.pftrace", timestamp_unit_ns=1.5)
    for bad in (0, -1, 10**9 + 1):
        with pytest.raises(ValueError):
            vperfetto.Session("x.pftrace", timestamp_unit_ns=bad)


@pytest.mark.parametrize("buffer_kb", [65536, 256])
def test_merge_lands_every_event_where_time_diff_says(tmp_path, buffer_kb):
    """Guest and host traced with incremental clocks (rings that wrapped or
    not), merged with --time-diff both ways: every moved event at its time
    minus (or plus) the diff, exactly; the main side's unchanged."""
    diff = 1_000_000_007
    base = vperfetto.boot_time_ns() + AHEAD
    guest, host = tmp_path / "guest.pftrace", tmp_path / "host.pftrace"
    _record(guest, "ring", buffer_kb, True, base)
    _record(host, "ring", buffer_kb, True, base + 5_000_000)
    _, g = _events(guest)
    _, h = _events(host)

    def by_pid(path):
        """{(guest?, kind, k, i): time} of the merged trace, sides told apart by pid."""
        trace = load_trace(path)
        pid_of = {}
        for p in trace.packet:
            d = p.track_descriptor
            if p.HasField("track_descriptor"):
                if d.HasField("thread"):
                    pid_of[d.uuid] = d.thread.pid
                elif d.HasField("process"):
                    pid_of[d.uuid] = d.process.pid
        parent = {p.track_descriptor.uuid: p.track_descriptor.parent_uuid for p in trace.packet
                  if p.HasField("track_descriptor")}
        names = {p.track_descriptor.uuid: p.track_descriptor.name for p in trace.packet
                 if p.HasField("track_descriptor") and p.track_descriptor.HasField("counter")}
        out = {}
        for e in resolve(trace):
            pid = pid_of.get(e.track_uuid, pid_of.get(parent.get(e.track_uuid)))
            moved = pid >= 1_000_000
            if e.type == TYPE_COUNTER:
                out[(moved, "q", int(names[e.track_uuid][1:]), e.counter)] = e.ts
            else:
                k, i = e.args["id"]
                out[(moved, "e" if e.type == TYPE_END else e.name, k, i)] = e.ts
        return out

    # the guest moves into the host's timeline
    out = tmp_path / "named.pftrace"
    merge(host=host, guests={"vm": guest}, output=out, time_diff_ns=diff)
    got = by_pid(out)
    assert len(got) == len(g) + len(h)
    for key, ts in g.items():
        assert got[(True,) + key] == ts - diff, key
    for key, ts in h.items():
        assert got[(False,) + key] == ts, key
    assert not inspect(out, check=True)["fails"]

    # the original command line: the guest is the timeline, the host moves
    out2 = tmp_path / "positional.pftrace"
    subprocess.run([sys.executable, "-m", "vperfetto.merge", str(guest), str(host), str(out2),
                    "--time-diff", str(diff), "-q"], check=True)
    got = by_pid(out2)
    assert len(got) == len(g) + len(h)
    for key, ts in h.items():
        assert got[(True,) + key] == ts + diff, key
    for key, ts in g.items():
        assert got[(False,) + key] == ts, key
    assert not inspect(out2, check=True)["fails"]


def test_check_command_line_passes(tmp_path):
    path = tmp_path / "t.pftrace"
    _record(path, "ring", 256, True, vperfetto.boot_time_ns())
    p = subprocess.run([sys.executable, "-m", "vperfetto.inspect", str(path), "--check"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "defining sequence clocks (64: incremental timestamps)" in subprocess.run(
        [sys.executable, "-m", "vperfetto.inspect", str(path)], capture_output=True,
        text=True, check=True).stdout


SIZES = r"""
import os, sys, vperfetto
path, inc, kind = sys.argv[1], sys.argv[2] == "1", sys.argv[3]

def size(n):
    base = vperfetto.boot_time_ns() + 50_000_000  # after the reset: all deltas
    with vperfetto.Session(path, mode="stream", incremental_timestamps=inc):
        if kind == "pair":
            for i in range(n):
                vperfetto.begin("name", category="bench", ts=base + 200 * i)
                vperfetto.end(ts=base + 200 * i + 100)
        else:
            for i in range(n):
                vperfetto.counter("c", 5, ts=base + 100 * i)
    return os.path.getsize(path)

size(10)  # the first session also names the thread and process
print((size(3000) - size(1000)) / 2000)
"""


def test_bytes_per_pair_and_counter(tmp_path):
    """The sizes, from events at chosen times 100 ns apart (so that the
    deltas, and so the bytes, do not depend on the machine's speed), in a
    fresh process (interned ids are process-wide: 1-byte ones): a begin/end
    pair with a category 28 bytes (two 1-byte deltas), a counter sample at
    most 22; with absolute timestamps each delta is a BOOTTIME varint
    instead (7 bytes after 73 min of uptime)."""
    def per(inc, kind):
        out = subprocess.run([sys.executable, "-c", SIZES, str(tmp_path / "t.pftrace"),
                              "1" if inc else "0", kind], check=True, capture_output=True,
                             text=True, timeout=300).stdout
        return float(out)

    ts_bytes = (vperfetto.boot_time_ns().bit_length() + 6) // 7
    assert per(True, "pair") == 28
    assert per(False, "pair") == 26 + 2 * ts_bytes
    assert per(True, "counter") <= 22
    assert per(False, "counter") == per(True, "counter") - 1 + ts_bytes


@pytest.mark.parametrize("mode", ["ring", "stream"])
def test_recovered_crash_keeps_the_times(tmp_path, mode):
    """A process killed mid-trace (tests/programs/crash.py): the trace
    recovered from its crash image places every event at a time between the
    start and the death, each thread's in order, and the recovery's own
    instant at the last one of them (the sequences' deltas added up, in
    stream mode from the part already in the output file too)."""
    from test_crash import run_crash
    from vperfetto import recover as vrecover

    t0 = vperfetto.boot_time_ns()
    trace, _ = run_crash(tmp_path, mode, 2, "SIGKILL", 3000)
    t1 = vperfetto.boot_time_ns()
    out = tmp_path / "recovered.pftrace"
    vrecover.recover(vrecover.image_path_for(trace), out, remove=True)
    rec = load_trace(out)
    times = packet_times(rec)
    events = resolve(rec)
    (mark,) = [e for e in events if e.name == "vperfetto_crash_recovered"]
    work = [e for e in events if e.name == "work"]
    assert len(work) > 3000
    assert all(t0 <= e.ts <= t1 for e in work)
    for k in (0, 1):
        ts = [e.ts for e in work if e.args["t"] == k]
        assert ts == sorted(ts)
    writer = [t for p, t in zip(rec.packet, times) if t is not None and
              p.trusted_packet_sequence_id != mark.seq and not p.HasField("trace_stats")]
    assert mark.ts == max(writer)
    assert not inspect(out, check=True)["fails"]
