"""asyncio: slices begun inside a Task live on that task's track, decoded with
the official schema. Also run with VPERFETTO_PURE_CFFI=1 by .ci/run."""

from __future__ import annotations

import asyncio
import threading

import pytest

import vperfetto
from conftest import TYPE_BEGIN, TYPE_END, TYPE_INSTANT, descriptors, load_trace, resolve, \
    slices_by_track

SLEEP = 0.02


def decode(path):
    trace = load_trace(path)
    events = resolve(trace)
    descs = descriptors(trace)
    return trace, events, descs, slices_by_track(events)


def thread_uuid(descs):
    (t,) = [d for d in descs.values() if d.HasField("thread")
            and d.thread.tid == threading.get_native_id()]
    return t.uuid


def test_interleaved_tasks_nest_and_time_on_their_tracks(trace_path):
    async def work(i):
        with vperfetto.slice(f"outer{i}", args={"i": i}):
            await asyncio.sleep(SLEEP)
            with vperfetto.slice(f"inner{i}"):
                vperfetto.instant(f"mark{i}")
                await asyncio.sleep(SLEEP)

    async def main():
        tasks = [asyncio.create_task(work(i), name=f"worker-{i}") for i in range(3)]
        await asyncio.gather(*tasks)

    with vperfetto.Session(trace_path):
        vperfetto.begin("outside")  # a plain thread keeps the thread track
        vperfetto.end()
        asyncio.run(main())
    trace, events, descs, slices = decode(trace_path)
    tu = thread_uuid(descs)
    assert [s[0] for s in slices[tu]] == ["outside"]
    for i in range(3):
        (track,) = [d for d in descs.values() if d.name == f"worker-{i}"]
        assert track.parent_uuid == tu
        sl = sorted(slices[track.uuid], key=lambda s: s[3])
        assert [(n, depth) for n, _, _, depth in sl] == [(f"outer{i}", 0), (f"inner{i}", 1)]
        (o, ob, oe, _), (n, ib, ie, _) = sl
        assert oe - ob >= 2 * SLEEP * 1e9 and ie - ib >= SLEEP * 1e9
        assert ob <= ib and ie <= oe
        (mark,) = [e for e in events if e.name == f"mark{i}"]
        assert mark.type == TYPE_INSTANT and mark.track_uuid == track.uuid and ib <= mark.ts <= ie
        assert [e.args for e in events if e.name == f"outer{i}"] == [{"i": i}]


def test_gather_of_100_tasks_and_cancellation(trace_path):
    ends = {}

    async def short(i):
        vperfetto.begin("short", args={"i": i})
        await asyncio.sleep(0.001 * (i % 7))
        vperfetto.end()

    async def cancelled_with():
        with vperfetto.slice("with-block"):
            await asyncio.sleep(10)

    async def cancelled_bare():
        vperfetto.begin("bare-begin")  # never reaches its end(): the task's end ends it
        await asyncio.sleep(10)
        vperfetto.end()

    async def main():
        await asyncio.gather(*(short(i) for i in range(100)))
        a = asyncio.create_task(cancelled_with(), name="cw")
        b = asyncio.create_task(cancelled_bare(), name="cb")
        await asyncio.sleep(0.01)
        a.cancel()
        b.cancel()
        for t in (a, b):
            with pytest.raises(asyncio.CancelledError):
                await t
        await asyncio.sleep(0)  # done callbacks
        ends["cancelled"] = vperfetto.boot_time_ns()
        await asyncio.create_task(short(0), name="after")  # may reuse a freed handle

    with vperfetto.Session(trace_path):
        asyncio.run(main())
    trace, events, descs, slices = decode(trace_path)
    tracks = {}
    for uuid, sl in slices.items():
        if uuid in descs and not descs[uuid].HasField("thread"):
            tracks[descs[uuid].name] = sl
    shorts = [d for d in descs.values() if not d.HasField("thread") and d.name.startswith("Task-")]
    assert len(shorts) == 100
    assert sorted(e.args["i"] for e in events if e.name == "short" and e.type == TYPE_BEGIN
                  ) == sorted(list(range(100)) + [0])
    assert [s[0] for s in tracks["cw"]] == ["with-block"]
    assert [s[0] for s in tracks["cb"]] == ["bare-begin"]
    cb = descs_by_name(descs)["cb"].uuid
    # nothing on a task's track once it is gone
    assert all(e.ts <= ends["cancelled"] for e in events if e.track_uuid == cb)
    assert len({d.uuid for d in descs.values()}) == len(descs)


def descs_by_name(descs):
    return {d.name: d for d in descs.values() if d.name}


def test_traced_coroutines_generators_async_generators(trace_path):
    @vperfetto.traced
    async def fetch(i):
        await asyncio.sleep(SLEEP)
        return i

    @vperfetto.traced
    def numbers(n):
        for i in range(n):
            yield i
        return "done"

    @vperfetto.traced
    async def ticks(n):
        for i in range(n):
            await asyncio.sleep(0.001)
            yield i

    async def main():
        got = await asyncio.gather(fetch(1), fetch(2))
        items = [i async for i in ticks(3)]
        gen = ticks(5)
        first = await gen.__anext__()
        await gen.aclose()
        return got, items, first

    with vperfetto.Session(trace_path):
        got, items, first = asyncio.run(main())
        assert list(numbers(3)) == [0, 1, 2]
        g = numbers(10)
        next(g)
        with pytest.raises(ValueError):
            g.throw(ValueError("x"))
    assert got == [1, 2] and items == [0, 1, 2] and first == 0
    trace, events, descs, slices = decode(trace_path)
    tu = thread_uuid(descs)
    # numbers(3): 3 values + the end; numbers(10): one value + the throw
    assert [s[0] for s in slices[tu]].count("numbers") == 6
    fetches = [s for uuid, sl in slices.items() if uuid != tu for s in sl if s[0] == "fetch"]
    assert len(fetches) == 2 and all(e - b >= SLEEP * 1e9 for _, b, e, _ in fetches)
    tick = [s for sl in slices.values() for s in sl if s[0] == "ticks"]
    assert len(tick) == 4 + 1 + 1  # 3 items + the end; one item; the aclose


def test_task_tracks_described_again_after_ring_resets(tmp_path):
    path = tmp_path / "ring.pftrace"

    async def busy(k):
        for i in range(4000):
            with vperfetto.slice("step", args={"k": k}):
                if i % 500 == 0:
                    await asyncio.sleep(0)

    async def main():
        await asyncio.gather(*(asyncio.create_task(busy(k), name=f"busy{k}") for k in range(3)))

    with vperfetto.Session(path, buffer_kb=64, mode="ring") as s:
        asyncio.run(main())
    trace = load_trace(path)
    events = resolve(trace)  # the ring lost begins whose ends survive: no balance check
    descs = descriptors(trace)
    assert s.stats["chunks_overwritten"] > 0
    steps = [e for e in events if e.name == "step"]
    assert steps and all(e.track_uuid in descs for e in steps)  # described in every chunk
    assert {descs[e.track_uuid].name for e in steps} <= {"busy0", "busy1", "busy2"}


def test_loop_in_a_thread_and_no_session(trace_path):
    async def job():
        with vperfetto.slice("in-thread-task"):
            await asyncio.sleep(0.001)

    asyncio.run(job())  # no session: nothing, no error
    with vperfetto.Session(trace_path):
        t = threading.Thread(target=lambda: asyncio.run(job()), name="loop-thread")
        t.start()
        t.join()
    trace, events, descs, slices = decode(trace_path)
    (ev,) = [e for e in events if e.name == "in-thread-task" and e.type == TYPE_BEGIN]
    track = descs[ev.track_uuid]
    parent = descs[track.parent_uuid]
    assert parent.thread.thread_name == "loop-thread" and track.name.startswith("Task-")
    assert [e.type for e in events if e.track_uuid == ev.track_uuid] == [TYPE_BEGIN, TYPE_END]
