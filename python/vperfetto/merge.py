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
from typing import Optional, Sequence, Tuple

from . import errors
from ._cli import Parser as _Parser
from ._fleet import JobResult, merge_many  # the fleet's API lives here too
from ._merge_api import Alignment, MergeReport, _print_report, _report_dict, merge

__all__ = ["merge", "merge_many", "JobResult", "MergeReport", "Alignment", "main"]


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


if __name__ == "__main__":
    sys.exit(main())
