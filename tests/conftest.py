"""Shared helpers: decode traces with the OFFICIAL Perfetto schema (the oracle)."""

from __future__ import annotations

import collections
import dataclasses
import pathlib

import pytest

pb2 = pytest.importorskip(
    "perfetto.protos.perfetto.trace.perfetto_trace_pb2",
    reason="the PyPI 'perfetto' package (test extra) provides the official schema",
)

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "testdata"

TYPE_BEGIN = pb2.TrackEvent.TYPE_SLICE_BEGIN
TYPE_END = pb2.TrackEvent.TYPE_SLICE_END
TYPE_INSTANT = pb2.TrackEvent.TYPE_INSTANT
TYPE_COUNTER = pb2.TrackEvent.TYPE_COUNTER
SEQ_CLEARED = pb2.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED
SEQ_NEEDS = pb2.TracePacket.SEQ_NEEDS_INCREMENTAL_STATE
BOOTTIME = pb2.BUILTIN_CLOCK_BOOTTIME


MERGE_RECORD_TRACK = "vperfetto merge"
MERGE_RECORD_EVENT = "vperfetto_merge_alignment"


def is_merge_record(p) -> bool:
    """The packets a merge appends to record its alignment."""
    return ((p.HasField("track_descriptor") and p.track_descriptor.name == MERGE_RECORD_TRACK) or
            (p.HasField("track_event") and p.track_event.name == MERGE_RECORD_EVENT))


def _inflate(t: "pb2.Trace") -> "pb2.Trace":
    """The trace with every compressed_packets packet replaced by the
    packets it holds, in place (as trace_processor reads them)."""
    import zlib

    out = pb2.Trace()
    for p in t.packet:
        if p.HasField("compressed_packets"):
            inner = pb2.Trace()
            inner.ParseFromString(zlib.decompress(p.compressed_packets))
            out.packet.extend(inner.packet)
        else:
            out.packet.append(p)
    return out


def load_trace(path, keep_merge_record: bool = False, inflate: bool = True) -> "pb2.Trace":
    """The trace; without what the merge adds on its own sequence (the
    alignment record, the merged trace stats) unless asked for, so tests can
    compare a merged trace with its inputs packet for packet; compressed_packets
    inflated in place unless `inflate` is false."""
    t = pb2.Trace()
    t.ParseFromString(pathlib.Path(path).read_bytes())
    if inflate and any(p.HasField("compressed_packets") for p in t.packet):
        t = _inflate(t)
    if not keep_merge_record:
        seqs = {p.trusted_packet_sequence_id for p in t.packet[-64:]
                if p.HasField("track_descriptor") and p.track_descriptor.name == MERGE_RECORD_TRACK}
        if seqs:
            kept = [p for p in t.packet if p.trusted_packet_sequence_id not in seqs]
            del t.packet[:]
            t.packet.extend(kept)
    return t


@dataclasses.dataclass
class Ev:
    """A track event with interning resolved, as the trace processor sees it."""

    seq: int
    ts: int
    type: int
    name: str | None
    categories: list
    track_uuid: int
    args: dict
    flows: list
    terminating_flows: list
    counter: object
    index: int


def annotation(a, anames: dict, i: int, named: bool = True):
    """(name, value) of a DebugAnnotation: dict_entries become a dict and
    array_values a list. Every annotation outside an array must be named
    (trace_processor drops events with a nameless one)."""
    key = None
    if a.HasField("name_iid"):
        assert a.name_iid in anames, f"packet {i}: annotation iid undefined"
        key = anames[a.name_iid]
    elif a.HasField("name"):
        key = a.name
    if named:
        assert key is not None, f"packet {i}: annotation without a name"
    if a.dict_entries:
        return key, dict(annotation(e, anames, i) for e in a.dict_entries)
    if a.array_values:
        return key, [annotation(e, anames, i, named=False)[1] for e in a.array_values]
    which = a.WhichOneof("value")
    assert which is not None, f"packet {i}: annotation {key!r} without a value"
    return key, getattr(a, which)


def packet_times(trace) -> list:
    """Each packet's time as trace_processor reads it, per packet (None for
    one without a timestamp): a packet's clock is its timestamp_clock_id,
    else its sequence's default (TracePacketDefaults, forgotten at a reset),
    else BOOTTIME; a sequence-scoped clock (64..127) is defined by a
    ClockSnapshot on its sequence, tied there to BOOTTIME, and an incremental
    one adds each value (times its unit) to its running time. Times on
    BOOTTIME and the sequence clocks come out as BOOTTIME ns; other global
    clocks as written. A packet with a ClockSnapshot (whose own timestamp
    trace_processor does not read) gets the snapshot's BOOTTIME."""
    default_clock: dict = {}
    scoped: dict = {}  # (seq, clock) -> [running ns, offset to BOOTTIME, unit, incremental]
    out = []
    for i, p in enumerate(trace.packet):
        seq = p.trusted_packet_sequence_id
        if p.sequence_flags & SEQ_CLEARED or p.incremental_state_cleared:
            default_clock.pop(seq, None)
        if p.HasField("trace_packet_defaults") and \
                p.trace_packet_defaults.HasField("timestamp_clock_id"):
            default_clock[seq] = p.trace_packet_defaults.timestamp_clock_id
        if p.HasField("clock_snapshot"):
            boot = {c.clock_id: c.timestamp for c in p.clock_snapshot.clocks}.get(BOOTTIME)
            for c in p.clock_snapshot.clocks:
                if 64 <= c.clock_id <= 127:
                    assert boot is not None, f"packet {i}: clock {c.clock_id} not tied to BOOTTIME"
                    unit = c.unit_multiplier_ns or 1
                    scoped[(seq, c.clock_id)] = [c.timestamp * unit, boot - c.timestamp * unit,
                                                 unit, c.is_incremental]
            out.append(boot if boot is not None else
                       (p.timestamp if p.HasField("timestamp") else None))
            continue
        if not p.HasField("timestamp"):
            out.append(None)
            continue
        clock = (p.timestamp_clock_id if p.HasField("timestamp_clock_id")
                 else default_clock.get(seq, BOOTTIME))
        if 64 <= clock <= 127:
            c = scoped.get((seq, clock))
            assert c is not None, f"packet {i}: clock {clock} not defined on sequence {seq}"
            ns = p.timestamp * c[2]
            if c[3]:
                c[0] += ns
                ns = c[0]
            out.append(ns + c[1])
        else:
            out.append(p.timestamp)
    return out


def resolve(trace) -> list:
    """Resolves interning per sequence like the trace processor, checking as it
    goes that every interned id is defined (after the sequence's latest
    incremental-state reset) before it is used."""
    names: dict = {}
    cats: dict = {}
    anames: dict = {}
    defaults: dict = {}
    cleared: set = set()
    times = packet_times(trace)
    out = []
    for i, p in enumerate(trace.packet):
        seq = p.trusted_packet_sequence_id
        if p.sequence_flags & SEQ_CLEARED:
            names[seq], cats[seq], anames[seq] = {}, {}, {}
            cleared.add(seq)
        if p.HasField("trace_packet_defaults"):
            defaults[seq] = p.trace_packet_defaults.track_event_defaults.track_uuid
        if p.HasField("interned_data"):
            assert seq in cleared, f"packet {i}: interned data before a reset"
            for e in p.interned_data.event_names:
                names[seq][e.iid] = e.name
            for e in p.interned_data.event_categories:
                cats[seq][e.iid] = e.name
            for e in p.interned_data.debug_annotation_names:
                anames[seq][e.iid] = e.name
        if not p.HasField("track_event"):
            continue
        if p.sequence_flags & SEQ_NEEDS:
            assert seq in cleared, f"packet {i}: needs incremental state before a reset"
        te = p.track_event
        name = te.name if te.HasField("name") else None
        if te.HasField("name_iid"):
            assert te.name_iid in names[seq], f"packet {i}: name iid {te.name_iid} undefined"
            name = names[seq][te.name_iid]
        categories = list(te.categories)
        for c in te.category_iids:
            assert c in cats[seq], f"packet {i}: category iid {c} undefined"
            categories.append(cats[seq][c])
        args = {}
        for a in te.debug_annotations:
            key, value = annotation(a, anames[seq], i)
            args[key] = value
        counter = None
        if te.HasField("counter_value"):
            counter = te.counter_value
        elif te.HasField("double_counter_value"):
            counter = te.double_counter_value
        out.append(Ev(seq, times[i], te.type, name, categories,
                      te.track_uuid if te.HasField("track_uuid") else defaults.get(seq, 0),
                      args, list(te.flow_ids), list(te.terminating_flow_ids), counter, i))
    return out


def descriptors(trace) -> dict:
    """uuid -> TrackDescriptor (the last one written)."""
    return {p.track_descriptor.uuid: p.track_descriptor
            for p in trace.packet if p.HasField("track_descriptor")}


def slices_by_track(events) -> dict:
    """track uuid -> list of (name, begin_ts, end_ts, depth), checking nesting."""
    stacks = collections.defaultdict(list)
    done = collections.defaultdict(list)
    for e in sorted(events, key=lambda e: (e.ts, e.index)):
        if e.type == TYPE_BEGIN:
            stacks[e.track_uuid].append(e)
        elif e.type == TYPE_END:
            assert stacks[e.track_uuid], f"unmatched end at packet {e.index}"
            b = stacks[e.track_uuid].pop()
            done[e.track_uuid].append((b.name, b.ts, e.ts, len(stacks[e.track_uuid])))
    for uuid, st in stacks.items():
        assert not st, f"unterminated slices on track {uuid}: {[b.name for b in st]}"
    return done


@pytest.fixture
def trace_path(tmp_path):
    return tmp_path / "trace.pftrace"


def raw_fields(data):
    """(field, value) pairs of one protobuf message, ints or bytes: for what the
    public schema's Python module does not hold (TracePacket extensions)."""
    i, out = 0, []
    while i < len(data):
        key, i = _read_varint(data, i)
        wire = key & 7
        if wire == 0:
            v, i = _read_varint(data, i)
        elif wire in (1, 5):
            n = 8 if wire == 1 else 4
            v, i = data[i:i + n], i + n
        else:
            assert wire == 2, f"wire type {wire}"
            n, i = _read_varint(data, i)
            v, i = data[i:i + n], i + n
        out.append((key >> 3, v))
    return out


def _read_varint(data, i):
    v = shift = 0
    while True:
        b = data[i]
        v |= (b & 0x7F) << shift
        shift, i = shift + 7, i + 1
        if b < 0x80:
            return v, i
