"""Real system traces (sched, ftrace, process data, perf samples) merged in
every form: nothing of either side is lost or confused in the viewer."""

from __future__ import annotations

import collections
import itertools

import pytest

from vperfetto.inspect import inspect
from vperfetto.merge import merge
from conftest import SHARED, load_trace

REAL = SHARED / "real"
needs_real = pytest.mark.skipif(not REAL.is_dir(),
                                reason="../shared/testdata/real is not beside the project")

SYSTEM = ["android12_emulator_x86_64_sched_perf.pftrace",
          "android12_emulator_x86_64_sched_perf_callstacks.pftrace",
          "android11_s20_process_sys_stats.pftrace",
          "android11_s20_sched_ftrace_sdk.perfetto-trace",
          "android11_s21_gpu_counters.pftrace",
          "android13_pixel7pro_atrace_frametimeline.perfetto-trace",
          "linux_desktop_systing_compact_sched.pb"]

PID_NAMES = {"pid", "tid", "tgid", "ppid"}


def _is_pid_field(name: str) -> bool:
    return name in PID_NAMES or name.endswith("_pid") or name.endswith("_tgid") or \
        name in ("to_proc", "to_thread")


def _repeated(fd) -> bool:
    rep = getattr(fd, "is_repeated", None)  # protobuf >= 5.28; `label` is gone in 7
    return rep if rep is not None else fd.label == fd.LABEL_REPEATED


def pids_in(msg, out, path=""):
    """Every value of a pid-like field in `msg`, by field path (schema-driven:
    whatever the official schema calls a pid, tid or tgid)."""
    for fd, value in msg.ListFields():
        where = f"{path}.{fd.name}"
        if fd.type == fd.TYPE_MESSAGE:
            for v in (value if _repeated(fd) else [value]):
                pids_in(v, out, where)
        elif _is_pid_field(fd.name) and fd.cpp_type in (fd.CPPTYPE_INT32, fd.CPPTYPE_INT64,
                                                         fd.CPPTYPE_UINT32, fd.CPPTYPE_UINT64):
            for v in (value if _repeated(fd) else [value]):
                out[where].add(v)
    return out


def _first_ts(name):
    return inspect(REAL / name)["first_ts"]


def _diff_guest_later(host, guest, seconds=100):
    """The time diff (guest minus host) that puts the guest's first event
    `seconds` after the host's: the guest started tracing later."""
    return _first_ts(guest) - (_first_ts(host) + seconds * 10**9)


@needs_real
@pytest.mark.parametrize("host,guest", [
    ("android11_s20_process_sys_stats.pftrace", "android12_emulator_x86_64_sched_perf.pftrace"),
    ("android12_emulator_x86_64_sched_perf.pftrace",
     "android12_emulator_x86_64_sched_perf_callstacks.pftrace"),
    ("android13_pixel7pro_atrace_frametimeline.perfetto-trace",
     "linux_desktop_systing_compact_sched.pb"),
])
def test_every_moved_pid_is_offset(tmp_path, host, guest):
    out = tmp_path / "m.pftrace"
    r = merge(host=REAL / host, guests={"vm": REAL / guest}, output=out,
              time_diff_ns=_diff_guest_later(host, guest))
    base = r.inputs[1]["pid_offset"]
    assert base >= 1_000_000
    comb = load_trace(out)
    moved = collections.defaultdict(set)
    for p in comb.packet[r.inputs[0]["packets_written"]:]:  # main first, then the moved side
        pids_in(p, moved)
    assert moved, "no pids on the moved side"
    bad = {k: sorted(v for v in vs if 0 < v < base)[:5] for k, vs in moved.items()
           if any(0 < v < base for v in vs)}  # (negative pids stay: they mean "none")
    assert not bad, f"pids left as they were on the moved side: {bad}"
    # ... and the mapping is the same offset everywhere (one thread, one tid)
    g = collections.defaultdict(set)
    for p in load_trace(REAL / guest).packet:
        pids_in(p, g)
    for k, vs in g.items():
        # pids are int32 in the kernel: 4294967295 in a uint32 field is -1 (unknown)
        assert {v + base if 0 < v < 1 << 31 else v for v in vs} == moved[k], k
