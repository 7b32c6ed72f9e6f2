"""``python -m vperfetto host`` and ``python -m vperfetto guest``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading

from . import link
from ._cli import Parser
from .vm import GuestLink, HostAgent, crash_message, recover_guest_trace, sanitize_name

HOST_EPILOG = """\
A VMM's virtio-serial port (QEMU: -device virtserialport,chardev=vp,name=vperfetto;
the guest runs: python -m vperfetto guest --connect serial:/dev/virtio-ports/vperfetto):
  -chardev socket,id=vp,path=/run/vp.sock,server=on,wait=off  ->  host --connect-vmm unix:/run/vp.sock
  -chardev socket,id=vp,path=/run/vp.sock,reconnect=1         ->  host --listen unix:/run/vp.sock"""


def main_host(argv=None) -> int:
    """python -m vperfetto host (--listen ADDR | --connect-vmm ADDR) --out-dir DIR [--token T] [--once]"""
    ap = Parser(prog="python -m vperfetto host",
                description="Serve guests: sync clocks, trace the host, merge.",
                epilog=HOST_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--listen", help="tcp:HOST:PORT, unix:/path or vsock:PORT (guests, or a VMM "
                                        "whose serial-port chardev connects here)")
    where.add_argument("--connect-vmm", metavar="ADDR",
                       help="the socket of a VMM's serial-port chardev that is a server "
                            "(unix:/path or tcp:HOST:PORT); connected to again whenever it ends")
    ap.add_argument("--serial", action="store_true",
                    help="with --listen: every connection is a VMM's serial stream (by default "
                         "one is when its first bytes start a serial session)")
    ap.add_argument("--out-dir", default="traces")
    ap.add_argument("--token", help="shared token guests must present")
    ap.add_argument("--max-upload-mb", type=int, default=1024)
    ap.add_argument("--once", action="store_true", help="exit after the first guest finished")
    a = ap.parse_args(argv)
    try:
        for addr in filter(None, (a.listen, a.connect_vmm)):
            family, _ = link.parse_address(addr, listen=bool(a.listen))
            if family is None:
                raise ValueError(f"{addr!r}: serial: is the guest's end of the port")
    except ValueError as e:
        ap.error(str(e))
    if a.serial and not a.listen:
        ap.error("--serial goes with --listen (--connect-vmm is always a serial stream)")
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        agent = HostAgent(a.listen, a.out_dir, connect_vmm=a.connect_vmm, token=a.token,
                          max_upload=a.max_upload_mb << 20, serial=a.serial or None).start()
    except (OSError, ValueError) as e:
        print(f"python -m vperfetto host: error: {e}", file=sys.stderr)
        return 2
    if a.connect_vmm:
        print(f"serving the VMM's serial port at {agent.address}; traces go to {agent.out_dir}",
              flush=True)
    else:
        print(f"listening on {agent.address}; traces go to {agent.out_dir}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.is_set():
            if a.once:
                try:
                    agent.wait_for(1, timeout=0.2)
                    break
                except TimeoutError:
                    pass
            stop.wait(0.2)
    except KeyboardInterrupt:
        pass
    agent.close()
    for r in agent.results:
        if r.combined:
            print(f"{r.name}: {r.combined} offset {r.offset_ns} ns (+-{r.error_bound_ns} ns)"
                  + (f" error: {r.error}" if r.error else ""), flush=True)
        else:
            print(f"{r.name}: no combined trace: {r.error or 'the guest did not finish'}"
                  + (f"; its trace is {r.guest_trace}" if r.guest_trace else ""), flush=True)
        for w in r.warnings:
            print(f"{r.name}: warning: {w}", flush=True)
    return 0


GUEST_EPILOG = """\
The command's trace: a Python program that imports vperfetto, or a C/C++
program linked to libvperfetto, traces from its start (VPERFETTO_AUTOSTART);
a command that writes a Perfetto trace itself writes it to the --out file,
also given to it as VPERFETTO_GUEST_TRACE (perfetto -o "$VPERFETTO_GUEST_TRACE" ...)."""


def main_guest(argv=None) -> int:
    """python -m vperfetto guest --connect ADDR --name NAME [--token T] [--out F] -- CMD..."""
    prog = "python -m vperfetto guest"
    ap = Parser(prog=prog, description="Run a command traced, on the host's timeline.",
                epilog=GUEST_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connect", required=True,
                    help="tcp:HOST:PORT, unix:/path, vsock:CID:PORT or serial:/dev/virtio-ports/NAME")
    ap.add_argument("--name", default="guest")
    ap.add_argument("--token")
    ap.add_argument("--timeout", type=float, default=10.0,
                    help="seconds to wait for the host (default 10)")
    ap.add_argument("--out", help="where the guest trace is kept (default: a temporary file)")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not cmd:
        ap.error("give the command to run after --")
    try:
        link.parse_address(a.connect)
    except ValueError as e:
        ap.error(str(e))
    if not a.timeout > 0:
        ap.error("--timeout must be positive")
    out = a.out or os.path.join(tempfile.mkdtemp(prefix="vperfetto-guest-"),
                                f"{sanitize_name(a.name)}.pftrace")
    if os.path.isdir(out):
        ap.error(f"--out {out} is a directory")
    try:   # a trace left there by an earlier run must not pass for this one's
        if os.path.lexists(out) and not os.path.isdir(out):
            os.unlink(out)
    except OSError as e:
        ap.error(f"--out {out}: {e.strerror or e}")
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    # A workload that uses vperfetto (Python, or C/C++ linked to libvperfetto)
    # streams into `out` from its start; any other writes its own trace there.
    env = dict(os.environ, VPERFETTO_AUTOSTART=out, VPERFETTO_GUEST_TRACE=out)
    with GuestLink(a.connect, a.name, token=a.token, trace_path=out, timeout=a.timeout) as gl:
        try:
            rc = subprocess.call(cmd, env=env)
        except OSError as e:  # not found, not executable
            print(f"{prog}: error: cannot run {cmd[0]!r}: {e.strerror or e}", file=sys.stderr)
            rc = 2
        # A workload that died tracing left its crash-safe buffer: its trace
        # is recovered into `out` and shipped, and the host is told.
        gl.crashed = recover_guest_trace(out, rc)
    wrote = os.path.isfile(out) and os.path.getsize(out) > 0
    if not wrote:
        print(f"{prog}: the command wrote no trace to {out}: it neither used vperfetto (Python: "
              f"import vperfetto; C/C++: linked to libvperfetto) nor wrote a Perfetto trace there "
              f"itself (to $VPERFETTO_GUEST_TRACE); nothing was sent to the host", file=sys.stderr)
    if gl.error:
        print(f"host link: {gl.error}" + (f"; the guest trace is in {out}" if wrote else ""),
              file=sys.stderr)
    elif gl.result:
        r = gl.result
        if r.get("crashed"):
            print(f"host: {crash_message(r['crashed'])}", file=sys.stderr)
        if r.get("error"):
            print(f"host: {r['error']}", file=sys.stderr)
        if r.get("combined"):
            print(f"guest trace {out}; host wrote {r['combined']}; offset {gl.offset_ns} ns",
                  flush=True)
        elif r.get("pending"):
            print(f"guest trace {out}; the host merges it when its own trace ends (other guests "
                  f"still trace)", flush=True)
    return 128 - rc if rc < 0 else rc  # killed by signal N: 128 + N, as a shell says
