"""Whole-program tracing: `python -m vperfetto run` and vperfetto.profile(),
decoded with the official schema. Run on every Python the project supports
(.ci/run adds 3.10 and 3.13: the profile hook and sys.monitoring)."""

from __future__ import annotations

import collections
import os
import pathlib
import subprocess
import sys
import threading

import pytest

import vperfetto
from conftest import TYPE_BEGIN, descriptors, load_trace, packet_times, pb2, resolve, slices_by_track

PROGRAMS = pathlib.Path(__file__).parent / "programs"


def run(tmp_path, *args, check_rc=None):
    out = tmp_path / "run.pftrace"
    env = dict(os.environ, TMPDIR=str(tmp_path))  # where --follow-children collects
    p = subprocess.run([sys.executable, "-m", "vperfetto", "run", "-o", str(out), *map(str, args)],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    if check_rc is not None:
        assert p.returncode == check_rc, (p.stdout, p.stderr)
    return p, out


def summary(path):
    """(processes by pid, threads by (pid, name), slices by thread uuid); checks that
    every slice is balanced on every track."""
    trace = load_trace(path)
    events = resolve(trace)
    descs = descriptors(trace)
    slices = slices_by_track(events)  # asserts balance and nesting
    procs = {}  # the name trace_processor shows: the latest descriptor in time
    times = packet_times(trace)
    for _, pk in sorted(((t, pk) for t, pk in zip(times, trace.packet)
                         if pk.HasField("track_descriptor") and pk.track_descriptor.HasField("process")),
                        key=lambda tp: tp[0]):
        procs[pk.track_descriptor.process.pid] = pk.track_descriptor.process.process_name
    threads = {d.uuid: d.thread for d in descs.values() if d.HasField("thread")}
    return trace, events, procs, threads, slices


def names_on(slices, threads, pid=None, thread_name=None):
    out = collections.Counter()
    for uuid, sl in slices.items():
        t = threads.get(uuid)
        if t is None or (pid is not None and t.pid != pid) or \
                (thread_name is not None and t.thread_name != thread_name):
            continue
        out.update(s[0] for s in sl)
    return out


def test_exception_exit_code_and_traceback(tmp_path):
    p, out = run(tmp_path, PROGRAMS / "raises.py", check_rc=1)
    assert "ValueError: boom from the program" in p.stderr
    assert "vperfetto" not in p.stderr.split("Traceback")[1]  # only the program's frames
    _, events, procs, threads, slices = summary(out)
    assert list(procs.values()) == ["raises.py"]
    names = names_on(slices, threads)
    assert names["inner"] == names["outer"] == 1 and names["<module __main__>"] == 1


def test_sys_exit_argv_and_stdout_untouched(tmp_path):
    p, out = run(tmp_path, PROGRAMS / "exits.py", "a", "--b", check_rc=3)
    assert p.stdout == "stdout stays the program's\n" and p.stderr == ""
    _, events, procs, threads, slices = summary(out)
    assert names_on(slices, threads)["leave"] == 1


def test_threads_generators_coroutines_named_and_balanced(tmp_path):
    p, out = run(tmp_path, PROGRAMS / "workload.py", "x", check_rc=0)
    assert p.stdout.splitlines() == ["[0, 1, 1, 2, 3]", "['x']"]
    trace, events, procs, threads, slices = summary(out)
    assert list(procs.values()) == ["workload.py"]
    names = {t.thread_name for t in threads.values()}
    assert {"MainThread", "worker0", "worker1", "worker2"} <= names
    for w in ("worker0", "worker1", "worker2"):
        n = names_on(slices, threads, thread_name=w)
        assert n["worker"] == 1 and n["fails"] == 1
        assert n["numbers"] == 11  # a generator: one slice per resumption (10 values + the end)
        assert n["fib"] == sum(1 for i in range(10) for _ in range(_calls(i)))
    main = names_on(slices, threads, thread_name="MainThread")
    assert main["child"] >= 10  # each coroutine: one slice per resumption (start + after sleep)
    # source locations: interned once per code object, with file and line
    locs = {}
    for p in trace.packet:
        for loc in p.interned_data.source_locations:
            locs.setdefault((p.trusted_packet_sequence_id, loc.iid), []).append(loc)
    fibs = [v[0] for v in locs.values() if v[0].function_name == "fib"]
    assert fibs and all(f.file_name.endswith("workload.py") and f.line_number == 7 for f in fibs)
    begins = [e for e in events if e.type == TYPE_BEGIN]
    assert all(p.track_event.HasField("source_location_iid")
               for p in trace.packet if p.HasField("track_event")
               and p.track_event.type == TYPE_BEGIN)
    assert len(begins) > 1000


def _calls(n):
    return 1 if n < 2 else 1 + _calls(n - 1) + _calls(n - 2)


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_follow_children_one_trace(tmp_path, method):
    p, out = run(tmp_path, "--follow-children", PROGRAMS / "children.py", method, check_rc=0)
    assert p.stdout.strip() == "285"
    trace, events, procs, threads, slices = summary(out)
    assert len(procs) == 3, procs  # the program, its multiprocessing child, the subprocess
    # the subprocess is `sys.executable -c ...`: named after the interpreter it runs
    interp = os.path.basename(sys.executable)
    assert sorted(procs.values()) == sorted(["children.py", f"children.py ({method}-child)",
                                             interp])
    by_name = {v: k for k, v in procs.items()}
    child = names_on(slices, threads, pid=by_name[f"children.py ({method}-child)"])
    assert child["child_work"] == 1 and child["square"] == 10
    assert names_on(slices, threads, pid=by_name[interp])["sub"] == 1
    assert names_on(slices, threads, pid=by_name["children.py"])["main"] == 1
    seqs = collections.defaultdict(set)
    for pk in trace.packet:
        if pk.HasField("track_descriptor") and pk.track_descriptor.HasField("thread"):
            seqs[pk.trusted_packet_sequence_id].add(pk.track_descriptor.thread.pid)
    assert all(len(pids) == 1 for pids in seqs.values()), seqs  # sequences kept disjoint
    assert p.stderr == ""  # no child left out
    assert not list(tmp_path.glob("vperfetto-children-*"))  # collected and removed
    # every process's trace deflated (run's --compress 1 default reaches the children)
    raw = pb2.Trace()
    raw.ParseFromString(out.read_bytes())
    assert sum(pk.HasField("compressed_packets") for pk in raw.packet) >= 3
    assert not any(pk.HasField("track_event") for pk in raw.packet)


def test_filters_depth_and_min_duration(tmp_path):
    _, out = run(tmp_path, "--exclude", "threading", "--exclude", "asyncio", "--max-depth", "3",
                 PROGRAMS / "workload.py", check_rc=0)
    _, events, procs, threads, slices = summary(out)
    n = names_on(slices, threads)
    assert not any(k.startswith(("Thread.", "Condition.", "BaseEventLoop")) for k in n)
    for sl in slices.values():
        assert max(d for *_, d in sl) <= 2
    _, out = run(tmp_path, "--min-duration-us", "200", PROGRAMS / "workload.py", check_rc=0)
    _, events, procs, threads, slices = summary(out)
    for sl in slices.values():
        assert all(end - begin >= 200_000 for _, begin, end, _ in sl)
    assert names_on(slices, threads, thread_name="MainThread")["main"] == 1


def test_ring_mode(tmp_path):
    p, out = run(tmp_path, "--mode", "ring", "--buffer-kb", "8192", PROGRAMS / "workload.py",
                 check_rc=0)
    _, events, procs, threads, slices = summary(out)  # big enough: nothing lost, all balanced
    assert names_on(slices, threads, thread_name="MainThread")["main"] == 1


def test_include_and_c_calls(tmp_path):
    script = tmp_path / "c.py"
    script.write_text("import json\n\ndef f():\n    return len(json.dumps([1]))\n\nf()\n")
    _, out = run(tmp_path, "--include", "__main__", "--include", "json", "--c-calls", script,
                 check_rc=0)
    _, events, procs, threads, slices = summary(out)
    n = names_on(slices, threads)
    assert n["f"] == 1 and n["len"] == 1 and n["dumps"] == 1
    qual = "JSONEncoder." if sys.version_info >= (3, 11) else ""  # co_qualname: 3.11+
    assert n[qual + "encode"] == 1 and n[qual + "iterencode"] == 1
    assert not any(k.startswith("<module threading") for k in n)  # not included


def test_bad_command_lines(tmp_path):
    for args in ([], ["--max-depth", "x", "a.py"], [tmp_path / "missing.py"], ["-m", "no_such_mod_zz"]):
        p = subprocess.run([sys.executable, "-m", "vperfetto", "run", *map(str, args)],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert p.returncode == 2, (args, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    h = subprocess.run([sys.executable, "-m", "vperfetto", "run", "--help"], capture_output=True,
                       text=True, timeout=60)
    assert h.returncode == 0 and "example:" in h.stdout
    top = subprocess.run([sys.executable, "-m", "vperfetto", "--help"], capture_output=True,
                         text=True, timeout=60).stdout
    for cmd in ("run", "demo", "host", "guest", "vperfetto.merge", "vperfetto.inspect",
                "vperfetto.open"):
        assert cmd in top


def test_run_module_form(tmp_path):
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "tool.py").write_text("import sys\n\ndef go():\n    print(sys.argv[1:])\n\n"
                                 "if __name__ == '__main__':\n    go()\n")
    p, out = run(tmp_path, "-m", "mypkg.tool", "z", check_rc=0)
    assert p.stdout == "['z']\n"
    _, events, procs, threads, slices = summary(out)
    assert list(procs.values()) == ["mypkg.tool"]
    assert names_on(slices, threads)["go"] == 1


def test_profile_context_manager_across_ring_resets(tmp_path):
    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    def work():
        for _ in range(20):
            fib(12)

    path = tmp_path / "p.pftrace"
    with vperfetto.profile(path, buffer_kb=256):
        ts = [threading.Thread(target=work, name=f"t{i}") for i in range(3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    trace = load_trace(path)
    events = resolve(trace)  # every name and source location defined after its reset
    resets = sum(1 for p in trace.packet if p.sequence_flags & 1)
    assert resets > 10
    threads = {d.uuid: d.thread for d in descriptors(trace).values() if d.HasField("thread")}
    assert {"t0", "t1", "t2"} & {t.thread_name for t in threads.values()}  # the last writers
    # The ring lost its oldest chunks: ends whose begins went with them are
    # left over at the start (trace_processor ignores them); the rest nests.
    depth = collections.Counter()
    fibs = 0
    for e in sorted(events, key=lambda e: (e.ts, e.index)):
        if e.type == TYPE_BEGIN:
            depth[e.track_uuid] += 1
            fibs += e.name.endswith("fib")
        elif depth[e.track_uuid]:
            depth[e.track_uuid] -= 1
    assert fibs > 1000
    with pytest.raises(vperfetto.TracingStateError):
        with vperfetto.profile():  # no path, no session
            pass


def test_run_under_guest_reaches_the_host(tmp_path):
    import time

    sock = tmp_path / "g.sock"
    host = subprocess.Popen([sys.executable, "-m", "vperfetto", "host", "--listen", f"unix:{sock}",
                             "--out-dir", str(tmp_path / "traces"), "--once"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    g = subprocess.run([sys.executable, "-m", "vperfetto", "guest", "--connect", f"unix:{sock}",
                        "--name", "vm1", "--out", str(tmp_path / "vm1.pftrace"), "--",
                        sys.executable, "-m", "vperfetto", "run", "--follow-children",
                        str(PROGRAMS / "exits.py"), "a", "--b"],
                       capture_output=True, text=True, timeout=120)
    assert g.returncode == 3, g.stderr  # the program's exit code, through both
    out, err = host.communicate(timeout=60)
    assert host.returncode == 0, err
    comb = load_trace(tmp_path / "traces" / "vm1.combined.pftrace")
    names = {e.name for e in resolve(comb)}
    assert {"leave", "main", "<module __main__>"} <= names
    procs = [d.process.process_name for d in descriptors(comb).values() if d.HasField("process")]
    assert "vm1: exits.py" in procs


def test_profile_times_are_boottime(tmp_path):
    """Calls are timed from the TSC where the kernel keeps time with it
    (re-anchored to CLOCK_BOOTTIME every millisecond on each thread, the
    rate measured against it): every slice still lies where BOOTTIME
    readings around and inside the call put it, on several threads, from
    the first call (before the rate is known) through many re-anchors."""
    import time

    marks: dict = collections.defaultdict(list)

    def timed(k, i, before):
        inside = vperfetto.boot_time_ns()
        if i % 7 == 0:
            time.sleep(0.0015)  # spans re-anchors
        marks[k].append((before, inside, vperfetto.boot_time_ns()))

    def body(k):
        for i in range(300):
            timed(k, i, vperfetto.boot_time_ns())
            marks[k][-1] += (vperfetto.boot_time_ns(),)

    path = tmp_path / "t.pftrace"
    with vperfetto.profile(path, include=[__name__]):
        ts = [threading.Thread(target=body, args=(k,), name=f"t{k}") for k in range(3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    _, events, _, threads, slices = summary(path)
    workers = {u: t.thread_name for u, t in threads.items() if t.thread_name.startswith("t")}
    assert sorted(workers.values()) == ["t0", "t1", "t2"]
    for uuid, name in workers.items():
        sl = slices[uuid]
        k = int(name[1:])
        got = sorted((b, e) for (name, b, e, _) in sl if name.endswith("timed"))
        assert len(got) == len(marks[k]) == 300
        for (b, e), (before_ns, inside, last_inside, after) in zip(got, marks[k]):
            assert before_ns <= b <= inside, (before_ns, b, inside)
            assert last_inside <= e <= after, (last_inside, e, after)
