"""Open a trace in the Perfetto UI (ui.perfetto.dev) from the command line.

    python -m vperfetto.open combined.pftrace [--port 9001] [--no-browser]

This follows the convention of Perfetto's own ``tools/open_trace_in_ui``:
the file is served on http://127.0.0.1:9001/NAME (the one port the UI's
content security policy lets it fetch from; trace_processor's ``--httpd``
uses it too) with ``Access-Control-Allow-Origin: https://ui.perfetto.dev``,
and the UI is opened on the deep link

    https://ui.perfetto.dev/#!/?url=http://127.0.0.1:9001/NAME&referrer=vperfetto

Only that one file is served (anything else is 404; there is no directory
listing); CORS preflights (OPTIONS) are answered, including Chrome's
private-network access. The server exits after the file was fetched once
completely, on Ctrl-C, or after ``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import errno
import http.server
import os
import re
import sys
import threading
import time
import webbrowser
from typing import Any, Optional, Sequence, TextIO, Tuple, Union

from ._cli import Parser as _Parser

__all__ = ["serve", "deep_link", "main", "UI_ORIGIN", "DEFAULT_PORT"]

UI_ORIGIN = "https://ui.perfetto.dev"
DEFAULT_PORT = 9001
_CHUNK = 1 << 20


def url_name(path: Union[str, "os.PathLike[str]"]) -> str:
    """The name the file is served under: its base name, reduced to
    characters that need no escaping in the UI's ``url=`` parameter."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(os.fspath(path)))
    return name.strip(".") or "trace"


def deep_link(url: str, origin: str = UI_ORIGIN) -> str:
    """The Perfetto UI link that opens the trace served at ``url``."""
    return f"{origin.rstrip('/')}/#!/?url={url}&referrer=vperfetto"


class _Server(http.server.HTTPServer):
    allow_reuse_address = True   # a listener in TIME_WAIT only, never a live one

    def __init__(self, addr: Tuple[str, int], path: str, name: str, origin: str, size: int,
                 log: TextIO) -> None:
        self.trace_path = path
        self.trace_name = name
        self.allow_origin = origin
        self.trace_size = size
        self.log = log
        self.fetched = False
        super().__init__(addr, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:  # a client that went away
        pass


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    timeout = 30            # a stalled client does not hold the single-threaded server forever
    def version_string(self) -> str:
        return "vperfetto-open"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (quiet: one line per fetch)
        pass

    def _cors(self) -> None:
        self.send_header("Access-Control-Allow-Origin", self.server.allow_origin)
        self.send_header("Cache-Control", "no-cache")

    def _not_found(self) -> None:
        body = b"not found\n"
        self.send_response(404)
        self._cors()
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _is_trace(self) -> bool:
        return self.path == "/" + self.server.trace_name

    def do_OPTIONS(self) -> None:
        self.send_response(204)
        self._cors()
        self.send_header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
        req = self.headers.get("Access-Control-Request-Headers")
        if req:
            self.send_header("Access-Control-Allow-Headers", req)
        if (self.headers.get("Access-Control-Request-Private-Network") or "").lower() == "true":
            # Chrome asks before a public https page reads from 127.0.0.1
            self.send_header("Access-Control-Allow-Private-Network", "true")
        self.send_header("Access-Control-Max-Age", "86400")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self) -> None:
        if not self._is_trace():
            return self._not_found()
        self.send_response(200)
        self._cors()
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(self.server.trace_size))
        self.end_headers()

    def do_GET(self) -> None:
        if not self._is_trace():
            return self._not_found()
        try:
            f = open(self.server.trace_path, "rb")
        except OSError:
            self.send_error(500, "cannot read the trace")
            return
        with f:
            size = os.fstat(f.fileno()).st_size
            self.send_response(200)
            self._cors()
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            sent = 0
            while sent < size:
                chunk = f.read(min(_CHUNK, size - sent))
                if not chunk:
                    break
                self.wfile.write(chunk)
                sent += len(chunk)
            self.wfile.flush()
        if sent == size:
            self.server.fetched = True
            print(f"served {self.server.trace_name} ({size:,} bytes) to {self.client_address[0]}",
                  file=self.server.log, flush=True)

    def do_POST(self) -> None:
        self._not_found()

    do_PUT = do_DELETE = do_PATCH = do_POST


def serve(path: Union[str, "os.PathLike[str]"], port: int = DEFAULT_PORT, host: str = "127.0.0.1", open_browser: bool = False,
          timeout: Optional[float] = None, origin: str = UI_ORIGIN,
          out: Optional[TextIO] = None, err: Optional[TextIO] = None) -> int:
    """Serves ``path`` for the Perfetto UI until it was fetched once.

    Prints the deep link (and opens it in a browser with ``open_browser``).
    Returns 0 after the file was fetched completely, 1 on timeout, 130 on
    Ctrl-C, and 2 (with one line on ``err``) when the file cannot be read or
    the port cannot be bound. ``port=0`` picks a free port (the printed link
    says which; the public UI fetches only from port 9001).
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    prog = "python -m vperfetto.open"
    path = os.path.abspath(os.fspath(path))
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            f.read(1)
        if not os.path.isfile(path):
            raise IsADirectoryError(errno.EISDIR, "not a regular file", path)
    except OSError as e:
        print(f"{prog}: error: cannot read {path}: {e.strerror or e}", file=err)
        return 2
    name = url_name(path)
    try:
        httpd = _Server((host, port), path, name, origin, st.st_size, out)
    except OSError as e:
        why = "is in use" if e.errno == errno.EADDRINUSE else f"cannot be bound ({e.strerror or e})"
        hint = " (is trace_processor --httpd or another open running?)" if e.errno == errno.EADDRINUSE else ""
        print(f"{prog}: error: port {port} on {host} {why}{hint}", file=err)
        return 2
    with httpd:
        real_port = httpd.server_address[1]
        shown_host = f"[{host}]" if ":" in host else host
        url = f"http://{shown_host}:{real_port}/{name}"
        link = deep_link(url, origin)
        if real_port != DEFAULT_PORT and origin == UI_ORIGIN:
            print(f"{prog}: note: ui.perfetto.dev only fetches from 127.0.0.1:{DEFAULT_PORT}; "
                  f"port {real_port} needs another client or UI", file=err)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:  # (from the first line printed: a Ctrl-C right after it is caught too)
            print(f"serving {path} as {url}", file=out)
            print(f"open the trace in the Perfetto UI: {link}", file=out, flush=True)
            if open_browser:
                # in a thread: a console browser would otherwise block the server it needs
                threading.Thread(target=_open_browser, args=(link,), daemon=True).start()
            while not httpd.fetched:
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        print(f"{prog}: timed out after {timeout:g} s; the trace was not fetched",
                              file=err)
                        return 1
                    httpd.timeout = min(left, 0.5)
                else:
                    httpd.timeout = 0.5
                httpd.handle_request()
        except KeyboardInterrupt:
            print("stopped (Ctrl-C)", file=err)
            return 130
    return 0


def _open_browser(link: str) -> None:
    try:
        webbrowser.open_new_tab(link)
    except Exception:  # noqa: BLE001 (no browser: the printed link is enough)
        pass




def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = _Parser(prog="python -m vperfetto.open",
                 description="Serve a trace for ui.perfetto.dev and print (and open) the link; "
                             "exits once the UI fetched it.")
    ap.add_argument("trace")
    ap.add_argument("--port", type=int, default=DEFAULT_PORT,
                    help="port on 127.0.0.1 (default 9001, the port the Perfetto UI allows)")
    ap.add_argument("--host", default="127.0.0.1", help=argparse.SUPPRESS)
    ap.add_argument("--no-browser", action="store_true", help="only print the link")
    ap.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                    help="give up after this long (exit 1)")
    ap.add_argument("--origin", default=UI_ORIGIN,
                    help="the UI's origin, for a self-hosted Perfetto UI (default %(default)s)")
    a = ap.parse_args(argv)
    if not 0 <= a.port <= 65535:
        ap.error("--port must be 0..65535")
    return serve(a.trace, port=a.port, host=a.host, open_browser=not a.no_browser,
                 timeout=a.timeout, origin=a.origin)


if __name__ == "__main__":
    sys.exit(main())
