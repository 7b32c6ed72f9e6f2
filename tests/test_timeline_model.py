"""The timeline model of the C++ reader against the pure-Python decoder it
replaces, on every trace in ../shared/testdata: the same tracks, slices and
counter points (system traces get more rows: per-CPU scheduling, CPU
frequency, atrace, process memory, which the Python decoder never read)."""

from __future__ import annotations

import pytest

from vperfetto import _timeline_native, timeline
from conftest import SHARED

TRACES = sorted(p for d in ("sdk-v7", "real") for p in (SHARED / d).glob("*")
                if p.suffix != ".md") if SHARED.is_dir() else []
SYSTEM = 1 << 62   # uuids of rows made from system data are -(2**62 + n)


@pytest.mark.skipif(not TRACES, reason="../shared/testdata is not beside the project")
@pytest.mark.parametrize("path", TRACES, ids=lambda p: p.name)
def test_new_model_equals_the_old_one(path):
    old = timeline.model_from_trace(path)
    new = _timeline_native.model_from_trace(path)
    system = [t for t in new["tracks"] if t["uuid"] <= -SYSTEM]
    tracks = [{k: v for k, v in t.items() if k != "cpu"} for t in new["tracks"]
              if t["uuid"] > -SYSTEM]
    assert tracks == old["tracks"]
    keys = ["path", "timeline", "packets", "truncated"]
    if not system:
        keys += ["start_ns", "end_ns", "slices_total", "slices_kept"]
    else:
        assert old["start_ns"] == 0 or new["start_ns"] <= old["start_ns"]
    assert {k: new[k] for k in keys} == {k: old[k] for k in keys}
