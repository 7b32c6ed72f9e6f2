"""``run --follow-children``: child processes traced into the parent's trace.

The parent exports VPERFETTO_FOLLOW (a directory and the tracing options).
Children made by fork (multiprocessing's fork start method, os.fork) start
their own session in an at-fork hook; new interpreters (multiprocessing
spawn and forkserver, subprocess running python) start one from
``vperfetto_follow.pth`` at interpreter start-up when the variable is set.
Each child streams to DIR/PID.pftrace.part, renamed to PID.pftrace once
complete, with sequence ids of its own (a range from its pid), so the parent
concatenates the complete ones to its own trace at exit: one machine, one
clock, nothing to align; pids, tids and track uuids are already distinct.
"""

from __future__ import annotations

import atexit
import glob
import json
import os
import shutil
import sys
import tempfile
from typing import Any, Dict, Optional, Tuple

ENV = "VPERFETTO_FOLLOW"

_state: Dict[str, Any] = {"pid": None, "session": None, "profiler": None, "dir": None}
_fork_hook_registered = False
_KEEP = type("KeepAlive", (), {})()  # multiprocessing's after-fork registry holds weak references


def sequence_base(pid: int) -> int:
    """1024 sequence ids per process, from its pid (pids are below 2^22)."""
    return (pid % (1 << 22)) << 10


class Follower:
    """The parent's side: where children write, and the concatenation at exit."""

    def __init__(self, output: str, profiler: Any, program: str = "python", compress: int = 0) -> None:
        self.output = output
        self.program = program
        self.dir = tempfile.mkdtemp(prefix="vperfetto-children-")
        self.options = dict(include=profiler.include, exclude=profiler.exclude,
                            min_duration_us=profiler.min_duration_us,
                            max_depth=profiler.max_depth, c_calls=profiler.c_calls)
        self.compress = compress  # each child deflates its own trace (they are concatenated)

    def start(self) -> None:
        os.environ[ENV] = json.dumps({"dir": self.dir, "options": self.options,
                                      "program": self.program, "compress": self.compress})
        _register_fork_hook()

    def finish(self, path: str) -> int:
        """Appends every complete child trace to ``path``; returns how many."""
        os.environ.pop(ENV, None)
        done = sorted(glob.glob(os.path.join(self.dir, "*.pftrace")))
        partial = glob.glob(os.path.join(self.dir, "*.part"))
        with open(path, "ab") as out:
            for f in done:
                with open(f, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        if partial:
            print(f"vperfetto: {len(partial)} child process(es) had not finished their trace "
                  f"when this one exited; left out of {path} (kept in {self.dir})",
                  file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        return len(done)


def _register_fork_hook() -> None:
    global _fork_hook_registered
    if not _fork_hook_registered:
        os.register_at_fork(after_in_child=_after_fork)
        _fork_hook_registered = True


def _config() -> Tuple[Optional[str], Dict[str, Any], str]:
    try:
        cfg = json.loads(os.environ[ENV])
        return cfg["dir"], dict(cfg.get("options") or {}), str(cfg.get("program") or "python")
    except (KeyError, ValueError, TypeError):
        return None, {}, "python"


def _compress_level() -> int:
    try:
        level = json.loads(os.environ[ENV]).get("compress", 0)
        return level if isinstance(level, int) and 0 <= level <= 9 else 0
    except (KeyError, ValueError, TypeError, AttributeError):
        return 0


def _start_child(new_interpreter: bool) -> None:
    from .profiler import Profiler
    from .session import Session

    directory, options, program = _config()
    pid = os.getpid()
    if directory is None or not os.path.isdir(directory) or _state["pid"] == pid:
        return  # not following, or started already (a .pth seen twice)
    if new_interpreter and _is_multiprocessing_helper():
        return  # forkserver / resource tracker: they outlive the program (forkserver's children are traced)
    _state.update(pid=pid, dir=directory)
    if new_interpreter and _cmdline_has(b"--multiprocessing-fork"):
        # A multiprocessing spawn child: its own name is known only once it
        # ran (set at its end); until then, the parent's program.
        from .tracing import set_process_name

        set_process_name(f"{program} (child)")
    path = os.path.join(directory, f"{pid}.pftrace.part")
    _state["session"] = Session(path, mode="stream", sequence_base=sequence_base(pid),
                                compress=_compress_level()).start()
    from . import profiler as profile

    if new_interpreter or profile._active is None:  # forkserver's children: not inherited
        _state["profiler"] = Profiler(**options).start()
    atexit.register(_finish_child)
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        # multiprocessing's children leave through os._exit after its own
        # exit function, which runs its finalizers; a fork child's
        # bootstrap clears them first and then runs the after-fork hooks.
        mp_util.Finalize(None, _finish_child, exitpriority=-(10 ** 9))
        mp_util.register_after_fork(
            _KEEP, lambda _: mp_util.Finalize(None, _finish_child, exitpriority=-(10 ** 9)))


def _cmdline_has(word: bytes) -> bool:
    try:
        with open("/proc/self/cmdline", "rb") as f:
            return word in f.read()
    except OSError:
        return False


def _is_multiprocessing_helper() -> bool:
    return _cmdline_has(b"multiprocessing.forkserver") or \
        _cmdline_has(b"multiprocessing.resource_tracker")


def _after_fork() -> None:
    if ENV in os.environ:
        try:
            _start_child(new_interpreter=False)
        except Exception as e:  # noqa: BLE001 - never break the child
            print(f"vperfetto: tracing the forked child failed: {e}", file=sys.stderr)


def _process_name() -> str:
    from ._names import _program_name

    name = _program_name()
    mp = sys.modules.get("multiprocessing")
    if mp is not None:
        try:
            proc = mp.current_process().name
        except Exception:  # noqa: BLE001
            proc = None
        if proc and proc != "MainProcess":
            return f"{name} ({proc})"
    return name


def _finish_child() -> None:
    session = _state["session"]
    if session is None or _state["pid"] != os.getpid():
        return
    _state["session"] = None
    try:
        from .tracing import set_process_name

        set_process_name(_process_name())
        if _state["profiler"] is not None:
            _state["profiler"].stop()
        else:
            from ._native import lib

            lib.vp_func_close_all()  # a fork child ends inside its parent's calls
        path = session.stop()
        os.replace(path, path[:-len(".part")])
    except Exception as e:  # noqa: BLE001
        print(f"vperfetto: writing the child trace failed: {e}", file=sys.stderr)


def bootstrap() -> None:
    """Called by vperfetto_follow.pth at start-up of every python process
    while VPERFETTO_FOLLOW is set."""
    try:
        _register_fork_hook()
        _start_child(new_interpreter=True)
    except Exception as e:  # noqa: BLE001 - never break the child
        print(f"vperfetto: tracing this child process failed: {e}", file=sys.stderr)
