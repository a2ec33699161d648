"""``--timeout`` bounds the wait for each whole reply, not each read of the socket.

A socket timeout starts again at every byte that arrives: a server (or a proxy in the
way) that sends one byte every 0.4 s keeps a read under a 1 s timeout going for as long
as it likes. The sockets cachectl reads replies from are wrapped in a ``DeadlineSocket``:
once a reply is awaited (``expect_reply``), each read gets only what is left of the time
it may take as a whole, and past it the read fails as a timeout would (``socket.timeout``),
whatever client code is reading. A long command made of many quick replies (a clear's
steps) is not bounded as a whole: each of its replies is.

Used by redis-py's connections (``redis_deadline``), python-memcached's and cachectl's own
memcached sockets (``memcached_deadline``, ``memcached_crawler``); pylibmc reads in C, out
of reach.
"""

from __future__ import annotations

import io
import socket
import time
from typing import Any


class DeadlineSocket:
    """A socket whose reads stop at the deadline of the reply being read. Everything
    but reading and the timeout is the wrapped socket's own."""

    def __init__(self, sock: Any, span: float | None) -> None:
        self._sock = sock
        #: How long a whole reply may take (None: no bound, as the socket alone).
        self._span = span
        self._deadline: float | None = None
        #: The timeout the client asked for, which a read gets when less is left.
        self._timeout: float | None = sock.gettimeout()

    def expect_reply(self) -> None:
        """Start the clock of the next reply."""
        if self._span is not None:
            self._deadline = time.monotonic() + self._span

    def reply_done(self) -> None:
        self._deadline = None

    def settimeout(self, value: float | None) -> None:
        self._timeout = value
        self._sock.settimeout(value)

    def gettimeout(self) -> float | None:
        return self._timeout

    def _read(self, method: Any, *args: Any) -> Any:
        deadline = self._deadline
        if deadline is None:
            return method(*args)
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout(f"no whole reply within {self._span:g} s")
        if self._timeout is not None and self._timeout <= left:
            return method(*args)
        self._sock.settimeout(left)
        try:
            return method(*args)
        except socket.timeout:
            raise socket.timeout(f"no whole reply within {self._span:g} s") from None
        finally:
            self._sock.settimeout(self._timeout)

    def recv(self, *args: Any) -> Any:
        return self._read(self._sock.recv, *args)

    def recv_into(self, *args: Any) -> Any:
        return self._read(self._sock.recv_into, *args)

    def makefile(self, mode: str = "rb", buffering: int = -1, **_: Any) -> io.BufferedReader:
        """A binary reader whose reads go through the deadline (``socket.makefile``
        would read the wrapped socket directly)."""
        if mode != "rb":
            raise ValueError("a DeadlineSocket reads only: makefile('rb')")
        return io.BufferedReader(_Reader(self), buffering if buffering > 0 else 8192)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _Reader(io.RawIOBase):
    def __init__(self, sock: DeadlineSocket) -> None:
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return int(self._sock.recv_into(buffer))
