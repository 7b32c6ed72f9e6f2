"""python -m vperfetto.open: the trace served the Perfetto way, fetched by a real HTTP client."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from vperfetto import open as vopen

ORIGIN = "https://ui.perfetto.dev"
LINK = re.compile(r"https://ui\.perfetto\.dev/#!/\?url=(http://127\.0\.0\.1:(\d+)/([A-Za-z0-9._-]+))"
                  r"&referrer=vperfetto$")


@pytest.fixture
def trace(tmp_path):
    p = tmp_path / "combined.pftrace"
    p.write_bytes(os.urandom(2_500_000))   # more than one 1 MiB chunk
    return p


def _start(path, *extra):
    """Runs the CLI; returns (process, deep link, file URL)."""
    proc = subprocess.Popen([sys.executable, "-m", "vperfetto.open", str(path), "--port", "0",
                             "--no-browser", "--timeout", "60", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"(https://ui\.perfetto\.dev/\S+)", line)
        if m:
            link = m.group(1)
            lm = LINK.match(link)
            assert lm, link
            return proc, link, lm.group(1)
    proc.kill()
    raise AssertionError(f"no link printed: {lines!r} {proc.stderr.read()!r}")


def _get(url, method="GET", headers=None):
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_serves_the_file_once_with_cors_and_exits(trace):
    proc, link, url = _start(trace)
    try:
        assert url.endswith("/combined.pftrace")
        # other paths: 404, the server keeps running
        base = url.rsplit("/", 1)[0]
        for bad in ("/", "/combined.pftrace/", "/combined.pftrace?x=1", "/../combined.pftrace",
                    "/%2e%2e/etc/passwd", "/etc/passwd", "/COMBINED.pftrace", "/rpc"):
            status, headers, _ = _get(base + bad)
            assert status == 404, bad
            assert headers.get("Access-Control-Allow-Origin") == ORIGIN
        # the UI's CORS preflight, with Chrome's private-network request
        status, headers, body = _get(url, "OPTIONS", {
            "Origin": ORIGIN, "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "range",
            "Access-Control-Request-Private-Network": "true"})
        assert status == 204 and body == b""
        assert headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "GET" in headers["Access-Control-Allow-Methods"]
        assert headers["Access-Control-Allow-Headers"] == "range"
        assert headers["Access-Control-Allow-Private-Network"] == "true"
        # HEAD does not count as the fetch
        status, headers, body = _get(url, "HEAD")
        assert status == 200 and body == b""
        assert int(headers["Content-Length"]) == trace.stat().st_size
        assert proc.poll() is None
        # the fetch
        status, headers, body = _get(url, headers={"Origin": ORIGIN})
        assert status == 200
        assert headers["Access-Control-Allow-Origin"] == ORIGIN
        assert headers["Content-Length"] == str(trace.stat().st_size)
        assert body == trace.read_bytes()
        assert proc.wait(timeout=10) == 0
        out = proc.stdout.read()
        assert "served combined.pftrace" in out
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    # gone: nothing listens there any more
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=5)


def test_names_that_need_escaping_are_served_under_a_safe_name(tmp_path):
    p = tmp_path / "my trace & (1)#x.pftrace"
    p.write_bytes(b"\x0a\x00" * 100)
    proc, link, url = _start(p)
    try:
        assert url.endswith("/my_trace____1__x.pftrace")
        assert _get(url)[2] == p.read_bytes()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()


class _Lines(io.TextIOBase):
    """A thread-safe stdout stand-in that signals when the link was printed."""

    def __init__(self):
        self.text = ""
        self.link = threading.Event()

    def write(self, s):
        self.text += s
        if "ui.perfetto.dev" in s:
            self.link.set()
        return len(s)


def _free(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as the server: TIME_WAIT is no owner
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def test_serve_default_port_9001_in_process(trace):
    """The convention itself: 127.0.0.1:9001, the link the UI understands."""
    if not _free(9001):
        pytest.skip("port 9001 is busy on this machine (trace_processor --httpd?)")
    out, err = _Lines(), io.StringIO()
    result = {}
    th = threading.Thread(target=lambda: result.setdefault("rc", vopen.serve(trace, timeout=60,
                                                                             out=out, err=err)))
    th.start()
    assert out.link.wait(10), err.getvalue()
    url = "http://127.0.0.1:9001/combined.pftrace"
    assert f"{ORIGIN}/#!/?url={url}&referrer=vperfetto" in out.text
    status, headers, body = _get(url)
    th.join(10)
    assert not th.is_alive()
    assert result["rc"] == 0 and status == 200 and body == trace.read_bytes()
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert err.getvalue() == ""


def test_deep_link_form():
    assert vopen.deep_link("http://127.0.0.1:9001/a.pftrace") == \
        "https://ui.perfetto.dev/#!/?url=http://127.0.0.1:9001/a.pftrace&referrer=vperfetto"
    assert vopen.url_name("/x/../weird name.pftrace") == "weird_name.pftrace"
    assert vopen.url_name("/x/...") == "trace"


def test_missing_file_exits_2_with_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "vperfetto.open", str(tmp_path / "nope.pftrace"),
                        "--no-browser"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stdout == ""
    assert len(r.stderr.splitlines()) == 1 and "nope.pftrace" in r.stderr


def test_directory_exits_2(tmp_path):
    err = io.StringIO()
    assert vopen.serve(tmp_path, port=0, out=io.StringIO(), err=err) == 2
    assert len(err.getvalue().splitlines()) == 1


def test_unreadable_file_exits_2(trace):
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    trace.chmod(0)
    err = io.StringIO()
    assert vopen.serve(trace, port=0, out=io.StringIO(), err=err) == 2
    assert len(err.getvalue().splitlines()) == 1


def test_port_in_use_exits_2(trace):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        r = subprocess.run([sys.executable, "-m", "vperfetto.open", str(trace), "--port", str(port),
                            "--no-browser"], capture_output=True, text=True, timeout=30)
    finally:
        s.close()
    assert r.returncode == 2
    assert len(r.stderr.splitlines()) == 1
    assert f"port {port}" in r.stderr and "in use" in r.stderr


def test_timeout_exits_1_without_a_fetch(trace):
    err = io.StringIO()
    t0 = time.monotonic()
    assert vopen.serve(trace, port=0, timeout=0.3, out=io.StringIO(), err=err) == 1
    assert time.monotonic() - t0 < 5
    assert "timed out" in err.getvalue()


def test_bad_arguments_exit_2():
    r = subprocess.run([sys.executable, "-m", "vperfetto.open"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1


def test_ctrl_c_stops_it(trace):
    proc, link, url = _start(trace)  # (returns once it printed the link: it serves)
    try:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 130
        assert "stopped" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()
