"""A small guest-side workload traced with vperfetto.

    python examples/guest_workload.py [out.pftrace]

Writes guest.pftrace (open it at https://ui.perfetto.dev): a render thread
and two I/O workers with nested slices, annotations, a counter, an async
"gpu queue" track and flows that link each submit to its execution.
"""

import random
import sys
import threading

import vperfetto

FRAMES = 30


def io_worker(index: int, stop: threading.Event) -> None:
    vperfetto.set_thread_name(f"io_worker{index}")
    block = 0
    while not stop.is_set():
        with vperfetto.slice("read_block", category="io", args={"block": block, "worker": index}):
            vperfetto.sleep_us(random.randint(500, 2500))
        block += 1
        vperfetto.sleep_us(1000)


def main() -> int:
    out = sys.argv[1] if len(sys.argv) > 1 else "guest.pftrace"
    with vperfetto.Session(out, buffer_kb=8192, categories=["gfx", "io"]) as session:
        vperfetto.set_process_name("guest_app")
        vperfetto.set_thread_name("render")
        gpu = vperfetto.Track("gpu queue")
        queue_depth = vperfetto.CounterTrack("queue_depth", unit="count")
        stop = threading.Event()
        workers = [threading.Thread(target=io_worker, args=(i, stop)) for i in range(2)]
        for w in workers:
            w.start()

        pending = []
        for frame in range(FRAMES):
            with vperfetto.slice("frame", category="gfx", args={"frame": frame}):
                with vperfetto.slice("build_commands", category="gfx"):
                    vperfetto.sleep_us(random.randint(2000, 4000))
                flow = vperfetto.new_flow_id()
                with vperfetto.slice("submit", category="gfx", flow=flow):
                    pending.append(flow)
                    queue_depth.set(len(pending))
                vperfetto.instant("vsync", category="gfx")
            # the "GPU" executes the oldest submission asynchronously
            if len(pending) > 1:
                done = pending.pop(0)
                with gpu.slice("execute", category="gfx", terminating_flow=done):
                    vperfetto.sleep_us(3000)
                queue_depth.set(len(pending))
            vperfetto.sleep_us(4000)

        stop.set()
        for w in workers:
            w.join()
    print(f"wrote {session.stop()} ({session.stats['packets_written']} packets, "
          f"{session.dropped} dropped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
