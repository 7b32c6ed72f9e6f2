"""No merge puts events before the main clock's zero, where trace_processor
drops them (track_event_invalid_timestamp, trace_sorter_negative_timestamp_dropped).

With one guest the other side becomes the main timeline and the report says
why; with several guests the merge refuses and writes nothing.
"""

from __future__ import annotations

import collections

import pytest

from vperfetto import errors
from vperfetto.merge import merge
from conftest import SHARED, TYPE_BEGIN, load_trace

SDK = SHARED / "sdk-v7"
needs_sdk = pytest.mark.skipif(not (SDK / "guest.pftrace").exists(),
                               reason="../shared/testdata/sdk-v7 is not beside the project")

GUEST_SLICES, HOST_SLICES = 231, 277
INT64 = 1 << 63


def _begins(trace):
    return sorted(p.timestamp for p in trace.packet
                  if p.HasField("track_event") and p.track_event.type == TYPE_BEGIN)


def _all_non_negative(trace):
    bad = [i for i, p in enumerate(trace.packet) if p.timestamp >= INT64]
    assert not bad, f"{len(bad)} packets below zero, first {bad[0]}"
    for p in trace.packet:
        for b in [p.ftrace_events] if p.HasField("ftrace_events") else []:
            assert all(e.timestamp < INT64 for e in b.event)


def _check_host_main(out, diff):
    """The host is the timeline unchanged; the guest moved by -diff, whole."""
    comb = load_trace(out)
    _all_non_negative(comb)
    host, guest = load_trace(SDK / "host.pftrace"), load_trace(SDK / "guest.pftrace")
    want = sorted(_begins(host) + [t - diff for t in _begins(guest)])
    assert _begins(comb) == want
    assert len(want) == GUEST_SLICES + HOST_SLICES


def _check_guest_main(out, diff):
    comb = load_trace(out)
    _all_non_negative(comb)
    host, guest = load_trace(SDK / "host.pftrace"), load_trace(SDK / "guest.pftrace")
    assert _begins(comb) == sorted(_begins(guest) + [t + diff for t in _begins(host)])


@needs_sdk
@pytest.mark.parametrize("machine_ids", [False, True])
@pytest.mark.parametrize("diff", [-1_151_400_000_000, -1_200_000_000_000])
def test_positional_guest_booted_after_host_started_tracing(tmp_path, diff, machine_ids):
    # The guest's clock zero comes after the host's first events: on the
    # guest's timeline they would be negative, so the host becomes the main.
    out = tmp_path / "combined.pftrace"
    r = merge(SDK / "guest.pftrace", SDK / "host.pftrace", out, time_diff_ns=diff,
              machine_ids=machine_ids)
    assert (r.requested_mode, r.mode) == ("host-into-guest", "guest-into-host")
    assert "the host would put" in r.main_switched and "before the guest clock's zero" in r.main_switched
    assert r.main_switched in r.warnings
    moved = next(i for i in r.inputs if i["role"] == "moved")
    assert moved["kind"] == "guest" and moved["timestamps_below_zero"] == 0
    host_in = next(i for i in r.inputs if i["kind"] == "host")
    assert host_in["packets_below_zero_avoided"] > 0
    if diff == -1_200_000_000_000:  # every host event would have been lost
        assert host_in["packets_below_zero_avoided"] >= HOST_SLICES * 2
    _check_host_main(out, diff)


@needs_sdk
def test_positional_with_guest_clock_ahead_keeps_guest_main(tmp_path):
    out = tmp_path / "combined.pftrace"
    diff = 1_234_500_000_000
    r = merge(SDK / "guest.pftrace", SDK / "host.pftrace", out, time_diff_ns=diff)
    assert r.mode == r.requested_mode == "host-into-guest" and not r.main_switched
    _check_guest_main(out, diff)


@needs_sdk
def test_named_form_guest_before_host_zero_switches_to_guest(tmp_path):
    out = tmp_path / "combined.pftrace"
    diff = 2_386_000_000_000  # the guest's events would predate the host's boot
    r = merge(host=SDK / "host.pftrace", guests={"vm": SDK / "guest.pftrace"}, output=out,
              time_diff_ns=diff)
    assert (r.requested_mode, r.mode) == ("guest-into-host", "host-into-guest")
    assert "guest 'vm' would put" in r.main_switched
    _check_guest_main(out, diff)


@needs_sdk
@pytest.mark.parametrize("machine_ids", [False, True])
def test_several_guests_before_host_zero_refused_nothing_written(tmp_path, machine_ids):
    out = tmp_path / "combined.pftrace"
    with pytest.raises(errors.InvalidArgumentError) as e:
        merge(host=SDK / "host.pftrace", output=out, machine_ids=machine_ids,
              guests={"a": SDK / "guest.pftrace", "b": SDK / "guest.pftrace"},
              time_diff_ns=2_386_000_000_000)
    msg = str(e.value)
    assert "guest 'a' would put" in msg and "before the host clock's zero" in msg
    assert "and 1 more guest" in msg and "nothing written" in msg and "time-diff" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no output, no temp file


@needs_sdk
def test_dry_run_reports_the_switch(tmp_path):
    r = merge(SDK / "guest.pftrace", SDK / "host.pftrace", None, dry_run=True,
              time_diff_ns=-1_200_000_000_000)
    assert r.mode == "guest-into-host" and r.main_switched
    assert list(tmp_path.iterdir()) == []


@needs_sdk
def test_cli_says_what_happened(tmp_path):
    import subprocess
    import sys
    out = tmp_path / "c.pftrace"
    p = subprocess.run([sys.executable, "-m", "vperfetto.merge", SDK / "guest.pftrace",
                        SDK / "host.pftrace", out, "--time-diff", "-1151400000000"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "warning: the host would put" in p.stderr and "main timeline instead" in p.stderr
    assert "main  host" in p.stdout
    p = subprocess.run([sys.executable, "-m", "vperfetto.merge", "--host", SDK / "host.pftrace",
                        "--guest", f"a={SDK / 'guest.pftrace'}", "--guest",
                        f"b={SDK / 'guest.pftrace'}", "-o", out, "--time-diff", "2386000000000"],
                       capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert "error: guest 'a' would put" in p.stderr
    assert collections.Counter(x.name for x in tmp_path.iterdir()) == {"c.pftrace": 1}
