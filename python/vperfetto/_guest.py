"""The guest's end of the link: :class:`GuestLink` (re-exported as
``vperfetto.vm.GuestLink``)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from typing import List, Optional

from . import errors, link, session
from .link import record_sync_rounds
from .tracing import instant

log = logging.getLogger("vperfetto.vm")

class GuestLink:
    """The guest's end: syncs clocks and starts host tracing on entry; on exit
    syncs again, stops host tracing and ships the guest trace (by default the
    last Session this process stopped).

    If the host cannot be reached the guest still traces locally: ``connected``
    is False and ``error`` says why.

    ``address`` may be ``serial:/dev/virtio-ports/NAME`` (a virtio-serial
    port; any character device that carries bytes both ways): the session
    then starts with the link's MAGIC and a nonce, and stale bytes a former
    session left on the port are skipped. A host that is not there yet is
    waited for up to ``timeout``.

    :meth:`ping` and :meth:`kick` are causality probes: each writes an
    instant on both sides whose order the merged trace must keep.
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
        self._probe_seq = 0
        self._features: List[str] = []

    @property
    def offset_ns(self) -> Optional[int]:
        return self.estimates[-1].offset_ns if self.estimates else None

    def __enter__(self) -> "GuestLink":
        try:
            self._ch = link.Channel(link.connect(self.address, self.timeout), frame_timeout=self.timeout)
            hello = {"version": link.PROTOCOL_VERSION, "name": self.name}
            if self.token is not None:
                hello["token"] = self.token
            if link.is_serial(self.address):
                welcome = self._serial_hello(hello)
            else:
                self._ch.send_json(link.HELLO, hello)
                welcome = self._ch.recv_json(link.WELCOME)
            self.name = welcome.get("guest", self.name)
            feats = welcome.get("features")
            self._features = [f for f in feats if isinstance(f, str)] if isinstance(feats, list) else []
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

    def _serial_hello(self, hello: dict) -> dict:
        """MAGIC + HELLO with a fresh nonce; then the host's MAGIC + WELCOME
        (or ERROR) that echoes it, skipping whatever else is on the port."""
        nonce = os.urandom(8).hex()
        hello["nonce"] = nonce
        self._ch.send_json(link.HELLO, hello, prefix=link.MAGIC)
        deadline = time.monotonic() + self.timeout
        while True:
            skipped = self._ch.seek_magic(deadline)
            if skipped:
                log.info("skipped %d stale bytes on %s", skipped, self.address)
            try:
                mtype, payload = self._ch.recv(max(0.0, deadline - time.monotonic()))
            except link.ProtocolError as e:
                if "timed out" in str(e):
                    raise
                continue   # not a frame after all: look for the next MAGIC
            try:
                obj = link._json(payload) if mtype in (link.WELCOME, link.ERROR) else None
            except link.ProtocolError:
                obj = None
            if obj is None or obj.get("nonce") != nonce:
                self._ch.unread_last()   # not ours (an earlier session's): search on
                continue
            if mtype == link.ERROR:
                raise link.ProtocolError("peer: " + str(obj.get("reason", "error")))
            return obj

    def ping(self) -> int:
        """Writes ``guest_ping`` (arg ``seq``) and sends it; the host writes
        ``host_saw_ping`` with the same seq when it reads it. Returns seq."""
        self._need("ping")
        with self._lock, self._probe_failure():
            seq = self._probe_seq
            self._probe_seq += 1
            instant("guest_ping", category="vperfetto", args={"seq": seq})
            self._ch.send_json(link.PING, {"seq": seq})
        return seq

    def kick(self) -> int:
        """Asks the host for a kick: it writes ``host_kick`` (arg ``seq``)
        just before sending it; this writes ``guest_saw_kick`` when it reads
        it. Returns seq."""
        self._need("kick")
        with self._lock, self._probe_failure():
            seq = self._probe_seq
            self._probe_seq += 1
            self._ch.send_json(link.KICK, {"seq": seq})
            got = self._ch.recv_json(link.KICK)
            instant("guest_saw_kick", category="vperfetto", args={"seq": got.get("seq")})
            if got.get("seq") != seq:
                raise link.ProtocolError(f"the host kicked {got.get('seq')!r}, not {seq}")
        return seq

    @contextlib.contextmanager
    def _probe_failure(self):
        """A probe that finds the link broken ends it (connected False, error
        says why; the guest traces on locally) and raises RuntimeError."""
        try:
            yield
        except (OSError, link.ProtocolError) as e:
            self._fail(f"lost the host: {e}")
            raise RuntimeError(f"no link to the host: {self.error}") from e

    def _need(self, feature: str) -> None:
        if not self.connected or self._ch is None:
            raise RuntimeError(f"no link to the host{': ' + self.error if self.error else ''}")
        if feature not in self._features:
            raise RuntimeError(f"the host at {self.address} does not take {feature} probes")

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
