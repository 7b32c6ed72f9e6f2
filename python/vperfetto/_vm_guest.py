"""The guest side of guest<->host tracing (vperfetto.vm.GuestLink): connects
to a HostAgent, syncs clocks (again every resync_interval), starts and stops
host tracing and ships this process's trace at the end."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from typing import Any, Dict, List, Optional

from . import errors, link, session
from .link import record_sync_rounds

__all__ = ["GuestLink"]

log = logging.getLogger("vperfetto.vm")


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
        self.crashed: Optional[Dict[str, Any]] = None
        self.sync_rounds = sync_rounds
        self.resync_interval = resync_interval
        self.timeout = timeout
        self.connected = False
        self.error: Optional[str] = None
        self.estimates: List[link.SyncEstimate] = []
        self.result: Optional[Dict[str, Any]] = None
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
            if self._ch is None:
                raise errors.TracingStateError("the GuestLink is not connected (use it in a `with` block)")
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

    def __exit__(self, *exc: object) -> None:
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
        assert self._ch is not None, "not connected"
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        size = os.path.getsize(path)
        hdr: Dict[str, Any] = {"size": size, "sha256": h.hexdigest()}
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


def _how_it_ended(rc: int) -> str:
    import signal

    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit status {rc}"


def recover_guest_trace(out: str, rc: int) -> Optional[Dict[str, Any]]:
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
    info: Dict[str, Any] = {"how": _how_it_ended(rc), "packets": r.packets,
                            "packets_lost": r.packets_lost + r.packets_skipped}
    log.warning("the workload died (%s); %s", info["how"], r.summary())
    return info
