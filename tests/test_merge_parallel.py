"""The merge on several threads: the same bytes as on one, whatever the input."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

import vperfetto
from vperfetto.merge import merge
from conftest import SHARED, load_trace, pb2

REAL = SHARED / "real"
SDK = SHARED / "sdk-v7"
BOOT, MONO = pb2.BUILTIN_CLOCK_BOOTTIME, pb2.BUILTIN_CLOCK_MONOTONIC
EMULATOR = "android12_emulator_x86_64_sched_perf.pftrace"
GUESTS = ["android12_emulator_x86_64_sched_perf_callstacks.pftrace",
          "android11_s20_process_sys_stats.pftrace",
          "android11_s20_sched_ftrace_sdk.perfetto-trace",
          "android11_s21_gpu_counters.pftrace",
          "android13_pixel7pro_atrace_frametimeline.perfetto-trace",
          "linux_desktop_systing_compact_sched.pb",
          "chrome89_windows_track_event.pftrace.gz",  # several MB once inflated: many batches
          "flutter_ios_dartvm_track_event.pftrace"]


def _merge_bytes(tmp_path, threads, **kw):
    out = tmp_path / f"t{threads}.pftrace"
    report = merge(output=out, threads=threads, **kw)
    return out.read_bytes(), report


def _same_for_any_threads(tmp_path, **kw):
    one, r1 = _merge_bytes(tmp_path, 1, **kw)
    for n in (2, 3, 8):
        data, r = _merge_bytes(tmp_path, n, **kw)
        assert data == one, f"{n} threads wrote other bytes"
        assert r.inputs == r1.inputs and r.warnings == r1.warnings
    return one, r1


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/testdata/real is not beside the project")
@pytest.mark.parametrize("machine_ids", [False, True], ids=["pids", "machines"])
@pytest.mark.parametrize("guest", GUESTS)
def test_real_traces_same_bytes_on_any_threads(tmp_path, guest, machine_ids):
    _, r = _same_for_any_threads(tmp_path, host=REAL / EMULATOR, guests={"vm": REAL / guest},
                                 time_diff_ns=0, machine_ids=machine_ids)
    assert r.inputs[1]["packets_written"] > 0


@pytest.mark.skipif(not SDK.is_dir(), reason="../shared/testdata/sdk-v7 is not beside the project")
@pytest.mark.parametrize("mode", ["host-into-guest", "guest-into-host"])
def test_sdk_pair_same_bytes_on_any_threads(tmp_path, mode):
    _same_for_any_threads(tmp_path, guest=SDK / "guest.pftrace", host=SDK / "host.pftrace", mode=mode)


def _big_monotonic_guest(path, n=120_000):
    """A guest whose track events are timed on MONOTONIC by its sequence's
    defaults, set once at the start: megabytes later (other batches of the
    rewrite) they still are."""
    t = pb2.Trace()
    p = t.packet.add(trusted_packet_sequence_id=1)
    p.clock_snapshot.clocks.add(clock_id=BOOT, timestamp=10_000_000_000)
    p.clock_snapshot.clocks.add(clock_id=MONO, timestamp=7_000_000_000)  # BOOTTIME - 3 s
    p = t.packet.add(trusted_packet_sequence_id=2, sequence_flags=1)
    p.trace_packet_defaults.timestamp_clock_id = MONO
    p.track_descriptor.uuid = 5
    p.track_descriptor.name = "mono"
    for i in range(n):
        p = t.packet.add(trusted_packet_sequence_id=2, timestamp=7_000_001_000 + i, sequence_flags=2)
        p.track_event.type = pb2.TrackEvent.TYPE_INSTANT
        p.track_event.track_uuid = 5
        p.track_event.name = "tick with a name long enough to fill batches"
    path.write_bytes(t.SerializeToString())
    return n


def test_sequence_defaults_carry_across_batches(tmp_path):
    guest = tmp_path / "g.pftrace"
    n = _big_monotonic_guest(guest)
    assert guest.stat().st_size > 4 << 20  # several 1 MB batches
    host = pb2.Trace()
    p = host.packet.add(trusted_packet_sequence_id=1)
    p.clock_snapshot.clocks.add(clock_id=BOOT, timestamp=1_000_000_000)
    (tmp_path / "h.pftrace").write_bytes(host.SerializeToString())
    data, r = _same_for_any_threads(tmp_path, host=tmp_path / "h.pftrace", guests={"vm1": guest},
                                    time_diff_ns=5_000_000_000)
    comb = pb2.Trace()
    comb.ParseFromString(data)
    ticks = [p for p in comb.packet if p.HasField("track_event") and p.track_event.name.startswith("tick")]
    # MONOTONIC 7 s + 1000 + i is BOOTTIME 10 s + 1000 + i, minus the 5 s diff
    # (the sequence's defaults now say BOOTTIME)
    assert len(ticks) == n
    assert [p.timestamp for p in ticks] == [5_000_001_000 + i for i in range(n)]
    defaults = [p.trace_packet_defaults for p in comb.packet if p.HasField("trace_packet_defaults")]
    assert [d.timestamp_clock_id for d in defaults] == [BOOT]
    assert r.inputs[1]["unconvertible_timestamps"] == 0


def test_threads_argument(tmp_path):
    for bad in (-1, 257, 1.5, True):
        with pytest.raises(ValueError, match="threads"):
            merge(host=tmp_path / "h", guests={"vm": tmp_path / "g"}, output=tmp_path / "o",
                  threads=bad)
    p = subprocess.run([sys.executable, "-m", "vperfetto.merge", "--host", "h", "--guest", "vm=g",
                        "-o", str(tmp_path / "o"), "--threads", "-1"], capture_output=True, text=True)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "threads" in p.stderr


@pytest.mark.skipif(not SDK.is_dir(), reason="../shared/testdata/sdk-v7 is not beside the project")
def test_unchanged_main_copied_as_a_range(tmp_path):
    # The host as the main timeline stays as it is: copied as a byte range
    # (in the kernel where it can be), a truncated last packet left out, and
    # the same through a pipe as into a file.
    data = (SDK / "host.pftrace").read_bytes()
    cut = tmp_path / "cut.pftrace"
    cut.write_bytes(data[:-7])
    out = tmp_path / "o.pftrace"
    r = merge(host=cut, guests={"vm": SDK / "guest.pftrace"}, output=out)
    assert not r.main_switched and any("truncated" in w for w in r.warnings)
    host = pb2.Trace()
    host.ParseFromString(data)
    complete = 0  # the bytes of every packet but the last
    for _ in range(len(host.packet) - 1):
        i, n, shift = complete + 1, 0, 0  # after the tag: the length varint
        while True:
            n |= (data[i] & 0x7F) << shift
            shift, i = shift + 7, i + 1
            if data[i - 1] < 0x80:
                break
        complete = i + n
    got = out.read_bytes()
    assert got[:complete] == data[:complete]
    assert len(load_trace(out).packet) == r.packets_written  # nothing of the cut packet
    assert r.inputs[0]["packets_read"] == r.inputs[0]["packets_written"] == len(host.packet) - 1
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    merge(host=cut, guests={"vm": SDK / "guest.pftrace"}, output=fifo)
    assert reader.communicate(timeout=60)[0] == got


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm here")
def test_main_copied_from_another_filesystem(tmp_path):
    # Where copy_file_range cannot go (from another kind of filesystem: a
    # tmpfs into this one), the main side goes through a buffer, at its
    # place, while the moved side is written after it.
    if os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("/dev/shm is on the same filesystem as the test's files")
    host = tmp_path / "h.pftrace"
    _big_monotonic_guest(host, n=50_000)  # MB: several buffers
    guest = tmp_path / "g.pftrace"
    _big_monotonic_guest(guest, n=50_000)
    expected = _merge_bytes(tmp_path, 1, host=host, guests={"vm": guest}, time_diff_ns=7)[0]
    assert expected[:host.stat().st_size] == host.read_bytes()
    elsewhere = os.path.join("/dev/shm", f"vp-host-{os.getpid()}.pftrace")
    try:
        with open(elsewhere, "wb") as f:
            f.write(host.read_bytes())
        for threads in (1, 2):
            out = tmp_path / f"o{threads}.pftrace"
            merge(host=elsewhere, guests={"vm": guest}, output=out, threads=threads, time_diff_ns=7)
            assert out.read_bytes() == expected
    finally:
        os.unlink(elsewhere)


def _limited_merge(limit, args):
    """The merge CLI with files limited to `limit` bytes (writes beyond fail
    with EFBIG, SIGXFSZ ignored)."""
    def preexec():
        import resource
        import signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return subprocess.run([sys.executable, "-m", "vperfetto.merge", *args], capture_output=True,
                          text=True, preexec_fn=preexec, timeout=120)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("where", ["main", "moved"])
def test_write_failure_is_said_whatever_the_threads(tmp_path, threads, where):
    # The output's filesystem refuses bytes past a size: in the main side's
    # copy (on a thread of its own), or in the moved side's batches (written
    # by the workers in turn). The failure is said (exit 2, one line), no
    # output is left, nothing hangs.
    guest, host = tmp_path / "g.pftrace", tmp_path / "h.pftrace"
    _big_monotonic_guest(guest, n=60_000)
    _big_monotonic_guest(host, n=30_000)
    size = host.stat().st_size
    limit = size // 2 if where == "main" else size + 200_000
    out = tmp_path / "o.pftrace"
    p = _limited_merge(limit, ["--host", str(host), "--guest", f"vm={guest}", "-o", str(out),
                               "--time-diff", "7", "--threads", str(threads), "-q"])
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "too large" in p.stderr, p.stderr
    assert set(os.listdir(tmp_path)) == {"g.pftrace", "h.pftrace"}


def test_no_threads_to_be_had(tmp_path):
    # Where no thread can be started (pthread_create fails: a process or
    # memory limit), the merge runs on its own thread: the scan, the
    # workers and the main side's copy each fall back, the same bytes.
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler to build the pthread_create shim")
    if "libasan" in os.environ.get("LD_PRELOAD", ""):
        # ASan preloaded into Python cannot intercept the C++ throw of a
        # library loaded after it (it aborts); cpp/tests/merge_threads_test.cc
        # runs the same case under ASan and TSan, linked with them.
        pytest.skip("AddressSanitizer preloaded: the C++ test covers this under the sanitizers")
    shim_c = tmp_path / "nothreads.c"
    shim_c.write_text("#include <errno.h>\n#include <pthread.h>\n"
                      "int pthread_create(pthread_t *t, const pthread_attr_t *a,\n"
                      "                   void *(*f)(void *), void *arg) {\n"
                      "  (void)t; (void)a; (void)f; (void)arg; return EAGAIN;\n}\n")
    shim = tmp_path / "nothreads.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(shim), str(shim_c)], check=True)
    guest, host = tmp_path / "g.pftrace", tmp_path / "h.pftrace"
    _big_monotonic_guest(guest, n=60_000)
    _big_monotonic_guest(host, n=30_000)
    expected = _merge_bytes(tmp_path, 1, host=host, guests={"vm": guest}, time_diff_ns=7)[0]
    out = tmp_path / "o.pftrace"
    env = dict(os.environ, LD_PRELOAD=" ".join(filter(None, [os.environ.get("LD_PRELOAD"), str(shim)])))
    p = subprocess.run([sys.executable, "-m", "vperfetto.merge", "--host", str(host), "--guest",
                        f"vm={guest}", "-o", str(out), "--time-diff", "7", "--threads", "4", "-q"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == expected
