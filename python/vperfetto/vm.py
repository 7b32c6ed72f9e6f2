"""Guest<->host tracing over a real link: clock sync, remote start/stop, trace
shipping and automatic merge.

Host (or VMM) side::

    agent = vperfetto.vm.HostAgent("tcp:0.0.0.0:7777", out_dir="traces").start()
    ...                       # guests connect; traces/vm1.combined.pftrace appear
    agent.close()

    # a virtio-serial port whose QEMU chardev is a Unix socket server:
    agent = vperfetto.vm.HostAgent(connect_vmm="unix:/run/vm1-vperfetto.sock").start()

(a VMM that connects to the host instead is served by ``HostAgent("unix:PATH")``:
a connection whose bytes start with the link's MAGIC is taken as a serial
stream, one guest session after another).

Guest side::

    with vperfetto.vm.GuestLink("serial:/dev/virtio-ports/vperfetto", name="vm1") as link:
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
from typing import List, Optional

from . import errors, link
from ._guest import GuestLink, _crash_info, crash_message, recover_guest_trace  # noqa: F401
from ._native import lib
from ._workflow import Workflow
from .link import SYNC_EVENT, record_sync_rounds
from .tracing import Session, clock_sync_marker, instant, is_tracing

__all__ = ["HostAgent", "GuestLink", "GuestResult", "Workflow", "SYNC_EVENT", "record_sync_rounds"]

log = logging.getLogger("vperfetto.vm")

_NAME_OK = re.compile(r"[^A-Za-z0-9_.-]")


def sanitize_name(name: object) -> str:
    """A guest name safe to use in a file name: [A-Za-z0-9_.-]{1,32}, no leading dot."""
    s = _NAME_OK.sub("_", name if isinstance(name, str) else "")[:32].lstrip(".")
    return s or "guest"


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
    serial: bool = False        # a session on a serial stream (MAGIC, nonce)
    nonce: Optional[str] = None
    welcomed: bool = False


# How long a VMM's serial socket is looked for again when it is not there.
VMM_RETRY_S = 0.5


class HostAgent:
    """Serves guests: syncs clocks, traces the host while guests trace, receives
    their traces and merges each into the host trace."""

    def __init__(self, listen: Optional[str] = None, out_dir: str = "traces", *,
                 connect_vmm: Optional[str] = None, token: Optional[str] = None,
                 max_upload: int = 1 << 30, max_frame: int = link.DEFAULT_MAX_FRAME,
                 max_guests: int = 16, frame_timeout: float = 30.0, idle_timeout: float = 600.0,
                 host_buffer_kb: int = 65536, trace_host: bool = True,
                 serial: Optional[bool] = None):
        if (listen is None) == (connect_vmm is None):
            raise ValueError("give one of listen (an address guests or a VMM connect to) "
                             "and connect_vmm (a VMM's serial-port socket)")
        if connect_vmm is not None:
            family, _ = link.parse_address(connect_vmm)
            if family is None:
                raise ValueError(f"connect_vmm={connect_vmm!r}: want the VMM's socket "
                                 "(unix:PATH or tcp:HOST:PORT), not the guest's serial port")
        self.listen_addr = listen
        self.vmm_addr = connect_vmm
        # listen: None -- a connection that starts with MAGIC is a serial
        # stream, any other one guest; True -- every connection is a VMM's
        # serial stream (even one whose first bytes are garbage)
        self.serial = serial
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
        self._idle_streams: set = set()   # serial streams between sessions
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
        if self.vmm_addr is not None:
            self._thread = threading.Thread(target=self._vmm_loop, name="vperfetto-vmm", daemon=True)
            self._thread.start()
            log.info("serving the VMM's serial port at %s, writing to %s", self.vmm_addr, self.out_dir)
            return self
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
        """The address guests connect to (with the real port for tcp:...:0);
        with connect_vmm, the VMM's socket."""
        if self.vmm_addr is not None:
            return self.vmm_addr
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
            while self._conns - self._idle_streams and time.monotonic() < end:
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
        return self.start() if self._thread is None else self

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

    def _vmm_loop(self) -> None:
        """connect_vmm: keeps a connection to the VMM's socket of the serial
        port (connecting again whenever it ends) and serves its stream."""
        said = False
        while True:
            with self._lock:
                if self._closing:
                    return
            try:
                conn = link.connect(self.vmm_addr, timeout=self.frame_timeout)
            except OSError as e:
                if not said:
                    log.info("waiting for the VMM at %s (%s)", self.vmm_addr, e.strerror or e)
                    said = True
                with self._lock:
                    self._cv.wait(VMM_RETRY_S)
                continue
            said = False
            with self._lock:
                if self._closing:
                    conn.close()
                    return
                self._conns.add(conn)
            log.info("connected to the VMM at %s", self.vmm_addr)
            ch = link.Channel(conn, self.max_frame, self.frame_timeout)
            try:
                self._serve_stream(ch)
            finally:
                ch.close()
                with self._lock:
                    self._conns.discard(conn)
                    self._cv.notify_all()

    def _serve(self, conn: socket.socket) -> None:
        ch = link.Channel(conn, self.max_frame, self.frame_timeout)
        try:
            try:
                # a silent connection costs no more than an idle guest's
                serial = self.serial or ch.starts_with_magic(self.idle_timeout, self.frame_timeout)
            except (link.ProtocolError, OSError) as e:
                log.warning("closing a connection before its first frame: %s", e)
                return
            if serial:
                self._serve_stream(ch)
            else:
                self._run_session(ch, _ConnState())
        finally:
            ch.close()
            with self._lock:
                self._conns.discard(conn)
                self._cv.notify_all()

    def _serve_stream(self, ch: link.Channel) -> None:
        """A serial stream: guest sessions one after another, each from a
        MAGIC; garbage between them is skipped, a session that breaks the
        protocol ends there and the next MAGIC starts a new one. Returns
        when the stream ends."""
        while True:
            with self._lock:
                if self._closing:
                    return
                self._idle_streams.add(ch.sock)
            try:
                skipped = ch.seek_magic(None)
            except (link.ProtocolError, OSError):
                return   # the VMM closed its end (or the agent is closing)
            finally:
                with self._lock:
                    self._idle_streams.discard(ch.sock)
            if skipped:
                log.warning("skipped %d bytes that were no session on the serial stream", skipped)
            try:
                self._run_session(ch, _ConnState(serial=True))
            except Exception:   # a bug here must not stop the port being served
                log.exception("internal error in a session on the serial stream; serving on")

    def _run_session(self, ch: link.Channel, st: "_ConnState") -> None:
        """One guest's session; errors end it (said to the guest and logged)."""
        try:
            self._session_with(ch, st)
        except (link.ProtocolError, OSError, ValueError) as e:
            reason = str(e) or type(e).__name__
            result = st.result
            who = result.name if result else "an unidentified guest"
            log.warning("%s of %s: %s", "ending the session" if st.serial else "closing the connection",
                        who, reason)
            try:
                err = {"reason": reason}
                if st.nonce is not None:
                    err["nonce"] = st.nonce
                # before WELCOME a serial guest is looking for a MAGIC
                prefix = link.MAGIC if st.serial and not st.welcomed else b""
                ch.send_json(link.ERROR, err, prefix=prefix)
            except OSError:
                pass
            if result is not None:
                result.error = reason
            if st.serial:
                ch.unread_last()
        finally:
            result = st.result
            with self._lock:
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
        nonce = hello.get("nonce")
        if isinstance(nonce, str) and len(nonce) <= 64:
            st.nonce = nonce
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
        welcome = {"version": link.PROTOCOL_VERSION, "guest": name,
                   "max_upload": self.max_upload, "features": ["ping", "kick"]}
        if st.nonce is not None:
            welcome["nonce"] = st.nonce
        ch.send_json(link.WELCOME, welcome, prefix=link.MAGIC if st.serial else b"")
        st.welcomed = True
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
            elif mtype == link.PING:
                seq = _probe_seq(payload)
                if is_tracing():
                    instant("host_saw_ping", category="vperfetto",
                            args={"seq": seq, "guest": result.name})
            elif mtype == link.KICK:
                seq = _probe_seq(payload)
                if is_tracing():
                    instant("host_kick", category="vperfetto", args={"seq": seq, "guest": result.name})
                ch.send_json(link.KICK, {"seq": seq})
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


def _probe_seq(payload: bytes) -> int:
    seq = link._json(payload).get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 1 << 63:
        raise link.ProtocolError("bad probe: want {\"seq\": a non-negative integer}")
    return seq
