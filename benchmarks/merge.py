"""Throughput and memory of the offline merge on a large guest/host pair, against `cat`.

    python benchmarks/merge.py [--size-mb 1024] [--work-dir DIR] [--keep] [--reps 3] [--cpu N] [--no-half]

What it does:

1. Generates a guest and a host trace (``--size-mb`` in total, half each; by
   default 1024 MB) with the mix a real system trace of a VM pair has: track
   events from an SDK-style app (slices begin/end with per-sequence interned
   names and categories, debug annotations of every kind, dynamic inline names,
   instants, int and double counters on counter tracks with ``track_uuid``,
   ``guest_clock_sync`` clock-sync markers with the uint annotations
   clock_sync_boottime/clock_sync_monotonic/clock_sync_cputime as in
   shared/testdata/sdk-v7), track descriptors (process, threads, counters),
   trace packet defaults and "incremental state cleared" packets, periodic
   clock snapshots, ftrace bundles with sched_switch/sched_waking/print/
   cpu_frequency events and compact_sched bundles, and process_tree packets.
   Nested messages carry protozero's 4-byte padded lengths, as the SDK and
   traced_probes write them. The same pair at half the size is generated too.

   Generation is cheap: one chunk of packets (200 ms of activity, about 1 MB per
   side) is encoded once from the official schema
   (``perfetto.protos.perfetto.trace.perfetto_trace_pb2``: every field is
   looked up by name in its descriptor, and the chunk is parsed back with it),
   recording where every timestamp varint lies; each repetition is the same
   bytes with those varints rewritten in place by numpy (their widths never
   change), so timestamps keep growing, markers stay consistent with a shared
   TSC, and 1 GB takes a few seconds. Needs the PyPI ``perfetto`` package (and
   ``protobuf``); numpy makes it fast (without it, a pure-Python patch loop is
   used, about a minute per GB).

2. Measures, in one run: ``cat guest host > /dev/null`` twice, keeping the
   second (warm page cache, which the merge then also reads from: nothing is
   dropped, so both numbers are warm-cache figures); ``cat guest host > file``
   (the cost of writing that many bytes: on a VM, fresh page-cache pages can
   cost more than the copy, and the merge pays that too); then the merge
   ``python -m vperfetto.merge guest host out -q --json`` in a subprocess
   (wall time, CPU time and peak RSS from wait4's rusage of that one child),
   at the full size and at half the size (RSS must not grow with the input),
   and a scan-only dry run (pass 1 alone). The interpreter's own RSS
   (``python -c "import vperfetto.merge"``) is shown as the floor.

3. Prints MB/s (input bytes / wall seconds), peak RSS, the merge/cat ratio and
   the targets of the issue with PASS/MISS: >= 300 MB/s on one core, and peak
   RSS independent of input size (full-size peak at most 8 MB above half-size
   peak). The original C++ tool's figures (402 MB pair of SDK v7 traces: 29 s,
   13.9 MB/s, 6.8 GiB RSS) are shown for reference.

The merged output's alignment is checked against the generator's truth (the
guest's BOOTTIME is the host's + 1234.5 s; both read one TSC).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _report import machine_line  # noqa: E402

GEN_VERSION = 1
MB = 1 << 20

# --- the truth the generator writes -------------------------------------------------------

OFFSET_NS = 1_234_500_000_000          # guest BOOTTIME - host BOOTTIME
HOST_BOOT0 = 1_151_132_780_874         # host BOOTTIME at the start (as in shared/testdata/sdk-v7)
TSC_RATE = 2.596132                     # TSC cycles per ns (shared by guest and host)
TSC_AT_BOOT0 = 7_000_000_000_000        # TSC when the host BOOTTIME was HOST_BOOT0
CHUNK_NS = 200_000_000                  # one chunk of packets is 200 ms of activity
SNAPSHOT_EVERY = 50                     # a clock snapshot every 10 s, as traced's default
ORIGINAL = dict(mb=402, seconds=29.0, mbps=13.9, rss_mb=6.8 * 1024)

TARGET_MBPS = 300.0
TARGET_RSS_GROWTH_MB = 8.0


def _need_schema():
    try:
        from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb2
    except ImportError as e:  # pragma: no cover - environment dependent
        sys.exit(f"benchmarks/merge.py needs the PyPI 'perfetto' package (and protobuf) to build "
                 f"its traces from the official schema: pip install perfetto protobuf ({e})")
    return pb2


# --- a descriptor-driven protobuf encoder that remembers where timestamps are ------------

class Moving:
    """A varint value that moves with each chunk: `kind` is "ns" (any CLOCK_* value: moves by
    the chunk period) or "tsc" (moves by the period times the TSC rate)."""

    __slots__ = ("value", "kind")

    def __init__(self, value: int, kind: str = "ns"):
        self.value = int(value)
        self.kind = kind


class Min(dict):
    """A nested message written with a minimal length (not protozero's padded one)."""


def _varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _padded_len(n: int) -> bytes:  # protozero's redundant 4-byte length
    assert n < 1 << 28
    return bytes([(n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80, ((n >> 14) & 0x7F) | 0x80, n >> 21])


class Encoded:
    __slots__ = ("buf", "sites")

    def __init__(self):
        self.buf = bytearray()
        self.sites = []  # (offset, kind, value, width)

    def add(self, other: "Encoded") -> None:
        base = len(self.buf)
        self.buf += other.buf
        self.sites.extend((base + o, k, v, w) for o, k, v, w in other.sites)


class Encoder:
    def __init__(self, pb2):
        from google.protobuf.descriptor import FieldDescriptor as FD

        self.pb2 = pb2
        self.FD = FD
        self.varint_types = {FD.TYPE_INT32, FD.TYPE_INT64, FD.TYPE_UINT32, FD.TYPE_UINT64,
                             FD.TYPE_BOOL, FD.TYPE_ENUM}
        self.packet_desc = pb2.TracePacket.DESCRIPTOR

    def _scalar(self, fd, v, out: Encoded) -> None:
        FD = self.FD
        t = fd.type
        if t in self.varint_types:
            if isinstance(v, Moving):
                b = _varint(v.value)
                out.sites.append((len(out.buf), v.kind, v.value, len(b)))
                out.buf += b
            else:
                if t == FD.TYPE_ENUM and isinstance(v, str):
                    v = fd.enum_type.values_by_name[v].number
                out.buf += _varint(int(v))
        elif t in (FD.TYPE_SINT32, FD.TYPE_SINT64):
            out.buf += _varint((v << 1) ^ (v >> 63))
        elif t == FD.TYPE_DOUBLE:
            out.buf += struct.pack("<d", v)
        elif t == FD.TYPE_FLOAT:
            out.buf += struct.pack("<f", v)
        elif t in (FD.TYPE_FIXED64, FD.TYPE_SFIXED64):
            out.buf += struct.pack("<Q", v & ((1 << 64) - 1))
        elif t in (FD.TYPE_FIXED32, FD.TYPE_SFIXED32):
            out.buf += struct.pack("<I", v & 0xFFFFFFFF)
        elif t in (FD.TYPE_STRING, FD.TYPE_BYTES):
            b = v.encode() if isinstance(v, str) else bytes(v)
            out.buf += _varint(len(b)) + b
        else:
            raise TypeError(f"{fd.full_name}: unsupported type {t}")

    def message(self, desc, fields: dict) -> Encoded:
        FD = self.FD
        out = Encoded()
        for name, value in fields.items():
            fd = desc.fields_by_name[name]  # KeyError: not in the official schema
            items = value if isinstance(value, list) else [value]
            if isinstance(value, list) and not fd.is_repeated:
                raise TypeError(f"{fd.full_name} is not repeated")
            if fd.type == FD.TYPE_MESSAGE:
                for item in items:
                    child = self.message(fd.message_type, item)
                    out.buf += _varint((fd.number << 3) | 2)
                    out.buf += (_varint(len(child.buf)) if isinstance(item, Min)
                                else _padded_len(len(child.buf)))
                    out.add(child)
            elif fd.is_packed:
                body = Encoded()
                for item in items:
                    self._scalar(fd, item, body)
                out.buf += _varint((fd.number << 3) | 2) + _varint(len(body.buf))
                out.add(body)
            else:
                wire = {FD.TYPE_DOUBLE: 1, FD.TYPE_FIXED64: 1, FD.TYPE_SFIXED64: 1,
                        FD.TYPE_FLOAT: 5, FD.TYPE_FIXED32: 5, FD.TYPE_SFIXED32: 5,
                        FD.TYPE_STRING: 2, FD.TYPE_BYTES: 2}.get(fd.type, 0)
                for item in items:
                    out.buf += _varint((fd.number << 3) | wire)
                    self._scalar(fd, item, out)
        return out

    def packet(self, fields: dict) -> Encoded:
        """One Trace.packet field (tag + minimal length, as traced frames them)."""
        body = self.message(self.packet_desc, fields)
        out = Encoded()
        out.buf += b"\x0a" + _varint(len(body.buf))
        out.add(body)
        return out


# --- what one side of the pair looks like ----------------------------------------------

class Side:
    def __init__(self, name: str, boot0: int, pid0: int, app: str, ncpu: int, uuid_seed: int):
        self.name = name
        self.boot0 = boot0                  # this side's BOOTTIME at chunk 0
        self.mono_gap = 261_000_000 if name == "host" else 234_250_000_000 + 261_000_000
        self.real_off = 1_795_691_521_470_492_255 - 1_151_132_669_869 - (boot0 - HOST_BOOT0)
        self.pid = pid0
        self.app = app
        self.ncpu = ncpu
        self.threads = [(pid0 + (0 if i == 0 else 2 + i), f"{app}_{'main' if i == 0 else f'worker{i}'}")
                        for i in range(8)]
        self.proc_uuid = (uuid_seed * 0x9E3779B97F4A7C15) & ((1 << 63) - 1)
        self.counter_uuids = [0xC0FFEE ^ self.proc_uuid, 0xC0FFEF ^ self.proc_uuid]
        # Other processes of the machine (for ftrace and process_tree).
        self.procs = [(pid0 - 4000 + 37 * i, f"/system/bin/daemon{i}") for i in range(24)]
        self.procs.append((pid0, f"/usr/bin/{app}"))
        self.tasks = []  # (tid, tgid, comm)
        for pid, cmd in self.procs:
            n = 8 if pid == pid0 else 3
            tids = [t for t, _ in self.threads] if pid == pid0 else [pid + j for j in range(n)]
            for j, tid in enumerate(tids):
                self.tasks.append((tid, pid, (cmd.rsplit("/", 1)[-1] + f":{j}")[:15]))

    def tsc(self, boot: int) -> int:
        """The shared TSC at this side's BOOTTIME `boot`."""
        host_boot = boot - (self.boot0 - HOST_BOOT0)
        return TSC_AT_BOOT0 + round((host_boot - HOST_BOOT0) * TSC_RATE)


def _packet_head(ts: int, seq: int, flags: int = 0) -> dict:
    d = {"timestamp": Moving(ts)}
    if flags:
        d["sequence_flags"] = flags
    return d


def _tail(d: dict, seq: int) -> dict:
    d["trusted_uid"] = 0  # the service appends these
    d["trusted_packet_sequence_id"] = seq
    return d


CATS = ["app", "gfx", "cros", "io"]
NAMES = ["frame", "compute", "draw", "vsync", "guest_clock_sync", "load"]
ANNOTS = ["frame_id", "thread_index", "items", "label", "ratio", "ok", "seq", "path"]
LABELS = ["ui", "video", "cursor"]


def sdk_sequence(enc: Encoder, side: Side, t_index: int, seq: int, t0: int) -> Encoded:
    """One app thread's 200 ms: a cleared-state packet with defaults, its descriptors,
    then frames of nested slices, instants, counters and (main thread) sync markers."""
    out = Encoded()
    tid, tname = side.threads[t_index]
    tuuid = tid ^ side.proc_uuid
    main = t_index == 0
    add = lambda d: out.add(enc.packet(_tail(d, seq)))  # noqa: E731
    t = t0 + 1000 * t_index
    add({**_packet_head(t, seq, 1),
         "trace_packet_defaults": {"timestamp_clock_id": 6, "track_event_defaults": {"track_uuid": tuuid}}})
    add({**_packet_head(t + 700, seq, 2), "track_descriptor": Min(
        {"uuid": tuuid, "parent_uuid": side.proc_uuid,
         "thread": {"pid": side.pid, "tid": tid, "thread_name": tname}})})
    if main:
        add({**_packet_head(t + 900, seq, 2), "track_descriptor": Min(
            {"uuid": side.proc_uuid, "process": {"pid": side.pid, "process_name": side.app}})})
        for i, cu in enumerate(side.counter_uuids):
            add({**_packet_head(t + 1100 + i, seq, 2), "track_descriptor": Min(
                {"uuid": cu, "name": f"{side.app}_{['mem_kb', 'cpu_pct'][i]}",
                 "parent_uuid": side.proc_uuid, "counter": {}})})
    interned = Min({
        "event_categories": [{"iid": i + 1, "name": c} for i, c in enumerate(CATS)],
        "event_names": [{"iid": i + 1, "name": n} for i, n in enumerate(NAMES)],
        "debug_annotation_names": [{"iid": i + 1, "name": n} for i, n in enumerate(ANNOTS)],
    })
    frames = 220 if main else 240
    step = (CHUNK_NS - 2_000_000) // frames
    t = t0 + 1_500_000 + 37_000 * t_index
    marker_due = t0 + 100_000
    for f in range(frames):
        if main and t >= marker_due:  # a clock-sync marker every 100 ms
            boot = t + 3_000
            add({**_packet_head(t, seq, 2), "track_event": {
                "category_iids": [3],
                "debug_annotations": [
                    {"uint_value": Moving(boot), "name": "clock_sync_boottime"},
                    {"uint_value": Moving(boot - side.mono_gap + 30), "name": "clock_sync_monotonic"},
                    {"uint_value": Moving(side.tsc(boot + 60), "tsc"), "name": "clock_sync_cputime"}],
                "type": "TYPE_SLICE_BEGIN", "name_iid": 5}})
            add({**_packet_head(t + 5_000, seq, 2), "track_event": {"type": "TYPE_SLICE_END"}})
            marker_due += 100_000_000
            t += 6_000
        first = {"interned_data": interned} if f == 0 else {}
        p = {**_packet_head(t, seq, 2), "track_event": {
            "category_iids": [1],
            "debug_annotations": [{"name_iid": 1, "int_value": f}, {"name_iid": 2, "int_value": t_index}],
            "type": "TYPE_SLICE_BEGIN", "name_iid": 1}}
        p.update(first)
        add(p)
        add({**_packet_head(t + 3_100, seq, 2), "track_event": {
            "category_iids": [1],
            "debug_annotations": [{"name_iid": 3, "uint_value": (f * 7) % 100},
                                  {"name_iid": 4, "string_value": LABELS[f % 3]}],
            "type": "TYPE_SLICE_BEGIN", "name_iid": 2}})
        add({**_packet_head(t + 9_800, seq, 2), "track_event": {
            "category_iids": [2],
            "debug_annotations": [{"name_iid": 5, "double_value": 0.5 + f / 1000.0},
                                  {"name_iid": 6, "bool_value": f % 2 == 0}],
            "type": "TYPE_SLICE_BEGIN", "name_iid": 3}})
        add({**_packet_head(t + 61_000, seq, 2), "track_event": {"type": "TYPE_SLICE_END"}})
        if f % 4 == 1:  # a dynamic (non-interned) name with a string annotation
            add({**_packet_head(t + 63_000, seq, 2), "track_event": {
                "category_iids": [4],
                "debug_annotations": [{"name_iid": 8, "string_value": f"/data/assets/tex_{f % 97}.png"}],
                "type": "TYPE_SLICE_BEGIN", "name": f"load:tex_{f % 97}"}})
            add({**_packet_head(t + 90_000, seq, 2), "track_event": {"type": "TYPE_SLICE_END"}})
        add({**_packet_head(t + 101_000, seq, 2), "track_event": {"type": "TYPE_SLICE_END"}})
        add({**_packet_head(t + 104_000, seq, 2), "track_event": {
            "category_iids": [1], "debug_annotations": [{"name_iid": 7, "int_value": f}],
            "type": "TYPE_INSTANT", "name_iid": 4}})
        add({**_packet_head(t + 130_000, seq, 2), "track_event": {"type": "TYPE_SLICE_END"}})
        if main:
            add({**_packet_head(t + 131_000, seq, 2), "track_event": {
                "category_iids": [1], "type": "TYPE_COUNTER", "track_uuid": side.counter_uuids[0],
                "counter_value": 1000 + (f * 37) % 500}})
            add({**_packet_head(t + 131_500, seq, 2), "track_event": {
                "category_iids": [1], "type": "TYPE_COUNTER", "track_uuid": side.counter_uuids[1],
                "double_counter_value": (f * 13 % 1000) / 10.0}})
        t += step
    return out


def ftrace_sequence(enc: Encoder, side: Side, seq: int, t0: int) -> Encoded:
    """traced_probes' ftrace data: per CPU a bundle every 10 ms, alternately with full
    sched_switch/sched_waking (+ print, cpu_frequency) events and with compact_sched."""
    out = Encoded()
    tasks = side.tasks
    nt = len(tasks)
    bundle_ns = 10_000_000
    n = 0
    last_end = [t0] * side.ncpu
    for b in range(CHUNK_NS // bundle_ns):
        for cpu in range(side.ncpu):
            start = t0 + b * bundle_ns + cpu * 1_000
            bundle = {"cpu": cpu}
            if (b + cpu) % 2 == 0:
                events = []
                t = start
                for i in range(36):
                    n += 1
                    prev = tasks[(n * 7 + cpu) % nt]
                    nxt = tasks[(n * 13 + cpu * 3) % nt]
                    t += 9_000 + (n * 131) % 5_000
                    if i % 12 == 5:
                        events.append({"timestamp": Moving(t), "pid": nxt[0], "print": {
                            "ip": 0xFFFFFFFF81234567,
                            "buf": f"B|{nxt[1]}|binder transaction {n % 50}\n" if i % 24 == 5
                            else f"E|{nxt[1]}\n"}})
                    elif i % 12 == 11:
                        events.append({"timestamp": Moving(t), "pid": 0, "cpu_frequency": {
                            "state": 1_200_000 + 100_000 * (n % 10), "cpu_id": cpu}})
                    elif i % 2 == 0:
                        events.append({"timestamp": Moving(t), "pid": prev[0], "sched_waking": {
                            "comm": nxt[2], "pid": nxt[0], "prio": 120, "success": 1,
                            "target_cpu": (cpu + n) % side.ncpu}})
                    else:
                        events.append({"timestamp": Moving(t), "pid": prev[0], "sched_switch": {
                            "prev_comm": prev[2], "prev_pid": prev[0], "prev_prio": 120,
                            "prev_state": (n % 3) and 1, "next_comm": nxt[2], "next_pid": nxt[0],
                            "next_prio": 120 - (n % 3)}})
                bundle["event"] = events
            else:
                comms = []
                index = {}

                def comm_index(c):
                    if c not in index:
                        index[c] = len(comms)
                        comms.append(c)
                    return index[c]

                sw_ts, sw_state, sw_pid, sw_prio, sw_comm = [], [], [], [], []
                wk_ts, wk_pid, wk_cpu, wk_prio, wk_comm, wk_flags = [], [], [], [], [], []
                t = last = start
                for i in range(120):
                    n += 1
                    nxt = tasks[(n * 13 + cpu * 3) % nt]
                    t += 4_000 + (n * 97) % 3_000
                    sw_ts.append(Moving(t) if i == 0 else t - last)  # deltas after the first
                    last = t
                    sw_state.append((n % 3) and 1)
                    sw_pid.append(nxt[0])
                    sw_prio.append(120 - (n % 3))
                    sw_comm.append(comm_index(nxt[2]))
                t = last = start + 2_000
                for i in range(100):
                    n += 1
                    w = tasks[(n * 11 + cpu) % nt]
                    t += 5_000 + (n * 89) % 3_000
                    wk_ts.append(Moving(t) if i == 0 else t - last)
                    last = t
                    wk_pid.append(w[0])
                    wk_cpu.append((cpu + n) % side.ncpu)
                    wk_prio.append(120)
                    wk_comm.append(comm_index(w[2]))
                    wk_flags.append(1)
                bundle["compact_sched"] = {
                    "intern_table": comms,
                    "switch_timestamp": sw_ts, "switch_prev_state": sw_state,
                    "switch_next_pid": sw_pid, "switch_next_prio": sw_prio,
                    "switch_next_comm_index": sw_comm,
                    "waking_timestamp": wk_ts, "waking_pid": wk_pid, "waking_target_cpu": wk_cpu,
                    "waking_prio": wk_prio, "waking_comm_index": wk_comm,
                    "waking_common_flags": wk_flags}
            bundle["previous_bundle_end_timestamp"] = Moving(last_end[cpu])
            last_end[cpu] = start + bundle_ns - 5_000
            out.add(enc.packet(_tail({**_packet_head(start + bundle_ns - 4_000, seq),
                                      "ftrace_events": bundle}, seq)))
    return out


def process_tree_packet(enc: Encoder, side: Side, seq: int, t: int) -> Encoded:
    procs = [{"pid": pid, "ppid": 1 if pid != side.pid else side.pid - 4000,
              "cmdline": [cmd, "--flag", str(i)], "uid": 1000 + i % 5}
             for i, (pid, cmd) in enumerate(side.procs)]
    threads = [{"tid": tid, "tgid": tgid, "name": comm} for tid, tgid, comm in side.tasks if tid != tgid]
    return enc.packet(_tail({**_packet_head(t, seq), "process_tree": {
        "processes": procs, "threads": threads, "collection_end_timestamp": Moving(t + 800_000)}}, seq))


def snapshot_packet(enc: Encoder, side: Side, t: int) -> Encoded:
    clocks = [(6, t), (2, t + side.real_off - 3_264_857), (4, t - side.mono_gap - 3_264_857),
              (1, t + side.real_off), (3, t - side.mono_gap), (5, t - side.mono_gap - 261_534_531)]
    return enc.packet({"trusted_uid": 0, "trusted_packet_sequence_id": 1, "clock_snapshot": {
        "clocks": [{"clock_id": c, "timestamp": Moving(v)} for c, v in clocks],
        "primary_trace_clock": 6}})


def build_pieces(pb2, side: Side):
    """(header, chunk, snapshot) pieces of one side; the chunk is 200 ms of activity."""
    enc = Encoder(pb2)
    header = Encoded()
    header.add(snapshot_packet(enc, side, side.boot0 - 120_000))
    chunk = Encoded()
    ftrace_seq = len(side.threads) + 2
    chunk.add(process_tree_packet(enc, side, ftrace_seq + 1, side.boot0 + 50_000))
    parts = [sdk_sequence(enc, side, i, 2 + i, side.boot0) for i in range(len(side.threads))]
    parts.append(ftrace_sequence(enc, side, ftrace_seq, side.boot0))
    # Interleave the sequences' packets in commit-sized blocks, as the service's buffer
    # hands them out (64 KB chunks per writer, here ~8 KB for a finer mix).
    cursors = [0] * len(parts)
    splits = []
    for p in parts:
        s, off = [], 0
        i = 0
        sites = sorted(p.sites)
        while off < len(p.buf):
            end = off
            while end < len(p.buf) and end - off < 8192:  # packet boundaries only
                ln, j = _read_varint(p.buf, end + 1)
                end = j + ln
            blk = Encoded()
            blk.buf = p.buf[off:end]
            while i < len(sites) and sites[i][0] < end:
                o, k, v, w = sites[i]
                blk.sites.append((o - off, k, v, w))
                i += 1
            s.append(blk)
            off = end
        splits.append(s)
    while any(cursors[i] < len(splits[i]) for i in range(len(splits))):
        for i, s in enumerate(splits):
            if cursors[i] < len(s):
                chunk.add(s[cursors[i]])
                cursors[i] += 1
    snap = snapshot_packet(enc, side, side.boot0 + 30_000)
    return header, chunk, snap


def _read_varint(b, i):
    r = s = 0
    while True:
        c = b[i]
        i += 1
        r |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return r, i


def validate(pb2, piece: Encoded) -> dict:
    """Parses a piece with the official schema; returns bytes per kind of payload."""
    from google.protobuf.unknown_fields import UnknownFieldSet

    t = pb2.Trace()
    t.ParseFromString(bytes(piece.buf))
    kinds = {}
    for p in t.packet:
        if len(UnknownFieldSet(p)):
            raise AssertionError("generated packet has unknown fields")
        k = p.WhichOneof("data") or "(none)"
        if k == "track_event":
            k = "track_event." + pb2.TrackEvent.Type.Name(p.track_event.type)
        if k == "ftrace_events":
            k = "ftrace_events." + ("compact_sched" if p.ftrace_events.HasField("compact_sched")
                                    else "events")
        n, b = kinds.get(k, (0, 0))
        kinds[k] = (n + 1, b + p.ByteSize())
    return kinds


# --- writing: the chunk repeated, its moving varints rewritten in place ---------------------

class Patcher:
    def __init__(self, piece: Encoded):
        self.buf = bytes(piece.buf)
        self.sites = piece.sites
        try:
            import numpy as np
        except ImportError:
            self.np = None
            return
        self.np = np
        self.arr = np.frombuffer(self.buf, dtype=np.uint8)
        self.groups = []
        for w in sorted({s[3] for s in self.sites}):
            sel = [s for s in self.sites if s[3] == w]
            self.groups.append((w, np.array([s[0] for s in sel], dtype=np.int64),
                                np.array([s[2] for s in sel], dtype=np.uint64),
                                np.array([1 if s[1] == "tsc" else 0 for s in sel], dtype=np.int64)))

    @staticmethod
    def deltas(k: int):
        return (k * CHUNK_NS, round(k * CHUNK_NS * TSC_RATE))

    def check(self, k: int) -> None:
        """Raises when some moving varint would change width by chunk k."""
        dn, dt = self.deltas(k)
        for o, kind, v, w in self.sites:
            if len(_varint(v + (dt if kind == "tsc" else dn))) != w:
                raise SystemExit(f"--size-mb too large for this generator: a timestamp varint "
                                 f"would grow a byte after chunk {k}")

    def bytes_for(self, k: int):
        dn, dt = self.deltas(k)
        if self.np is None:
            out = bytearray(self.buf)
            for o, kind, v, w in self.sites:
                out[o:o + w] = _varint(v + (dt if kind == "tsc" else dn))
            return out
        np = self.np
        out = self.arr.copy()
        d = np.array([dn, dt], dtype=np.uint64)
        for w, offs, base, kind in self.groups:
            v = base + d[kind]
            for i in range(w):
                b = (v >> np.uint64(7 * i)) & np.uint64(0x7F)
                if i < w - 1:
                    b |= np.uint64(0x80)
                out[offs + i] = b.astype(np.uint8)
        return out


def write_side(path: str, pieces, n_chunks: int) -> int:
    header, chunk, snap = (Patcher(p) for p in pieces)
    chunk.check(n_chunks)
    snap.check(n_chunks)
    tmp = path + ".part"
    with open(tmp, "wb") as f:
        f.write(header.bytes_for(0))
        for k in range(n_chunks):
            if k and k % SNAPSHOT_EVERY == 0:
                f.write(snap.bytes_for(k))
            f.write(chunk.bytes_for(k))
        f.write(snap.bytes_for(n_chunks))
    os.replace(tmp, path)
    return os.path.getsize(path)


def make_pair(work: str, total_mb: float, pb2, log) -> tuple:
    """Generates (or reuses) guest/host traces of total_mb MB together; returns
    (guest path, host path, info, files to remove when not kept)."""
    tag = f"v{GEN_VERSION}-{total_mb:g}MB"
    guest_p = os.path.join(work, f"guest-{tag}.pftrace")
    host_p = os.path.join(work, f"host-{tag}.pftrace")
    stamp = os.path.join(work, f"pair-{tag}.json")
    if os.path.exists(stamp) and os.path.exists(guest_p) and os.path.exists(host_p):
        with open(stamp) as f:
            info = json.load(f)
        if (info.get("guest_bytes") == os.path.getsize(guest_p)
                and info.get("host_bytes") == os.path.getsize(host_p)):
            log(f"reusing {guest_p} and {host_p}")
            return guest_p, host_p, info, [guest_p, host_p, stamp]
    t0 = time.perf_counter()
    sides = [Side("guest", HOST_BOOT0 + OFFSET_NS, 14663, "guest_app", 4, 0x5EED1),
             Side("host", HOST_BOOT0, 14658, "vmm_host", 8, 0x5EED2)]
    info = {"mix": {}}
    for side, path in zip(sides, (guest_p, host_p)):
        pieces = build_pieces(pb2, side)
        kinds = validate(pb2, pieces[1])
        for k, (n, b) in kinds.items():
            m = info["mix"].setdefault(k, [0, 0])
            m[0] += n
            m[1] += b
        n_chunks = max(1, round(total_mb * MB / 2 / len(pieces[1].buf)))
        info[side.name + "_bytes"] = write_side(path, pieces, n_chunks)
        info[side.name + "_chunks"] = n_chunks
        info[side.name + "_packets_per_chunk"] = sum(n for n, _ in kinds.values())
    info["seconds"] = time.perf_counter() - t0
    info["offset_ns"] = OFFSET_NS
    with open(stamp, "w") as f:
        json.dump(info, f)
    log(f"generated {guest_p} ({info['guest_bytes'] / MB:.1f} MB) and {host_p} "
        f"({info['host_bytes'] / MB:.1f} MB) in {info['seconds']:.1f} s")
    return guest_p, host_p, info, [guest_p, host_p, stamp]


# --- measuring ----------------------------------------------------------------------------

# The child is started by a small launcher process: Linux counts in a child's ru_maxrss the
# peak of the address space it had before exec (a fork/vfork of *this* process, which is
# large after generating the traces), so forking from here would inflate every figure.
_LAUNCHER = r"""
import json, os, sys, time
fd, cpu = int(sys.argv[1]), int(sys.argv[2]); cmd = sys.argv[3:]
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    if cpu >= 0:
        os.sched_setaffinity(0, {cpu})
    try:
        os.execvp(cmd[0], cmd)
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t0
os.write(fd, json.dumps([wall, ru.ru_utime, ru.ru_stime, ru.ru_maxrss,
                        os.waitstatus_to_exitcode(status)]).encode())
"""


def run_child(cmd, cpu=None, discard_output=False):
    """Runs cmd; returns (wall s, (user s, sys s), peak RSS MB, stdout, stderr, exit code).
    With discard_output its stdout is /dev/null."""
    r, w = os.pipe()
    try:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            p = subprocess.Popen([sys.executable, "-S", "-c", _LAUNCHER, str(w),
                                  str(-1 if cpu is None else cpu)] + list(cmd),
                                 stdout=subprocess.DEVNULL if discard_output else out,
                                 stderr=err, pass_fds=(w,))
            os.close(w)
            w = -1
            data = b""
            while True:
                b = os.read(r, 4096)
                if not b:
                    break
                data += b
            p.wait()
            if p.returncode != 0 or not data:
                raise SystemExit(f"launcher failed for {cmd}")
            wall, user_s, sys_s, maxrss_kb, code = json.loads(data)
            out.seek(0)
            err.seek(0)
            return (wall, (user_s, sys_s), maxrss_kb / 1024.0, out.read().decode(errors="replace"),
                    err.read().decode(errors="replace"), code)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


class Result:
    def __init__(self, label, mb, runs, note=""):
        self.label = label
        self.mb = mb
        self.walls = [r[0] for r in runs]
        self.users = [r[1][0] for r in runs]
        self.syss = [r[1][1] for r in runs]
        self.cpus = [u + s for u, s in zip(self.users, self.syss)]
        self.rss = max(r[2] for r in runs)
        self.note = note

    @property
    def wall(self):
        return statistics.median(self.walls)

    @property
    def cpu(self):
        return statistics.median(self.cpus)

    @property
    def user(self):
        return statistics.median(self.users)

    @property
    def sys(self):
        return statistics.median(self.syss)

    @property
    def mbps(self):
        return self.mb / self.wall


def measure_merge(guest, host, out, reps, cpu, label, mb, dry_run=False):
    if dry_run:
        code = ("import sys, vperfetto.merge as m; "
                "r = m.merge(sys.argv[1], sys.argv[2], None, dry_run=True); "
                "print(r.alignments[0].offset_ns)")
        cmd = [sys.executable, "-c", code, guest, host]
    else:
        # pinned to one core: one thread (more would only take turns on it)
        cmd = [sys.executable, "-m", "vperfetto.merge", guest, host, out, "-q", "--json",
               "--threads", "1" if cpu is not None else "0"]
    runs = []
    report = None
    for _ in range(reps):
        r = run_child(cmd, cpu)
        if r[5] != 0:
            raise SystemExit(f"merge failed ({r[5]}): {r[4].strip()}")
        if not dry_run:
            report = json.loads(r[3])
            if os.path.exists(out):
                os.unlink(out)
        runs.append(r)
    return Result(label, mb, runs), report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=float, default=1024, help="guest+host size in MB (default 1024)")
    ap.add_argument("--work-dir", help="where the traces are made (default: a new temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep (and reuse) the generated traces")
    ap.add_argument("--reps", type=int, default=3, help="runs of each measurement (median is shown)")
    ap.add_argument("--cpu", type=int, default=None,
                    help="pin cat and the merge to this CPU (default: the first one allowed, so "
                         "that the one-core target is measured on one core; -1: no pinning)")
    ap.add_argument("--no-half", action="store_true", help="skip the half-size run")
    a = ap.parse_args(argv)
    if a.cpu is None:
        a.cpu = min(os.sched_getaffinity(0))
    elif a.cpu < 0:
        a.cpu = None

    pb2 = _need_schema()
    load0 = os.getloadavg()
    probe = run_child([sys.executable, "-c", "import vperfetto; print(vperfetto.__version__, vperfetto.__file__)"])
    if probe[5] != 0:
        raise SystemExit(f"cannot import vperfetto: {probe[4].strip()}")
    version, vpath = probe[3].split()
    work = a.work_dir or tempfile.mkdtemp(prefix="vperfetto-merge-bench-")
    os.makedirs(work, exist_ok=True)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    made = []
    try:
        guest, host, info, files = make_pair(work, a.size_mb, pb2, log)
        made += files
        full_mb = (info["guest_bytes"] + info["host_bytes"]) / MB
        half = None
        if not a.no_half:
            hg, hh, hinfo, files = make_pair(work, a.size_mb / 2, pb2, log)
            made += files
            half = (hg, hh, (hinfo["guest_bytes"] + hinfo["host_bytes"]) / MB)
        out = os.path.join(work, "merged.pftrace")

        # cat twice; the second is the warm-cache figure (nothing is ever dropped).
        cat = ["cat", guest, host]
        run_child(cat, a.cpu, discard_output=True)
        cat_runs = [run_child(cat, a.cpu, discard_output=True) for _ in range(max(1, a.reps))]
        cat_r = Result("cat guest host > /dev/null (warm, 2nd run)", full_mb, cat_runs)

        # What writing the output costs by itself: the same bytes into a new file (on a VM
        # the page cache's fresh pages can be slow to first touch; the merge pays that too).
        wfile = os.path.join(work, "write-floor.tmp")
        wruns = []
        for _ in range(max(1, a.reps)):
            wruns.append(run_child(["sh", "-c", 'cat "$1" "$2" > "$3"', "sh", guest, host, wfile], a.cpu))
            os.unlink(wfile)
        write_r = Result("cat guest host > new file (write floor)", full_mb, wruns)

        log("python floor ...")
        floor = Result("python -c 'import vperfetto.merge' (floor)", 0,
                       [run_child([sys.executable, "-c", "import vperfetto.merge"], a.cpu)])
        log("merging full size ...")
        full, report = measure_merge(guest, host, out, a.reps, a.cpu,
                                     "merge, full size (host into guest)", full_mb)
        half_r = None
        if half:
            log("merging half size ...")
            run_child(["cat", half[0], half[1]], a.cpu, discard_output=True)
            half_r, _ = measure_merge(half[0], half[1], out, a.reps, a.cpu,
                                      "merge, half size", half[2])
        log("scan only ...")
        scan, _ = measure_merge(guest, host, out, a.reps, a.cpu,
                                "scan only (dry run: pass 1 and alignment)", full_mb, dry_run=True)
    finally:
        if not a.keep:
            for p in made:
                if os.path.exists(p):
                    os.unlink(p)
            if not a.work_dir:
                shutil.rmtree(work, ignore_errors=True)

    # --- report ---
    print(f"vperfetto merge benchmark: {machine_line()}")
    print(f"vperfetto {version} from {os.path.dirname(vpath)}; load average {load0[0]:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after (other processes share the {os.cpu_count()} CPUs)")
    print(f"inputs: guest {info['guest_bytes'] / MB:.1f} MB + host {info['host_bytes'] / MB:.1f} MB "
          f"= {full_mb:.1f} MB, {info['guest_chunks']}+{info['host_chunks']} chunks of 200 ms "
          f"({info['guest_packets_per_chunk']}+{info['host_packets_per_chunk']} packets each); "
          f"generated in {info.get('seconds', 0):.1f} s")
    mix_total = sum(b for _, b in info["mix"].values())
    mix = ", ".join(f"{k} {100 * b / mix_total:.1f}%" for k, (_, b) in
                    sorted(info["mix"].items(), key=lambda kv: -kv[1][1]))
    print(f"mix by bytes (packets' payload): {mix}")
    inputs = report["inputs"]
    written = report["bytes_written"] / MB
    al = report["alignments"][0]
    print(f"merge wrote {written:.1f} MB, {report['packets_written']} packets "
          f"({', '.join(str(i['packets_read']) for i in inputs)} read); "
          f"offset {al['offset_ns']} ns by {al['method']} (truth {OFFSET_NS}, "
          f"error {al['offset_ns'] - OFFSET_NS:+d} ns: "
          f"{'OK' if abs(al['offset_ns'] - OFFSET_NS) <= 100 else 'WRONG'})")
    print("warm page cache throughout: cat is run twice and the second run kept; the merge reads "
          "the same cached files; MB/s = input MB / wall s" +
          (f"; pinned to CPU {a.cpu}" if a.cpu is not None else ""))
    print()
    head = (f"{'run':<44} {'input MB':>9} {'wall s':>7} {'user s':>7} {'sys s':>6} {'MB/s':>8} "
            f"{'best':>8} {'MB/cpu-s':>8} {'peak RSS MB':>11} {'vs cat':>7}")
    print(head)
    print("-" * len(head))
    rows = [cat_r, write_r, full] + ([half_r] if half_r else []) + [scan]
    for r in rows:
        ratio = f"{r.wall / cat_r.wall:6.1f}x" if r is not cat_r else ""
        print(f"{r.label:<44} {r.mb:9.1f} {r.wall:7.2f} {r.user:7.2f} {r.sys:6.2f} {r.mbps:8.1f} "
              f"{r.mb / min(r.walls):8.1f} {r.mb / max(r.cpu, 1e-9):8.1f} {r.rss:11.1f} {ratio:>7}")
    print(f"{floor.label:<44} {'':9} {floor.wall:7.2f} {floor.user:7.2f} {floor.sys:6.2f} {'':8} "
          f"{'':8} {'':8} {floor.rss:11.1f}")
    print(f"{'original C++ tool (reported elsewhere*)':<44} {ORIGINAL['mb']:9.1f} "
          f"{ORIGINAL['seconds']:7.2f} {'':7} {'':6} {ORIGINAL['mbps']:8.1f} {'':8} {'':8} "
          f"{ORIGINAL['rss_mb']:11.1f}")
    print("(*a 402 MB SDK v7 pair on another machine: shown for reference, not measured here, "
          "so no ratio against it)")
    print("(wall s, user s, sys s, MB/s: medians of --reps runs; best: the fastest run; MB/cpu-s: "
          "per user+sys second; peak RSS of "
          "cat is the launcher's floor, a fork of `python -S`; the merge's includes the interpreter, "
          "see the floor row)")
    print()
    if a.cpu is not None:
        ok_speed = full.mbps >= TARGET_MBPS
        print(f"target: merge >= {TARGET_MBPS:g} MB/s on one core: {full.mbps:.1f} MB/s "
              f"(pinned to CPU {a.cpu})  {'PASS' if ok_speed else 'MISS'}")
    else:
        print(f"merge: {full.mbps:.1f} MB/s on {full.cpu / full.wall:.2f} cores (not pinned: "
              f"no verdict on the one-core target)")
    if half_r:
        growth = full.rss - half_r.rss
        ok_rss = growth <= TARGET_RSS_GROWTH_MB
        print(f"target: peak RSS independent of input size: {half_r.rss:.1f} MB at {half_r.mb:.0f} MB, "
              f"{full.rss:.1f} MB at {full.mb:.0f} MB ({growth:+.1f} MB; allowed "
              f"+{TARGET_RSS_GROWTH_MB:g})  {'PASS' if ok_rss else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
