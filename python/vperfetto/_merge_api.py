"""The offline merge through the C ABI: ``merge()`` and its report
(``vperfetto.merge`` is its command line and public face; ``archive`` uses
this module too, so neither imports the other's command line)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from . import errors
from ._native import ffi, lib, new_error

__all__ = ["merge", "MergeReport", "Alignment"]

_MODES = {
    "host-into-guest": lib.VP_MERGE_HOST_INTO_GUEST,
    "guest-into-host": lib.VP_MERGE_GUEST_INTO_HOST,
    "add-traces": lib.VP_MERGE_ADD_TRACES,
}

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class Alignment:
    guest: str
    method: str          # time-diff, guest-boot-time, tsc-markers, tsc-snapshots, realtime-snapshots, start-of-trace
    offset_ns: int       # guest BOOTTIME - host BOOTTIME
    approximate: bool
    spread_ns: int       # disagreement between samples (-1: one sample or given)
    samples: int
    detail: str
    applied: bool
    sync_points: int = 0  # link syncs interpolated between (drift correction)


@dataclass(frozen=True)
class MergeReport:
    output: str
    mode: str
    bytes_written: int
    packets_written: int
    inputs: List[Dict[str, Any]] = field(default_factory=list)   # one dict per input, main first
    alignments: List[Alignment] = field(default_factory=list)    # one Alignment per guest
    warnings: List[str] = field(default_factory=list)
    # The mode asked for, and why the other side became the main timeline
    # when the asked-for one would have put events before its clock's zero.
    requested_mode: str = ""
    main_switched: str = ""

    @property
    def offset_ns(self) -> int:
        """The first guest's offset (guest BOOTTIME - host BOOTTIME)."""
        return self.alignments[0].offset_ns

    @property
    def method(self) -> str:
        return self.alignments[0].method

    @classmethod
    def from_json(cls, text: str) -> "MergeReport":
        d = json.loads(text)
        return cls(output=d["output"], mode=d["mode"], bytes_written=d["bytes_written"],
                   packets_written=d["packets_written"], inputs=d["inputs"],
                   alignments=[Alignment(**a) for a in d["alignments"]],
                   warnings=d["warnings"], requested_mode=d["requested_mode"],
                   main_switched=d["main_switched"])


def _path(p: object, what: str) -> bytes:
    if not isinstance(p, (str, os.PathLike)):
        raise TypeError(f"{what} must be a path, not {type(p).__name__}")
    s = os.fspath(p)
    if not isinstance(s, str) or not s:
        raise ValueError(f"{what} must be a non-empty path")
    return os.fsencode(s)


def merge(guest: Optional[PathLike] = None, host: Optional[PathLike] = None,
          output: Optional[PathLike] = None, *,
          guests: Union[Mapping[str, PathLike], Iterable[Tuple[str, PathLike]], None] = None,
          mode: Optional[str] = None, guest_boot_time_ns: Optional[int] = None,
          time_diff_ns: Optional[int] = None, guest_tsc_offset: int = 0,
          machine_ids: bool = False, link_flows: bool = False, dry_run: bool = False,
          progress: bool = False, threads: int = 0) -> MergeReport:
    """Merges traces and returns a report of what was done.

    ``merge(guest, host, output)`` is the original tool's form (``mode``
    ``"host-into-guest"`` by default, or ``"guest-into-host"``, ``"add-traces"``);
    ``merge(host=..., guests={"vm1": a, "vm2": b}, output=...)`` merges several
    guests into the host's timeline. ``time_diff_ns`` (guest minus host) and
    ``guest_boot_time_ns`` (the guest's BOOTTIME when host tracing started)
    override the alignment found in the traces. ``dry_run=True`` only scans
    and aligns (no output is written; ``output`` may be None).
    ``link_flows=True`` keeps flow ids that both sides use (ids passed across
    the VM boundary link their events); by default they are kept apart.
    ``threads`` rewrites on that many threads (0: as many as pay, up to 4;
    the output is the same bytes whatever the number).
    """
    if host is None or (output is None and not dry_run):
        raise TypeError("merge() needs host and output")
    named = []
    if guests is not None:
        if guest is not None:
            raise TypeError("give either guest or guests, not both")
        items = guests.items() if isinstance(guests, Mapping) else guests
        for name, path in items:
            if not isinstance(name, str) or not name:
                raise TypeError("guest names must be non-empty str")
            named.append((name, path))
        if not named:
            raise ValueError("guests is empty")
        mode = mode or "guest-into-host"
    else:
        if guest is None:
            raise TypeError("merge() needs a guest trace")
        named.append(("guest", guest))
        mode = mode or "host-into-guest"
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {sorted(_MODES)}, not {mode!r}")

    opts = ffi.gc(lib.vp_merge_options_new(), lib.vp_merge_options_free)
    err = new_error()
    errors.check(lib.vp_merge_set_host(opts, _path(host, "host"), err), err)
    for name, path in named:
        errors.check(lib.vp_merge_add_guest(opts, name.encode("utf-8"), _path(path, "guest"), err), err)
    if output is not None:
        errors.check(lib.vp_merge_set_output(opts, _path(output, "output"), err), err)
    lib.vp_merge_set_dry_run(opts, 1 if dry_run else 0)
    lib.vp_merge_set_progress(opts, 1 if progress else 0)
    errors.check(lib.vp_merge_set_mode(opts, _MODES[mode], err), err)
    if time_diff_ns is not None:
        lib.vp_merge_set_time_diff(opts, _int64(time_diff_ns, "time_diff_ns"))
    if guest_boot_time_ns is not None:
        if (not isinstance(guest_boot_time_ns, int) or isinstance(guest_boot_time_ns, bool) or
                not 0 <= guest_boot_time_ns < 1 << 64):
            raise ValueError("guest_boot_time_ns must be an int in [0, 2**64)")
        lib.vp_merge_set_guest_boot_time(opts, guest_boot_time_ns)
    lib.vp_merge_set_guest_tsc_offset(opts, _int64(guest_tsc_offset, "guest_tsc_offset"))
    lib.vp_merge_set_machine_ids(opts, 1 if machine_ids else 0)
    lib.vp_merge_set_link_flows(opts, 1 if link_flows else 0)
    if not isinstance(threads, int) or isinstance(threads, bool) or not 0 <= threads <= 256:
        raise ValueError("threads must be an int in [0, 256] (0: automatic)")
    lib.vp_merge_set_threads(opts, threads)
    out = ffi.new("char**")
    errors.check(lib.vp_merge_run(opts, out, err), err)
    try:
        text = ffi.string(out[0]).decode("utf-8", "replace")
    finally:
        lib.vp_string_free(out[0])
    return MergeReport.from_json(text)


def _int64(v: object, what: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not -(1 << 63) <= v < (1 << 63):
        raise ValueError(f"{what} must be a 64-bit int")
    return v


def _report_dict(r: MergeReport) -> Dict[str, Any]:
    return {"output": r.output, "mode": r.mode, "requested_mode": r.requested_mode,
            "main_switched": r.main_switched, "bytes_written": r.bytes_written,
            "packets_written": r.packets_written, "inputs": r.inputs,
            "alignments": [a.__dict__ for a in r.alignments], "warnings": r.warnings}


def _print_report(r: MergeReport) -> None:
    for a in r.alignments:
        approx = " (approximate)" if a.approximate else ""
        spread = f", samples agree within {a.spread_ns} ns" if a.spread_ns >= 0 and a.samples > 1 else ""
        used = "" if a.applied else " (not applied: --add-traces)"
        print(f"{a.guest}: offset {a.offset_ns} ns by {a.method}{approx}{spread}{used}")
    for i in r.inputs:
        moved = f", shifted {i['shift_ns']:+d} ns" if i["shift_ns"] else ""
        ids = ""
        if i["pid_offset"] or i["seq_offset"]:
            ids = f", pids +{i['pid_offset']}, sequences +{i['seq_offset']}"
        if i["machine_id"]:
            ids = f", machine {i['machine_id']}"
        print(f"  {i['role']:5} {i['kind']:5} {i['name']}: {i['packets_written']}/{i['packets_read']} packets"
              f"{moved}{ids}")
    print(f"wrote {r.output} ({r.packets_written} packets, {r.bytes_written} bytes)")
