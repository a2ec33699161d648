"""Every check first, then the work: how a run of many commands (``batch``, ``invalidate``)
checks all of them before the first changes anything.

A command checks what it was given (its options, the function it names and how a call
binds to its signature, the view's endpoint, the fragment's arguments) before it asks
for its cache (``Session.backend``). Run inside ``only_checking()``, a command stops at
that request with ``ServerNeeded``: everything that needs no server has passed, and
nothing was sent. So a batch runs each of its lines that far first, and a line that
would fail its checks stops the batch before any line has run; a new command is
checked so without being listed anywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar


class ServerNeeded(BaseException):
    """Raised where a command checked only would first reach its cache: its checks
    have passed. A BaseException, so that no ``except Exception`` of the command can
    take it for a failure."""


_only_checking: ContextVar[bool] = ContextVar("cachectl_only_checking", default=False)


@contextmanager
def only_checking() -> Iterator[None]:
    """Within it, a command stops (``ServerNeeded``) where it would reach its cache."""
    token = _only_checking.set(True)
    try:
        yield
    finally:
        _only_checking.reset(token)


def stop_if_only_checking() -> None:
    """Called where a command reaches for its cache: ``ServerNeeded`` when only checking."""
    if _only_checking.get():
        raise ServerNeeded
