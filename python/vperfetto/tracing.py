"""Track events and counters from Python, written by the native tracing core.

Everything here is a thin layer over the C ABI: names are interned once (a dict
lookup afterwards) and each event is one compiled cffi call. Events outside a
session, or in a category the session does not record, cost one C call that
returns at once.
"""

from __future__ import annotations

import functools
import threading
from typing import (TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Literal, Optional, TypeVar,
                    Union, cast, overload)

from . import _args, _names, errors
from ._names import (_category_id, _category_id_slow, _category_ids, _ensure_named, _fast,
                     _intern_name, _lock, _name_id_slow, _name_ids, _thread_named,
                     name_this_thread)
from . import profiler as _profiler
from ._native import ffi, lib, new_error
from .session import Session

from . import _tasks  # noqa: E402


def _pure_end() -> None:
    # The pure-cffi end(): a task's slices end on the task's track.
    if _tasks.current_task() is not None:
        _emit(lib.VP_EVENT_END, None, None, None, None, None, None, None)
    else:
        lib.vp_end()


_vp_end = _fast.end_noargs if _fast else _pure_end

__all__ = [
    "Session",
    "Event",
    "Track",
    "CounterTrack",
    "begin",
    "end",
    "instant",
    "slice",
    "counter",
    "traced",
    "set_process_name",
    "set_thread_name",
    "is_tracing",
    "new_flow_id",
    "uuid_lsb",
    "boot_time_ns",
    "sleep_us",
    "clock_sync_marker",
]

# Timestamps, flow ids and annotations as the public calls take them.
Flow = Union[int, Iterable[int], None]
F = TypeVar("F", bound=Callable[..., Any])


class _PureEventBase:
    """Event's calls through cffi (PyPy, or a build without _vperfetto_fast)."""

    __slots__ = ("begin", "instant")

    def __init__(self, category: int, name: int, raw: Optional[bytes] = None) -> None:
        if name:
            b = functools.partial(lib.vp_begin, category, name)
            i = functools.partial(lib.vp_instant, category, name)
        else:
            raw = raw or b""
            b = functools.partial(lib.vp_begin_str, category, raw, len(raw))
            i = functools.partial(lib.vp_instant_str, category, raw, len(raw))
        self.begin = functools.partial(_pure_event, b, lib.VP_EVENT_BEGIN, self)
        self.instant = functools.partial(_pure_event, i, lib.VP_EVENT_INSTANT, self)

    end = staticmethod(_pure_end)

    def __enter__(self) -> Any:
        self.begin()
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        _pure_end()
        return False


def _pure_event(call: Callable[[], None], etype: int, ev: Any) -> None:
    _ensure_named()
    if _tasks.current_task() is None:
        call()
    else:
        _emit(etype, ev.name, ev.category, None, None, None, None, None)


if TYPE_CHECKING:
    from ._vperfetto_fast import EventBase as _EventBase
else:
    _EventBase = _fast.EventBase if _fast else _PureEventBase


class Event(_EventBase):
    """A pre-interned event: name and category resolved once.

    ``ev.begin()``, ``ev.end()`` and ``ev.instant()`` are C calls with no
    Python frame, the fastest way to emit from Python; ``with ev:`` is a
    slice.
    """

    __slots__ = ("name", "category", "_name", "_category")

    def __init__(self, name: str, category: Optional[str] = None) -> None:
        self.name = name
        self.category = category
        self._category = _category_id(category)
        self._name = _name_id_slow(name)
        raw = None if self._name else name.encode("utf-8", "surrogatepass")
        super().__init__(self._category, self._name, raw)

    def __repr__(self) -> str:
        return f"Event({self.name!r}, category={self.category!r})"


_names.event_type = (Event,)


# --- the general path: annotations, timestamps, tracks, flows ---------------

def _flow_list(flow: Flow) -> List[int]:
    if flow is None:
        return []
    if isinstance(flow, int):
        return [flow]
    return [int(f) for f in flow]


def _emit(etype: int, name: Any, category: Optional[str], args: Any, ts: Optional[int],
          track: Union["Track", "CounterTrack", None], flow: Flow, terminating_flow: Flow,
          counter: Union[int, float, None] = None) -> None:
    _ensure_named()
    ev = ffi.new("vp_event*")
    keep: List[Any] = [ev]
    ev.type = etype
    if category is not None:
        ev.category = _category_id(category)
    if name is not None:
        nid = _name_ids.get(name) if type(name) is str else None
        if nid is None:
            nid = _name_id_slow(name)
        if nid:
            ev.name = nid
        else:
            raw = ffi.new("char[]", name.encode("utf-8", "surrogatepass"))
            keep.append(raw)
            ev.name_str = raw
            ev.name_len = len(raw) - 1
    if track is not None:
        ev.track = track._handle if isinstance(track, (Track, CounterTrack)) else _bad_track(track)
    if ts is not None:
        if not isinstance(ts, int) or ts <= 0:
            raise ValueError("ts must be a positive int (CLOCK_BOOTTIME nanoseconds)")
        ev.timestamp_ns = ts
    if args:
        # `keep` owns the array: ev.args read back is a borrowed pointer, and
        # the array would be freed (and its memory reused by the core while
        # it writes the event) as soon as a temporary died.
        ev.args, ev.nargs = _args.fill(args, _intern_name, keep)
    flows = _flow_list(flow)
    if flows:
        arr = ffi.new("uint64_t[]", flows)
        keep.append(arr)
        ev.flows = arr
        ev.nflows = len(flows)
    tflows = _flow_list(terminating_flow)
    if tflows:
        arr = ffi.new("uint64_t[]", tflows)
        keep.append(arr)
        ev.terminating_flows = arr
        ev.nterminating_flows = len(tflows)
    if track is None and etype != lib.VP_EVENT_COUNTER:
        on = _tasks.task_track(etype, ev.category)  # inside an asyncio task: its track
        if on < 0:
            return
        ev.track = on
    if counter is not None:
        if isinstance(counter, bool) or isinstance(counter, int):
            ev.counter_int = int(counter)
        elif isinstance(counter, float):
            ev.counter_is_double = 1
            ev.counter_double = counter
        else:
            raise TypeError(f"counter value must be int or float, not {type(counter).__name__}")
    lib.vp_emit(ev)


def _bad_track(track: object) -> int:
    raise TypeError(f"track must be a vperfetto.Track, not {type(track).__name__}")


# --- the fast public calls --------------------------------------------------

_vp_begin = lib.vp_begin
_vp_instant = lib.vp_instant


def _named(cfn: Callable[[int, int], None], etype: int, name: str, category: Optional[str], args: Any,
           ts: Optional[int], track: Optional["Track"], flow: Flow, terminating_flow: Flow) -> None:
    # The plain form (an interned str name) is one C call; the rest goes
    # through vp_emit.
    if args is None and ts is None and track is None and flow is None and terminating_flow is None:
        try:
            nid = _name_ids.get(name)
            cid = _category_ids.get(category)
        except TypeError:
            nid = cid = None
        if nid is None:
            nid = _name_id_slow(name)
        if cid is None:
            cid = _category_id_slow(category)
        if nid and _tasks.current_task() is None:  # in an asyncio task: its track, below
            _ensure_named()
            cfn(cid, nid)
            return
    if name is None:
        raise TypeError("event name must be str, not None")
    _emit(etype, name, category, args, ts, track, flow, terminating_flow)


def begin(name: str, category: Optional[str] = None, args: Any = None, ts: Optional[int] = None,
          track: Optional["Track"] = None, flow: Flow = None, terminating_flow: Flow = None) -> None:
    """Begins a slice on the calling thread's track (or on ``track``)."""
    _named(_vp_begin, lib.VP_EVENT_BEGIN, name, category, args, ts, track, flow, terminating_flow)


def end(ts: Optional[int] = None, args: Any = None, track: Optional["Track"] = None, flow: Flow = None,
        terminating_flow: Flow = None) -> None:
    """Ends the innermost slice begun on this thread (or the latest on ``track``).

    An end without a matching begin on this thread is ignored, so a trace is
    never unbalanced by it.
    """
    if ts is None and args is None and track is None and flow is None and terminating_flow is None:
        _vp_end()
        return
    _emit(lib.VP_EVENT_END, None, None, args, ts, track, flow, terminating_flow)


def instant(name: str, category: Optional[str] = None, args: Any = None, ts: Optional[int] = None,
            track: Optional["Track"] = None, flow: Flow = None, terminating_flow: Flow = None) -> None:
    """A zero-duration event."""
    _named(_vp_instant, lib.VP_EVENT_INSTANT, name, category, args, ts, track, flow,
           terminating_flow)


class _Slice:
    __slots__ = ("name", "category", "args", "track", "flow", "terminating_flow")

    def __init__(self, name: str, category: Optional[str], args: Any, track: Optional["Track"],
                 flow: Flow, terminating_flow: Flow) -> None:
        self.name = name
        self.category = category
        self.args = args
        self.track = track
        self.flow = flow
        self.terminating_flow = terminating_flow

    def __enter__(self) -> "_Slice":
        begin(self.name, self.category, self.args, None, self.track, self.flow,
              self.terminating_flow)
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        if self.track is None:
            _vp_end()
        else:
            _emit(lib.VP_EVENT_END, None, None, None, None, self.track, None, None)
        return False


def slice(name: str, category: Optional[str] = None, args: Any = None, *,  # noqa: A001
          track: Optional["Track"] = None, flow: Flow = None, terminating_flow: Flow = None) -> _Slice:
    """A context manager: one slice around the ``with`` block."""
    return _Slice(name, category, args, track, flow, terminating_flow)


@overload
def traced(func: F) -> F: ...
@overload
def traced(func: None = None, *, name: Optional[str] = None,
           category: Optional[str] = None) -> Callable[[F], F]: ...


def traced(func: Optional[F] = None, *, name: Optional[str] = None,
           category: Optional[str] = None) -> Any:
    """Decorator: one slice per call, ended even when the call raises.

    The slice is named after the function: its qualified name without the
    enclosing function's ``<locals>`` (``read_block``, ``Loader.read``).
    ``async def``: the slice spans the awaited execution, across its
    suspensions (on the task's track inside an asyncio task). Generator and
    async generator functions: one slice per resumption, from ``next()`` /
    ``send()`` / ``throw()`` (``__anext__`` ...) to the value it yields or
    its end, so the caller's own slices between two items never nest inside.
    """

    def wrap(f: F) -> F:
        import inspect

        default = getattr(f, "__qualname__", getattr(f, "__name__", "?")).rsplit("<locals>.", 1)[-1]
        ev = Event(name or default, category)
        b = ev.begin
        if inspect.iscoroutinefunction(f):
            @functools.wraps(f)
            async def coroutine(*a: Any, **kw: Any) -> Any:
                b()
                try:
                    return await f(*a, **kw)
                finally:
                    _vp_end()
            return cast(F, coroutine)
        if inspect.isasyncgenfunction(f):
            @functools.wraps(f)
            async def async_generator(*a: Any, **kw: Any) -> Any:
                agen = f(*a, **kw)
                value: Any = None
                error: Optional[BaseException] = None
                while True:
                    b()
                    try:
                        item = await (agen.asend(value) if error is None else agen.athrow(error))
                    except StopAsyncIteration:
                        return
                    finally:
                        _vp_end()
                    try:
                        value, error = (yield item), None
                    except GeneratorExit:
                        b()
                        try:
                            await agen.aclose()
                        finally:
                            _vp_end()
                        raise
                    except BaseException as e:  # noqa: BLE001 - thrown in: passed on
                        value, error = None, e
            return cast(F, async_generator)
        if inspect.isgeneratorfunction(f):
            @functools.wraps(f)
            def generator(*a: Any, **kw: Any) -> Any:
                gen = f(*a, **kw)
                value: Any = None
                error: Optional[BaseException] = None
                while True:
                    b()
                    try:
                        item = gen.send(value) if error is None else gen.throw(error)
                    except StopIteration as stop:
                        return stop.value
                    finally:
                        _vp_end()
                    try:
                        value, error = (yield item), None
                    except GeneratorExit:
                        b()
                        try:
                            gen.close()
                        finally:
                            _vp_end()
                        raise
                    except BaseException as e:  # noqa: BLE001 - thrown in: passed on
                        value, error = None, e
            return cast(F, generator)

        @functools.wraps(f)
        def wrapper(*a: Any, **kw: Any) -> Any:
            b()
            try:
                return f(*a, **kw)
            finally:
                _vp_end()

        return cast(F, wrapper)

    return wrap(func) if func is not None else wrap


# --- tracks and counters ----------------------------------------------------

class Track:
    """A named track for slices that are not tied to one thread (async work).

    Every Track is a new track, even with a name used before.
    """

    __slots__ = ("name", "_handle", "uuid")

    def __init__(self, name: str, parent: Optional["Track"] = None) -> None:
        if not isinstance(name, str):
            raise TypeError("track name must be str")
        if parent is not None and not isinstance(parent, Track):
            raise TypeError("parent must be a vperfetto.Track or None")
        out = ffi.new("uint32_t*")
        err = new_error()
        errors.check(lib.vp_track_new(name.encode(), parent._handle if parent else 0, out, err), err)
        self.name = name
        self._handle: int = out[0]
        self.uuid: int = lib.vp_track_uuid(self._handle)

    def begin(self, name: str, category: Optional[str] = None, args: Any = None, ts: Optional[int] = None,
              flow: Flow = None, terminating_flow: Flow = None) -> None:
        _emit(lib.VP_EVENT_BEGIN, name, category, args, ts, self, flow, terminating_flow)

    def end(self, ts: Optional[int] = None, args: Any = None, flow: Flow = None,
            terminating_flow: Flow = None) -> None:
        _emit(lib.VP_EVENT_END, None, None, args, ts, self, flow, terminating_flow)

    def instant(self, name: str, category: Optional[str] = None, args: Any = None, ts: Optional[int] = None,
                flow: Flow = None, terminating_flow: Flow = None) -> None:
        _emit(lib.VP_EVENT_INSTANT, name, category, args, ts, self, flow, terminating_flow)

    def slice(self, name: str, category: Optional[str] = None, args: Any = None, flow: Flow = None,
              terminating_flow: Flow = None) -> _Slice:
        return _Slice(name, category, args, self, flow, terminating_flow)

    def __repr__(self) -> str:
        return f"Track({self.name!r}, uuid={self.uuid:#x})"


class CounterTrack:
    """A counter track under the process; the same name is the same track."""

    __slots__ = ("name", "unit", "_handle", "uuid", "set_int", "set_float")

    def __init__(self, name: str, unit: Optional[str] = None) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError("counter name must be a non-empty str")
        if unit is not None and not isinstance(unit, str):
            raise TypeError("unit must be str or None")
        out = ffi.new("uint32_t*")
        err = new_error()
        errors.check(lib.vp_counter_track(name.encode(), unit.encode() if unit else ffi.NULL,
                                          out, err), err)
        self.name = name
        self.unit = unit
        self._handle: int = out[0]
        self.uuid: int = lib.vp_track_uuid(self._handle)
        self.set_int: Callable[[int], None]
        self.set_float: Callable[[float], None]
        if _fast:
            self.set_int, self.set_float = _fast.bind_counter(self._handle)
        else:
            self.set_int = functools.partial(lib.vp_counter_int, self._handle)
            self.set_float = functools.partial(lib.vp_counter_double, self._handle)

    def set(self, value: Union[int, float], ts: Optional[int] = None) -> None:
        if ts is None:
            if type(value) is int:
                lib.vp_counter_int(self._handle, value)
                return
            if type(value) is float:
                lib.vp_counter_double(self._handle, value)
                return
        if not isinstance(value, (int, float)):
            raise TypeError(f"counter value must be int or float, not {type(value).__name__}")
        _emit(lib.VP_EVENT_COUNTER, None, None, None, ts, self, None, None, counter=value)

    __call__ = set

    def __repr__(self) -> str:
        return f"CounterTrack({self.name!r}, uuid={self.uuid:#x})"


_counters: Dict[str, CounterTrack] = {}
_counter_handles: Dict[str, int] = {}  # name -> handle, for the builtin counter()


def counter(name: str, value: Union[int, float], ts: Optional[int] = None,
            unit: Optional[str] = None) -> None:
    """A sample of the counter track ``name`` (int or float)."""
    track = _counters.get(name)
    if track is None:
        track = CounterTrack(name, unit)
        with _lock:
            _counters[name] = track
            _counter_handles[name] = track._handle
    track.set(value, ts)


# --- names and misc ---------------------------------------------------------

def set_process_name(name: str) -> None:
    if not isinstance(name, str):
        raise TypeError("process name must be str")
    lib.vp_set_process_name(name.encode("utf-8"))


def set_thread_name(name: Optional[str] = None) -> None:
    """Names the calling thread's track (default: the Python thread's name,
    read again now, e.g. after ``threading.current_thread().name = ...``)."""
    if name is None:
        name = threading.current_thread().name
    if not isinstance(name, str):
        raise TypeError("thread name must be str")
    lib.vp_set_thread_name(name.encode("utf-8", "replace"))
    _thread_named.done = True
    if _fast:
        _fast.thread_named()
    if _profiler._p is not None:
        _profiler._p.thread_named()


def is_tracing() -> bool:
    """True while a session of this process (Python's or native code's) records."""
    return bool(lib.vp_is_tracing())


def uuid_lsb() -> int:
    """A random non-zero 64-bit id, as Perfetto's track uuids."""
    return int(lib.vp_uuid_lsb())


new_flow_id = uuid_lsb


def clock_sync_marker() -> None:
    """Writes a ``guest_clock_sync`` marker (BOOTTIME, MONOTONIC and TSC read
    back to back), the convention the merge uses to align guest and host."""
    lib.vp_clock_sync_marker()


def boot_time_ns() -> int:
    """CLOCK_BOOTTIME in nanoseconds: the clock of every event timestamp."""
    return int(lib.vp_boot_time_ns())


def sleep_us(us: int) -> None:
    if us < 0:
        raise ValueError("sleep_us needs a non-negative duration")
    lib.vp_sleep_us(us)


# The plain forms of begin/end/slice/counter as builtins; each falls back to
# the Python function above for anything else (annotations, tracks, a name
# not interned yet, keyword arguments...).
if _fast:
    _fast.init(_name_ids, _category_ids, _counter_handles, begin, end, slice, counter,
               name_this_thread)
    # (the builtins take the same arguments)
    begin, end, slice, counter = _fast.begin, _fast.end, _fast.slice, _fast.counter  # noqa: A001

_tasks.install()
