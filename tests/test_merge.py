"""The offline merge, on real SDK v7 traces (with the true offset written down),
public real-world traces and traces of our own."""

from __future__ import annotations

import collections
import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest

import vperfetto
from vperfetto.merge import merge
from conftest import SHARED, TYPE_BEGIN, TYPE_COUNTER, descriptors, load_trace, pb2, resolve

SDK = SHARED / "sdk-v7"
REAL = SHARED / "real"
TRUTH_NS = 1_234_500_000_000  # guest BOOTTIME - host BOOTTIME (sdk-v7/README.md)

needs_sdk = pytest.mark.skipif(not (SDK / "guest.pftrace").exists(),
                               reason="../shared/testdata/sdk-v7 is not beside the project")
needs_real = pytest.mark.skipif(not REAL.is_dir(),
                                reason="../shared/testdata/real is not beside the project")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "vperfetto.merge", *map(str, args)],
                          capture_output=True, text=True)


def track_events(trace):
    return [p for p in trace.packet if p.HasField("track_event")]


@needs_sdk
class TestSdkV7:
    def test_default_mode_recovers_truth_and_keeps_everything(self, tmp_path):
        out = tmp_path / "combined.pftrace"
        r = merge(SDK / "guest.pftrace", SDK / "host.pftrace", out)
        assert r.method == "tsc-markers" and not r.alignments[0].approximate
        assert abs(r.offset_ns - TRUTH_NS) <= 2
        guest, host, comb = (load_trace(SDK / "guest.pftrace"), load_trace(SDK / "host.pftrace"),
                             load_trace(out))
        te = track_events(comb)
        assert len(te) == 562 + 674
        # the guest (main) is unchanged in time; the host moved by the offset
        g_ts = sorted(p.timestamp for p in track_events(guest))
        h_ts = sorted(p.timestamp + r.offset_ns for p in track_events(host))
        assert sorted(p.timestamp for p in te) == sorted(g_ts + h_ts)
        # sequences: guest 1-4, host 5-8 (its 5 held only session packets -- snapshots,
        # config, system info, stats -- which the guest's machine does not take)
        seqs = collections.Counter(p.trusted_packet_sequence_id for p in comb.packet)
        assert set(seqs) == {1, 2, 3, 4, 6, 7, 8}
        # pids/tids: host + 1,000,000, guest as it was
        descs = descriptors(comb)
        procs = {d.process.pid: d.process.process_name for d in descs.values() if d.HasField("process")}
        assert procs == {14663: "guest: guest_app", 1014658: "vmm_host"}
        tids = sorted(d.thread.tid for d in descs.values() if d.HasField("thread"))
        assert tids == [14663, 14665, 14666, 1014658, 1014661, 1014662]

    def test_uuids_disjoint_and_consistent_counter_tracks_not_zero(self, tmp_path):
        out = tmp_path / "combined.pftrace"
        merge(SDK / "guest.pftrace", SDK / "host.pftrace", out)
        comb = load_trace(out)
        descs = descriptors(comb)
        assert 0 not in descs
        host_uuids = set(descriptors(load_trace(SDK / "host.pftrace")))
        guest_uuids = set(descriptors(load_trace(SDK / "guest.pftrace")))
        assert guest_uuids <= set(descs)  # main keeps its uuids
        assert not (host_uuids & set(descs) - guest_uuids)
        assert len(descs) == len(guest_uuids) + len(host_uuids)
        for d in descs.values():
            if d.parent_uuid:
                assert d.parent_uuid in descs
        events = resolve(comb)
        for e in events:
            assert e.track_uuid in descs, f"event {e.name} on undescribed track {e.track_uuid}"
        counters = [e for e in events if e.type == TYPE_COUNTER]
        assert len(counters) == 55
        names = collections.Counter(descs[e.track_uuid].name for e in counters)
        assert names == {"guest_mem_kb": 25, "vmm_mem_kb": 30}
        host_counter = next(d for d in descs.values() if d.name == "vmm_mem_kb")
        assert host_counter.parent_uuid in descs and descs[host_counter.parent_uuid].process.pid == 1014658

    def test_no_empty_or_duplicate_session_packets(self, tmp_path):
        out = tmp_path / "combined.pftrace"
        r = merge(SDK / "guest.pftrace", SDK / "host.pftrace", out)
        comb = load_trace(out)
        kinds = collections.Counter(p.WhichOneof("data") for p in comb.packet)
        assert kinds["trace_config"] == 1 and kinds["trace_stats"] == 1
        assert kinds["clock_snapshot"] == 2  # the main's; the moved side's are re-expressed
        assert kinds["synchronization_marker"] == 1
        for p in comb.packet:
            fields = {f.name for f, _ in p.ListFields()}
            assert fields - {"trusted_uid", "trusted_packet_sequence_id", "timestamp"}, p
        moved = r.inputs[1]
        # 2 snapshots, config, stats, sync marker and its SystemInfo (one machine, one kernel)
        assert moved["packets_dropped"] == 6 and moved["snapshots_dropped"] == 2

    def test_alignment_is_recorded_in_the_output(self, tmp_path):
        out = tmp_path / "rec.pftrace"
        r = merge(SDK / "guest.pftrace", SDK / "host.pftrace", out)
        comb = load_trace(out, keep_merge_record=True)
        recs = [e for e in resolve(comb) if e.name == "vperfetto_merge_alignment"]
        assert len(recs) == 1
        assert recs[0].args == {"guest": "guest", "method": "tsc-markers",
                                "offset_ns": r.offset_ns, "approximate": 0,
                                "spread_ns": r.alignments[0].spread_ns,
                                "trace_stats_buffers": "0..0"}  # the guest is main here
        assert descriptors(comb)[recs[0].track_uuid].name == "vperfetto merge"
        # its own sequence, above every input's
        seq = recs[0].seq
        assert seq > max(p.trusted_packet_sequence_id for p in load_trace(out).packet)
        # --add-traces records nothing: the output is the two inputs
        add = tmp_path / "add.pftrace"
        merge(SDK / "guest.pftrace", SDK / "host.pftrace", add, mode="add-traces")
        assert not any(e.name == "vperfetto_merge_alignment"
                       for e in resolve(load_trace(add, keep_merge_record=True)))

    def test_deterministic(self, tmp_path):
        a, b = tmp_path / "a.pftrace", tmp_path / "b.pftrace"
        merge(SDK / "guest.pftrace", SDK / "host.pftrace", a)
        merge(SDK / "guest.pftrace", SDK / "host.pftrace", b)
        assert a.read_bytes() == b.read_bytes()

    def test_matches_original_tool_timelines(self, tmp_path):
        for mode_args, ref in [((), "combined_default.pftrace"),
                               (("--merge-guest-into-host",), "combined_guest_into_host.pftrace"),
                               (("2385632780874",), "combined_guest_boottime.pftrace")]:
            out = tmp_path / ref
            proc = run_cli(SDK / "guest.pftrace", SDK / "host.pftrace", out, *mode_args)
            assert proc.returncode == 0, proc.stderr
            ours = sorted((p.timestamp, p.track_event.type) for p in track_events(load_trace(out)))
            theirs = sorted((p.timestamp, p.track_event.type)
                            for p in track_events(load_trace(SDK / ref)))
            assert ours == theirs, ref

    def test_guest_into_host_moves_guest_back(self, tmp_path):
        out = tmp_path / "gih.pftrace"
        r = merge(SDK / "guest.pftrace", SDK / "host.pftrace", out, mode="guest-into-host")
        comb = load_trace(out)
        assert r.inputs[0]["kind"] == "host" and r.inputs[0]["role"] == "main"
        te = track_events(comb)
        lo, hi = min(p.timestamp for p in te), max(p.timestamp for p in te)
        assert (lo, hi) == (1_151_132_780_874, 1_151_739_744_934)
        procs = {d.process.pid: d.process.process_name
                 for d in descriptors(comb).values() if d.HasField("process")}
        assert procs == {14658: "vmm_host", 1014663: "guest: guest_app"}

    def test_boot_time_argument(self, tmp_path):
        out = tmp_path / "boot.pftrace"
        r = merge(SDK / "guest.pftrace", SDK / "host.pftrace", out,
                  guest_boot_time_ns=2_385_632_780_874)
        assert r.method == "guest-boot-time" and r.offset_ns == TRUTH_NS

    def test_time_diff_wins(self, tmp_path):
        r = merge(SDK / "guest.pftrace", SDK / "host.pftrace", tmp_path / "o.pftrace",
                  time_diff_ns=5, guest_boot_time_ns=7)
        assert r.method == "time-diff" and r.offset_ns == 5

    def test_add_traces_keeps_both_unchanged(self, tmp_path):
        out = tmp_path / "add.pftrace"
        r = merge(SDK / "guest.pftrace", SDK / "host.pftrace", out, mode="add-traces")
        assert not r.alignments[0].applied
        assert out.read_bytes() == (SDK / "guest.pftrace").read_bytes() + (SDK / "host.pftrace").read_bytes()

    def test_guest_tsc_offset_is_applied(self, tmp_path):
        r = merge(SDK / "guest.pftrace", SDK / "host.pftrace", tmp_path / "o.pftrace",
                  guest_tsc_offset=2_596_132_000)  # ~1 s of ticks
        assert abs(r.offset_ns - (TRUTH_NS + 1_000_000_000)) < 1_000_000

    def test_without_markers_falls_back_with_warning(self, tmp_path):
        # strip the clock-sync annotations from both inputs
        paths = []
        for name in ("guest", "host"):
            t = load_trace(SDK / f"{name}.pftrace")
            for p in t.packet:
                if p.HasField("track_event"):
                    for a in p.track_event.debug_annotations:
                        if a.name.startswith("clock_sync"):
                            a.name = "renamed"
            path = tmp_path / f"{name}.pftrace"
            path.write_bytes(t.SerializeToString())
            paths.append(path)
        proc = run_cli(paths[0], paths[1], tmp_path / "o.pftrace")
        assert proc.returncode == 0, proc.stderr
        assert "approximate" in proc.stderr and "realtime-snapshots" in proc.stderr
        r = merge(paths[0], paths[1], tmp_path / "o2.pftrace")
        assert r.method == "realtime-snapshots" and abs(r.offset_ns - TRUTH_NS) < 1000

    def test_without_markers_in_host_only(self, tmp_path):
        t = load_trace(SDK / "host.pftrace")
        for p in t.packet:
            if p.HasField("track_event"):
                del p.track_event.debug_annotations[:]
        host = tmp_path / "host.pftrace"
        host.write_bytes(t.SerializeToString())
        r = merge(SDK / "guest.pftrace", host, tmp_path / "o.pftrace")
        assert r.method == "realtime-snapshots"


@needs_sdk
def test_cli_named_form_and_console_script(tmp_path):
    out = tmp_path / "multi.pftrace"
    proc = run_cli("--host", SDK / "host.pftrace", "--guest", f"vm1={SDK / 'guest.pftrace'}",
                   "--guest", f"vm2={SDK / 'guest.pftrace'}", "-o", out)
    assert proc.returncode == 0, proc.stderr
    offsets = [int(line.split()[2]) for line in proc.stdout.splitlines() if ": offset " in line]
    assert len(offsets) == 2 and all(abs(o - TRUTH_NS) <= 2 for o in offsets)
    comb = load_trace(out)
    procs = sorted((d.process.pid, d.process.process_name)
                   for d in descriptors(comb).values() if d.HasField("process"))
    assert procs == [(14658, "vmm_host"), (1014663, "vm1: guest_app"), (2014663, "vm2: guest_app")]
    seqs = {p.trusted_packet_sequence_id for p in comb.packet}
    assert seqs == set(range(1, 13))
    # the console script pip installs beside the interpreter does the same
    script = Path(sys.executable).with_name("vperfetto-merge")
    assert script.exists(), f"{script} was not installed"
    out2 = tmp_path / "multi2.pftrace"
    proc = subprocess.run([str(script), "--host", str(SDK / "host.pftrace"), "--guest",
                           f"vm1={SDK / 'guest.pftrace'}", "--guest", f"vm2={SDK / 'guest.pftrace'}",
                           "-o", str(out2), "-q"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out2.read_bytes() == out.read_bytes()
    assert len(track_events(comb)) == 674 + 2 * 562
    events = resolve(comb)
    descs = descriptors(comb)
    assert all(e.track_uuid in descs for e in events)


@needs_sdk
def test_machine_id_form(tmp_path):
    out = tmp_path / "m.pftrace"
    merge(host=SDK / "host.pftrace", guests={"vm1": SDK / "guest.pftrace"}, output=out,
          machine_ids=True)
    comb = load_trace(out)
    machines = collections.Counter(p.machine_id for p in comb.packet)
    # every guest packet stays: on its own machine its snapshots, config,
    # stats and service events are its machine's in trace_processor
    assert machines[0] == 690 and machines[1] == 582
    procs = sorted(d.process.pid for d in descriptors(comb).values() if d.HasField("process"))
    assert procs == [14658, 14663]  # per-machine pid namespaces: no offset
    guest = load_trace(SDK / "guest.pftrace")
    want = [{c.clock_id: c.timestamp for c in p.clock_snapshot.clocks}
            for p in guest.packet if p.HasField("clock_snapshot")]
    # its snapshots become remote clock syncs of its machine (a ClockSnapshot
    # of a remote machine would take over the trace clock in trace_processor)
    assert not [p for p in comb.packet if p.machine_id == 1 and p.HasField("clock_snapshot")]
    syncs = [p.remote_clock_sync.synced_clocks[0] for p in comb.packet
             if p.machine_id == 1 and p.HasField("remote_clock_sync")]
    got = [{c.clock_id: c.timestamp for c in s.client_clocks.clocks} for s in syncs]
    assert len(got) == len(want) == 2
    for w, g, s in zip(want, got, syncs):  # BOOTTIME moved onto the host's, the rest as it was
        boot = g.pop(pb2.BUILTIN_CLOCK_BOOTTIME)
        assert boot == w.pop(pb2.BUILTIN_CLOCK_BOOTTIME) - TRUTH_NS
        assert g == w
        assert [(c.clock_id, c.timestamp) for c in s.host_clocks.clocks] == \
            [(pb2.BUILTIN_CLOCK_BOOTTIME, boot)]
    kinds = collections.Counter(k for p in comb.packet if p.machine_id == 1
                                for k in ("trace_stats", "trace_config", "service_event")
                                if p.HasField(k))
    assert kinds == {"trace_stats": 1, "trace_config": 1, "service_event": 4}


# --- bad input -------------------------------------------------------------------

@needs_sdk
@pytest.mark.parametrize("content,needle", [
    (b"", "empty"),
    (b"hello, this is not a trace at all\n" * 10, "not a Perfetto trace"),
    (bytes(range(256)) * 4, "not a Perfetto trace"),
    (b"\x0a\xff\xff\xff\xff\x0f" + b"x" * 100, "claims"),
])
def test_bad_inputs_exit_2_one_line(tmp_path, content, needle):
    bad = tmp_path / "bad.pftrace"
    bad.write_bytes(content)
    out = tmp_path / "out.pftrace"
    for args in [(bad, SDK / "host.pftrace", out), (SDK / "guest.pftrace", bad, out)]:
        proc = run_cli(*args)
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], proc.stderr
        assert not out.exists()
    assert not list(tmp_path.glob("out.pftrace*"))  # no temporary left behind


@needs_sdk
def test_missing_input_and_output_is_input(tmp_path):
    proc = run_cli(tmp_path / "nope.pftrace", SDK / "host.pftrace", tmp_path / "o.pftrace")
    assert proc.returncode == 2 and "nope.pftrace" in proc.stderr
    g = tmp_path / "g.pftrace"
    g.write_bytes((SDK / "guest.pftrace").read_bytes())
    proc = run_cli(g, SDK / "host.pftrace", g)
    assert proc.returncode == 2 and "also an input" in proc.stderr
    assert g.read_bytes() == (SDK / "guest.pftrace").read_bytes()
    proc = run_cli(g, SDK / "host.pftrace", tmp_path / "no-dir" / "o.pftrace")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    for bad_args in [(), (g,), (g, g, g, "notanumber"), ("--add-traces", "--merge-guest-into-host", g, g, "x")]:
        proc = run_cli(*bad_args)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, bad_args


@needs_sdk
def test_truncated_last_packet_merges_complete_part(tmp_path):
    data = (SDK / "host.pftrace").read_bytes()
    cut = tmp_path / "cut.pftrace"
    cut.write_bytes(data[:-7])
    out = tmp_path / "o.pftrace"
    proc = run_cli(SDK / "guest.pftrace", cut, out)
    assert proc.returncode == 0, proc.stderr
    assert "truncated at byte" in proc.stderr
    comb = load_trace(out)
    # the guest's 582 packets, then the host's 689 complete ones (its trace
    # stats were the truncated last one) but the five that only made sense on
    # their own (2 clock snapshots, the trace config, the sync marker, its SystemInfo)
    assert len(comb.packet) == 582 + 689 - 5 == 1266


@needs_sdk
def test_gzip_input(tmp_path):
    gz = tmp_path / "host.pftrace.gz"
    gz.write_bytes(gzip.compress((SDK / "host.pftrace").read_bytes()))
    a, b = tmp_path / "a.pftrace", tmp_path / "b.pftrace"
    merge(SDK / "guest.pftrace", gz, a)
    merge(SDK / "guest.pftrace", SDK / "host.pftrace", b)
    assert a.read_bytes() == b.read_bytes()


def test_python_api_argument_errors(tmp_path):
    with pytest.raises(TypeError):
        merge(None, None, None)
    with pytest.raises(ValueError, match="mode"):
        merge("a", "b", "c", mode="sideways")
    with pytest.raises(vperfetto.TraceIOError):
        merge(tmp_path / "a", tmp_path / "b", tmp_path / "c")


# --- traces of our own ----------------------------------------------------------------

def _record(path, name, n=20):
    with vperfetto.Session(path):
        vperfetto.set_process_name(name)
        for i in range(n):
            with vperfetto.slice("work", args={"i": i}):
                vperfetto.counter(f"{name}_depth", i)
    return path


def test_merge_our_own_traces_aligns_by_tsc_snapshots(tmp_path):
    g = _record(tmp_path / "g.pftrace", "guest_proc")
    h = _record(tmp_path / "h.pftrace", "host_proc")
    r = merge(g, h, tmp_path / "o.pftrace")
    # same machine, same clocks: the true offset is 0
    if os.uname().machine == "x86_64":
        assert r.method == "tsc-snapshots"
        assert abs(r.offset_ns) < 5_000
    comb = load_trace(tmp_path / "o.pftrace")
    events = resolve(comb)
    assert sum(e.name == "work" for e in events) == 40
    descs = descriptors(comb)
    assert all(e.track_uuid in descs for e in events)
    pids = sorted(d.process.pid for d in descs.values() if d.HasField("process"))
    assert pids == [os.getpid(), os.getpid() + 1_000_000]


@needs_real
@pytest.mark.parametrize("guest,host", [
    ("android12_emulator_x86_64_sched_perf.pftrace", "android11_s20_sched_ftrace_sdk.perfetto-trace"),
    ("linux_desktop_systing_compact_sched.pb", "android11_s20_process_sys_stats.pftrace"),
    ("flutter_ios_dartvm_track_event.pftrace", "android13_pixel7pro_atrace_frametimeline.perfetto-trace"),
    ("chrome89_windows_track_event.pftrace.gz", "android11_s21_gpu_counters.pftrace"),
])
def test_real_traces_merge_into_host(tmp_path, guest, host):
    out = tmp_path / "o.pftrace"
    r = merge(host=REAL / host, guests={"vm1": REAL / guest}, output=out)
    comb = load_trace(out)
    g_in = REAL / guest
    g_trace = pb2.Trace()
    raw = g_in.read_bytes()
    g_trace.ParseFromString(gzip.decompress(raw) if guest.endswith(".gz") else raw)
    h_trace = load_trace(REAL / host)
    moved = r.inputs[1]
    assert moved["packets_read"] == len(g_trace.packet)
    assert len(comb.packet) == len(h_trace.packet) + moved["packets_written"]
    # every dropped packet is a clock snapshot, config, stats, sync marker or system info
    kinds_in = collections.Counter(p.WhichOneof("data") for p in g_trace.packet)
    kinds_out = collections.Counter(p.WhichOneof("data") for p in comb.packet[len(h_trace.packet):])
    for k, n in kinds_in.items():
        if k in ("clock_snapshot", "trace_config", "trace_stats", "synchronization_marker",
                 "system_info"):
            continue
        if k == "service_event":  # all but the earliest tracing-start event go
            n -= moved["tracing_start_events_dropped"]
        assert kinds_out[k] == n, k
    # every moved timestamp is on the host's clock now
    h_first = next(p.timestamp for p in h_trace.packet if p.timestamp)
    moved_ts = [p for p in comb.packet[len(h_trace.packet):] if p.timestamp]
    # (sequence-scoped clocks 64..127 keep their values: their snapshots move)
    assert all(p.timestamp_clock_id in (0, pb2.BUILTIN_CLOCK_BOOTTIME) or
               64 <= p.timestamp_clock_id <= 127 for p in moved_ts)
    shift = r.inputs[1]["shift_ns"]
    scoped_in = [p.clock_snapshot for p in g_trace.packet if p.HasField("clock_snapshot")
                 and any(c.clock_id >= 64 for c in p.clock_snapshot.clocks)]
    scoped_out = [p.clock_snapshot for p in comb.packet[len(h_trace.packet):]
                  if p.HasField("clock_snapshot")]
    assert len(scoped_in) == len(scoped_out)
    for a, b in zip(scoped_in, scoped_out):
        ca = {c.clock_id: c.timestamp for c in a.clocks}
        cb = {c.clock_id: c.timestamp for c in b.clocks}
        assert cb[pb2.BUILTIN_CLOCK_BOOTTIME] == ca[pb2.BUILTIN_CLOCK_BOOTTIME] + shift
        assert {k: v for k, v in ca.items() if k >= 64} == {k: v for k, v in cb.items() if k >= 64}
    if r.alignments[0].method == "start-of-trace":
        assert moved_ts[0].timestamp == h_first
    # moved ftrace pids are offset; 0 stays 0
    base = r.inputs[1]["pid_offset"]
    host_pids = {e.pid for p in h_trace.packet if p.HasField("ftrace_events") for e in p.ftrace_events.event}
    for p in comb.packet[len(h_trace.packet):]:
        if p.HasField("ftrace_events"):
            for e in p.ftrace_events.event:
                assert e.pid == 0 or e.pid > base
                assert e.pid not in host_pids or e.pid == 0
            assert p.ftrace_events.cpu >= 100
    # sequences never collide
    h_seqs = {p.trusted_packet_sequence_id for p in h_trace.packet if p.trusted_packet_sequence_id}
    g_seqs = {p.trusted_packet_sequence_id for p in comb.packet[len(h_trace.packet):]
              if p.trusted_packet_sequence_id}
    assert not (h_seqs & g_seqs)
    # compact sched: pids offset, first timestamp moved by the shift, deltas kept
    shift = r.inputs[1]["shift_ns"]
    g_cs = [p.ftrace_events.compact_sched for p in g_trace.packet
            if p.HasField("ftrace_events") and p.ftrace_events.HasField("compact_sched")]
    o_cs = [p.ftrace_events.compact_sched for p in comb.packet[len(h_trace.packet):]
            if p.HasField("ftrace_events") and p.ftrace_events.HasField("compact_sched")]
    assert len(g_cs) == len(o_cs)
    for a, b in zip(g_cs, o_cs):
        assert [p + base if p > 0 else p for p in a.switch_next_pid] == list(b.switch_next_pid)
        assert [p + base if p > 0 else p for p in a.waking_pid] == list(b.waking_pid)
        if a.switch_timestamp:
            assert b.switch_timestamp[0] == a.switch_timestamp[0] + shift
            assert list(b.switch_timestamp[1:]) == list(a.switch_timestamp[1:])
        assert list(a.intern_table) == list(b.intern_table)


@needs_sdk
def test_cli_machine_id_flag(tmp_path):
    out = tmp_path / "m.pftrace"
    proc = run_cli("--host", SDK / "host.pftrace", "--guest", f"vm1={SDK / 'guest.pftrace'}",
                   "-o", out, "--machine-id")
    assert proc.returncode == 0, proc.stderr
    assert "machine 1" in proc.stdout
    machines = collections.Counter(p.machine_id for p in load_trace(out).packet)
    assert machines == {0: 690, 1: 582}
