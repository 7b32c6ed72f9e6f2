"""``python -m vperfetto demo``: one timeline from two clocks, end to end.

Records a "guest" and a "host" process running at the same time with clocks
that really differ -- the guest runs in its own Linux time namespace
(``unshare --time``) where the machine allows it, otherwise with a simulated
clock offset -- then merges the two traces and reports how the merge aligned
them and how far that is from the truth. The host also "kicks" the guest
through a pipe ten times; after the merge each kick the guest received must
land just after the host sent it.

Two cases: a guest whose clock is far ahead of the host's (a VM restored
from a snapshot, BOOTTIME +1234 s), and the common one, a guest that booted
after the host had started tracing: its clock's zero comes after the host's
first events, which therefore cannot go on the guest's timeline (the viewer
drops events before zero), so the merge puts both on the host's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

BOOT_OFFSET_S = 1234        # guest BOOTTIME - host BOOTTIME
MONO_OFFSET_S = 1000
KICKS = 10


# --- the two workloads ------------------------------------------------------------

def _workload(role: str, out: str, fd: int, ready_fd: int) -> int:
    import threading

    import vperfetto

    with vperfetto.Session(out, buffer_kb=4096):
        vperfetto.set_process_name(f"{role}_app")
        vperfetto.set_thread_name(f"{role}_main")
        stop = threading.Event()

        def frames() -> None:
            vperfetto.set_thread_name(f"{role}_render")
            depth = vperfetto.CounterTrack(f"{role}_queue_depth")
            i = 0
            while not stop.is_set():
                with vperfetto.slice("frame", category="gfx", args={"frame": i}):
                    with vperfetto.slice("draw", category="gfx"):
                        vperfetto.sleep_us(2000)
                depth.set(i % 7)
                i += 1
                vperfetto.sleep_us(6000)

        t = threading.Thread(target=frames)
        t.start()
        vperfetto.clock_sync_marker()
        if role == "host":
            os.read(ready_fd, 1)  # the guest is tracing: kick it
            for i in range(KICKS):
                vperfetto.sleep_us(40000)
                vperfetto.instant("host_kick", category="link", args={"kick": i})
                os.write(fd, bytes([i]))
                vperfetto.clock_sync_marker()
        else:
            os.write(ready_fd, b"r")
            for _ in range(KICKS):
                b = os.read(fd, 1)
                if not b:
                    break
                vperfetto.instant("guest_got_kick", category="link", args={"kick": b[0]})
                vperfetto.clock_sync_marker()
        vperfetto.sleep_us(20000)
        vperfetto.clock_sync_marker()
        stop.set()
        t.join()
    return 0


# --- orchestration ----------------------------------------------------------------

def _time_namespace_available() -> "tuple[bool, str]":
    if not sys.platform.startswith("linux"):
        return False, "not Linux"
    if shutil.which("unshare") is None:
        return False, "no unshare command"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return False, "time namespaces need root"
    try:
        p = subprocess.run(["unshare", "--time", "--boottime", "1", "--monotonic", "1", "true"],
                           capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    if p.returncode != 0:
        return False, (p.stderr.decode(errors="replace").strip() or "unshare --time failed")
    return True, ""


def run_demo(out_dir: str, namespace: Optional[bool] = None, booted_later: bool = False) -> Dict[str, Any]:
    """Runs one case; ``booted_later``: the guest's clock starts (BOOTTIME 0)
    after the host started tracing, instead of being 1234 s ahead."""
    from .merge import merge
    from .tracing import boot_time_ns

    os.makedirs(out_dir, exist_ok=True)
    guest_path = os.path.join(out_dir, "guest.pftrace")
    host_path = os.path.join(out_dir, "host.pftrace")
    combined = os.path.join(out_dir, "combined.pftrace")
    ns_ok, why = _time_namespace_available()
    if namespace is None:
        namespace = ns_ok
    elif namespace and not ns_ok:
        raise RuntimeError(f"time namespace unavailable: {why}")

    kick_r, kick_w = os.pipe()
    ready_r, ready_w = os.pipe()
    worker = [sys.executable, "-m", "vperfetto.demo", "--worker"]
    env = dict(os.environ)
    env.pop("VPERFETTO_SIMULATE_CLOCK_OFFSET_NS", None)
    t0 = boot_time_ns()
    host = subprocess.Popen(worker + ["host", host_path, str(kick_w), str(ready_r)],
                            pass_fds=(kick_w, ready_r), env=env)
    if booted_later:
        # The guest's clock reads 0 half a second or more after the host began:
        # the host's first events come before it.
        boot_s = -(-(t0 + 500_000_000) // 1_000_000_000) if namespace else 0
        truth = -(boot_s * 1_000_000_000 if namespace else t0 + 500_000_000)
        while boot_time_ns() < -truth + 50_000_000:
            time.sleep(0.01)
        mono_s = boot_s
    else:
        truth = BOOT_OFFSET_S * 1_000_000_000
        boot_s, mono_s = BOOT_OFFSET_S, MONO_OFFSET_S
    guest_env = dict(env)
    guest_cmd = worker + ["guest", guest_path, str(kick_r), str(ready_w)]
    if namespace:
        guest_cmd = ["unshare", "--time", "--boottime", str(boot_s if not booted_later else -boot_s),
                     "--monotonic", str(mono_s if not booted_later else -mono_s), "--"] + guest_cmd
    else:
        guest_env["VPERFETTO_SIMULATE_CLOCK_OFFSET_NS"] = str(truth)
    guest = subprocess.Popen(guest_cmd, pass_fds=(kick_r, ready_w), env=guest_env)
    for fd in (kick_r, kick_w, ready_r, ready_w):
        os.close(fd)
    rc_h, rc_g = host.wait(timeout=120), guest.wait(timeout=120)
    if rc_h or rc_g:
        raise RuntimeError(f"demo workloads failed (host {rc_h}, guest {rc_g})")

    # The original tool's form: the guest's clock is the timeline where it can be.
    report = merge(guest_path, host_path, combined)
    a = report.alignments[0]
    latencies = _kick_latencies(combined)
    return {
        "guest": guest_path, "host": host_path, "combined": combined,
        "namespace": namespace, "namespace_note": why, "booted_later": booted_later,
        "method": a.method, "offset_ns": a.offset_ns, "truth_ns": truth,
        "error_ns": a.offset_ns - truth, "approximate": a.approximate,
        "kick_latencies_ns": latencies,
        "packets": report.packets_written,
        "timeline": "guest" if report.mode == "host-into-guest" else "host",
        "main_switched": report.main_switched,
    }


def _kick_latencies(path: str) -> List[int]:
    """Guest-received minus host-sent time of each kick, in the merged trace
    as the timeline reads it. Kick k is the k-th of each side: the guest
    reads them in order from a pipe, one instant per byte (its argument says
    which byte; the tests check them with the official schema)."""
    from .timeline import model_from_trace

    m = model_from_trace(path, max_slices=1 << 40)
    sent = sorted(s[0] for t in m["tracks"] for s in t["slices"] if s[2] == "host_kick" and not s[1])
    got = sorted(s[0] for t in m["tracks"] for s in t["slices"] if s[2] == "guest_got_kick" and not s[1])
    return [g - h for h, g in zip(sent, got)]


def _print_case(title: str, res: Dict[str, Any]) -> None:
    print(title)
    if res["namespace"]:
        how = "in its own time namespace"
    else:
        note = res["namespace_note"]
        how = f"with a simulated clock offset ({'no time namespace here: ' + note if note else 'as asked'})"
    print(f"  guest trace: {res['guest']}  {how}: BOOTTIME {res['truth_ns'] / 1e9:+.3f} s from the host's")
    print(f"  host trace:  {res['host']}")
    timeline = ("the guest's clock" if res["timeline"] == "guest" else
                "the host's clock, as the host's first events predate the guest clock's zero")
    print(f"  combined:    {res['combined']}  ({res['packets']} packets, timeline: {timeline})")
    approx = " (approximate)" if res["approximate"] else ""
    print(f"  alignment:   {res['method']}{approx}: offset {res['offset_ns']} ns, "
          f"truth {res['truth_ns']} ns, error {res['error_ns']:+d} ns")
    lat = res["kick_latencies_ns"]
    if lat:
        print(f"  host->guest kicks: {len(lat)} seen by the guest "
              f"{statistics.median(lat) / 1000:.1f} us (median) after the host sent them "
              f"(min {min(lat) / 1000:.1f} us, max {max(lat) / 1000:.1f} us)")


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vperfetto demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", default="vperfetto-demo",
                    help="where the traces go (default: ./vperfetto-demo; the second case in "
                         "its booted-later/ folder)")
    ns = ap.add_mutually_exclusive_group()
    ns.add_argument("--simulate", action="store_true",
                    help="inject the guest's clock offset instead of using a time namespace")
    ns.add_argument("--namespace", action="store_true", help="require a real time namespace")
    ap.add_argument("--worker", nargs=4, metavar=("ROLE", "OUT", "FD", "READY_FD"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        return _workload(a.worker[0], a.worker[1], int(a.worker[2]), int(a.worker[3]))
    t0 = time.monotonic()
    namespace = False if a.simulate else (True if a.namespace else None)
    try:
        ahead = run_demo(a.out_dir, namespace=namespace)
        later = run_demo(os.path.join(a.out_dir, "booted-later"), namespace=namespace,
                         booted_later=True)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        print(f"python -m vperfetto demo: error: {e}", file=sys.stderr)
        return 2
    print("vperfetto demo: a guest and a host process traced at the same time, merged")
    _print_case("1. a guest whose clock is far ahead (a VM restored from a snapshot)", ahead)
    _print_case("2. a guest that booted after the host had started tracing", later)
    print(f"  open {ahead['combined']} or {later['combined']} at https://ui.perfetto.dev  "
          f"({time.monotonic() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
