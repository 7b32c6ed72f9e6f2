"""python -m vperfetto.probes: the link's kicks and pings, checked in a
merged trace. Each pair is written on both sides of the link in an order no
clock can change, so a merge that misplaces the guest shows up as a pair out
of order; the smallest margins bound the placement error from both sides."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import vperfetto
from vperfetto import probes
from vperfetto.merge import merge

US = 1000


BASE = vperfetto.boot_time_ns() + 60_000_000_000


def _trace(path, events, name="p"):
    """A trace of instants (name, ts, seq); ts relative to one base for all."""
    base = BASE
    with vperfetto.Session(path):
        vperfetto.set_process_name(name)
        vperfetto.instant("unrelated", args={"seq": 999})
        for ev, ts, seq in events:
            vperfetto.instant(ev, args={"seq": seq} if seq is not None else {"other": 1}, ts=base + ts)
    vperfetto.session._last_stopped_path = None
    return str(path)


def _probes(kick_margins, ping_margins, step=10_000 * US):
    """Events of kicks and pings with the given margins (second minus first)."""
    ev, t = [], 0
    for seq, m in enumerate(kick_margins):
        ev += [("host_kick", t, seq), ("guest_saw_kick", t + m, seq)]
        t += step
    for seq, m in enumerate(ping_margins, start=100):
        ev += [("guest_ping", t, seq), ("host_saw_ping", t + m, seq)]
        t += step
    return ev


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "vperfetto.probes", *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def test_margins_and_the_window_they_leave(tmp_path):
    t = _trace(tmp_path / "t.pftrace", _probes([300 * US, 120 * US, 500 * US], [80 * US, 90 * US, 400 * US]))
    r = probes.check(t, alignment={"spread_ns": 50 * US})
    assert r["kick"]["pairs"] == 3 and r["kick"]["min_ns"] == 120 * US and r["kick"]["min_seq"] == 1
    assert r["kick"]["median_ns"] == 300 * US and r["kick"]["max_ns"] == 500 * US
    assert r["ping"]["min_ns"] == 80 * US and r["ping"]["min_seq"] == 100
    assert r["error_window_ns"] == [-80 * US, 120 * US]
    assert r["bound_consistent"] is True and probes.ok(r, 3) and not probes.ok(r, 4)
    assert probes.problems(r, 4) == ["3 kick(s) paired, fewer than 4", "3 ping(s) paired, fewer than 4"]
    p = _cli(t, "--min", 3, "--json", tmp_path / "r.json")
    assert p.returncode == 0, p.stderr
    assert "margin min 120.0 us (seq 1)" in p.stdout and "within (-80.0 us, 120.0 us)" in p.stdout
    assert json.loads((tmp_path / "r.json").read_text())["kick"]["min_ns"] == 120 * US
    p = _cli(t, "--min", 4)
    assert p.returncode == 1 and "fewer than 4" in p.stderr


def test_a_pair_out_of_order_fails_and_is_named(tmp_path):
    t = _trace(tmp_path / "t.pftrace", _probes([300 * US, -200 * US, 500 * US], [80 * US, 0, 400 * US]))
    r = probes.check(t)
    assert r["kick"]["violations"] == [1] and r["ping"]["violations"] == [101]   # equal is not after
    p = _cli(t)
    assert p.returncode == 1
    assert "OUT OF ORDER: seq [1]" in p.stdout and "OUT OF ORDER: seq [101]" in p.stdout
    assert p.stderr.strip() == ("python -m vperfetto.probes: failed: 1 kick(s) out of order; "
                                "1 ping(s) out of order")


def test_a_violation_contradicts_a_claimed_bound_smaller_than_it(tmp_path):
    # a kick seen 200 us before it was sent: the guest sits > 200 us too early
    t = _trace(tmp_path / "t.pftrace", _probes([300 * US, -200 * US], [900 * US, 800 * US]))
    assert probes.check(t, alignment={"spread_ns": 150 * US})["bound_consistent"] is False
    r = probes.check(t, alignment={"spread_ns": 250 * US})
    assert r["bound_consistent"] is True and not probes.ok(r)    # the claim holds; causality not
    assert "contradicted" in " ".join(probes.problems(probes.check(t, alignment={"spread_ns": 1})))
    # with every pair in order any claim agrees (the window holds 0)
    t2 = _trace(tmp_path / "t2.pftrace", _probes([300 * US], [900 * US]))
    assert probes.check(t2, alignment={"spread_ns": 0})["bound_consistent"] is True
    assert probes.check(t2, alignment=None)["bound_consistent"] is None


def test_unpaired_and_reused_seqs_fail(tmp_path):
    ev = _probes([300 * US, 400 * US], [80 * US, 90 * US])
    ev.append(("host_kick", 90_000 * US, 7))                       # never seen by the guest
    ev += [("guest_ping", 91_000 * US, 100), ("host_saw_ping", 91_100 * US, 100)]   # seq 100 twice
    r = probes.check(_trace(tmp_path / "t.pftrace", ev))
    assert r["kick"]["unpaired"] == [7] and r["ping"]["ambiguous"] == [100] and r["ping"]["pairs"] == 1
    assert probes.problems(r) == ["1 kick(s) without their other half", "1 ping seq(s) used more than once"]


def test_one_side_alone_says_it_is_not_the_merged_trace(tmp_path):
    host = _trace(tmp_path / "host.pftrace", [("host_kick", i * 1000, i) for i in range(3)]
                  + [("host_saw_ping", i * 1000 + 5, 100 + i) for i in range(3)])
    p = _cli(host)
    assert p.returncode == 1
    assert "kicks: none paired (3 host_kick, 0 guest_saw_kick); both halves are needed: is this the " \
           "merged trace?" in p.stdout
    assert "3 kick(s) without their other half" in p.stderr
    nothing = _trace(tmp_path / "none.pftrace", [("something", 0, 1)])
    p = _cli(nothing)
    assert p.returncode == 1 and "kicks: none paired (0 host_kick, 0 guest_saw_kick)\n" in p.stdout
    assert "0 kick(s) paired, fewer than 1" in p.stderr


def test_unreadable_input_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "garbage").write_bytes(bytes(range(256)) * 20)
    for path, says in ((tmp_path / "missing", "No such file"), (tmp_path, "Is a directory"),
                       (tmp_path / "empty", "no packets"), (tmp_path / "garbage", "")):
        p = _cli(path)
        assert p.returncode == 2, (path, p.stdout, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr, p.stderr
        assert p.stderr.count(str(path)) == 1 and says in p.stderr
    assert _cli().returncode == 2


@pytest.mark.parametrize("shift_us,causal", [(0, True), (-150, True), (2000, False), (-2000, False)])
def test_a_misaligned_merge_is_caught(tmp_path, shift_us, causal):
    # The same probes through the real merge, told the guest's clock is off
    # by shift: kicks take 400 us, pings 300 us, so a placement error beyond
    # those puts pairs out of order, and within them does not.
    host = _trace(tmp_path / "host.pftrace",
                  [(e, t, s) for e, t, s in _probes([400 * US] * 5, [300 * US] * 5) if e.startswith("host_")],
                  name="host_app")
    guest = _trace(tmp_path / "guest.pftrace",
                   [(e, t, s) for e, t, s in _probes([400 * US] * 5, [300 * US] * 5) if e.startswith("guest_")],
                   name="guest_app")
    out = tmp_path / "combined.pftrace"
    merge(host=host, guests={"vm": guest}, output=out, time_diff_ns=shift_us * US)
    r = probes.check(out)
    assert r["alignment"] is not None and r["alignment"]["offset_ns"] == shift_us * US
    assert r["kick"]["pairs"] == r["ping"]["pairs"] == 5
    assert r["kick"]["min_ns"] == 400 * US - shift_us * US and r["ping"]["min_ns"] == 300 * US + shift_us * US
    assert probes.ok(r) is causal
    assert _cli(out).returncode == (0 if causal else 1)
