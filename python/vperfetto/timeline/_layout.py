"""What the SVG and the HTML timeline share: colours, labels, sizes, formats."""

from __future__ import annotations

import html
import math
import os
import re
from typing import Any, Dict, List, Mapping, Optional

HOST_HUE = 212
GUEST_HUES = [28, 140, 285, 0, 55, 175]
LANE = 13          # px per slice depth
MAX_LANES = 12
COUNTER_H = 28

Model = Mapping[str, Any]
Track = Mapping[str, Any]


def side_hues(model: Model) -> Dict[Optional[str], int]:
    """The hue of the host (key None) and of each guest, in order of appearance."""
    hues: Dict[Optional[str], int] = {None: HOST_HUE}
    for t in model["tracks"]:
        if t["guest"] and t["guest_name"] not in hues:
            hues[t["guest_name"]] = GUEST_HUES[(len(hues) - 1) % len(GUEST_HUES)]
    return hues


def side_label(guest_name: Optional[str]) -> str:
    """"host", or the guest's name said once: "guest vm1", and "guest" (not
    "guest guest") for the guest the positional merge names "guest"."""
    if guest_name is None:
        return "host"
    return guest_name if guest_name.lower().startswith("guest") else f"guest {guest_name}"


def legend(model: Model, hues: Dict[Optional[str], int]) -> List[List[Any]]:
    """[text, hue, side] per side shown (the host only when it has rows)."""
    has_host = any(not t["guest"] for t in model["tracks"])
    return [[side_label(g), h, "host" if g is None else "guest"]
            for g, h in hues.items() if g is not None or has_host]


def name_hash(s: str) -> int:
    h = 2166136261
    for ch in s.encode("utf-8", "replace"):
        h = ((h ^ ch) * 16777619) & 0xFFFFFFFF
    return h


def slice_colour(hue: int, name: str) -> str:
    h = name_hash(name)
    return f"hsl({hue + (h % 21) - 10},{55 + (h >> 8) % 25}%,{42 + (h >> 16) % 18}%)"


def nice_step(span_ms: float, target: int) -> float:
    if span_ms <= 0:
        return 1.0
    raw = span_ms / max(1, target)
    p = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * p >= raw:
            return float(m * p)
    return float(10 * p)


def fmt_ms(v: float, step: float) -> str:
    decimals = max(0, -int(math.floor(math.log10(step)))) if step < 1 else 0
    return f"{v:.{decimals}f}"


def fmt_dur(ns: float) -> str:
    if ns >= 1e9:
        return f"{ns / 1e9:.3f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.3f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.1f} us"
    return f"{int(ns)} ns"


def fmt_boottime(ns: int) -> str:
    return f"{ns // 1_000_000_000:,}.{ns % 1_000_000_000:09d} s"


def fmt_num(v: float) -> str:
    if isinstance(v, float) and not v.is_integer():
        return f"{v:.4g}"
    return f"{int(v):,}"


def clock_label(model: Model) -> str:
    return {"host": "host BOOTTIME", "guest": "guest BOOTTIME (the host moved into guest time)",
            "trace": "BOOTTIME"}.get(model.get("timeline", ""), "BOOTTIME")


def title(model: Model) -> str:
    return clean(os.path.basename(model.get("path") or "") or "trace")


_BAD_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")


def clean(s: object) -> str:
    """Text without the characters XML forbids (names come from traces)."""
    return _BAD_XML.sub("\ufffd", "" if s is None else str(s))


def esc(s: object) -> str:
    """Escapes text and attribute values for SVG/HTML."""
    return html.escape(clean(s), quote=True)


def row_label(t: Track) -> str:
    if t["kind"] == "process":
        proc = t["process"] or t["name"]
        return f"{proc} [{t['pid']}]" if t["pid"] is not None else str(proc)
    if t["kind"] == "thread":
        return f"{t['name']} [{t['tid']}]" if t["tid"] is not None else str(t["name"])
    return str(t["name"])


def row_height(t: Track) -> int:
    if t["counter"] and not t["slices"]:
        return COUNTER_H
    lanes = 1 + max((s[3] for s in t["slices"]), default=0)
    return 6 + LANE * min(lanes, MAX_LANES)
