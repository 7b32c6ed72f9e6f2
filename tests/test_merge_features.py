"""The merge's rewriting, feature by feature, on traces built with the official schema."""

from __future__ import annotations

import zlib

import pytest

from vperfetto.merge import merge
from conftest import load_trace, pb2, raw_fields

OFFSET = 5_000_000_000  # guest BOOTTIME - host BOOTTIME used by these tests
BOOT, MONO, REAL = pb2.BUILTIN_CLOCK_BOOTTIME, pb2.BUILTIN_CLOCK_MONOTONIC, pb2.BUILTIN_CLOCK_REALTIME


def snapshot_packet(boot, mono=None, real=None, seq=1):
    p = pb2.TracePacket(trusted_packet_sequence_id=seq)
    p.clock_snapshot.clocks.add(clock_id=BOOT, timestamp=boot)
    if mono is not None:
        p.clock_snapshot.clocks.add(clock_id=MONO, timestamp=mono)
    if real is not None:
        p.clock_snapshot.clocks.add(clock_id=REAL, timestamp=real)
    return p


def host_trace():
    t = pb2.Trace()
    t.packet.append(snapshot_packet(1_000_000_000, 900_000_000, 10**18))
    p = t.packet.add(trusted_packet_sequence_id=1, timestamp=1_000_000_100)
    p.track_descriptor.uuid = 77
    p.track_descriptor.process.pid = 42
    p.track_descriptor.process.process_name = "hostproc"
    return t


def write(tmp_path, name, trace):
    path = tmp_path / name
    path.write_bytes(trace.SerializeToString())
    return path


def do_merge(tmp_path, guest, host=None, raw=False, **kw):
    """(report, the moved packets, the output); `raw`: compressed_packets as
    written, not inflated."""
    g = write(tmp_path, "guest.pftrace", guest)
    h = write(tmp_path, "host.pftrace", host or host_trace())
    out = tmp_path / "out.pftrace"
    report = merge(host=h, guests={"vm1": g}, output=out, time_diff_ns=OFFSET, **kw)
    comb = load_trace(out, inflate=not raw)
    n_host = len((host or host_trace()).packet)
    return report, comb.packet[n_host:], comb


def test_timestamps_on_other_clocks_are_converted(tmp_path):
    g = pb2.Trace()
    # guest: BOOTTIME - MONOTONIC = 3 s
    g.packet.append(snapshot_packet(10_000_000_000, 7_000_000_000))
    a = g.packet.add(trusted_packet_sequence_id=2, timestamp=10_000_000_500)       # BOOTTIME
    a.track_event.type = pb2.TrackEvent.TYPE_INSTANT
    b = g.packet.add(trusted_packet_sequence_id=2, timestamp=7_000_000_700, timestamp_clock_id=MONO)
    b.track_event.type = pb2.TrackEvent.TYPE_INSTANT
    # a sequence whose default clock is MONOTONIC (as Flutter's)
    c = g.packet.add(trusted_packet_sequence_id=3, timestamp=7_000_000_900,
                     sequence_flags=pb2.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED)
    c.trace_packet_defaults.timestamp_clock_id = MONO
    c.track_event.type = pb2.TrackEvent.TYPE_INSTANT
    d = g.packet.add(trusted_packet_sequence_id=3, timestamp=7_000_001_000)
    d.track_event.type = pb2.TrackEvent.TYPE_INSTANT
    report, moved, _ = do_merge(tmp_path, g)
    te = [p for p in moved if p.HasField("track_event")]
    # every timestamp is now host BOOTTIME: guest BOOTTIME - OFFSET
    assert [p.timestamp for p in te] == [10_000_000_500 - OFFSET, 10_000_000_700 - OFFSET,
                                         10_000_000_900 - OFFSET, 10_000_001_000 - OFFSET]
    assert te[1].timestamp_clock_id == BOOT
    assert te[2].trace_packet_defaults.timestamp_clock_id == BOOT
    assert not any(p.HasField("clock_snapshot") for p in moved)  # re-expressed, dropped
    assert report.inputs[1]["snapshots_dropped"] == 1


def test_sequence_scoped_incremental_clock_shifts_base_not_deltas(tmp_path):
    g = pb2.Trace()
    g.packet.append(snapshot_packet(10_000_000_000))
    # clock 64: incremental, defined on sequence 2 against BOOTTIME
    s = g.packet.add(trusted_packet_sequence_id=2,
                     sequence_flags=pb2.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED)
    s.clock_snapshot.clocks.add(clock_id=64, timestamp=10_000_001_000, is_incremental=True)
    s.clock_snapshot.clocks.add(clock_id=BOOT, timestamp=10_000_001_000)
    s.trace_packet_defaults.timestamp_clock_id = 64
    deltas = [100, 250, 5]
    for dlt in deltas:
        p = g.packet.add(trusted_packet_sequence_id=2, timestamp=dlt)
        p.track_event.type = pb2.TrackEvent.TYPE_INSTANT
    _, moved, _ = do_merge(tmp_path, g)
    snaps = [p for p in moved if p.HasField("clock_snapshot")]
    assert len(snaps) == 1  # the sequence-scoped one survives, rebased
    clocks = {c.clock_id: c for c in snaps[0].clock_snapshot.clocks}
    assert clocks[64].timestamp == 10_000_001_000 and clocks[64].is_incremental
    assert clocks[BOOT].timestamp == 10_000_001_000 - OFFSET
    assert [p.timestamp for p in moved if p.HasField("track_event")] == deltas


def test_ftrace_pids_cpus_print_and_timestamps(tmp_path):
    g = pb2.Trace()
    g.packet.append(snapshot_packet(10_000_000_000))
    p = g.packet.add(trusted_packet_sequence_id=2)
    b = p.ftrace_events
    b.cpu = 3
    e = b.event.add(timestamp=10_000_000_010, pid=100)
    e.sched_switch.prev_pid, e.sched_switch.next_pid, e.sched_switch.next_comm = 100, 0, "swapper"
    e = b.event.add(timestamp=10_000_000_020, pid=100)
    e.sched_waking.pid, e.sched_waking.target_cpu = 101, 2
    e = b.event.add(timestamp=10_000_000_030, pid=100)
    e.print.buf = "B|100|frame\n"
    e = b.event.add(timestamp=10_000_000_040, pid=100)
    e.print.buf = "C|100|depth|5\n"
    e = b.event.add(timestamp=10_000_000_050, pid=100)
    e.print.buf = "E|100\n"
    e = b.event.add(timestamp=10_000_000_060, pid=100)
    e.print.buf = "not atrace|100"
    e = b.event.add(timestamp=10_000_000_070, pid=101)
    e.sched_process_fork.parent_pid, e.sched_process_fork.child_pid = 100, 102
    e = b.event.add(timestamp=10_000_000_080, pid=102)
    e.task_rename.pid, e.task_rename.newcomm = 102, "worker"
    e = b.event.add(timestamp=10_000_000_090, pid=0)
    e.cpu_frequency.cpu_id, e.cpu_frequency.state = 3, 1000
    cs = b.compact_sched
    cs.switch_timestamp.extend([10_000_000_100, 5, 7])
    cs.switch_next_pid.extend([100, 0, 101])
    cs.switch_next_comm_index.extend([0, 1, 0])
    cs.intern_table.extend(["app", "swapper"])
    cs.waking_timestamp.extend([10_000_000_200, 3])
    cs.waking_pid.extend([102, 100])
    cs.waking_target_cpu.extend([1, 0])
    report, moved, _ = do_merge(tmp_path, g)
    base = report.inputs[1]["pid_offset"]
    assert base == 1_000_000
    (mb,) = [p.ftrace_events for p in moved if p.HasField("ftrace_events")]
    assert mb.cpu == 103
    ev = list(mb.event)
    assert [x.timestamp for x in ev] == [10_000_000_010 - OFFSET + 10 * i for i in range(9)]
    assert [x.pid for x in ev] == [1000100] * 6 + [1000101, 1000102, 0]
    assert (ev[0].sched_switch.prev_pid, ev[0].sched_switch.next_pid) == (1000100, 0)
    assert (ev[1].sched_waking.pid, ev[1].sched_waking.target_cpu) == (1000101, 102)
    assert [x.print.buf for x in ev[2:6]] == ["B|1000100|frame\n", "C|1000100|depth|5\n",
                                              "E|1000100\n", "not atrace|100"]
    assert (ev[6].sched_process_fork.parent_pid, ev[6].sched_process_fork.child_pid) == (1000100, 1000102)
    assert ev[7].task_rename.pid == 1000102
    assert ev[8].cpu_frequency.cpu_id == 103
    c = mb.compact_sched
    assert list(c.switch_timestamp) == [10_000_000_100 - OFFSET, 5, 7]
    assert list(c.switch_next_pid) == [1000100, 0, 1000101]
    assert list(c.waking_timestamp) == [10_000_000_200 - OFFSET, 3]
    assert list(c.waking_pid) == [1000102, 1000100]
    assert list(c.waking_target_cpu) == [101, 100]
    assert list(c.intern_table) == ["app", "swapper"]


def test_process_tree_stats_logs_perf_and_legacy_descriptors(tmp_path):
    g = pb2.Trace()
    g.packet.append(snapshot_packet(10_000_000_000, real=2 * 10**18))
    p = g.packet.add(trusted_packet_sequence_id=2, timestamp=10_000_000_001)
    pr = p.process_tree.processes.add(pid=100, ppid=1)
    pr.cmdline.extend(["/bin/app", "--flag"])
    p.process_tree.threads.add(tid=101, tgid=100, name="t1")
    p = g.packet.add(trusted_packet_sequence_id=2, timestamp=10_000_000_002)
    sp = p.process_stats.processes.add(pid=100)
    sp.threads.add(tid=101)
    p = g.packet.add(trusted_packet_sequence_id=2, timestamp=10_000_000_003)
    p.android_log.events.add(pid=100, tid=101, timestamp=2 * 10**18 + 4, message="hi")  # REALTIME
    p = g.packet.add(trusted_packet_sequence_id=2, timestamp=10_000_000_005)
    p.perf_sample.pid, p.perf_sample.tid, p.perf_sample.cpu = 100, 101, 2
    p = g.packet.add(trusted_packet_sequence_id=2, timestamp=10_000_000_006, trusted_pid=100)
    p.thread_descriptor.pid, p.thread_descriptor.tid = 100, 101
    report, moved, _ = do_merge(tmp_path, g)
    tree, stats, log, perf, legacy = moved
    assert (tree.process_tree.processes[0].pid, tree.process_tree.processes[0].ppid) == (1000100, 1000001)
    assert list(tree.process_tree.processes[0].cmdline) == ["vm1: /bin/app", "--flag"]
    assert (tree.process_tree.threads[0].tid, tree.process_tree.threads[0].tgid) == (1000101, 1000100)
    assert stats.process_stats.processes[0].pid == 1000100
    assert stats.process_stats.processes[0].threads[0].tid == 1000101
    ev = log.android_log.events[0]
    # guest REALTIME 2e18 + 4 = guest BOOTTIME 1e10 + 4 = host BOOTTIME 1e10 + 4 - OFFSET,
    # in the host's REALTIME (1e18 at host BOOTTIME 1e9)
    assert (ev.pid, ev.tid, ev.timestamp) == (1000100, 1000101,
                                              10**18 + 10_000_000_004 - OFFSET - 1_000_000_000)
    assert (perf.perf_sample.pid, perf.perf_sample.tid, perf.perf_sample.cpu) == (1000100, 1000101, 102)
    assert (legacy.thread_descriptor.pid, legacy.thread_descriptor.tid) == (1000100, 1000101)
    assert legacy.trusted_pid == 1000100


def test_one_part_command_lines_keep_their_name(tmp_path):
    # trace_processor names a process with a one-part command line by what
    # precedes its first space; a plain prefix would name them all "vm1:".
    g = pb2.Trace()
    g.packet.append(snapshot_packet(10_000_000_000))
    p = g.packet.add(trusted_packet_sequence_id=2, timestamp=10_000_000_001)
    p.process_tree.processes.add(pid=100, ppid=1).cmdline.append("app")
    p.process_tree.processes.add(pid=101, ppid=1).cmdline.append("/bin/daemon --serve now")
    p.process_tree.processes.add(pid=102, ppid=1)
    _, moved, _ = do_merge(tmp_path, g)
    procs = moved[0].process_tree.processes
    assert list(procs[0].cmdline) == ["vm1: app", ""]
    assert list(procs[1].cmdline) == ["vm1: /bin/daemon", "--serve now"]
    assert list(procs[2].cmdline) == []


@pytest.mark.parametrize("machine_ids", [False, True])
def test_default_clock_labelled_under_a_monotonic_main(tmp_path, machine_ids):
    # A main whose trace clock is MONOTONIC makes trace_processor read every
    # packet without a clock as MONOTONIC, on the guest's machine too (whose
    # MONOTONIC is not its BOOTTIME): the guest's such packets say BOOTTIME.
    host = pb2.Trace()
    s = host.packet.add(trusted_packet_sequence_id=1)
    s.clock_snapshot.clocks.add(clock_id=MONO, timestamp=900_000_000)
    s.clock_snapshot.primary_trace_clock = MONO
    e = host.packet.add(trusted_packet_sequence_id=1, timestamp=900_000_100)
    e.track_event.type = pb2.TrackEvent.TYPE_INSTANT
    g = pb2.Trace()
    g.packet.append(snapshot_packet(10_000_000_000, 7_000_000_000))
    p = g.packet.add(trusted_packet_sequence_id=2, timestamp=10_000_000_001)
    p.process_tree.processes.add(pid=100, ppid=1).cmdline.append("app")
    p = g.packet.add(trusted_packet_sequence_id=2, timestamp=7_000_000_002, timestamp_clock_id=MONO)
    p.track_event.type = pb2.TrackEvent.TYPE_INSTANT
    _, moved, _ = do_merge(tmp_path, g, host=host, machine_ids=machine_ids)
    tree = next(m for m in moved if m.HasField("process_tree"))
    ev = next(m for m in moved if m.HasField("track_event"))
    assert (tree.timestamp, tree.timestamp_clock_id) == (10_000_000_001 - OFFSET, BOOT)
    assert (ev.timestamp, ev.timestamp_clock_id) == (10_000_000_002 - OFFSET, BOOT)


def test_default_clock_left_unlabelled_when_it_is_the_mains(tmp_path):
    g = pb2.Trace()
    g.packet.append(snapshot_packet(10_000_000_000))
    p = g.packet.add(trusted_packet_sequence_id=2, timestamp=10_000_000_001)
    p.process_tree.processes.add(pid=100, ppid=1)
    _, moved, _ = do_merge(tmp_path, g)
    assert not moved[0].HasField("timestamp_clock_id")


def test_uuids_everywhere_remapped_consistently(tmp_path):
    g = pb2.Trace()
    g.packet.append(snapshot_packet(10_000_000_000))
    p = g.packet.add(trusted_packet_sequence_id=2, timestamp=10_000_000_001,
                     sequence_flags=pb2.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED)
    p.trace_packet_defaults.track_event_defaults.track_uuid = 5
    p.trace_packet_defaults.track_event_defaults.extra_counter_track_uuids.append(6)
    p.track_descriptor.uuid = 5
    p.track_descriptor.parent_uuid = 77  # the same number as a host uuid
    p = g.packet.add(trusted_packet_sequence_id=2, timestamp=10_000_000_002)
    p.track_descriptor.uuid = 77
    p.track_descriptor.process.pid = 100
    p = g.packet.add(trusted_packet_sequence_id=2, timestamp=10_000_000_003)
    p.track_descriptor.uuid = 6
    p.track_descriptor.counter.SetInParent()
    p = g.packet.add(trusted_packet_sequence_id=2, timestamp=10_000_000_004)
    p.track_event.type = pb2.TrackEvent.TYPE_COUNTER
    p.track_event.track_uuid = 6
    p.track_event.counter_value = 3
    p.track_event.extra_counter_track_uuids.append(6)
    p.track_event.extra_counter_values.append(4)
    report, moved, comb = do_merge(tmp_path, g)
    d0, d1, d2, ev = moved
    m5, m77, m6 = d0.track_descriptor.uuid, d1.track_descriptor.uuid, d2.track_descriptor.uuid
    assert len({m5, m77, m6, 77}) == 4 and 0 not in (m5, m77, m6)
    assert d0.track_descriptor.parent_uuid == m77
    assert d0.trace_packet_defaults.track_event_defaults.track_uuid == m5
    assert list(d0.trace_packet_defaults.track_event_defaults.extra_counter_track_uuids) == [m6]
    assert ev.track_event.track_uuid == m6
    assert list(ev.track_event.extra_counter_track_uuids) == [m6]
    assert comb.packet[1].track_descriptor.uuid == 77  # host untouched
    assert report.inputs[1]["uuids_remapped"] == 3


def test_unknown_fields_and_padded_lengths_copied_byte_for_byte(tmp_path):
    # A packet with a field the merge does not know (#999) and a track
    # event whose length prefix is padded (as the Perfetto SDK writes them).
    te = pb2.TrackEvent(type=pb2.TrackEvent.TYPE_INSTANT, name_iid=1).SerializeToString()
    padded = bytes([0x5A, 0x80 | len(te), 0x80, 0x80, 0x00]) + te  # field 11, 4-byte length
    unknown = _varint(999 << 3 | 2) + bytes([3]) + b"abc"  # field 999, length 3
    body = (bytes([0x40]) + _varint(10_000_000_010) + bytes([0x50, 2]) + padded + unknown)
    g = pb2.Trace()
    g.packet.append(snapshot_packet(10_000_000_000))
    raw = g.SerializeToString() + bytes([0x0A]) + _varint(len(body)) + body
    gp = tmp_path / "g.pftrace"
    gp.write_bytes(raw)
    hp = write(tmp_path, "h.pftrace", host_trace())
    out = tmp_path / "o.pftrace"
    merge(host=hp, guests={"vm1": gp}, output=out, time_diff_ns=OFFSET)
    data = out.read_bytes()
    assert padded in data and unknown in data
    comb = load_trace(out)
    assert comb.packet[-1].timestamp == 10_000_000_010 - OFFSET


def _varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def test_compressed_packets_are_rewritten_inside(tmp_path):
    inner = pb2.Trace()
    for i in range(3):
        p = inner.packet.add(trusted_packet_sequence_id=2, timestamp=10_000_000_100 + i)
        p.track_descriptor.uuid = 9
        p.track_descriptor.thread.pid, p.track_descriptor.thread.tid = 100, 100 + i
    g = pb2.Trace()
    g.packet.append(snapshot_packet(10_000_000_000))
    c = g.packet.add(trusted_packet_sequence_id=2)
    c.compressed_packets = zlib.compress(inner.SerializeToString())
    report, moved, _ = do_merge(tmp_path, g, raw=True)
    (cp,) = moved
    out_inner = pb2.Trace()
    out_inner.ParseFromString(zlib.decompress(cp.compressed_packets))
    assert [p.timestamp for p in out_inner.packet] == [10_000_000_100 - OFFSET + i for i in range(3)]
    assert [p.track_descriptor.thread.tid for p in out_inner.packet] == [1000100, 1000101, 1000102]
    assert {p.trusted_packet_sequence_id for p in out_inner.packet} == {2 + 1}
    assert report.inputs[1]["compressed_packets"] == 1


def test_compressed_bomb_is_refused(tmp_path):
    g = pb2.Trace()
    g.packet.append(snapshot_packet(10_000_000_000))
    c = g.packet.add(trusted_packet_sequence_id=2)
    c.compressed_packets = zlib.compress(b"\0" * (600 << 20), 9)
    with pytest.raises(Exception) as ei:
        do_merge(tmp_path, g)
    assert "inflate" in str(ei.value)
    assert not (tmp_path / "out.pftrace").exists()


@pytest.mark.parametrize("where", ["track_event", "descriptor", "ftrace", "process_tree"])
def test_nested_message_that_does_not_decode_is_an_input_error(tmp_path, where):
    # A packet whose outer framing is fine but a message inside it claims more
    # bytes than it has: the merge used to truncate it silently and succeed.
    from vperfetto import errors
    bad_inner = b"\x22\x0a\x01\x02\x03"  # field 4, length 10, only 3 bytes
    body = {
        "track_event": b"\x58\x01" + bad_inner,            # track_uuid, then the bad field
        "descriptor": b"\x08\x05\x1a\x04" + b"\x08\x07\x32\x09",  # uuid, process{pid, name: len 9 of 1}
        "ftrace": b"\x08\x00\x12\x06" + b"\x08\x64\x10\x05\x22\x09",  # cpu, event{ts, pid, bad}
        "process_tree": b"\x0a\x04\x08\x07\x1a\x05",  # processes{pid, cmdline len 5 of 0}
    }[where]
    field = {"track_event": 11, "descriptor": 60, "ftrace": 1, "process_tree": 2}[where]
    packet = (b"\x40" + _varint(2_000_000_000) + b"\x50\x03" +
              _varint(field << 3 | 2) + _varint(len(body)) + body)
    guest = pb2.Trace()
    guest.packet.add(trusted_packet_sequence_id=3, timestamp=1_999_999_999)
    g = tmp_path / "guest.pftrace"
    g.write_bytes(guest.SerializeToString() + b"\x0a" + _varint(len(packet)) + packet)
    h = write(tmp_path, "host.pftrace", host_trace())
    out = tmp_path / "out.pftrace"
    with pytest.raises(errors.TraceFormatError, match="packet 1 .*malformed"):
        merge(host=h, guests={"vm1": g}, output=out, time_diff_ns=OFFSET)
    assert not out.exists()


def _message(fields):
    out = b""
    for k, v in fields:
        if isinstance(v, bytes):
            out += _varint(k << 3 | 2) + _varint(len(v)) + v
        else:
            out += _varint(k << 3) + _varint(v)
    return out


def test_frame_timeline_pids_and_frame_ids_rewritten(tmp_path):
    # Android's FrameTimelineEvent (TracePacket #76, not in the public
    # schema's Python module): pids move with the guest's, cookies and tokens
    # out of the host's so one side's frames never end another's.
    events = [
        (1, [(1, 10), (2, 20), (3, 100)]),                       # expected display frame
        (4, [(1, 11), (2, 21), (3, 20), (4, 100), (5, b"l")]),   # actual surface frame
        (5, [(1, 10)]),                                          # frame end
    ]
    g = pb2.Trace()
    g.packet.append(snapshot_packet(10_000_000_000))
    raw = g.SerializeToString()
    for i, (kind, fields) in enumerate(events):
        body = _message([(8, 10_000_000_010 + i), (10, 2), (76, _message([(kind, _message(fields))]))])
        raw += _varint(1 << 3 | 2) + _varint(len(body)) + body
    gp = tmp_path / "g.pftrace"
    gp.write_bytes(raw)
    out = tmp_path / "o.pftrace"
    merge(host=write(tmp_path, "h.pftrace", host_trace()), guests={"vm1": gp}, output=out,
          time_diff_ns=OFFSET)
    got = []
    for p in load_trace(out).packet:
        ft = [v for k, v in raw_fields(p.SerializeToString()) if k == 76]
        if ft:
            (kind, ev), = raw_fields(ft[0])
            got.append((kind, raw_fields(ev)))
    k = 1 << 40
    assert got == [
        (1, [(1, 10 + k), (2, 20 + k), (3, 1000100)]),
        (4, [(1, 11 + k), (2, 21 + k), (3, 20 + k), (4, 1000100), (5, b"l")]),
        (5, [(1, 10 + k)]),
    ]


def _sched_trace(states, release=None, compact=False, boot=10_000_000_000):
    t = pb2.Trace()
    t.packet.append(snapshot_packet(boot))
    if release:
        p = t.packet.add(trusted_packet_sequence_id=1)
        p.system_info.utsname.sysname, p.system_info.utsname.release = "Linux", release
        p.system_info.utsname.machine = "x86_64"
    p = t.packet.add(trusted_packet_sequence_id=3)
    p.ftrace_events.cpu = 0
    if compact:
        cs = p.ftrace_events.compact_sched
        cs.intern_table.append("t")
        for i, s in enumerate(states):
            cs.switch_timestamp.append(boot + 10 if i == 0 else 1)
            cs.switch_prev_state.append(s)
            cs.switch_next_pid.append(100 + i)
            cs.switch_next_prio.append(120)
            cs.switch_next_comm_index.append(0)
    else:
        for i, s in enumerate(states):
            e = p.ftrace_events.event.add(timestamp=boot + 10 + i, pid=100 + i)
            e.sched_switch.prev_pid, e.sched_switch.prev_state = 100 + i, s
            e.sched_switch.next_pid, e.sched_switch.next_comm = 101 + i, "t"
    return t


def _switch_states(packets):
    out = []
    for p in packets:
        if p.HasField("ftrace_events"):
            out += [e.sched_switch.prev_state for e in p.ftrace_events.event if e.HasField("sched_switch")]
            out += list(p.ftrace_events.compact_sched.switch_prev_state)
    return out


@pytest.mark.parametrize("compact", [False, True])
def test_task_states_reencoded_for_the_mains_kernel(tmp_path, compact):
    # A guest without SystemInfo is read as Linux 4.4 (S, D|NOLOAD = idle,
    # PARKED 0x200, WAKING 0x100, preempted 0x800); the main's 5.10 says
    # PARKED 0x40, IDLE 0x80, preempted 0x100 and has no WAKING nor TASK_DEAD.
    old = [0, 1, 0x402, 0x2001, 0x200, 0x800, 0x102, 0x40]
    host = _sched_trace([1], release="5.10.43-android12", compact=compact, boot=1_000_000_000)
    report, moved, _ = do_merge(tmp_path, _sched_trace(old, compact=compact), host=host)
    assert _switch_states(moved) == [0, 1, 0x80, 1, 0x40, 0x100, 2, 0x8000]
    side = report.inputs[1]
    assert (side["task_states_translated"], side["task_states_approximated"]) == (6, 2)
    assert any("2 thread state(s)" in w and "Linux 5.10.43-android12" in w for w in report.warnings)
    # and back: a 5.10 guest onto a main read as 4.4
    host = _sched_trace([1], compact=compact, boot=1_000_000_000)
    new = [0, 0x82, 0x80, 0x40, 0x100, 0x1]
    report, moved, _ = do_merge(tmp_path, _sched_trace(new, "5.10.43", compact=compact), host=host)
    assert _switch_states(moved) == [0, 0x402, 0x402, 0x200, 0x800, 1]
    assert report.inputs[1]["task_states_approximated"] == 1  # D|I reads as I alone
    # the same kernel era: untouched, and a machine of its own keeps them
    report, moved, _ = do_merge(tmp_path, _sched_trace(new, "6.1.0", compact=compact),
                                host=_sched_trace([1], "5.4.0", compact=compact, boot=1_000_000_000))
    assert _switch_states(moved) == new and report.inputs[1]["task_states_translated"] == 0
    report, moved, _ = do_merge(tmp_path, _sched_trace(old, compact=compact), host=_sched_trace(
        [1], "5.4.0", compact=compact, boot=1_000_000_000), machine_ids=True)
    assert _switch_states(moved) == old


def _flow_trace(boot, events, packed=()):
    """A trace of instants with flow ids: events are dicts of TrackEvent fields
    (legacy_event as a dict too); packed: v2 flow ids written packed (as
    current SDKs do), which the schema's Python module never writes."""
    t = pb2.Trace()
    t.packet.append(snapshot_packet(boot))
    raw = t.SerializeToString()
    for i, ev in enumerate(events + [None] * bool(packed)):
        p = pb2.TracePacket(trusted_packet_sequence_id=2, timestamp=boot + 10 + i)
        te = p.track_event
        te.type, te.track_uuid = pb2.TrackEvent.TYPE_INSTANT, 5
        extra = b""
        if ev is None:
            body = b"".join(v.to_bytes(8, "little") for v in packed)
            extra = _varint(47 << 3 | 2) + _varint(len(body)) + body
        else:
            for k, v in ev.items():
                if k == "legacy_event":
                    for lk, lv in v.items():
                        setattr(te.legacy_event, lk, lv)
                else:
                    getattr(te, k).extend(v)
        data = p.SerializeToString()
        if extra:  # the packed ids inside the track event (TracePacket field 11)
            ted = te.SerializeToString() + extra
            p.ClearField("track_event")
            data = p.SerializeToString() + _varint(11 << 3 | 2) + _varint(len(ted)) + ted
        raw += _varint(1 << 3 | 2) + _varint(len(data)) + data
    return raw


def _flow_ids(packets):
    """Per track event: (v2 ids, v2 terminating, old ids, old terminating, legacy bind_id,
    legacy (phase, unscoped_id))."""
    out = []
    for p in packets:
        if not p.HasField("track_event"):
            continue
        te = p.track_event
        le = te.legacy_event
        out.append((list(te.flow_ids), list(te.terminating_flow_ids), list(te.flow_ids_old),
                    list(te.terminating_flow_ids_old), le.bind_id,
                    (chr(le.phase), le.unscoped_id) if le.phase else None))
    return out


FLOW_EVENTS = [
    {"flow_ids": [7, 8], "terminating_flow_ids": [9]},
    {"flow_ids_old": [8], "terminating_flow_ids_old": [13]},
    {"legacy_event": {"phase": ord("X"), "bind_id": 11, "flow_direction": 2}},
    {"legacy_event": {"phase": ord("s"), "unscoped_id": 12}},
    {"legacy_event": {"phase": ord("f"), "unscoped_id": 12}},
    {"legacy_event": {"phase": ord("b"), "unscoped_id": 12}},  # an async id: not a flow's
]


def _merge_flows(tmp_path, **kw):
    g = tmp_path / "g.pftrace"
    g.write_bytes(_flow_trace(10_000_000_000, FLOW_EVENTS, packed=[7, 10]))
    h = tmp_path / "h.pftrace"  # the host uses 7 and 12 too
    h.write_bytes(_flow_trace(1_000_000_000, [{"flow_ids": [7]}, {"flow_ids": [12]}]))
    out = tmp_path / "o.pftrace"
    report = merge(host=h, guests={"vm1": g}, output=out, time_diff_ns=OFFSET, **kw)
    packets = load_trace(out).packet
    return report, _flow_ids(packets[:3]), _flow_ids(packets[3:])


def test_flow_ids_kept_apart_from_the_mains(tmp_path):
    report, host, guest = _merge_flows(tmp_path)
    assert host == [([7], [], [], [], 0, None), ([12], [], [], [], 0, None)]
    (a, b, c), (d, e), bind, s, f, async_ = (
        guest[0][0] + guest[0][1], guest[1][2] + guest[1][3], guest[2][4], guest[3][5],
        guest[4][5], guest[5][5])
    packed = guest[6][0]
    new = {7: a, 8: b, 9: c, 13: e, 11: bind, 12: s[1], 10: packed[1]}
    # one id, one new id, wherever it is written (v2 packed or not, old, legacy, v1 phases)
    assert d == b and packed[0] == a and f == ("f", s[1]) and s[0] == "s"
    assert len(set(new.values())) == len(new)
    assert not set(new.values()) & {7, 12} and 0 not in new.values()
    assert async_ == ("b", 12)  # a legacy async id is not a flow id
    side = report.inputs[1]
    assert side["flow_ids_remapped"] == len(new) and side["shared_flow_ids"] == 2
    assert any("2 of its flow id(s)" in w and "--link-flows" in w for w in report.warnings)


@pytest.mark.parametrize("kw", [{"link_flows": True}, {"machine_ids": True},
                                {"machine_ids": True, "link_flows": True}])
def test_flow_ids_kept_when_linked_or_on_their_own_machine(tmp_path, kw):
    report, _, guest = _merge_flows(tmp_path, **kw)
    assert guest == _flow_ids(pb2.Trace.FromString(
        _flow_trace(10_000_000_000, FLOW_EVENTS, packed=[7, 10])).packet[1:])
    assert report.inputs[1]["flow_ids_remapped"] == 0
    linking = [w for w in report.warnings if "flow id" in w]
    if kw == {"machine_ids": True, "link_flows": True}:
        assert len(linking) == 1 and "do not link" in linking[0]
    else:
        assert linking == []
