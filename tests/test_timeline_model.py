"""The timeline model (the C++ reader) against what the official schema reads
in the traces of ../shared/testdata: track-event slices and counters per
track, the per-CPU scheduling rows, atrace slices and counters, CPU
frequency and process memory.

(Before the pure-Python decoder was removed, the model was compared with its
output on every one of these traces: identical for the track events.)"""

from __future__ import annotations

import collections
import gzip
import json
import pathlib
import subprocess
import sys

import pytest

from vperfetto import timeline
from vperfetto.merge import merge as timeline_merge
from conftest import SHARED, TYPE_BEGIN, TYPE_COUNTER, TYPE_END, TYPE_INSTANT, pb2, resolve

ROOT = pathlib.Path(__file__).resolve().parents[1]
SDK = SHARED / "sdk-v7"
REAL = SHARED / "real"
needs_testdata = pytest.mark.skipif(not REAL.is_dir(), reason="../shared/testdata is not beside the project")


def _load(path):
    raw = path.read_bytes()
    t = pb2.Trace()
    t.ParseFromString(gzip.decompress(raw) if path.name.endswith(".gz") else raw)
    return t


def _rows(model, kind):
    return [t for t in model["tracks"] if t["kind"] == kind]


# --- track events ----------------------------------------------------------------

def _track_event_oracle(trace):
    """uuid -> (slices, counter points), as the model should hold them."""
    stacks, slices, points = (collections.defaultdict(list) for _ in range(3))
    for e in sorted(resolve(trace), key=lambda e: e.index):   # file order, as written
        if e.type == TYPE_BEGIN:
            stacks[e.track_uuid].append(e)
        elif e.type == TYPE_END and stacks[e.track_uuid]:
            b = stacks[e.track_uuid].pop()
            slices[e.track_uuid].append([b.ts, e.ts - b.ts, b.name, len(stacks[e.track_uuid])])
        elif e.type == TYPE_INSTANT:
            slices[e.track_uuid].append([e.ts, 0, e.name, len(stacks[e.track_uuid])])
        elif e.type == TYPE_COUNTER:
            points[e.track_uuid].append([e.ts, e.counter])
    assert not any(stacks.values())
    return {u: (sorted(slices[u]), points[u]) for u in set(slices) | set(points)}


@pytest.mark.skipif(not SDK.is_dir(), reason="../shared/testdata is not beside the project")
@pytest.mark.parametrize("name", ["guest.pftrace", "host.pftrace", "combined_default.pftrace",
                                  "combined_guest_into_host.pftrace"])
def test_track_events_of_the_sdk_v7_traces(name):
    m = timeline.model_from_trace(SDK / name)
    want = _track_event_oracle(_load(SDK / name))
    got = {t["uuid"]: (sorted(t["slices"]), t["counter"]) for t in m["tracks"]
           if t["slices"] or t["counter"]}
    assert got == want
    assert m["slices_total"] == m["slices_kept"] == sum(len(s) for s, _ in want.values())
    # the README of the testdata: the guest's frames, composes, draws, markers, vsyncs
    if name == "guest.pftrace":
        assert m["slices_total"] == 231 + 75 and m["start_ns"] == 2_385_726_085_547
    assert m["timeline"] == "trace"   # the original tool's merges name no guest


def _legacy_slices(trace):
    n = 0
    for p in trace.packet:
        te = p.track_event
        if p.HasField("track_event") and te.type == 0 and te.HasField("legacy_event"):
            n += chr(te.legacy_event.phase) in "BXIinR"
    return n


@needs_testdata
@pytest.mark.parametrize("name, start", [("chrome89_windows_track_event.pftrace.gz", 80_626_911_010_000),
                                         ("flutter_ios_dartvm_track_event.pftrace", 713_834_360_381_000)])
def test_track_events_of_real_traces(name, start):
    # Chrome's times are on sequence-scoped clocks (one snapshot per sequence),
    # Flutter's on MONOTONIC, the trace clock it names; the first times are
    # the README's (and trace_processor's).
    trace = _load(REAL / name)
    types = collections.Counter(p.track_event.type for p in trace.packet if p.HasField("track_event"))
    m = timeline.model_from_trace(REAL / name)
    assert m["start_ns"] == start
    assert m["slices_total"] == types[TYPE_BEGIN] + types[TYPE_INSTANT] + _legacy_slices(trace)
    assert m["slices_kept"] == min(50000, m["slices_total"])
    assert not _rows(m, "cpu") and not m["truncated"]


# --- system traces ---------------------------------------------------------------

def _sched_oracle(trace, end):
    """cpu -> the slices of the threads it switched to (sched_switch and
    compact_sched), each until the next switch (the last until `end`)."""
    switches = collections.defaultdict(list)
    for p in trace.packet:
        b = p.ftrace_events
        if not p.HasField("ftrace_events") or b.ftrace_clock:
            continue
        for e in b.event:
            if e.HasField("sched_switch"):
                s = e.sched_switch
                switches[b.cpu].append((e.timestamp, s.next_pid, s.next_comm))
        c = b.compact_sched
        ts = 0
        for i, d in enumerate(c.switch_timestamp):
            ts += d
            switches[b.cpu].append((ts, c.switch_next_pid[i], c.intern_table[c.switch_next_comm_index[i]]))
    out = {}
    for cpu, sw in switches.items():
        out[cpu] = [[ts, (sw[i + 1][0] if i + 1 < len(sw) else end) - ts,
                     f"{comm} [{pid}]" if comm else f"[{pid}]", 0]
                    for i, (ts, pid, comm) in enumerate(sw) if pid > 0]
    return out


SCHED = ["android11_s20_sched_ftrace_sdk.perfetto-trace", "android12_emulator_x86_64_sched_perf.pftrace",
         "android12_emulator_x86_64_sched_perf_callstacks.pftrace", "linux_desktop_systing_compact_sched.pb"]


@needs_testdata
@pytest.mark.parametrize("name", SCHED)
def test_cpu_rows(name):
    m = timeline.model_from_trace(REAL / name)
    want = _sched_oracle(_load(REAL / name), m["end_ns"])
    cpus = _rows(m, "cpu")
    assert {t["cpu"]: t["slices"] for t in cpus} == {c: s for c, s in want.items() if s}
    assert [t["cpu"] for t in cpus] == sorted(t["cpu"] for t in cpus)
    # nothing here is a guest; the CPUs come first, each with its frequency
    assert not any(t["guest"] for t in m["tracks"]) and m["timeline"] == "trace"
    assert m["tracks"][0]["kind"] == "cpu" and m["tracks"][0]["name"] == f"cpu {cpus[0]['cpu']}"


@needs_testdata
def test_cpu_frequency():
    trace = _load(REAL / "android11_s20_sched_ftrace_sdk.perfetto-trace")
    want = collections.defaultdict(list)
    for p in trace.packet:
        for e in p.ftrace_events.event:
            if e.HasField("cpu_frequency"):
                want[e.cpu_frequency.cpu_id].append([e.timestamp, e.cpu_frequency.state])
    m = timeline.model_from_trace(REAL / "android11_s20_sched_ftrace_sdk.perfetto-trace")
    got = {t["cpu"]: t["counter"] for t in _rows(m, "counter") if t["cpu"] is not None}
    assert got == {c: sorted(v, key=lambda x: x[0]) for c, v in want.items()}
    names = [t["name"] for t in m["tracks"][:4]]
    assert names == ["cpu 0", "cpu 0 frequency (kHz)", "cpu 1", "cpu 1 frequency (kHz)"]


def _atrace_oracle(trace):
    """tid -> slices of its atrace B/E/I records (paired in time order)."""
    events = collections.defaultdict(list)
    counters = collections.defaultdict(list)
    for p in trace.packet:
        for e in p.ftrace_events.event:
            if not e.HasField("print"):
                continue
            f = e.print.buf.rstrip("\n").split("|")
            if f[0] in ("B", "E", "I"):
                events[e.pid].append((e.timestamp, len(events[e.pid]), f[0], f[2] if len(f) > 2 else ""))
            elif f[0] == "C":
                counters[(int(f[1]), f[2])].append([e.timestamp, int(f[3])])
    out = {}
    for tid, evs in events.items():
        stack, slices = [], []
        for ts, _, ph, name in sorted(evs):
            if ph == "B":
                stack.append((ts, name))
            elif ph == "I":
                slices.append([ts, 0, name, len(stack)])
            elif stack:
                b = stack.pop()
                slices.append([b[0], ts - b[0], b[1], len(stack)])
        out[tid] = (slices, stack)
    return out, counters


@needs_testdata
def test_atrace_slices():
    name = "android13_pixel7pro_atrace_frametimeline.perfetto-trace"
    m = timeline.model_from_trace(REAL / name)
    want, counters = _atrace_oracle(_load(REAL / name))
    threads = {t["tid"]: t for t in _rows(m, "thread")}
    for tid, (slices, still_open) in want.items():
        closed = [[ts, m["end_ns"] - ts, n, d] for d, (ts, n) in enumerate(still_open)]
        assert threads[tid]["slices"] == sorted(slices + closed, key=lambda s: (s[0], s[3]))
    assert sum(len(s) for s, _ in want.values()) > 3000
    # grouped under their process, which has a row of its own
    procs = {t["pid"] for t in _rows(m, "process")}
    assert {t["pid"] for t in threads.values()} <= procs
    got = {(t["pid"], t["name"]): t["counter"] for t in _rows(m, "counter")}
    assert got == dict(counters)


@needs_testdata
def test_process_memory():
    name = "android11_s20_process_sys_stats.pftrace"
    trace = _load(REAL / name)
    want = collections.defaultdict(list)
    names = {}
    for p in trace.packet:
        for q in p.process_stats.processes:
            if q.HasField("vm_rss_kb"):
                want[q.pid].append([p.timestamp, q.vm_rss_kb * 1024])
        for q in p.process_tree.processes:
            if q.cmdline:
                names[q.pid] = q.cmdline[0]
    m = timeline.model_from_trace(REAL / name)
    rss = {t["pid"]: t["counter"] for t in _rows(m, "counter") if t["name"] == "mem.rss"}
    assert rss == want and len(rss) == 236
    procs = _rows(m, "process")
    assert {t["pid"] for t in procs} == set(want)
    assert all(t["process"] == names.get(t["pid"]) for t in procs)
    # each process row right before its memory row
    kinds = [t["kind"] for t in m["tracks"]]
    assert kinds == ["process", "counter"] * 236


@needs_testdata
@pytest.mark.parametrize("machine_ids", [False, True])
def test_cpu_rows_of_merged_guests(tmp_path, machine_ids):
    # Two guests' system traces merged into a host's track events: each guest's
    # CPUs on its side (vm2's trace names no process of its threads: they go
    # with the pids the merge moved with its one named process), at the times
    # the alignment gives, first in the guest's group.
    g1, g2 = REAL / SCHED[1], REAL / SCHED[0]
    out = tmp_path / "m.pftrace"
    r = timeline_merge(host=SDK / "host.pftrace", guests={"vm1": g1, "vm2": g2}, output=out,
                       machine_ids=machine_ids, time_diff_ns=0)
    m = timeline.model_from_trace(out)
    cpus = _rows(m, "cpu")
    assert cpus and all(t["guest"] for t in cpus)
    for k, (guest, path) in enumerate([("vm1", g1), ("vm2", g2)], 1):
        offset = r.alignments[k - 1].offset_ns
        want = _sched_oracle(_load(path), 0)
        rows = {t["cpu"]: t for t in cpus if t["guest_name"] == guest}
        base = 0 if machine_ids else 100 * k
        assert set(rows) == {c + base for c, s in want.items() if s}
        for c, slices in want.items():
            if not slices:
                continue
            got = rows[c + base]["slices"]
            assert [s[0] for s in got] == [s[0] - offset for s in slices]
            assert [s[1] for s in got[:-1]] == [s[1] for s in slices[:-1]]
            pid_shift = 0 if machine_ids else 1_000_000 * k
            assert got[0][2] == slices[0][2].replace(f"[{slices[0][2].rsplit('[', 1)[1]}",
                                                     f"[{int(slices[0][2].rsplit('[', 1)[1][:-1]) + pid_shift}]")
        group = [t["cpu"] is not None for t in m["tracks"] if t["guest_name"] == guest]
        assert group == sorted(group, reverse=True) and sum(group) >= len(rows)   # CPUs first


# --- hostile input ---------------------------------------------------------------

HOSTILE_RUNNER = r"""
import json, sys
import vperfetto
from vperfetto import timeline
out = []
for path in sys.argv[1:]:
    try:
        m = timeline.model_from_trace(path, max_slices=5)
        assert m["slices_kept"] == sum(len(t["slices"]) for t in m["tracks"]) <= 5
        assert m["start_ns"] <= m["end_ns"] and all(t["kind"] for t in m["tracks"])
        html = timeline.render_html(m)
        assert "<img" not in html and timeline.render_svg(m).startswith("<?xml")
        out.append("truncated" if m["truncated"] else "ok")
    except vperfetto.VperfettoError as e:
        assert str(e).strip(), "an error without a message"
        out.append(type(e).__name__)
print("RESULTS " + json.dumps(out))
"""


def test_hostile_inputs_give_a_model_or_a_clean_error(tmp_path):
    # fuzz/hostile_inputs.py's cases and the fuzzers' kept regressions, in a
    # child interpreter (a crash must not take pytest down; under
    # scripts/sanitize.sh --python a memory error aborts it).
    sys.path.insert(0, str(ROOT / "fuzz"))
    import hostile_inputs as hi

    paths = []
    for name, data in hi.seeds():
        paths.append(tmp_path / name)
        paths[-1].write_bytes(data)
    paths += sorted(p for p in (ROOT / "fuzz" / "regressions").rglob("*") if p.is_file() and p.suffix != ".md")
    p = subprocess.run([sys.executable, "-c", HOSTILE_RUNNER, *map(str, paths)], capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-4000:]
    results = json.loads(p.stdout.split("RESULTS ", 1)[1])
    assert len(results) == len(paths)
    by = dict(zip((q.name for q in paths), results))
    assert by["valid"] == "ok" and by["truncated_tail_0"] == "truncated"   # the good part
    assert by["huge_packet_claim_0"] == "truncated"
