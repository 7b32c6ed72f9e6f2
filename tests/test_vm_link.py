"""Guest<->host tracing over a real link: a guest process in its own time
namespace, the host agent in this process, over Unix and TCP sockets; and
peers that misbehave."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import vperfetto
from vperfetto import link
from vperfetto.demo import _time_namespace_available
from vperfetto.vm import GuestLink, HostAgent, Workflow, sanitize_name
from conftest import descriptors, load_trace, resolve

NS_OK, NS_WHY = _time_namespace_available()
BOOT_S = 1234

GUEST = textwrap.dedent(r"""
    import os, sys, vperfetto
    from vperfetto.vm import GuestLink
    addr, name, out, kick_fd = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    with GuestLink(addr, name=name, resync_interval=0.3) as link:
        with vperfetto.Session(out):
            vperfetto.set_process_name("guest_app")
            for i in range(5):
                b = os.read(kick_fd, 1)            # the host kicks, the guest reacts
                vperfetto.instant("guest_saw_kick", args={"kick": b[0]})
                with vperfetto.slice("guest_work"):
                    vperfetto.sleep_us(5000)
    print(link.offset_ns, link.estimates[-1].error_bound_ns, link.result["combined"], flush=True)
""")


def run_guest(tmp_path, agent, name, namespace=True):
    r, w = os.pipe()
    cmd = [sys.executable, "-c", GUEST, agent.address, name, str(tmp_path / f"{name}.local.pftrace"), str(r)]
    env = dict(os.environ)
    if namespace:
        cmd = ["unshare", "--time", "--boottime", str(BOOT_S), "--monotonic", "1000", "--"] + cmd
    else:
        env["VPERFETTO_SIMULATE_CLOCK_OFFSET_NS"] = str(BOOT_S * 10**9)
    proc = subprocess.Popen(cmd, pass_fds=(r,), env=env, stdout=subprocess.PIPE, text=True)
    os.close(r)
    return proc, w


def kick_and_finish(agent, proc, w, n_done=1):
    # wait until host tracing started (the guest said START), then kick
    deadline = time.monotonic() + 30
    while not vperfetto.is_tracing() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert vperfetto.is_tracing()
    for i in range(5):
        time.sleep(0.02)
        vperfetto.instant("host_kick", args={"kick": i})
        os.write(w, bytes([i]))
    os.close(w)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    return out.split()


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_guest_in_time_namespace_end_to_end(tmp_path, transport):
    if not NS_OK:
        pytest.skip(f"time namespace unavailable: {NS_WHY}")
    addr = f"unix:{tmp_path / 'sock'}" if transport == "unix" else "tcp:127.0.0.1:0"
    with HostAgent(addr, str(tmp_path / "traces")) as agent:
        proc, w = run_guest(tmp_path, agent, "vm1")
        offset, bound, combined = kick_and_finish(agent, proc, w)
        (res,) = agent.wait_for(1, 30)
    truth = BOOT_S * 10**9
    assert abs(int(offset) - truth) < 100_000          # the NTP-style estimate
    assert int(bound) < 1_000_000
    assert res.combined == combined and res.complete and res.error is None
    assert res.merge_method == "link-sync"  # the merge prefers the link's own records
    assert abs(res.mono_offset_ns - 1000 * 10**9) < 100_000     # the namespace's MONOTONIC offset
    if res.tsc_offset is not None:
        assert abs(res.tsc_offset) < 10_000_000   # one machine: a shared TSC (within the sync's error)
    comb = load_trace(combined)
    ev = resolve(comb)
    sent = {e.args["kick"]: e.ts for e in ev if e.name == "host_kick"}
    got = {e.args["kick"]: e.ts for e in ev if e.name == "guest_saw_kick"}
    assert sorted(sent) == sorted(got) == list(range(5))
    for k in sent:  # the guest saw each kick just after the host sent it
        assert 0 < got[k] - sent[k] < 20_000_000, (k, got[k] - sent[k])
    names = {d.process.process_name for d in descriptors(comb).values() if d.HasField("process")}
    assert "vm1: guest_app" in names
    # the sync rounds are in the host's own trace, for a later offline merge
    traces = tmp_path / "traces"
    (host_file,) = [traces / p for p in os.listdir(traces) if p.startswith("host-")]
    host_events = resolve(load_trace(host_file))
    rounds = [e for e in host_events if e.name == vperfetto.vm.SYNC_EVENT]
    assert rounds and all(e.args["sync_peer"] == "vm1" for e in rounds)


def test_two_guests_at_once(tmp_path):
    with HostAgent("tcp:127.0.0.1:0", str(tmp_path / "traces")) as agent:
        procs = [run_guest(tmp_path, agent, n, namespace=False) for n in ("vm1", "vm2")]
        deadline = time.monotonic() + 30
        while not vperfetto.is_tracing() and time.monotonic() < deadline:
            time.sleep(0.01)
        for i in range(5):
            for _, w in procs:
                os.write(w, bytes([i]))
        outs = []
        for proc, w in procs:
            os.close(w)
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0
            outs.append(out.split())
        results = agent.wait_for(2, 30)
    assert sorted(r.name for r in results) == ["vm1", "vm2"]
    for r in results:
        assert r.error is None and os.path.exists(r.combined)
        assert abs(r.offset_ns - BOOT_S * 10**9) < 100_000
        names = {d.process.process_name for d in descriptors(load_trace(r.combined)).values()
                 if d.HasField("process")}
        assert f"{r.name}: guest_app" in names


def test_host_unreachable_guest_still_traces(tmp_path):
    out = tmp_path / "g.pftrace"
    with GuestLink(f"unix:{tmp_path / 'nobody-listens'}", name="vm1", timeout=1) as gl:
        with vperfetto.Session(out):
            vperfetto.instant("still_traced")
    assert not gl.connected and "unreachable" in gl.error
    assert [e.name for e in resolve(load_trace(out))] == ["still_traced"]


def test_unstarted_agent_and_unconnected_link_say_so(tmp_path):
    with pytest.raises(vperfetto.TracingStateError, match="not been started"):
        HostAgent(f"unix:{tmp_path / 'h.sock'}", out_dir=str(tmp_path)).address
    with pytest.raises(vperfetto.TracingStateError, match="not connected"):
        GuestLink(f"unix:{tmp_path / 'h.sock'}", name="vm1").sync()


def test_guest_dies_mid_upload_host_keeps_what_arrived(tmp_path):
    agent = HostAgent("tcp:127.0.0.1:0", str(tmp_path / "traces")).start()
    try:
        # a guest that starts, sends half an upload and vanishes
        ch = link.Channel(link.connect(agent.address))
        ch.send_json(link.HELLO, {"version": 1, "name": "dying"})
        ch.recv_json(link.WELCOME)
        ch.send_json(link.START, {})
        ch.recv_json(link.STARTED)
        vperfetto.instant("host_side_event")
        ch.send_json(link.STOP, {})
        ch.recv_json(link.STOPPED)
        data = _small_trace(tmp_path)
        ch.send_json(link.UPLOAD, {"size": len(data), "sha256": "0" * 64})
        ch.send(link.CHUNK, data[: len(data) // 2 + 7])
        ch.close()
        (res,) = agent.wait_for(1, 30)
    finally:
        agent.close()
    assert res.name == "dying" and not res.complete
    assert res.guest_trace and os.path.getsize(res.guest_trace) == len(data) // 2 + 7
    assert res.combined and "incomplete" in res.error  # merged what arrived, said so
    host = [p for p in os.listdir(tmp_path / "traces") if p.startswith("host-")]
    assert host  # the host saved its own trace


def _small_trace(tmp_path):
    p = tmp_path / "small.pftrace"
    with vperfetto.Session(p):
        for i in range(50):
            vperfetto.instant("x", args={"i": i})
    vperfetto.session._last_stopped_path = None
    return p.read_bytes()


# --- hostile peers ------------------------------------------------------------------------

def _raw(agent):
    s = link.connect(agent.address)
    s.settimeout(10)
    return s


def _closed(s, within: float = 8.0) -> bool:
    """True when the host closes the connection within `within` seconds
    (end of stream or a reset); False when it keeps it open."""
    s.settimeout(within)
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            if not s.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
    return False


def test_closed_tells_an_open_connection_from_a_closed_one():
    # the helper the hostile-peer cases rely on must be able to say "no"
    a, b = socket.socketpair()
    try:
        assert not _closed(a, within=0.3)
        b.close()
        assert _closed(a, within=5)
    finally:
        a.close()


@pytest.fixture
def strict_agent(tmp_path, request):
    # Timeouts far longer than the test waits, so that a disconnect can only
    # come from the defence under test; the slowloris case gets a short frame
    # deadline, which is its defence.
    slow = getattr(request, "param", None) == "slowloris"
    agent = HostAgent("tcp:127.0.0.1:0", str(tmp_path / "traces"), max_upload=4096,
                      max_frame=8192, frame_timeout=1.0 if slow else 60.0,
                      idle_timeout=60.0, trace_host=False).start()
    yield agent
    agent.close()


def _serves_a_good_guest(agent):
    ch = link.Channel(link.connect(agent.address))
    ch.send_json(link.HELLO, {"version": 1, "name": "good"})
    assert ch.recv_json(link.WELCOME)["guest"].startswith("good")
    rounds = link.sync_rounds(ch, 4)
    assert len(rounds) == 4
    ch.close()


ATTACKS = ["oversized", "truncated", "garbage", "bad_type", "slowloris", "bad_json",
           "wrong_version", "upload_too_big", "upload_overrun", "sync_garbage"]


@pytest.mark.parametrize("strict_agent,attack", [(a, a) for a in ATTACKS],
                         indirect=["strict_agent"], ids=ATTACKS)
def test_hostile_peer_is_disconnected_and_host_keeps_serving(strict_agent, tmp_path, attack, caplog):
    s = _raw(strict_agent)
    hello = link.HEADER.pack(len(b'{"version":1,"name":"evil"}'), link.HELLO) + b'{"version":1,"name":"evil"}'
    if attack == "oversized":
        s.sendall(link.HEADER.pack(1 << 30, link.HELLO))
    elif attack == "truncated":
        s.sendall(link.HEADER.pack(100, link.HELLO) + b"{")
        s.shutdown(socket.SHUT_WR)
    elif attack == "garbage":
        s.sendall(os.urandom(64))
    elif attack == "bad_type":
        s.sendall(link.HEADER.pack(0, 200))
    elif attack == "slowloris":
        s.sendall(link.HEADER.pack(10, link.HELLO))
        for _ in range(3):
            time.sleep(0.5)
            try:
                s.sendall(b"{")
            except OSError:
                break
    elif attack == "bad_json":
        s.sendall(link.HEADER.pack(5, link.HELLO) + b"\xff\xfe{[\x00")  # 5 bytes, not JSON
    elif attack == "wrong_version":
        body = b'{"version":99,"name":"x"}'
        s.sendall(link.HEADER.pack(len(body), link.HELLO) + body)
    elif attack in ("upload_too_big", "upload_overrun", "sync_garbage"):
        s.sendall(hello)
        ch = link.Channel(s)
        ch.recv_json(link.WELCOME)  # the host took the hello: now the attack
        if attack == "upload_too_big":
            body = b'{"size":999999999,"sha256":"00"}'
            s.sendall(link.HEADER.pack(len(body), link.UPLOAD) + body)
        elif attack == "upload_overrun":
            body = b'{"size":10,"sha256":"00"}'
            s.sendall(link.HEADER.pack(len(body), link.UPLOAD) + body +
                      link.HEADER.pack(100, link.CHUNK) + b"x" * 100)
        else:
            s.sendall(link.HEADER.pack(3, link.SYNC) + b"abc")
    assert _closed(s, within=10)  # (the agent's own timeouts are 60 s, but for slowloris)
    s.close()
    _serves_a_good_guest(strict_agent)
    assert not os.listdir(strict_agent.out_dir) or all(
        p.startswith(("good", "evil")) for p in os.listdir(strict_agent.out_dir))


def test_names_are_sanitised_and_files_stay_inside_out_dir(tmp_path):
    assert sanitize_name("../../etc/passwd") == "_.._etc_passwd"
    assert sanitize_name("") == "guest" and sanitize_name(None) == "guest"
    assert sanitize_name(".hidden") == "hidden"
    assert len(sanitize_name("x" * 500)) == 32
    # deep enough that the name's "../../../" would climb out of it, yet stay in tmp_path
    out = tmp_path / "a" / "b" / "c" / "traces"
    mine = _trace_file(tmp_path)
    with HostAgent("tcp:127.0.0.1:0", str(out), trace_host=False) as agent:
        with GuestLink(agent.address, name="../../../tmp/evil/../x", trace_path=mine,
                       resync_interval=0) as gl:
            pass
        (res,) = agent.wait_for(1, 10)
    assert gl.error is None and res.guest_trace == str(out / f"{res.name}.guest.pftrace")
    assert "does not trace" in res.error
    # every file the host wrote is directly in its out dir: nothing anywhere else
    written = {os.path.join(root, f) for root, _, files in os.walk(tmp_path) for f in files}
    ours = {mine, str(tmp_path / "small.pftrace")}
    assert written - ours and {os.path.dirname(w) for w in written - ours} == {str(out)}


def _trace_file(tmp_path):
    p = tmp_path / "t.pftrace"
    p.write_bytes(_small_trace(tmp_path))
    return str(p)


def test_token_is_required_when_set(tmp_path):
    with HostAgent("tcp:127.0.0.1:0", str(tmp_path / "t"), token="s3cret", trace_host=False) as agent:
        with GuestLink(agent.address, "vm1", token="wrong", timeout=2, resync_interval=0) as bad:
            pass
        assert not bad.connected and "bad token" in bad.error
        with GuestLink(agent.address, "vm1", token="s3cret", resync_interval=0) as good:
            assert good.connected


def test_clock_sync_estimate_math():
    # a guest 2 s ahead, symmetric 10 us paths, one round with a 5 ms outlier
    rounds = [link.Round(t1=1_000_000_000 + i * 1000 + 10**9, t2=i * 1000 + 10_000,
                         t3=i * 1000 + 11_000, t4=1_000_000_000 + i * 1000 + 10**9 + 21_000)
              for i in range(10)]
    rounds.append(link.Round(10**9 + 10**9, 5_000_000, 5_001_000, 10**9 + 10**9 + 5_011_000))
    est = link.estimate(rounds)
    assert est.offset_ns == 2 * 10**9 and est.delay_ns == 20_000 and est.error_bound_ns == 10_000
    # The best round symmetric, the others lopsided (5 us out, 45 us back):
    # the median is 20 us off, more than the best round's half round trip;
    # the bound covers it (the rounds meet in [-10, +5] us around the truth).
    D = 2 * 10**9
    lop = [link.Round(t1=10**9 + i * 100_000, t2=10**9 + i * 100_000 - D + out_ns,
                      t3=10**9 + i * 100_000 - D + out_ns + 1000,
                      t4=10**9 + i * 100_000 + out_ns + 1000 + back_ns)
           for i, (out_ns, back_ns) in enumerate([(10_000, 10_000)] + [(5_000, 45_000)] * 7)]
    est = link.estimate(lop)
    assert abs(est.offset_ns - D) == 20_000 and est.error_bound_ns >= 20_000, est
    assert est.error_bound_ns <= 30_000, est


def test_workflow_python_api(tmp_path):
    wf = Workflow(host_file=str(tmp_path / "h.pftrace"), guest_file=str(tmp_path / "g.pftrace"),
                  combined_file=str(tmp_path / "c.pftrace"), poll_ms=100, timeout_ms=5000)
    (tmp_path / "g.pftrace").write_bytes(_small_trace(tmp_path))
    wf.time_diff_ns = 5
    wf.enable()
    assert wf.enabled and vperfetto.is_tracing()
    vperfetto.instant("host_event")
    wf.disable()
    wf.wait_saving_done()
    assert not wf.saving and not wf.enabled
    ev = resolve(load_trace(tmp_path / "c.pftrace"))
    assert sum(e.name == "host_event" for e in ev) == 1 and sum(e.name == "x" for e in ev) == 50
    # the guest trace never arrives: the host trace is kept and the error said
    wf2 = Workflow(host_file=str(tmp_path / "h2.pftrace"), guest_file=str(tmp_path / "never.pftrace"),
                   combined_file=str(tmp_path / "c2.pftrace"), poll_ms=50, timeout_ms=300)
    wf2.enable()
    wf2.disable()
    with pytest.raises(vperfetto.TraceIOError, match="did not appear"):
        wf2.wait_saving_done()
    assert (tmp_path / "h2.pftrace").exists() and not (tmp_path / "c2.pftrace").exists()


def test_host_and_guest_command_lines(tmp_path):
    sock = tmp_path / "cli.sock"
    host = subprocess.Popen([sys.executable, "-m", "vperfetto", "host", "--listen", f"unix:{sock}",
                             "--out-dir", str(tmp_path / "traces"), "--once"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert host.stdout.readline().startswith("listening on ")  # it serves
    workload = "import vperfetto\nfor i in range(3):\n    vperfetto.instant('workload_event')\n"
    g = subprocess.run([sys.executable, "-m", "vperfetto", "guest", "--connect", f"unix:{sock}",
                        "--name", "vm9", "--out", str(tmp_path / "vm9.pftrace"), "--",
                        sys.executable, "-c", workload], capture_output=True, text=True, timeout=60)
    assert g.returncode == 0, g.stderr
    out, err = host.communicate(timeout=60)
    assert host.returncode == 0, err
    assert "vm9:" in out and "vm9.combined.pftrace" in out
    comb = load_trace(tmp_path / "traces" / "vm9.combined.pftrace")
    assert sum(e.name == "workload_event" for e in resolve(comb)) == 3
    assert "host wrote" in g.stdout


# --- edges a user hits ---------------------------------------------------------------------

def _guest_session(agent, name, trace_path=None):
    with GuestLink(agent.address, name=name, trace_path=trace_path, resync_interval=0) as gl:
        pass
    return gl


def test_wait_for_says_when_it_timed_out(tmp_path):
    with HostAgent("tcp:127.0.0.1:0", str(tmp_path / "t"), trace_host=False) as agent:
        with pytest.raises(TimeoutError, match="0 of 1"):
            agent.wait_for(1, timeout=0.2)


def test_guest_without_a_trace_is_told_and_host_keeps_its_own(tmp_path):
    out = tmp_path / "traces"
    with HostAgent("tcp:127.0.0.1:0", str(out)) as agent:
        gl = _guest_session(agent, "empty", trace_path=str(tmp_path / "never-written.pftrace"))
        (res,) = agent.wait_for(1, 30)
    assert res.combined is None and "sent no trace" in res.error
    assert gl.result["error"] == res.error and gl.result["pending"] is False
    assert [p for p in os.listdir(out) if p.startswith("host-")]  # its own trace stays


def test_host_process_already_tracing_says_so(tmp_path):
    out = tmp_path / "traces"
    guest_trace = _trace_file(tmp_path)
    with vperfetto.Session(tmp_path / "theirs.pftrace"):  # someone else's session in this process
        with HostAgent("tcp:127.0.0.1:0", str(out)) as agent:
            _guest_session(agent, "vm1", trace_path=guest_trace)
            (res,) = agent.wait_for(1, 30)
    assert res.combined is None and "already tracing" in res.error
    assert os.path.isfile(res.guest_trace)  # the guest's trace is kept


def test_same_name_later_does_not_overwrite(tmp_path):
    out = tmp_path / "traces"
    with HostAgent("tcp:127.0.0.1:0", str(out), trace_host=False) as agent:
        _guest_session(agent, "vm1", trace_path=_trace_file(tmp_path))
        agent.wait_for(1, 30)
        _guest_session(agent, "vm1", trace_path=_trace_file(tmp_path))
        results = agent.wait_for(2, 30)
    names = sorted(r.name for r in results)
    assert names == ["vm1", "vm1-2"]
    assert len({r.guest_trace for r in results}) == 2 and all(os.path.isfile(r.guest_trace)
                                                               for r in results)


def _guest_cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "vperfetto", "guest", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def test_guest_cli_bad_address_and_missing_command_exit_2_in_one_line(tmp_path):
    p = _guest_cli("--connect", "tcp:nowhere", "--", "true")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "tcp:HOST:PORT" in p.stderr
    with HostAgent("tcp:127.0.0.1:0", str(tmp_path / "t"), trace_host=False) as agent:
        p = _guest_cli("--connect", agent.address, "--name", "x", "--out", tmp_path / "x.pftrace",
                       "--", tmp_path / "nonexistent")
        assert p.returncode == 2 and "cannot run" in p.stderr and "Traceback" not in p.stderr


def test_guest_cli_command_that_traces_nothing_is_said_on_both_sides(tmp_path):
    with HostAgent("tcp:127.0.0.1:0", str(tmp_path / "t")) as agent:
        p = _guest_cli("--connect", agent.address, "--name", "sh", "--out", tmp_path / "sh.pftrace",
                       "--", "sh", "-c", "exit 0")
        (res,) = agent.wait_for(1, 30)
    assert p.returncode == 0
    assert "wrote no trace" in p.stderr and "host: the guest sent no trace" in p.stderr
    assert "sent no trace" in res.error


def test_connection_limit(tmp_path):
    # max_guests (the README's connection limit): one more is refused at once
    with HostAgent("tcp:127.0.0.1:0", str(tmp_path / "t"), trace_host=False, max_guests=1) as agent:
        first = link.Channel(link.connect(agent.address))
        first.send_json(link.HELLO, {"version": 1, "name": "first"})
        first.recv_json(link.WELCOME)  # connected and served
        extra = _raw(agent)
        assert _closed(extra, within=10)
        extra.close()
        first.close()


def test_workflow_set_guest_time_aligns(tmp_path):
    # Workflow.set_guest_time (the original setGuestTime): the guest's BOOTTIME
    # now, recorded before tracing; the combined trace is aligned by it.
    code = textwrap.dedent("""
        import sys, vperfetto
        from vperfetto.vm import Workflow
        from vperfetto.merge import merge
        tmp, offset = sys.argv[1], int(sys.argv[2])
        with vperfetto.Session(tmp + "/g.pftrace"):
            vperfetto.instant("guest_event")
        wf = Workflow(host_file=tmp + "/h.pftrace", guest_file=tmp + "/g.pftrace",
                      combined_file=tmp + "/c.pftrace", poll_ms=50, timeout_ms=5000)
        wf.set_guest_time(vperfetto.boot_time_ns() + offset)
        assert wf.time_diff_ns is not None and abs(wf.time_diff_ns - offset) < 10_000_000
        print(wf.time_diff_ns)
        wf.enable(); vperfetto.instant("host_event"); wf.disable(); wf.wait_saving_done()
    """)
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path), "5000000000000"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    diff = int(p.stdout.split()[-1])
    host_ev = [e for e in resolve(load_trace(tmp_path / "h.pftrace")) if e.name == "host_event"]
    comb = [e for e in resolve(load_trace(tmp_path / "c.pftrace")) if e.name == "host_event"]
    assert [e.ts + diff for e in host_ev] == [e.ts for e in comb]  # the host moved into guest time


def test_guest_cli_ships_the_trace_of_a_workload_that_died(tmp_path):
    # The workload (auto-started stream session) is killed mid-slice: the
    # guest recovers its trace from the crash-safe buffer and ships it, the
    # host merges it and says the guest crashed.
    workload = ("import os, signal, vperfetto\n"
                "for i in range(5000):\n"
                "    vperfetto.begin('doomed', args={'i': i}); vperfetto.end()\n"
                "vperfetto.begin('dying')\n"
                "os.kill(os.getpid(), signal.SIGKILL)\n")
    with HostAgent("tcp:127.0.0.1:0", str(tmp_path / "t")) as agent:
        p = _guest_cli("--connect", agent.address, "--name", "vmc", "--out", tmp_path / "vmc.pftrace",
                       "--", sys.executable, "-c", workload)
        (res,) = agent.wait_for(1, 60)
    assert p.returncode == 128 + signal.SIGKILL, p.stderr  # as a shell says it
    assert "host: the guest crashed (killed by SIGKILL)" in p.stderr, p.stderr
    assert res.crashed["how"] == "killed by SIGKILL" and res.crashed["packets"] > 0
    assert any("the guest crashed (killed by SIGKILL)" in w for w in res.warnings)
    assert res.combined and not res.error
    names = [e.name for e in resolve(load_trace(res.combined))]
    assert names.count("doomed") == 5000 and "dying" in names
    assert not (tmp_path / "vmc.pftrace.vpbuf").exists()
