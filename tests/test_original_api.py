"""A program written against the original C++ vperfetto API, compiled against our
drop-in header, runs the whole online workflow and combineTraces; and the
vperfetto_merge executable takes the original's command line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import SHARED, TYPE_BEGIN, TYPE_COUNTER, descriptors, load_trace, resolve

CXX = shutil.which("c++") or shutil.which("g++")
OFFSET = 777_000_000_000  # the guest's simulated BOOTTIME offset

ORIGINAL_PROGRAM = r"""
    // Written for the original vperfetto: nothing here knows about the new one.
    #include "vperfetto.h"
    #include <cstdio>
    #include <cstdlib>

    int main(int argc, char** argv) {
      if (argc < 2) return 20;
      const bool* tracingDisabled = nullptr;
      vperfetto::initialize(&tracingDisabled);
      if (!tracingDisabled || !*tracingDisabled) return 10;
      vperfetto::setTraceConfig([](vperfetto::VirtualDeviceTraceConfig& config) {
        config.hostFilename = "ignored-by-env.trace";  // VPERFETTO_HOST_FILE overrides
        config.guestFilename = "ignored-too.trace";
      });
      vperfetto::enableTracing();
      if (*tracingDisabled) return 11;
      for (int i = 0; i < 20; i++) {
        vperfetto::beginTrace("host_frame");
        vperfetto::traceCounter("host_queue", i);
        vperfetto::sleepUs(2000);
        vperfetto::endTrace();
      }
      vperfetto::VirtualDeviceTraceConfig c = vperfetto::queryTraceConfig();
      if (c.tracingDisabled || !c.initialized) return 12;
      vperfetto::disableTracing();
      if (!*tracingDisabled) return 13;
      vperfetto::waitSavingDone();
      if (vperfetto::queryTraceConfig().saving) return 14;
      uint64_t t0 = vperfetto::bootTimeNs();

      // The offline path, with an explicit time diff (guest - host).
      vperfetto::TraceCombineConfig cc;
      cc.guestFile = c.guestFilename;
      cc.hostFile = c.hostFilename;
      cc.combinedFile = argv[1];
      cc.useGuestTimeDiff = true;
      cc.guestClockTimeDiffNs = std::strtoll(argv[2], nullptr, 10);
      vperfetto::combineTraces(&cc);
      std::printf("%s %s %s %llu\n", c.hostFilename, c.guestFilename, c.combinedFilename,
                  (unsigned long long)t0);
      return 0;
    }
"""

GUEST = r"""
import sys, vperfetto
with vperfetto.Session(sys.argv[1], mode="stream") as s:
    vperfetto.set_process_name("guest_app")
    for i in range(40):
        with vperfetto.slice("guest_frame", args={"i": i}):
            vperfetto.sleep_us(3000)
        if i % 10 == 0:
            s.flush()  # the file grows while the host waits for it
"""


@pytest.mark.skipif(not CXX, reason="needs a C++ compiler")
def test_original_program_runs_the_online_workflow(tmp_path):
    inc = subprocess.run([sys.executable, "-m", "vperfetto", "--includes"], check=True,
                         capture_output=True, text=True).stdout.split()
    libs = subprocess.run([sys.executable, "-m", "vperfetto", "--libs"], check=True,
                          capture_output=True, text=True).stdout.split()
    src = tmp_path / "original.cpp"
    src.write_text(textwrap.dedent(ORIGINAL_PROGRAM))
    exe = tmp_path / "original"
    subprocess.run([CXX, "-std=c++17", "-Wall", "-Wextra", "-Werror", str(src), "-o", str(exe),
                    *inc, *libs, "-pthread"], check=True)

    host, guest, combined = tmp_path / "host.trace", tmp_path / "guest.trace", tmp_path / "combined.trace"
    offline = tmp_path / "offline.trace"
    env = dict(os.environ, VPERFETTO_HOST_FILE=str(host), VPERFETTO_GUEST_FILE=str(guest),
               VPERFETTO_COMBINED_FILE=str(combined), VPERFETTO_GUEST_POLL_MS="150")
    genv = dict(os.environ, VPERFETTO_SIMULATE_CLOCK_OFFSET_NS=str(OFFSET))
    guest_proc = subprocess.Popen([sys.executable, "-c", GUEST, str(guest)], env=genv)
    t0 = time.monotonic()
    p = subprocess.run([str(exe), str(offline), str(OFFSET)], env=env, capture_output=True,
                       text=True, timeout=120)
    assert guest_proc.wait(timeout=60) == 0
    assert p.returncode == 0, (p.returncode, p.stderr)
    assert p.stdout.split()[:3] == [str(host), str(guest), str(combined)]
    assert "VPERFETTO_HOST_FILE" in p.stderr  # says where the environment sent it
    assert time.monotonic() - t0 < 60

    # the host trace: 20 frames in category gfx, and traceCounter works here
    h = resolve(load_trace(host))
    frames = [e for e in h if e.name == "host_frame"]
    assert len(frames) == 20 and all(e.categories == ["gfx"] for e in frames)
    assert [e.counter for e in h if e.type == TYPE_COUNTER] == list(range(20))
    procs = [d.process.process_name for d in descriptors(load_trace(host)).values()
             if d.HasField("process")]
    assert procs == ["VirtualMachineMonitorProcess"]

    # the combined trace was written after the guest file stopped growing:
    # every guest frame is in it, and the host moved into guest time
    comb = load_trace(combined)
    ev = resolve(comb)
    assert sum(e.name == "guest_frame" and e.type == TYPE_BEGIN for e in ev) == 40
    moved = [e for e in ev if e.name == "host_frame"]
    assert len(moved) == 20
    # aligned without setGuestTime: from the clock snapshots' TSC
    shift = moved[0].ts - frames[0].ts
    assert abs(shift - OFFSET) < 100_000, shift

    # combineTraces with an explicit diff gives the same timeline
    off = resolve(load_trace(offline))
    assert [e.ts for e in off if e.name == "host_frame"] == [e.ts + OFFSET for e in frames]


# pip installs the executable beside the interpreter (which need not be on PATH)
MERGE_EXE = (shutil.which("vperfetto_merge", path=os.path.dirname(sys.executable)) or
             shutil.which("vperfetto_merge"))


@pytest.mark.skipif(not MERGE_EXE, reason="vperfetto_merge is neither beside the interpreter "
                                          "nor on PATH (pip install . puts it there)")
@pytest.mark.skipif(not (SHARED / "sdk-v7" / "guest.pftrace").exists(),
                    reason="../shared/testdata/sdk-v7 is not beside the project")
def test_vperfetto_merge_executable_original_argv(tmp_path):
    sdk = SHARED / "sdk-v7"
    out = tmp_path / "c.pftrace"
    for extra in ([], ["2385632780874"], ["--guest-tsc-offset", "0", "--merge-guest-into-host"]):
        p = subprocess.run([MERGE_EXE, str(sdk / "guest.pftrace"), str(sdk / "host.pftrace"),
                            str(out), *extra], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        assert "offset 1234500000000 ns" in p.stdout
        # the same bytes as the Python CLI
        ref = tmp_path / "ref.pftrace"
        subprocess.run([sys.executable, "-m", "vperfetto.merge", str(sdk / "guest.pftrace"),
                        str(sdk / "host.pftrace"), str(ref), *extra, "-q"], check=True)
        assert out.read_bytes() == ref.read_bytes()
    for bad in (["a"], [str(sdk / "guest.pftrace"), "missing", str(out)],
                [str(sdk / "guest.pftrace"), str(sdk / "host.pftrace"), str(out), "nan"],
                [str(sdk / "guest.pftrace"), str(sdk / "host.pftrace"), str(out), "--guest-tsc-offset"]):
        p = subprocess.run([MERGE_EXE, *bad], capture_output=True, text=True)
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, (bad, p.stderr)


def test_set_start_times_is_the_alignment():
    # The original's hostStartTime/guestStartTime (setTraceConfig) are the two
    # clocks at one instant: the time diff the combined trace is aligned by.
    code = textwrap.dedent("""
        from vperfetto._native import lib
        assert lib.vp_vm_has_time_diff() == 0
        lib.vp_vm_set_start_times(1_000_000, 0)          # half a pair: nothing
        assert lib.vp_vm_has_time_diff() == 0
        lib.vp_vm_set_start_times(1_000_000, 1_234_501_000_000)
        assert lib.vp_vm_has_time_diff() == 1
        assert lib.vp_vm_time_diff() == 1_234_500_000_000
        assert (lib.vp_vm_host_start_time(), lib.vp_vm_guest_start_time()) == \\
            (1_000_000, 1_234_501_000_000)
        print("ok")
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr
