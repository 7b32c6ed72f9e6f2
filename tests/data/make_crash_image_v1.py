"""Writes crash-image-v1.vpbuf (kept in the repository, read by
tests/test_crash.py::test_reads_version_1_images): a ring session of 64 KiB
whose two threads each wrote slices "work" {"t": t, "i": 0..200}, then
SIGKILL. Run it with the vperfetto whose format version is 1:

    python tests/data/make_crash_image_v1.py tests/data/crash-image-v1.vpbuf
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile

CHILD = r'''
import os, signal, sys, threading, vperfetto
vperfetto.Session(sys.argv[1], buffer_kb=64).start()
def work(t):
    for i in range(201):
        vperfetto.begin("work", args={"t": t, "i": i})
        vperfetto.end()
ts = [threading.Thread(target=work, args=(t,)) for t in range(2)]
for th in ts: th.start()
for th in ts: th.join()
os.kill(os.getpid(), signal.SIGKILL)
'''

if __name__ == "__main__":
    d = tempfile.mkdtemp()
    trace = os.path.join(d, "v1.pftrace")
    rc = subprocess.call([sys.executable, "-c", CHILD, trace])
    assert rc == -signal.SIGKILL, rc
    shutil.copyfile(trace + ".vpbuf", sys.argv[1])
    shutil.rmtree(d)
