"""``python -m vperfetto demo``: one timeline from two clocks, end to end.

Records a "guest" and a "host" process running at the same time with clocks
that really differ -- the guest runs in its own Linux time namespace
(``unshare --time``) where the machine allows it, otherwise with a simulated
clock offset -- then merges the two traces and reports how the merge aligned
them and how far that is from the truth. The host also "kicks" the guest
through a pipe ten times; after the merge each kick the guest received must
land just after the host sent it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from typing import Optional

BOOT_OFFSET_S = 1234        # guest BOOTTIME - host BOOTTIME
MONO_OFFSET_S = 1000
KICKS = 10


# --- the two workloads ------------------------------------------------------------

def _workload(role: str, out: str, fd: int) -> int:
    import threading

    import vperfetto

    with vperfetto.Session(out, buffer_kb=4096):
        vperfetto.set_process_name(f"{role}_app")
        vperfetto.set_thread_name(f"{role}_main")
        stop = threading.Event()

        def frames():
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
            for i in range(KICKS):
                vperfetto.sleep_us(40000)
                vperfetto.instant("host_kick", category="link", args={"kick": i})
                os.write(fd, bytes([i]))
                vperfetto.clock_sync_marker()
        else:
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


def run_demo(out_dir: str, namespace: Optional[bool] = None) -> dict:
    from .merge import merge
    from .tracing import boot_time_ns  # noqa: F401  (imports the native library early)

    os.makedirs(out_dir, exist_ok=True)
    guest_path = os.path.join(out_dir, "guest.pftrace")
    host_path = os.path.join(out_dir, "host.pftrace")
    combined = os.path.join(out_dir, "combined.pftrace")
    ns_ok, why = _time_namespace_available()
    if namespace is None:
        namespace = ns_ok
    elif namespace and not ns_ok:
        raise RuntimeError(f"time namespace unavailable: {why}")
    truth = BOOT_OFFSET_S * 1_000_000_000

    r, w = os.pipe()
    worker = [sys.executable, "-m", "vperfetto.demo", "--worker"]
    env = dict(os.environ)
    env.pop("VPERFETTO_SIMULATE_CLOCK_OFFSET_NS", None)
    guest_env = dict(env)
    if namespace:
        guest_cmd = ["unshare", "--time", "--boottime", str(BOOT_OFFSET_S),
                     "--monotonic", str(MONO_OFFSET_S), "--"] + worker + ["guest", guest_path, str(r)]
    else:
        guest_cmd = worker + ["guest", guest_path, str(r)]
        guest_env["VPERFETTO_SIMULATE_CLOCK_OFFSET_NS"] = str(truth)
    guest = subprocess.Popen(guest_cmd, pass_fds=(r,), env=guest_env)
    host = subprocess.Popen(worker + ["host", host_path, str(w)], pass_fds=(w,), env=env)
    os.close(r)
    os.close(w)
    rc_h, rc_g = host.wait(timeout=120), guest.wait(timeout=120)
    if rc_h or rc_g:
        raise RuntimeError(f"demo workloads failed (host {rc_h}, guest {rc_g})")

    report = merge(guest_path, host_path, combined, mode="guest-into-host")
    a = report.alignments[0]
    latencies = _kick_latencies(combined)
    return {
        "guest": guest_path, "host": host_path, "combined": combined,
        "namespace": namespace, "namespace_note": why,
        "method": a.method, "offset_ns": a.offset_ns, "truth_ns": truth,
        "error_ns": a.offset_ns - truth, "approximate": a.approximate,
        "kick_latencies_ns": latencies,
        "packets": report.packets_written,
    }


def _kick_latencies(path: str) -> list:
    """Guest-received minus host-sent time of each kick, in the merged trace."""
    from ._tracereader import track_event_instants

    sent, got = {}, {}
    for name, ts, args in track_event_instants(path, {"host_kick", "guest_got_kick"}):
        (sent if name == "host_kick" else got)[args.get("kick")] = ts
    return [got[k] - sent[k] for k in sorted(sent) if k in got]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vperfetto demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", default="vperfetto-demo", help="where the traces go (default: ./vperfetto-demo)")
    ns = ap.add_mutually_exclusive_group()
    ns.add_argument("--simulate", action="store_true",
                    help="inject the guest's clock offset instead of using a time namespace")
    ns.add_argument("--namespace", action="store_true", help="require a real time namespace")
    ap.add_argument("--worker", nargs=3, metavar=("ROLE", "OUT", "FD"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        return _workload(a.worker[0], a.worker[1], int(a.worker[2]))
    t0 = time.monotonic()
    try:
        res = run_demo(a.out_dir, namespace=False if a.simulate else (True if a.namespace else None))
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        print(f"python -m vperfetto demo: error: {e}", file=sys.stderr)
        return 2
    how = (f"in its own time namespace (BOOTTIME +{BOOT_OFFSET_S} s, MONOTONIC +{MONO_OFFSET_S} s)"
           if res["namespace"] else
           f"with a simulated clock offset of +{BOOT_OFFSET_S} s "
           f"({'no time namespace here: ' + res['namespace_note'] if res['namespace_note'] else 'as asked'})")
    print("vperfetto demo: a guest and a host process traced at the same time")
    print(f"  guest trace: {res['guest']}  {how}")
    print(f"  host trace:  {res['host']}")
    print(f"  combined:    {res['combined']}  ({res['packets']} packets, guest moved onto the host's clock)")
    approx = " (approximate)" if res["approximate"] else ""
    print(f"  alignment:   {res['method']}{approx}: offset {res['offset_ns']} ns, "
          f"truth {res['truth_ns']} ns, error {res['error_ns']:+d} ns")
    lat = res["kick_latencies_ns"]
    if lat:
        print(f"  host->guest kicks: {len(lat)} seen by the guest "
              f"{statistics.median(lat) / 1000:.1f} us (median) after the host sent them "
              f"(min {min(lat) / 1000:.1f} us, max {max(lat) / 1000:.1f} us)")
    print(f"  open {res['combined']} at https://ui.perfetto.dev  ({time.monotonic() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
