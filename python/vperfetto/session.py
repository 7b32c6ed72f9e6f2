"""Tracing sessions of this process."""

from __future__ import annotations

import atexit
import os
from typing import Any, Dict, Iterable, List, Literal, Optional, Union

from . import errors
from ._names import _category_id, _program_name
from ._native import ffi, lib, new_error

__all__ = ["Session"]

_MODES = {"ring": lib.VP_BUFFER_RING, "discard": lib.VP_BUFFER_DISCARD,
          "stream": lib.VP_BUFFER_STREAM}

FlowIds = Union[int, Iterable[int], None]

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

    ``incremental_timestamps`` (default on, as the Perfetto SDK writes them):
    each packet carries the delta from its thread sequence's previous
    timestamp on a clock the sequence defines after every incremental-state
    reset, in units of ``timestamp_unit_ns`` (times rounded down to it);
    off, every packet carries its absolute CLOCK_BOOTTIME ns.

    ``crash_safe`` (default True): the buffer lives in ``path + ".vpbuf"``,
    a file mapped shared, so a process that dies keeps its trace
    (``python -m vperfetto.recover``, or the next Session on ``path``, which
    recovers it and says where: ``recovered``). ``flush_period_ms``: stream
    mode writes every thread's packets at least this often (0: when chunks
    fill, on flush and at stop).

    ``compress`` (0-9, default 0; ``True`` is 1): once the trace is written
    at stop, its packets are deflated at this zlib level in runs (Perfetto's
    ``compressed_packets``, as the tracing service writes them with
    ``compression_type: COMPRESSION_TYPE_DEFLATE``); the Perfetto UI and
    every vperfetto reader inflate them. Whole-program traces shrink ~7x at
    level 1. A crash leaves the uncompressed trace.
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"], *, buffer_kb: int = 16384,
                 mode: str = "ring", categories: Optional[Iterable[str]] = None,
                 disabled_categories: Optional[Iterable[str]] = None, sequence_base: int = 0,
                 incremental_timestamps: bool = True, timestamp_unit_ns: int = 1,
                 crash_safe: bool = True, flush_period_ms: int = 100,
                 compress: Union[int, bool] = 0) -> None:
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
        if isinstance(sequence_base, bool) or not isinstance(sequence_base, int) \
                or not 0 <= sequence_base < (1 << 32) - (1 << 16):
            raise ValueError("sequence_base must be an int in [0, 2**32 - 65536)")
        self.sequence_base = sequence_base
        if not isinstance(incremental_timestamps, bool):
            raise TypeError("incremental_timestamps must be a bool")
        if isinstance(timestamp_unit_ns, bool) or not isinstance(timestamp_unit_ns, int):
            raise TypeError("timestamp_unit_ns must be an int")
        if not 1 <= timestamp_unit_ns <= 1_000_000_000:
            raise ValueError("timestamp_unit_ns must be between 1 and 1000000000")
        self.incremental_timestamps = incremental_timestamps
        self.timestamp_unit_ns = timestamp_unit_ns
        if not isinstance(crash_safe, bool):
            raise TypeError("crash_safe must be a bool")
        self.crash_safe = crash_safe
        if isinstance(flush_period_ms, bool) or not isinstance(flush_period_ms, int):
            raise TypeError("flush_period_ms must be an int")
        if not 0 <= flush_period_ms <= 3600000:
            raise ValueError("flush_period_ms must be between 0 and 3600000")
        self.flush_period_ms = flush_period_ms
        if not isinstance(compress, int):
            raise TypeError("compress must be an int (a zlib level) or a bool")
        if not 0 <= compress <= 9:
            raise ValueError("compress must be between 0 and 9")
        self.compress = int(compress)
        self.recovered: Optional[str] = None
        self._session: Any = None
        self._stopped = False
        self._pid: Optional[int] = None

    def start(self) -> "Session":
        if self._session is not None or self._stopped:
            raise errors.TracingStateError("a Session can be started only once")
        cfg = ffi.gc(lib.vp_config_new(), lib.vp_config_free)
        if cfg == ffi.NULL:
            raise errors.OutOfMemoryError("out of memory")
        err = new_error()
        errors.check(lib.vp_config_set_output(cfg, self.path.encode(), err), err)
        errors.check(lib.vp_config_set_buffer(cfg, self.buffer_kb, _MODES[self.mode], err), err)
        errors.check(lib.vp_config_set_sequence_base(cfg, self.sequence_base, err), err)
        errors.check(lib.vp_config_set_incremental_timestamps(
            cfg, int(self.incremental_timestamps), self.timestamp_unit_ns, err), err)
        errors.check(lib.vp_config_set_crash_safe(cfg, int(self.crash_safe), err), err)
        errors.check(lib.vp_config_set_flush_period_ms(cfg, self.flush_period_ms, err), err)
        errors.check(lib.vp_config_set_compression(cfg, self.compress, err), err)
        for c in self.categories:
            _category_id(c)  # registered now, so its id exists before the first event
            errors.check(lib.vp_config_enable_category(cfg, c.encode(), err), err)
        for c in self.disabled_categories:
            errors.check(lib.vp_config_disable_category(cfg, c.encode(), err), err)
        out = ffi.new("vp_session**")
        lib.vp_set_default_process_name(_program_name().encode("utf-8", "replace"))
        errors.check(lib.vp_session_start(cfg, out, err), err)
        self._session = ffi.gc(out[0], lib.vp_session_free)
        self.recovered = ffi.string(lib.vp_session_recovered(self._session)).decode(
            "utf-8", "surrogateescape") or None
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
    def stats(self) -> Dict[str, int]:
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
        return int(lib.vp_session_stat(self._session, lib.VP_STAT_PACKETS_DROPPED))

    def __enter__(self) -> "Session":
        if self._session is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        if self._pid != os.getpid():
            return False  # a forked child: the parent owns the session
        self.stop()
        return False

    def __repr__(self) -> str:
        state = "active" if self.active else ("stopped" if self._stopped else "new")
        return f"Session({self.path!r}, mode={self.mode!r}, {state})"


def running_session() -> Optional[Session]:
    """The Session this process's Python code started and is recording, if any."""
    for s in list(_running):
        if s._pid == os.getpid() and s.active:
            return s
    return None


def _str_list(values: Optional[Iterable[str]], what: str) -> List[str]:
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


def _autostart() -> None:
    # Set by `python -m vperfetto guest ... -- CMD`: trace this process into the
    # given file from its start (not inherited by its own children).
    from . import _native

    path, _native.AUTOSTART = _native.AUTOSTART, None
    if path:
        try:
            Session(path, mode="stream").start()
        except errors.VperfettoError as e:   # as the C library says it
            import sys

            print(f"vperfetto: VPERFETTO_AUTOSTART={path}: not tracing: {e}", file=sys.stderr)


_autostart()
