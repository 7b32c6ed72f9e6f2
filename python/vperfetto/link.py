"""The guest<->host wire protocol and NTP-style clock synchronisation.

Frames are length-prefixed: a 5-byte header (payload length as a big-endian
uint32, then a type byte) and the payload. Control messages carry UTF-8 JSON
objects; clock-sync messages are fixed binary structs; trace uploads are raw
chunks. Every read has a deadline and every frame a size limit, so a slow or
hostile peer costs a bounded amount of time and memory.

    guest                                  host
    HELLO {version, name, token}   ->
                                   <-      WELCOME {version, max_upload, guest}
    SYNC (t1) ... x N              ->      (t2 at receive)
                                   <-      SYNC_REPLY (t1, t2, t3)   (guest: t4)
    SYNC_RESULT {rounds}           ->      (host writes them into its trace)
    START {}                       ->      (host tracing starts)
                                   <-      STARTED {}
    ... periodic SYNC bursts ...
    STOP {}                        ->      (last sync burst before it)
                                   <-      STOPPED {}
    UPLOAD {size, sha256}          ->
    CHUNK (bytes) ... CHUNK        ->
    UPLOAD_END {}                  ->
                                   <-      UPLOADED {path, bytes}
    DONE {}                        ->      (host merges)
                                   <-      BYE {combined, offset_ns, ...}

Causality probes, at any time between START and STOP (the host records
them in its trace, the guest in its own):

    PING {seq}  (guest wrote guest_ping)   ->  (host writes host_saw_ping)
    KICK {seq}                             ->  (host writes host_kick, then)
                                   <-      KICK {seq}  (guest writes guest_saw_kick)

Over a serial port (``serial:/dev/virtio-ports/NAME``) there are no
connection events: one byte stream carries guest session after guest
session, and stale or garbage bytes may sit on it. There each session starts
with MAGIC on both sides (before HELLO, and before the host's WELCOME or
ERROR), HELLO carries a nonce the host echoes, and a reader that meets a bad
frame searches for the next MAGIC. As a frame header MAGIC reads as a length
beyond any frame limit, so a session start can never pass for a frame.
"""

from __future__ import annotations

import json
import math
import socket
import statistics
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from .tracing import boot_time_ns, instant, is_tracing

PROTOCOL_VERSION = 1

HELLO, WELCOME, ERROR, SYNC, SYNC_REPLY, SYNC_RESULT = 1, 2, 3, 4, 5, 6
START, STARTED, STOP, STOPPED = 7, 8, 9, 10
UPLOAD, CHUNK, UPLOAD_END, UPLOADED, DONE, BYE = 11, 12, 13, 14, 15, 16
PING, KICK = 17, 18
TYPE_NAMES = {v: k for k, v in dict(
    HELLO=HELLO, WELCOME=WELCOME, ERROR=ERROR, SYNC=SYNC, SYNC_REPLY=SYNC_REPLY,
    SYNC_RESULT=SYNC_RESULT, START=START, STARTED=STARTED, STOP=STOP, STOPPED=STOPPED,
    UPLOAD=UPLOAD, CHUNK=CHUNK, UPLOAD_END=UPLOAD_END, UPLOADED=UPLOADED, DONE=DONE,
    BYE=BYE, PING=PING, KICK=KICK).items()}

HEADER = struct.Struct(">IB")
# Starts a session on a serial stream (see the module's docstring).
MAGIC = b"\xffVPLINK1\n"
assert HEADER.unpack_from(MAGIC)[0] > 1 << 31
# seq, t1 on BOOTTIME, MONOTONIC and the TSC (0 where there is none)
SYNC_REQ = struct.Struct(">IQQQ")
# seq, t1 (echo), t2, t3 (BOOTTIME), t2, t3 (MONOTONIC), t2, t3 (TSC)
SYNC_REP = struct.Struct(">IQQQQQQQ")

DEFAULT_MAX_FRAME = 1 << 20        # control frames and upload chunks
CHUNK_SIZE = 256 << 10


class ProtocolError(Exception):
    """The peer broke the protocol (bad frame, size, type, timing...)."""


def monotonic_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


# --- addresses ---------------------------------------------------------------

def parse_address(addr: str, listen: bool = False) -> Tuple[Optional[int], Any]:
    """'tcp:HOST:PORT', 'unix:/path', 'vsock:CID:PORT' ('vsock:PORT' to
    listen), or (the guest's end of a VMM's port) 'serial:/dev/...'.

    Returns (family, sockaddr); for serial: (None, path)."""
    kind, _, rest = addr.partition(":")
    if kind == "serial":
        if listen:
            raise ValueError(f"{addr!r}: a serial port is the guest's end; the host serves the "
                             "VMM's socket of that port (--listen unix:PATH or --connect-vmm unix:PATH)")
        if not rest:
            raise ValueError(f"bad serial address {addr!r}: want serial:/dev/virtio-ports/NAME")
        return None, rest
    if kind == "tcp":
        host, _, port = rest.rpartition(":")
        if not port.isdigit():
            raise ValueError(f"bad tcp address {addr!r}: want tcp:HOST:PORT")
        host = host.strip("[]") or ("0.0.0.0" if listen else "127.0.0.1")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return family, (host, int(port))
    if kind == "unix":
        if not rest:
            raise ValueError(f"bad unix address {addr!r}: want unix:/path")
        return socket.AF_UNIX, rest
    if kind == "vsock":
        if not hasattr(socket, "AF_VSOCK"):
            raise ValueError("vsock is not supported on this platform")
        parts = rest.split(":")
        if listen and len(parts) == 1 and parts[0].isdigit():
            return socket.AF_VSOCK, (socket.VMADDR_CID_ANY, int(parts[0]))
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise ValueError(f"bad vsock address {addr!r}: want vsock:CID:PORT (vsock:PORT to listen)")
        return socket.AF_VSOCK, (int(parts[0]), int(parts[1]))
    raise ValueError(f"unknown address kind in {addr!r}: use tcp:, unix:, vsock: or serial:")


def is_serial(addr: str) -> bool:
    return addr.startswith("serial:")


def connect(addr: str, timeout: float = 10.0) -> Any:
    """A connected socket, or for serial: a SerialPort (socket-like)."""
    family, sa = parse_address(addr)
    if family is None:
        from .serialport import SerialPort

        return SerialPort(sa, timeout)
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sa)
    except BaseException:
        s.close()
        raise
    if family in (socket.AF_INET, socket.AF_INET6):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


# --- framing ---------------------------------------------------------------------

class Channel:
    """One framed byte stream. Reads are buffered and have a per-frame
    deadline; a frame is taken off the buffer only once it is whole and
    valid, so that after a bad one a serial stream can be searched for the
    next MAGIC from where the bad frame began (:meth:`seek_magic`)."""

    def __init__(self, sock: Any, max_frame: int = DEFAULT_MAX_FRAME,
                 frame_timeout: float = 30.0):
        self.sock = sock
        self.max_frame = max_frame
        self.frame_timeout = frame_timeout
        self._buf = bytearray()
        self._last = b""     # the last frame recv() returned, whole

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, mtype: int, payload: bytes = b"", prefix: bytes = b"") -> None:
        self.sock.settimeout(self.frame_timeout)   # a peer that reads nothing costs this long
        self.sock.sendall(prefix + HEADER.pack(len(payload), mtype) + payload)

    def send_json(self, mtype: int, obj: Dict[str, Any], prefix: bytes = b"") -> None:
        self.send(mtype, json.dumps(obj, separators=(",", ":")).encode(), prefix)

    def _fill(self, n: int, deadline: Optional[float], what: str = "in the middle of a frame") -> None:
        """Reads until the buffer holds n bytes (no deadline: waits for ever)."""
        while len(self._buf) < n:
            if deadline is None:
                self.sock.settimeout(None)
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ProtocolError(f"timed out {what}")
                self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(max(n - len(self._buf), 1 << 16))
            except socket.timeout:
                raise ProtocolError(f"timed out {what}") from None
            if not chunk:
                raise ProtocolError("connection closed" + (" in the middle of a frame" if self._buf else ""))
            self._buf += chunk

    def recv(self, timeout: Optional[float] = None) -> Tuple[int, bytes]:
        """The next frame; waits at most `timeout` for it to start, then
        frame_timeout for the rest."""
        start_deadline = time.monotonic() + (timeout if timeout is not None else self.frame_timeout)
        self._last = b""
        self._fill(1, start_deadline, "waiting for a frame")
        self._fill(HEADER.size, time.monotonic() + self.frame_timeout)
        length, mtype = HEADER.unpack_from(self._buf)
        if self._buf.startswith(MAGIC[:HEADER.size]):
            raise ProtocolError("a new session started on the stream (did the guest restart?)")
        if mtype not in TYPE_NAMES:
            raise ProtocolError(f"unknown message type {mtype}")
        if length > self.max_frame:
            raise ProtocolError(f"frame of {length} bytes exceeds the limit of {self.max_frame}")
        end = HEADER.size + length
        self._fill(end, time.monotonic() + self.frame_timeout)
        self._last = bytes(self._buf[:end])
        del self._buf[:end]
        return mtype, self._last[HEADER.size:]

    def recv_json(self, expect: int, timeout: Optional[float] = None) -> Dict[str, Any]:
        mtype, payload = self.recv(timeout)
        if mtype == ERROR:
            raise ProtocolError("peer: " + _json(payload).get("reason", "error"))
        if mtype != expect:
            raise ProtocolError(f"expected {TYPE_NAMES[expect]}, got {TYPE_NAMES[mtype]}")
        return _json(payload)

    def unread_last(self) -> None:
        """Serial streams, after a frame that turned out not to belong (it
        broke the session, or answered someone else): its bytes but the first
        go back, to be searched for a MAGIC -- a frame cut short by a guest's
        reboot swallows the next session's start into its payload."""
        if self._last:
            self._buf[0:0] = self._last[1:]
            self._last = b""

    def seek_magic(self, deadline: Optional[float] = None) -> int:
        """Serial streams: drops bytes up to and including the next MAGIC
        (waits for it until `deadline`, for ever without one). Returns how
        many bytes before it were skipped."""
        skipped = 0
        while True:
            i = self._buf.find(MAGIC)
            if i >= 0:
                del self._buf[:i + len(MAGIC)]
                return skipped + i
            keep = len(MAGIC) - 1     # a MAGIC may be cut at the buffer's end
            if len(self._buf) > keep:
                skipped += len(self._buf) - keep
                del self._buf[:len(self._buf) - keep]
            self._fill(len(self._buf) + 1, deadline, "waiting for the start of a session")

    def starts_with_magic(self, first_timeout: float, rest_timeout: float) -> bool:
        """Whether the stream begins with MAGIC (a serial stream), reading no
        further than the first byte that differs; nothing is consumed."""
        deadline = time.monotonic() + first_timeout
        for n in range(1, len(MAGIC) + 1):
            self._fill(n, deadline, "waiting for a frame")
            if self._buf[:n] != MAGIC[:n]:
                return False
            if n == 1:
                deadline = time.monotonic() + rest_timeout
        return True


def _json(payload: bytes) -> Dict[str, Any]:
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError("malformed JSON payload") from None
    if not isinstance(obj, dict):
        raise ProtocolError("JSON payload is not an object")
    return obj


# --- clock sync ----------------------------------------------------------------------

@dataclass(frozen=True)
class Round:
    """One request/response: guest send, host receive, host send, guest receive
    (all CLOCK_BOOTTIME ns, each on its own side's clock), with the same four
    instants on MONOTONIC and the TSC where both sides have them."""

    t1: int
    t2: int
    t3: int
    t4: int
    mono: Optional[Tuple[int, int, int, int]] = None
    tsc: Optional[Tuple[int, int, int, int]] = None

    @property
    def delay(self) -> int:
        return (self.t4 - self.t1) - (self.t3 - self.t2)

    @property
    def offset(self) -> float:
        """guest - host: how far the guest's clock is ahead."""
        return ((self.t1 - self.t2) + (self.t4 - self.t3)) / 2

    @property
    def guest_mid(self) -> int:
        return (self.t1 + self.t4) // 2


def _offset4(q: Tuple[int, int, int, int]) -> float:
    a, b, c, d = q
    return ((a - b) + (d - c)) / 2


@dataclass
class SyncEstimate:
    offset_ns: int            # guest BOOTTIME - host BOOTTIME
    delay_ns: int             # round-trip delay of the best round
    error_bound_ns: int       # the true offset is within this of offset_ns (see estimate())
    rounds: List[Round] = field(default_factory=list)   # the rounds it used
    at_guest_ns: int = 0      # guest time of the estimate
    mono_offset_ns: Optional[int] = None   # guest MONOTONIC - host MONOTONIC
    tsc_offset: Optional[int] = None       # guest TSC - host TSC, in ticks

    def to_json(self) -> Dict[str, Any]:
        return {"offset_ns": self.offset_ns, "delay_ns": self.delay_ns,
                "error_bound_ns": self.error_bound_ns, "at_guest_ns": self.at_guest_ns,
                "mono_offset_ns": self.mono_offset_ns, "tsc_offset": self.tsc_offset,
                "rounds": [[r.t1, r.t2, r.t3, r.t4] for r in self.rounds]}


def estimate(rounds: List[Round], keep_fraction: float = 0.25, min_keep: int = 3) -> SyncEstimate:
    """Offset from the lowest-delay rounds (their median), as NTP's clock
    filter. Each round puts the true offset within half its round trip of
    its own estimate, so all of them put it in the intersection of those
    ranges: the error bound is the median's distance to that intersection's
    far end (the best round's half round trip alone understates it when the
    median is another round's). Rounds that contradict each other leave the
    widest of the kept rounds' ranges around the median."""
    good = [r for r in rounds if r.delay >= 0]
    if not good:
        raise ValueError("no usable sync rounds")
    good.sort(key=lambda r: r.delay)
    keep = good[:max(min_keep, int(len(good) * keep_fraction))]
    off = statistics.median(r.offset for r in keep)
    lo = max(r.offset - (r.delay + 1) // 2 for r in good)
    hi = min(r.offset + (r.delay + 1) // 2 for r in good)
    bound = (max(off - lo, hi - off) if lo <= hi else
             max(abs(r.offset - off) + (r.delay + 1) // 2 for r in keep))
    mono = [_offset4(r.mono) for r in keep if r.mono]
    tsc = [_offset4(r.tsc) for r in keep if r.tsc and all(r.tsc)]
    return SyncEstimate(offset_ns=round(off), delay_ns=keep[0].delay,
                        error_bound_ns=math.ceil(bound), rounds=keep,
                        at_guest_ns=round(statistics.median(r.guest_mid for r in keep)),
                        mono_offset_ns=round(statistics.median(mono)) if mono else None,
                        tsc_offset=round(statistics.median(tsc)) if tsc else None)


def sync_rounds(ch: Channel, n: int = 32, seq0: int = 0, timeout: float = 5.0) -> List[Round]:
    """Guest side: n request/response rounds."""
    rounds = []
    for i in range(n):
        seq = seq0 + i
        c1, t1, m1 = _tsc(), boot_time_ns(), monotonic_ns()
        ch.send(SYNC, SYNC_REQ.pack(seq, t1, m1, c1))
        mtype, payload = ch.recv(timeout)
        t4, m4, c4 = boot_time_ns(), monotonic_ns(), _tsc()
        if mtype != SYNC_REPLY or len(payload) != SYNC_REP.size:
            raise ProtocolError("bad SYNC_REPLY")
        rseq, e1, t2, t3, m2, m3, c2, c3 = SYNC_REP.unpack(payload)
        if rseq != seq or e1 != t1:
            raise ProtocolError("SYNC_REPLY does not answer the request")
        tsc = (c1, c2, c3, c4) if c1 and c2 else None
        rounds.append(Round(t1, t2, t3, t4, mono=(m1, m2, m3, m4), tsc=tsc))
    return rounds


def answer_sync(ch: Channel, payload: bytes, t2: int, m2: int, c2: int) -> None:
    """Host side: reply to one SYNC (t2 was read as the frame arrived)."""
    if len(payload) != SYNC_REQ.size:
        raise ProtocolError("bad SYNC payload")
    seq, t1, _m1, _c1 = SYNC_REQ.unpack(payload)
    m3, t3, c3 = monotonic_ns(), boot_time_ns(), _tsc()
    ch.send(SYNC_REPLY, SYNC_REP.pack(seq, t1, t2, t3, m2, m3, c2, c3))


def _tsc() -> int:
    from ._native import lib

    return int(lib.vp_tsc())


# --- sync rounds in the trace ----------------------------------------------------

# The trace event that carries one clock-sync round (the merge prefers these).
SYNC_EVENT = "vperfetto_clock_sync_round"


def record_sync_rounds(peer: str, rounds: List[Round]) -> None:
    """Writes sync rounds into the current trace (if one records)."""
    if not is_tracing():
        return
    for r in rounds:
        instant(SYNC_EVENT, category="vperfetto",
                args={"sync_peer": peer, "sync_t1": r.t1, "sync_t2": r.t2,
                      "sync_t3": r.t3, "sync_t4": r.t4})


# --- a guest's crash report (untrusted) ------------------------------------------

def _crash_info(obj: object) -> Dict[str, Any]:
    """A guest's crash report, untrusted: known keys with bounded values only."""
    if not isinstance(obj, dict):
        raise ProtocolError("bad crash report")
    out: Dict[str, Any] = {}
    how = obj.get("how")
    out["how"] = "".join(c for c in how if c.isprintable())[:80] if isinstance(how, str) else "unknown"
    for key in ("packets", "packets_lost"):
        v = obj.get(key)
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 64:
            out[key] = v
    return out


def crash_message(c: Dict[str, Any]) -> str:
    s = f"the guest crashed ({c.get('how', 'unknown')}): its trace was recovered from its " \
        f"crash-safe buffer"
    if "packets" in c:
        s += f" ({c['packets']} packets recovered, {c.get('packets_lost', 0)} lost)"
    return s
