"""Events with arguments across many incremental-state resets, on several
threads, in every buffer mode: every annotation keeps its name and value.

A nameless annotation is counted by trace_processor as a
track_event_parser_error and the whole event is dropped, so a reset that
loses one loses the slice in the viewer.
"""

from __future__ import annotations

import collections
import threading

import pytest

import vperfetto
from vperfetto.inspect import inspect
from conftest import (SEQ_CLEARED, TYPE_BEGIN, TYPE_COUNTER, TYPE_END, TYPE_INSTANT, load_trace,
                      resolve, slices_by_track)

THREADS = 4
ITERATIONS = 3000


def expected_args(k: int, i: int) -> dict:
    """Every annotation type the Python API writes, values that change per
    event (so a stale or freed array shows as a wrong value, not only a
    missing one)."""
    return {
        "i": i,                       # int
        "neg": -i - 1,                # negative int
        "big": 2**63 + i,             # uint beyond int64
        "ratio": i / 7,               # double
        "odd": bool(i & 1),           # bool
        "who": f"t{k}",               # string
        "text": f"{k}:{i}:" + "x" * (i % 40),  # strings of many lengths
        "obj": (k, i),                # a tuple: an array of ints
    }


def _written(args: dict) -> dict:
    out = dict(args)
    out["obj"] = list(args["obj"])
    return out


def _workload(k: int, flows: dict) -> None:
    for i in range(ITERATIONS):
        flow = vperfetto.new_flow_id()
        flows[(k, i)] = flow
        with vperfetto.slice("outer", category="gfx", args=expected_args(k, i), flow=flow):
            vperfetto.begin("inner", args={"i": i})
            vperfetto.end(args={"done": True}, terminating_flow=flow)
            if i % 100 == 0:
                vperfetto.counter("progress", i)
                vperfetto.instant("mark", category="gfx", args={"k": k, "i": i})
        # a name never seen before on this sequence, often right after a reset
        if i % 250 == 0:
            vperfetto.instant(f"rare_{k}_{i}", args={"r": i})


@pytest.mark.parametrize("mode,buffer_kb", [("ring", 65536), ("ring", 512), ("discard", 65536),
                                            ("discard", 512), ("stream", 1024)])
def test_every_annotation_survives_resets(tmp_path, mode, buffer_kb):
    path = tmp_path / f"{mode}.pftrace"
    flows: dict = {}
    with vperfetto.Session(path, buffer_kb=buffer_kb, mode=mode) as s:
        threads = [threading.Thread(target=_workload, args=(k, flows)) for k in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    trace = load_trace(path)
    events = resolve(trace)  # asserts every interned id is defined after its reset

    # Enough resets per writer sequence to matter (ring and discard reset on
    # every chunk), and events written right after them.
    resets = collections.Counter(p.trusted_packet_sequence_id for p in trace.packet
                                 if p.sequence_flags & SEQ_CLEARED)
    writer_seqs = {e.seq for e in events}
    # (a small ring may have overwritten every chunk of a thread that finished early)
    assert len(writer_seqs) == THREADS if buffer_kb >= 1024 else 1 <= len(writer_seqs) <= THREADS
    if mode != "stream" and buffer_kb >= 1024:
        assert min(resets[q] for q in writer_seqs) >= 3, resets

    # No annotation without a name, anywhere.
    for p in trace.packet:
        for a in p.track_event.debug_annotations:
            assert a.HasField("name_iid") or a.name, f"nameless annotation: {p}"

    outers = [e for e in events if e.type == TYPE_BEGIN and e.name == "outer"]
    kept = len(outers)
    lost = s.dropped
    if buffer_kb >= 1024:
        assert kept == THREADS * ITERATIONS and lost == 0
    else:
        assert 0 < kept < THREADS * ITERATIONS and lost > 0
    seen = set()
    for e in outers:
        k = int(e.args["who"][1:])
        i = e.args["i"]
        assert e.args == _written(expected_args(k, i)), (e.index, e.args)
        assert e.categories == ["gfx"]
        assert e.flows == [flows[(k, i)]]
        seen.add((k, i))
    assert len(seen) == kept

    inners = [e for e in events if e.type == TYPE_BEGIN and e.name == "inner"]
    ends = [e for e in events if e.type == TYPE_END and e.args]
    assert all(set(e.args) == {"i"} for e in inners)
    assert all(e.args == {"done": True} for e in ends)
    if buffer_kb >= 1024:
        assert len(inners) == len(ends) == THREADS * ITERATIONS
        marks = [e for e in events if e.type == TYPE_INSTANT and e.name == "mark"]
        assert len(marks) == THREADS * ITERATIONS // 100
        rare = [e for e in events if e.type == TYPE_INSTANT and e.name.startswith("rare_")]
        assert sorted((e.name, e.args["r"]) for e in rare) == sorted(
            (f"rare_{k}_{i}", i) for k in range(THREADS) for i in range(0, ITERATIONS, 250))
        counters = [e for e in events if e.type == TYPE_COUNTER]
        assert len(counters) == THREADS * ITERATIONS // 100
        # slices nest and balance per thread track
        by_track = slices_by_track(events)
        assert sum(len(v) for v in by_track.values()) == 2 * THREADS * ITERATIONS

    # and the viewer loses nothing of what is there (ring and discard lose
    # only what the buffer did, which the trace stats say)
    check = inspect(path, check=True)
    assert not check["fails"], check["stats"]
    assert set(check["stats"]) <= {"vperfetto_slice_end_without_begin"}
