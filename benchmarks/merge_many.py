"""A fleet of small merges: `python -m vperfetto.merge --jobs` against a shell loop of single merges.

    python benchmarks/merge_many.py [--pairs 200] [--reps 3] [-j N]

Each job merges the real SDK v7 guest/host pair of ../shared/testdata/sdk-v7
(about 47 KB together; traces we did not write; without them, a pair recorded
here with vperfetto itself) into its own output, as an emulator farm's CI does
thousands of times a day. Measured in one run, each repetition a fresh start:

  - a shell loop: `for i in ...; do python -m vperfetto.merge GUEST HOST OUT_i -q; done`
    (one process per merge, one after another: what people do today);
  - `python -m vperfetto.merge --jobs jobs.jsonl [-j N]` (one process pool).

Prints jobs/s for both and the speedup; every output of --jobs is checked to
be the same bytes as the loop's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

SDK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "testdata", "sdk-v7")


def pair(work: str):
    g, h = os.path.join(SDK, "guest.pftrace"), os.path.join(SDK, "host.pftrace")
    if os.path.exists(g) and os.path.exists(h):
        return g, h, "the real SDK v7 pair"
    import vperfetto
    paths = []
    for side in ("guest", "host"):
        path = os.path.join(work, f"{side}.pftrace")
        code = ("import sys, vperfetto\n"
                "with vperfetto.Session(sys.argv[1], mode='stream'):\n"
                "    for i in range(300):\n"
                "        with vperfetto.slice('work', args={'i': i}):\n"
                "            vperfetto.counter('n', i)\n")
        subprocess.run([sys.executable, "-c", code, path], check=True)
        paths.append(path)
    del vperfetto
    return paths[0], paths[1], "a pair recorded here (sdk-v7 not beside the project)"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=200)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("-j", "--workers", type=int, default=0, help="--jobs workers (default: the CPUs)")
    a = ap.parse_args(argv)
    work = tempfile.mkdtemp(prefix="vperfetto-merge-many-")
    try:
        guest, host, what = pair(work)
        loop_dir, jobs_dir = os.path.join(work, "loop"), os.path.join(work, "jobs")
        os.makedirs(loop_dir)
        os.makedirs(jobs_dir)
        jobs = os.path.join(work, "jobs.jsonl")
        with open(jobs, "w") as f:
            for i in range(a.pairs):
                f.write(json.dumps({"guest": guest, "host": host,
                                    "output": os.path.join(jobs_dir, f"{i}.pftrace")}) + "\n")
        loop = ('for i in $(seq 0 $(($1 - 1))); do '
                '"$2" -m vperfetto.merge "$3" "$4" "$5/$i.pftrace" -q || exit 1; done')
        loop_t, jobs_t = [], []
        for _ in range(a.reps):  # interleaved: both see the same machine
            t0 = time.perf_counter()
            subprocess.run(["sh", "-c", loop, "sh", str(a.pairs), sys.executable, guest, host, loop_dir],
                           check=True)
            loop_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            p = subprocess.run([sys.executable, "-m", "vperfetto.merge", "--jobs", jobs, "-q",
                                "-j", str(a.workers)], capture_output=True, text=True)
            jobs_t.append(time.perf_counter() - t0)
            if p.returncode != 0:
                raise SystemExit(f"--jobs failed: {p.stderr.strip()}")
        same = all(open(os.path.join(loop_dir, f"{i}.pftrace"), "rb").read() ==
                   open(os.path.join(jobs_dir, f"{i}.pftrace"), "rb").read() for i in range(a.pairs))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lt, jt = statistics.median(loop_t), statistics.median(jobs_t)
    print(f"{a.pairs} merges of {what} (cores: {len(os.sched_getaffinity(0))}, "
          f"load {os.getloadavg()[0]:.1f}), median of {a.reps}")
    print(f"  shell loop of single merges     {lt:7.2f} s  {a.pairs / lt:7.1f} jobs/s  1.00x")
    print(f"  --jobs (one process pool)       {jt:7.2f} s  {a.pairs / jt:7.1f} jobs/s  {lt / jt:.2f}x")
    print(f"  every output the same bytes as the loop's: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
