"""The README's first command: the demo records, merges and checks itself."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from vperfetto.demo import BOOT_OFFSET_S, _time_namespace_available
from conftest import descriptors, load_trace, packet_times, resolve


def run_demo(tmp_path, *flags):
    p = subprocess.run([sys.executable, "-m", "vperfetto", "demo", "--out-dir", str(tmp_path), *flags],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return p.stdout


def check(folder, out, case):
    """Case 1 (guest clock ahead, the guest's is the timeline) or case 2 (the
    guest booted after the host began tracing: the host's is)."""
    text = out.split(f"{case}. ", 1)[1].split(f"{case + 1}. ", 1)[0]
    m = re.search(r"error ([+-]\d+) ns", text)
    assert m, out
    assert abs(int(m.group(1))) < 1000  # TSC markers: well under a microsecond
    lat = re.search(r"seen by the guest ([\d.]+) us \(median\)", text)
    assert lat and 0 < float(lat.group(1)) < 20_000, out
    comb = load_trace(folder / "combined.pftrace")
    assert all(0 <= t < 1 << 63 for t in packet_times(comb) if t is not None)  # nothing before zero
    names = {d.process.process_name for d in descriptors(comb).values() if d.HasField("process")}
    assert names == {"host_app", "guest: guest_app"}
    kicks = [e for e in resolve(comb) if e.name in ("host_kick", "guest_got_kick")]
    assert len(kicks) == 20
    # in the merged trace every kick the guest got comes after the host sent it
    sent = {e.args["kick"]: e.ts for e in kicks if e.name == "host_kick"}
    got = {e.args["kick"]: e.ts for e in kicks if e.name == "guest_got_kick"}
    assert all(0 < got[k] - sent[k] < 50_000_000 for k in sent)
    # every slice of both inputs is in the combined trace
    frames = [sum(1 for e in resolve(load_trace(folder / f)) if e.name == "frame")
              for f in ("guest.pftrace", "host.pftrace")]
    assert sum(1 for e in resolve(comb) if e.name == "frame") == sum(frames) > 0
    guest = load_trace(folder / "guest.pftrace")
    host = load_trace(folder / "host.pftrace")
    g0 = min(t for t in packet_times(guest) if t)
    h0 = min(t for t in packet_times(host) if t)
    if case == 1:
        assert "timeline: the guest's clock" in text
        assert abs((g0 - h0) - BOOT_OFFSET_S * 10**9) < 5 * 10**9  # clocks really differ
    else:
        assert "timeline: the host's clock, as the host's first events predate" in text
        offset = int(re.search(r"offset (-?\d+) ns", text).group(1))
        assert h0 + offset < 0  # the host began before the guest's clock zero


def test_demo_simulated_offset(tmp_path):
    out = run_demo(tmp_path, "--simulate")
    assert "with a simulated clock offset" in out and f"BOOTTIME +{BOOT_OFFSET_S}.000 s" in out
    check(tmp_path, out, 1)
    check(tmp_path / "booted-later", out, 2)


@pytest.mark.skipif(not _time_namespace_available()[0],
                    reason=f"time namespace unavailable: {_time_namespace_available()[1]}")
def test_demo_in_time_namespace(tmp_path):
    out = run_demo(tmp_path, "--namespace")
    assert "in its own time namespace" in out
    check(tmp_path, out, 1)
    check(tmp_path / "booted-later", out, 2)
