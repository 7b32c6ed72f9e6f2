"""Compressed traces (Session(compress=N), profile(), run --compress): the
packets deflated in runs inside TracePacket.compressed_packets, as the
Perfetto tracing service writes them. Decoded with the official schema and
zlib: every packet is still there, in order; every reader of ours reads the
compressed trace as it reads the same packets uncompressed."""

from __future__ import annotations

import subprocess
import sys
import threading
import zlib

import pytest

import vperfetto
from conftest import load_trace, pb2, resolve, slices_by_track
from vperfetto import timeline
from vperfetto.inspect import inspect

LIMIT = 512 * 1024  # trace_packet.proto: each compressed_packets packet stays under it


def raw_packets(path):
    t = pb2.Trace()
    t.ParseFromString(path.read_bytes())
    return t


def _workload(n, threads=3):
    def body(k):
        for i in range(n):
            with vperfetto.slice(f"work{k}", category="c", args={"i": i, "s": "x" * (i % 50)}):
                vperfetto.counter(f"q{k}", i)
    ts = [threading.Thread(target=body, args=(k,), name=f"w{k}") for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


@pytest.mark.parametrize("mode", ["ring", "discard", "stream"])
def test_compressed_session_keeps_every_packet(tmp_path, mode):
    """Several runs of packets (more than one 448 KB run), three threads, every
    arg kind the workload writes: inflated, the same events and slices as the
    events counted; each compressed packet under 512 KB; the TraceConfig
    says DEFLATE."""
    path = tmp_path / "c.pftrace"
    n = 6000
    with vperfetto.Session(path, mode=mode, buffer_kb=65536, compress=1):
        _workload(n)
    raw = raw_packets(path)
    comp = [p for p in raw.packet if p.HasField("compressed_packets")]
    assert len(comp) >= 2, "expected several runs"
    assert all(p.ByteSize() + 8 < LIMIT for p in comp)
    # nothing but compressed runs (the packets are small)
    assert all(p.HasField("compressed_packets") for p in raw.packet)
    trace = load_trace(path)
    cfg = [p.trace_config for p in trace.packet if p.HasField("trace_config")]
    assert [c.compression_type for c in cfg] == [pb2.TraceConfig.COMPRESSION_TYPE_DEFLATE]
    events = resolve(trace)
    slices = slices_by_track(events)
    assert sum(len(s) for s in slices.values()) == 3 * n
    counters = [e for e in events if e.counter is not None]
    assert len(counters) == 3 * n
    # ~7x smaller than the packets it holds
    assert path.stat().st_size * 3 < sum(len(zlib.decompress(p.compressed_packets)) for p in comp)


def test_readers_read_compressed_traces_as_plain_ones(tmp_path):
    """The timeline model and the --check summary of a compressed trace are
    those of the same packets written uncompressed."""
    path = tmp_path / "c.pftrace"
    with vperfetto.Session(path, buffer_kb=65536, compress=6):
        _workload(3000)
    plain = tmp_path / "plain.pftrace"
    plain.write_bytes(load_trace(path).SerializeToString())
    assert plain.stat().st_size > 3 * path.stat().st_size
    m_c = timeline.model_from_trace(path, max_slices=10**6)
    m_p = timeline.model_from_trace(plain, max_slices=10**6)
    assert m_c["tracks"] == m_p["tracks"]
    s_c, s_p = inspect(path, check=True), inspect(plain, check=True)
    assert s_c["findings"] == s_p["findings"] == []
    assert s_c["track_events"] == s_p["track_events"] == \
        {"slice_begin": 9000, "slice_end": 9000, "instant": 0, "counter": 9000}


def test_profile_compresses_by_default(tmp_path):
    """Whole-program tracing: ~4 bytes per call compressed (the issue's
    target: at most 16), ~30 without; the same calls either way."""
    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    sizes, calls = {}, {}
    for comp in (1, 0):
        path = tmp_path / f"{comp}.pftrace"
        with vperfetto.profile(path, compress=comp, include=[__name__]):
            fib(20)
        sizes[comp] = path.stat().st_size
        events = resolve(load_trace(path))
        calls[comp] = sum(1 for s in slices_by_track(events).values() for x in s if x[0].endswith("fib"))
    n = 21891  # fib(20)'s calls
    assert calls[0] == calls[1] == n
    assert sizes[1] / n <= 16 < sizes[0] / n


def test_run_compress_option(tmp_path):
    prog = tmp_path / "p.py"
    prog.write_text("def f(n):\n    return n if n < 2 else f(n-1) + f(n-2)\nf(18)\n")
    sizes = {}
    for level in ("0", "1", "9"):
        out = tmp_path / f"{level}.pftrace"
        p = subprocess.run([sys.executable, "-m", "vperfetto", "run", "-q", "-o", str(out),
                            "--compress", level, str(prog)], capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        sizes[level] = out.stat().st_size
        assert any(pk.HasField("compressed_packets") for pk in raw_packets(out).packet) == (level != "0")
    assert sizes["9"] <= sizes["1"] < sizes["0"] / 4
    p = subprocess.run([sys.executable, "-m", "vperfetto", "run", "--compress", "12", str(prog)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "--compress" in p.stderr


def test_bad_compress_values(tmp_path):
    with pytest.raises(ValueError, match="compress"):
        vperfetto.Session(tmp_path / "x", compress=10)
    with pytest.raises(TypeError, match="compress"):
        vperfetto.Session(tmp_path / "x", compress="1")  # type: ignore[arg-type]
    from vperfetto._native import ffi, lib, new_error

    cfg = ffi.gc(lib.vp_config_new(), lib.vp_config_free)
    err = new_error()
    assert lib.vp_config_set_compression(cfg, 10, err) == lib.VP_E_INVALID_ARGUMENT
    assert b"0 .. 9" in ffi.string(err.message)


def test_non_regular_output_is_written_as_is(tmp_path):
    """A FIFO output cannot be rewritten: its packets go out uncompressed."""
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    with vperfetto.Session(fifo, compress=1, crash_safe=False):
        vperfetto.instant("hello")
    reader.join(30)
    t = pb2.Trace()
    t.ParseFromString(got[0])
    assert not any(p.HasField("compressed_packets") for p in t.packet)
    assert any(p.HasField("track_event") for p in t.packet)
