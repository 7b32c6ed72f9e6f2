"""The timeline model, from the C++ reader (vp_timeline in vperfetto.h): one
streaming pass over the trace, the same decoder as the merge and inspect."""

from __future__ import annotations

import gc
import json
import os
from typing import Any, Dict, List, Optional, Set, Tuple

from .. import errors
from .._native import ffi, lib, new_error


def read(path: Any, max_slices: int = 50000, max_counter_points: int = 20000,
         summary: bool = False, check: bool = False) -> Tuple[str, str, Optional[str]]:
    """(tracks JSON, rows JSON, summary JSON or None) of the trace at `path`."""
    p = os.fsencode(os.fspath(path))
    tracks, rows = ffi.new("char**"), ffi.new("char**")
    report = ffi.new("char**") if summary else ffi.NULL
    err = new_error()
    errors.check(lib.vp_timeline(p, lib.VP_INSPECT_CHECK if check else 0, max(1, int(max_slices)),
                                 max(1, int(max_counter_points)), tracks, rows, report, err), err)
    try:
        return (ffi.string(tracks[0]).decode("utf-8"), ffi.string(rows[0]).decode("utf-8"),
                ffi.string(report[0]).decode("utf-8", "replace") if summary else None)
    finally:
        lib.vp_string_free(tracks[0])
        lib.vp_string_free(rows[0])
        if summary:
            lib.vp_string_free(report[0])


def model(path: Any, tracks_json: str, rows_json: str) -> Dict[str, Any]:
    """The model dict (see vperfetto.timeline.model_from_trace) of read()'s JSON."""
    # Hundreds of thousands of small lists: the cyclic GC would walk them
    # again and again while they are made (a third of the time), and they are
    # completed in place rather than copied (benchmarks/timeline.py measures).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        head = json.loads(tracks_json)
        rows = json.loads(rows_json)
        start = head["start_ns"]
        names = head["names"]
        tracks: List[Dict[str, Any]] = head["tracks"]
        for t, (slices, points) in zip(tracks, rows):
            for s in slices:
                s[0] += start
                s[2] = names[s[2]]
            for p in points:
                p[0] += start
            t["slices"] = slices
            t["counter"] = points
    finally:
        if was_enabled:
            gc.enable()
    return {
        "path": os.fspath(path),
        "start_ns": start,
        "end_ns": head["end_ns"],
        "timeline": head["timeline"],
        "tracks": tracks,
        "slices_total": head["slices_total"],
        "slices_kept": head["slices_kept"],
        "packets": head["packets"],
        "truncated": head["truncated"],
    }


def model_from_trace(path: Any, max_slices: int = 50000,
                     max_counter_points: int = 20000) -> Dict[str, Any]:
    """Reads a trace (one streaming pass) into the timeline model.

    Returns ``{"start_ns", "end_ns", "timeline", "tracks": [{"uuid", "name",
    "process", "pid", "tid", "kind", "guest", "guest_name", "parent_uuid",
    "machine", "cpu", "slices": [[ts, dur, name, depth], ...], "counter":
    [[ts, value], ...]}, ...], "slices_total", "slices_kept", "packets",
    "truncated"}`` with timestamps in ns on the trace's clock (the BOOTTIME of
    the main timeline of a merge), as trace_processor converts them. ``kind``
    is "process", "thread", "custom", "counter" or "cpu" (a CPU's
    scheduling: a slice per thread that ran). Raises OSError when the file
    cannot be read and TraceFormatError (a ValueError) when it is not a
    Perfetto trace.
    """
    t, r, _ = read(path, max_slices, max_counter_points)
    return model(path, t, r)


def instant_args(path: Any, names: Optional[Set[str]] = None) -> List[Tuple[str, int, Dict[str, int]]]:
    """(name, ts, int annotations) of the trace's instant events that have int
    debug annotations (those named in `names`, when given), in the order the
    trace holds them, with ts in ns on the trace's clock as in
    model_from_trace (the C++ reader, VP_TIMELINE_INSTANT_ARGS)."""
    p = os.fsencode(os.fspath(path))
    tracks, rows = ffi.new("char**"), ffi.new("char**")
    err = new_error()
    errors.check(lib.vp_timeline(p, lib.VP_TIMELINE_INSTANT_ARGS, 1, 16, tracks, rows, ffi.NULL, err), err)
    try:
        head = json.loads(ffi.string(tracks[0]).decode("utf-8"))
    finally:
        lib.vp_string_free(tracks[0])
        lib.vp_string_free(rows[0])
    return [(str(n), int(ts), dict(a)) for ts, n, a in head.get("instant_args", [])
            if names is None or n in names]
