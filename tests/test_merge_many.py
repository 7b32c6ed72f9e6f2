"""A fleet of merges: merge_many() on the standard library's executors, and --jobs."""

from __future__ import annotations

import concurrent.futures as cf
import json
import subprocess
import sys

import pytest

from vperfetto.merge import merge, merge_many
from conftest import load_trace, pb2

BOOT = pb2.BUILTIN_CLOCK_BOOTTIME


def _pair(tmp_path, k):
    """A small guest/host pair: one slice each, the guest's at 10 s + k us."""
    paths = []
    for side, boot in (("guest", 10_000_000_000), ("host", 1_000_000_000)):
        t = pb2.Trace()
        p = t.packet.add(trusted_packet_sequence_id=1)
        p.clock_snapshot.clocks.add(clock_id=BOOT, timestamp=boot)
        p = t.packet.add(trusted_packet_sequence_id=2, timestamp=boot + 1000 * k, sequence_flags=1)
        p.track_event.type = pb2.TrackEvent.TYPE_INSTANT
        p.track_event.name = f"{side}{k}"
        path = tmp_path / f"{side}{k}.pftrace"
        path.write_bytes(t.SerializeToString())
        paths.append(path)
    return paths


def _jobs(tmp_path, n, broken=()):
    jobs = []
    for k in range(n):
        g, h = _pair(tmp_path, k)
        if k in broken:
            g = tmp_path / f"missing{k}.pftrace"
        jobs.append(dict(host=str(h), guests={"vm": str(g)}, output=str(tmp_path / f"out{k}.pftrace"),
                         time_diff_ns=9_000_000_000))
    return jobs


def _check_outputs(tmp_path, results, broken):
    for r in results:
        out = tmp_path / f"out{r.index}.pftrace"
        if r.index in broken:
            assert not r.ok and r.report is None and "missing" in r.error, r
            assert not out.exists()
        else:
            assert r.ok and r.error is None, r.error
            names = {p.track_event.name: p.timestamp for p in load_trace(out).packet
                     if p.HasField("track_event")}
            # the guest's instant moved by the time diff, onto the host's time
            assert names[f"host{r.index}"] == names[f"guest{r.index}"] == 1_000_000_000 + 1000 * r.index
            assert r.report.inputs[1]["packets_written"] == 1  # (its clock snapshot goes)


@pytest.mark.parametrize("pool", ["process", "thread", "default"])
def test_good_and_broken_jobs(tmp_path, pool):
    broken = {1, 4}
    jobs = _jobs(tmp_path, 6, broken)
    jobs.append("not a job")  # fails alone too
    jobs.append(dict(host=jobs[0]["host"], guests={"vm": jobs[0]["host"]}, output=str(tmp_path / "x"),
                     threads=-3))  # a bad argument
    if pool == "default":
        results = merge_many(jobs)
    else:
        Pool = cf.ProcessPoolExecutor if pool == "process" else cf.ThreadPoolExecutor
        with Pool(max_workers=3) as ex:
            results = merge_many(jobs, ex)
    assert [r.index for r in results] == list(range(len(jobs)))
    _check_outputs(tmp_path, results[:6], broken)
    assert "TypeError" in results[6].error and "ValueError: threads" in results[7].error
    assert sum(r.ok for r in results) == 4


def test_a_dead_worker_fails_its_job_only(tmp_path):
    # A worker process that dies (here: the pool breaks at once) is an error
    # per job, never an exception out of merge_many.
    class Broken(cf.Executor):
        def submit(self, fn, *args, **kwargs):
            f = cf.Future()
            f.set_exception(cf.process.BrokenProcessPool("a worker died"))
            return f
    results = merge_many(_jobs(tmp_path, 2), Broken())
    assert [r.error for r in results] == ["BrokenProcessPool: a worker died"] * 2


def test_same_as_one_merge(tmp_path):
    job = _jobs(tmp_path, 1)[0]
    (r,) = merge_many([job], cf.ThreadPoolExecutor(1))
    single = tmp_path / "single.pftrace"
    merge(**{**job, "output": str(single)})
    assert (tmp_path / "out0.pftrace").read_bytes() == single.read_bytes()
    assert r.report.inputs == merge(**{**job, "output": str(single)}).inputs


def test_jobs_command_line(tmp_path):
    broken = {2}
    jobs = _jobs(tmp_path, 4, broken)
    f = tmp_path / "jobs.jsonl"
    lines = [json.dumps(j) for j in jobs]
    lines.insert(2, "")            # skipped
    lines.insert(3, "# a comment")  # skipped
    lines.append("{not json")       # a job that fails with its line number
    f.write_text("\n".join(lines) + "\n")
    p = subprocess.run([sys.executable, "-m", "vperfetto.merge", "--jobs", str(f), "-j", "2"],
                       capture_output=True, text=True)
    assert p.returncode == 1, p.stderr
    out = [json.loads(line) for line in p.stdout.splitlines()]
    assert sorted(o["job"] for o in out) == [0, 1, 2, 3, 4]
    by = {o["job"]: o for o in out}
    assert [by[i]["ok"] for i in range(5)] == [True, True, False, True, False]
    assert by[0]["report"]["inputs"][1]["packets_written"] == 1
    assert "jobs.jsonl:7: not JSON" in by[4]["error"]
    # all good: exit 0
    f.write_text("\n".join(json.dumps(j) for k, j in enumerate(jobs) if k not in broken) + "\n")
    p = subprocess.run([sys.executable, "-m", "vperfetto.merge", "--jobs", str(f)],
                       capture_output=True, text=True)
    assert p.returncode == 0 and len(p.stdout.splitlines()) == 3, p.stderr


@pytest.mark.parametrize("args", [["--jobs", "/nonexistent/jobs.jsonl"],
                                  ["--jobs", "j.jsonl", "-o", "x"],
                                  ["--jobs", "j.jsonl", "-j", "-2"]])
def test_jobs_command_line_errors(tmp_path, args):
    p = subprocess.run([sys.executable, "-m", "vperfetto.merge", *args], capture_output=True,
                       text=True, cwd=tmp_path)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
