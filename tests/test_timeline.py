"""vperfetto.timeline: the model of traced workloads, of merges and of
hand-made traces with the protocol's corners, the SVG, the HTML page's data
(its rendering in a browser: test_timeline_browser.py)."""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
import zlib

import pytest

from vperfetto import timeline
from vperfetto.merge import merge
from timeline_traces import (MS, SHARED, SVG_NS, XSS, by_name as _by_name, handmade as _handmade,
                             m as _m, name as _name, packet as _packet, traces)  # noqa: F401

def test_model_of_one_process(traces):
    m = timeline.model_from_trace(traces["host"])
    base = traces["base"]
    assert m["start_ns"] == base and m["end_ns"] == base + 92 * MS   # last vsync
    assert m["timeline"] == "trace"
    t = _by_name(m)
    kinds = sorted((x["kind"], x["name"]) for x in m["tracks"])
    assert kinds == [("counter", "host_load"), ("counter", "host_queue"), ("custom", "host io"),
                     ("process", "vmm"), ("thread", "host_main"), ("thread", "host_worker1"),
                     ("thread", "host_worker2")]
    main = t["host_main"]
    assert main["slices"][:3] == [[base, 10 * MS, "host_frame", 0], [base + 2 * MS, 4 * MS, "draw", 1],
                                  [base + 12 * MS, 0, "vsync", 0]]
    assert len(main["slices"]) == 15
    w1 = t["host_worker1"]
    assert w1["slices"][:2] == [[base + 3 * MS, 8 * MS, "work", 0], [base + 4 * MS, 2 * MS, "inner", 1]]
    assert w1["tid"] != main["tid"] and w1["pid"] == main["pid"] == t["vmm"]["pid"]
    assert t["host io"]["slices"] == [[base + 5 * MS, 40 * MS, "read", 0]]
    assert t["host_queue"]["counter"] == [[base + 20 * k * MS, 2 * k] for k in range(5)]
    assert t["host_load"]["counter"] == [[base + 20 * k * MS, k / 4] for k in range(5)]
    assert all(x["process"] == "vmm" and not x["guest"] and x["guest_name"] is None
               for x in m["tracks"])
    # grouped: the process first, its main thread next
    assert [x["name"] for x in m["tracks"][:2]] == ["vmm", "host_main"]


def test_model_of_a_merge_lines_guest_and_host_up(traces):
    m = timeline.model_from_trace(traces["combined"])
    base = traces["base"]
    assert m["timeline"] == "host"
    t = _by_name(m)
    assert len(m["tracks"]) == 14
    guest = [x for x in m["tracks"] if x["guest"]]
    host = [x for x in m["tracks"] if not x["guest"]]
    assert len(guest) == len(host) == 7
    assert {x["guest_name"] for x in guest} == {"vm1"}
    assert {x["process"] for x in guest} == {"vm1: guest_app"}
    assert all(x["pid"] >= 1_000_000 for x in guest)
    assert m["tracks"].index(guest[0]) == len(host)          # host rows first, then the guest
    # the guest's 5 s moved away: the same instants on one clock
    hf, gf = t["host_main"]["slices"][0], t["guest_main"]["slices"][0]
    assert hf == [base, 10 * MS, "host_frame", 0] and gf == [base, 10 * MS, "guest_frame", 0]
    assert t["guest_queue"]["counter"] == t["host_queue"]["counter"]


def test_model_cap_keeps_the_longest(traces):
    m = timeline.model_from_trace(traces["host"], max_slices=7)
    kept = sorted((s[1], s[2]) for x in m["tracks"] for s in x["slices"])
    assert m["slices_total"] == 36 and m["slices_kept"] == 7 == len(kept)
    # the 40 ms read, the five 10 ms frames, and one of the 8 ms works
    assert kept[-1] == (40 * MS, "read") and kept[1:6] == [(10 * MS, "host_frame")] * 5
    assert kept[0] == (8 * MS, "work")


@pytest.mark.skipif(not (SHARED / "sdk-v7" / "guest.pftrace").exists(), reason="no shared testdata")
@pytest.mark.parametrize("mode", ["named", "positional", "machine-id"])
def test_model_of_sdk_v7_merges(tmp_path, mode):
    g, h = SHARED / "sdk-v7" / "guest.pftrace", SHARED / "sdk-v7" / "host.pftrace"
    out = tmp_path / "c.pftrace"
    if mode == "positional":
        merge(g, h, out)
    else:
        merge(host=h, guests={"vm1": g}, output=out, machine_ids=mode == "machine-id")
    m = timeline.model_from_trace(out)
    guest = {x["name"] for x in m["tracks"] if x["guest"]}
    host = {x["name"] for x in m["tracks"] if not x["guest"]}
    assert guest == {"guest_main", "guest_worker1", "guest_worker2", "guest_mem_kb",
                     ("guest" if mode == "positional" else "vm1") + ": guest_app"}
    assert host == {"vmm_host", "vmm_main", "vmm_worker1", "vmm_worker2", "vmm_mem_kb"}
    assert m["timeline"] == ("guest" if mode == "positional" else "host")
    # README of the testdata: the guest's events start 93.3 ms after the host's first
    # and end 9.1 ms before its last
    def span(side):
        ts = [s[0] for x in m["tracks"] if x["guest"] == side for s in x["slices"]]
        te = [s[0] + s[1] for x in m["tracks"] if x["guest"] == side for s in x["slices"]]
        return min(ts), max(te)
    (g0, g1), (h0, h1) = span(True), span(False)
    assert abs((g0 - h0) - 93_304_673) < 100 and abs((h1 - g1) - 9_076_923) < 100
    assert sum(len(x["slices"]) for x in m["tracks"] if x["guest"]) == 231 + 75
    assert sum(len(x["counter"]) for x in m["tracks"] if x["guest"]) == 25


def test_handmade_protocol_corners(tmp_path):
    path = tmp_path / "h.pftrace"
    path.write_bytes(_handmade())
    m = timeline.model_from_trace(path)
    t = _by_name(m)
    assert t["t1"]["slices"] == [[1000, 1000, "alpha", 0], [3000, 1000, "beta", 0],
                                 [3500, 0, XSS, 1]]
    assert t["t1"]["guest"] and t["t1"]["guest_name"] == "vmA" and t["t1"]["kind"] == "thread"
    assert t["t1"]["pid"] == 1_000_010 and t["t1"]["tid"] == 1_000_011
    assert t["depth"]["kind"] == "counter" and t["depth"]["counter"] == [[1500, -5], [2500, 2.5]]
    assert t["depth"]["guest_name"] == "vmA" and t["depth"]["process"] == "vmA: proc"
    assert t["clocked"]["slices"] == [[12_000, 3_000, "tick", 0]]
    assert t["clocked"]["kind"] == "custom" and not t["clocked"]["guest"]
    assert m["start_ns"] == 1000 and m["end_ns"] == 15_000

    # the same packets inside compressed_packets, and the file gzipped: the same model
    raw = _handmade()
    (tmp_path / "c.pftrace").write_bytes(_packet((50, zlib.compress(raw))))
    (tmp_path / "g.pftrace.gz").write_bytes(gzip.compress(raw))
    for other in ("c.pftrace", "g.pftrace.gz"):
        o = timeline.model_from_trace(tmp_path / other)
        assert o["tracks"] == m["tracks"], other

    # a cut-off last packet: the rest, and said so
    (tmp_path / "t.pftrace").write_bytes(raw[:-3])
    tm = timeline.model_from_trace(tmp_path / "t.pftrace")
    assert tm["truncated"] and _by_name(tm)["t1"]["slices"] == t["t1"]["slices"]
    # garbage after good packets (here a length prefix of 2**56 bytes): the good part
    (tmp_path / "j.pftrace").write_bytes(raw + b"\x0a" + b"\xff" * 7 + b"\x7f")
    jm = timeline.model_from_trace(tmp_path / "j.pftrace")
    assert jm["truncated"] and jm["tracks"] == m["tracks"]


def test_a_sequence_is_per_machine(tmp_path):
    # As in trace_processor, sequence 1 of machine 2 is not sequence 1 of
    # machine 0: neither its interned names nor its default track.
    p = [_packet((10, 1), (13, 1), (59, _m((11, _m((11, 7))))), (12, _m((2, _name(1, "host"))))),
         _packet((10, 1), (13, 1), (12, _m((2, _name(1, "guest")))), (98, 2)),
         _packet((10, 1), (8, 10), (11, _m((9, 3), (10, 1)))),
         _packet((10, 1), (8, 20), (11, _m((9, 3), (10, 1))), (98, 2))]
    path = tmp_path / "s.pftrace"
    path.write_bytes(b"".join(p))
    m = timeline.model_from_trace(path)
    rows = {(t["uuid"], t["machine"]): [s[2] for s in t["slices"]] for t in m["tracks"]}
    assert rows == {(7, 0): ["host"], (-((2 << 32) | 1) - 1, 2): ["guest"]}


def test_machine_id_marks_guests_when_no_process_is_named(tmp_path):
    p = [_packet((60, _m((1, 7), (3, _m((1, 42), (6, "kernel_thing")))))),
         _packet((60, _m((1, 8), (3, _m((1, 42), (6, "vcpu_loop"))))), (98, 3)),
         _packet((10, 1), (8, 10), (11, _m((9, 3), (11, 7), (23, "h")))),
         _packet((10, 2), (8, 20), (11, _m((9, 3), (11, 8), (23, "g"))), (98, 3))]
    path = tmp_path / "m.pftrace"
    path.write_bytes(b"".join(p))
    m = timeline.model_from_trace(path)
    t = _by_name(m)
    assert not t["kernel_thing"]["guest"]
    assert t["vcpu_loop"]["guest"] and t["vcpu_loop"]["guest_name"] == "machine 3"


def test_not_a_trace(tmp_path):
    bad = tmp_path / "bad.pftrace"
    bad.write_bytes(b"\x0f" * 64)     # wire type 7
    with pytest.raises(ValueError):
        timeline.model_from_trace(bad)
    r = subprocess.run([sys.executable, "-m", "vperfetto.timeline", str(bad), "--svg",
                        str(tmp_path / "x.svg")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1
    assert not (tmp_path / "x.svg").exists()
    for args in ([str(tmp_path / "missing"), "--svg", str(tmp_path / "m.svg")],
                 [str(bad)]):                                   # nothing to write
        r = subprocess.run([sys.executable, "-m", "vperfetto.timeline", *args],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr


# --- SVG ----------------------------------------------------------------------

def _hue(fill):
    m = re.match(r"hsl\((-?\d+),", fill)
    return int(m.group(1)) % 360


def test_svg_one_row_per_track_guest_and_host_coloured_apart(traces, tmp_path):
    svg_path, html_path = tmp_path / "t.svg", tmp_path / "t.html"
    r = subprocess.run([sys.executable, "-m", "vperfetto.timeline", str(traces["combined"]),
                        "--svg", str(svg_path), "--html", str(html_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    model = timeline.model_from_trace(traces["combined"])
    root = ET.parse(svg_path).getroot()          # well-formed
    assert root.tag == SVG_NS + "svg"
    rows = [g for g in root.iter(SVG_NS + "g") if g.get("class") == "row"]
    assert len(rows) == len(model["tracks"]) == 14
    assert [g.get("data-track") for g in rows] == [str(t["uuid"]) for t in model["tracks"]]
    fills = {"host": set(), "guest": set()}
    for g in rows:
        side = g.get("data-side")
        track = next(t for t in model["tracks"] if str(t["uuid"]) == g.get("data-track"))
        assert side == ("guest" if track["guest"] else "host")
        rects = [e for e in g.iter(SVG_NS + "rect") if e.get("class") == "slice"]
        assert len(rects) == len(track["slices"])    # small trace: nothing coalesced
        for e in rects:
            fills[side].add(_hue(e.get("fill")))
        lines = [e for e in g.iter(SVG_NS + "polyline") if e.get("class") == "counter"]
        assert len(lines) == (1 if track["kind"] == "counter" else 0)
        label = "".join(g.find(SVG_NS + "text").itertext())
        assert track["name"] in label or (track["process"] or "") in label
    # host slices in blues, guest slices in oranges: no hue in common, far apart
    assert fills["host"] and fills["guest"] and not fills["host"] & fills["guest"]
    assert min(abs(a - b) for a in fills["host"] for b in fills["guest"]) > 90
    legend = {e.get("data-side") for e in root.iter(SVG_NS + "rect") if e.get("class") == "legend"}
    assert legend == {"host", "guest"}
    text = " ".join("".join(e.itertext()) for e in root.iter(SVG_NS + "text"))
    assert "host BOOTTIME" in text and f"{model['start_ns'] % 1_000_000_000:09d}" in text
    assert "guest vm1" in text
    assert html_path.stat().st_size > 1000


def test_a_guest_named_guest_is_said_once(traces, tmp_path):
    # the positional merge names its guest "guest": the legend and the page say
    # "guest", not "guest guest"; a named guest is "guest vm2"
    for name, guests, want in (("positional", None, "guest"), ("named", {"vm2": traces["guest"]}, "guest vm2")):
        out = tmp_path / f"{name}.pftrace"
        if guests is None:
            merge(traces["guest"], traces["host"], out, mode="guest-into-host", time_diff_ns=5_000 * MS)
        else:
            merge(host=traces["host"], guests=guests, output=out, time_diff_ns=5_000 * MS)
        model = timeline.model_from_trace(out)
        assert {t["guest_name"] for t in model["tracks"] if t["guest"]} == {want.split()[-1]}
        root = ET.fromstring(timeline.render_svg(model))
        texts = ["".join(e.itertext()) for e in root.iter(SVG_NS + "text")]
        assert want in texts and "guest guest" not in " ".join(texts)
        page = timeline.render_html(model)
        assert f'"{want}"' in page and "guest guest" not in page


def test_svg_and_html_escape_names(tmp_path):
    path = tmp_path / "x.pftrace"
    path.write_bytes(_handmade())
    model = timeline.model_from_trace(path)
    svg = timeline.render_svg(model)
    root = ET.fromstring(svg.encode())
    assert any(XSS in "".join(e.itertext()) for e in root.iter(SVG_NS + "title"))
    assert "<img" not in svg and "<script" not in svg
    page = timeline.render_html(model)
    assert page.count("</script>") == 3 and "<img" not in page   # data, rows, viewer


def test_svg_of_an_empty_trace(tmp_path):
    path = tmp_path / "e.pftrace"
    path.write_bytes(b"")
    model = timeline.model_from_trace(path)
    assert model["tracks"] == []
    root = ET.fromstring(timeline.render_svg(model).encode())
    assert "nothing to draw" in "".join(root.itertext())


# --- HTML in headless Chromium ---------------------------------------------------
