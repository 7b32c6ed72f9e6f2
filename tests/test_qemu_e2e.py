"""A real virtual machine: scripts/qemu-e2e.sh boots Debian's kernel under
QEMU with a virtio-serial port, runs the guest workload and the host agent,
and leaves host, guest and combined traces. Checked here with the official
schema: every kick and ping causal on the one timeline, both processes, every
guest slice. Runs when QEMU and a built image (the script's cache) are there;
VPERFETTO_QEMU_E2E=1 runs it even without a cache (the first run builds one:
a few minutes), =0 skips it."""

from __future__ import annotations

import collections
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import pytest

from conftest import TYPE_BEGIN, descriptors, load_trace, resolve

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "qemu-e2e.sh"
CACHE = pathlib.Path(os.environ.get("VPERFETTO_QEMU_CACHE") or
                     pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache")
                     / "vperfetto-qemu")
WANT = os.environ.get("VPERFETTO_QEMU_E2E", "")
# In CI (.ci/run) the test is skipped past 55 min: 55 + the rest of the suite + this < 90.
LIMIT_S = 1200


def _why_not() -> str:
    if WANT == "0":
        return "VPERFETTO_QEMU_E2E=0"
    if sys.version_info[:2] != (3, 11):
        return "the guest's wheel is built with this Python, which must be 3.11 (Debian 12's)"
    missing = [t for t in ("qemu-system-x86_64", "mmdebstrap", "busybox", "cpio", "depmod", "mkfs.ext4")
               if not shutil.which(t)]
    if missing:
        return (f"no {', '.join(missing)} (apt-get install --no-install-recommends "
                "qemu-system-x86 mmdebstrap busybox-static cpio kmod)")
    if WANT != "1" and not ((CACHE / "kernel" / ".done").is_file() and (CACHE / "rootfs.done").is_file()):
        return f"no built image in {CACHE} (scripts/qemu-e2e.sh DIR builds one; VPERFETTO_QEMU_E2E=1 here)"
    return ""


WHY = _why_not()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    if WHY:
        pytest.skip(WHY)
    out = tmp_path_factory.mktemp("qemu-e2e")
    env = dict(os.environ, PYTHON=sys.executable, VPERFETTO_QEMU_CACHE=str(CACHE))
    # its own process group: on the time limit QEMU and the agent go with it
    p = subprocess.Popen(["bash", str(SCRIPT), str(out)], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        log, _ = p.communicate(timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        log, _ = p.communicate()
        pytest.fail(f"scripts/qemu-e2e.sh took more than {LIMIT_S} s:\n{log}")
    assert p.returncode == 0, log
    return out, log


def _by_seq(events, name):
    d = {}
    for e in events:
        if e.name == name:
            assert e.args["seq"] not in d, f"{name} seq {e.args['seq']} twice"
            d[e.args["seq"]] = e.ts
    return d


def test_every_probe_is_causal_on_the_one_timeline(run):
    out, log = run
    ev = resolve(load_trace(out / "combined.pftrace"))
    seconds = int(os.environ.get("VPERFETTO_E2E_SECONDS", "60"))
    for first, second in (("host_kick", "guest_saw_kick"), ("guest_ping", "host_saw_ping")):
        a, b = _by_seq(ev, first), _by_seq(ev, second)
        assert len(a) >= 20 and sorted(a) == sorted(b), (first, sorted(a), sorted(b))
        late = {s: b[s] - a[s] for s in a if b[s] <= a[s]}
        assert not late, f"{second} before {first}: {late}"
        # spread over the run (>= 10 s as the issue asks; the whole run here)
        assert max(a.values()) - min(a.values()) >= min(10, seconds * 0.8) * 1e9
    assert "agrees with causality" in log


def test_combined_has_both_processes_and_every_guest_slice(run):
    out, _ = run
    comb, guest, host = (load_trace(out / f"{n}.pftrace") for n in ("combined", "guest", "host"))
    names = {d.process.process_name for d in descriptors(comb).values() if d.HasField("process")}
    assert "qemu-guest: guest_workload" in names
    host_pids = {d.process.pid for d in descriptors(host).values() if d.HasField("process")}
    comb_pids = {d.process.pid for d in descriptors(comb).values() if d.HasField("process")}
    assert host_pids and host_pids <= comb_pids and len(comb_pids) >= 2

    def slices(trace):
        return collections.Counter((e.name, tuple(sorted(e.args.items()))) for e in resolve(trace)
                                   if e.type == TYPE_BEGIN)

    g = slices(guest)
    assert g[("guest_step", (("step", 0),))] == 1 and sum(g.values()) >= 40
    c = slices(comb)
    assert all(c[k] >= n for k, n in g.items()), g - c   # none lost in the merge


def test_the_host_trace_has_the_sync_rounds_and_the_guest_its_clock(run):
    out, log = run
    host_ev = resolve(load_trace(out / "host.pftrace"))
    rounds = [e for e in host_ev if e.name == "vperfetto_clock_sync_round"]
    assert rounds and {e.args["sync_peer"] for e in rounds} == {"qemu-guest"}
    console = (out / "console.log").read_text(errors="replace")
    assert "init: workload exited with 0" in console
