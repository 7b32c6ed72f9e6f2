"""Real system traces (sched, ftrace, process data, perf samples) merged in
every form: nothing of either side is lost or confused in the viewer."""

from __future__ import annotations

import collections
import functools
import itertools

import pytest

from vperfetto.inspect import inspect
from vperfetto.merge import merge
from conftest import SHARED, load_trace, raw_fields

REAL = SHARED / "real"
needs_real = pytest.mark.skipif(not REAL.is_dir(),
                                reason="../shared/testdata/real is not beside the project")

SYSTEM = ["android12_emulator_x86_64_sched_perf.pftrace",
          "android12_emulator_x86_64_sched_perf_callstacks.pftrace",
          "android11_s20_process_sys_stats.pftrace",
          "android11_s20_sched_ftrace_sdk.perfetto-trace",
          "android11_s21_gpu_counters.pftrace",
          "android13_pixel7pro_atrace_frametimeline.perfetto-trace",
          "linux_desktop_systing_compact_sched.pb"]

PID_NAMES = {"pid", "tid", "tgid", "ppid"}


def _is_pid_field(name: str) -> bool:
    return name in PID_NAMES or name.endswith("_pid") or name.endswith("_tgid") or \
        name in ("to_proc", "to_thread")


def _repeated(fd) -> bool:
    rep = getattr(fd, "is_repeated", None)  # protobuf >= 5.28; `label` is gone in 7
    return rep if rep is not None else fd.label == fd.LABEL_REPEATED


def pids_in(msg, out, path=""):
    """Every value of a pid-like field in `msg`, by field path (schema-driven:
    whatever the official schema calls a pid, tid or tgid)."""
    for fd, value in msg.ListFields():
        where = f"{path}.{fd.name}"
        if fd.type == fd.TYPE_MESSAGE:
            for v in (value if _repeated(fd) else [value]):
                pids_in(v, out, where)
        elif _is_pid_field(fd.name) and fd.cpp_type in (fd.CPPTYPE_INT32, fd.CPPTYPE_INT64,
                                                         fd.CPPTYPE_UINT32, fd.CPPTYPE_UINT64):
            for v in (value if _repeated(fd) else [value]):
                out[where].add(v)
    return out


@functools.lru_cache(maxsize=None)
def _first_ts(name):
    return inspect(REAL / name)["first_ts"]


def _diff_guest_later(host, guest, seconds=100):
    """The time diff (guest minus host) that puts the guest's first event
    `seconds` after the host's: the guest started tracing later."""
    return _first_ts(guest) - (_first_ts(host) + seconds * 10**9)


@needs_real
@pytest.mark.parametrize("host,guest", [
    ("android11_s20_process_sys_stats.pftrace", "android12_emulator_x86_64_sched_perf.pftrace"),
    ("android12_emulator_x86_64_sched_perf.pftrace",
     "android12_emulator_x86_64_sched_perf_callstacks.pftrace"),
    ("android13_pixel7pro_atrace_frametimeline.perfetto-trace",
     "linux_desktop_systing_compact_sched.pb"),
    ("android12_emulator_x86_64_sched_perf.pftrace",
     "android13_pixel7pro_atrace_frametimeline.perfetto-trace"),
])
def test_every_moved_pid_is_offset(tmp_path, host, guest):
    out = tmp_path / "m.pftrace"
    r = merge(host=REAL / host, guests={"vm": REAL / guest}, output=out,
              time_diff_ns=_diff_guest_later(host, guest))
    base = r.inputs[1]["pid_offset"]
    assert base >= 1_000_000
    comb = load_trace(out)
    moved = collections.defaultdict(set)
    for p in comb.packet[r.inputs[0]["packets_written"]:]:  # main first, then the moved side
        pids_in(p, moved)
    assert moved, "no pids on the moved side"
    bad = {k: sorted(v for v in vs if 0 < v < base)[:5] for k, vs in moved.items()
           if any(0 < v < base for v in vs)}  # (negative pids stay: they mean "none")
    assert not bad, f"pids left as they were on the moved side: {bad}"
    # ... and the mapping is the same offset everywhere (one thread, one tid)
    g = collections.defaultdict(set)
    for p in load_trace(REAL / guest).packet:
        pids_in(p, g)
    for k, vs in g.items():
        # pids are int32 in the kernel: 4294967295 in a uint32 field is -1 (unknown)
        assert {v + base if 0 < v < 1 << 31 else v for v in vs} == moved[k], k
    # FrameTimelineEvent (#76, outside the schema's Python module): pids and
    # frame ids, by hand
    before, after = _frame_timeline(load_trace(REAL / guest).packet), \
        _frame_timeline(comb.packet[r.inputs[0]["packets_written"]:])
    k = r.inputs[1]["frame_id_offset"]
    assert [(kind, tuple(p + base for p in pids), tuple(i + k for i in ids))
            for kind, pids, ids in before] == after


def _frame_timeline(packets):
    """(event kind, its pids, its cookies and tokens) per frame timeline event."""
    pid_field = {1: 3, 2: 3, 3: 4, 4: 4}
    id_fields = {1: {1, 2}, 2: {1, 2}, 3: {1, 2, 3}, 4: {1, 2, 3}, 5: {1}}
    out = []
    for p in packets:
        for f, v in raw_fields(p.SerializeToString()):
            if f != 76:
                continue
            (kind, ev), = raw_fields(v)
            fields = raw_fields(ev)
            out.append((kind, tuple(x for n, x in fields if n == pid_field.get(kind)),
                        tuple(x for n, x in fields if n in id_fields[kind])))
    return out


# --- tracing-start service events and stale ftrace data, on one machine -------------

def _ftrace_trace(start, events, compact=(), cpu=0, pid_base=100):
    """A system trace: a tracing_started service event at `start` (None: none),
    sched_switch events at `events`, and compact sched_switch at `compact`."""
    from conftest import pb2
    t = pb2.Trace()
    snap = t.packet.add(trusted_packet_sequence_id=1)
    for c, v in ((pb2.BUILTIN_CLOCK_BOOTTIME, 100), (pb2.BUILTIN_CLOCK_MONOTONIC, 50)):
        snap.clock_snapshot.clocks.add(clock_id=c, timestamp=v)
    if start is not None:
        t.packet.add(trusted_packet_sequence_id=1, timestamp=start).service_event.tracing_started = True
    b = t.packet.add(trusted_packet_sequence_id=2).ftrace_events
    b.cpu = cpu
    for i, ts in enumerate(events):
        e = b.event.add(timestamp=ts, pid=pid_base + i)
        e.sched_switch.prev_pid, e.sched_switch.next_pid = pid_base + i, pid_base + i + 1
    if compact:
        cs = b.compact_sched
        cs.intern_table.append("task")
        prev = 0
        for i, ts in enumerate(compact):
            cs.switch_timestamp.append(ts - prev)
            prev = ts
            cs.switch_prev_state.append(0)
            cs.switch_next_pid.append(pid_base + 50 + i)
            cs.switch_next_prio.append(120)
            cs.switch_next_comm_index.append(0)
    return t


def _ftrace_times(trace):
    """Absolute sched_switch times (regular and compact)."""
    out = []
    for p in trace.packet:
        if not p.HasField("ftrace_events"):
            continue
        out += [e.timestamp for e in p.ftrace_events.event]
        t = 0
        for d in p.ftrace_events.compact_sched.switch_timestamp:
            t += d
            out.append(t)
    return sorted(out)


def _starts(trace):
    return sorted(p.timestamp for p in trace.packet
                  if p.HasField("service_event") and p.service_event.tracing_started)


@pytest.mark.parametrize("host_start,guest_start,kept_start", [
    (1000, 3000, 1000),   # the guest started tracing later: the host's start stays
    (3000, 1000, 1000),   # the guest started first: the guest's stays, the host drops its own
    (None, 3000, None),   # the host's ftrace has no start: nobody's may stay
])
def test_one_tracing_start_and_no_stale_ftrace(tmp_path, host_start, guest_start, kept_start):
    host = _ftrace_trace(host_start, [500, 1500, 3500], compact=[600, 2000, 3600])
    guest = _ftrace_trace(guest_start, [800, 2800, 3500], compact=[900, 2900, 3100], pid_base=700)
    hp, gp, out = tmp_path / "h.pftrace", tmp_path / "g.pftrace", tmp_path / "o.pftrace"
    hp.write_bytes(host.SerializeToString())
    gp.write_bytes(guest.SerializeToString())
    r = merge(host=hp, guests={"vm": gp}, output=out, time_diff_ns=0)
    comb = load_trace(out)
    assert _starts(comb) == ([kept_start] if kept_start else [])

    def alone(start, times):  # what trace_processor keeps of one side alone
        return sorted(t for t in times if start is None or t >= start)

    h_times = [500, 1500, 3500, 600, 2000, 3600]
    g_times = [800, 2800, 3500, 900, 2900, 3100]
    n_main = r.inputs[0]["packets_written"]
    got_host = _ftrace_times(_slice(comb, 0, n_main))
    got_guest = _ftrace_times(_slice(comb, n_main, len(comb.packet)))
    # The side whose start stays keeps its stale data (trace_processor drops it,
    # as it would alone); the others dropped theirs themselves.
    if kept_start == host_start:
        assert got_host == sorted(h_times)
    else:
        assert got_host == alone(host_start, h_times)
    if kept_start == guest_start:
        assert got_guest == sorted(g_times)
    else:
        assert got_guest == alone(guest_start, g_times)
    dropped = {i["kind"]: (i["tracing_start_events_dropped"], i["stale_ftrace_events_dropped"])
               for i in r.inputs}
    assert sum(d[0] for d in dropped.values()) == (host_start is not None) + (guest_start is not None) \
        - (kept_start is not None)
    # and what the viewer keeps is what it keeps of each alone (inspect's model of it)
    threshold = kept_start or 0
    assert sorted(t for t in got_host + got_guest if t >= threshold) == \
        sorted(alone(host_start, h_times) + alone(guest_start, g_times))


def _slice(trace, a, b):
    from conftest import pb2
    t = pb2.Trace()
    t.packet.extend(trace.packet[a:b])
    return t


def test_machines_of_their_own_keep_every_start(tmp_path):
    host = _ftrace_trace(1000, [500, 1500])
    guest = _ftrace_trace(3000, [2800, 3500], pid_base=700)
    hp, gp, out = tmp_path / "h.pftrace", tmp_path / "g.pftrace", tmp_path / "o.pftrace"
    hp.write_bytes(host.SerializeToString())
    gp.write_bytes(guest.SerializeToString())
    r = merge(host=hp, guests={"vm": gp}, output=out, time_diff_ns=0, machine_ids=True)
    comb = load_trace(out)
    assert _starts(comb) == [1000, 3000]  # per machine in trace_processor
    assert _ftrace_times(comb) == [500, 1500, 2800, 3500]
    assert all(i["stale_ftrace_events_dropped"] == 0 for i in r.inputs)


# --- every pair of real traces, in both forms: nothing the viewer drops --------------

ALL = SYSTEM + ["chrome89_windows_track_event.pftrace.gz", "flutter_ios_dartvm_track_event.pftrace"]


def _findings(path):
    """inspect --check's findings (its model of trace_processor) by stat:
    (count, effect)."""
    s = inspect(path, check=True)
    return {k: (v["count"], v["effect"]) for k, v in s["stats"].items()
            if v["effect"] != "none" or v["severity"] in ("error", "data_loss")}


def _losses(path):
    """The findings that lose or misread data, by stat."""
    return {k: n for k, (n, effect) in _findings(path).items() if effect != "none"}


@functools.lru_cache(maxsize=None)
def _input_findings(name):
    return _findings(REAL / name)


@needs_real
@pytest.mark.parametrize("machine_ids", [False, True], ids=["pids", "machines"])
@pytest.mark.parametrize("host,guest", list(itertools.permutations(ALL, 2)))
def test_real_pairs_lose_nothing(tmp_path, host, guest, machine_ids):
    # What the viewer loses or misreads in the merge is what it did in the
    # inputs, no more (some inputs come with their own: Chrome's reused flow
    # ids); what it only remarks on (how the inputs were recorded) may stay
    # or go with the session packets, but nothing new appears.
    out = tmp_path / "m.pftrace"
    r = merge(host=REAL / host, guests={"vm": REAL / guest}, output=out, machine_ids=machine_ids,
              time_diff_ns=_diff_guest_later(host, guest))
    h, g, m = _input_findings(host), _input_findings(guest), _findings(out)
    want = {k: h.get(k, (0, e))[0] + g.get(k, (0, e))[0] for k, (_, e) in {**h, **g}.items()
            if e != "none"}
    got = {k: n for k, (n, e) in m.items() if e != "none"}
    if r.inputs[1]["task_states_approximated"]:  # states its kernel cannot say: said
        assert any("thread state(s)" in w for w in r.warnings)
        got.pop("task_state_invalid", None)
        m.pop("task_state_invalid", None)
    assert got == want, r.inputs
    assert set(m) <= set(h) | set(g), m
    assert not r.main_switched


@needs_real
def test_timestamp_zero_stays_zero(tmp_path):
    # The GPU counter trace's first packet (the counter specs) has timestamp 0:
    # "no time". Moved, it stays at 0 instead of landing before zero (which
    # would drop the specs and make the merge switch its timeline for it).
    gpu = "android11_s21_gpu_counters.pftrace"
    host = "android12_emulator_x86_64_sched_perf.pftrace"
    out = tmp_path / "m.pftrace"
    real_first = 1_316_796_896_497_775  # its first real packet (README)
    diff = real_first - (_first_ts(host) + 10**9)
    r = merge(host=REAL / host, guests={"vm": REAL / gpu}, output=out, time_diff_ns=diff)
    assert not r.main_switched and r.inputs[1]["zero_timestamps_kept"] >= 1
    comb = load_trace(out)
    specs = [p for p in comb.packet if p.HasField("gpu_counter_event")
             and p.gpu_counter_event.HasField("counter_descriptor")]
    assert specs and all(p.timestamp == 0 for p in specs)
    assert _losses(out) == {}


@needs_real
def test_monotonic_only_main_gets_a_boottime_bridge(tmp_path):
    # Flutter's trace has one clock, MONOTONIC, as its trace clock; the moved
    # side's timestamps are BOOTTIME. A snapshot saying the two agree (as the
    # alignment took them) lets the viewer place the moved side at all.
    flutter = "flutter_ios_dartvm_track_event.pftrace"
    guest = "android12_emulator_x86_64_sched_perf.pftrace"
    out = tmp_path / "m.pftrace"
    merge(host=REAL / flutter, guests={"vm": REAL / guest}, output=out,
          time_diff_ns=_diff_guest_later(flutter, guest))
    from conftest import pb2
    snaps = [p.clock_snapshot for p in load_trace(out).packet
             if p.HasField("clock_snapshot") and p.machine_id == 0
             and {c.clock_id for c in p.clock_snapshot.clocks} ==
             {pb2.BUILTIN_CLOCK_MONOTONIC, pb2.BUILTIN_CLOCK_BOOTTIME}]
    assert len(snaps) == 1 and snaps[0].primary_trace_clock == pb2.BUILTIN_CLOCK_MONOTONIC
    assert len({c.timestamp for c in snaps[0].clocks}) == 1
    assert _losses(out) == {}


# --- the moved side's trace stats ------------------------------------------------------

def _traced(path, buffer_kb, n):
    import vperfetto
    with vperfetto.Session(path, buffer_kb=buffer_kb, mode="ring") as s:
        for i in range(n):
            with vperfetto.slice("work", args={"i": i}):
                pass
    return s.stats


@pytest.mark.parametrize("machine_ids", [False, True], ids=["pids", "machines"])
def test_guest_buffer_losses_stay_visible(tmp_path, machine_ids):
    # The guest's ring buffer wrapped: how much it lost is in its trace stats,
    # and the user needs it as much as the host's.
    g, h, out = tmp_path / "g.pftrace", tmp_path / "h.pftrace", tmp_path / "o.pftrace"
    gstats = _traced(g, 64, 20000)
    _traced(h, 4096, 100)
    assert gstats["chunks_overwritten"] > 0
    r = merge(host=h, guests={"vm": g}, output=out, time_diff_ns=0, machine_ids=machine_ids)
    comb = load_trace(out, keep_merge_record=True)
    stats = [(p.machine_id, p.trace_stats) for p in comb.packet if p.HasField("trace_stats")]
    if machine_ids:  # one set per machine: the guest keeps its own
        guest_stats = [s for m, s in stats if m == 1]
        assert len(guest_stats) == 1
        assert guest_stats[0].buffer_stats[0].chunks_overwritten == gstats["chunks_overwritten"]
        return
    # One machine: trace_processor reads the last TraceStats; it has the
    # host's buffer, then the guest's.
    last = stats[-1][1]
    assert len(last.buffer_stats) == 2
    assert last.buffer_stats[1].chunks_overwritten == gstats["chunks_overwritten"]
    assert last.buffer_stats[0].chunks_overwritten == 0
    assert r.inputs[1]["trace_stats_buffers"] == [1, 1] and r.inputs[0]["trace_stats_buffers"] == [0, 1]
    rec = [p.track_event for p in comb.packet if p.track_event.name == "vperfetto_merge_alignment"]
    assert {a.name: a.string_value for a in rec[0].debug_annotations}["trace_stats_buffers"] == "1..1"


# --- android log times are CLOCK_REALTIME --------------------------------------------------

def _log_trace(boot, real, log_real, pid, with_realtime=True):
    from conftest import pb2
    t = pb2.Trace()
    for k in (0, 10):
        p = t.packet.add(trusted_packet_sequence_id=1, timestamp=boot + k * 10**9)
        p.clock_snapshot.clocks.add(clock_id=pb2.BUILTIN_CLOCK_BOOTTIME, timestamp=boot + k * 10**9)
        if with_realtime:
            p.clock_snapshot.clocks.add(clock_id=pb2.BUILTIN_CLOCK_REALTIME, timestamp=real + k * 10**9)
    p = t.packet.add(trusted_packet_sequence_id=2, timestamp=boot + 5 * 10**9)
    p.android_log.events.add(pid=pid, tid=pid, timestamp=log_real, tag="t", message="m")
    return t


@pytest.mark.parametrize("machine_ids", [False, True], ids=["pids", "machines"])
def test_android_log_times_land_where_they_happened(tmp_path, machine_ids):
    # The guest's wall clock is 2e18 ns behind the host's; the viewer converts
    # every log time through the host's REALTIME, so a moved log time is
    # re-expressed there: guest BOOTTIME 1e12 + 1 s is host BOOTTIME 2e12 + 1 s
    # (time diff -1e12) is host REALTIME 7e18 + 1 s.
    g, h, out = tmp_path / "g.pftrace", tmp_path / "h.pftrace", tmp_path / "o.pftrace"
    g.write_bytes(_log_trace(10**12, 5 * 10**18, 5 * 10**18 + 10**9, 100).SerializeToString())
    h.write_bytes(_log_trace(2 * 10**12, 7 * 10**18, 7 * 10**18 + 3 * 10**9, 200).SerializeToString())
    r = merge(host=h, guests={"vm": g}, output=out, time_diff_ns=-10**12, machine_ids=machine_ids)
    logs = sorted(e.timestamp for p in load_trace(out).packet for e in p.android_log.events)
    if machine_ids:  # its machine's REALTIME, which its clock syncs tie to the host's
        assert logs == [5 * 10**18 + 10**9, 7 * 10**18 + 3 * 10**9]
    else:
        assert logs == [7 * 10**18 + 10**9, 7 * 10**18 + 3 * 10**9]
    assert r.inputs[1]["unplaced_log_events"] == 0 and not r.warnings


def test_main_without_a_wall_clock_borrows_the_guests(tmp_path):
    # The host's snapshots have no REALTIME: the viewer could place no log
    # time at all on its machine. It gets the guest's wall clock (moved onto
    # the host's BOOTTIME), and the guest's log lands where it happened.
    from conftest import pb2
    g, h, out = tmp_path / "g.pftrace", tmp_path / "h.pftrace", tmp_path / "o.pftrace"
    g.write_bytes(_log_trace(10**12, 5 * 10**18, 5 * 10**18 + 10**9, 100).SerializeToString())
    # (the host's own log time means nothing without a wall clock of its own:
    # on the borrowed one it reads as 3 s after the guest's)
    h.write_bytes(_log_trace(2 * 10**12, 0, 5 * 10**18 + 3 * 10**9, 200,
                             with_realtime=False).SerializeToString())
    r = merge(host=h, guests={"vm": g}, output=out, time_diff_ns=-10**12)
    assert r.inputs[1]["unplaced_log_events"] == 0 and not r.warnings
    comb = load_trace(out)
    borrowed = [{c.clock_id: c.timestamp for c in p.clock_snapshot.clocks} for p in comb.packet
                if p.HasField("clock_snapshot") and
                pb2.BUILTIN_CLOCK_REALTIME in {c.clock_id for c in p.clock_snapshot.clocks}]
    assert borrowed == [{pb2.BUILTIN_CLOCK_BOOTTIME: 2 * 10**12, pb2.BUILTIN_CLOCK_REALTIME: 5 * 10**18},
                        {pb2.BUILTIN_CLOCK_BOOTTIME: 2 * 10**12 + 10**10,
                         pb2.BUILTIN_CLOCK_REALTIME: 5 * 10**18 + 10**10}]
    logs = [e.timestamp for p in comb.packet for e in p.android_log.events if e.pid > 1000]
    assert logs == [5 * 10**18 + 10**9]  # on the borrowed clock: host BOOTTIME 2e12 + 1 s
    assert not _losses(out)


def test_android_logs_that_cannot_be_placed_are_said(tmp_path):
    # Neither trace relates REALTIME to BOOTTIME: the guest's log times cannot
    # be placed, and the report says so.
    g, h, out = tmp_path / "g.pftrace", tmp_path / "h.pftrace", tmp_path / "o.pftrace"
    g.write_bytes(_log_trace(10**12, 0, 10**9, 100, with_realtime=False).SerializeToString())
    h.write_bytes(_log_trace(2 * 10**12, 0, 0, 200, with_realtime=False).SerializeToString())
    r = merge(host=h, guests={"vm": g}, output=out, time_diff_ns=-10**12)
    assert r.inputs[1]["unplaced_log_events"] == 1
    assert any("android log event(s) cannot be placed" in w for w in r.warnings)
