"""Real names: thread tracks carry the Python thread's name, the process track the
program's name unless set_process_name() says otherwise."""

from __future__ import annotations

import subprocess
import sys
import threading

import vperfetto
from conftest import descriptors, load_trace, packet_times


def latest_names(path):
    """pid -> process name, tid -> thread name, as trace_processor keeps them
    (the latest descriptor in time wins)."""
    trace = load_trace(path)
    times = packet_times(trace)
    procs, threads = {}, {}
    for _, p in sorted(((t, p) for t, p in zip(times, trace.packet)
                        if p.HasField("track_descriptor")), key=lambda tp: tp[0]):
        d = p.track_descriptor
        if d.HasField("process"):
            procs[d.process.pid] = d.process.process_name
        if d.HasField("thread"):
            threads[d.thread.tid] = d.thread.thread_name
    return procs, threads


def test_thread_names_follow_python_threads(trace_path):
    tids = {}

    def work(k):
        tids[k] = threading.get_native_id()
        vperfetto.begin("w")
        vperfetto.end()
        if k == 1:
            threading.current_thread().name = "renamed"
            vperfetto.set_thread_name()  # reads the Python name again
            vperfetto.instant("after rename")
        if k == 2:
            vperfetto.set_thread_name("explicit")
            vperfetto.instant("x", args={"a": 1})  # a slow-path event keeps the explicit name

    with vperfetto.Session(trace_path):
        ts = [threading.Thread(target=work, args=(k,), name=f"worker{k}") for k in range(3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        vperfetto.instant("main")
    procs, threads = latest_names(trace_path)
    assert threads[tids[0]] == "worker0"
    assert threads[tids[1]] == "renamed"
    assert threads[tids[2]] == "explicit"
    assert threads[threading.get_native_id()] == "MainThread"
    assert all(procs.values())  # named (process-wide: an earlier test may have chosen it)


def test_process_name_defaults_to_the_program(tmp_path):
    out = tmp_path / "p.pftrace"
    script = tmp_path / "my_tool.py"
    script.write_text(f"import vperfetto\nwith vperfetto.Session({str(out)!r}):\n"
                      "    vperfetto.instant('x')\n")
    subprocess.run([sys.executable, str(script)], check=True, timeout=60)
    assert list(latest_names(out)[0].values()) == ["my_tool.py"]
    script.write_text(f"import vperfetto\nvperfetto.set_process_name('chosen')\n"
                      f"with vperfetto.Session({str(out)!r}):\n    vperfetto.instant('x')\n")
    subprocess.run([sys.executable, str(script)], check=True, timeout=60)
    assert list(latest_names(out)[0].values()) == ["chosen"]
    pkg = tmp_path / "tool_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(f"import vperfetto\nwith vperfetto.Session({str(out)!r}):\n"
                                     "    vperfetto.instant('x')\n")
    subprocess.run([sys.executable, "-m", "tool_pkg"], check=True, timeout=60, cwd=tmp_path)
    assert list(latest_names(out)[0].values()) == ["tool_pkg"]
