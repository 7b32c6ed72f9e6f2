"""The timeline as a static SVG picture."""

from __future__ import annotations

from typing import Callable, Dict, List

from . import _layout as L

__all__ = ["render_svg"]


def _counter(t: L.Track, y: int, h: int, x1: int, hue: int, X: Callable[[int], float]) -> List[str]:
    pts = t["counter"]
    vals = [p[1] for p in pts]
    lo, hi = min(vals), max(vals)
    rng = (hi - lo) or 1.0
    coords: List[str] = []
    last_y = ""
    for ts, v in pts:
        px = round(X(ts), 1)
        py = f"{round(y + h - 3 - (v - lo) * (h - 8) / rng, 1)}"
        if last_y:
            coords.append(f"{px},{last_y}")  # a step line
        coords.append(f"{px},{py}")
        last_y = py
    if coords:
        coords.append(f"{x1},{last_y}")
    return [f'<polyline class="counter" fill="none" stroke="hsl({hue},70%,35%)" stroke-width="1.2" '
            f'points="{" ".join(coords)}"/>',
            f'<text x="{x1 - 2}" y="{y + 10}" font-size="9" text-anchor="end" '
            f'fill="#333">{L.esc(L.fmt_num(hi))}</text>',
            f'<text x="{x1 - 2}" y="{y + h - 2}" font-size="9" text-anchor="end" '
            f'fill="#333">{L.esc(L.fmt_num(lo))}</text>']


def _slices(t: L.Track, y: int, hue: int, plot_w: int, span: int,
            X: Callable[[int], float]) -> List[str]:
    # coalesce sub-pixel slices per lane so that a big trace stays small
    out: List[str] = []
    last_end: Dict[int, float] = {}
    for ts, dur, name, depth in t["slices"]:
        lane = min(depth, L.MAX_LANES - 1)
        sx = X(ts)
        w = dur * plot_w / span
        if w < 1.0 and last_end.get(lane, -1) >= sx:
            continue
        ww = max(w, 1.0)
        last_end[lane] = sx + ww
        sy = y + 3 + lane * L.LANE
        tip = f"{name} \u2014 {L.fmt_dur(dur)}"
        out.append(f'<rect class="slice" x="{sx:.1f}" y="{sy}" width="{ww:.1f}" '
                   f'height="{L.LANE - 2}" fill="{L.slice_colour(hue, name)}">'
                   f'<title>{L.esc(tip)}</title></rect>')
        if w >= 40:
            n = int((w - 6) / 6)
            txt = name if len(name) <= n else name[:max(0, n - 1)] + "\u2026"
            if txt:
                out.append(f'<text x="{sx + 3:.1f}" y="{sy + L.LANE - 4}" font-size="9" '
                           f'fill="#fff" pointer-events="none">{L.esc(txt)}</text>')
    return out


def render_svg(model: L.Model, width: int = 1200, max_rows: int = 2000) -> str:
    """The timeline as a standalone SVG document (str): one ``<g class="row"
    data-track=UUID>`` per track of the model (up to ``max_rows``)."""
    label_w = 250
    x0, x1 = label_w + 10, width - 14
    plot_w = x1 - x0
    start, end = model["start_ns"], model["end_ns"]
    span = max(1, end - start)
    hues = L.side_hues(model)
    tracks = model["tracks"][:max_rows]

    def X(ts: int) -> float:
        return float(x0 + (ts - start) * plot_w / span)

    head_h = 78
    y = head_h
    rows: List[str] = []
    prev_group = None
    for t in tracks:
        group = (t["guest_name"], t["pid"])
        if prev_group is not None and group != prev_group:
            y += 4     # a little air between processes
        prev_group = group
        h = L.row_height(t)
        hue = hues.get(t["guest_name"] if t["guest"] else None, L.HOST_HUE)
        bg = f"hsl({hue},60%,{95 if t['kind'] != 'process' else 90}%)"
        indent = 6 if t["kind"] == "process" else 18
        weight = ' font-weight="bold"' if t["kind"] == "process" else ""
        label = L.row_label(t)
        short = label if len(label) <= 34 else label[:33] + "\u2026"
        guest = f' data-guest="{L.esc(t["guest_name"])}"' if t["guest"] else ""
        g = [f'<g class="row" data-track="{L.esc(t["uuid"])}" data-kind="{L.esc(t["kind"])}" '
             f'data-side="{"guest" if t["guest"] else "host"}"{guest}>',
             f'<rect class="row-bg" x="0" y="{y}" width="{width}" height="{h}" fill="{bg}"/>',
             f'<rect x="0" y="{y}" width="4" height="{h}" fill="hsl({hue},65%,45%)"/>',
             f'<text x="{indent}" y="{y + min(h, 19) - 5}" font-size="11"{weight}>'
             f'<title>{L.esc(label)}</title>{L.esc(short)}</text>']
        if t["counter"] and not t["slices"]:
            g += _counter(t, y, h, x1, hue, X)
        else:
            g += _slices(t, y, hue, plot_w, span, X)
        g.append("</g>")
        rows.append("\n".join(g))
        y += h + 1
    if not tracks:
        rows.append(f'<text x="6" y="{y + 16}" font-size="12" fill="#900">nothing to draw in this '
                    f'trace</text>')
        y += 24
    total_h = y + 12
    if len(model["tracks"]) > len(tracks):
        rows.append(f'<text x="6" y="{y + 8}" font-size="11" fill="#900">'
                    f'{len(model["tracks"]) - len(tracks)} more tracks not drawn</text>')
        total_h += 12

    span_ms = span / 1e6
    step = L.nice_step(span_ms, 10)
    axis = []
    k = 0
    while k * step <= span_ms + 1e-9 and k < 1000:
        px = x0 + (k * step) * plot_w / span_ms
        axis.append(f'<line x1="{px:.1f}" y1="{head_h - 8}" x2="{px:.1f}" y2="{total_h - 12}" '
                    f'stroke="#000" stroke-opacity="0.12"/>')
        axis.append(f'<text x="{px:.1f}" y="{head_h - 11}" font-size="10" text-anchor="middle">'
                    f'{L.fmt_ms(k * step, step)}</text>')
        k += 1

    title = L.title(model)
    info = (f"t = 0 ms at {L.clock_label(model)} {L.fmt_boottime(start)}; "
            f"span {L.fmt_dur(span)}; {len(model['tracks'])} tracks")
    if model.get("slices_total", 0) > model.get("slices_kept", 0):
        info += f"; {model['slices_kept']:,} of {model['slices_total']:,} slices drawn (the longest)"
    legend = []
    lx = x0
    for text, hue, side in L.legend(model, hues):
        legend.append(f'<rect class="legend" data-side="{side}" x="{lx}" y="30" width="14" '
                      f'height="10" fill="hsl({hue},60%,50%)"/>'
                      f'<text x="{lx + 18}" y="39" font-size="11">{L.esc(text)}</text>')
        lx += 30 + 7 * len(text)
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total_h}" '
           f'viewBox="0 0 {width} {total_h}" font-family="sans-serif">',
           f'<title>{L.esc(title)} \u2014 vperfetto timeline</title>',
           f'<rect width="{width}" height="{total_h}" fill="#fff"/>',
           f'<text x="6" y="16" font-size="13" font-weight="bold">{L.esc(title)}</text>',
           '<text x="6" y="39" font-size="10" fill="#444">legend:</text>',
           *legend,
           f'<text x="6" y="56" font-size="10" fill="#444">{L.esc(info)}</text>',
           f'<text x="{x1}" y="{head_h - 24}" font-size="10" text-anchor="end" '
           f'fill="#444">ms since t = 0</text>',
           *axis, '<g class="rows">', *rows, "</g>", "</svg>"]
    return "\n".join(out) + "\n"
