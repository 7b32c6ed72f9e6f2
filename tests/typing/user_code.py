"""A user's program against the public API, checked with ``mypy --strict``
against the installed package (py.typed, the compiled modules' stubs): CI
runs ``mypy --strict tests/typing/user_code.py`` and
tests/test_package.py does when mypy is installed. It is type-checked, not run."""

from __future__ import annotations

import asyncio
from typing import Iterator, List, Optional

import vperfetto
from vperfetto import timeline
from vperfetto.archive import write_archive
from vperfetto.inspect import format_findings, inspect
from vperfetto.merge import Alignment, JobResult, MergeReport, merge, merge_many
from vperfetto.recover import Recovery, recover
from vperfetto.vm import GuestLink, GuestResult, HostAgent, Workflow


@vperfetto.traced
def load(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@vperfetto.traced(name="render", category="gfx")
def render(frame: int) -> int:
    return frame * 2


@vperfetto.traced
async def fetch(n: int) -> List[int]:
    await asyncio.sleep(0)
    return list(range(n))


@vperfetto.traced
def items(n: int) -> Iterator[int]:
    yield from range(n)


def record(path: str) -> str:
    flow = vperfetto.new_flow_id()
    with vperfetto.Session(path, mode="ring", buffer_kb=1024, categories=["gfx"]) as session:
        vperfetto.set_process_name("app")
        vperfetto.set_thread_name()
        with vperfetto.slice("frame", category="gfx", args={"n": 1, "ok": True}, flow=flow):
            vperfetto.counter("queue_depth", 3)
            vperfetto.instant("vsync", ts=vperfetto.boot_time_ns())
        vperfetto.begin("upload", args={"bytes": 4096})
        vperfetto.end(terminating_flow=[flow])
        io = vperfetto.Track("io")
        io.begin("read")
        io.end()
        fps = vperfetto.CounterTrack("fps", unit="Hz")
        fps.set(59.9)
        ev = vperfetto.Event("tick", category="gfx")
        with ev:
            ev.instant()
        render(load(path)[0] if False else 1)
        asyncio.run(fetch(3))
        total: int = sum(items(4))
        vperfetto.clock_sync_marker()
        dropped: int = session.dropped
        assert total >= 0 and dropped >= 0
    with vperfetto.profile(path, include=["myapp.*"], min_duration_us=10):
        pass
    return session.stop()


def combine(guest: str, host: str, out: str) -> int:
    report: MergeReport = merge(guest, host, out)
    named = merge(host=host, guests={"vm1": guest}, output=out, machine_ids=True)
    a: Alignment = named.alignments[0]
    archive = write_archive(out + ".tar", host, {"vm1": guest}, alignments=[a])
    summary = inspect(out, check=True)
    print(format_findings(summary), archive.bytes_written, report.offset_ns + a.offset_ns)
    results: List[JobResult] = merge_many([{"host": host, "guests": {"vm1": guest}, "output": out}])
    print([r.ok for r in results])
    rec: Recovery = recover(out + ".vpbuf", out, remove=True)
    print(rec.summary(), rec.packets)
    model = timeline.model_from_trace(out, max_slices=1000)
    html: str = timeline.render_html(model)
    svg: str = timeline.render_svg(model, width=800)
    return len(html) + len(svg) + len(model["tracks"])


def vm_side(address: str) -> Optional[int]:
    with HostAgent(address, "traces") as agent:
        results: List[GuestResult] = agent.wait_for(1, timeout=5.0)
        print([r.name for r in results])
    with GuestLink(address, name="vm1") as link:
        est = link.sync()
        print(est.offset_ns, link.offset_ns)
    wf = Workflow()
    wf.set_guest_time(vperfetto.boot_time_ns())
    return wf.time_diff_ns


try:
    record("t.pftrace")
except vperfetto.VperfettoError as e:
    print(e.code)
