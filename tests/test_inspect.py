"""python -m vperfetto.inspect: the summary, and --check on traces broken on purpose."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import vperfetto
from vperfetto.inspect import inspect
from vperfetto.merge import merge
from conftest import SHARED, pb2

SDK = SHARED / "sdk-v7"
REAL = SHARED / "real"


def run(*args):
    return subprocess.run([sys.executable, "-m", "vperfetto.inspect", *map(str, args)],
                          capture_output=True, text=True)


def our_trace(path):
    with vperfetto.Session(path):
        vperfetto.set_process_name("app")
        for i in range(10):
            with vperfetto.slice("work", category="c"):
                vperfetto.counter("depth", i)
    return path


def test_summary_of_our_trace(tmp_path):
    s = inspect(our_trace(tmp_path / "t.pftrace"), check=True)
    assert s["packets"] > 30 and s["track_events"] == {"slice_begin": 10, "slice_end": 10,
                                                        "instant": 0, "counter": 10}
    (p,) = s["processes"]
    assert p["name"] == "app" and p["guest"] == "" and p["last_ts"] > p["first_ts"] > 0
    assert s["tracks"]["counter"] == 1 and s["counter_tracks"] == ["depth"]
    assert s["clock_snapshots"]["count"] == 2 and 6 in s["clock_snapshots"]["clocks"]
    assert s["findings"] == []
    p = run(tmp_path / "t.pftrace", "--check")
    assert p.returncode == 0 and "check: no findings" in p.stdout and "pid" in p.stdout


@pytest.mark.skipif(not SDK.is_dir(), reason="../shared/testdata/sdk-v7 is not beside the project")
def test_merged_trace_guest_and_host_and_json(tmp_path):
    out = tmp_path / "m.pftrace"
    merge(host=SDK / "host.pftrace", guests={"vm1": SDK / "guest.pftrace"}, output=out)
    p = run(out, "--json")
    assert p.returncode == 0
    s = json.loads(p.stdout)
    owners = {(x["guest"], x["name"]) for x in s["processes"]}
    assert owners == {("", "vmm_host"), ("vm1", "vm1: guest_app")}
    assert s["track_events"]["slice_begin"] == 508
    text = run(out).stdout
    assert "guest vm1" in text and "host" in text
    (rec,) = s["merge_alignments"]  # the alignment the merge recorded
    assert rec["guest"] == "vm1" and rec["method"] == "tsc-markers"
    assert abs(rec["offset_ns"] - 1_234_500_000_000) <= 2
    assert "merge alignment: vm1 offset" in text


@pytest.mark.skipif(not SDK.is_dir(), reason="../shared/testdata/sdk-v7 is not beside the project")
def test_add_traces_output_has_collisions_and_backwards_time():
    s = inspect(SDK / "combined_add_traces.pftrace", check=True)
    rules = s["findings_by_rule"]
    assert rules.get("timestamp-backwards")  # two clock domains on shared sequence ids


def write(tmp_path, trace):
    path = tmp_path / "broken.pftrace"
    path.write_bytes(trace.SerializeToString())
    return path


def base():
    t = pb2.Trace()
    p = t.packet.add(trusted_packet_sequence_id=2, timestamp=100,
                     sequence_flags=pb2.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED)
    p.track_descriptor.uuid = 1
    p.track_descriptor.process.pid = 10
    p.track_descriptor.process.process_name = "p"
    return t


def event(t, ts, type_, track=1, seq=2, **kw):
    p = t.packet.add(trusted_packet_sequence_id=seq, timestamp=ts,
                     sequence_flags=pb2.TracePacket.SEQ_NEEDS_INCREMENTAL_STATE)
    p.track_event.type = type_
    p.track_event.track_uuid = track
    for k, v in kw.items():
        setattr(p.track_event, k, v)
    return p


B, E, I = pb2.TrackEvent.TYPE_SLICE_BEGIN, pb2.TrackEvent.TYPE_SLICE_END, pb2.TrackEvent.TYPE_INSTANT


def broken(rule):
    t = base()
    if rule == "uuid-undescribed":
        event(t, 200, I, track=999, name="x")
    elif rule == "uuid-redescribed":
        p = t.packet.add(trusted_packet_sequence_id=2, timestamp=150)
        p.track_descriptor.uuid = 1
        p.track_descriptor.thread.pid, p.track_descriptor.thread.tid = 10, 11
    elif rule == "interned-id-undefined":
        event(t, 200, I, name_iid=7)
    elif rule == "incremental-state-not-cleared":
        event(t, 200, I, seq=3, name="x")
    elif rule == "unbalanced-slices":
        event(t, 200, E)
    elif rule == "timestamp-backwards":
        event(t, 300, I, name="x")
        event(t, 200, I, name="y")
    elif rule == "pid-collision":
        p = t.packet.add(trusted_packet_sequence_id=2, timestamp=150)
        p.track_descriptor.uuid = 2
        p.track_descriptor.process.pid = 10
        p.track_descriptor.process.process_name = "vm1: other"
    elif rule == "tid-collision":
        for uuid, pid in ((3, 10), (4, 20)):
            p = t.packet.add(trusted_packet_sequence_id=2, timestamp=150)
            p.track_descriptor.uuid = uuid
            p.track_descriptor.thread.pid, p.track_descriptor.thread.tid = pid, 77
    return t


RULES = ["uuid-undescribed", "uuid-redescribed", "interned-id-undefined",
         "incremental-state-not-cleared", "unbalanced-slices", "timestamp-backwards",
         "pid-collision", "tid-collision"]


@pytest.mark.parametrize("rule", RULES)
def test_each_check_rule(tmp_path, rule):
    path = write(tmp_path, broken(rule))
    s = inspect(path, check=True)
    assert [f["rule"] for f in s["findings"]] == [rule], s["findings"]
    f = s["findings"][0]
    # the finding names the packet and its byte offset
    data = path.read_bytes()
    t = pb2.Trace()
    t.ParseFromString(data)
    assert 0 <= f["packet"] < len(t.packet) and 0 < f["offset"] < len(data)
    assert data[f["offset"]] == 0x0A  # a Trace.packet field starts there
    p = run(path, "--check")
    assert p.returncode == 1 and rule in p.stdout


def test_unbroken_base_has_no_findings(tmp_path):
    t = base()
    event(t, 200, B, name="a")
    event(t, 300, E)
    assert inspect(write(tmp_path, t), check=True)["findings"] == []


@pytest.mark.parametrize("content", [b"", b"not a trace at all" * 5])
def test_bad_input_exit_2(tmp_path, content):
    p = tmp_path / "bad"
    p.write_bytes(content)
    r = run(p)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert run(tmp_path / "missing").returncode == 2


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/testdata/real is not beside the project")
@pytest.mark.parametrize("name", ["android12_emulator_x86_64_sched_perf.pftrace",
                                  "chrome89_windows_track_event.pftrace.gz",
                                  "linux_desktop_systing_compact_sched.pb",
                                  "flutter_ios_dartvm_track_event.pftrace"])
def test_real_traces(name):
    s = inspect(REAL / name, check=True)
    raw = (REAL / name).read_bytes()
    if name.endswith(".gz"):
        import gzip
        raw = gzip.decompress(raw)
    t = pb2.Trace()
    t.ParseFromString(raw)
    assert s["packets"] == len(t.packet)
    assert s["gzip"] == name.endswith(".gz")
