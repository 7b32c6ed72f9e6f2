"""What the timeline tests share: a traced workload recorded on chosen
timestamps (a host, a guest 5 s ahead, their merge), and hand-made traces."""

from __future__ import annotations

import pathlib
import struct
import subprocess
import sys

import pytest

import vperfetto
from vperfetto.merge import merge

MS = 1_000_000
SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "testdata"
SVG_NS = "{http://www.w3.org/2000/svg}"
XSS = "</script><img src=x onerror=\"window.__pwned=1\">&amp;'<"

# A traced workload in its own process, on timestamps it chooses: a main
# thread (frame > draw, vsync instants), two workers (work > inner), an async
# track and an int and a float counter.
CHILD = r'''
import sys, threading, vperfetto
path, pname, base, prefix = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
MS = 1_000_000
with vperfetto.Session(path):
    vperfetto.set_process_name(pname)
    vperfetto.set_thread_name(prefix + "_main")
    def worker(i):
        vperfetto.set_thread_name(f"{prefix}_worker{i}")
        for k in range(5):
            t0 = base + (20 * k + 2 + i) * MS
            vperfetto.begin("work", ts=t0)
            vperfetto.begin("inner", ts=t0 + 1 * MS)
            vperfetto.end(ts=t0 + 3 * MS)
            vperfetto.end(ts=t0 + 8 * MS)
    ths = [threading.Thread(target=worker, args=(i,)) for i in (1, 2)]
    for t in ths: t.start()
    for t in ths: t.join()
    for k in range(5):
        t0 = base + 20 * k * MS
        vperfetto.begin(prefix + "_frame", ts=t0)
        vperfetto.begin("draw", ts=t0 + 2 * MS)
        vperfetto.end(ts=t0 + 6 * MS)
        vperfetto.end(ts=t0 + 10 * MS)
        vperfetto.instant("vsync", ts=t0 + 12 * MS)
        vperfetto.counter(prefix + "_queue", k * 2, ts=t0)
        vperfetto.counter(prefix + "_load", k / 4, ts=t0)
    io = vperfetto.Track(prefix + " io")
    io.begin("read", ts=base + 5 * MS); io.end(ts=base + 45 * MS)
'''


def record(path, pname, base, prefix):
    subprocess.run([sys.executable, "-c", CHILD, str(path), pname, str(base), prefix],
                   check=True, timeout=120)
    return path


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    """A host trace, a guest trace 5 s ahead on its own clock, and their merge."""
    d = tmp_path_factory.mktemp("timeline")
    base = vperfetto.boot_time_ns()
    host = record(d / "host.pftrace", "vmm", base, "host")
    guest = record(d / "guest.pftrace", "guest_app", base + 5_000 * MS, "guest")
    combined = d / "combined.pftrace"
    merge(host=host, guests={"vm1": guest}, output=combined, time_diff_ns=5_000 * MS)
    return {"dir": d, "base": base, "host": host, "guest": guest, "combined": combined}


def by_name(model):
    return {t["name"]: t for t in model["tracks"]}


# --- the model ----------------------------------------------------------------


# --- hand-made traces: the protocol corners ------------------------------------

def vint(v):
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def f(fid, v):
    if isinstance(v, (bytes, str)):
        v = v.encode() if isinstance(v, str) else v
        return vint(fid << 3 | 2) + vint(len(v)) + v
    if isinstance(v, float):
        return vint(fid << 3 | 1) + struct.pack("<d", v)
    return vint(fid << 3) + vint(v)


def m(*fields):
    return b"".join(f(i, v) for i, v in fields)


def packet(*fields):
    return f(1, m(*fields))


def name(iid, s):
    return m((1, iid), (2, s))


def handmade():
    """seq 1: a guest-named process by machine id, interning reset mid-way;
    seq 2: a counter track; seq 3: a sequence-scoped incremental clock."""
    p = []
    p.append(packet((60, m((1, 50), (3, m((1, 1_000_010), (6, "vmA: proc"))))), (98, 1)))
    thread = m((1, 1_000_010), (2, 1_000_011), (5, "t1"))
    p.append(packet((60, m((1, 100), (5, 50), (4, thread))), (98, 1)))
    p.append(packet((10, 1), (13, 1), (8, 900),
                     (59, m((11, m((11, 100))))),
                     (12, m((2, name(1, "alpha")), (1, name(1, "cat")))), (98, 1)))
    p.append(packet((10, 1), (8, 1000), (11, m((9, 1), (10, 1), (3, 1))), (98, 1)))
    p.append(packet((10, 1), (8, 2000), (11, m((9, 2))), (98, 1)))
    # incremental state cleared: iid 1 now means "beta" (and the default track is gone)
    p.append(packet((10, 1), (13, 1), (8, 2500), (59, m((11, m((11, 100))))),
                     (12, m((2, name(1, "beta")))), (98, 1)))
    p.append(packet((10, 1), (8, 3000), (11, m((9, 1), (10, 1))), (98, 1)))
    p.append(packet((10, 1), (8, 3500), (11, m((9, 3), (23, XSS))), (98, 1)))
    p.append(packet((10, 1), (8, 4000), (11, m((9, 2))), (98, 1)))
    # a counter track (machine 1, under the process) with int64 and double values
    p.append(packet((60, m((1, 200), (5, 50), (2, "depth"), (8, b""))), (98, 1)))
    p.append(packet((10, 2), (8, 1500), (11, m((9, 4), (11, 200), (30, -5))), (98, 1)))
    p.append(packet((10, 2), (8, 2500), (11, m((9, 4), (11, 200), (44, 2.5))), (98, 1)))
    # seq 3: clock 64 counts microseconds incrementally from BOOTTIME 10,000
    p.append(packet((10, 3), (13, 1),
                     (6, m((1, m((1, 6), (2, 10_000))), (1, m((1, 64), (2, 0), (3, 1), (4, 1000))))),
                     (59, m((58, 64), (11, m((11, 300)))))))
    p.append(packet((60, m((1, 300), (2, "clocked")))))
    p.append(packet((10, 3), (8, 2), (11, m((9, 1), (23, "tick")))))     # 10,000 + 2 us
    p.append(packet((10, 3), (8, 3), (11, m((9, 2)))))                   # + 3 us more
    return b"".join(p)
