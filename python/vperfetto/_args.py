"""Annotations: Python values to the flat ``vp_arg`` array the core writes.

dict, list and tuple values become nested DebugAnnotations (``dict_entries``,
``array_values``), so trace_processor shows ``d.a`` and ``d.b[0]``; bool, int
(within 64 bits), float and str keep their types; anything else, an int
outside 64 bits, a container nested deeper than ``MAX_DEPTH`` and whatever
``repr`` raises on, becomes a string of at most ``MAX_REPR`` characters. A
value never makes an event call raise: a tracer must not break the program
it traces.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, List, Tuple
from operator import index as _index

from ._native import ffi, lib

MAX_DEPTH = 8       # levels of dict/list/tuple below an annotation
MAX_ITEMS = 256     # entries kept per dict/list/tuple; one more says how many were left out
MAX_REPR = 1024     # characters of a repr() fallback
MAX_INTERNED_KEY = 128  # longer names are written inline instead of interned

_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(1 << 63), (1 << 63) - 1, (1 << 64) - 1

T_INT, T_UINT, T_DOUBLE, T_BOOL, T_STRING = (lib.VP_ARG_INT, lib.VP_ARG_UINT, lib.VP_ARG_DOUBLE,
                                             lib.VP_ARG_BOOL, lib.VP_ARG_STRING)
T_DICT, T_ARRAY, T_NAME = lib.VP_ARG_DICT, lib.VP_ARG_ARRAY, lib.VP_ARG_NAME


def bounded_repr(value: object) -> str:
    try:
        text = repr(value)
    except BaseException as e:  # noqa: BLE001 - a value must never make tracing raise
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        return f"<{type(value).__name__} object: repr() raised {type(e).__name__}>"
    if not isinstance(text, str):
        return f"<{type(value).__name__} object>"
    return text if len(text) <= MAX_REPR else text[:MAX_REPR - 1] + "\u2026"


class Flattener:
    """Builds the pre-order list of entries for one event's annotations.

    Each entry is (type, name_id, payload): payload is the int/float value,
    the str, or the number of children of a container. A name that is not
    interned comes as a T_NAME entry before its value.
    """

    __slots__ = ("entries", "intern")

    def __init__(self, intern: Callable[[str], int]) -> None:
        self.entries: List[Any] = []
        self.intern = intern  # str -> id (0: write inline)

    def name(self, key: object) -> int:
        if type(key) is not str:
            if isinstance(key, (str, int, float)) or key is None:
                key = str(key)
            else:
                key = bounded_repr(key)
        nid = self.intern(key) if len(key) <= MAX_INTERNED_KEY else 0
        if not nid:
            self.entries.append((T_NAME, 0, key))
        return nid

    def add(self, nid: int, value: object, depth: int) -> None:
        out = self.entries
        if value is True or value is False:
            out.append((T_BOOL, nid, 1 if value else 0))
        elif isinstance(value, int):
            if _INT64_MIN <= value <= _INT64_MAX:
                out.append((T_INT, nid, int(value)))
            elif 0 <= value <= _UINT64_MAX:
                out.append((T_UINT, nid, int(value)))
            else:
                out.append((T_STRING, nid, bounded_repr(int(value))))
        elif isinstance(value, float):
            out.append((T_DOUBLE, nid, float(value)))
        elif isinstance(value, str):
            out.append((T_STRING, nid, str(value)))
        elif isinstance(value, Mapping) and depth < MAX_DEPTH:
            self.container(nid, value, depth, True)
        elif isinstance(value, (list, tuple)) and depth < MAX_DEPTH:
            self.container(nid, value, depth, False)
        else:
            try:
                i = _index(value)  # type: ignore[arg-type]  # numpy and other int-like scalars
            except Exception:  # noqa: BLE001
                out.append((T_STRING, nid, bounded_repr(value)))
            else:
                self.add(nid, i, depth)

    def container(self, nid: int, value: Any, depth: int, is_dict: bool) -> None:
        out = self.entries
        at = len(out)
        out.append(None)  # the container, once its children are counted
        try:
            items = list(value.items() if is_dict else value)
        except Exception:  # noqa: BLE001 - changed during iteration, a broken mapping...
            out[at] = (T_STRING, nid, bounded_repr(value))
            return
        if not items:  # an annotation without a value is not shown: write "{}" / "[]"
            out[at] = (T_STRING, nid, "{}" if is_dict else "[]")
            return
        kept = items[:MAX_ITEMS]
        for item in kept:
            if is_dict:
                k, v = item
                self.add(self.name(k), v, depth + 1)
            else:
                self.add(0, item, depth + 1)
        n = len(kept)
        if len(items) > MAX_ITEMS:
            more = f"{len(items) - MAX_ITEMS} more"
            self.add(self.name("\u2026") if is_dict else 0, more, depth + 1)
            n += 1
        out[at] = (T_DICT if is_dict else T_ARRAY, nid, n)


def fill(args: object, intern: Callable[[str], int], keep: List[Any]) -> Tuple[Any, int]:
    """Returns (vp_arg array, count) for ``args``, a mapping of names to values
    (anything else is written as one annotation named ``args``). Buffers the
    array points into are appended to ``keep``."""
    f = Flattener(intern)
    if isinstance(args, Mapping):
        try:
            items = list(args.items())
        except Exception:  # noqa: BLE001
            items = [("args", bounded_repr(args))]
    else:
        items = [("args", args)]
    for key, value in items:
        f.add(f.name(key), value, 0)
    entries = f.entries
    arr = ffi.new("vp_arg[]", len(entries))
    keep.append(arr)
    for i, (t, nid, v) in enumerate(entries):
        a = arr[i]
        a.type = t
        a.name = nid
        if t == T_INT or t == T_BOOL:
            a.i = v
        elif t == T_UINT or t == T_DICT or t == T_ARRAY:
            a.u = v
        elif t == T_DOUBLE:
            a.d = v
        else:  # T_STRING, T_NAME
            raw = ffi.new("char[]", v.encode("utf-8", "surrogatepass"))
            keep.append(raw)
            a.s = raw
            a.len = len(raw) - 1
    return arr, len(entries)
