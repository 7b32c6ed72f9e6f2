"""A compact timeline picture of a trace: do guest and host line up?

    python -m vperfetto.timeline combined.pftrace --svg t.svg --html t.html

One row per process, thread, custom and counter track, grouped by process;
host and guest rows in different colours; slices as bars stacked by depth,
counters as lines; a time axis in milliseconds since the first event, with
the absolute BOOTTIME of that instant. The SVG is a static picture; the HTML
page is self-contained (inline script and style, no network) and zooms
(wheel, drag, W/S/A/D, buttons) and shows slice names on hover.

``model_from_trace(path)`` reads the trace in one streaming pass, in pure
Python: packets one by one, interning resolved per sequence, track
descriptors, sequence defaults, sequence-scoped (incremental) clocks, gzip
files and ``compressed_packets``. At most ``max_slices`` slices are kept (the
longest, ties sampled evenly), so a big trace still renders.
``render_svg(model)`` and ``render_html(model)`` return the documents as str.
"""

from __future__ import annotations

import argparse
import gzip
import html
import json
import math
import os
import re
import struct
import sys
import zlib
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from .errors import TraceFormatError

__all__ = ["model_from_trace", "render_svg", "render_html", "main"]

# --- wire format --------------------------------------------------------------
# Field numbers of the public Perfetto protos (protos/perfetto/trace/*.proto),
# the same facts as perfetto-sdk/include/vpsdk/field_numbers.h.

_P_CLOCK_SNAPSHOT = 6
_P_TIMESTAMP = 8
_P_SEQ_ID = 10
_P_TRACK_EVENT = 11
_P_INTERNED = 12
_P_SEQ_FLAGS = 13
_P_INCR_CLEARED = 41
_P_PREV_DROPPED = 42
_P_COMPRESSED = 50
_P_CLOCK_ID = 58
_P_DEFAULTS = 59
_P_TRACK_DESC = 60
_P_MACHINE_ID = 98

_BOOTTIME = 6
_SEQ_CLEARED = 1
_SEQ_NEEDS = 2

_TYPE_BEGIN, _TYPE_END, _TYPE_INSTANT, _TYPE_COUNTER = 1, 2, 3, 4
_GUEST_PREFIX = re.compile(r"^(.{1,64}?): (.*)$", re.S)
_MAX_INFLATE = 64 << 20
_MAX_PACKET = 256 << 20
MERGE_RECORD_TRACK = "vperfetto merge"   # where a merge records its alignment
_PID_STEP = 1_000_000     # the merge moves a guest's pids up by (a multiple of) this
_DOUBLE = struct.Struct("<d")


def _varint(b, i: int) -> Tuple[int, int]:
    c = b[i]
    if c < 0x80:
        return c, i + 1
    v = c & 0x7F
    shift = 7
    i += 1
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        if c < 0x80:
            return v, i
        shift += 7
        if shift > 63:
            raise TraceFormatError("bad varint")


def _fields(b) -> Iterator[Tuple[int, int, object]]:
    """(field id, wire type, value) of one message; values are int or bytes."""
    i, n = 0, len(b)
    while i < n:
        tag, i = _varint(b, i)
        wt = tag & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 2:
            ln, i = _varint(b, i)
            if i + ln > n:
                raise TraceFormatError("truncated field")
            v, i = b[i:i + ln], i + ln
        elif wt == 1:
            v, i = int.from_bytes(b[i:i + 8], "little"), i + 8
        elif wt == 5:
            v, i = int.from_bytes(b[i:i + 4], "little"), i + 4
        else:
            raise TraceFormatError(f"unsupported wire type {wt}")
        if i > n:
            raise TraceFormatError("truncated field")
        yield tag >> 3, wt, v


def _s64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _f64(v: int) -> float:
    return _DOUBLE.unpack(v.to_bytes(8, "little"))[0]


def _text(b) -> str:
    return bytes(b).decode("utf-8", "replace")


def _repeated_ints(wt: int, v) -> List[int]:
    if wt == 2:  # packed
        out, i = [], 0
        while i < len(v):
            x, i = _varint(v, i)
            out.append(x)
        return out
    return [v]


def _repeated_doubles(wt: int, v) -> List[float]:
    if wt == 2:
        return [_f64(int.from_bytes(v[i:i + 8], "little")) for i in range(0, len(v) - 7, 8)]
    return [_f64(v)] if wt == 1 else []


def _open_trace(path):
    f = open(path, "rb")
    head = f.read(2)
    f.seek(0)
    if head == b"\x1f\x8b":
        f.close()
        return gzip.open(path, "rb")
    return f


def _top_level_packets(f, stats: dict) -> Iterator[bytes]:
    """The TracePacket payloads of a Trace stream, one at a time."""
    chunk = 1 << 20
    buf = b""
    pos = 0
    eof = False
    while True:
        if len(buf) - pos < 20 and not eof:
            more = f.read(chunk)
            if not more:
                eof = True
            buf = buf[pos:] + more
            pos = 0
        if pos >= len(buf):
            return
        try:
            tag, p = _varint(buf, pos)
            wt = tag & 7
            if wt == 2:
                ln, p = _varint(buf, p)
            elif wt == 0:
                _, p = _varint(buf, p)
                pos = p
                continue
            elif wt in (1, 5):
                pos = p + (8 if wt == 1 else 4)
                continue
            else:
                raise TraceFormatError(f"not a Perfetto trace (wire type {wt} at the top level)")
        except IndexError:
            stats["truncated"] = True
            return
        if ln > _MAX_PACKET:
            raise TraceFormatError(f"a packet of {ln:,} bytes: not a Perfetto trace, or damaged")
        avail = len(buf) - p
        if ln <= avail:
            payload = buf[p:p + ln]
            pos = p + ln
        else:
            rest = f.read(ln - avail)
            payload = buf[p:] + rest
            buf, pos = b"", 0
            if len(payload) < ln:
                stats["truncated"] = True
                return
        if tag >> 3 == 1:
            yield payload


# --- the model ------------------------------------------------------------------

class _Seq:
    __slots__ = ("names", "cats", "default_track", "default_clock", "clocks",
                 "extra_counters", "extra_double_counters", "valid")

    def __init__(self):
        self.names: Dict[int, str] = {}
        self.cats: Dict[int, str] = {}
        self.default_track: Optional[int] = None
        self.default_clock: Optional[int] = None
        self.clocks: Dict[int, list] = {}   # clock id -> [ref units, ref boottime, mult, incremental, last]
        self.extra_counters: List[int] = []
        self.extra_double_counters: List[int] = []
        self.valid = False  # incremental state: cleared since the start or the last loss

    def clear(self):
        self.names.clear()
        self.cats.clear()
        self.default_track = None
        self.default_clock = None
        self.extra_counters = []
        self.extra_double_counters = []


class _Track:
    __slots__ = ("uuid", "name", "parent", "pid", "tid", "pname", "tname", "kind",
                 "machine", "slices", "counter", "stack", "counter_incremental",
                 "counter_total", "desc")

    def __init__(self, uuid):
        self.uuid = uuid
        self.name = None
        self.parent = None
        self.pid = None
        self.tid = None
        self.pname = None
        self.tname = None
        self.kind = None
        self.machine = 0
        self.slices: list = []
        self.counter: list = []
        self.stack: list = []
        self.counter_incremental = False
        self.counter_total = 0.0
        self.desc = False


class _Builder:
    def __init__(self, max_slices: int, max_counter_points: int):
        self.max_slices = max(1, int(max_slices))
        self.max_points = max(16, int(max_counter_points))
        self.tracks: Dict[int, _Track] = {}
        self.seqs: Dict[int, _Seq] = {}
        self.process_names: Dict[Tuple[int, int], str] = {}   # (machine, pid) -> name
        self.global_clocks: Dict[int, int] = {}               # clock id -> boottime - clock
        self.start = None
        self.end = None
        self.slices_total = 0
        self.slices_kept = 0
        self.threshold = -1      # slices shorter than this are dropped (after the cap hit)
        self.serial = 0
        self.packets = 0
        self.stats = {"truncated": False}

    # -- helpers
    def track(self, uuid: int) -> _Track:
        t = self.tracks.get(uuid)
        if t is None:
            t = self.tracks[uuid] = _Track(uuid)
        return t

    def seen(self, ts: int):
        if self.start is None or ts < self.start:
            self.start = ts
        if self.end is None or ts > self.end:
            self.end = ts

    def to_boottime(self, seq: _Seq, clock: int, ts: int) -> Optional[int]:
        if clock == _BOOTTIME:
            return ts
        if 64 <= clock <= 127:
            c = seq.clocks.get(clock)
            if c is None:
                return None
            ref_units, ref_boot, mult, incremental, last = c
            if incremental:
                units = last + ts
                c[4] = units
            else:
                units = ts
            return ref_boot + (units - ref_units) * mult
        off = self.global_clocks.get(clock)
        return ts + off if off is not None else ts

    def clock_snapshot(self, seq: _Seq, data):
        clocks = []
        for fid, _, v in _fields(data):
            if fid == 1:
                cid = ts = 0
                incr, mult = False, 1
                for cf, _, cv in _fields(v):
                    if cf == 1:
                        cid = cv
                    elif cf == 2:
                        ts = cv
                    elif cf == 3:
                        incr = bool(cv)
                    elif cf == 4:
                        mult = cv or 1
                clocks.append((cid, ts, incr, mult))
        boot = None
        for cid, ts, _, mult in clocks:
            if cid == _BOOTTIME:
                boot = ts * mult
        if boot is None:  # derive from any clock whose offset is known
            for cid, ts, _, mult in clocks:
                if cid < 64 and cid in self.global_clocks:
                    boot = ts * mult + self.global_clocks[cid]
                    break
        if boot is None:
            return
        for cid, ts, incr, mult in clocks:
            if 64 <= cid <= 127:
                seq.clocks[cid] = [ts, boot, mult, incr, ts]
            elif cid != _BOOTTIME:
                self.global_clocks[cid] = boot - ts * mult

    def interned(self, seq: _Seq, data):
        for fid, _, entry in _fields(data):
            if fid in (1, 2):  # event_categories, event_names
                iid, name = 0, ""
                for ef, _, ev in _fields(entry):
                    if ef == 1:
                        iid = ev
                    elif ef == 2:
                        name = _text(ev)
                (seq.cats if fid == 1 else seq.names)[iid] = name

    def defaults(self, seq: _Seq, data):
        for fid, _, v in _fields(data):
            if fid == 58:
                seq.default_clock = v
            elif fid == 11:
                for df, wt, dv in _fields(v):
                    if df == 11:
                        seq.default_track = dv
                    elif df == 31:
                        seq.extra_counters = _repeated_ints(wt, dv)
                    elif df == 45:
                        seq.extra_double_counters = _repeated_ints(wt, dv)

    def descriptor(self, data, machine: int):
        uuid = None
        name = parent = None
        proc = thread = None
        counter = None
        for fid, _, v in _fields(data):
            if fid == 1:
                uuid = v
            elif fid in (2, 10, 13):
                name = _text(v)
            elif fid == 5:
                parent = v
            elif fid == 3:
                proc = v
            elif fid == 4:
                thread = v
            elif fid == 8:
                counter = v
        if uuid is None:
            return
        t = self.track(uuid)
        t.desc = True
        t.machine = machine or t.machine
        if name is not None:
            t.name = name
        if parent is not None:
            t.parent = parent
        if thread is not None:
            t.kind = "thread"
            for f, _, v in _fields(thread):
                if f == 1:
                    t.pid = _s64(v)
                elif f == 2:
                    t.tid = _s64(v)
                elif f == 5:
                    t.tname = _text(v)
        elif proc is not None:
            t.kind = "process"
            for f, _, v in _fields(proc):
                if f == 1:
                    t.pid = _s64(v)
                elif f == 6:
                    t.pname = _text(v)
                elif f == 2 and t.pname is None:   # cmdline, when no process_name
                    t.pname = _text(v)
            if t.pid is not None and t.pname:
                self.process_names[(t.machine, t.pid)] = t.pname
        elif counter is not None:
            t.kind = "counter"
            for f, _, v in _fields(counter):
                if f == 5:
                    t.counter_incremental = bool(v)
        elif t.kind is None:
            t.kind = "custom"

    # -- slices, capped
    def add_slice(self, t: _Track, ts: int, dur: int, name: str, depth: int):
        self.slices_total += 1
        if dur < self.threshold:
            return
        self.serial += 1
        t.slices.append([ts, dur, name, depth, self.serial])
        self.slices_kept += 1
        if self.slices_kept > 2 * self.max_slices:
            self.prune()

    def prune(self):
        keys = []
        for t in self.tracks.values():
            for s in t.slices:
                keys.append((s[1], (s[4] * 2654435761) & 0xFFFFFFFF))
        if len(keys) <= self.max_slices:
            return
        keys.sort(reverse=True)
        cut = keys[self.max_slices - 1]
        self.threshold = cut[0]
        kept = 0
        for t in self.tracks.values():
            if t.slices:
                t.slices = [s for s in t.slices
                            if (s[1], (s[4] * 2654435761) & 0xFFFFFFFF) >= cut]
                kept += len(t.slices)
        self.slices_kept = kept

    def add_point(self, t: _Track, ts: int, value: float):
        if isinstance(value, float) and not math.isfinite(value):
            return
        if t.counter_incremental:
            t.counter_total += value
            value = t.counter_total
        t.counter.append([ts, value])
        if len(t.counter) > 2 * self.max_points:
            pts, out = t.counter, []
            for k in range(0, len(pts) - 1, 2):
                a, b = pts[k], pts[k + 1]
                hi = a if a[1] >= b[1] else b
                lo = b if hi is a else a
                out.append(hi if (k // 2) % 2 == 0 else lo)
            if len(pts) % 2:
                out.append(pts[-1])
            t.counter = out

    # -- packets
    def packet(self, data, depth: int = 0):
        self.packets += 1
        ts = None
        seq_id = 0
        te = interned = defaults = desc = snap = None
        clock = None
        cleared = needs = dropped = False
        machine = 0
        compressed = None
        for fid, _, v in _fields(data):
            if fid == _P_TIMESTAMP:
                ts = v
            elif fid == _P_SEQ_ID:
                seq_id = v
            elif fid == _P_TRACK_EVENT:
                te = v
            elif fid == _P_INTERNED:
                interned = v
            elif fid == _P_SEQ_FLAGS:
                cleared = cleared or bool(v & _SEQ_CLEARED)
                needs = needs or bool(v & _SEQ_NEEDS)
            elif fid == _P_PREV_DROPPED:
                dropped = dropped or bool(v)
            elif fid == _P_INCR_CLEARED:
                cleared = cleared or bool(v)
            elif fid == _P_DEFAULTS:
                defaults = v
            elif fid == _P_TRACK_DESC:
                desc = v
            elif fid == _P_CLOCK_ID:
                clock = v
            elif fid == _P_CLOCK_SNAPSHOT:
                snap = v
            elif fid == _P_MACHINE_ID:
                machine = v
            elif fid == _P_COMPRESSED:
                compressed = v
        if compressed is not None and depth == 0:
            try:
                d = zlib.decompressobj()
                raw = d.decompress(compressed, _MAX_INFLATE)
            except zlib.error as e:
                raise TraceFormatError(f"bad compressed_packets: {e}") from None
            for fid, wt, v in _fields(raw):
                if fid == 1 and wt == 2:
                    self.packet(v, depth + 1)
            self.packets -= 1
        seq = self.seqs.get(seq_id)
        if seq is None:
            seq = self.seqs[seq_id] = _Seq()
        if cleared:
            seq.clear()
            seq.valid = True
        elif dropped:
            seq.valid = False
        if needs and not seq.valid:
            return  # trace_processor skips it (its interned data and clocks are gone)
        if defaults is not None:
            self.defaults(seq, defaults)
        if interned is not None:
            self.interned(seq, interned)
        if snap is not None:
            self.clock_snapshot(seq, snap)
            return  # trace_processor reads nothing else of a snapshot packet
        if desc is not None:
            self.descriptor(desc, machine)
        if ts is None:
            return
        # Every timed packet moves its sequence's incremental clock, whatever
        # it carries (descriptors too), as trace_processor reads them.
        c = clock if clock is not None else seq.default_clock
        ts = self.to_boottime(seq, c if c is not None else _BOOTTIME, ts)
        if te is None or ts is None:
            return
        self.track_event(seq, seq_id, te, ts, machine)

    def track_event(self, seq: _Seq, seq_id: int, data, ts: int, machine: int):
        etype = 0
        name = None
        name_iid = None
        uuid = None
        ivalue = dvalue = None
        extra_u = extra_v = extra_du = extra_dv = None
        legacy = None
        for fid, wt, v in _fields(data):
            if fid == 9:
                etype = v
            elif fid == 10:
                name_iid = v
            elif fid == 23:
                name = _text(v)
            elif fid == 11:
                uuid = v
            elif fid == 30:
                ivalue = _s64(v)
            elif fid == 44:
                dvalue = _f64(v) if wt == 1 else None
            elif fid == 31:
                extra_u = (extra_u or []) + _repeated_ints(wt, v)
            elif fid == 12:
                extra_v = (extra_v or []) + [_s64(x) for x in _repeated_ints(wt, v)]
            elif fid == 45:
                extra_du = (extra_du or []) + _repeated_ints(wt, v)
            elif fid == 46:
                extra_dv = (extra_dv or []) + _repeated_doubles(wt, v)
            elif fid == 6:
                legacy = v
        if name is None and name_iid is not None:
            name = seq.names.get(name_iid)
        dur = None
        if etype == 0 and legacy is not None:
            for lf, _, lv in _fields(legacy):
                if lf == 2:
                    ph = chr(lv) if 0 <= lv < 128 else ""
                    etype = {"B": _TYPE_BEGIN, "E": _TYPE_END, "X": _TYPE_BEGIN,
                             "I": _TYPE_INSTANT, "i": _TYPE_INSTANT, "n": _TYPE_INSTANT,
                             "R": _TYPE_INSTANT}.get(ph, 0)
                    if ph == "X":
                        dur = dur or 0
                elif lf == 3:
                    dur = lv * 1000
        if uuid is None:
            uuid = seq.default_track
        if uuid is None:
            uuid = -seq_id - 1     # a track per sequence when the trace names none
        t = self.track(uuid)
        if machine:
            t.machine = machine
        if not t.desc and t.kind is None:
            t.kind = "custom"
            if uuid < 0:
                t.name = f"sequence {seq_id}"
        if etype == _TYPE_COUNTER:
            value = dvalue if dvalue is not None else ivalue
            if value is not None:
                if t.kind == "custom" or (t.kind is None):
                    t.kind = "counter"
                self.add_point(t, ts, value)
                self.seen(ts)
        elif etype == _TYPE_BEGIN:
            label = name if name is not None else "(unnamed)"
            if dur is not None:
                self.add_slice(t, ts, dur, label, len(t.stack))
                self.seen(ts)
                self.seen(ts + dur)
            else:
                t.stack.append((ts, label))
                self.seen(ts)
        elif etype == _TYPE_END:
            if t.stack:
                bts, label = t.stack.pop()
                self.add_slice(t, bts, max(0, ts - bts), label, len(t.stack))
            self.seen(ts)
        elif etype == _TYPE_INSTANT:
            self.add_slice(t, ts, 0, name if name is not None else "(unnamed)", len(t.stack))
            self.seen(ts)
        # extra counter values go to their own counter tracks
        if extra_v:
            uu = extra_u if extra_u is not None else seq.extra_counters
            for cu, cv in zip(uu, extra_v):
                ct = self.track(cu)
                ct.kind = ct.kind if ct.kind in ("counter",) else "counter"
                self.add_point(ct, ts, cv)
        if extra_dv:
            uu = extra_du if extra_du is not None else seq.extra_double_counters
            for cu, cv in zip(uu, extra_dv):
                ct = self.track(cu)
                ct.kind = "counter"
                self.add_point(ct, ts, cv)

    # -- the result
    def finish(self, path) -> dict:
        end = self.end if self.end is not None else 0
        start = self.start if self.start is not None else 0
        for t in self.tracks.values():   # slices still open at the end of the trace
            while t.stack:
                bts, label = t.stack.pop()
                self.add_slice(t, bts, max(0, end - bts), label, len(t.stack))
        if self.slices_kept > self.max_slices:
            self.prune()
            if self.slices_kept > self.max_slices:
                self.threshold += 1
                self.prune()

        tracks = self.tracks

        def owner(t: _Track):
            """The pid (and its track) the track belongs to, following parents."""
            seen = set()
            cur = t
            while cur is not None and cur.uuid not in seen:
                seen.add(cur.uuid)
                if cur.kind in ("thread", "process") and cur.pid is not None:
                    return cur.pid, cur.machine
                cur = tracks.get(cur.parent) if cur.parent is not None else None
            return None, t.machine

        process_track: Dict[Tuple[int, int], _Track] = {}
        for t in tracks.values():
            if t.kind == "process" and t.pid is not None:
                process_track.setdefault((t.machine, t.pid), t)

        used = {u for u, t in tracks.items() if t.slices or t.counter}
        keep = set(used)
        for u in used:
            t = tracks[u]
            cur, hops = t, 0
            while cur is not None and cur.parent is not None and hops < 64:
                p = tracks.get(cur.parent)
                if p is None:
                    break
                keep.add(p.uuid)
                cur, hops = p, hops + 1
            pid, machine = owner(t)
            if pid is not None and (machine, pid) in process_track:
                keep.add(process_track[(machine, pid)].uuid)

        prefixed = any(_GUEST_PREFIX.match(n) for (m, p), n in self.process_names.items()
                       if n and (m or p >= _PID_STEP or n.startswith("guest: ")))
        out = []
        for u in keep:
            t = tracks[u]
            if t.name == MERGE_RECORD_TRACK:
                continue   # the merge's alignment record: metadata, not a timeline row
            pid, machine = owner(t)
            pname = self.process_names.get((machine, pid)) if pid is not None else None
            if pname is None and t.kind == "process":
                pname = t.pname
            guest_name = None
            if pname:
                m = _GUEST_PREFIX.match(pname)
                # the merge's prefix, on a process it moved (pids +1,000,000 or
                # a machine id) or on the main guest of the positional form
                if m and (m.group(1) == "guest" or machine or (pid is not None and pid >= _PID_STEP)):
                    guest_name = m.group(1)
            if guest_name is None and machine and not prefixed:
                # machine ids mark guests only where no process says which
                # guest it is (the merge names guest processes in either mode)
                guest_name = f"machine {machine}"
            if t.kind == "thread":
                name = t.name or t.tname or (f"thread {t.tid}" if t.tid is not None else "thread")
            elif t.kind == "process":
                name = t.name or pname or (f"process {pid}" if pid is not None else "process")
            elif t.name:
                name = t.name
            elif t.slices:   # an unnamed async track: after what runs on it, as the Perfetto UI does
                name = min(t.slices, key=lambda s: s[0])[2]
            else:
                name = f"track {u}"
            slices = sorted(([s[0], s[1], s[2], s[3]] for s in t.slices),
                            key=lambda s: (s[0], s[3]))
            out.append({
                "uuid": u,
                "name": name,
                "process": pname,
                "pid": pid,
                "tid": t.tid if t.kind == "thread" else None,
                "kind": t.kind or "custom",
                "guest": guest_name is not None,
                "guest_name": guest_name,
                "parent_uuid": t.parent,
                "machine": machine,
                "slices": slices,
                "counter": sorted(t.counter, key=lambda p: p[0]),
            })

        order = {"process": 0, "thread": 1, "custom": 2, "counter": 3}

        def key(tr):
            pid = tr["pid"]
            return (tr["guest"], tr["guest_name"] or "", pid is None, pid if pid is not None else 0,
                    order.get(tr["kind"], 4),
                    0 if tr["tid"] is not None and tr["tid"] == pid else 1,
                    tr["name"], tr["tid"] if tr["tid"] is not None else 0, str(tr["uuid"]))

        out.sort(key=key)
        return {
            "path": os.fspath(path),
            "start_ns": start,
            "end_ns": max(end, start),
            "timeline": _which_timeline(out),
            "tracks": out,
            "slices_total": self.slices_total,
            "slices_kept": sum(len(t["slices"]) for t in out),
            "packets": self.packets,
            "truncated": self.stats["truncated"],
        }


def _which_timeline(tracks: list) -> str:
    """Whose BOOTTIME the timestamps are: the merge moves the other side's pids
    up by 1,000,000 (or tags it with a machine id), so the side that kept its
    pids (machine 0) is the main timeline."""
    if not any(t["guest"] for t in tracks):
        return "trace"
    if any(t["machine"] for t in tracks):
        guest_m = {t["machine"] for t in tracks if t["guest"]}
        host_m = {t["machine"] for t in tracks if not t["guest"]}
        if host_m and 0 not in host_m and 0 in guest_m:
            return "guest"
        return "host"
    guest = [t["pid"] for t in tracks if t["guest"] and t["pid"] is not None]
    host = [t["pid"] for t in tracks if not t["guest"] and t["pid"] is not None]
    if not host:
        return "guest"
    if guest and min(guest) >= _PID_STEP and min(host) < _PID_STEP:
        return "host"
    if guest and min(host) >= _PID_STEP and min(guest) < _PID_STEP:
        return "guest"
    return "host"


def model_from_trace(path, max_slices: int = 50000, max_counter_points: int = 20000) -> dict:
    """Reads a trace (one streaming pass) into the timeline model.

    Returns ``{"start_ns", "end_ns", "timeline", "tracks": [{"uuid", "name",
    "process", "pid", "tid", "kind", "guest", "guest_name", "slices": [[ts,
    dur, name, depth], ...], "counter": [[ts, value], ...]}, ...], ...}``
    with timestamps in BOOTTIME ns of the trace's main timeline. Raises
    OSError when the file cannot be read and TraceFormatError (a ValueError)
    when it is not a Perfetto trace.
    """
    b = _Builder(max_slices, max_counter_points)
    name = os.fspath(path)
    with _open_trace(path) as f:
        try:
            for payload in _top_level_packets(f, b.stats):
                try:
                    b.packet(payload)
                except (IndexError, TraceFormatError):
                    if b.packets <= 1:
                        raise TraceFormatError(f"{name}: not a Perfetto trace") from None
                    b.stats["truncated"] = True   # a damaged packet: skip it
        except (EOFError, gzip.BadGzipFile, zlib.error, TraceFormatError) as e:
            if b.packets == 0:
                msg = str(e) if str(e).startswith(name) else f"{name}: {e}"
                raise TraceFormatError(msg) from None
            b.stats["truncated"] = True   # garbage or a cut after good packets
    return b.finish(path)


# --- shared layout ------------------------------------------------------------

_HOST_HUE = 212
_GUEST_HUES = [28, 140, 285, 0, 55, 175]


def _side_hues(model) -> Dict[Optional[str], int]:
    hues: Dict[Optional[str], int] = {None: _HOST_HUE}
    for t in model["tracks"]:
        if t["guest"] and t["guest_name"] not in hues:
            hues[t["guest_name"]] = _GUEST_HUES[(len(hues) - 1) % len(_GUEST_HUES)]
    return hues


def _name_hash(s: str) -> int:
    h = 2166136261
    for ch in s.encode("utf-8", "replace"):
        h = ((h ^ ch) * 16777619) & 0xFFFFFFFF
    return h


def _slice_colour(hue: int, name: str) -> str:
    h = _name_hash(name)
    return f"hsl({hue + (h % 21) - 10},{55 + (h >> 8) % 25}%,{42 + (h >> 16) % 18}%)"


def _nice_step(span_ms: float, target: int) -> float:
    if span_ms <= 0:
        return 1.0
    raw = span_ms / max(1, target)
    p = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * p >= raw:
            return m * p
    return 10 * p


def _fmt_ms(v: float, step: float) -> str:
    decimals = max(0, -int(math.floor(math.log10(step)))) if step < 1 else 0
    return f"{v:.{decimals}f}"


def _fmt_dur(ns: float) -> str:
    if ns >= 1e9:
        return f"{ns / 1e9:.3f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.3f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.1f} us"
    return f"{int(ns)} ns"


def _fmt_boottime(ns: int) -> str:
    return f"{ns // 1_000_000_000:,}.{ns % 1_000_000_000:09d} s"


def _clock_label(model) -> str:
    return {"host": "host BOOTTIME", "guest": "guest BOOTTIME (the host moved into guest time)",
            "trace": "BOOTTIME"}.get(model.get("timeline"), "BOOTTIME")


_BAD_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")


def _clean(s) -> str:
    return _BAD_XML.sub("\ufffd", "" if s is None else str(s))


def _x(s) -> str:
    """Escapes text and attribute values for SVG/HTML."""
    return html.escape(_clean(s), quote=True)


def _row_label(t) -> str:
    if t["kind"] == "process":
        proc = t["process"] or t["name"]
        return f"{proc} [{t['pid']}]" if t["pid"] is not None else proc
    if t["kind"] == "thread":
        return f"{t['name']} [{t['tid']}]" if t["tid"] is not None else t["name"]
    return t["name"]


_LANE = 13          # px per slice depth
_MAX_LANES = 12
_COUNTER_H = 28


def _row_height(t) -> int:
    if t["counter"] and not t["slices"]:
        return _COUNTER_H
    lanes = 1 + max((s[3] for s in t["slices"]), default=0)
    return 6 + _LANE * min(lanes, _MAX_LANES)


# --- SVG ----------------------------------------------------------------------

def render_svg(model: dict, width: int = 1200, max_rows: int = 2000) -> str:
    """The timeline as a standalone SVG document (str): one ``<g class="row"
    data-track=UUID>`` per track of the model (up to ``max_rows``)."""
    label_w = 250
    x0, x1 = label_w + 10, width - 14
    plot_w = x1 - x0
    start, end = model["start_ns"], model["end_ns"]
    span = max(1, end - start)
    hues = _side_hues(model)
    tracks = model["tracks"][:max_rows]

    def X(ts):
        return x0 + (ts - start) * plot_w / span

    out: List[str] = []
    head_h = 78
    y = head_h
    rows: List[str] = []
    prev_group = None
    for t in tracks:
        group = (t["guest_name"], t["pid"])
        if prev_group is not None and group != prev_group:
            y += 4     # a little air between processes
        prev_group = group
        h = _row_height(t)
        hue = hues.get(t["guest_name"] if t["guest"] else None, _HOST_HUE)
        side = "guest" if t["guest"] else "host"
        bg = f"hsl({hue},60%,{95 if t['kind'] != 'process' else 90}%)"
        indent = 6 if t["kind"] == "process" else 18
        weight = ' font-weight="bold"' if t["kind"] == "process" else ""
        label = _row_label(t)
        short = label if len(label) <= 34 else label[:33] + "\u2026"
        g = [f'<g class="row" data-track="{_x(t["uuid"])}" data-kind="{_x(t["kind"])}" '
             f'data-side="{side}"' + (f' data-guest="{_x(t["guest_name"])}"' if t["guest"] else "") + ">",
             f'<rect class="row-bg" x="0" y="{y}" width="{width}" height="{h}" fill="{bg}"/>',
             f'<rect x="0" y="{y}" width="4" height="{h}" fill="hsl({hue},65%,45%)"/>',
             f'<text x="{indent}" y="{y + min(h, 19) - 5}" font-size="11"{weight}>'
             f'<title>{_x(label)}</title>{_x(short)}</text>']
        if t["counter"] and not t["slices"]:
            pts = t["counter"]
            vals = [p[1] for p in pts]
            lo, hi = min(vals), max(vals)
            rng = (hi - lo) or 1.0
            coords = []
            last_px = None
            for ts, v in pts:
                px = round(X(ts), 1)
                py = round(y + h - 3 - (v - lo) * (h - 8) / rng, 1)
                if last_px is not None:
                    coords.append(f"{px},{coords[-1].split(',')[1]}")  # step line
                coords.append(f"{px},{py}")
                last_px = px
            if coords:
                coords.append(f"{x1},{coords[-1].split(',')[1]}")
            colour = f"hsl({hue},70%,35%)"
            g.append(f'<polyline class="counter" fill="none" stroke="{colour}" stroke-width="1.2" '
                     f'points="{" ".join(coords)}"/>')
            g.append(f'<text x="{x1 - 2}" y="{y + 10}" font-size="9" text-anchor="end" '
                     f'fill="#333">{_x(_num(hi))}</text>')
            g.append(f'<text x="{x1 - 2}" y="{y + h - 2}" font-size="9" text-anchor="end" '
                     f'fill="#333">{_x(_num(lo))}</text>')
        else:
            # coalesce sub-pixel slices per lane so that a big trace stays small
            last_end: Dict[int, float] = {}
            for ts, dur, name, depth in t["slices"]:
                lane = min(depth, _MAX_LANES - 1)
                sx = X(ts)
                w = dur * plot_w / span
                if w < 1.0 and last_end.get(lane, -1) >= sx:
                    continue
                ww = max(w, 1.0)
                last_end[lane] = sx + ww
                sy = y + 3 + lane * _LANE
                fill = _slice_colour(hue, name)
                title = f"{name} \u2014 {_fmt_dur(dur)}"
                g.append(f'<rect class="slice" x="{sx:.1f}" y="{sy}" width="{ww:.1f}" '
                         f'height="{_LANE - 2}" fill="{fill}"><title>{_x(title)}</title></rect>')
                if w >= 40:
                    n = int((w - 6) / 6)
                    txt = name if len(name) <= n else name[:max(0, n - 1)] + "\u2026"
                    if txt:
                        g.append(f'<text x="{sx + 3:.1f}" y="{sy + _LANE - 4}" font-size="9" '
                                 f'fill="#fff" pointer-events="none">{_x(txt)}</text>')
        g.append("</g>")
        rows.append("\n".join(g))
        y += h + 1
    if not tracks:
        rows.append(f'<text x="6" y="{y + 16}" font-size="12" fill="#900">no track events in this '
                    f'trace</text>')
        y += 24
    total_h = y + 12
    if len(model["tracks"]) > len(tracks):
        rows.append(f'<text x="6" y="{y + 8}" font-size="11" fill="#900">'
                    f'{len(model["tracks"]) - len(tracks)} more tracks not drawn</text>')
        total_h += 12

    # axis
    span_ms = span / 1e6
    step = _nice_step(span_ms, 10)
    axis = []
    k = 0
    while k * step <= span_ms + 1e-9 and k < 1000:
        px = x0 + (k * step) * plot_w / span_ms
        axis.append(f'<line x1="{px:.1f}" y1="{head_h - 8}" x2="{px:.1f}" y2="{total_h - 12}" '
                    f'stroke="#000" stroke-opacity="0.12"/>')
        axis.append(f'<text x="{px:.1f}" y="{head_h - 11}" font-size="10" text-anchor="middle">'
                    f'{_fmt_ms(k * step, step)}</text>')
        k += 1

    # header and legend
    title = os.path.basename(model.get("path") or "") or "trace"
    info = (f"t = 0 ms at {_clock_label(model)} {_fmt_boottime(start)}; "
            f"span {_fmt_dur(span)}; {len(model['tracks'])} tracks")
    if model.get("slices_total", 0) > model.get("slices_kept", 0):
        info += f"; {model['slices_kept']:,} of {model['slices_total']:,} slices drawn (the longest)"
    legend = []
    lx = x0
    for gname, hue in hues.items():
        if gname is None and not any(not t["guest"] for t in model["tracks"]):
            continue
        text = "host" if gname is None else f"guest {gname}"
        legend.append(f'<rect class="legend" data-side="{"host" if gname is None else "guest"}" '
                      f'x="{lx}" y="30" width="14" height="10" fill="hsl({hue},60%,50%)"/>'
                      f'<text x="{lx + 18}" y="39" font-size="11">{_x(text)}</text>')
        lx += 30 + 7 * len(text)
    out.append('<?xml version="1.0" encoding="UTF-8"?>')
    out.append(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total_h}" '
               f'viewBox="0 0 {width} {total_h}" font-family="sans-serif">')
    out.append(f'<title>{_x(title)} \u2014 vperfetto timeline</title>')
    out.append(f'<rect width="{width}" height="{total_h}" fill="#fff"/>')
    out.append(f'<text x="6" y="16" font-size="13" font-weight="bold">{_x(title)}</text>')
    out.append(f'<text x="6" y="39" font-size="10" fill="#444">legend:</text>')
    out.extend(legend)
    out.append(f'<text x="6" y="56" font-size="10" fill="#444">{_x(info)}</text>')
    out.append(f'<text x="{x1}" y="{head_h - 24}" font-size="10" text-anchor="end" '
               f'fill="#444">ms since t = 0</text>')
    out.extend(axis)
    out.append('<g class="rows">')
    out.extend(rows)
    out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _num(v) -> str:
    if isinstance(v, float) and not v.is_integer():
        return f"{v:.4g}"
    return f"{int(v):,}"


# --- HTML ---------------------------------------------------------------------

def _html_data(model: dict) -> dict:
    start = model["start_ns"]
    names: Dict[str, int] = {}
    hues = _side_hues(model)

    def nid(s):
        i = names.get(s)
        if i is None:
            i = names[s] = len(names)
        return i

    tracks = []
    for t in model["tracks"]:
        tracks.append({
            "uuid": str(t["uuid"]),
            "label": _clean(_row_label(t)),
            "name": _clean(t["name"]),
            "kind": t["kind"],
            "guest": bool(t["guest"]),
            "guest_name": _clean(t["guest_name"]) if t["guest"] else None,
            "hue": hues.get(t["guest_name"] if t["guest"] else None, _HOST_HUE),
            "pid": t["pid"],
            "slices": [[s[0] - start, s[1], nid(_clean(s[2])), s[3]] for s in t["slices"]],
            "counter": [[p[0] - start, p[1]] for p in t["counter"]
                        if isinstance(p[1], (int, float)) and math.isfinite(p[1])],
        })
    legend = [["host" if g is None else f"guest {_clean(g)}", h, "host" if g is None else "guest"]
              for g, h in hues.items()
              if g is not None or any(not t["guest"] for t in model["tracks"])]
    return {
        "title": _clean(os.path.basename(model.get("path") or "") or "trace"),
        "span": max(1, model["end_ns"] - start),
        "start": _fmt_boottime(start),
        "clock": _clock_label(model),
        "slices_total": model.get("slices_total", 0),
        "slices_kept": model.get("slices_kept", 0),
        "names": list(names),
        "legend": legend,
        "tracks": tracks,
    }


def _script_json(obj) -> str:
    s = json.dumps(obj, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


_CSS = """
html,body{margin:0;padding:0;background:#fff;color:#222;font:12px sans-serif}
#vp-head{position:sticky;top:0;z-index:2;background:#fff;border-bottom:1px solid #ddd}
#vp-top{padding:6px 8px 0}
#vp-title{font-weight:bold;font-size:14px}
#vp-info{color:#555;margin:2px 0 4px}
#vp-tools{display:flex;align-items:center;gap:6px;flex-wrap:wrap;margin-bottom:4px}
#vp-tools button{font:12px sans-serif;padding:1px 8px}
.vp-legend{display:inline-flex;align-items:center;gap:4px;margin-left:10px}
.vp-swatch{display:inline-block;width:14px;height:10px}
#vp-axis-row{display:flex}
#vp-axis-label{flex:0 0 var(--label-w);text-align:right;padding-right:6px;box-sizing:border-box;color:#555}
#vp-axis{flex:1 1 auto;height:22px;display:block;min-width:0}
.vp-row{display:flex;border-bottom:1px solid #fff}
.vp-row.vp-first{border-top:4px solid #fff}
.vp-label{flex:0 0 var(--label-w);box-sizing:border-box;padding:2px 6px 0 16px;white-space:nowrap;
  overflow:hidden;text-overflow:ellipsis;border-left:4px solid transparent}
.vp-row[data-kind=process] .vp-label{font-weight:bold;padding-left:6px}
.vp-canvas{flex:1 1 auto;display:block;min-width:0;cursor:crosshair}
#vp-tooltip{position:fixed;z-index:3;pointer-events:none;background:rgba(20,20,20,.92);color:#fff;
  padding:4px 7px;border-radius:3px;white-space:pre;max-width:60vw;overflow:hidden;font:12px sans-serif}
#vp-help{color:#666}
#vp-empty{padding:12px;color:#900}
"""

_JS = r"""
(function(){
"use strict";
var D = JSON.parse(document.getElementById('vp-data').textContent);
var LANE = 13, MAX_LANES = 12, COUNTER_H = 28, LABEL_W = 250;
document.documentElement.style.setProperty('--label-w', LABEL_W + 'px');
var view = {t0: 0, t1: D.span};
var rowsEl = document.getElementById('vp-rows');
var tip = document.getElementById('vp-tooltip');
var axis = document.getElementById('vp-axis');
document.getElementById('vp-title').textContent = D.title;
document.title = D.title + ' \u2014 vperfetto timeline';
var info = 't = 0 ms at ' + D.clock + ' ' + D.start + '; span ' + fmtDur(D.span) + '; ' +
  D.tracks.length + ' tracks';
if (D.slices_total > D.slices_kept)
  info += '; ' + D.slices_kept + ' of ' + D.slices_total + ' slices shown (the longest)';
document.getElementById('vp-info').textContent = info;
var leg = document.getElementById('vp-legend');
D.legend.forEach(function(l){
  var s = document.createElement('span'); s.className = 'vp-legend'; s.setAttribute('data-side', l[2]);
  var sw = document.createElement('span'); sw.className = 'vp-swatch';
  sw.style.background = 'hsl(' + l[1] + ',60%,50%)';
  var tx = document.createElement('span'); tx.textContent = l[0];
  s.appendChild(sw); s.appendChild(tx); leg.appendChild(s);
});

function fmtDur(ns){
  if (ns >= 1e9) return (ns/1e9).toFixed(3) + ' s';
  if (ns >= 1e6) return (ns/1e6).toFixed(3) + ' ms';
  if (ns >= 1e3) return (ns/1e3).toFixed(1) + ' us';
  return Math.round(ns) + ' ns';
}
function nameHash(s){
  var h = 2166136261, b = new TextEncoder().encode(s);
  for (var i = 0; i < b.length; i++) { h ^= b[i]; h = Math.imul(h, 16777619) >>> 0; }
  return h;
}
var colourCache = {};
function sliceColour(hue, name){
  var k = hue + '|' + name, c = colourCache[k];
  if (c) return c;
  var h = nameHash(name);
  c = 'hsl(' + (hue + (h % 21) - 10) + ',' + (55 + (h >>> 8) % 25) + '%,' + (42 + (h >>> 16) % 18) + '%)';
  return colourCache[k] = c;
}

var rows = [], prevGroup = null;
D.tracks.forEach(function(t, i){
  var el = document.createElement('div');
  el.className = 'vp-row';
  el.setAttribute('data-track', t.uuid);
  el.setAttribute('data-kind', t.kind);
  el.setAttribute('data-side', t.guest ? 'guest' : 'host');
  if (t.guest) el.setAttribute('data-guest', t.guest_name);
  var group = (t.guest ? t.guest_name : '') + '|' + t.pid;
  if (prevGroup !== null && group !== prevGroup) el.className += ' vp-first';
  prevGroup = group;
  var lanes = 1;
  t.slices.forEach(function(s){ if (s[3] + 1 > lanes) lanes = s[3] + 1; });
  var isCounter = t.counter.length > 0 && t.slices.length === 0;
  var h = isCounter ? COUNTER_H : 6 + LANE * Math.min(lanes, MAX_LANES);
  var bg = 'hsl(' + t.hue + ',60%,' + (t.kind === 'process' ? 90 : 95) + '%)';
  el.style.background = bg;
  var lab = document.createElement('div');
  lab.className = 'vp-label'; lab.textContent = t.label; lab.title = t.label;
  lab.style.borderLeftColor = 'hsl(' + t.hue + ',65%,45%)';
  lab.style.height = h + 'px';
  var cv = document.createElement('canvas');
  cv.className = 'vp-canvas'; cv.style.height = h + 'px';
  el.appendChild(lab); el.appendChild(cv);
  rowsEl.appendChild(el);
  // slices by lane, sorted by start, for hover lookups
  var byLane = [];
  t.slices.forEach(function(s){
    var l = Math.min(s[3], MAX_LANES - 1);
    (byLane[l] = byLane[l] || []).push(s);
  });
  var lo = Infinity, hi = -Infinity;
  t.counter.forEach(function(p){ if (p[1] < lo) lo = p[1]; if (p[1] > hi) hi = p[1]; });
  rows.push({t: t, el: el, cv: cv, h: h, byLane: byLane, isCounter: isCounter, lo: lo, hi: hi});
});

function plotW(){ return rows.length ? rows[0].cv.clientWidth : axis.clientWidth; }
function tx(t, w){ return (t - view.t0) * w / (view.t1 - view.t0); }

function setupCanvas(cv, h){
  var dpr = window.devicePixelRatio || 1, w = cv.clientWidth;
  if (cv.width !== Math.round(w * dpr) || cv.height !== Math.round(h * dpr)) {
    cv.width = Math.round(w * dpr); cv.height = Math.round(h * dpr);
  }
  var g = cv.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  return g;
}

function niceStep(span, target){
  var raw = span / target, p = Math.pow(10, Math.floor(Math.log10(raw)));
  var ms = [1, 2, 5, 10];
  for (var i = 0; i < ms.length; i++) if (ms[i] * p >= raw) return ms[i] * p;
  return 10 * p;
}

function drawAxis(){
  var w = axis.clientWidth, g = setupCanvas(axis, 22);
  var spanMs = (view.t1 - view.t0) / 1e6, step = niceStep(spanMs, Math.max(2, w / 110));
  var first = Math.ceil(view.t0 / 1e6 / step) * step;
  var dec = step < 1 ? Math.min(9, -Math.floor(Math.log10(step))) : 0;
  g.fillStyle = '#333'; g.font = '10px sans-serif'; g.textAlign = 'center';
  for (var v = first; v <= view.t1 / 1e6 + 1e-12; v += step) {
    var x = tx(v * 1e6, w);
    g.fillRect(Math.round(x), 14, 1, 8);
    var label = v.toFixed(dec), lw = g.measureText(label).width;
    g.fillText(label, Math.max(lw / 2 + 1, Math.min(w - lw / 2 - 1, x)), 11);
  }
}

function drawRow(r){
  var w = r.cv.clientWidth, g = setupCanvas(r.cv, r.h), t = r.t;
  var spanMs = (view.t1 - view.t0) / 1e6, step = niceStep(spanMs, Math.max(2, w / 110));
  g.fillStyle = 'rgba(0,0,0,0.07)';
  for (var v = Math.ceil(view.t0 / 1e6 / step) * step; v <= view.t1 / 1e6; v += step)
    g.fillRect(Math.round(tx(v * 1e6, w)), 0, 1, r.h);
  if (r.isCounter) {
    var rng = (r.hi - r.lo) || 1, pts = t.counter, lastY = null;
    g.strokeStyle = 'hsl(' + t.hue + ',70%,35%)'; g.lineWidth = 1.2; g.beginPath();
    for (var i = 0; i < pts.length; i++) {
      var x = tx(pts[i][0], w), y = r.h - 3 - (pts[i][1] - r.lo) * (r.h - 8) / rng;
      if (lastY === null) g.moveTo(x, y); else { g.lineTo(x, lastY); g.lineTo(x, y); }
      lastY = y;
    }
    if (lastY !== null) g.lineTo(w, lastY);
    g.stroke();
    g.fillStyle = '#333'; g.font = '9px sans-serif'; g.textAlign = 'right';
    g.fillText(fmtNum(r.hi), w - 2, 10); g.fillText(fmtNum(r.lo), w - 2, r.h - 2);
    return;
  }
  g.font = '9px sans-serif'; g.textAlign = 'left'; g.textBaseline = 'alphabetic';
  r.byLane.forEach(function(list, lane){
    if (!list) return;
    var lastEnd = -1, y = 3 + lane * LANE;
    for (var i = 0; i < list.length; i++) {
      var s = list[i], x = tx(s[0], w), sw = s[1] * w / (view.t1 - view.t0);
      if (x > w || x + Math.max(sw, 1) < 0) continue;
      if (sw < 1 && lastEnd >= x) continue;
      var name = D.names[s[2]];
      g.fillStyle = sliceColour(t.hue, name);
      var ww = Math.max(sw, 1);
      g.fillRect(x, y, ww, LANE - 2);
      lastEnd = x + ww;
      if (sw >= 30) {
        var x0 = Math.max(x, 0) + 3, avail = Math.min(x + sw, w) - x0 - 3;
        if (avail > 8) {
          g.save(); g.beginPath(); g.rect(x0, y, avail, LANE - 2); g.clip();
          g.fillStyle = '#fff'; g.fillText(name, x0, y + LANE - 4); g.restore();
        }
      }
    }
  });
}
function fmtNum(v){ return (Math.abs(v) >= 1e4 || Number.isInteger(v)) ? String(Math.round(v * 1e4) / 1e4) : v.toPrecision(4); }

var pending = false;
function redraw(){
  pending = false;
  drawAxis();
  rows.forEach(drawRow);
}
function schedule(){ if (!pending) { pending = true; requestAnimationFrame(redraw); } }

function clampView(){
  var minSpan = 1000, span = Math.max(minSpan, view.t1 - view.t0);
  if (span > D.span * 1.0) span = D.span;
  if (view.t0 < 0) view.t0 = 0;
  if (view.t0 + span > D.span) view.t0 = D.span - span;
  view.t1 = view.t0 + span;
}
function zoomAt(frac, factor){
  var span = view.t1 - view.t0, at = view.t0 + frac * span, ns = span * factor;
  view.t0 = at - frac * ns; view.t1 = view.t0 + ns; clampView(); schedule(); hideTip();
}
function pan(frac){
  var span = view.t1 - view.t0; view.t0 += frac * span; view.t1 += frac * span; clampView(); schedule();
}
document.getElementById('vp-zoom-in').onclick = function(){ zoomAt(0.5, 0.5); };
document.getElementById('vp-zoom-out').onclick = function(){ zoomAt(0.5, 2); };
document.getElementById('vp-reset').onclick = function(){ view.t0 = 0; view.t1 = D.span; schedule(); };
document.getElementById('vp-left').onclick = function(){ pan(-0.25); };
document.getElementById('vp-right').onclick = function(){ pan(0.25); };

rowsEl.addEventListener('wheel', function(e){
  var cv = e.target.closest ? e.target.closest('.vp-canvas') : null;
  if (!cv) return;
  e.preventDefault();
  var rect = cv.getBoundingClientRect(), frac = (e.clientX - rect.left) / rect.width;
  if (e.shiftKey || Math.abs(e.deltaX) > Math.abs(e.deltaY)) pan((e.deltaX || e.deltaY) / 500);
  else zoomAt(frac, Math.pow(1.0015, e.deltaY));
}, {passive: false});

var drag = null;
rowsEl.addEventListener('mousedown', function(e){
  if (!e.target.classList.contains('vp-canvas')) return;
  drag = {x: e.clientX, t0: view.t0, t1: view.t1, w: e.target.clientWidth};
  e.preventDefault();
});
window.addEventListener('mouseup', function(){ drag = null; });
window.addEventListener('mousemove', function(e){
  if (!drag) return;
  var dt = (e.clientX - drag.x) * (drag.t1 - drag.t0) / drag.w;
  view.t0 = drag.t0 - dt; view.t1 = drag.t1 - dt; clampView(); schedule(); hideTip();
});
window.addEventListener('keydown', function(e){
  var k = e.key.toLowerCase();
  if (k === 'w') zoomAt(0.5, 0.8); else if (k === 's') zoomAt(0.5, 1.25);
  else if (k === 'a') pan(-0.1); else if (k === 'd') pan(0.1);
});
window.addEventListener('resize', schedule);

function hideTip(){ tip.hidden = true; tip.textContent = ''; }
function hitTest(r, x, y){
  var w = r.cv.clientWidth, span = view.t1 - view.t0;
  var t = view.t0 + x * span / w, tol = 2 * span / w;
  if (r.isCounter) {
    var pts = r.t.counter, best = null;
    for (var i = 0; i < pts.length && pts[i][0] <= t; i++) best = pts[i];
    return best ? {counter: best} : null;
  }
  var lane = Math.floor((y - 3) / LANE);
  var list = r.byLane[Math.max(0, Math.min(lane, MAX_LANES - 1))];
  if (!list || lane < 0) return null;
  var lo = 0, hi = list.length;            // first slice starting after t + tol
  while (lo < hi) { var m = (lo + hi) >> 1; if (list[m][0] <= t + tol) lo = m + 1; else hi = m; }
  var found = null;
  for (var j = lo - 1; j >= 0 && j >= lo - 4096; j--) {
    var s = list[j];
    if (s[0] + s[1] + tol >= t) { found = s; break; }
  }
  return found ? {slice: found} : null;
}
function showTip(r, hit, cx, cy){
  var lines;
  if (hit.slice) {
    var s = hit.slice;
    lines = [D.names[s[2]], 'track: ' + r.t.label + (r.t.guest ? '  (guest ' + r.t.guest_name + ')' : '  (host)'),
             'duration: ' + fmtDur(s[1]), 'start: ' + (s[0] / 1e6).toFixed(6) + ' ms'];
  } else {
    var p = hit.counter;
    lines = [r.t.name + ' = ' + fmtNum(p[1]), 'track: ' + r.t.label, 'at: ' + (p[0] / 1e6).toFixed(6) + ' ms'];
  }
  tip.textContent = lines.join('\n');
  tip.hidden = false;
  var x = cx + 14, y = cy + 14;
  if (x + tip.offsetWidth > window.innerWidth) x = cx - tip.offsetWidth - 8;
  if (y + tip.offsetHeight > window.innerHeight) y = cy - tip.offsetHeight - 8;
  tip.style.left = x + 'px'; tip.style.top = y + 'px';
}
rowsEl.addEventListener('mousemove', function(e){
  if (drag) return;
  var cv = e.target.closest ? e.target.closest('.vp-canvas') : null;
  var idx = -1;
  if (cv) for (var i = 0; i < rows.length; i++) if (rows[i].cv === cv) { idx = i; break; }
  if (idx < 0) { hideTip(); return; }
  var rect = cv.getBoundingClientRect();
  var hit = hitTest(rows[idx], e.clientX - rect.left, e.clientY - rect.top);
  if (hit) showTip(rows[idx], hit, e.clientX, e.clientY); else hideTip();
});
rowsEl.addEventListener('mouseleave', hideTip);

// For tools and tests: where a slice is on screen, and the current view.
window.vperfetto = {
  view: function(){ return {t0: view.t0, t1: view.t1}; },
  slicePoint: function(name){
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i], w = r.cv.clientWidth, rect = r.cv.getBoundingClientRect();
      for (var l = 0; l < r.byLane.length; l++) {
        var list = r.byLane[l] || [];
        for (var j = 0; j < list.length; j++) {
          var s = list[j];
          if (D.names[s[2]] !== name) continue;
          var x0 = Math.max(0, tx(s[0], w)), x1 = Math.min(w, tx(s[0] + s[1], w));
          if (x1 - x0 < 2) continue;
          return {x: rect.left + (x0 + x1) / 2, y: rect.top + 3 + l * LANE + (LANE - 2) / 2,
                  track: r.t.uuid};
        }
      }
    }
    return null;
  },
  ready: true
};
if (!rows.length) {
  var none = document.createElement('div');
  none.id = 'vp-empty'; none.textContent = 'no track events in this trace';
  rowsEl.appendChild(none);
}
redraw();
document.body.setAttribute('data-ready', '1');
})();
"""


def render_html(model: dict) -> str:
    """The timeline as one self-contained HTML page (str): inline style and
    script, no network. Each track is a ``<div class="vp-row"
    data-track=UUID>`` built by the script; hovering a slice shows its name,
    track and duration in ``#vp-tooltip``."""
    data = _html_data(model)
    title = _x(data["title"])
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} \u2014 vperfetto timeline</title>
<style>{_CSS}</style>
</head>
<body>
<div id="vp-head">
<div id="vp-top">
<div id="vp-title">{title}</div>
<div id="vp-info"></div>
<div id="vp-tools">
<button id="vp-zoom-in" title="zoom in (W)">+</button>
<button id="vp-zoom-out" title="zoom out (S)">&minus;</button>
<button id="vp-left" title="pan left (A)">&larr;</button>
<button id="vp-right" title="pan right (D)">&rarr;</button>
<button id="vp-reset" title="show everything">reset</button>
<span id="vp-help">wheel: zoom, drag: pan, hover: slice name</span>
<span id="vp-legend"></span>
</div>
</div>
<div id="vp-axis-row"><div id="vp-axis-label">ms since t = 0</div><canvas id="vp-axis"></canvas></div>
</div>
<div id="vp-rows"></div>
<div id="vp-tooltip" role="tooltip" hidden></div>
<script type="application/json" id="vp-data">{_script_json(data)}</script>
<script>{_JS}</script>
<noscript>This timeline needs JavaScript; the SVG version (--svg) does not.</noscript>
</body>
</html>
"""


# --- command line ----------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv: Optional[Sequence[str]] = None) -> int:
    prog = "python -m vperfetto.timeline"
    ap = _Parser(prog=prog, description=__doc__.split("\n\n")[0])
    ap.add_argument("trace")
    ap.add_argument("--svg", metavar="OUT.svg", help="write the timeline as SVG")
    ap.add_argument("--html", metavar="OUT.html", help="write a zoomable timeline as HTML")
    ap.add_argument("--max-slices", type=int, default=50000, metavar="N",
                    help="draw at most N slices (the longest); default 50000")
    a = ap.parse_args(argv)
    if not a.svg and not a.html:
        ap.error("nothing to do: give --svg OUT.svg and/or --html OUT.html")
    if a.max_slices < 1:
        ap.error("--max-slices must be at least 1")
    try:
        model = model_from_trace(a.trace, max_slices=a.max_slices)
        if a.svg:
            _write(a.svg, render_svg(model))
        if a.html:
            _write(a.html, render_html(model))
    except (OSError, ValueError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return 2
    n = len(model["tracks"])
    for out in (a.svg, a.html):
        if out:
            print(f"wrote {out} ({n} tracks, {model['slices_kept']} slices)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
