"""A traced program that dies at a known event index.

    python crash.py TRACE MODE THREADS DEATH K PROGRESS [BUFFER_KB]

Each of THREADS threads writes slices "work" with args {"t": thread, "i": i}
and, after each one ends, stores i in its slot of PROGRESS (a file mapped
shared: it outlives the process). Thread 0 dies at i = K, inside slice K
(its begin written, its end not): DEATH is SIGKILL, SIGTERM, SIGSEGV (a NULL
write through ctypes, a C extension), exit (os._exit(1)) or thread (every
thread raises an uncaught exception at i = K + t; the process then ends
normally).
"""

import ctypes
import mmap
import os
import signal
import struct
import sys
import threading

import vperfetto

path, mode, nthreads, death, k, progress = sys.argv[1:7]
buffer_kb = int(sys.argv[7]) if len(sys.argv) > 7 else 16384
nthreads, k = int(nthreads), int(k)

with open(progress, "r+b") as f:
    slots = mmap.mmap(f.fileno(), 8 * nthreads)


def die():
    if death == "SIGKILL":
        os.kill(os.getpid(), signal.SIGKILL)
    elif death == "SIGTERM":
        os.kill(os.getpid(), signal.SIGTERM)
    elif death == "SIGSEGV":
        ctypes.memset(0, 1, 1)
    elif death == "exit":
        os._exit(1)
    raise RuntimeError("unreachable")


started = threading.Barrier(nthreads)


def work(t):
    started.wait()
    stop_at = k + t if death == "thread" else (k if t == 0 else 1 << 62)
    i = 0
    while True:
        vperfetto.begin("work", args={"t": t, "i": i})
        if i == stop_at:
            if death == "thread":
                raise ValueError(f"thread {t} dies at {i}")
            die()
        vperfetto.end()
        struct.pack_into("<q", slots, 8 * t, i)
        i += 1


session = vperfetto.Session(path, mode=mode, buffer_kb=buffer_kb).start()
threading.excepthook = lambda args: None  # the deaths are expected: say nothing
threads = [threading.Thread(target=work, args=(t,), name=f"w{t}") for t in range(1, nthreads)]
for th in threads:
    th.start()
work(0) if death != "thread" else threading.Thread(target=work, args=(0,), name="w0").start()
for th in threads:
    th.join()
