"""See what is in a trace before opening a browser.

    python -m vperfetto.inspect combined.pftrace             # summary
    python -m vperfetto.inspect combined.pftrace --json      # the same, machine-readable
    python -m vperfetto.inspect trace.pftrace --check        # validation; exit 1 with findings
    python -m vperfetto.inspect trace.pftrace --svg t.svg --html t.html   # a timeline picture

The summary is one streaming pass of the C++ decoder, so a 1 GB trace is
fine. --check adds one more pass and reports what trace_processor (the engine
of the Perfetto UI) will lose or misread, each finding named after the stat
trace_processor itself counts for it, with its severity there, and what
happens to the data (dropped, misread, none), with its packet index and byte
offset: packets skipped for want of incremental state, interned ids used
before their definition, annotations without a name, counter events on a
track not described as a counter before them, events on tracks never
described, timestamps before the trace clock's zero or on clocks no snapshot
relates to it (per machine), ftrace data before its machine's tracing-start
service event, slice ends without a begin, undecodable packets.

Exit status with --check: 1 when a finding is an error or data loss for
trace_processor, or loses or misreads data (trace_processor files a few
losses, such as track_event_parser_errors, as "info"); notices and harmless
info are printed and exit 0.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Dict, Optional, Sequence, Union

from . import errors
from ._cli import Parser as _Parser
from ._native import ffi, lib, new_error

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["inspect", "main"]

CLOCK_NAMES = {1: "REALTIME", 2: "REALTIME_COARSE", 3: "MONOTONIC", 4: "MONOTONIC_COARSE",
               5: "MONOTONIC_RAW", 6: "BOOTTIME", 9: "TSC"}


def inspect(path: PathLike, check: bool = False) -> Dict[str, Any]:
    """The summary of a trace (and, with check=True, its findings) as a dict."""
    p = os.fsencode(os.fspath(path))
    out = ffi.new("char**")
    err = new_error()
    errors.check(lib.vp_inspect(p, lib.VP_INSPECT_CHECK if check else 0, out, err), err)
    try:
        summary: Dict[str, Any] = json.loads(ffi.string(out[0]).decode("utf-8", "replace"))
        return summary
    finally:
        lib.vp_string_free(out[0])


def _span(a: int, b: int) -> str:
    return f"{(b - a) / 1e9:.3f} s" if a and b >= a else "-"


def format_summary(s: Dict[str, Any]) -> str:
    lines = []
    gz = ", gzip" if s["gzip"] else ""
    lines.append(f"{s['path']}: {s['packets']:,} packets, {s['bytes']:,} bytes{gz}, "
                 f"{_span(s['first_ts'], s['last_ts'])} "
                 f"(host time {s['first_ts']} .. {s['last_ts']})")
    if s["truncated_at"] >= 0:
        lines.append(f"  the last packet is truncated at byte {s['truncated_at']}")
    kinds = sorted(s["packet_kinds"].items(), key=lambda kv: -kv[1])
    lines.append("packets: " + ", ".join(f"{k} {v:,}" for k, v in kinds))
    te = s["track_events"]
    lines.append(f"track events: {te['slice_begin']:,} begin, {te['slice_end']:,} end, "
                 f"{te['instant']:,} instant, {te['counter']:,} counter")
    machines = s["machines"]
    lines.append(f"sequences: {len(s['sequences'])}; machines: " +
                 ", ".join(f"{m} ({n:,} packets)" for m, n in machines.items()))
    lines.append(f"processes: {len(s['processes'])}")
    for p in s["processes"]:
        who = f"guest {p['guest']}" if p["guest"] else "host"
        threads = ", ".join(f"{t['tid']} {t['name']}".strip() for t in p["threads"][:6])
        more = f" +{len(p['threads']) - 6}" if len(p["threads"]) > 6 else ""
        lines.append(f"  {who:14} pid {p['pid']:>8} {p['name'] or '?':28} "
                     f"{_span(p['first_ts'], p['last_ts']):>10}  threads: {threads}{more}")
    t = s["tracks"]
    lines.append(f"tracks: {t['total']} ({t['process']} process, {t['thread']} thread, "
                 f"{t['counter']} counter, {t['other']} other)")
    if s["counter_tracks"]:
        lines.append("counter tracks: " + ", ".join(sorted(s["counter_tracks"])[:20]))
    for a in s.get("merge_alignments", []):
        approx = " (approximate)" if a.get("approximate") else ""
        lines.append(f"merge alignment: {a.get('guest', '?')} offset {a.get('offset_ns')} ns "
                     f"by {a.get('method', '?')}{approx}")
    cs = s["clock_snapshots"]
    lines.append(f"clock snapshots: {cs['count']} ("
                 + ", ".join(CLOCK_NAMES.get(c, str(c)) for c in cs["clocks"]) + ")"
                 + (f"; {cs['sequence_count']:,} defining sequence clocks "
                    f"({', '.join(map(str, cs['sequence_clocks']))}: incremental timestamps)"
                    if cs.get("sequence_count") else ""))
    d = s["drops"]
    if any(d.values()):
        lines.append(f"drops: {d['packet_loss']:,} packets lost, {d['chunks_discarded']:,} chunks "
                     f"discarded, {d['chunks_overwritten']:,} overwritten, "
                     f"{d['previous_packet_dropped']:,} packets flagged previous_packet_dropped")
    else:
        lines.append("drops: none reported")
    return "\n".join(lines)


def format_findings(s: Dict[str, Any]) -> str:
    if not s["findings"]:
        return "check: nothing trace_processor would lose or misread"
    stats = s["stats"]
    verdict = "FAILS" if s["fails"] else "passes (notices and info only)"
    lines = [f"check {verdict}: " + ", ".join(
        f"{k} x{v['count']} ({v['severity']}, {v['effect']})" for k, v in stats.items())]
    for f in s["findings"]:
        lines.append(f"  packet {f['packet']} (byte {f['offset']}): {f['stat']} "
                     f"[{f['severity']}, {f['effect']}]: {f['message']}")
    return "\n".join(lines)




def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = _Parser(prog="python -m vperfetto.inspect", description=__doc__.split("\n\n")[0])
    ap.add_argument("trace")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    ap.add_argument("--check", action="store_true",
                    help="what trace_processor will lose or misread; exit 1 when it does")
    ap.add_argument("--svg", metavar="OUT.svg", help="draw a timeline as SVG")
    ap.add_argument("--html", metavar="OUT.html", help="draw a zoomable timeline as HTML")
    a = ap.parse_args(argv)
    try:
        if a.svg or a.html:
            # The summary and the timeline from one pass of the reader.
            from .timeline import cli, html, model, svg

            tracks, rows, report = model.read(a.trace, summary=True, check=a.check)
            s = json.loads(report or "{}")
            if a.svg:
                cli.write(a.svg, svg.render_svg(model.model(a.trace, tracks, rows)))
            if a.html:
                cli.write(a.html, html.render_html_from_json(os.fspath(a.trace), tracks, rows))
        else:
            s = inspect(a.trace, check=a.check)
    except (errors.VperfettoError, OSError, ValueError) as e:
        print(f"python -m vperfetto.inspect: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps(s, indent=2))
    else:
        print(format_summary(s))
        if a.check:
            print(format_findings(s))
    return 1 if a.check and s["fails"] else 0


if __name__ == "__main__":
    sys.exit(main())
