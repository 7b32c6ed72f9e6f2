"""Track events and counters from Python, written by the native tracing core.

Everything here is a thin layer over the C ABI: names are interned once (a dict
lookup afterwards) and each event is one compiled cffi call. Events outside a
session, or in a category the session does not record, cost one C call that
returns at once.
"""

from __future__ import annotations

import atexit
import functools
import os
import threading
from typing import Any, Callable, Iterable, Mapping, Optional, Union

from . import _args, errors
from ._native import ffi, lib, new_error

# The hot calls as plain CPython builtins (cpp/pyext/_vperfetto_fast.c): cffi
# releases the GIL and saves errno around every call, which costs more than
# the tracing call itself. Everything else, and these calls too where the
# module is missing (PyPy) or VPERFETTO_PURE_CFFI=1 is set, goes through cffi.
_fast = None
if not os.environ.get("VPERFETTO_PURE_CFFI"):
    try:
        from . import _vperfetto_fast as _fast
    except ImportError:
        _fast = None

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

_MODES = {"ring": lib.VP_BUFFER_RING, "discard": lib.VP_BUFFER_DISCARD,
          "stream": lib.VP_BUFFER_STREAM}

FlowIds = Union[int, Iterable[int], None]

# --- names and categories ---------------------------------------------------

_name_ids: dict = {}      # str -> interned id (0: table full, write inline)
_category_ids: dict = {None: 0}
_lock = threading.Lock()
_vp_end = _fast.end_noargs if _fast else lib.vp_end


def _name_id_slow(name) -> int:
    if isinstance(name, Event):
        return name._name
    if type(name) is not str:
        if not isinstance(name, str):
            raise TypeError(f"event name must be str, not {type(name).__name__}")
        name = str(name)
    raw = name.encode("utf-8", "surrogatepass")
    nid = lib.vp_intern(raw, len(raw))
    with _lock:
        _name_ids[name] = nid
    return nid


def _category_id_slow(category) -> int:
    if not isinstance(category, str):
        raise TypeError(f"category must be str or None, not {type(category).__name__}")
    if not category:
        raise ValueError("category must not be empty")
    cid = lib.vp_category(category.encode("utf-8"))
    if cid == 0:
        raise errors.OutOfMemoryError("too many categories (at most 255)")
    with _lock:
        _category_ids[category] = cid
    return cid


def _category_id(category) -> int:
    try:
        cid = _category_ids.get(category)
    except TypeError:
        cid = None
    return cid if cid is not None else _category_id_slow(category)


if _fast:
    _EventBase = _fast.EventBase
else:
    class _EventBase:
        """Event's calls through cffi (PyPy, or a build without _vperfetto_fast)."""

        __slots__ = ("begin", "instant")

        def __init__(self, category: int, name: int, raw: Optional[bytes] = None):
            if name:
                self.begin = functools.partial(lib.vp_begin, category, name)
                self.instant = functools.partial(lib.vp_instant, category, name)
            else:
                self.begin = functools.partial(lib.vp_begin_str, category, raw, len(raw))
                self.instant = functools.partial(lib.vp_instant_str, category, raw, len(raw))

        end = staticmethod(lib.vp_end)

        def __enter__(self):
            self.begin()
            return self

        def __exit__(self, *exc):
            lib.vp_end()
            return False


class Event(_EventBase):
    """A pre-interned event: name and category resolved once.

    ``ev.begin()``, ``ev.end()`` and ``ev.instant()`` are C calls with no
    Python frame, the fastest way to emit from Python; ``with ev:`` is a
    slice.
    """

    __slots__ = ("name", "category", "_name", "_category")

    def __init__(self, name: str, category: Optional[str] = None):
        self.name = name
        self.category = category
        self._category = _category_id(category)
        self._name = _name_id_slow(name)
        raw = None if self._name else name.encode("utf-8", "surrogatepass")
        super().__init__(self._category, self._name, raw)

    def __repr__(self) -> str:
        return f"Event({self.name!r}, category={self.category!r})"


# --- the general path: annotations, timestamps, tracks, flows ---------------

def _flow_list(flow) -> list:
    if flow is None:
        return []
    if isinstance(flow, int):
        return [flow]
    return [int(f) for f in flow]


def _intern_name(name: str) -> int:
    nid = _name_ids.get(name)
    return nid if nid is not None else _name_id_slow(name)


def _emit(etype, name, category, args, ts, track, flow, terminating_flow, counter=None):
    ev = ffi.new("vp_event*")
    keep = [ev]
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
    if counter is not None:
        if isinstance(counter, bool) or isinstance(counter, int):
            ev.counter_int = int(counter)
        elif isinstance(counter, float):
            ev.counter_is_double = 1
            ev.counter_double = counter
        else:
            raise TypeError(f"counter value must be int or float, not {type(counter).__name__}")
    lib.vp_emit(ev)


def _bad_track(track):
    raise TypeError(f"track must be a vperfetto.Track, not {type(track).__name__}")


# --- the fast public calls --------------------------------------------------

_vp_begin = lib.vp_begin
_vp_instant = lib.vp_instant


def _named(cfn, etype, name, category, args, ts, track, flow, terminating_flow) -> None:
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
        if nid:
            cfn(cid, nid)
            return
    if name is None:
        raise TypeError("event name must be str, not None")
    _emit(etype, name, category, args, ts, track, flow, terminating_flow)


def begin(name, category=None, args=None, ts=None, track=None, flow=None,
          terminating_flow=None) -> None:
    """Begins a slice on the calling thread's track (or on ``track``)."""
    _named(_vp_begin, lib.VP_EVENT_BEGIN, name, category, args, ts, track, flow, terminating_flow)


def end(ts=None, args=None, track=None, flow=None, terminating_flow=None) -> None:
    """Ends the innermost slice begun on this thread (or the latest on ``track``).

    An end without a matching begin on this thread is ignored, so a trace is
    never unbalanced by it.
    """
    if ts is None and args is None and track is None and flow is None and terminating_flow is None:
        _vp_end()
        return
    _emit(lib.VP_EVENT_END, None, None, args, ts, track, flow, terminating_flow)


def instant(name, category=None, args=None, ts=None, track=None, flow=None,
            terminating_flow=None) -> None:
    """A zero-duration event."""
    _named(_vp_instant, lib.VP_EVENT_INSTANT, name, category, args, ts, track, flow,
           terminating_flow)


class _Slice:
    __slots__ = ("name", "category", "args", "track", "flow", "terminating_flow")

    def __init__(self, name, category, args, track, flow, terminating_flow):
        self.name = name
        self.category = category
        self.args = args
        self.track = track
        self.flow = flow
        self.terminating_flow = terminating_flow

    def __enter__(self):
        begin(self.name, self.category, self.args, None, self.track, self.flow,
              self.terminating_flow)
        return self

    def __exit__(self, *exc):
        if self.track is None:
            _vp_end()
        else:
            _emit(lib.VP_EVENT_END, None, None, None, None, self.track, None, None)
        return False


def slice(name, category=None, args=None, *, track=None, flow=None,  # noqa: A001
          terminating_flow=None) -> _Slice:
    """A context manager: one slice around the ``with`` block."""
    return _Slice(name, category, args, track, flow, terminating_flow)


def traced(func: Optional[Callable] = None, *, name: Optional[str] = None,
           category: Optional[str] = None):
    """Decorator: one slice per call.

    The slice is named after the function: its qualified name without the
    enclosing function's ``<locals>`` (``read_block``, ``Loader.read``).
    """

    def wrap(f):
        default = getattr(f, "__qualname__", f.__name__).rsplit("<locals>.", 1)[-1]
        ev = Event(name or default, category)
        b = ev.begin

        @functools.wraps(f)
        def wrapper(*a, **kw):
            b()
            try:
                return f(*a, **kw)
            finally:
                _vp_end()

        return wrapper

    return wrap(func) if func is not None else wrap


# --- tracks and counters ----------------------------------------------------

class Track:
    """A named track for slices that are not tied to one thread (async work).

    Every Track is a new track, even with a name used before.
    """

    __slots__ = ("name", "_handle", "uuid")

    def __init__(self, name: str, parent: Optional["Track"] = None):
        if not isinstance(name, str):
            raise TypeError("track name must be str")
        if parent is not None and not isinstance(parent, Track):
            raise TypeError("parent must be a vperfetto.Track or None")
        out = ffi.new("uint32_t*")
        err = new_error()
        errors.check(lib.vp_track_new(name.encode(), parent._handle if parent else 0, out, err), err)
        self.name = name
        self._handle = out[0]
        self.uuid = lib.vp_track_uuid(self._handle)

    def begin(self, name, category=None, args=None, ts=None, flow=None, terminating_flow=None):
        _emit(lib.VP_EVENT_BEGIN, name, category, args, ts, self, flow, terminating_flow)

    def end(self, ts=None, args=None, flow=None, terminating_flow=None):
        _emit(lib.VP_EVENT_END, None, None, args, ts, self, flow, terminating_flow)

    def instant(self, name, category=None, args=None, ts=None, flow=None, terminating_flow=None):
        _emit(lib.VP_EVENT_INSTANT, name, category, args, ts, self, flow, terminating_flow)

    def slice(self, name, category=None, args=None, flow=None, terminating_flow=None):
        return _Slice(name, category, args, self, flow, terminating_flow)

    def __repr__(self) -> str:
        return f"Track({self.name!r}, uuid={self.uuid:#x})"


class CounterTrack:
    """A counter track under the process; the same name is the same track."""

    __slots__ = ("name", "unit", "_handle", "uuid", "set_int", "set_float")

    def __init__(self, name: str, unit: Optional[str] = None):
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
        self._handle = out[0]
        self.uuid = lib.vp_track_uuid(self._handle)
        if _fast:
            self.set_int, self.set_float = _fast.bind_counter(self._handle)
        else:
            self.set_int = functools.partial(lib.vp_counter_int, self._handle)
            self.set_float = functools.partial(lib.vp_counter_double, self._handle)

    def set(self, value, ts=None) -> None:
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


_counters: dict = {}
_counter_handles: dict = {}  # name -> handle, for the builtin counter()


def counter(name: str, value, ts=None, unit: Optional[str] = None) -> None:
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
    """Names the calling thread's track (default: the Python thread's name)."""
    if name is None:
        name = threading.current_thread().name
    if not isinstance(name, str):
        raise TypeError("thread name must be str")
    lib.vp_set_thread_name(name.encode("utf-8"))


def is_tracing() -> bool:
    """True while a session of this process (Python's or native code's) records."""
    return bool(lib.vp_is_tracing())


def uuid_lsb() -> int:
    """A random non-zero 64-bit id, as Perfetto's track uuids."""
    return lib.vp_uuid_lsb()


new_flow_id = uuid_lsb


def clock_sync_marker() -> None:
    """Writes a ``guest_clock_sync`` marker (BOOTTIME, MONOTONIC and TSC read
    back to back), the convention the merge uses to align guest and host."""
    lib.vp_clock_sync_marker()


def boot_time_ns() -> int:
    """CLOCK_BOOTTIME in nanoseconds: the clock of every event timestamp."""
    return lib.vp_boot_time_ns()


def sleep_us(us: int) -> None:
    if us < 0:
        raise ValueError("sleep_us needs a non-negative duration")
    lib.vp_sleep_us(us)


# --- sessions ---------------------------------------------------------------

_running: "set[Session]" = set()
_last_stopped_path: Optional[str] = None   # what a GuestLink ships by default


class Session:
    """A tracing session of this process, written to ``path``.

    ``mode`` is ``"ring"`` (in memory, oldest data overwritten when full),
    ``"discard"`` (in memory, new data dropped when full) or ``"stream"``
    (straight to the file). ``categories`` lists the categories to record
    (default: all); ``disabled_categories`` the ones never to record.
    Events without a category are always recorded.
    """

    def __init__(self, path: Union[str, os.PathLike], *, buffer_kb: int = 16384,
                 mode: str = "ring", categories: Optional[Iterable[str]] = None,
                 disabled_categories: Optional[Iterable[str]] = None):
        self.path = os.fspath(path)
        if not isinstance(self.path, str):
            raise TypeError("path must be a str or os.PathLike of str")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {sorted(_MODES)}, not {mode!r}")
        if not isinstance(buffer_kb, int) or isinstance(buffer_kb, bool):
            raise TypeError("buffer_kb must be an int")
        if not 4 <= buffer_kb <= (64 << 20):
            raise ValueError("buffer_kb must be between 4 and 67108864")
        self.buffer_kb = buffer_kb
        self.mode = mode
        self.categories = _str_list(categories, "categories")
        self.disabled_categories = _str_list(disabled_categories, "disabled_categories")
        self._session = None
        self._stopped = False
        self._pid = None

    def start(self) -> "Session":
        if self._session is not None or self._stopped:
            raise errors.TracingStateError("a Session can be started only once")
        cfg = ffi.gc(lib.vp_config_new(), lib.vp_config_free)
        if cfg == ffi.NULL:
            raise errors.OutOfMemoryError("out of memory")
        err = new_error()
        errors.check(lib.vp_config_set_output(cfg, self.path.encode(), err), err)
        errors.check(lib.vp_config_set_buffer(cfg, self.buffer_kb, _MODES[self.mode], err), err)
        for c in self.categories:
            _category_id(c)  # registered now, so its id exists before the first event
            errors.check(lib.vp_config_enable_category(cfg, c.encode(), err), err)
        for c in self.disabled_categories:
            errors.check(lib.vp_config_disable_category(cfg, c.encode(), err), err)
        out = ffi.new("vp_session**")
        errors.check(lib.vp_session_start(cfg, out, err), err)
        self._session = ffi.gc(out[0], lib.vp_session_free)
        self._pid = os.getpid()
        _running.add(self)
        return self

    @property
    def active(self) -> bool:
        return self._session is not None and bool(lib.vp_session_is_active(self._session))

    def flush(self) -> None:
        self._require_started()
        err = new_error()
        errors.check(lib.vp_session_flush(self._session, err), err)

    def stop(self) -> str:
        """Stops recording, writes the trace and returns its path. Idempotent."""
        self._require_started()
        if not self._stopped:
            err = new_error()
            errors.check(lib.vp_session_stop(self._session, err), err)
            self._stopped = True
            _running.discard(self)
            global _last_stopped_path
            _last_stopped_path = self.path
        return self.path

    def _require_started(self) -> None:
        if self._session is None:
            raise errors.TracingStateError("the session has not been started")

    @property
    def stats(self) -> dict:
        """Counters of the session: packets written and dropped, bytes, ..."""
        self._require_started()
        s = self._session
        return {
            "packets_written": lib.vp_session_stat(s, lib.VP_STAT_PACKETS_WRITTEN),
            "bytes_written": lib.vp_session_stat(s, lib.VP_STAT_BYTES_WRITTEN),
            "packets_dropped": lib.vp_session_stat(s, lib.VP_STAT_PACKETS_DROPPED),
            "chunks_discarded": lib.vp_session_stat(s, lib.VP_STAT_CHUNKS_DISCARDED),
            "chunks_overwritten": lib.vp_session_stat(s, lib.VP_STAT_CHUNKS_OVERWRITTEN),
            "sequences": lib.vp_session_stat(s, lib.VP_STAT_SEQUENCES),
        }

    @property
    def dropped(self) -> int:
        """Packets lost to a full buffer (discarded or overwritten)."""
        self._require_started()
        return lib.vp_session_stat(self._session, lib.VP_STAT_PACKETS_DROPPED)

    def __enter__(self) -> "Session":
        if self._session is None:
            self.start()
        return self

    def __exit__(self, *exc) -> bool:
        if self._pid != os.getpid():
            return False  # a forked child: the parent owns the session
        self.stop()
        return False

    def __repr__(self) -> str:
        state = "active" if self.active else ("stopped" if self._stopped else "new")
        return f"Session({self.path!r}, mode={self.mode!r}, {state})"


def _str_list(values, what) -> list:
    if values is None:
        return []
    if isinstance(values, str):
        raise TypeError(f"{what} must be a list of str, not a str")
    out = list(values)
    for v in out:
        if not isinstance(v, str) or not v:
            raise TypeError(f"{what} must be non-empty strs")
    return out


@atexit.register
def _stop_running_sessions() -> None:
    # A session left running at exit still produces its trace.
    for s in list(_running):
        if s._pid == os.getpid():
            try:
                s.stop()
            except errors.VperfettoError:
                pass


# The plain forms of begin/end/slice/counter as builtins; each falls back to
# the Python function above for anything else (annotations, tracks, a name
# not interned yet, keyword arguments...).
if _fast:
    _fast.init(_name_ids, _category_ids, _counter_handles, begin, end, slice, counter)
    begin, end, slice, counter = _fast.begin, _fast.end, _fast.slice, _fast.counter  # noqa: A001


def _autostart() -> None:
    # Set by `python -m vperfetto guest ... -- CMD`: trace this process into the
    # given file from its start (not inherited by its own children).
    path = os.environ.pop("VPERFETTO_AUTOSTART", None)
    if path:
        Session(path, mode="stream").start()


_autostart()
