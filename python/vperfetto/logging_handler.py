"""``vperfetto.LogHandler``: log records as track events.

    logging.getLogger().addHandler(vperfetto.LogHandler())

Each record becomes an instant event on the calling thread's track (the
Perfetto UI draws it as a small arrow on that thread's row), named after the
level (``WARNING``) in the category ``log``; clicking it shows its arguments:
``message``, ``logger``, ``level`` (the number), ``file``, ``line`` and
``function`` of the logging call. Outside a session the handler costs one
C call per record and writes nothing; it never raises into the program.
"""

from __future__ import annotations

import logging

from .tracing import instant, is_tracing

__all__ = ["LogHandler"]


class LogHandler(logging.Handler):
    def __init__(self, level: int | str = logging.NOTSET, category: str = "log") -> None:
        super().__init__(level)
        self.category = category

    def emit(self, record: logging.LogRecord) -> None:
        if not is_tracing():
            return
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: keep what was given
            message = f"{record.msg!r} % {record.args!r}"
        try:
            instant(record.levelname or "LOG", self.category, args={
                "message": message, "logger": record.name, "level": record.levelno,
                "file": record.pathname, "line": record.lineno, "function": record.funcName})
        except Exception:  # noqa: BLE001 - logging must never break the program
            self.handleError(record)
