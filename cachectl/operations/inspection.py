"""Look inside the cache without changing it: its keys, and what they are."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice

from cachectl.backends.base import CacheBackend, ProgressCallback
from cachectl.backends.statistics import CacheStats


def count_keys(
    backend: CacheBackend, pattern: str, on_progress: ProgressCallback | None = None
) -> int:
    """How many of the app's keys match ``pattern`` (after the prefix)."""
    return backend.count(pattern, on_progress)


def list_keys(backend: CacheBackend, pattern: str, limit: int | None = None) -> Iterator[str]:
    """The app's keys matching ``pattern``, prefix removed, streamed as SCAN finds them."""
    backend.require_key_listing()
    return islice(backend.scan_keys(pattern), limit)


def statistics(
    backend: CacheBackend, sample: int | None, on_progress: ProgressCallback | None = None
) -> CacheStats:
    """Entries by kind and time to live, and memory (of ``sample`` keys, extrapolated)."""
    return backend.stats(sample, on_progress)
