"""Custom backends cachectl knows nothing about beyond cachelib's interface."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cachectl.backends.base import CacheBackend, ClearPlan, ProgressCallback, Tally, partial_work
from cachectl.codec.stored import StoredValue
from cachectl.errors import UsageError


class GenericBackend(CacheBackend):
    """A custom ``CACHE_TYPE``: only what cachelib's ``BaseCache`` promises.

    Its ``get`` decodes values with the backend's own code, so reading needs the
    operator's ``--unsafe-unpickle``; its ``clear`` is whatever the class does.
    """

    kind = "custom"

    def describe(self) -> str:
        cls = type(self.cache)
        return f"custom backend {cls.__module__}.{cls.__qualname__}"

    def get(self, key: str, unsafe: bool = False) -> StoredValue | None:
        if not unsafe:
            raise UsageError(
                f"{self.describe()} decodes values with its own code; "
                "pass --unsafe-unpickle if you trust this cache"
            )
        value = self.cache.get(key)
        return None if value is None else StoredValue(None, value, "custom")

    def set(self, key: str, value: Any, timeout: int | None) -> None:
        self.cache.set(key, value, timeout=timeout)

    def delete(self, keys: Iterable[str], on_progress: ProgressCallback | None = None) -> int:
        tally = Tally(on_progress)
        with partial_work(tally, "removed"):
            for key in keys:
                if self.cache.has(key) and self.cache.delete(key):
                    tally.add(1)
        return tally.count

    def clear_plan(self) -> ClearPlan:
        return ClearPlan(
            self.describe(), "whatever the backend's clear() removes", whole_server=True
        )

    def clear(self, dry_run: bool, on_progress: ProgressCallback | None = None) -> None:
        if not dry_run:
            self.cache.clear()
        return None
