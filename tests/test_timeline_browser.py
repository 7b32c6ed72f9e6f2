"""vperfetto.timeline's HTML page in a real browser (headless Chromium: the
DOM, screenshots, a hover, zoom and pan through the DevTools protocol with real
mouse input). Skipped without Chromium (.ci/run installs Debian's)."""

from __future__ import annotations

import base64
import colorsys
import json
import os
import pathlib
import re
import shutil
import struct
import subprocess
import time
import urllib.request
import zlib

import pytest

from vperfetto import timeline
from devtools import DevTools, until_view_changes, load
from timeline_traces import handmade, traces  # noqa: F401  (a fixture)

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
    path.write_bytes(handmade())
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
        client = DevTools(pages[0]["webSocketDebuggerUrl"])
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


@needs_chromium
def test_html_hover_zoom_and_screenshot_in_chromium(devtools, page, traces, tmp_path):
    dt = devtools
    load(dt, page.as_uri())
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
    v1 = until_view_changes(dt, v0)
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
    v2 = until_view_changes(dt, v1)
    assert v2["t0"] > v1["t0"] and abs((v2["t1"] - v2["t0"]) - (v1["t1"] - v1["t0"])) < 1
    dt.js("document.getElementById('vp-reset').click()")
    assert dt.js("window.vperfetto.view()") == {"t0": 0, "t1": span}
