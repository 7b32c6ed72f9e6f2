"""Causality as the truth: the link's probes, checked in a merged trace.

    python -m vperfetto.probes combined.pftrace [--min N] [--json OUT.json]

``GuestLink.kick()`` and ``GuestLink.ping()`` leave pairs of instants, one
written on each side of the link, whose order no clock can change: the host
writes ``host_kick`` before it sends kick ``seq`` and the guest writes
``guest_saw_kick`` after it read it; the guest writes ``guest_ping`` before
sending, the host ``host_saw_ping`` after reading. On a correctly merged
timeline every such pair is in order. The smallest margins bound the
alignment error without any oracle: if the merge placed the guest's events
``e`` ns later than the truth, every kick margin is more than ``e`` and
every ping margin more than ``-e``, so ``-min(ping) < e < min(kick)``. The
merge's own claim (its alignment record's ``spread_ns``: the true offset is
within that of its estimate) must agree with that window. With every probe in
order the window holds 0 and the two agree by construction; the check bites
when a probe is out of order: a kick seen ``v`` ns before it was sent proves
the guest was placed more than ``v`` ns too early, and a claim of less is
contradicted.

Exit status: 0 when every probe is in order (and at least --min of each
kind, each paired), 1 otherwise, 2 for an unreadable trace.
"""

from __future__ import annotations

import json
import statistics
import sys
from typing import Dict, List, Optional

from . import errors
from ._cli import Parser
from ._tracereader import track_event_instants

__all__ = ["check", "ok", "problems", "main"]

PAIRS = (("kick", "host_kick", "guest_saw_kick"), ("ping", "guest_ping", "host_saw_ping"))


def _margins(sent: Dict[int, List[int]], seen: Dict[int, List[int]]) -> dict:
    margins, unpaired, ambiguous = {}, [], []
    for seq in sorted(set(sent) | set(seen)):
        a, b = sent.get(seq, []), seen.get(seq, [])
        if len(a) > 1 or len(b) > 1:
            ambiguous.append(seq)
        elif not a or not b:
            unpaired.append(seq)
        else:
            margins[seq] = b[0] - a[0]
    vals = list(margins.values())
    return {
        "sent": sum(map(len, sent.values())),
        "seen": sum(map(len, seen.values())),
        "pairs": len(vals),
        "unpaired": unpaired,
        "ambiguous": ambiguous,
        "violations": sorted(s for s, m in margins.items() if m <= 0),
        "min_ns": min(vals) if vals else None,
        "median_ns": round(statistics.median(vals)) if vals else None,
        "max_ns": max(vals) if vals else None,
        "min_seq": min(margins, key=margins.get) if vals else None,
    }


def check(path, alignment: Optional[dict] = None) -> dict:
    """The probes of a merged trace: per kind, pairs and margins (ns); the
    window the margins leave for the alignment error; whether the merge's
    alignment record (or `alignment`: a dict with spread_ns) agrees."""
    names = {n for _, a, b in PAIRS for n in (a, b)}
    by: Dict[str, Dict[int, List[int]]] = {n: {} for n in names}
    for name, ts, args in track_event_instants(str(path), names):
        seq = args.get("seq")
        if isinstance(seq, int):
            by[name].setdefault(seq, []).append(ts)
    out: dict = {"trace": str(path)}
    for kind, first, second in PAIRS:
        out[kind] = _margins(by[first], by[second])
    if alignment is None:
        from .inspect import inspect

        recs = inspect(path).get("merge_alignments") or []
        alignment = recs[0] if len(recs) == 1 else None
    lo = -out["ping"]["min_ns"] if out["ping"]["min_ns"] is not None else None
    hi = out["kick"]["min_ns"]
    out["error_window_ns"] = [lo, hi]   # -min(ping) < guest placement error < min(kick)
    out["alignment"] = alignment
    bound = alignment.get("spread_ns") if alignment else None
    if bound is not None and bound >= 0 and lo is not None and hi is not None:
        # some e with lo < e < hi and -bound <= e <= bound
        out["bound_consistent"] = lo < hi and lo < bound and -bound < hi
    else:
        out["bound_consistent"] = None
    return out


def problems(report: dict, min_pairs: int = 1) -> List[str]:
    """What makes the report fail, one phrase each (none: it passes)."""
    out = []
    for kind, first, second in PAIRS:
        k = report[kind]
        if k["violations"]:
            out.append(f"{len(k['violations'])} {kind}(s) out of order")
        if k["unpaired"]:
            out.append(f"{len(k['unpaired'])} {kind}(s) without their other half")
        if k["ambiguous"]:
            out.append(f"{len(k['ambiguous'])} {kind} seq(s) used more than once")
        if k["pairs"] < min_pairs:
            out.append(f"{k['pairs']} {kind}(s) paired, fewer than {min_pairs}")
    if report["bound_consistent"] is False:
        out.append("the merge's claimed error bound is contradicted by causality")
    return out


def ok(report: dict, min_pairs: int = 1) -> bool:
    return not problems(report, min_pairs)


def format_report(r: dict) -> str:
    lines = []
    for kind, first, second in PAIRS:
        k = r[kind]
        if not k["pairs"]:
            lines.append(f"{kind}s: none paired ({k['sent']} {first}, {k['seen']} {second})"
                         + ("; both halves are needed: is this the merged trace?"
                            if bool(k["sent"]) != bool(k["seen"]) else ""))
            continue
        lines.append(f"{kind}s: {k['pairs']} {first} -> {second}, margin min {k['min_ns'] / 1e3:.1f} us "
                     f"(seq {k['min_seq']}), median {k['median_ns'] / 1e3:.1f} us, max {k['max_ns'] / 1e3:.1f} us"
                     + (f"; OUT OF ORDER: seq {k['violations'][:10]}" if k["violations"] else "")
                     + (f"; unpaired: seq {k['unpaired'][:10]}" if k["unpaired"] else "")
                     + (f"; seq used twice: {k['ambiguous'][:10]}" if k["ambiguous"] else ""))
    lo, hi = r["error_window_ns"]
    if lo is not None and hi is not None:
        lines.append(f"the guest's placement error is within ({lo / 1e3:.1f} us, {hi / 1e3:.1f} us) "
                     f"by causality alone")
    a = r["alignment"]
    if a:
        verdict = {True: "agrees", False: "DISAGREES", None: "cannot be compared"}[r["bound_consistent"]]
        lines.append(f"merge: {a.get('method')}, offset {a.get('offset_ns')} ns, claimed within "
                     f"+-{a.get('spread_ns')} ns: {verdict} with causality")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = Parser(prog="python -m vperfetto.probes",
                description="Check the link's causality probes (kicks, pings) in a merged trace.")
    ap.add_argument("trace")
    ap.add_argument("--min", type=int, default=1, metavar="N",
                    help="at least N kicks and N pings must be paired (default 1)")
    ap.add_argument("--json", metavar="OUT", help="also write the report as JSON")
    a = ap.parse_args(argv)
    try:
        r = check(a.trace)
    except (OSError, ValueError, errors.VperfettoError) as e:
        msg = str(getattr(e, "strerror", None) or e)
        if a.trace not in msg:
            msg = f"{a.trace}: {msg}"
        print(f"python -m vperfetto.probes: error: {msg}", file=sys.stderr)
        return 2
    print(format_report(r))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=1)
    bad = problems(r, a.min)
    if bad:
        print(f"python -m vperfetto.probes: failed: {'; '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
