"""asyncio awareness: slices begun inside a Task go on a track of that task.

The hot calls (cpp/pyext/_vperfetto_fast.c) check one thread-local: the event
loop running on this thread, which this module keeps up to date by wrapping
``asyncio.events._set_running_loop`` (what every asyncio loop calls when it
starts and stops running). Inside a loop, the current task is
``asyncio.tasks._current_tasks[loop]``. Each task gets a track named after
``Task.get_name()`` under its thread's track, made at its first event and
freed by its done callback, which first ends any slice the task left open
(a task cancelled mid-slice): nothing is written on a task's track once the
task is gone.

asyncio is never imported by vperfetto: the wrapper is put in place when
asyncio is (or already was) imported.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from typing import Any, Callable, Dict, List, Optional

from ._names import _fast
from ._native import lib

_local = threading.local()
_current_tasks: Optional[Dict[Any, Any]] = None  # asyncio.tasks._current_tasks

# --- the pure-Python twin of the C paths (PyPy, VPERFETTO_PURE_CFFI=1) -------

_states: Dict[Any, List[Any]] = {}  # task -> [track, [recorded, ...]]


def _py_set_running_loop(loop: object) -> None:
    _local.loop = loop


def _py_current_task() -> Optional[object]:
    loop = getattr(_local, "loop", None)
    if loop is None or _current_tasks is None:
        return None
    return _current_tasks.get(loop)


def _py_task_done(task: object) -> None:
    st = _states.pop(task, None)
    if st is None:
        return
    track, stack = st
    _emit_end = _end_on(track)
    while stack:
        if stack.pop():
            _emit_end()
    lib.vp_track_free(track)


def _end_on(track: int) -> Callable[[], None]:
    from ._native import ffi

    def end() -> None:
        ev = ffi.new("vp_event*")
        ev.type = lib.VP_EVENT_END
        ev.track = track
        lib.vp_emit(ev)
    return end


def _py_state(task: Any, create: bool) -> Optional[List[Any]]:
    st = _states.get(task)
    if st is not None or not create:
        return st
    from ._native import ffi

    try:
        name = str(task.get_name()).encode("utf-8", "replace")
    except Exception:  # noqa: BLE001
        return None
    out = ffi.new("uint32_t*")
    if lib.vp_track_new_for_thread(name, out, ffi.NULL) != lib.VP_OK:
        return None
    st = _states[task] = [out[0], []]
    try:
        task.add_done_callback(_py_task_done)
    except Exception:  # noqa: BLE001
        del _states[task]
        lib.vp_track_free(out[0])
        return None
    return st


def _py_task_track(etype: int, category: int) -> int:
    """0: not in a task; a track handle; -1: in a task, write nothing."""
    task = current_task()
    if task is None:
        return 0
    st = _py_state(task, etype != lib.VP_EVENT_END)
    if st is None:
        return -1 if etype == lib.VP_EVENT_END else 0
    track: int = st[0]
    stack: List[bool] = st[1]
    if etype == lib.VP_EVENT_BEGIN:
        rec = bool(lib.vp_category_enabled(category))
        stack.append(rec)
        return track if rec else -1
    if etype == lib.VP_EVENT_END:
        return track if stack and stack.pop() else -1
    return track


set_running_loop: Callable[[object], None] = _fast.set_running_loop if _fast else _py_set_running_loop
task_track: Callable[[int, int], int] = _fast.task_track if _fast else _py_task_track
current_task: Callable[[], Optional[object]] = _fast.current_task if _fast else _py_current_task


# --- following asyncio's running loop ------------------------------------------

def _patch() -> None:
    global _current_tasks
    events = sys.modules.get("asyncio.events")
    tasks = sys.modules.get("asyncio.tasks")
    if events is None or tasks is None:
        return
    current = getattr(tasks, "_current_tasks", None)
    if not isinstance(current, dict):
        return  # an asyncio without it: tasks stay on their thread's track
    _current_tasks = current
    if _fast:
        _fast.set_current_tasks(current)
    ev: Any = events
    original = ev._set_running_loop
    if getattr(original, "_vperfetto", False):
        return

    def _set_running_loop(loop: object, _original: Any = original,
                          _set: Callable[[object], None] = set_running_loop) -> None:
        _original(loop)
        _set(loop)

    setattr(_set_running_loop, "_vperfetto", True)
    setattr(_set_running_loop, "__wrapped__", original)
    ev._set_running_loop = _set_running_loop
    package = sys.modules.get("asyncio")
    if package is not None and getattr(package, "_set_running_loop", None) is original:
        setattr(package, "_set_running_loop", _set_running_loop)
    try:  # imported from inside a running loop: this thread's loop now
        set_running_loop(ev._get_running_loop())
    except Exception:  # noqa: BLE001
        pass


class _AsyncioFinder:
    """Waits for ``import asyncio`` to finish, then wraps its loop setter."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> Any:
        if fullname != "asyncio":
            return None
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass
        spec = importlib.util.find_spec(fullname)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_and_patch(module: Any) -> None:
            exec_module(module)
            _patch()

        loader.exec_module = exec_and_patch
        return spec


def install() -> None:
    if "asyncio.tasks" in sys.modules:
        _patch()
    elif not any(isinstance(f, _AsyncioFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AsyncioFinder())
