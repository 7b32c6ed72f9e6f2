"""The guest workload of scripts/qemu-e2e.sh, run by the VM's init as
``python3 workload.py [kernel command line]`` (its --seconds=, --probes=,
--resync= words are read; the kernel's own are ignored).

Over the virtio-serial port it links to the host agent, traces slices and
counters for the given time and, spread over it, asks for kicks (the host
writes host_kick, then sends it; this writes guest_saw_kick) and sends pings
(this writes guest_ping, then sends it; the host writes host_saw_ping)."""

import json
import sys
import time

import vperfetto
from vperfetto.vm import GuestLink

PORT = "serial:/dev/virtio-ports/vperfetto"


def opts(argv):
    o = {"seconds": 60.0, "probes": 60, "resync": 5.0}
    for word in argv:
        key, _, value = word.lstrip("-").partition("=")
        if key in o and value:
            o[key] = type(o[key])(value)
    return o


def main() -> int:
    o = opts(sys.argv[1:])
    with GuestLink(PORT, name="qemu-guest", resync_interval=o["resync"], timeout=60) as gl:
        if gl.error:
            print(f"workload: {gl.error}", flush=True)
            return 1
        with vperfetto.Session("/tmp/guest.pftrace", buffer_kb=8192):
            vperfetto.set_process_name("guest_workload")
            vperfetto.set_thread_name("guest_main")
            steps = vperfetto.CounterTrack("guest_steps")
            start = time.monotonic()
            for i in range(o["probes"]):
                with vperfetto.slice("guest_step", category="e2e", args={"step": i}):
                    gl.kick()
                    with vperfetto.slice("guest_compute", category="e2e"):
                        sum(k * k for k in range(2000))
                    steps.set(i)
                    gl.ping()
                # spread the probes evenly over the run
                wake = start + (i + 1) * o["seconds"] / o["probes"]
                time.sleep(max(0.0, wake - time.monotonic()))
    print("workload: result " + json.dumps(gl.result), flush=True)
    if gl.error or not gl.result or not gl.result.get("combined"):
        print(f"workload: no combined trace: {gl.error or gl.result}", flush=True)
        return 1
    ests = [e.error_bound_ns for e in gl.estimates]
    print(f"workload: {len(gl.estimates)} sync bursts, offset {gl.offset_ns} ns, "
          f"error bounds {min(ests)}..{max(ests)} ns", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
