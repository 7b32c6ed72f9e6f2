"""A compact timeline picture of a trace: do guest and host line up?

    python -m vperfetto.timeline combined.pftrace --svg t.svg --html t.html

One row per process, thread, custom and counter track, grouped by process,
and from system traces one per CPU (the threads it ran), its frequency,
atrace slices and counters and process memory; host and guest rows in
different colours; slices as bars stacked by depth, counters as lines; a
time axis in milliseconds since the first event, with the absolute time of
that instant on the trace's clock. The SVG is a static picture; the HTML
page is self-contained (inline script and style, no network) and zooms
(wheel, drag, W/S/A/D, buttons) and shows slice names on hover.

``model_from_trace(path)`` reads the trace with the C++ decoder of the merge
and inspect, in one streaming pass: interning per sequence, track
descriptors, sequence defaults, clocks as trace_processor resolves them
(per machine and per sequence, incremental, with units), gzip files and
``compressed_packets``. At most ``max_slices`` slices are kept (the
longest, ties sampled evenly), so a big trace still renders.
``render_svg(model)`` and ``render_html(model)`` return the documents as str.
"""

from __future__ import annotations

from .cli import main
from .html import render_html
from .model import model_from_trace
from .svg import render_svg

__all__ = ["model_from_trace", "render_svg", "render_html", "main"]
