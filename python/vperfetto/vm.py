"""Guest<->host tracing over a real link: clock sync, remote start/stop, trace
shipping and automatic merge.

Host (or VMM) side::

    agent = vperfetto.vm.HostAgent("tcp:0.0.0.0:7777", out_dir="traces").start()
    ...                       # guests connect; traces/vm1.combined.pftrace appear
    agent.close()

Guest side::

    with vperfetto.vm.GuestLink("tcp:10.0.2.2:7777", name="vm1") as link:
        with vperfetto.Session("guest.pftrace"):
            ...               # guest events
    print(link.result)        # where the host wrote the combined trace

The host treats every guest as untrusted: frames and uploads are bounded,
names are sanitised and the host alone picks file names inside its out dir,
every read has a deadline, an optional shared token is checked, and a peer
that misbehaves is disconnected (with the reason logged) while the others are
served. :class:`Workflow` is the original vperfetto's host-side online
workflow (enable -> disable -> combined trace), implemented in the library.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Optional, Sequence

from . import errors, link
from ._native import ffi, lib, new_error
from ._vm_guest import GuestLink, recover_guest_trace
from ._vm_host import GuestResult, HostAgent, crash_message, sanitize_name
from .link import SYNC_EVENT, record_sync_rounds

__all__ = ["HostAgent", "GuestLink", "GuestResult", "Workflow", "SYNC_EVENT", "sanitize_name",
           "record_sync_rounds", "crash_message", "recover_guest_trace", "main_host", "main_guest"]


# --- the original online workflow ------------------------------------------------------

def _file_property(which: int) -> Any:
    """A Workflow property: one of the library's VM file names (vp_vm_file)."""
    def get(self: object) -> Optional[str]:
        p = lib.vp_vm_file(which)
        return None if p == ffi.NULL else str(ffi.string(p).decode())

    def set_(self: object, path: Optional[str]) -> None:
        err = new_error()
        errors.check(lib.vp_vm_set_file(which, os.fsencode(path) if path else ffi.NULL, err), err)

    return property(get, set_)


class Workflow:
    """The original vperfetto host-side workflow, shared with the C/C++ API.

    ``enable()`` starts host tracing into ``host_file``; ``disable()`` saves it
    and, in the background, once the guest trace has stopped growing, writes
    the combined trace; ``wait_saving_done()`` waits and raises if that failed.
    VPERFETTO_HOST_FILE / VPERFETTO_GUEST_FILE / VPERFETTO_COMBINED_FILE
    override the file names at enable time.
    """

    _FILES = {"host_file": 0, "guest_file": 1, "combined_file": 2}

    def __init__(self, host_file: Optional[str] = None, guest_file: Optional[str] = None,
                 combined_file: Optional[str] = None, *, verbose: bool = False,
                 poll_ms: int = 1000, timeout_ms: int = 20000):
        for attr, path in (("host_file", host_file), ("guest_file", guest_file),
                           ("combined_file", combined_file)):
            if path is not None:
                setattr(self, attr, path)
        lib.vp_vm_set_verbose(1 if verbose else 0)
        lib.vp_vm_set_guest_wait(poll_ms, timeout_ms)

    host_file = _file_property(0)
    guest_file = _file_property(1)
    combined_file = _file_property(2)

    def set_guest_time(self, guest_boot_ns: int) -> None:
        lib.vp_vm_set_guest_time(guest_boot_ns)

    @property
    def time_diff_ns(self) -> Optional[int]:
        return lib.vp_vm_time_diff() if lib.vp_vm_has_time_diff() else None

    @time_diff_ns.setter
    def time_diff_ns(self, v: int) -> None:
        lib.vp_vm_set_time_diff(v)

    def enable(self) -> None:
        err = new_error()
        errors.check(lib.vp_vm_enable(err), err)

    def disable(self) -> None:
        err = new_error()
        errors.check(lib.vp_vm_disable(err), err)

    @property
    def enabled(self) -> bool:
        return bool(lib.vp_vm_is_enabled())

    @property
    def saving(self) -> bool:
        return bool(lib.vp_vm_is_saving())

    def wait_saving_done(self) -> None:
        err = new_error()
        errors.check(lib.vp_vm_wait_saving_done(err), err)


# --- command line ------------------------------------------------------------------

def main_host(argv: Optional[Sequence[str]] = None) -> int:
    """python -m vperfetto host --listen ADDR --out-dir DIR [--token T] [--once]"""
    from ._cli import Parser
    import signal

    ap = Parser(prog="python -m vperfetto host",
                                 description="Serve guests: sync clocks, trace the host, merge.")
    ap.add_argument("--listen", required=True, help="tcp:HOST:PORT, unix:/path or vsock:PORT")
    ap.add_argument("--out-dir", default="traces")
    ap.add_argument("--token", help="shared token guests must present")
    ap.add_argument("--max-upload-mb", type=int, default=1024)
    ap.add_argument("--once", action="store_true", help="exit after the first guest finished")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        agent = HostAgent(a.listen, a.out_dir, token=a.token,
                          max_upload=a.max_upload_mb << 20).start()
    except (OSError, ValueError) as e:
        print(f"python -m vperfetto host: error: {e}", file=__import__("sys").stderr)
        return 2
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
        print(f"{r.name}: {r.combined or '-'} offset {r.offset_ns} ns "
              f"(+-{r.error_bound_ns} ns){' error: ' + r.error if r.error else ''}", flush=True)
        for w in r.warnings:
            print(f"{r.name}: warning: {w}", flush=True)
    return 0


def main_guest(argv: Optional[Sequence[str]] = None) -> int:
    """python -m vperfetto guest --connect ADDR --name NAME [--token T] [--out F] -- CMD..."""
    import argparse

    from ._cli import Parser
    import subprocess
    import sys
    import tempfile

    ap = Parser(prog="python -m vperfetto guest",
                                 description="Run a command traced, on the host's timeline.")
    ap.add_argument("--connect", required=True, help="tcp:HOST:PORT, unix:/path or vsock:CID:PORT")
    ap.add_argument("--name", default="guest")
    ap.add_argument("--token")
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
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    out = a.out or os.path.join(tempfile.mkdtemp(prefix="vperfetto-guest-"), f"{sanitize_name(a.name)}.pftrace")
    # The workload's vperfetto (imported by it) streams into `out` from its start.
    env = dict(os.environ, VPERFETTO_AUTOSTART=out)
    with GuestLink(a.connect, a.name, token=a.token, trace_path=out) as gl:
        try:
            rc = subprocess.call(cmd, env=env)
        except OSError as e:  # not found, not executable
            print(f"python -m vperfetto guest: error: cannot run {cmd[0]!r}: "
                  f"{e.strerror or e}", file=sys.stderr)
            rc = 2
        # A workload that died tracing left its crash-safe buffer: its trace
        # is recovered into `out` and shipped, and the host is told.
        gl.crashed = recover_guest_trace(out, rc)
    wrote = os.path.isfile(out) and os.path.getsize(out) > 0
    if not wrote:
        print(f"python -m vperfetto guest: the command wrote no trace (did it import vperfetto, "
              f"or write a Perfetto trace to {out}?)", file=sys.stderr)
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
    return 128 - rc if rc < 0 else rc  # killed by signal N: 128 + N, as a shell says
