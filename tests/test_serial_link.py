"""The link over a serial port: the guest opens a character device
(``serial:/dev/...``), the host serves the VMM's socket of that port. Here a
pty stands in for the guest's /dev/virtio-ports/NAME and a bridge thread for
QEMU's chardev (as a Unix socket server, or a client that reconnects), so
that everything a VMM does to the byte stream -- no connection events, one
session after another, stale and garbage bytes, the host side coming and
going -- can be done on purpose. tests/test_qemu_e2e.py runs the real thing."""

from __future__ import annotations

import errno
import os
import pty
import select
import socket
import subprocess
import sys
import textwrap
import threading
import time
import tty

import pytest

import vperfetto
from vperfetto import link
from vperfetto.serialport import SerialPort
from vperfetto.vm import GuestLink, HostAgent
from conftest import descriptors, load_trace, resolve


class FakeVMM:
    """A virtio-serial port: a pty (the guest's end) bridged to a Unix socket
    (the host's end). server=True: the socket is the VMM's server (QEMU
    server=on; the host agent uses connect_vmm); otherwise the VMM connects
    to `host_path` and connects again when that connection ends (QEMU
    reconnect=1)."""

    def __init__(self, sock_path, server=True):
        self.master, self._slave = pty.openpty()
        tty.setraw(self._slave)          # raw before any byte flows; kept open
        self.port = os.ttyname(self._slave)
        self.path = str(sock_path)
        self.server = server
        self._stop_r, self._stop_w = os.pipe()
        self._lsock = None
        if server:
            self._lsock = socket.socket(socket.AF_UNIX)
            self._lsock.bind(self.path)
            self._lsock.listen(1)
        self.conn = None
        self.connections = 0
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _next_conn(self):
        while True:
            if self.server:
                r, _, _ = select.select([self._lsock, self._stop_r], [], [])
                if self._stop_r in r:
                    return None
                c, _ = self._lsock.accept()
                return c
            c = socket.socket(socket.AF_UNIX)
            try:
                c.connect(self.path)
                return c
            except OSError:
                c.close()
                r, _, _ = select.select([self._stop_r], [], [], 0.05)
                if r:
                    return None

    def _run(self):
        # What the guest wrote while the host side was going away: a Linux
        # guest's writes wait while the host is not connected, so they reach
        # the next host connection, not nowhere.
        held = b""
        while True:
            c = self._next_conn()
            if c is None:
                return
            self.conn = c
            self.connections += 1
            try:
                if held:
                    c.sendall(held)
                    held = b""
                while True:
                    r, _, _ = select.select([self.master, c, self._stop_r], [], [])
                    if self._stop_r in r:
                        return
                    if self.master in r:
                        try:
                            data = os.read(self.master, 65536)
                        except OSError:
                            data = b""
                        if data:
                            try:
                                c.sendall(data)
                            except OSError:
                                held += data
                                raise
                    if c in r:
                        data = c.recv(65536)
                        if not data:
                            break      # the host side went away: wait for the next
                        os.write(self.master, data)
            except OSError:
                pass
            finally:
                self.conn = None
                c.close()

    def drop_host(self):
        """Cuts the current host connection (an agent restart, say)."""
        c = self.conn
        if c is not None:
            c.shutdown(socket.SHUT_RDWR)

    def close(self):
        os.write(self._stop_w, b"x")
        self._t.join(10)
        for fd in (self.master, self._slave, self._stop_r, self._stop_w):
            os.close(fd)
        if self._lsock:
            self._lsock.close()


@pytest.fixture(params=["connect_vmm", "listen"])
def vmm_and_agent(request, tmp_path):
    """(vmm, agent) for both conventions: QEMU's chardev as the server the
    agent connects to, and as the client of the agent's listening socket."""
    sock = tmp_path / "vm.sock"
    made = []

    def make(**kw):
        kw.setdefault("trace_host", False)
        if request.param == "connect_vmm":
            vmm = FakeVMM(sock, server=True)
            agent = HostAgent(None, str(tmp_path / "traces"), connect_vmm=f"unix:{sock}", **kw).start()
        else:   # said to be a VMM's socket: garbage first must not pass for a guest
            agent = HostAgent(f"unix:{sock}", str(tmp_path / "traces"), serial=True, **kw).start()
            vmm = FakeVMM(sock, server=False)
        made.append((vmm, agent))
        return vmm, agent

    yield make
    for vmm, agent in made:
        agent.close(grace=0)
        vmm.close()


def _trace_file(tmp_path, name="t.pftrace", n=50):
    p = tmp_path / name
    with vperfetto.Session(p):
        for i in range(n):
            vperfetto.instant("x", args={"i": i})
    vperfetto.session._last_stopped_path = None
    return str(p)


def _good_session(vmm, trace, name="good", timeout=20):
    with GuestLink(f"serial:{vmm.port}", name=name, trace_path=trace, resync_interval=0,
                   timeout=timeout) as gl:
        pass
    return gl


def test_a_guest_session_over_the_port(vmm_and_agent, tmp_path):
    vmm, agent = vmm_and_agent()
    gl = _good_session(vmm, _trace_file(tmp_path))
    assert gl.error is None and gl.connected
    (res,) = agent.wait_for(1, 30)
    assert res.name == "good" and res.complete and os.path.getsize(res.guest_trace) > 0
    assert abs(res.offset_ns) < 50_000_000      # one machine: the clocks agree


def test_sessions_one_after_another_on_one_stream(vmm_and_agent, tmp_path):
    vmm, agent = vmm_and_agent()
    for i in range(3):
        assert _good_session(vmm, _trace_file(tmp_path), name=f"g{i}").error is None
    results = agent.wait_for(3, 30)
    assert sorted(r.name for r in results) == ["g0", "g1", "g2"]
    assert all(r.complete and r.error == "the host does not trace (trace_host=False): kept the guest trace"
               for r in results)
    assert vmm.connections == 1          # one byte stream carried them all


def _evil_session(port, frames: bytes, handshake=True):
    """A misbehaving guest on the port: MAGIC + HELLO (answered), then `frames`."""
    sp = SerialPort(port, timeout=10)
    try:
        if handshake:
            ch = link.Channel(sp, frame_timeout=10)
            nonce = "evil-nonce"
            ch.send_json(link.HELLO, {"version": 1, "name": "evil", "nonce": nonce}, prefix=link.MAGIC)
            ch.seek_magic(time.monotonic() + 10)
            assert ch.recv_json(link.WELCOME)["nonce"] == nonce
        sp.sendall(frames)
    finally:
        sp.close()


H = link.HEADER.pack


def F(mtype, body: bytes) -> bytes:
    return H(len(body), mtype) + body


ATTACKS = {
    # garbage with no session at all
    "garbage": (False, os.urandom(4096)),
    "frames_without_magic": (False, F(link.HELLO, b"x" * 10) + F(link.START, b"")),
    # a session start followed by a bad frame (each as test_vm_link's hostile peers)
    "oversized": (False, link.MAGIC + H(1 << 30, link.HELLO)),
    "truncated": (False, link.MAGIC + H(100, link.HELLO) + b"{"),
    # cut short so that the next session's start completes it
    "truncated_swallows_next": (False, link.MAGIC + H(20, link.HELLO) + b"{"),
    "bad_type": (False, link.MAGIC + H(0, 200)),
    "bad_json": (False, link.MAGIC + F(link.HELLO, b"\xff\xfe{[\x00")),
    "wrong_version": (False, link.MAGIC + F(link.HELLO, b'{"version":99,"name":"x"}')),
    "magic_cut_short": (False, link.MAGIC[:5]),
    # after the host's WELCOME
    "upload_too_big": (True, F(link.UPLOAD, b'{"size":999999999,"sha256":"00"}')),
    "upload_overrun": (True, F(link.UPLOAD, b'{"size":10,"sha256":"00"}') + F(link.CHUNK, b"x" * 100)),
    "sync_garbage": (True, F(link.SYNC, b"abc")),
    "bad_probe": (True, F(link.KICK, b'{"seq":"no"}')),
    "session_cut_mid_frame": (True, H(1000, link.SYNC_RESULT) + b'{"rounds":['),
}


def _slowloris(port):
    """MAGIC and a frame header, then one byte of the frame every half
    second: more than the host's frame deadline (1 s) in all; what it sends
    after the host gave up is garbage on the stream, to be skipped."""
    sp = SerialPort(port, timeout=10)
    try:
        sp.sendall(link.MAGIC + H(10, link.HELLO))
        for _ in range(5):
            time.sleep(0.5)
            sp.sendall(b"{")
    finally:
        sp.close()


ATTACKS["slowloris"] = (False, b"")


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_garbage_and_broken_sessions_then_a_good_guest(vmm_and_agent, tmp_path, attack, caplog):
    # A short frame deadline: a frame cut short is given up on that soon, and
    # the stream searched again from its start.
    vmm, agent = vmm_and_agent(frame_timeout=1.0, max_upload=4096, max_frame=8192)
    if attack == "slowloris":    # a frame dribbled a byte at a time, slower than the deadline
        _slowloris(vmm.port)
    else:
        handshake, data = ATTACKS[attack]
        _evil_session(vmm.port, data, handshake)
    handshake = ATTACKS[attack][0]
    gl = _good_session(vmm, _trace_file(tmp_path), timeout=20)
    assert gl.error is None, gl.error
    results = agent.wait_for(2 if handshake else 1, 30)
    good = [r for r in results if r.name == "good"]
    assert len(good) == 1 and good[0].complete
    evil = [r for r in agent.results if r.name.startswith("evil")]
    if handshake:      # the broken session was ended and said why
        assert evil and evil[0].error and evil[0].closed
    if attack == "slowloris":    # ended by the frame deadline, not by the bytes that came after
        assert "unidentified guest: timed out in the middle of a frame" in caplog.text
    assert all(p.startswith(("good", "evil")) for p in os.listdir(agent.out_dir))


def test_stale_host_bytes_on_the_port_are_skipped_by_the_guest(vmm_and_agent, tmp_path):
    vmm, agent = vmm_and_agent()
    # what an earlier session may leave unread: its WELCOME (another nonce), a BYE, garbage
    os.write(vmm.master, link.MAGIC + F(link.WELCOME, b'{"version":1,"guest":"old","nonce":"ab"}')
             + F(link.BYE, b"{}") + b"\x00\xff" * 50 + link.MAGIC[:4]
             # a WELCOME cut short: the host's real one completes it
             + link.MAGIC + H(20, link.WELCOME) + b"{")
    gl = _good_session(vmm, _trace_file(tmp_path))
    assert gl.error is None and gl.name == "good"
    assert agent.wait_for(1, 30)[0].complete


def test_a_guest_that_reboots_mid_session(vmm_and_agent, tmp_path):
    # The first guest says START and dies (its VM rebooted): the next
    # session's MAGIC ends it, the host says so, and serves the new guest.
    vmm, agent = vmm_and_agent()
    _evil_session(vmm.port, F(link.START, b"{}"))
    gl = _good_session(vmm, _trace_file(tmp_path))
    assert gl.error is None
    agent.wait_for(1, 30)
    first = [r for r in agent.results if r.name == "evil"]
    assert first and first[0].closed and "new session started" in first[0].error


def test_the_host_side_goes_away_and_comes_back(vmm_and_agent, tmp_path):
    vmm, agent = vmm_and_agent()
    assert _good_session(vmm, _trace_file(tmp_path), name="before").error is None
    agent.wait_for(1, 30)
    vmm.drop_host()           # the agent's connection to the VMM ends
    assert _good_session(vmm, _trace_file(tmp_path), name="after").error is None
    assert sorted(r.name for r in agent.wait_for(2, 30)) == ["after", "before"]
    assert vmm.connections == 2


def test_guest_waits_for_a_host_that_comes_late(tmp_path):
    sock = tmp_path / "late.sock"
    vmm = FakeVMM(sock, server=True)
    trace = _trace_file(tmp_path)
    agent = HostAgent(connect_vmm=f"unix:{sock}", out_dir=str(tmp_path / "traces"), trace_host=False)
    try:
        threading.Timer(1.0, agent.start).start()     # the guest is there first
        gl = _good_session(vmm, trace, timeout=20)
        assert gl.error is None
        assert agent.wait_for(1, 30)[0].complete
    finally:
        agent.close(grace=0)
        vmm.close()


def test_no_host_ever_guest_traces_locally(tmp_path):
    vmm = FakeVMM(tmp_path / "nobody.sock", server=True)
    try:
        out = tmp_path / "g.pftrace"
        t0 = time.monotonic()
        with GuestLink(f"serial:{vmm.port}", name="vm1", timeout=1.0) as gl:
            with vperfetto.Session(out):
                vperfetto.instant("still_traced")
        assert time.monotonic() - t0 < 10
        assert not gl.connected and "timed out" in gl.error
        assert [e.name for e in resolve(load_trace(out))] == ["still_traced"]
    finally:
        vmm.close()


def test_serial_port_refuses_what_is_not_a_port(tmp_path):
    f = tmp_path / "regular"
    f.write_bytes(b"")
    with pytest.raises(OSError, match="not a character device"):
        SerialPort(str(f))
    with pytest.raises(FileNotFoundError):
        SerialPort(str(tmp_path / "missing"))
    master, slave = pty.openpty()
    try:
        with SerialPort(os.ttyname(slave)):
            with pytest.raises(OSError) as e:
                SerialPort(os.ttyname(slave))    # one guest at a time on a port
            assert e.value.errno == errno.EBUSY and "in use" in str(e.value)
    finally:
        os.close(master)
        os.close(slave)


def test_addresses():
    assert link.parse_address("serial:/dev/virtio-ports/vp") == (None, "/dev/virtio-ports/vp")
    for bad, msg in (("serial:", "want serial:"), ("serial:/dev/x", "guest's end")):
        with pytest.raises(ValueError, match=msg):
            link.parse_address(bad, listen=bad != "serial:")
    with pytest.raises(ValueError, match="not the guest's serial port"):
        HostAgent(connect_vmm="serial:/dev/hvc0")
    with pytest.raises(ValueError, match="give one of"):
        HostAgent()


GUEST = textwrap.dedent(r"""
    import sys, vperfetto
    from vperfetto.vm import GuestLink
    port, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with GuestLink("serial:" + port, name="vm1", resync_interval=0.2, timeout=20) as gl:
        with vperfetto.Session(out):
            vperfetto.set_process_name("guest_app")
            for i in range(n):
                with vperfetto.slice("guest_work", args={"i": i}):
                    gl.kick()
                    vperfetto.counter("guest_queue", i)
                    gl.ping()
    assert gl.error is None, gl.error
    print(gl.result["combined"])
""")


@pytest.mark.parametrize("mode", ["connect_vmm", "listen"])
def test_end_to_end_with_kicks_and_pings(tmp_path, mode):
    sock = tmp_path / "vm.sock"
    n = 20
    if mode == "connect_vmm":
        vmm = FakeVMM(sock, server=True)
        agent = HostAgent(connect_vmm=f"unix:{sock}", out_dir=str(tmp_path / "traces")).start()
    else:
        agent = HostAgent(f"unix:{sock}", str(tmp_path / "traces")).start()
        vmm = FakeVMM(sock, server=False)
    try:
        p = subprocess.run([sys.executable, "-c", GUEST, vmm.port, str(tmp_path / "g.pftrace"), str(n)],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        (res,) = agent.wait_for(1, 30)
    finally:
        agent.close()
        vmm.close()
    assert res.error is None and res.combined == p.stdout.strip()
    comb = load_trace(res.combined)
    ev = resolve(comb)
    by = {}
    for e in ev:
        by.setdefault(e.name, {})[e.args.get("seq")] = e.ts
    kicks = sorted(by["host_kick"])
    pings = sorted(by["guest_ping"])
    assert len(kicks) == len(pings) == n and kicks == sorted(by["guest_saw_kick"])
    assert pings == sorted(by["host_saw_ping"])
    # Causality, within the uncertainty the alignment states (half the best
    # sync round trip: under load a round trip can outlast a kick's delivery).
    (rec,) = [e for e in resolve(load_trace(res.combined, keep_merge_record=True))
              if e.name == "vperfetto_merge_alignment"]
    tol = max(int(rec.args["spread_ns"]), 0)
    assert tol < 50_000_000, rec.args
    assert all(by["guest_saw_kick"][s] > by["host_kick"][s] - tol for s in kicks), (tol, by)
    assert all(by["host_saw_ping"][s] > by["guest_ping"][s] - tol for s in pings), (tol, by)
    assert sum(e.name == "guest_work" for e in ev) == n
    names = {d.process.process_name for d in descriptors(comb).values() if d.HasField("process")}
    assert "vm1: guest_app" in names


def test_host_and_guest_command_lines_over_a_port(tmp_path):
    sock = tmp_path / "vm.sock"
    vmm = FakeVMM(sock, server=True)
    try:
        host = subprocess.Popen([sys.executable, "-m", "vperfetto", "host", "--connect-vmm", f"unix:{sock}",
                                 "--out-dir", str(tmp_path / "traces"), "--once"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert host.stdout.readline().startswith("serving the VMM's serial port at ")
        workload = "import vperfetto\nfor i in range(3):\n    vperfetto.instant('workload_event')\n"
        g = subprocess.run([sys.executable, "-m", "vperfetto", "guest", "--connect", f"serial:{vmm.port}",
                            "--name", "vm9", "--out", str(tmp_path / "vm9.pftrace"), "--",
                            sys.executable, "-c", workload], capture_output=True, text=True, timeout=60)
        assert g.returncode == 0, g.stderr
        out, err = host.communicate(timeout=60)
    finally:
        vmm.close()
    assert host.returncode == 0, err
    assert "host wrote" in g.stdout and "vm9.combined.pftrace" in out
    comb = load_trace(tmp_path / "traces" / "vm9.combined.pftrace")
    assert sum(e.name == "workload_event" for e in resolve(comb)) == 3


@pytest.mark.parametrize("args,msg", [
    (["host", "--connect-vmm", "serial:/dev/hvc0"], "guest's end"),
    (["host", "--listen", "serial:/dev/hvc0"], "guest's end"),
    (["host", "--connect-vmm", "unix:/x", "--serial"], "--serial goes with --listen"),
    (["host", "--listen", "unix:/x", "--connect-vmm", "unix:/y"], "not allowed with"),
    (["host"], "one of the arguments"),
    (["guest", "--connect", "serial:", "--", "true"], "want serial:/dev/virtio-ports/NAME"),
])
def test_bad_command_lines_exit_2_in_one_line(args, msg):
    p = subprocess.run([sys.executable, "-m", "vperfetto", *args], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert msg in p.stderr


def test_guest_cli_without_the_port_still_runs_its_command(tmp_path):
    out = tmp_path / "g.pftrace"
    g = subprocess.run([sys.executable, "-m", "vperfetto", "guest", "--connect", f"serial:{tmp_path}/none",
                        "--out", str(out), "--", sys.executable, "-c", "import vperfetto; vperfetto.instant('e')"],
                       capture_output=True, text=True, timeout=60)
    assert g.returncode == 0 and "host link: host unreachable" in g.stderr and str(out) in g.stderr
    assert [e.name for e in resolve(load_trace(out))] == ["e"]


def test_an_internal_error_in_a_session_does_not_stop_the_port(vmm_and_agent, tmp_path, monkeypatch):
    vmm, agent = vmm_and_agent()
    real = HostAgent._session_with
    calls = []

    def buggy(self, ch, st):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return real(self, ch, st)

    monkeypatch.setattr(HostAgent, "_session_with", buggy)
    first = _good_session(vmm, _trace_file(tmp_path), name="first", timeout=2)
    assert not first.connected       # its session died with the bug
    assert _good_session(vmm, _trace_file(tmp_path), name="second").error is None
    assert [r.name for r in agent.wait_for(1, 30)] == ["second"]


def test_a_token_is_required_on_the_port_too(vmm_and_agent, tmp_path):
    vmm, agent = vmm_and_agent(token="s3cret")
    with GuestLink(f"serial:{vmm.port}", "vm1", token="wrong", timeout=5, resync_interval=0) as bad:
        pass
    assert not bad.connected and "bad token" in bad.error
    with GuestLink(f"serial:{vmm.port}", "vm1", token="s3cret", trace_path=_trace_file(tmp_path),
                   resync_interval=0, timeout=20) as good:
        assert good.connected
    assert good.error is None and agent.wait_for(1, 30)[0].complete


def test_a_probe_on_a_lost_link_says_so_and_the_guest_traces_on(tmp_path):
    sock = tmp_path / "vm.sock"
    vmm = FakeVMM(sock, server=True)
    agent = HostAgent(connect_vmm=f"unix:{sock}", out_dir=str(tmp_path / "traces"), trace_host=False).start()
    try:
        with GuestLink(f"serial:{vmm.port}", "vm1", resync_interval=0, timeout=2) as gl:
            assert gl.kick() == 0 and gl.ping() == 1
            agent.close(grace=0)          # the host goes away mid-session
            vmm.drop_host()
            with pytest.raises(RuntimeError, match="no link to the host: lost the host: "):
                gl.kick()
            assert not gl.connected and gl.error.startswith("lost the host")
            with pytest.raises(RuntimeError, match="no link to the host: lost the host"):
                gl.ping()                 # said at once from then on
            with vperfetto.Session(tmp_path / "local.pftrace"):
                vperfetto.instant("still_traced")
        assert gl.result is None
        assert [e.name for e in resolve(load_trace(tmp_path / "local.pftrace"))] == ["still_traced"]
    finally:
        agent.close(grace=0)
        vmm.close()
