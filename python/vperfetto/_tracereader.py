"""A small pure-Python reader of track events, for the demo's self-check.

It resolves per-sequence interned names the way the trace processor does.
(Large traces belong to the C++ decoder; this reads the demo's few MB.)
"""

from __future__ import annotations

from typing import Iterator, Set, Tuple


def _fields(b: bytes):
    """(field id, value) of one message (the decoder of vperfetto.timeline)."""
    from .timeline import _fields as fields3

    for fid, _wire_type, v in fields3(b):
        yield fid, v


def track_event_instants(path: str, names: Set[str]) -> Iterator[Tuple[str, int, dict]]:
    """Yields (name, timestamp, int annotations) of instant events named in `names`."""
    with open(path, "rb") as f:
        data = f.read()
    interned: dict = {}
    for fid, packet in _fields(data):
        if fid != 1:
            continue
        ts = seq = 0
        te = idata = None
        cleared = False
        for pid, v in _fields(packet):
            if pid == 8:
                ts = v
            elif pid == 10:
                seq = v
            elif pid == 11:
                te = v
            elif pid == 12:
                idata = v
            elif pid == 13 and v & 1:
                cleared = True
        state = interned.setdefault(seq, ({}, {}))
        if cleared:
            state[0].clear()
            state[1].clear()
        if idata is not None:
            for kind, entry in _fields(idata):
                if kind in (2, 3):  # event_names, debug_annotation_names
                    d = dict(_fields(entry))
                    state[0 if kind == 2 else 1][d.get(1)] = d.get(2, b"").decode("utf-8", "replace")
        if te is None:
            continue
        name, etype, args = None, 0, {}
        for tid, v in _fields(te):
            if tid == 9:
                etype = v
            elif tid == 10:
                name = state[0].get(v)
            elif tid == 23:
                name = v.decode("utf-8", "replace")
            elif tid == 4:
                key = val = None
                for aid, av in _fields(v):
                    if aid == 1:
                        key = state[1].get(av)
                    elif aid == 10:
                        key = av.decode("utf-8", "replace")
                    elif aid in (3, 4):
                        val = av if aid == 3 else (av - (1 << 64) if av >= 1 << 63 else av)
                if key is not None:
                    args[key] = val
        if etype == 3 and name in names:
            yield name, ts, args
