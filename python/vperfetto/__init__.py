"""vperfetto: Perfetto tracing across the virtual-machine boundary.

    import vperfetto

    with vperfetto.Session("guest.pftrace", categories=["gfx"]):
        with vperfetto.slice("load", category="gfx", args={"count": 12}):
            vperfetto.counter("queue_depth", 3)
"""

from ._native import VERSION as __version__
from .errors import (
    InternalError,
    InvalidArgumentError,
    OutOfMemoryError,
    TraceFormatError,
    TraceIOError,
    TracingStateError,
    UnsupportedError,
    VperfettoError,
)
from . import vm  # noqa: E402  (vperfetto.vm.HostAgent, GuestLink, Workflow)
from .profiler import Profiler, profile
from .logging_handler import LogHandler
from .tracing import (
    CounterTrack,
    Event,
    Session,
    Track,
    begin,
    boot_time_ns,
    clock_sync_marker,
    counter,
    end,
    instant,
    is_tracing,
    new_flow_id,
    set_process_name,
    set_thread_name,
    sleep_us,
    slice,
    traced,
    uuid_lsb,
)

__all__ = [
    "__version__",
    "Session", "Event", "Track", "CounterTrack",
    "begin", "end", "instant", "slice", "counter", "traced", "profile", "Profiler", "LogHandler",
    "set_process_name", "set_thread_name", "is_tracing",
    "new_flow_id", "uuid_lsb", "boot_time_ns", "sleep_us", "clock_sync_marker",
    "VperfettoError", "InvalidArgumentError", "TracingStateError", "TraceIOError",
    "OutOfMemoryError", "TraceFormatError", "UnsupportedError", "InternalError",
]
