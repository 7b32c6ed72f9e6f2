"""Cost of a slice inside an asyncio Task (its own track) against the thread track.

    python benchmarks/asyncio_tracks.py [--pairs N] [--reps R]

Rows (ns per begin/end pair, medians over R round-robin repetitions, GC off,
a stream session writing to a temporary file):

* thread track: ``begin('name'); end()`` on a plain thread, no event loop;
* in a task: the same statements inside a coroutine run as an asyncio Task
  (the pair goes on the task's track: current task looked up, the event
  written with the task track's uuid);
* in the loop, outside a task: the statements in a ``call_soon`` callback
  (the loop runs, no task: the thread track after one dict lookup);
* ``with slice('name')`` and a pre-interned ``Event`` in a task.

Target (issue 11): a task-track pair costs at most 3x the thread-track pair.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _report import Row, machine_line, print_table  # noqa: E402

import vperfetto  # noqa: E402


def pairs(n):
    begin, end = vperfetto.begin, vperfetto.end
    t0 = time.perf_counter_ns()
    for _ in range(n):
        begin("name")
        end()
    return (time.perf_counter_ns() - t0) / n


def with_slices(n):
    sl = vperfetto.slice
    t0 = time.perf_counter_ns()
    for _ in range(n):
        with sl("name"):
            pass
    return (time.perf_counter_ns() - t0) / n


EV = vperfetto.Event("name")


def events(n):
    b, e = EV.begin, vperfetto.Event.end
    t0 = time.perf_counter_ns()
    for _ in range(n):
        b()
        e()
    return (time.perf_counter_ns() - t0) / n


def empty(n):
    t0 = time.perf_counter_ns()
    for _ in range(n):
        pass
    return (time.perf_counter_ns() - t0) / n


def in_task(fn, n):
    async def task():
        return fn(n)
    return asyncio.run(task())


def in_callback(fn, n):
    async def main():
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        loop.call_soon(lambda: fut.set_result(fn(n)))
        return await fut
    return asyncio.run(main())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=200_000)
    ap.add_argument("--reps", type=int, default=7)
    a = ap.parse_args()
    n = a.pairs
    tmp = tempfile.mkdtemp(prefix="vp-bench-")
    kinds = {
        "thread": lambda: pairs(n), "task": lambda: in_task(pairs, n),
        "callback": lambda: in_callback(pairs, n),
        "thread_with": lambda: with_slices(n), "task_with": lambda: in_task(with_slices, n),
        "thread_event": lambda: events(n), "task_event": lambda: in_task(events, n),
        "loop": lambda: empty(n), "loop_task": lambda: in_task(empty, n),
    }
    res = {k: [] for k in kinds}
    gc.disable()
    with vperfetto.Session(os.path.join(tmp, "t.pftrace"), mode="stream") as s:
        for _ in range(a.reps):
            for k, fn in kinds.items():
                res[k].append(fn())
    gc.enable()
    assert s.dropped == 0
    loop_ns = statistics.median(res["loop"])
    net = {k: [v - loop_ns for v in vs] for k, vs in res.items()}
    thread = statistics.median(net["thread"])
    print(machine_line())
    print(f"{a.reps} repetitions of {n} pairs, medians, net of the empty loop ({loop_ns:.1f} ns)\n")
    print_table("asyncio: a slice on the task's track vs the thread's track", [
        Row("begin('name'); end() on the thread track", net["thread"]),
        Row("the same inside an asyncio Task (task track)", net["task"], thread, "thread",
            target=3),
        Row("the same in a loop callback, outside any task", net["callback"], thread, "thread"),
        Row("with slice('name') on the thread track", net["thread_with"]),
        Row("with slice('name') inside a Task", net["task_with"],
            statistics.median(net["thread_with"]), "thread", target=3),
        Row("Event.begin(); Event.end() on the thread track", net["thread_event"]),
        Row("Event.begin(); Event.end() inside a Task", net["task_event"],
            statistics.median(net["thread_event"]), "thread", target=3),
    ])
    return 0


if __name__ == "__main__":
    sys.exit(main())
