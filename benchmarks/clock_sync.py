"""Alignment error of the guest<->host clock sync against the known truth.

    python benchmarks/clock_sync.py [--trials N] [--rounds R] [--transport tcp|unix]

Each trial runs a guest process whose clocks really differ from the host's --
in its own Linux time namespace (``unshare --time``, BOOTTIME +1234 s) where
the machine allows it, otherwise with a simulated offset -- connected to a
HostAgent in this process over loopback. The truth is the namespace offset.
Printed side by side, in one run:

* the NTP-style link sync (lowest-delay rounds of R request/response pairs);
* the start-of-trace heuristic (both traces assumed to start at the same
  instant), which is what a merge falls back to without any sync data;
* the TSC in the traces' clock snapshots (what the offline merge uses when the
  link's records are absent), for reference.

Targets (loopback): link sync median error <= 20 us, max <= 100 us.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

import vperfetto
from vperfetto._tracereader import _fields
from vperfetto.demo import _time_namespace_available
from vperfetto.merge import merge
from vperfetto.vm import HostAgent

BOOT_S = 1234
TRUTH = BOOT_S * 10**9

GUEST = textwrap.dedent(r"""
    import sys, vperfetto
    from vperfetto.vm import GuestLink
    addr, out, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with GuestLink(addr, name="bench", sync_rounds=rounds, resync_interval=0) as link:
        with vperfetto.Session(out):
            for i in range(20):
                with vperfetto.slice("work"):
                    vperfetto.sleep_us(500)
    print(link.estimates[0].offset_ns, link.estimates[-1].offset_ns)
""")


def first_timestamp(path: str) -> int:
    data = open(path, "rb").read()
    for fid, packet in _fields(data):
        if fid != 1:
            continue
        for pid, v in _fields(packet):
            if pid == 8 and v:
                return v
    raise ValueError(f"{path}: no timestamp")


def trial(work: str, n: int, rounds: int, transport: str, namespace: bool) -> dict:
    addr = f"unix:{work}/sock{n}" if transport == "unix" else "tcp:127.0.0.1:0"
    guest_out = os.path.join(work, f"guest{n}.pftrace")
    with HostAgent(addr, os.path.join(work, f"traces{n}")) as agent:
        cmd = [sys.executable, "-c", GUEST, agent.address, guest_out, str(rounds)]
        env = dict(os.environ)
        if namespace:
            cmd = ["unshare", "--time", "--boottime", str(BOOT_S), "--monotonic", "1000", "--"] + cmd
        else:
            env["VPERFETTO_SIMULATE_CLOCK_OFFSET_NS"] = str(TRUTH)
        out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout.split()
        (res,) = agent.wait_for(1, 60)
    host_trace = agent._host_trace
    start_est = first_timestamp(guest_out) - first_timestamp(host_trace)
    snap = merge(guest_out, host_trace, None, dry_run=True, time_diff_ns=None)
    return {"link_first": int(out[0]) - TRUTH, "link_last": int(out[1]) - TRUTH,
            "start_of_trace": start_est - TRUTH,
            "snapshots": snap.offset_ns - TRUTH, "snap_method": snap.method,
            "bound": res.error_bound_ns}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=32)
    ap.add_argument("--transport", choices=["tcp", "unix"], default="tcp")
    a = ap.parse_args()
    ns, why = _time_namespace_available()
    print(f"vperfetto {vperfetto.__version__}: {a.trials} trials over {a.transport} loopback, "
          f"{a.rounds} sync rounds each; guest clocks "
          + (f"in a time namespace (BOOTTIME +{BOOT_S} s)" if ns
             else f"offset by simulation (no time namespace: {why})"))
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for n in range(a.trials):
            rows.append(trial(work, n, a.rounds, a.transport, ns))
    def stats(key):
        errs = [abs(r[key]) for r in rows]
        return statistics.median(errs), max(errs)
    print(f"{'method':44} {'median |error|':>16} {'max |error|':>14}")
    for key, label in [("link_first", "link sync (NTP-style, first burst)"),
                       ("link_last", "link sync (last burst)"),
                       ("snapshots", f"clock snapshots' TSC ({rows[0]['snap_method']})"),
                       ("start_of_trace", "start-of-trace heuristic")]:
        med, mx = stats(key)
        print(f"{label:44} {med / 1000:13.1f} us {mx / 1000:11.1f} us")
    med, mx = stats("link_last")
    bound = statistics.median(r["bound"] for r in rows)
    print(f"median error bound reported by the sync (half the best round trip): {bound / 1000:.1f} us")
    ok = med <= 20_000 and mx <= 100_000
    print(f"target: link sync median <= 20 us and max <= 100 us: "
          f"{med / 1000:.1f} us / {mx / 1000:.1f} us  {'PASS' if ok else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
