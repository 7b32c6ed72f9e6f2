"""One exception hierarchy for every status the native library returns.

Each class also inherits the builtin it resembles, so ``except ValueError``
or ``except OSError`` work as a caller expects.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "VperfettoError",
    "InvalidArgumentError",
    "TracingStateError",
    "TraceIOError",
    "OutOfMemoryError",
    "TraceFormatError",
    "UnsupportedError",
    "InternalError",
    "check",
]


class VperfettoError(Exception):
    """Base class of every vperfetto error."""

    code = -1

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code


class InvalidArgumentError(VperfettoError, ValueError):
    code = 1


class TracingStateError(VperfettoError, RuntimeError):
    """Wrong state: a session already running, stopped, or from another process."""

    code = 2


class TraceIOError(VperfettoError, OSError):
    code = 3

    def __str__(self) -> str:  # OSError's formatting would hide the message
        return str(self.args[0]) if self.args else ""


class OutOfMemoryError(VperfettoError, MemoryError):
    code = 4


class TraceFormatError(VperfettoError, ValueError):
    code = 5


class UnsupportedError(VperfettoError, RuntimeError):
    code = 6


class InternalError(VperfettoError, RuntimeError):
    code = 7


_BY_CODE = {
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        TracingStateError,
        TraceIOError,
        OutOfMemoryError,
        TraceFormatError,
        UnsupportedError,
        InternalError,
    )
}


def error_from_status(code: int, message: str) -> VperfettoError:
    cls = _BY_CODE.get(code, VperfettoError)
    return cls(message or f"vperfetto error {code}", code)


def check(code: int, err: Any) -> None:
    """Raise the exception for a non-zero status; ``err`` is a ``vp_error*``."""
    if code:
        from ._native import ffi

        raise error_from_status(code, ffi.string(err.message).decode("utf-8", "replace"))
