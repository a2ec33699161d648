"""How much work decoding and showing one cached value may take.

A value planted to exhaust the reader (10**22 elements in 166 bytes of memo references,
``bytes(10**10)``, tuples nested a million deep) is bounded by ``DecodeLimits``, whose
defaults keep a read near 1 s and well under 256 MB: ``max_bytes`` 16 MiB of pickle (and of
data its calls build), ``max_depth`` 200 levels, ``max_elements`` 500,000 opcodes run (sets
and placeholders count 4) and values shown, ``max_seconds`` 0.5 to decode and again to
render, ``max_output`` 16 Mi characters; past one, a value is shown as far as it got,
marked (``<… truncated: 500,000 elements>``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import NamedTuple


class DecodeLimits(NamedTuple):
    """How much work decoding and rendering one value may take (see above). Immutable; a
    NamedTuple because every command that shows a value defines it at start-up."""

    max_bytes: int = 16 * 1024 * 1024
    max_depth: int = 200
    max_elements: int = 500_000
    max_seconds: float = 0.5
    max_output: int = 16 * 1024 * 1024

    def checked(self) -> DecodeLimits:
        """These limits, or ValueError where one is out of range (max_depth at most 1000:
        the renderers recurse a few frames a level)."""
        if not all(
            0 < v <= (1000 if f == "max_depth" else 1e18) for f, v in self._asdict().items()
        ):
            raise ValueError(f"limits must be positive (max_depth at most 1000): {self}")
        return self


_limits: ContextVar[DecodeLimits | None] = ContextVar("cachectl_limits", default=None)


def current_limits() -> DecodeLimits:
    """The limits ``using_limits`` set (also where no ``limits=`` reaches), else the defaults."""
    return _limits.get() or DecodeLimits()


@contextmanager
def using_limits(limits: DecodeLimits) -> Iterator[DecodeLimits]:  # for a block, also memcached
    token = _limits.set(limits)
    try:
        yield limits
    finally:
        _limits.reset(token)
