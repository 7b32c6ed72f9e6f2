"""The README's first command: the demo records, merges and checks itself."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from vperfetto.demo import BOOT_OFFSET_S, _time_namespace_available
from conftest import descriptors, load_trace, resolve


def run_demo(tmp_path, *flags):
    p = subprocess.run([sys.executable, "-m", "vperfetto", "demo", "--out-dir", str(tmp_path), *flags],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return p.stdout


def check(tmp_path, out):
    m = re.search(r"error ([+-]\d+) ns", out)
    assert m, out
    assert abs(int(m.group(1))) < 1000  # TSC markers: well under a microsecond
    lat = re.search(r"seen by the guest ([\d.]+) us \(median\)", out)
    assert lat and 0 < float(lat.group(1)) < 20_000, out
    comb = load_trace(tmp_path / "combined.pftrace")
    names = {d.process.process_name for d in descriptors(comb).values() if d.HasField("process")}
    assert names == {"host_app", "guest: guest_app"}
    kicks = [e for e in resolve(comb) if e.name in ("host_kick", "guest_got_kick")]
    assert len(kicks) == 20
    # in the merged trace every kick the guest got comes after the host sent it
    sent = {e.args["kick"]: e.ts for e in kicks if e.name == "host_kick"}
    got = {e.args["kick"]: e.ts for e in kicks if e.name == "guest_got_kick"}
    assert all(0 < got[k] - sent[k] < 50_000_000 for k in sent)


def test_demo_simulated_offset(tmp_path):
    out = run_demo(tmp_path, "--simulate")
    assert f"simulated clock offset of +{BOOT_OFFSET_S} s" in out
    check(tmp_path, out)


@pytest.mark.skipif(not _time_namespace_available()[0],
                    reason=f"time namespace unavailable: {_time_namespace_available()[1]}")
def test_demo_in_time_namespace(tmp_path):
    out = run_demo(tmp_path, "--namespace")
    assert "in its own time namespace" in out
    check(tmp_path, out)
    guest = load_trace(tmp_path / "guest.pftrace")
    host = load_trace(tmp_path / "host.pftrace")
    g0 = next(p.timestamp for p in guest.packet if p.timestamp)
    h0 = next(p.timestamp for p in host.packet if p.timestamp)
    assert abs((g0 - h0) - BOOT_OFFSET_S * 10**9) < 5 * 10**9  # clocks really differ
