"""Rebuild the trace of a process that died while tracing.

    python -m vperfetto.recover trace.pftrace.vpbuf -o trace.pftrace
    python -m vperfetto.recover trace.pftrace.vpbuf              # into the dead session's own path

A crash-safe Session (the default) keeps its buffer in ``PATH.vpbuf``, a
file mapped shared; a process killed by a signal, a segfault or
``os._exit`` leaves it behind with every packet it had completed. This
rebuilds a valid trace from it: chunks in order per writer sequence, a packet
half-written at the crash dropped, ``previous_packet_dropped`` where chunks
are missing, trace stats saying what was recovered and lost, and a
``vperfetto crash recovery`` track. The image is removed once the trace is
written (``--keep`` keeps it); an image whose process still runs is read as
it is now and kept. A new Session on ``PATH`` does the same by itself.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sys
from dataclasses import asdict, dataclass
from typing import Optional

from . import errors
from ._cli import Parser as _Parser
from ._native import ffi, lib, new_error

__all__ = ["Recovery", "recover", "image_path_for", "main"]

SUFFIX = ".vpbuf"
_MODES = {0: "ring", 1: "discard", 2: "stream"}


@dataclass
class Recovery:
    output: str                # the trace written
    image: str
    image_version: int
    pid: int                   # the process that died
    mode: str                  # its buffer mode
    session_output: str        # where that session was writing
    sequences: int
    packets: int               # recovered from the image
    bytes: int
    chunks: int
    stream_bytes: int          # stream mode: kept from the session's output file
    packets_lost: int          # overwritten or dropped while it ran
    packets_skipped: int       # malformed, or lost their incremental state
    chunks_lost: int
    last_timestamp_ns: int
    process_alive: bool = False  # the image was still locked: read as it is now
    removed: bool = False

    def summary(self) -> str:
        s = (f"recovered {self.packets} packets of process {self.pid} ({self.mode} mode"
             f"{', ' + format(self.stream_bytes, ',') + ' bytes from its output file' if self.stream_bytes else ''})"
             f" into {self.output}")
        lost = self.packets_lost + self.packets_skipped
        if lost or self.chunks_lost:
            s += f"; {lost} packets lost ({self.packets_lost} while it ran, " \
                 f"{self.packets_skipped} at recovery)"
        if self.process_alive:
            s += "; the process still runs: the image is kept"
        return s


def image_path_for(trace_path) -> str:
    """The crash image of a session writing ``trace_path``."""
    return os.fspath(trace_path) + SUFFIX


def _locked(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError as e:
        return e.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    finally:
        os.close(fd)


def recover(image, output=None, *, remove: bool = False) -> Recovery:
    """Writes the trace recovered from crash image ``image`` to ``output``
    (default: the dead session's own output path) and says what it found.
    ``remove``: delete the image afterwards (not while its process runs).
    Raises TraceFormatError for a corrupt image, UnsupportedError for a newer
    format version, TraceIOError when a file cannot be read or written."""
    image = os.fspath(image)
    if not isinstance(image, str):
        raise TypeError("image must be a str or os.PathLike of str")
    out = "" if output is None else os.fspath(output)
    if not isinstance(out, str):
        raise TypeError("output must be a str or os.PathLike of str")
    if not os.path.isfile(image):
        raise errors.TraceIOError(f"no crash image at '{image}'", 3)
    alive = _locked(image)
    rep = ffi.new("vp_recovery*")
    err = new_error()
    errors.check(lib.vp_recover(image.encode("utf-8", "surrogateescape"),
                                out.encode("utf-8", "surrogateescape"), rep, err), err)
    session_output = ffi.string(rep.session_output).decode("utf-8", "surrogateescape")
    r = Recovery(output=out or session_output, image=image, image_version=rep.image_version,
                 pid=rep.pid, mode=_MODES.get(rep.mode, str(rep.mode)),
                 session_output=session_output, sequences=rep.sequences, packets=rep.packets,
                 bytes=rep.bytes, chunks=rep.chunks, stream_bytes=rep.stream_bytes,
                 packets_lost=rep.packets_lost, packets_skipped=rep.packets_skipped,
                 chunks_lost=rep.chunks_lost, last_timestamp_ns=rep.last_timestamp_ns,
                 process_alive=alive)
    if remove and not alive:
        try:
            os.unlink(image)
            r.removed = True
        except OSError:
            pass
    return r


def main(argv=None) -> int:
    ap = _Parser(prog="python -m vperfetto.recover",
                 description="Rebuild the trace of a process that died while tracing, "
                             "from its crash-safe buffer (TRACE.vpbuf).")
    ap.add_argument("image", help="the crash image, e.g. trace.pftrace.vpbuf")
    ap.add_argument("-o", "--output", help="where the trace goes (default: the path the "
                                           "dead session was writing)")
    ap.add_argument("--keep", action="store_true", help="keep the image after recovering")
    ap.add_argument("--json", action="store_true", help="print what was recovered as JSON")
    ap.add_argument("-q", "--quiet", action="store_true")
    a = ap.parse_args(argv)
    try:
        r = recover(a.image, a.output, remove=not a.keep)
    except (errors.VperfettoError, OSError) as e:
        print(f"python -m vperfetto.recover: error: {e}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps(asdict(r), indent=2))
    elif not a.quiet:
        print(r.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
