"""Look inside the cache without changing it: its keys, and what they are.

``exclusions`` carries the globs of the caches nested under this one
(``operations/nesting.py``): their keys are left out of the listing, the count and
the statistics, and counted per nested cache, as a clear leaves them in place.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice

from cachectl.backends.base import CacheBackend, ProgressCallback
from cachectl.backends.exclusions import Exclusions
from cachectl.backends.statistics import CacheStats
from cachectl.operations.function_stats import FunctionStatistics, by_function


def count_keys(
    backend: CacheBackend,
    pattern: str,
    on_progress: ProgressCallback | None = None,
    exclusions: Exclusions | None = None,
) -> int:
    """How many of the app's keys match ``pattern`` (after the prefix), but those
    ``exclusions`` keep."""
    if exclusions is None:
        return backend.count(pattern, on_progress)
    backend.require_key_listing()
    return backend.delete_matching(pattern, True, on_progress, exclusions)


def _without(names: Iterator[str], exclusions: Exclusions) -> Iterator[str]:
    for name in names:
        if not exclusions.keeps(name.encode("utf-8", "surrogateescape")):
            yield name


def list_keys(
    backend: CacheBackend,
    pattern: str,
    limit: int | None = None,
    exclusions: Exclusions | None = None,
) -> Iterator[str]:
    """The app's keys matching ``pattern``, prefix removed, streamed as SCAN finds them,
    but those ``exclusions`` keep (counted there)."""
    backend.require_key_listing()
    names = backend.scan_keys(pattern)
    return islice(_without(names, exclusions) if exclusions else names, limit)


def statistics(
    backend: CacheBackend,
    sample: int | None,
    on_progress: ProgressCallback | None = None,
    exclusions: Exclusions | None = None,
) -> CacheStats:
    """Entries by kind and time to live, and memory (of ``sample`` keys, extrapolated),
    but those ``exclusions`` keep."""
    if exclusions is None:
        return backend.stats(sample, on_progress)
    return backend.stats_except(exclusions, sample, on_progress)


def statistics_by_function(
    backend: CacheBackend,
    on_progress: ProgressCallback | None = None,
    exclusions: Exclusions | None = None,
) -> FunctionStatistics:
    """Entries, memory and TTLs per memoized function, view path and fragment name,
    from one pass over the keys, but those ``exclusions`` keep."""
    return by_function(backend.census("*", None, on_progress, exclusions))
