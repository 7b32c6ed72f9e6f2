"""Offline merge of guest and host traces onto one clock.

    python -m vperfetto.merge guest.trace host.trace combined.trace [guestClockBootTimeNs]
           [--guest-tsc-offset N] [--merge-guest-into-host] [--add-traces] [--time-diff NS] [-q]
    python -m vperfetto.merge --host host.trace --guest vm1=a.trace --guest vm2=b.trace -o combined.trace
    python -m vperfetto.merge --jobs jobs.jsonl [-j N]

The positional form means what it meant for the original C++ vperfetto_merge:
the guest is the main timeline and the host is moved into guest time, unless
``--merge-guest-into-host``; ``--add-traces`` puts both in one file unchanged.
The second form merges any number of guests into the host's timeline. The
third runs many merges at once: one JSON object of merge()'s keyword
arguments per line of jobs.jsonl (``{"host": ..., "guests": {...}, "output":
...}``), one JSON result line per job on stdout as each ends, exit status 1
when any failed (see merge_many()).

The work is done by the C++ rewriter in libvperfetto (two streaming passes,
output written atomically); this module only drives it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional, Sequence, Tuple, Union

from . import errors
from ._cli import Parser as _Parser
from ._fleet import JobResult, merge_many  # noqa: F401 -- the fleet's API lives here too
from ._native import ffi, lib, new_error

__all__ = ["merge", "MergeReport", "Alignment", "main"]

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
    inputs: list = field(default_factory=list)       # one dict per input, main first
    alignments: list = field(default_factory=list)   # one Alignment per guest
    warnings: list = field(default_factory=list)
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


def _path(p, what: str) -> bytes:
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


def _int64(v, what: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not -(1 << 63) <= v < (1 << 63):
        raise ValueError(f"{what} must be a 64-bit int")
    return v


# --- command line -------------------------------------------------------------



def _parse_guest(spec: str) -> Tuple[str, str]:
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--guest wants NAME=PATH, not {spec!r}")
    return name, path


def _build_parser(prog: str) -> argparse.ArgumentParser:
    ap = _Parser(prog=prog, description=__doc__.split("\n\n")[0],
                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("traces", nargs="*", metavar="ARG",
                    help="guest.trace host.trace combined.trace [guestClockBootTimeNs]")
    ap.add_argument("--host", help="host trace (with --guest and -o)")
    ap.add_argument("--guest", action="append", type=_parse_guest, metavar="NAME=PATH",
                    help="a guest trace; repeat for several guests")
    ap.add_argument("-o", "--output", help="combined trace (with --host/--guest)")
    ap.add_argument("--merge-guest-into-host", action="store_true",
                    help="the host is the main timeline; the guest moves")
    ap.add_argument("--add-traces", action="store_true",
                    help="put both traces in one file unchanged")
    ap.add_argument("--time-diff", type=int, metavar="NS",
                    help="guest BOOTTIME minus host BOOTTIME, in ns")
    ap.add_argument("--guest-tsc-offset", type=int, default=0, metavar="N",
                    help="guest TSC minus host TSC (for clock-sync markers)")
    ap.add_argument("--machine-id", action="store_true",
                    help="tag each guest's packets with TracePacket.machine_id instead of "
                         "offsetting its pids, sequences and cpus")
    ap.add_argument("--link-flows", action="store_true",
                    help="keep flow ids both traces use, so they link events across the VM "
                         "boundary (by default they are kept apart)")
    ap.add_argument("--threads", type=int, default=0, metavar="N",
                    help="rewrite on N threads (default 0: as many as pay, up to 4; "
                         "the output is the same whatever N)")
    ap.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors and warnings")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--jobs", metavar="JOBS.jsonl",
                    help="run many merges: one JSON object of merge() keyword arguments per "
                         "line; one JSON result line per job on stdout; exit 1 if any failed")
    ap.add_argument("-j", "--workers", type=int, default=0, metavar="N",
                    help="with --jobs: merges at once (default: the CPUs)")
    ap.add_argument("--archive", metavar="OUT.tar",
                    help="also (or only) write the inputs and a perfetto_manifest to a TAR "
                         "that trace_processor v58+ merges itself (see vperfetto.archive)")
    return ap


def main(argv: Optional[Sequence[str]] = None, prog: str = "python -m vperfetto.merge") -> int:
    ap = _build_parser(prog)
    a = ap.parse_args(argv)
    if a.jobs is not None:
        if a.traces or a.host or a.guest or a.output or a.archive is not None:
            ap.error("--jobs takes the merges from its file: no traces or -o beside it")
        if a.workers < 0:
            ap.error("-j must be at least 1 (0: the CPUs)")
        from ._fleet import run_jobs_cli
        return run_jobs_cli(a.jobs, a.workers, a.quiet)
    if a.archive is not None:
        from .archive import cli as _archive_cli
        return _archive_cli(ap, a, prog)
    kwargs = dict(time_diff_ns=a.time_diff, guest_tsc_offset=a.guest_tsc_offset,
                  machine_ids=a.machine_id, link_flows=a.link_flows, threads=a.threads,
                  progress=not a.quiet and sys.stderr.isatty())
    if a.merge_guest_into_host and a.add_traces:
        ap.error("--merge-guest-into-host and --add-traces exclude each other")
    mode = "add-traces" if a.add_traces else ("guest-into-host" if a.merge_guest_into_host else None)
    if a.host or a.guest or a.output:
        if a.traces or not (a.host and a.guest and a.output):
            ap.error("the named form is --host HOST --guest NAME=PATH [--guest ...] -o OUT")
        names = [n for n, _ in a.guest]
        if len(set(names)) != len(names):
            ap.error("guest names must be distinct")
        if mode == "add-traces" and len(a.guest) > 1:
            ap.error("--add-traces takes one guest")
        call = dict(host=a.host, guests=a.guest, output=a.output, mode=mode, **kwargs)
    else:
        if len(a.traces) not in (3, 4):
            ap.error("expected guest.trace host.trace combined.trace [guestClockBootTimeNs]")
        boot = None
        if len(a.traces) == 4:
            try:
                boot = int(a.traces[3])
            except ValueError:
                ap.error(f"guestClockBootTimeNs must be an integer, not {a.traces[3]!r}")
            if not 0 <= boot < 1 << 64:
                ap.error("guestClockBootTimeNs must be in [0, 2**64)")
        call = dict(guest=a.traces[0], host=a.traces[1], output=a.traces[2], mode=mode,
                    guest_boot_time_ns=boot, **kwargs)
    try:
        report = merge(**call)
    except (errors.VperfettoError, OSError, ValueError, TypeError) as e:
        msg = str(e).replace("\n", " ")
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return 2
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    try:
        if a.json:
            print(json.dumps(_report_dict(report), indent=2))
        elif not a.quiet:
            _print_report(report)
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. piped into head: the merge is done, the rest is unread
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _report_dict(r: MergeReport) -> dict:
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


if __name__ == "__main__":
    sys.exit(main())
