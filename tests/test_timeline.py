"""vperfetto.timeline: the model read from real traces, the SVG, and the HTML page
in a real browser (headless Chromium: DOM, screenshot, a hover through the
DevTools protocol with real mouse input)."""

from __future__ import annotations

import base64
import colorsys
import gzip
import hashlib
import json
import os
import pathlib
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
import zlib

import pytest

import vperfetto
from vperfetto import timeline
from vperfetto.merge import merge

MS = 1_000_000
SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "testdata"
SVG_NS = "{http://www.w3.org/2000/svg}"
XSS = "</script><img src=x onerror=\"window.__pwned=1\">&amp;'<"

# A traced workload in its own process, on timestamps it chooses: a main
# thread (frame > draw, vsync instants), two workers (work > inner), an async
# track and an int and a float counter.
CHILD = r'''
import sys, threading, vperfetto
path, pname, base, prefix = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
MS = 1_000_000
with vperfetto.Session(path):
    vperfetto.set_process_name(pname)
    vperfetto.set_thread_name(prefix + "_main")
    def worker(i):
        vperfetto.set_thread_name(f"{prefix}_worker{i}")
        for k in range(5):
            t0 = base + (20 * k + 2 + i) * MS
            vperfetto.begin("work", ts=t0)
            vperfetto.begin("inner", ts=t0 + 1 * MS)
            vperfetto.end(ts=t0 + 3 * MS)
            vperfetto.end(ts=t0 + 8 * MS)
    ths = [threading.Thread(target=worker, args=(i,)) for i in (1, 2)]
    for t in ths: t.start()
    for t in ths: t.join()
    for k in range(5):
        t0 = base + 20 * k * MS
        vperfetto.begin(prefix + "_frame", ts=t0)
        vperfetto.begin("draw", ts=t0 + 2 * MS)
        vperfetto.end(ts=t0 + 6 * MS)
        vperfetto.end(ts=t0 + 10 * MS)
        vperfetto.instant("vsync", ts=t0 + 12 * MS)
        vperfetto.counter(prefix + "_queue", k * 2, ts=t0)
        vperfetto.counter(prefix + "_load", k / 4, ts=t0)
    io = vperfetto.Track(prefix + " io")
    io.begin("read", ts=base + 5 * MS); io.end(ts=base + 45 * MS)
'''


def _record(path, pname, base, prefix):
    subprocess.run([sys.executable, "-c", CHILD, str(path), pname, str(base), prefix],
                   check=True, timeout=120)
    return path


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    """A host trace, a guest trace 5 s ahead on its own clock, and their merge."""
    d = tmp_path_factory.mktemp("timeline")
    base = vperfetto.boot_time_ns()
    host = _record(d / "host.pftrace", "vmm", base, "host")
    guest = _record(d / "guest.pftrace", "guest_app", base + 5_000 * MS, "guest")
    combined = d / "combined.pftrace"
    merge(host=host, guests={"vm1": guest}, output=combined, time_diff_ns=5_000 * MS)
    return {"dir": d, "base": base, "host": host, "guest": guest, "combined": combined}


def _by_name(model):
    return {t["name"]: t for t in model["tracks"]}


# --- the model ----------------------------------------------------------------

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


# --- hand-made traces: the protocol corners ------------------------------------

def _vint(v):
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _f(fid, v):
    if isinstance(v, (bytes, str)):
        v = v.encode() if isinstance(v, str) else v
        return _vint(fid << 3 | 2) + _vint(len(v)) + v
    if isinstance(v, float):
        return _vint(fid << 3 | 1) + struct.pack("<d", v)
    return _vint(fid << 3) + _vint(v)


def _m(*fields):
    return b"".join(_f(i, v) for i, v in fields)


def _packet(*fields):
    return _f(1, _m(*fields))


def _name(iid, s):
    return _m((1, iid), (2, s))


def _handmade():
    """seq 1: a guest-named process by machine id, interning reset mid-way;
    seq 2: a counter track; seq 3: a sequence-scoped incremental clock."""
    p = []
    p.append(_packet((60, _m((1, 50), (3, _m((1, 1_000_010), (6, "vmA: proc"))))), (98, 1)))
    thread = _m((1, 1_000_010), (2, 1_000_011), (5, "t1"))
    p.append(_packet((60, _m((1, 100), (5, 50), (4, thread))), (98, 1)))
    p.append(_packet((10, 1), (13, 1), (8, 900),
                     (59, _m((11, _m((11, 100))))),
                     (12, _m((2, _name(1, "alpha")), (1, _name(1, "cat"))))))
    p.append(_packet((10, 1), (8, 1000), (11, _m((9, 1), (10, 1), (3, 1))), (98, 1)))
    p.append(_packet((10, 1), (8, 2000), (11, _m((9, 2))), (98, 1)))
    # incremental state cleared: iid 1 now means "beta" (and the default track is gone)
    p.append(_packet((10, 1), (13, 1), (8, 2500), (59, _m((11, _m((11, 100))))),
                     (12, _m((2, _name(1, "beta"))))))
    p.append(_packet((10, 1), (8, 3000), (11, _m((9, 1), (10, 1))), (98, 1)))
    p.append(_packet((10, 1), (8, 3500), (11, _m((9, 3), (23, XSS))), (98, 1)))
    p.append(_packet((10, 1), (8, 4000), (11, _m((9, 2))), (98, 1)))
    # a counter track (machine 1, under the process) with int64 and double values
    p.append(_packet((60, _m((1, 200), (5, 50), (2, "depth"), (8, b""))), (98, 1)))
    p.append(_packet((10, 2), (8, 1500), (11, _m((9, 4), (11, 200), (30, -5))), (98, 1)))
    p.append(_packet((10, 2), (8, 2500), (11, _m((9, 4), (11, 200), (44, 2.5))), (98, 1)))
    # seq 3: clock 64 counts microseconds incrementally from BOOTTIME 10,000
    p.append(_packet((10, 3), (13, 1),
                     (6, _m((1, _m((1, 6), (2, 10_000))), (1, _m((1, 64), (2, 0), (3, 1), (4, 1000))))),
                     (59, _m((58, 64), (11, _m((11, 300)))))))
    p.append(_packet((60, _m((1, 300), (2, "clocked")))))
    p.append(_packet((10, 3), (8, 2), (11, _m((9, 1), (23, "tick")))))     # 10,000 + 2 us
    p.append(_packet((10, 3), (8, 3), (11, _m((9, 2)))))                   # + 3 us more
    return b"".join(p)


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


def test_svg_and_html_escape_names(tmp_path):
    path = tmp_path / "x.pftrace"
    path.write_bytes(_handmade())
    model = timeline.model_from_trace(path)
    svg = timeline.render_svg(model)
    root = ET.fromstring(svg.encode())
    assert any(XSS in "".join(e.itertext()) for e in root.iter(SVG_NS + "title"))
    assert "<img" not in svg and "<script" not in svg
    page = timeline.render_html(model)
    assert page.count("</script>") == 2 and "<img" not in page


def test_svg_of_an_empty_trace(tmp_path):
    path = tmp_path / "e.pftrace"
    path.write_bytes(b"")
    model = timeline.model_from_trace(path)
    assert model["tracks"] == []
    root = ET.fromstring(timeline.render_svg(model).encode())
    assert "no track events" in "".join(root.itertext())


# --- HTML in headless Chromium ---------------------------------------------------

def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        p = shutil.which(name)
        if p:
            return p
    return None


CHROMIUM = _chromium()
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium/chromium-browser binary "
                                    "(Debian: apt-get install chromium; .ci/run installs it)")
BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--no-default-browser-check", "--hide-scrollbars",
                 "--disable-extensions", "--force-device-scale-factor=1"]


def _browser(*args, user_dir, timeout=120):
    return subprocess.run([CHROMIUM, *BROWSER_FLAGS, f"--user-data-dir={user_dir}", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def page(traces):
    html_path = traces["dir"] / "combined.html"
    html_path.write_text(timeline.render_html(timeline.model_from_trace(traces["combined"])),
                         encoding="utf-8")
    return html_path


@needs_chromium
def test_html_rows_in_the_rendered_dom(page, traces, tmp_path):
    r = _browser("--dump-dom", page.as_uri(), user_dir=tmp_path / "profile")
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    assert 'data-ready="1"' in dom                        # the script ran
    rows = re.findall(r'<div class="vp-row[^"]*" data-track="(\d+)" data-kind="(\w+)" '
                      r'data-side="(\w+)"', dom)
    model = timeline.model_from_trace(traces["combined"])
    assert [r_[0] for r_ in rows] == [str(t["uuid"]) for t in model["tracks"]]
    assert [r_[2] for r_ in rows].count("guest") == 7
    assert dom.count('class="vp-canvas"') == 14
    assert "host BOOTTIME" in dom and "guest vm1" in dom


@needs_chromium
def test_html_escapes_untrusted_names_in_the_browser(tmp_path):
    path = tmp_path / "x.pftrace"
    path.write_bytes(_handmade())
    html_path = tmp_path / "x.html"
    html_path.write_text(timeline.render_html(timeline.model_from_trace(path)), encoding="utf-8")
    r = _browser("--dump-dom", html_path.as_uri(), user_dir=tmp_path / "profile")
    assert r.returncode == 0
    assert 'data-ready="1"' in r.stdout and "<img" not in r.stdout


def _png_pixels(data):
    """(width, height, rows of RGB tuples) of an 8-bit RGB/RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    i, idat, w, h, bpp = 8, b"", 0, 0, 3
    while i < len(data):
        n, kind = struct.unpack(">I4s", data[i:i + 8])
        body = data[i + 8:i + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (2, 6), (depth, ctype)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        i += 12 + n
    raw = zlib.decompress(idat)
    stride = w * bpp
    prev = bytearray(stride)
    rows = []
    pos = 0
    for _ in range(h):
        ftype, line = raw[pos], bytearray(raw[pos + 1:pos + 1 + stride])
        pos += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if ftype == 1:
                line[x] = (line[x] + a) & 0xFF
            elif ftype == 2:
                line[x] = (line[x] + b) & 0xFF
            elif ftype == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append([tuple(line[x:x + 3]) for x in range(0, stride, bpp)])
        prev = line
    return w, h, rows


def _colour_counts(rows):
    """Saturated pixels that are host-blue and guest-orange."""
    blue = orange = 0
    colours = set()
    for row in rows[::2]:
        for r, g, b in row[::2]:
            colours.add((r, g, b))
            hh, s, v = colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)
            if s > 0.35 and v > 0.3:
                deg = hh * 360
                if 190 <= deg <= 235:
                    blue += 1
                elif 10 <= deg <= 50:
                    orange += 1
    return blue, orange, len(colours)


def _keep(png: pathlib.Path):
    """VPERFETTO_TEST_ARTIFACTS=dir keeps the screenshots for a human to look at."""
    d = os.environ.get("VPERFETTO_TEST_ARTIFACTS")
    if d:
        os.makedirs(d, exist_ok=True)
        shutil.copy(png, os.path.join(d, png.name))


@needs_chromium
def test_html_screenshot_shows_guest_and_host(page, tmp_path):
    png = tmp_path / "timeline.png"
    r = _browser(f"--screenshot={png}", "--window-size=1200,700", page.as_uri(),
                 user_dir=tmp_path / "profile")
    assert png.exists(), r.stderr[-2000:]
    _keep(png)
    w, h, rows = _png_pixels(png.read_bytes())
    assert (w, h) == (1200, 700)
    blue, orange, ncolours = _colour_counts(rows)
    assert ncolours > 50                 # not blank
    assert blue > 500 and orange > 500   # host bars and guest bars drawn


class _DevTools:
    """A minimal client of the Chrome DevTools protocol: a WebSocket (RFC 6455)
    over a plain socket, JSON commands, replies matched by id."""

    def __init__(self, ws_url):
        u = urllib.parse.urlparse(ws_url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\n"
                           f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            assert chunk, "DevTools closed the connection during the handshake"
            buf += chunk
        head, self.buf = buf.split(b"\r\n\r\n", 1)
        assert head.split(b"\r\n")[0].split()[1] == b"101", head
        accept = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        assert accept in head
        self.next_id = 0
        self.events = []

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("DevTools connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _send_frame(self, opcode, payload):
        head = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _message(self):
        parts = []
        while True:
            b0, b1 = self._read(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            data = self._read(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            if opcode == 9:                       # ping
                self._send_frame(10, data)
                continue
            if opcode == 8:
                raise ConnectionError("DevTools closed the connection")
            if opcode in (0, 1, 2):
                parts.append(data)
                if b0 & 0x80:
                    return json.loads(b"".join(parts))

    def call(self, method, **params):
        self.next_id += 1
        self._send_frame(1, json.dumps({"id": self.next_id, "method": method,
                                        "params": params}).encode())
        while True:
            msg = self._message()
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def js(self, expression):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


@pytest.fixture
def devtools(tmp_path):
    if CHROMIUM is None:
        pytest.skip("no chromium/chromium-browser binary")
    proc = subprocess.Popen([CHROMIUM, *BROWSER_FLAGS, "--remote-debugging-port=0",
                             "--remote-debugging-address=127.0.0.1",
                             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,700",
                             "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    client = None
    try:
        deadline = time.monotonic() + 60
        port = None
        while time.monotonic() < deadline and port is None:
            line = proc.stderr.readline()
            if not line:
                break
            m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            if m:
                port = int(m.group(1))
        assert port, "chromium did not start its DevTools server"
        for _ in range(100):
            targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list",
                                                       timeout=10))
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                break
            time.sleep(0.1)
        client = _DevTools(pages[0]["webSocketDebuggerUrl"])
        yield client
    finally:
        if client:
            client.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def _until_view_changes(dt, before, timeout=10.0):
    """The viewer's view once an input event has changed it (events are
    handled asynchronously by the page)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = dt.js("window.vperfetto.view()")
        if v != before:
            return v
        time.sleep(0.01)
    raise AssertionError("the view did not change")


def _load(dt, url):
    dt.call("Page.enable")
    dt.call("Page.navigate", url=url)
    for _ in range(300):
        if dt.js("document.body && document.body.getAttribute('data-ready')") == "1":
            return
        time.sleep(0.05)
    raise AssertionError("the page did not get ready")


@needs_chromium
def test_html_hover_zoom_and_screenshot_in_chromium(devtools, page, traces, tmp_path):
    dt = devtools
    _load(dt, page.as_uri())
    model = timeline.model_from_trace(traces["combined"])
    assert dt.js("document.querySelectorAll('.vp-row[data-track]').length") == len(model["tracks"])

    # a real mouse move (browser input pipeline) onto the guest's first frame
    pt = dt.js("window.vperfetto.slicePoint('guest_frame')")
    guest_main = next(t for t in model["tracks"] if t["name"] == "guest_main")
    assert pt and pt["track"] == str(guest_main["uuid"])
    under = dt.js(f"(function(){{var e = document.elementFromPoint({pt['x']}, {pt['y']});"
                  f"return e.className + '|' + e.closest('.vp-row').getAttribute('data-track');}})()")
    assert under == f"vp-canvas|{guest_main['uuid']}"
    assert dt.js("document.getElementById('vp-tooltip').hidden") is True
    dt.call("Input.dispatchMouseEvent", type="mouseMoved", x=pt["x"], y=pt["y"])
    tip = dt.js("document.getElementById('vp-tooltip').textContent")
    assert dt.js("document.getElementById('vp-tooltip').hidden") is False
    assert tip.splitlines()[0] == "guest_frame"
    assert "guest_main" in tip and "guest vm1" in tip and "duration: 10.000 ms" in tip
    png = tmp_path / "timeline-hover.png"
    png.write_bytes(base64.b64decode(dt.call("Page.captureScreenshot", format="png")["data"]))
    _keep(png)
    w, h, rows = _png_pixels(png.read_bytes())
    blue, orange, _ = _colour_counts(rows)
    assert blue > 500 and orange > 500

    # a synthetic DOM event at a point inside a host slice runs the same code
    hp = dt.js("window.vperfetto.slicePoint('host_frame')")
    dt.js(f"document.elementFromPoint({hp['x']}, {hp['y']}).dispatchEvent(new MouseEvent("
          f"'mousemove', {{clientX: {hp['x']}, clientY: {hp['y']}, bubbles: true}}))")
    tip = dt.js("document.getElementById('vp-tooltip').textContent")
    assert tip.splitlines()[0] == "host_frame" and "(host)" in tip

    # off the bars: the tooltip goes away
    dt.call("Input.dispatchMouseEvent", type="mouseMoved", x=hp["x"], y=hp["y"] + 300)
    dt.call("Input.dispatchMouseEvent", type="mouseMoved", x=5, y=5)
    assert dt.js("document.getElementById('vp-tooltip').hidden") is True

    # the wheel zooms in around the pointer, the reset button shows it all again
    span = model["end_ns"] - model["start_ns"]
    v0 = dt.js("window.vperfetto.view()")
    assert v0 == {"t0": 0, "t1": span}
    box = dt.js("(function(){var r = document.querySelector('.vp-canvas').getBoundingClientRect();"
                "return [r.left, r.width];})()")
    frac = (pt["x"] - box[0]) / box[1]
    dt.call("Input.dispatchMouseEvent", type="mouseWheel", x=pt["x"], y=pt["y"], deltaX=0,
            deltaY=-600)
    v1 = _until_view_changes(dt, v0)
    assert v1["t1"] - v1["t0"] < span / 2
    # the instant under the pointer stays under it (within a pixel: input is in whole pixels)
    assert abs((v1["t0"] + frac * (v1["t1"] - v1["t0"])) - frac * span) < span / box[1]
    # zoomed in, the frame is wider on screen
    pt2 = dt.js("window.vperfetto.slicePoint('guest_frame')")
    assert pt2 and abs(pt2["y"] - pt["y"]) < 1
    # drag pans
    dt.call("Input.dispatchMouseEvent", type="mousePressed", x=600, y=pt["y"], button="left",
            clickCount=1)
    dt.call("Input.dispatchMouseEvent", type="mouseMoved", x=400, y=pt["y"], button="left")
    dt.call("Input.dispatchMouseEvent", type="mouseReleased", x=400, y=pt["y"], button="left",
            clickCount=1)
    v2 = _until_view_changes(dt, v1)
    assert v2["t0"] > v1["t0"] and abs((v2["t1"] - v2["t0"]) - (v1["t1"] - v1["t0"])) < 1
    dt.js("document.getElementById('vp-reset').click()")
    assert dt.js("window.vperfetto.view()") == {"t0": 0, "t1": span}
