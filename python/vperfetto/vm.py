"""Guest<->host tracing over a real link: clock sync, remote start/stop, trace
shipping and automatic merge.

Host (or VMM) side::

    agent = vperfetto.vm.HostAgent("tcp:0.0.0.0:7777", out_dir="traces").start()
    ...                       # guests connect; traces/vm1.combined.pftrace appear
    agent.close()

Guest side::

    with vperfetto.vm.GuestLink("tcp:10.0.2.2:7777", name="vm1") as link:
        with vperfetto.Session("guest.pftrace"):
            ...               # guest events
    print(link.result)        # where the host wrote the combined trace

The host treats every guest as untrusted: frames and uploads are bounded,
names are sanitised and the host alone picks file names inside its out dir,
every read has a deadline, an optional shared token is checked, and a peer
that misbehaves is disconnected (with the reason logged) while the others are
served. :class:`Workflow` is the original vperfetto's host-side online
workflow (enable -> disable -> combined trace), implemented in the library.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from . import errors, link, session
from ._native import ffi, lib, new_error
from .tracing import Session, clock_sync_marker, instant, is_tracing

__all__ = ["HostAgent", "GuestLink", "GuestResult", "Workflow", "SYNC_EVENT"]

log = logging.getLogger("vperfetto.vm")

# The trace event that carries one clock-sync round (the merge prefers these).
SYNC_EVENT = "vperfetto_clock_sync_round"
_NAME_OK = re.compile(r"[^A-Za-z0-9_.-]")


def sanitize_name(name: object) -> str:
    """A guest name safe to use in a file name: [A-Za-z0-9_.-]{1,32}, no leading dot."""
    s = _NAME_OK.sub("_", name if isinstance(name, str) else "")[:32].lstrip(".")
    return s or "guest"


def record_sync_rounds(peer: str, rounds) -> None:
    """Writes sync rounds into the current trace (if one records)."""
    if not is_tracing():
        return
    for r in rounds:
        instant(SYNC_EVENT, category="vperfetto",
                args={"sync_peer": peer, "sync_t1": r.t1, "sync_t2": r.t2,
                      "sync_t3": r.t3, "sync_t4": r.t4})


# --- host --------------------------------------------------------------------------

@dataclass
class GuestResult:
    name: str
    guest_trace: Optional[str] = None
    combined: Optional[str] = None
    offset_ns: Optional[int] = None     # guest - host BOOTTIME, from the link's clock sync
    error_bound_ns: Optional[int] = None
    mono_offset_ns: Optional[int] = None  # guest - host MONOTONIC
    tsc_offset: Optional[int] = None      # guest - host TSC (ticks), where both have one
    merge_method: Optional[str] = None
    complete: bool = False              # the whole trace arrived, checksum verified
    error: Optional[str] = None
    closed: bool = False                # the guest's connection has ended
    estimates: list = field(default_factory=list)
    warnings: list = field(default_factory=list)  # the merge's (e.g. the main timeline switched)
    # The guest's workload died; its trace was recovered from the crash-safe
    # buffer: {"how": "killed by SIGKILL" | "exit status 1", "packets": n,
    # "packets_lost": n} (as the guest said).
    crashed: Optional[dict] = None


@dataclass
class _ConnState:
    result: Optional[GuestResult] = None
    started: bool = False       # between START and STOP


class HostAgent:
    """Serves guests: syncs clocks, traces the host while guests trace, receives
    their traces and merges each into the host trace."""

    def __init__(self, listen: str, out_dir: str = "traces", *, token: Optional[str] = None,
                 max_upload: int = 1 << 30, max_frame: int = link.DEFAULT_MAX_FRAME,
                 max_guests: int = 16, frame_timeout: float = 30.0, idle_timeout: float = 600.0,
                 host_buffer_kb: int = 65536, trace_host: bool = True):
        self.listen_addr = listen
        self.out_dir = os.path.abspath(out_dir)
        self.token = token
        self.max_upload = max_upload
        self.max_frame = max_frame
        self.max_guests = max_guests
        self.frame_timeout = frame_timeout
        self.idle_timeout = idle_timeout
        self.host_buffer_kb = host_buffer_kb
        self.trace_host = trace_host
        self.results: List[GuestResult] = []
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._sock: Optional[socket.socket] = None
        self._thread: Optional[threading.Thread] = None
        self._closing = False
        self._conns: set = set()
        self._names: set = set()
        self._active = 0            # guests between START and STOP
        self._session: Optional[Session] = None
        self._host_trace: Optional[str] = None   # the finished host trace of the last run
        self._run = 0
        self._pending: List[GuestResult] = []    # uploaded, waiting for the host trace
        self._foreign_session = False            # another session of this process traced

    # lifecycle
    def start(self) -> "HostAgent":
        os.makedirs(self.out_dir, exist_ok=True)
        family, sa = link.parse_address(self.listen_addr, listen=True)
        s = socket.socket(family, socket.SOCK_STREAM)
        if family in (socket.AF_INET, socket.AF_INET6):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_UNIX and os.path.exists(sa):
            os.unlink(sa)
        s.bind(sa)
        s.listen(16)
        self._sock = s
        self._thread = threading.Thread(target=self._accept_loop, name="vperfetto-host", daemon=True)
        self._thread.start()
        log.info("listening on %s, writing to %s", self.address, self.out_dir)
        return self

    @property
    def address(self) -> str:
        """The address guests connect to (with the real port for tcp:...:0)."""
        family = self._sock.family
        sa = self._sock.getsockname()
        if family == socket.AF_UNIX:
            return f"unix:{sa}"
        if family == getattr(socket, "AF_VSOCK", -1):
            return f"vsock:{sa[0]}:{sa[1]}"
        host = sa[0]
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if family == socket.AF_INET else "::1"
        return f"tcp:{host}:{sa[1]}"

    def close(self, grace: float = 5.0) -> None:
        """Stops serving; finishes the host trace and pending merges. Guests
        still connected get `grace` seconds to finish before they are cut."""
        with self._lock:
            self._closing = True
        if self._sock:
            try:  # wakes the accept() of the listening thread
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                self._sock.close()
            except OSError:
                pass
        with self._lock:
            end = time.monotonic() + grace
            while self._conns and time.monotonic() < end:
                self._cv.wait(0.05)
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread:
            self._thread.join(timeout=10)
        deadline = time.monotonic() + 30
        with self._lock:
            while self._conns and time.monotonic() < deadline:
                self._cv.wait(0.1)
            self._active = 0
            self._stop_host_tracing_locked()

    def __enter__(self) -> "HostAgent":
        return self.start() if self._sock is None else self

    def __exit__(self, *exc) -> None:
        self.close()

    def wait_for(self, n: int, timeout: float = 60.0) -> List[GuestResult]:
        """Waits until n guests have finished (merged, or failed and said why)
        and returns the finished ones; raises TimeoutError when fewer than n
        finished within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                done = [r for r in self.results if r.closed and (r.combined or r.error)]
                if len(done) >= n:
                    return done
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(done)} of {n} guest(s) finished within {timeout:g} s")
                self._cv.wait(left)

    # connections
    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                if self._closing:
                    conn.close()
                    return
                if len(self._conns) >= self.max_guests:
                    log.warning("refusing a connection: %d guests already connected", len(self._conns))
                    conn.close()
                    continue
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), name="vperfetto-guest",
                             daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        ch = link.Channel(conn, self.max_frame, self.frame_timeout)
        st = _ConnState()
        try:
            self._session_with(ch, st)
        except (link.ProtocolError, OSError, ValueError) as e:
            reason = str(e) or type(e).__name__
            result = st.result
            who = result.name if result else "an unidentified guest"
            log.warning("closing the connection of %s: %s", who, reason)
            try:
                ch.send_json(link.ERROR, {"reason": reason})
            except OSError:
                pass
            if result is not None:
                result.error = reason
        finally:
            ch.close()
            result = st.result
            with self._lock:
                self._conns.discard(conn)
                if result is not None:
                    result.closed = True
                    if st.started:  # the guest died or stopped without STOP
                        self._guest_stopped_locked()
                    if result.error and result not in self.results:
                        self.results.append(result)
                    if result.guest_trace and not result.combined and result not in self._pending:
                        self._pending.append(result)   # merge what arrived
                        self._merge_pending_locked()
                self._cv.notify_all()

    def _session_with(self, ch: link.Channel, st: "_ConnState") -> None:
        hello = ch.recv_json(link.HELLO, timeout=self.frame_timeout)
        if hello.get("version") != link.PROTOCOL_VERSION:
            raise link.ProtocolError(f"unsupported protocol version {hello.get('version')!r}")
        if self.token is not None:
            tok = hello.get("token")
            if not isinstance(tok, str) or not hmac.compare_digest(tok.encode(), self.token.encode()):
                raise link.ProtocolError("bad token")
        with self._lock:
            # unique over the agent's life (not only among connected guests):
            # a later guest of the same name must not overwrite its files
            name = base = sanitize_name(hello.get("name"))
            i = 2
            while name in self._names or name == "host":
                name = f"{base}-{i}"
                i += 1
            self._names.add(name)
        result = st.result = GuestResult(name=name)
        ch.send_json(link.WELCOME, {"version": link.PROTOCOL_VERSION, "guest": name,
                                    "max_upload": self.max_upload})
        upload = None
        while True:
            mtype, payload = ch.recv(timeout=self.idle_timeout)
            if mtype == link.SYNC:
                t2, m2, c2 = lib.vp_boot_time_ns(), link.monotonic_ns(), lib.vp_tsc()
                link.answer_sync(ch, payload, t2, m2, c2)
            elif mtype == link.SYNC_RESULT:
                est = self._sync_result(result, link._json(payload))
                result.estimates.append(est)
            elif mtype == link.START:
                if st.started:
                    raise link.ProtocolError("START twice")
                with self._lock:
                    self._start_host_tracing_locked()
                    self._active += 1
                st.started = True
                ch.send_json(link.STARTED, {})
            elif mtype == link.STOP:
                if st.started:
                    with self._lock:
                        self._guest_stopped_locked()
                    st.started = False
                ch.send_json(link.STOPPED, {})
            elif mtype == link.UPLOAD:
                upload = self._receive_upload(ch, result, link._json(payload))
                ch.send_json(link.UPLOADED, {"bytes": upload})
            elif mtype == link.DONE:
                if st.started:
                    with self._lock:
                        self._guest_stopped_locked()
                    st.started = False
                with self._lock:
                    if result.guest_trace:
                        self._pending.append(result)
                        self._merge_pending_locked()
                    elif not result.error:
                        result.error = ("the guest sent no trace (its workload wrote none); "
                                        "the host kept its own")
                        log.warning("%s: %s", result.name, result.error)
                    if result not in self.results:
                        self.results.append(result)
                    self._cv.notify_all()
                ch.send_json(link.BYE, {"guest": result.name, "combined": result.combined,
                                        "offset_ns": result.offset_ns,
                                        "error_bound_ns": result.error_bound_ns,
                                        "pending": result.combined is None and result.error is None,
                                        "error": result.error, "crashed": result.crashed})
                return
            else:
                raise link.ProtocolError(f"unexpected {link.TYPE_NAMES[mtype]}")

    def _sync_result(self, result: GuestResult, obj: dict) -> link.SyncEstimate:
        raw = obj.get("rounds")
        if not isinstance(raw, list) or not raw or len(raw) > 4096:
            raise link.ProtocolError("bad SYNC_RESULT")
        rounds = []
        for r in raw:
            if (not isinstance(r, list) or len(r) != 4 or
                    not all(isinstance(x, int) and 0 <= x < 1 << 64 for x in r)):
                raise link.ProtocolError("bad sync round")
            rounds.append(link.Round(*r))
        est = link.estimate(rounds)
        for key in ("mono_offset_ns", "tsc_offset"):   # measured by the guest, reported
            v = obj.get(key)
            if isinstance(v, int) and abs(v) < 1 << 63:
                setattr(est, key, v)
        result.offset_ns, result.error_bound_ns = est.offset_ns, est.error_bound_ns
        result.mono_offset_ns, result.tsc_offset = est.mono_offset_ns, est.tsc_offset
        record_sync_rounds(result.name, est.rounds)
        log.info("%s: clock offset %d ns (+-%d ns)", result.name, est.offset_ns, est.error_bound_ns)
        return est

    def _receive_upload(self, ch: link.Channel, result: GuestResult, hdr: dict) -> int:
        size, digest = hdr.get("size"), hdr.get("sha256")
        if not isinstance(size, int) or size < 0 or not isinstance(digest, str):
            raise link.ProtocolError("bad UPLOAD header")
        if size > self.max_upload:
            raise link.ProtocolError(f"upload of {size} bytes exceeds the limit of {self.max_upload}")
        crashed = hdr.get("crashed")
        if crashed is not None:
            result.crashed = _crash_info(crashed)
            log.warning("%s: %s", result.name, crash_message(result.crashed))
        path = os.path.join(self.out_dir, f"{result.name}.guest.pftrace")
        tmp = path + ".part"
        h = hashlib.sha256()
        got = 0
        complete = False
        with open(tmp, "wb") as f:
            try:
                while True:
                    mtype, payload = ch.recv()
                    if mtype == link.CHUNK:
                        got += len(payload)
                        if got > size:
                            raise link.ProtocolError("upload longer than announced")
                        h.update(payload)
                        f.write(payload)
                    elif mtype == link.UPLOAD_END:
                        break
                    else:
                        raise link.ProtocolError(f"unexpected {link.TYPE_NAMES[mtype]} during upload")
                if got != size:
                    raise link.ProtocolError(f"upload ended after {got} of {size} bytes")
                if not hmac.compare_digest(h.hexdigest(), digest):
                    raise link.ProtocolError("upload checksum mismatch")
                complete = True
            finally:
                # keep whatever arrived: a partial trace still merges
                if got:
                    os.replace(tmp, path)
                    result.guest_trace = path
                    result.complete = complete
                else:
                    os.unlink(tmp)
        return got

    # host tracing
    def _start_host_tracing_locked(self) -> None:
        if not self.trace_host or self._session is not None:
            return
        if is_tracing():
            # Another session of this process records (one per process): no
            # trace of the agent's own to merge into. Said, not waited for.
            self._foreign_session = True
            log.warning("this process already traces (another vperfetto session): the host "
                        "cannot record a trace of its own; guest traces are kept, not merged")
            return
        self._run += 1
        path = os.path.join(self.out_dir, f"host-{self._run}.pftrace")
        self._session = Session(path, buffer_kb=self.host_buffer_kb).start()
        self._host_trace = None
        clock_sync_marker()

    def _guest_stopped_locked(self) -> None:
        self._active = max(0, self._active - 1)
        if self._active == 0:
            self._stop_host_tracing_locked()

    def _stop_host_tracing_locked(self) -> None:
        if self._session is not None:
            clock_sync_marker()
            try:
                self._host_trace = self._session.stop()
            except errors.VperfettoError as e:
                log.error("saving the host trace failed: %s", e)
            self._session = None
        self._merge_pending_locked()

    def _merge_pending_locked(self) -> None:
        if not self.trace_host:  # nothing to merge into: keep the guest traces
            for r in self._pending:
                r.error = r.error or "the host does not trace (trace_host=False): kept the guest trace"
                if r not in self.results:
                    self.results.append(r)
            self._pending = []
            self._cv.notify_all()
            return
        if self._session is None and not self._host_trace and self._foreign_session and self._active == 0:
            for r in self._pending:
                r.error = r.error or ("the host process was already tracing with another session: "
                                      "no host trace to merge into; the guest trace is kept")
                if r not in self.results:
                    self.results.append(r)
            self._pending = []
            self._cv.notify_all()
            return
        if self._session is not None or not self._host_trace:
            return
        from .merge import merge

        pending, self._pending = self._pending, []
        for r in pending:
            out = os.path.join(self.out_dir, f"{r.name}.combined.pftrace")
            try:
                rep = merge(host=self._host_trace, guests={r.name: r.guest_trace}, output=out)
                r.combined = out
                r.merge_method = rep.alignments[0].method
                r.warnings = list(rep.warnings)
                for w in r.warnings:
                    log.warning("%s: %s", r.name, w)
                if r.crashed:
                    r.warnings.insert(0, crash_message(r.crashed))
                if not r.complete:
                    r.error = "the guest trace arrived incomplete; merged what arrived"
                log.info("%s: wrote %s (%s)", r.name, out, r.merge_method)
            except errors.VperfettoError as e:
                r.error = f"merging failed: {e}"
                log.error("%s: %s", r.name, r.error)
            if r not in self.results:
                self.results.append(r)
        self._cv.notify_all()


def _crash_info(obj) -> Optional[dict]:
    """A guest's crash report, untrusted: known keys with bounded values only."""
    if not isinstance(obj, dict):
        raise link.ProtocolError("bad crash report")
    out = {}
    how = obj.get("how")
    out["how"] = "".join(c for c in how if c.isprintable())[:80] if isinstance(how, str) else "unknown"
    for key in ("packets", "packets_lost"):
        v = obj.get(key)
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 64:
            out[key] = v
    return out


def crash_message(c: dict) -> str:
    s = f"the guest crashed ({c.get('how', 'unknown')}): its trace was recovered from its " \
        f"crash-safe buffer"
    if "packets" in c:
        s += f" ({c['packets']} packets recovered, {c.get('packets_lost', 0)} lost)"
    return s


def _how_it_ended(rc: int) -> str:
    import signal

    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit status {rc}"


def recover_guest_trace(out: str, rc: int) -> Optional[dict]:
    """After the workload ended: when it died tracing into ``out`` (its
    crash image is there), the trace is recovered into ``out`` and the crash
    report for the host returned; None otherwise."""
    from . import recover as _recover

    image = _recover.image_path_for(out)
    if not os.path.isfile(image) or _recover._locked(image):  # none, or its process lives
        return None
    try:
        r = _recover.recover(image, out, remove=True)
    except errors.VperfettoError as e:
        log.error("the workload died and its trace could not be recovered from %s: %s", image, e)
        return {"how": _how_it_ended(rc)}
    info = {"how": _how_it_ended(rc), "packets": r.packets,
            "packets_lost": r.packets_lost + r.packets_skipped}
    log.warning("the workload died (%s); %s", info["how"], r.summary())
    return info


# --- guest ---------------------------------------------------------------------------

class GuestLink:
    """The guest's end: syncs clocks and starts host tracing on entry; on exit
    syncs again, stops host tracing and ships the guest trace (by default the
    last Session this process stopped).

    If the host cannot be reached the guest still traces locally: ``connected``
    is False and ``error`` says why.
    """

    def __init__(self, address: str, name: str = "guest", *, token: Optional[str] = None,
                 trace_path: Optional[str] = None, sync_rounds: int = 32,
                 resync_interval: float = 10.0, timeout: float = 10.0):
        self.address = address
        self.name = name
        self.token = token
        self.trace_path = trace_path
        # Set when the traced workload died and its trace was recovered
        # (recover_guest_trace): sent with the upload, the host says so.
        self.crashed: Optional[dict] = None
        self.sync_rounds = sync_rounds
        self.resync_interval = resync_interval
        self.timeout = timeout
        self.connected = False
        self.error: Optional[str] = None
        self.estimates: List[link.SyncEstimate] = []
        self.result: Optional[dict] = None
        self._ch: Optional[link.Channel] = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._resync: Optional[threading.Thread] = None
        self._seq = 0

    @property
    def offset_ns(self) -> Optional[int]:
        return self.estimates[-1].offset_ns if self.estimates else None

    def __enter__(self) -> "GuestLink":
        try:
            self._ch = link.Channel(link.connect(self.address, self.timeout), frame_timeout=self.timeout)
            hello = {"version": link.PROTOCOL_VERSION, "name": self.name}
            if self.token is not None:
                hello["token"] = self.token
            self._ch.send_json(link.HELLO, hello)
            welcome = self._ch.recv_json(link.WELCOME)
            self.name = welcome.get("guest", self.name)
            self.sync()
            self._ch.send_json(link.START, {})
            self._ch.recv_json(link.STARTED)
            self.connected = True
        except (OSError, link.ProtocolError, ValueError) as e:
            self._fail(f"host unreachable at {self.address}: {e}")
            return self
        if self.resync_interval:
            self._resync = threading.Thread(target=self._resync_loop, daemon=True,
                                            name="vperfetto-resync")
            self._resync.start()
        return self

    def sync(self) -> link.SyncEstimate:
        """One burst of request/response rounds; the estimate goes to the host
        and, if this process is tracing, into its trace too."""
        with self._lock:
            rounds = link.sync_rounds(self._ch, self.sync_rounds, self._seq, self.timeout)
            self._seq += len(rounds)
            est = link.estimate(rounds)
            self._ch.send_json(link.SYNC_RESULT, est.to_json())
        self.estimates.append(est)
        record_sync_rounds(self.name, est.rounds)
        return est

    def _resync_loop(self) -> None:
        while not self._stop.wait(self.resync_interval):
            try:
                self.sync()
            except (OSError, link.ProtocolError) as e:
                self._fail(f"lost the host: {e}")
                return

    def _fail(self, why: str) -> None:
        self.error = why
        self.connected = False
        log.warning("%s (tracing goes on locally)", why)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._resync:
            self._resync.join(timeout=self.timeout)
        if not self.connected or self._ch is None:
            if self._ch:
                self._ch.close()
            return
        try:
            self.sync()
            with self._lock:
                self._ch.send_json(link.STOP, {})
                self._ch.recv_json(link.STOPPED)
                path = self.trace_path or _last_stopped_trace()
                if path and self.crashed is None and os.path.isfile(path + ".vpbuf"):
                    self.crashed = recover_guest_trace(path, 0)  # died unseen by us
                if path and os.path.isfile(path):
                    self._upload(path)
                self._ch.send_json(link.DONE, {})
                self.result = self._ch.recv_json(link.BYE, timeout=max(self.timeout, 120.0))
        except (OSError, link.ProtocolError) as e:
            self._fail(f"lost the host while finishing: {e}")
        finally:
            self._ch.close()

    def _upload(self, path: str) -> None:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        size = os.path.getsize(path)
        hdr = {"size": size, "sha256": h.hexdigest()}
        if self.crashed is not None:
            hdr["crashed"] = self.crashed
        self._ch.send_json(link.UPLOAD, hdr)
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(link.CHUNK_SIZE), b""):
                self._ch.send(link.CHUNK, block)
        self._ch.send_json(link.UPLOAD_END, {})
        self._ch.recv_json(link.UPLOADED, timeout=max(self.timeout, 60.0))


def _last_stopped_trace() -> Optional[str]:
    return session._last_stopped_path


# --- the original online workflow ------------------------------------------------------

class Workflow:
    """The original vperfetto host-side workflow, shared with the C/C++ API.

    ``enable()`` starts host tracing into ``host_file``; ``disable()`` saves it
    and, in the background, once the guest trace has stopped growing, writes
    the combined trace; ``wait_saving_done()`` waits and raises if that failed.
    VPERFETTO_HOST_FILE / VPERFETTO_GUEST_FILE / VPERFETTO_COMBINED_FILE
    override the file names at enable time.
    """

    _FILES = {"host_file": 0, "guest_file": 1, "combined_file": 2}

    def __init__(self, host_file: Optional[str] = None, guest_file: Optional[str] = None,
                 combined_file: Optional[str] = None, *, verbose: bool = False,
                 poll_ms: int = 1000, timeout_ms: int = 20000):
        for attr, path in (("host_file", host_file), ("guest_file", guest_file),
                           ("combined_file", combined_file)):
            if path is not None:
                setattr(self, attr, path)
        lib.vp_vm_set_verbose(1 if verbose else 0)
        lib.vp_vm_set_guest_wait(poll_ms, timeout_ms)

    def _get(which: int):
        def get(self) -> Optional[str]:
            p = lib.vp_vm_file(which)
            return None if p == ffi.NULL else ffi.string(p).decode()

        def set_(self, path: Optional[str]) -> None:
            err = new_error()
            errors.check(lib.vp_vm_set_file(which, os.fsencode(path) if path else ffi.NULL, err), err)

        return property(get, set_)

    host_file = _get(0)
    guest_file = _get(1)
    combined_file = _get(2)
    del _get

    def set_guest_time(self, guest_boot_ns: int) -> None:
        lib.vp_vm_set_guest_time(guest_boot_ns)

    @property
    def time_diff_ns(self) -> Optional[int]:
        return lib.vp_vm_time_diff() if lib.vp_vm_has_time_diff() else None

    @time_diff_ns.setter
    def time_diff_ns(self, v: int) -> None:
        lib.vp_vm_set_time_diff(v)

    def enable(self) -> None:
        err = new_error()
        errors.check(lib.vp_vm_enable(err), err)

    def disable(self) -> None:
        err = new_error()
        errors.check(lib.vp_vm_disable(err), err)

    @property
    def enabled(self) -> bool:
        return bool(lib.vp_vm_is_enabled())

    @property
    def saving(self) -> bool:
        return bool(lib.vp_vm_is_saving())

    def wait_saving_done(self) -> None:
        err = new_error()
        errors.check(lib.vp_vm_wait_saving_done(err), err)


# --- command line ------------------------------------------------------------------

def main_host(argv=None) -> int:
    """python -m vperfetto host --listen ADDR --out-dir DIR [--token T] [--once]"""
    from ._cli import Parser
    import signal

    ap = Parser(prog="python -m vperfetto host",
                                 description="Serve guests: sync clocks, trace the host, merge.")
    ap.add_argument("--listen", required=True, help="tcp:HOST:PORT, unix:/path or vsock:PORT")
    ap.add_argument("--out-dir", default="traces")
    ap.add_argument("--token", help="shared token guests must present")
    ap.add_argument("--max-upload-mb", type=int, default=1024)
    ap.add_argument("--once", action="store_true", help="exit after the first guest finished")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        agent = HostAgent(a.listen, a.out_dir, token=a.token,
                          max_upload=a.max_upload_mb << 20).start()
    except (OSError, ValueError) as e:
        print(f"python -m vperfetto host: error: {e}", file=__import__("sys").stderr)
        return 2
    print(f"listening on {agent.address}; traces go to {agent.out_dir}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.is_set():
            if a.once:
                try:
                    agent.wait_for(1, timeout=0.2)
                    break
                except TimeoutError:
                    pass
            stop.wait(0.2)
    except KeyboardInterrupt:
        pass
    agent.close()
    for r in agent.results:
        print(f"{r.name}: {r.combined or '-'} offset {r.offset_ns} ns "
              f"(+-{r.error_bound_ns} ns){' error: ' + r.error if r.error else ''}", flush=True)
        for w in r.warnings:
            print(f"{r.name}: warning: {w}", flush=True)
    return 0


def main_guest(argv=None) -> int:
    """python -m vperfetto guest --connect ADDR --name NAME [--token T] [--out F] -- CMD..."""
    import argparse

    from ._cli import Parser
    import subprocess
    import sys
    import tempfile

    ap = Parser(prog="python -m vperfetto guest",
                                 description="Run a command traced, on the host's timeline.")
    ap.add_argument("--connect", required=True, help="tcp:HOST:PORT, unix:/path or vsock:CID:PORT")
    ap.add_argument("--name", default="guest")
    ap.add_argument("--token")
    ap.add_argument("--out", help="where the guest trace is kept (default: a temporary file)")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not cmd:
        ap.error("give the command to run after --")
    try:
        link.parse_address(a.connect)
    except ValueError as e:
        ap.error(str(e))
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    out = a.out or os.path.join(tempfile.mkdtemp(prefix="vperfetto-guest-"), f"{sanitize_name(a.name)}.pftrace")
    # The workload's vperfetto (imported by it) streams into `out` from its start.
    env = dict(os.environ, VPERFETTO_AUTOSTART=out)
    with GuestLink(a.connect, a.name, token=a.token, trace_path=out) as gl:
        try:
            rc = subprocess.call(cmd, env=env)
        except OSError as e:  # not found, not executable
            print(f"python -m vperfetto guest: error: cannot run {cmd[0]!r}: "
                  f"{e.strerror or e}", file=sys.stderr)
            rc = 2
        # A workload that died tracing left its crash-safe buffer: its trace
        # is recovered into `out` and shipped, and the host is told.
        gl.crashed = recover_guest_trace(out, rc)
    wrote = os.path.isfile(out) and os.path.getsize(out) > 0
    if not wrote:
        print(f"python -m vperfetto guest: the command wrote no trace (did it import vperfetto, "
              f"or write a Perfetto trace to {out}?)", file=sys.stderr)
    if gl.error:
        print(f"host link: {gl.error}" + (f"; the guest trace is in {out}" if wrote else ""),
              file=sys.stderr)
    elif gl.result:
        r = gl.result
        if r.get("crashed"):
            print(f"host: {crash_message(r['crashed'])}", file=sys.stderr)
        if r.get("error"):
            print(f"host: {r['error']}", file=sys.stderr)
        if r.get("combined"):
            print(f"guest trace {out}; host wrote {r['combined']}; offset {gl.offset_ns} ns",
                  flush=True)
    return 128 - rc if rc < 0 else rc  # killed by signal N: 128 + N, as a shell says
