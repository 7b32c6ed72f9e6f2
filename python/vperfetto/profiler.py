"""Whole-program tracing: one slice per Python function call, on every thread.

    with vperfetto.profile("trace.pftrace"):          # or inside a running Session: profile()
        main()

Each call is a slice on its thread's track named after the function's
qualified name, with its source location (file, line) interned once per
code object. The callbacks are C (cpp/pyext/_vperfetto_profile.c):
sys.monitoring on Python 3.12+, the C profile hook on 3.10-3.11. A
generator or coroutine is one slice per resumption (from its start or
resumption to its yield, await suspension, return or exception).
"""

from __future__ import annotations

import fnmatch
import os
import sys
import threading
from types import CodeType
from typing import Any, Iterable, List, Literal, Optional, Tuple, Union

from . import errors
from ._names import name_this_thread
from ._native import ffi, lib
from .session import Session

__all__ = ["profile", "Profiler"]

def _load() -> Any:
    try:
        from . import _vperfetto_profile
    except ImportError:  # PyPy, or a build without the extension
        return None
    return _vperfetto_profile


_p: Any = _load()
_mon: Any = getattr(sys, "monitoring", None)  # 3.12+

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_MONITORING = sys.version_info >= (3, 12)
_lock = threading.Lock()
_active: Optional["Profiler"] = None
_decided_for: Optional[Tuple[Tuple[str, ...], Tuple[str, ...]]] = None  # the patterns decided for
_table_full_said = False


def _patterns(values: Union[str, Iterable[str], None], what: str) -> List[str]:
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    out = list(values)
    for v in out:
        if not isinstance(v, str) or not v:
            raise TypeError(f"{what} patterns must be non-empty str")
    return out


def _matches(pattern: str, module: str, filename: str) -> bool:
    if "/" in pattern or pattern.endswith(".py"):  # a file glob
        return fnmatch.fnmatchcase(filename, pattern) or fnmatch.fnmatchcase(
            os.path.basename(filename), pattern)
    return fnmatch.fnmatchcase(module, pattern) or module.startswith(pattern + ".")


def code_name(code: CodeType, module: str) -> str:
    name = str(getattr(code, "co_qualname", code.co_name))  # co_qualname: 3.11+
    if name == "<module>":
        return f"<module {module}>"
    return name.replace("<locals>.", "")


def c_name(func: object) -> str:
    name = getattr(func, "__name__", None)
    owner = getattr(func, "__self__", None)
    if name is not None and owner is not None and not isinstance(owner, type(sys)):
        owner_name = owner.__qualname__ if isinstance(owner, type) else type(owner).__qualname__
        return f"{owner_name}.{name}"
    if name is not None:
        module = getattr(func, "__module__", None) or getattr(owner, "__name__", None)
        qual = getattr(func, "__qualname__", name)
        return qual if module in (None, "builtins") else f"{module}.{qual}"
    return type(func).__qualname__


class Profiler:
    """The process's whole-program tracer (one at a time): ``start()``, ``stop()``."""

    def __init__(self, *, include: Union[str, Iterable[str], None] = None,
                 exclude: Union[str, Iterable[str], None] = None, min_duration_us: float = 0,
                 max_depth: int = 0, c_calls: bool = False) -> None:
        if _p is None:
            raise errors.UnsupportedError("whole-program tracing needs CPython and the "
                                          "_vperfetto_profile extension")
        self.include = _patterns(include, "include")
        self.exclude = _patterns(exclude, "exclude")
        if isinstance(min_duration_us, bool) or not isinstance(min_duration_us, (int, float)) \
                or not 0 <= min_duration_us < 1e12:
            raise ValueError("min_duration_us must be a non-negative number")
        if isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 0:
            raise ValueError("max_depth must be a non-negative int (0: no limit)")
        self.min_duration_us = min_duration_us
        self.max_depth = max_depth
        self.c_calls = bool(c_calls)
        self._tool: Optional[int] = None
        self._running = False

    # --- decisions, called once per code object / C function from C --------

    def _decide(self, code: CodeType, module: object) -> int:
        module = module if isinstance(module, str) else "?"
        filename = code.co_filename
        if filename.startswith(PACKAGE_DIR + os.sep):
            return 0  # vperfetto itself
        if self.include and not any(_matches(p, module, filename) for p in self.include):
            return 0
        if any(_matches(p, module, filename) for p in self.exclude):
            return 0
        name = code_name(code, module).encode("utf-8", "replace")
        path = filename.encode("utf-8", "replace")
        return _registered(lib.vp_func_register(name, len(name), path, len(path),
                                                max(code.co_firstlineno, 0)))

    def _decide_c(self, func: object) -> int:
        try:
            name = c_name(func)
        except Exception:  # noqa: BLE001 - odd callables get their type's name
            name = type(func).__name__
        module = getattr(func, "__module__", None) or ""
        if module in ("vperfetto", "sys.monitoring") or module.startswith("vperfetto."):
            return 0  # vperfetto itself, and the calls that switch tracing off (no return seen)
        # --include names Python code; C functions are left out by --exclude only.
        if any(_matches(p, module, "") for p in self.exclude):
            return 0
        raw = name.encode("utf-8", "replace")
        return _registered(lib.vp_func_register(raw, len(raw), ffi.NULL, 0, 0))

    # --- on and off ----------------------------------------------------------

    def start(self) -> "Profiler":
        global _active, _decided_for
        with _lock:
            if _active is not None:
                raise errors.TracingStateError("a profiler is already running in this process")
            _active = self
        _p.init(self._decide, self._decide_c, name_this_thread,
                _mon.DISABLE if _MONITORING else None)
        patterns = (tuple(self.include), tuple(self.exclude))
        _p.configure(self.c_calls, patterns != _decided_for)
        _decided_for = patterns
        lib.vp_profile_set_options(int(self.min_duration_us * 1000), self.max_depth)
        try:
            if _MONITORING:
                self._start_monitoring()
            else:
                threading.setprofile(_p.thread_hook)
                _p.set_profile_all(True)
        except BaseException:
            with _lock:
                _active = None
            raise
        self._running = True
        return self

    def _start_monitoring(self) -> None:
        mon = _mon
        for tool in (mon.PROFILER_ID, 3, 4):
            try:
                mon.use_tool_id(tool, "vperfetto")
            except ValueError:
                continue
            self._tool = tool
            break
        else:
            raise errors.TracingStateError("no free sys.monitoring tool id (another profiler runs)")
        E = mon.events
        callbacks = {E.PY_START: _p.py_start, E.PY_RESUME: _p.py_start, E.PY_THROW: _p.py_throw,
                     E.PY_RETURN: _p.py_return, E.PY_YIELD: _p.py_return,
                     E.PY_UNWIND: _p.py_unwind}
        if self.c_calls:
            callbacks.update({E.CALL: _p.call, E.C_RETURN: _p.c_return, E.C_RAISE: _p.c_return})
        mask = 0
        for event, cb in callbacks.items():
            mon.register_callback(self._tool, event, cb)
            mask |= event
        mon.set_events(self._tool, mask)
        mon.restart_events()  # locations an earlier run disabled

    def stop(self) -> None:
        """Stops tracing calls (idempotent). The calls the calling thread
        is still in end here in the trace."""
        global _active
        if not self._running:
            return
        self._running = False
        lib.vp_func_close_all()
        if _MONITORING:
            mon = _mon
            mon.set_events(self._tool, 0)
            for event in (mon.events.PY_START, mon.events.PY_RESUME, mon.events.PY_THROW,
                          mon.events.PY_RETURN, mon.events.PY_YIELD, mon.events.PY_UNWIND,
                          mon.events.CALL, mon.events.C_RETURN, mon.events.C_RAISE):
                mon.register_callback(self._tool, event, None)
            mon.free_tool_id(self._tool)
            self._tool = None
        else:
            threading.setprofile(None)
            _p.set_profile_all(False)
        with _lock:
            _active = None

    @property
    def running(self) -> bool:
        return self._running


def _registered(func_id: int) -> int:
    global _table_full_said
    if func_id == 0 and not _table_full_said:  # 1M functions: said once, not silently
        _table_full_said = True
        sys.stderr.write("vperfetto: the function table is full; functions seen from now "
                         "on are not traced\n")
    return func_id


class profile:
    """``with profile(path=None, **options):`` traces every Python call made
    inside the block on every thread. With ``path``, a Session writing there
    is started and stopped with the block (``mode``, ``buffer_kb``,
    ``compress``: as for Session; compressed at deflate level 1 by default,
    ~4-5 bytes per call instead of ~30); without, a Session must be running.

    Options: ``include`` / ``exclude`` (module-name globs such as ``"json"``,
    ``"myapp.*"``, or file globs with a ``/``), ``min_duration_us`` (shorter
    calls are left out), ``max_depth`` (deeper calls are left out), and
    ``c_calls`` (also calls of C functions: builtins, C methods).
    """

    def __init__(self, path: Union[str, "os.PathLike[str]", None] = None, *, mode: str = "ring",
                 buffer_kb: int = 262144, compress: Union[int, bool] = 1,
                 **options: Any) -> None:
        self.path = path
        self.session: Optional[Session] = None
        self._mode, self._buffer_kb, self._compress = mode, buffer_kb, compress
        self.profiler = Profiler(**options)

    def __enter__(self) -> "profile":
        if self.path is not None:
            self.session = Session(self.path, mode=self._mode, buffer_kb=self._buffer_kb,
                                   compress=self._compress).start()
        elif not lib.vp_is_tracing():
            raise errors.TracingStateError("profile() needs a path or a running Session")
        try:
            self.profiler.start()
        except BaseException:
            if self.session is not None:
                self.session.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        self.profiler.stop()
        if self.session is not None:
            self.session.stop()
        return False
