"""Interned names and categories, thread and process names: the state the
event calls and sessions share."""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, Dict, Optional, Tuple

from . import errors
from ._native import lib

# The hot calls as plain CPython builtins (cpp/pyext/_vperfetto_fast.c): cffi
# releases the GIL and saves errno around every call, which costs more than
# the tracing call itself. Everything else, and these calls too where the
# module is missing (PyPy) or VPERFETTO_PURE_CFFI=1 is set, goes through cffi.
def _load_fast() -> Any:
    if os.environ.get("VPERFETTO_PURE_CFFI"):
        return None
    try:
        from . import _vperfetto_fast
    except ImportError:
        return None
    return _vperfetto_fast


_fast: Any = _load_fast()

# --- names and categories ---------------------------------------------------

_name_ids: Dict[Any, int] = {}      # str -> interned id (0: table full, write inline)
_category_ids: Dict[Optional[str], int] = {None: 0}
_lock = threading.Lock()


event_type: Tuple[type, ...] = ()  # (vperfetto.Event,), set by tracing.py


def _name_id_slow(name: Any) -> int:
    if isinstance(name, event_type):
        return int(getattr(name, "_name"))
    if type(name) is not str:
        if not isinstance(name, str):
            raise TypeError(f"event name must be str, not {type(name).__name__}")
        name = str(name)
    raw = name.encode("utf-8", "surrogatepass")
    nid = int(lib.vp_intern(raw, len(raw)))
    with _lock:
        _name_ids[name] = nid
    return nid


def _category_id_slow(category: Any) -> int:
    if not isinstance(category, str):
        raise TypeError(f"category must be str or None, not {type(category).__name__}")
    if not category:
        raise ValueError("category must not be empty")
    cid = int(lib.vp_category(category.encode("utf-8")))
    if cid == 0:
        raise errors.OutOfMemoryError("too many categories (at most 255)")
    with _lock:
        _category_ids[category] = cid
    return cid


def _category_id(category: Any) -> int:
    try:
        cid = _category_ids.get(category)
    except TypeError:
        cid = None
    return cid if cid is not None else _category_id_slow(category)


def _intern_name(name: str) -> int:
    nid = _name_ids.get(name)
    return nid if nid is not None else _name_id_slow(name)



# --- thread and process names ----------------------------------------------

_thread_named = threading.local()  # pure-cffi path: whether this thread was named


def name_this_thread() -> bool:
    """Names the calling thread's track after its Python thread (what the
    first events of every thread do). False while threading does not know
    the thread yet (its first calls run before it registers itself):
    threading.current_thread() would register a dummy thread in its place."""
    thread = threading._active.get(threading.get_ident())  # type: ignore[attr-defined]  # noqa: SLF001
    if thread is None:
        return False
    _thread_named.done = True
    lib.vp_set_thread_name(str(thread.name).encode("utf-8", "replace"))
    return True


if _fast:
    _ensure_named = _fast.ensure_named
else:
    def _ensure_named() -> None:
        tries = getattr(_thread_named, "tries", 0)
        if tries < 64 and not getattr(_thread_named, "done", False):
            _thread_named.tries = tries + 1
            name_this_thread()


def _program_name() -> str:
    """The name a process track gets by default: the module run with -m,
    else the script's file name."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and getattr(spec, "name", None):
        name = str(spec.name)
        return name[:-len(".__main__")] if name.endswith(".__main__") else name
    main_file = getattr(main, "__file__", None)
    if isinstance(main_file, str) and main_file:  # also a multiprocessing child's copy
        return os.path.basename(main_file)
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if argv0 and argv0 != "-c":
        return os.path.basename(argv0)
    return os.path.basename(sys.executable or "python")
