"""Crash-proof tracing: a process that dies keeps its trace.

Each death (SIGKILL, SIGTERM, SIGSEGV from a NULL write in a C extension,
os._exit(1), an uncaught exception in the writing threads) at a known event
index, in ring, discard and stream mode, with 1 and 8 writing threads
(tests/programs/crash.py): the trace recovered from the crash image holds
every event each thread completed before the death (its progress is kept in
a shared mapping that outlives it), at most the one in flight beyond, no
hole, decoded with the official schema and with interning resolved as
trace_processor does.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import struct
import subprocess
import sys

import pytest

from conftest import TYPE_BEGIN, load_trace, pb2, resolve

import vperfetto
from vperfetto import recover as vrecover
from vperfetto.inspect import inspect as vinspect

PROGRAM = pathlib.Path(__file__).parent / "programs" / "crash.py"
DEATHS = {"SIGKILL": -signal.SIGKILL, "SIGTERM": -signal.SIGTERM,
          "SIGSEGV": -signal.SIGSEGV, "exit": 1, "thread": 0}


def run_crash(tmp_path, mode, nthreads, death, k, buffer_kb=16384):
    trace = tmp_path / "t.pftrace"
    progress = tmp_path / "progress"
    progress.write_bytes(struct.pack("<q", -1) * nthreads)
    # Under AddressSanitizer (scripts/sanitize.sh --python) the deliberate
    # NULL write must die of SIGSEGV as it would in production, not be
    # turned into an ASan report and an abort.
    env = dict(os.environ)
    if "ASAN_OPTIONS" in env:
        env["ASAN_OPTIONS"] += ":handle_segv=0"
    p = subprocess.run([sys.executable, str(PROGRAM), str(trace), mode, str(nthreads), death,
                        str(k), str(progress), str(buffer_kb)],
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == DEATHS[death], p.stderr
    done = list(struct.unpack(f"<{nthreads}q", progress.read_bytes()))
    return trace, done


def begins_by_thread(path):
    """thread -> the i of every "work" begin, in trace order; the trace must
    decode with the official schema and resolve like trace_processor."""
    events = resolve(load_trace(path))
    out: dict = {}
    for e in events:
        if e.type == TYPE_BEGIN and e.name == "work":
            out.setdefault(e.args["t"], []).append(e.args["i"])
    return out


def check_complete(by_thread, done, nthreads, death, k):
    for t in range(nthreads):
        got = by_thread.get(t, [])
        # No hole, nothing twice, from the first event on.
        assert got == list(range(len(got))), f"thread {t}: {got[:5]}..{got[-5:]}"
        # Every event the thread completed, at most the one in flight more.
        assert done[t] + 1 <= len(got) <= done[t] + 2, (t, done[t], len(got))
    if death == "thread":
        assert [len(by_thread[t]) for t in range(nthreads)] == [k + t + 1 for t in range(nthreads)]
    else:
        assert len(by_thread[0]) == k + 1  # thread 0 died inside slice k


def check_no_findings(path):
    # Nothing trace_processor would lose or misread (our model of it).
    rep = vinspect(path, check=True)
    assert not rep["fails"], rep["findings"][:5]


MATRIX = [(death, mode, n) for death in DEATHS for mode in ("ring", "discard", "stream")
          for n in (1, 8)]


@pytest.mark.parametrize("death,mode,nthreads", MATRIX,
                         ids=[f"{d}-{m}-{n}t" for d, m, n in MATRIX])
def test_death_keeps_the_trace(tmp_path, death, mode, nthreads):
    k = 6000 if nthreads == 1 else 1500
    trace, done = run_crash(tmp_path, mode, nthreads, death, k)
    image = pathlib.Path(vrecover.image_path_for(trace))
    if death == "thread":
        # The threads died, the process did not: the ordinary trace, at exit.
        assert not image.exists()
        out = trace
    else:
        assert image.exists()
        out = tmp_path / "recovered.pftrace"
        r = vrecover.recover(image, out, remove=True)
        assert not image.exists() and r.removed
        assert r.mode == mode and r.packets > 0 and r.packets_skipped == 0
    check_complete(begins_by_thread(out), done, nthreads, death, k)
    check_no_findings(out)


def test_ring_keeps_the_newest(tmp_path):
    # A small ring: what it had overwritten is gone, the rest is a whole,
    # valid run of the newest events up to the death, and the stats say so.
    k = 20000
    trace, done = run_crash(tmp_path, "ring", 1, "SIGKILL", k, buffer_kb=256)
    out = tmp_path / "r.pftrace"
    r = vrecover.recover(vrecover.image_path_for(trace), out)
    got = begins_by_thread(out)[0]
    assert got == list(range(got[0], k + 1)) and got[0] > 0
    assert r.packets_lost > 0 and r.chunks_lost > 0
    stats = [p.trace_stats for p in load_trace(out).packet if p.HasField("trace_stats")]
    assert len(stats) == 1
    bs = stats[0].buffer_stats[0]
    assert bs.chunks_overwritten > 0 and bs.trace_writer_packet_loss >= r.packets_lost
    # The first packet after the lost chunks says so (with incremental
    # timestamps, the reset that defines the sequence's clock).
    first = next(p for p in load_trace(out).packet if p.trusted_packet_sequence_id > 1)
    assert first.previous_packet_dropped
    check_no_findings(out)


def test_discard_keeps_the_oldest(tmp_path):
    k = 20000
    trace, done = run_crash(tmp_path, "discard", 1, "SIGKILL", k, buffer_kb=256)
    out = tmp_path / "r.pftrace"
    r = vrecover.recover(vrecover.image_path_for(trace), out)
    got = begins_by_thread(out)[0]
    assert got == list(range(len(got))) and 0 < len(got) < k
    assert r.packets_lost > 0
    check_no_findings(out)


def test_next_session_recovers(tmp_path, capfd):
    trace, done = run_crash(tmp_path, "ring", 1, "SIGKILL", 3000)
    s = vperfetto.Session(trace).start()
    s.stop()
    err = capfd.readouterr().err
    assert s.recovered and os.path.exists(s.recovered)
    assert f"its trace was recovered from the crash-safe buffer into {s.recovered}" in err
    pid = int(err.split("process ")[1].split()[0])
    assert s.recovered == str(tmp_path / f"t.crash-{pid}.pftrace")
    assert len(begins_by_thread(s.recovered)[0]) == 3001
    # The new session's own trace is its own, and no image is left.
    assert "work" not in {e.name for e in resolve(load_trace(trace))}
    assert not os.path.exists(vrecover.image_path_for(trace))


def test_stream_recovers_into_its_own_output(tmp_path):
    trace, done = run_crash(tmp_path, "stream", 1, "SIGKILL", 4000)
    before = trace.stat().st_size
    p = subprocess.run([sys.executable, "-m", "vperfetto.recover",
                        vrecover.image_path_for(trace)], capture_output=True, text=True)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert "recovered" in p.stdout and str(trace) in p.stdout
    assert trace.stat().st_size > before
    assert len(begins_by_thread(trace)[0]) == 4001
    assert not os.path.exists(vrecover.image_path_for(trace))


def test_live_image_is_refused_and_read(tmp_path):
    # While a process traces into PATH, another cannot start on PATH; the
    # image can be read (the trace so far) and is kept.
    trace = tmp_path / "live.pftrace"
    code = ("import sys, vperfetto\n"
            f"s = vperfetto.Session({str(trace)!r}).start()\n"
            "for i in range(100): vperfetto.instant('x')\n"
            "print('ready', flush=True); sys.stdin.readline(); s.stop()\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        with pytest.raises(vperfetto.TracingStateError, match="being traced by another process"):
            vperfetto.Session(trace).start()
        r = vrecover.recover(vrecover.image_path_for(trace), tmp_path / "now.pftrace", remove=True)
        assert r.process_alive and not r.removed and r.packets >= 100
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(30) == 0
    finally:
        child.kill()
    assert not os.path.exists(vrecover.image_path_for(trace))
    assert sum(e.name == "x" for e in resolve(load_trace(trace))) == 100


def test_forked_child_does_not_hold_the_image(tmp_path):
    # A child forked while the parent traces lets the parent's lock go with
    # the parent: after the parent dies, the image is recoverable while the
    # child still lives.
    trace = tmp_path / "f.pftrace"
    code = ("import os, signal, sys, time, vperfetto\n"
            f"s = vperfetto.Session({str(trace)!r}).start()\n"
            "vperfetto.instant('before')\n"
            "if os.fork() == 0:\n"
            "    time.sleep(30); os._exit(0)\n"
            "time.sleep(0.2)\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    p = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        assert p.wait(30) == -signal.SIGKILL
        s = vperfetto.Session(trace).start()
        s.stop()
        assert s.recovered
        assert any(e.name == "before" for e in resolve(load_trace(s.recovered)))
    finally:
        os.killpg(p.pid, signal.SIGKILL)


def test_crash_safe_off_keeps_nothing_on_disk(tmp_path):
    trace = tmp_path / "m.pftrace"
    with vperfetto.Session(trace, crash_safe=False):
        assert not os.path.exists(vrecover.image_path_for(trace))
        vperfetto.instant("x")
    assert sum(e.name == "x" for e in resolve(load_trace(trace))) == 1
    with vperfetto.Session(trace):
        assert os.path.exists(vrecover.image_path_for(trace))
    assert not os.path.exists(vrecover.image_path_for(trace))


def test_no_image_where_none_can_be(tmp_path, capfd):
    # A buffer file that cannot be made (here its path is a directory) does
    # not stop tracing: the buffer stays in memory and that is said.
    trace = tmp_path / "m.pftrace"
    os.mkdir(vrecover.image_path_for(trace))
    with vperfetto.Session(trace):
        vperfetto.instant("x")
    assert sum(e.name == "x" for e in resolve(load_trace(trace))) == 1
    err = capfd.readouterr().err
    assert "not crash-safe" in err and str(trace) in err
    # An output that is no regular file (a FIFO, /dev/stdout) has no image beside it.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    with vperfetto.Session(fifo, mode="stream"):
        assert not os.path.exists(vrecover.image_path_for(fifo))
        vperfetto.instant("y")
    data = reader.communicate(timeout=60)[0]
    t = pb2.Trace()
    t.ParseFromString(data)
    assert sum(e.name == "y" for e in resolve(t)) == 1
    assert "not crash-safe" not in capfd.readouterr().err


def test_stream_flushes_in_the_background(tmp_path):
    # Without a flush call or a full chunk, a stream session's packets reach
    # the file within the flush period; with period 0 they do not.
    import time

    for period, expect in ((50, True), (0, False)):
        trace = tmp_path / f"s{period}.pftrace"
        with vperfetto.Session(trace, mode="stream", flush_period_ms=period):
            size0 = trace.stat().st_size
            vperfetto.instant("x")
            deadline = time.monotonic() + 5
            while trace.stat().st_size == size0 and time.monotonic() < deadline and expect:
                time.sleep(0.01)
            if not expect:
                time.sleep(0.3)
            assert (trace.stat().st_size > size0) == expect


def test_bad_arguments():
    with pytest.raises(ValueError):
        vperfetto.Session("x.pftrace", flush_period_ms=-1)
    with pytest.raises(TypeError):
        vperfetto.Session("x.pftrace", crash_safe=1)
    with pytest.raises(TypeError):
        vperfetto.Session("x.pftrace", flush_period_ms=1.5)


# --- bad images -------------------------------------------------------------------


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "vperfetto.recover", *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def test_cli_errors_are_one_line(tmp_path):
    cases = []
    cases.append(tmp_path / "missing.vpbuf")
    junk = tmp_path / "junk.vpbuf"
    junk.write_bytes(b"not an image at all" * 100)
    cases.append(junk)
    empty = tmp_path / "empty.vpbuf"
    empty.write_bytes(b"")
    cases.append(empty)
    newer = tmp_path / "newer.vpbuf"
    newer.write_bytes(b"VPBUFIMG" + struct.pack("<I", 99) + bytes(8192))
    cases.append(newer)
    for c in cases:
        p = _cli(c, "-o", tmp_path / "out.pftrace")
        assert p.returncode == 2, (c, p.stderr)
        assert p.stderr.count("\n") == 1 and p.stderr.startswith(
            "python -m vperfetto.recover: error: "), p.stderr
        assert not (tmp_path / "out.pftrace").exists()
    assert "newer than this vperfetto reads" in _cli(newer).stderr
    with pytest.raises(vperfetto.TraceFormatError):
        vrecover.recover(junk, tmp_path / "o.pftrace")
    with pytest.raises(vperfetto.UnsupportedError):
        vrecover.recover(newer, tmp_path / "o.pftrace")
    p = _cli()
    assert p.returncode == 2 and p.stderr.count("\n") == 1


def test_truncated_and_corrupt_images(tmp_path):
    # Every prefix and a spread of corruptions of a real image: a valid trace
    # or a clean error, never a crash (children, so a crash fails the test).
    trace, done = run_crash(tmp_path, "ring", 2, "SIGKILL", 300, buffer_kb=64)
    image = pathlib.Path(vrecover.image_path_for(trace))
    code = r'''
import json, os, pathlib, random, sys
import vperfetto
from vperfetto import recover
from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb2
src = pathlib.Path(sys.argv[1]).read_bytes()
work = pathlib.Path(sys.argv[2])
rng = random.Random(7)
cuts = sorted({0, 8, 12, 16, 100, 4095, 4096, 4097, 8191, 8192, 8193, len(src) // 2, len(src) - 1}
              | {rng.randrange(len(src)) for _ in range(20)})
variants = [src[:c] for c in cuts]
for _ in range(60):
    b = bytearray(src)
    for _ in range(rng.choice([1, 4, 32])):
        pos = rng.choice([rng.randrange(200), 4096 + rng.randrange(48 * 16), rng.randrange(len(b))])
        b[pos] = rng.randrange(256)
    variants.append(bytes(b))
ok = errs = 0
for i, v in enumerate(variants):
    img = work / f"v{i}.vpbuf"
    img.write_bytes(v)
    out = work / f"v{i}.pftrace"
    try:
        recover.recover(img, out)
    except vperfetto.VperfettoError as e:
        assert str(e), "an error without a message"
        assert not out.exists()
        errs += 1
        continue
    t = pb2.Trace()
    t.ParseFromString(out.read_bytes())
    ok += 1
print(json.dumps([ok, errs]))
'''
    work = tmp_path / "work"
    work.mkdir()
    p = subprocess.run([sys.executable, "-c", code, str(image), str(work)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    ok, errs = json.loads(p.stdout)
    assert ok > 20 and errs > 5


def test_reads_version_1_images():
    # A crash image of format version 1 kept in the repository (written by
    # the version that introduced the format): every later vperfetto reads it.
    data = pathlib.Path(__file__).parent / "data" / "crash-image-v1.vpbuf"
    out = pathlib.Path(os.environ.get("TMPDIR", "/tmp")) / f"v1-{os.getpid()}.pftrace"
    try:
        r = vrecover.recover(data, out)
        assert r.image_version == 1 and r.mode == "ring"
        got = begins_by_thread(out)
        assert sorted(got) == [0, 1] and all(v == list(range(len(v))) for v in got.values())
        assert [len(v) for v in got.values()] == [201, 201]
    finally:
        if out.exists():
            out.unlink()
