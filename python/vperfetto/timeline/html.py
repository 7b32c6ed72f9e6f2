"""The timeline as one self-contained HTML page: the viewer (viewer.js,
viewer.css, beside this file) inlined, the data as two JSON scripts, no
network. Zooms (wheel, drag, W/S/A/D, buttons), names slices on hover."""

from __future__ import annotations

import functools
import importlib.resources
import json
import math
from typing import Any, Dict, List, Sequence

from . import _layout as L

__all__ = ["render_html", "render_html_from_json"]


@functools.lru_cache(maxsize=None)
def _asset(name: str) -> str:
    return importlib.resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _script_json(obj: Any) -> str:
    s = json.dumps(obj, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _page(model: L.Model, names: Sequence[str], rows_json: str) -> str:
    """The page for `model`'s tracks (their slices and counters in
    `rows_json`, slice names as indices into `names`)."""
    start = model["start_ns"]
    hues = L.side_hues(model)
    tracks = []
    for t in model["tracks"]:
        g = t["guest_name"] if t["guest"] else None
        tracks.append({
            "uuid": str(t["uuid"]),
            "label": L.clean(L.row_label(t)),
            "name": L.clean(t["name"]),
            "kind": t["kind"],
            "guest": bool(t["guest"]),
            "guest_name": L.clean(g) if t["guest"] else None,
            "side": L.clean(L.side_label(g)),
            "hue": hues.get(g, L.HOST_HUE),
            "pid": t["pid"],
        })
    data = {
        "title": L.title(model),
        "span": max(1, model["end_ns"] - start),
        "start": L.fmt_boottime(start),
        "clock": L.clock_label(model),
        "slices_total": model.get("slices_total", 0),
        "slices_kept": model.get("slices_kept", 0),
        "names": [L.clean(n) for n in names],
        "legend": [[L.clean(text), hue, side] for text, hue, side in L.legend(model, hues)],
        "tracks": tracks,
    }
    title = L.esc(data["title"])
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} \u2014 vperfetto timeline</title>
<style>
{_asset("viewer.css")}</style>
</head>
<body>
<div id="vp-head">
<div id="vp-top">
<div id="vp-title">{title}</div>
<div id="vp-info"></div>
<div id="vp-tools">
<button id="vp-zoom-in" title="zoom in (W)">+</button>
<button id="vp-zoom-out" title="zoom out (S)">&minus;</button>
<button id="vp-left" title="pan left (A)">&larr;</button>
<button id="vp-right" title="pan right (D)">&rarr;</button>
<button id="vp-reset" title="show everything">reset</button>
<span id="vp-help">wheel: zoom, drag: pan, hover: slice name</span>
<span id="vp-legend"></span>
</div>
</div>
<div id="vp-axis-row"><div id="vp-axis-label">ms since t = 0</div><canvas id="vp-axis"></canvas></div>
</div>
<div id="vp-rows"></div>
<div id="vp-tooltip" role="tooltip" hidden></div>
<script type="application/json" id="vp-data">{_script_json(data)}</script>
<script type="application/json" id="vp-row-data">{rows_json}</script>
<script>
{_asset("viewer.js")}</script>
<noscript>This timeline needs JavaScript; the SVG version (--svg) does not.</noscript>
</body>
</html>
"""


def render_html(model: L.Model) -> str:
    """The timeline as one self-contained HTML page (str): inline style and
    script, no network. Each track is a ``<div class="vp-row"
    data-track=UUID>`` built by the script; hovering a slice shows its name,
    track and duration in ``#vp-tooltip``."""
    start = model["start_ns"]
    names: Dict[str, int] = {}
    rows: List[Any] = []
    for t in model["tracks"]:
        slices = [[s[0] - start, s[1], names.setdefault(s[2], len(names)), s[3]] for s in t["slices"]]
        points = [[p[0] - start, p[1]] for p in t["counter"]
                  if isinstance(p[1], (int, float)) and math.isfinite(p[1])]
        rows.append([slices, points])
    return _page(model, list(names), _script_json(rows))


def render_html_from_json(path: str, tracks_json: str, rows_json: str) -> str:
    """The page straight from the C++ reader's JSON (model.read()): the rows
    go in as they are (numbers only), only the tracks are read here."""
    head = json.loads(tracks_json)
    head["path"] = path
    return _page(head, head["names"], rows_json)
