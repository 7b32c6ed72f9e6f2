"""The command line: python -m vperfetto.timeline TRACE --svg OUT.svg --html OUT.html"""

from __future__ import annotations

import json
import os
import sys
from typing import Optional, Sequence

from .._cli import Parser
from . import html, model, svg

PROG = "python -m vperfetto.timeline"


def write(path: str, text: str) -> None:
    """Writes `text` to `path` atomically (a temporary file, then a rename)."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = Parser(prog=PROG, description="Draws a trace's timeline: guest and host rows in two "
                                       "colours, as SVG and/or as a zoomable HTML page.")
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
        tracks, rows, _ = model.read(a.trace, max_slices=a.max_slices)
        if a.svg:
            write(a.svg, svg.render_svg(model.model(a.trace, tracks, rows)))
        if a.html:
            write(a.html, html.render_html_from_json(os.fspath(a.trace), tracks, rows))
    except (OSError, ValueError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return 2
    head = json.loads(tracks)
    for out in (a.svg, a.html):
        if out:
            print(f"wrote {out} ({len(head['tracks'])} tracks, {head['slices_kept']} slices)")
    return 0
