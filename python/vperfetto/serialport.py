"""The guest's end of a serial link: a virtio-serial port
(``/dev/virtio-ports/NAME``), or any character device that carries bytes
both ways (``/dev/hvc1``, ``/dev/ttyS1``, a pty), used like a socket by
:class:`vperfetto.link.Channel`.

A serial port has no connection events. In a Linux guest, a virtio-serial
port whose host side is not connected reads as end-of-file and blocks
writers; here both simply wait, up to the deadline, for the host to come.
The stream's framing (MAGIC at each session's start, resynchronisation after
garbage) is the link's business, not this file's.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import socket
import termios
import time
import tty
from typing import Optional

# How often a reader looks again while the host side is not connected (the
# port then reads as end-of-file and polls as hung up at once).
_IDLE_POLL_S = 0.02


class SerialPort:
    """A character device opened for the link, with the socket methods
    Channel uses (recv, sendall, settimeout, close, shutdown)."""

    family = None

    def __init__(self, path: str, timeout: Optional[float] = 10.0):
        self.path = path
        self._timeout = timeout
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            if e.errno == errno.EBUSY:   # virtio_console: one opener per port
                raise OSError(e.errno, f"{path} is in use by another process") from None
            raise
        try:
            st = os.fstat(fd)
            import stat

            if not (stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
                raise OSError(errno.EINVAL, f"{path} is not a character device")
            try:   # one guest at a time on a port, whatever the driver allows
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise OSError(errno.EBUSY, f"{path} is in use by another process") from None
            if os.isatty(fd):  # a tty's line discipline would rewrite the bytes
                tty.setraw(fd, termios.TCSANOW)
        except BaseException:
            os.close(fd)
            raise
        self._fd: Optional[int] = fd

    def fileno(self) -> int:
        return -1 if self._fd is None else self._fd

    def settimeout(self, timeout: Optional[float]) -> None:
        self._timeout = timeout

    def gettimeout(self) -> Optional[float]:
        return self._timeout

    def _deadline(self) -> Optional[float]:
        return None if self._timeout is None else time.monotonic() + self._timeout

    def _wait(self, events: int, deadline: Optional[float]) -> None:
        """Waits until the port is ready for `events`; while the host side is
        absent (hang-up), looks again every few ms. socket.timeout at the deadline."""
        p = select.poll()
        p.register(self._fd, events)
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise socket.timeout(f"timed out on {self.path}")
            ms = -1 if left is None else max(1, int(left * 1000))
            for _fd, ev in p.poll(ms):
                if ev & events:
                    return
                if ev & select.POLLNVAL:
                    raise OSError(errno.EBADF, f"{self.path} was closed")
                # POLLHUP / POLLERR without data: nobody on the host side yet
                time.sleep(_IDLE_POLL_S if left is None else min(_IDLE_POLL_S, max(left, 0)))
                break

    def recv(self, n: int) -> bytes:
        if self._fd is None:
            raise OSError(errno.EBADF, f"{self.path} is closed")
        deadline = self._deadline()
        while True:
            try:
                data = os.read(self._fd, n)
            except BlockingIOError:
                data = None
            except OSError as e:
                if e.errno != errno.EIO:   # a pty whose other end is closed
                    raise
                data = b""
            if data:
                return data
            if data == b"":   # the host side is not connected: wait for it
                if deadline is not None and time.monotonic() >= deadline:
                    raise socket.timeout(f"timed out on {self.path}")
                time.sleep(_IDLE_POLL_S)
                continue
            self._wait(select.POLLIN, deadline)

    def sendall(self, data: bytes) -> None:
        if self._fd is None:
            raise OSError(errno.EBADF, f"{self.path} is closed")
        deadline = self._deadline()
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._fd, view)
            except BlockingIOError:
                self._wait(select.POLLOUT, deadline)
                continue
            view = view[n:]

    def shutdown(self, how: int = socket.SHUT_RDWR) -> None:
        pass   # a port has no half-close; close() ends it

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> "SerialPort":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
