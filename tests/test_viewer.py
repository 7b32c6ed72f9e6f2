"""What the viewer itself makes of our traces and merges: trace_processor (the
engine of the Perfetto UI), when one is at hand.

These tests need a trace_processor_shell (VPERFETTO_TRACE_PROCESSOR, or one
on PATH); CI has none and skips them (the rest of the suite checks the same
properties with the official schema and `inspect --check`, which models
trace_processor). They are how that model was checked against the real
thing: counts in the viewer, and its stats, for our tracing core, the merges
of the SDK v7 pair and of every pair of real traces, and --check's findings.
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import subprocess

import pytest

from vperfetto.inspect import inspect
from vperfetto.merge import merge
from conftest import SHARED

SDK = SHARED / "sdk-v7"
REAL = SHARED / "real"
TP_SHELL = os.environ.get("VPERFETTO_TRACE_PROCESSOR") or shutil.which("trace_processor_shell")
pytestmark = pytest.mark.skipif(not TP_SHELL, reason="no trace_processor_shell (set "
                                                     "VPERFETTO_TRACE_PROCESSOR to one)")



def query(trace, sql: str) -> list:
    """Rows of `sql` over `trace`, as tuples of strings (trace_processor_shell -Q)."""
    p = subprocess.run([TP_SHELL, "-Q", sql, str(trace)], capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    # the shell prints a header line, then one line per row, values quoted
    rows = []
    for ln in lines[1:]:
        rows.append(tuple(v.strip().strip('"') for v in ln.split(",")))
    return rows


@functools.lru_cache(maxsize=None)
def counts(trace) -> dict:
    """What the viewer shows, counted."""
    sql = ("select (select count(*) from slice), (select count(*) from sched), "
           "(select count(*) from counter), (select count(*) from thread), "
           "(select count(*) from process), (select count(*) from android_logs)")
    (row,) = query(trace, sql)
    keys = ["slices", "sched", "counters", "threads", "processes", "logs"]
    return dict(zip(keys, map(int, row)))


@functools.lru_cache(maxsize=None)
def losses(trace) -> dict:
    """Stats of severity error or data loss with a value, by name."""
    rows = query(trace, "select name, severity, sum(value) from stats where value > 0 "
                        "and severity in ('error', 'data_loss') group by name, severity")
    return {r[0]: int(r[2]) for r in rows}


def all_stats(trace) -> dict:
    rows = query(trace, "select name, severity, sum(value) from stats where value > 0 "
                        "group by name, severity")
    return {r[0]: (r[1], int(r[2])) for r in rows}


# --- our tracing core: every annotation across resets -------------------------------------

@pytest.mark.parametrize("mode", ["ring", "discard", "stream"])
def test_annotations_across_resets_in_the_viewer(tmp_path, mode):
    import threading

    import vperfetto
    path = tmp_path / f"{mode}.pftrace"

    def work(k):
        for i in range(2000):
            with vperfetto.slice("outer", category="gfx", args={"i": i, "who": f"t{k}"}):
                if i % 100 == 0:
                    vperfetto.begin("inner")
                    vperfetto.end()
                    vperfetto.counter("c", i)
                    vperfetto.instant("inst", category="gfx")

    with vperfetto.Session(path, buffer_kb=65536, mode=mode):
        ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    (row,) = query(path, "select count(*) from slice s join args a using(arg_set_id) "
                         "where s.name = 'outer' and a.key in ('debug.i', 'debug.who')")
    assert int(row[0]) == 16000
    assert "track_event_parser_errors" not in all_stats(path)
    assert not inspect(path, check=True)["fails"]


# --- the SDK v7 pair below zero, in every form --------------------------------------------

@pytest.mark.skipif(not (SDK / "guest.pftrace").exists(), reason="no sdk-v7 testdata")
@pytest.mark.parametrize("form", ["positional", "named", "machine"])
@pytest.mark.parametrize("diff", [-1_151_400_000_000, -1_200_000_000_000])
def test_sdk_v7_below_zero_keeps_every_slice(tmp_path, form, diff):
    out = tmp_path / "m.pftrace"
    if form == "positional":
        merge(SDK / "guest.pftrace", SDK / "host.pftrace", out, time_diff_ns=diff)
    else:
        merge(host=SDK / "host.pftrace", guests={"vm": SDK / "guest.pftrace"}, output=out,
              time_diff_ns=diff, machine_ids=form == "machine")
    c = counts(out)
    assert c["slices"] == counts(SDK / "guest.pftrace")["slices"] + counts(SDK / "host.pftrace")["slices"] + 1
    assert not set(losses(out)) - set(losses(SDK / "guest.pftrace")) - set(losses(SDK / "host.pftrace"))


# --- every pair of real traces -------------------------------------------------------------

ALL = sorted(p.name for p in REAL.glob("*") if p.suffix != ".md") if REAL.is_dir() else []


def _first(name):
    return inspect(REAL / name)["first_ts"]


@pytest.mark.skipif(not REAL.is_dir(), reason="no real testdata")
@pytest.mark.parametrize("machine_ids", [False, True], ids=["pids", "machines"])
@pytest.mark.parametrize("host,guest", list(itertools.permutations(ALL, 2)))
def test_real_pairs_sum_in_the_viewer(tmp_path, host, guest, machine_ids):
    out = tmp_path / "m.pftrace"
    diff = _first(guest) - (_first(host) + 100 * 10**9)  # the guest began 100 s later
    r = merge(host=REAL / host, guests={"vm": REAL / guest}, output=out, time_diff_ns=diff,
              machine_ids=machine_ids)
    h, g, m = counts(REAL / host), counts(REAL / guest), counts(out)
    want = {k: h[k] + g[k] for k in h}
    want["slices"] += 1  # the merge record, on its own track
    # pid 0 (the idle task) is one thread in one machine
    if not machine_ids:
        want["threads"] -= min(_idle(REAL / host), _idle(REAL / guest))
        want["processes"] -= min(_idle(REAL / host, "process"), _idle(REAL / guest, "process"))
    assert m == want
    new = set(losses(out)) - set(losses(REAL / host)) - set(losses(REAL / guest))
    if r.inputs[1]["task_states_approximated"]:  # said, in the report
        assert any("thread state(s)" in w for w in r.warnings)
        new.discard("task_state_invalid")
    assert not new, losses(out)
    assert not r.main_switched


def _idle(trace, table="thread") -> int:
    col = "tid" if table == "thread" else "pid"
    (row,) = query(trace, f"select count(*) from {table} where {col} = 0")
    return int(row[0])


# --- --check against the real thing ---------------------------------------------------------

@pytest.mark.parametrize("name", [f"real/{n}" for n in ALL] +
                         [f"sdk-v7/{p.name}" for p in sorted(SDK.glob("*.pftrace"))])
def test_check_says_what_the_viewer_counts(name):
    path = SHARED / name
    ours = inspect(path, check=True)["stats"]
    theirs = all_stats(path)
    for stat, v in ours.items():
        if stat.startswith("vperfetto_"):
            continue
        assert stat in theirs, (stat, theirs)
        assert v["severity"] == theirs[stat][0]
    for stat, (severity, _) in theirs.items():
        if severity in ("error", "data_loss"):
            assert stat in ours, (stat, ours)
