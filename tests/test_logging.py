"""vperfetto.LogHandler: each record an instant on the calling thread's track."""

from __future__ import annotations

import logging
import threading

import vperfetto
from conftest import TYPE_INSTANT, descriptors, load_trace, resolve


def test_records_are_instants_with_level_logger_message_location(trace_path):
    log = logging.getLogger("app.db")
    log.setLevel(logging.DEBUG)
    handler = vperfetto.LogHandler()
    log.addHandler(handler)
    try:
        log.info("outside a session: nothing")
        with vperfetto.Session(trace_path):
            log.warning("slow query %d ms", 120)
            t = threading.Thread(target=lambda: log.error("from %s", "worker"), name="worker0")
            t.start()
            t.join()
            handler.emit(log.makeRecord("app.db", logging.DEBUG, __file__, 1, "bad format %d",
                                        ("x",), None))  # never raises into the program
    finally:
        log.removeHandler(handler)
    trace = load_trace(trace_path)
    descs = descriptors(trace)
    evs = sorted((e for e in resolve(trace) if e.type == TYPE_INSTANT), key=lambda e: e.ts)
    assert [e.name for e in evs] == ["WARNING", "ERROR", "DEBUG"]
    w = evs[0]
    assert w.categories == ["log"]
    assert w.args["message"] == "slow query 120 ms" and w.args["logger"] == "app.db"
    assert w.args["level"] == logging.WARNING and w.args["file"] == __file__
    assert w.args["function"].startswith("test_records") and w.args["line"] > 0
    assert descs[evs[1].track_uuid].thread.thread_name == "worker0"
    assert evs[2].args["message"] == "'bad format %d' % ('x',)"


def test_records_inside_a_task_go_on_its_track(trace_path):
    import asyncio

    log = logging.getLogger("app.task")
    log.setLevel(logging.INFO)
    handler = vperfetto.LogHandler()
    log.addHandler(handler)

    async def job():
        with vperfetto.slice("work"):
            log.info("inside")

    try:
        with vperfetto.Session(trace_path):
            async def main():
                await asyncio.create_task(job(), name="logging-task")
            asyncio.run(main())
    finally:
        log.removeHandler(handler)
    trace = load_trace(trace_path)
    descs = descriptors(trace)
    (rec,) = [e for e in resolve(trace) if e.type == TYPE_INSTANT]
    assert descs[rec.track_uuid].name == "logging-task" and rec.args["message"] == "inside"
