"""memcached caches (cachelib's ``MemcachedCache``, and Flask-Caching's SASL variants)."""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from typing import Any

from cachectl.backends.base import (
    CacheBackend,
    ClearPlan,
    ProgressCallback,
    Tally,
    batched,
    partial_work,
)
from cachectl.codec import RestrictedUnpickler, StoredValue, decode_pickle
from cachectl.errors import BackendError, UsageError

#: Flask-Caching's SpreadSASLMemcachedCache defaults (chunksize, maxchunk).
SPREAD_CHUNK_SIZE = 1048448
SPREAD_MAX_CHUNKS = 32


class MemcachedBackend(CacheBackend):
    """A cachelib MemcachedCache.

    memcached cannot list keys, so a clear can only empty the whole server
    (``flush_all``), and the client library decodes values itself: reads are
    only safe with python-memcached, whose unpickler can be replaced.
    """

    kind = "memcached"

    def __init__(self, cache: Any, servers: list[str], chunked: bool = False) -> None:
        super().__init__(cache)
        self.client = cache._client
        self.servers = servers
        #: Flask-Caching's SpreadSASLMemcachedCache splits a pickle over KEY.0, KEY.1, ...
        self.chunked = chunked

    @property
    def key_prefix(self) -> str:
        return self.cache.key_prefix or ""

    @property
    def can_read_safely(self) -> bool:
        return hasattr(self.client, "unpickler")  # python-memcached

    def describe(self) -> str:
        return "memcached " + ",".join(self.servers)

    def check(self) -> None:
        stats = getattr(self.client, "get_stats", None)
        if stats is None:
            return
        try:
            answered = len(stats())
        except Exception as exc:
            raise BackendError(f"{self.describe()}: {type(exc).__name__}: {exc}") from exc
        if answered < len(self.servers):
            raise BackendError(
                f"{self.describe()}: {len(self.servers) - answered} of {len(self.servers)} "
                "servers did not answer"
            )

    def get(self, key: str, unsafe: bool = False) -> StoredValue | None:
        if self.chunked:
            return self._get_chunked(key, unsafe)
        if not self.can_read_safely and not unsafe:
            raise UsageError(
                f"{type(self.client).__module__} decodes memcached values itself, which "
                "can run code stored in the cache; pass --unsafe-unpickle if you trust "
                "this cache, or install python-memcached for safe reads"
            )
        if self.can_read_safely:
            self.client.unpickler = pickle.Unpickler if unsafe else RestrictedUnpickler
        value = self.cache.get(key)
        if value is None:
            # Flask-Caching cannot tell a stored None from a miss either.
            return None
        return StoredValue(None, value, "memcached")

    def _get_chunked(self, key: str, unsafe: bool) -> StoredValue | None:
        # The chunks are plain bytes; only their concatenation is a pickle.
        parts = []
        for index in range(SPREAD_MAX_CHUNKS):
            part = self.cache.get(f"{key}.{index}")
            if part is None:
                break
            parts.append(part)
        if not parts:
            return None
        raw = b"".join(parts)
        return decode_pickle(raw, raw, unsafe)

    def set(self, key: str, value: Any, timeout: int | None) -> None:
        if self.chunked:
            serialized = pickle.dumps(value, 2)  # the protocol Flask-Caching spreads
            chunks = {
                f"{key}.{n}": serialized[offset : offset + SPREAD_CHUNK_SIZE]
                for n, offset in enumerate(range(0, len(serialized), SPREAD_CHUNK_SIZE))
            }
            if len(chunks) > SPREAD_MAX_CHUNKS:
                raise UsageError(f"the value needs more than {SPREAD_MAX_CHUNKS} chunks")
            self.cache.set_many(chunks, timeout=timeout)
            return
        if not self.cache.set(key, value, timeout=timeout):
            raise BackendError(f"{self.describe()}: the server did not store the value")

    def delete(self, keys: Iterable[str], on_progress: ProgressCallback | None = None) -> None:
        tally = Tally(on_progress)
        with partial_work(tally, "sent"):
            for batch in batched(keys):
                if self.chunked:
                    for key in batch:
                        self.cache.delete_many(*(f"{key}.{n}" for n in range(SPREAD_MAX_CHUNKS)))
                else:
                    self.cache.delete_many(*batch)
                tally.add(len(batch))
        # memcached answers NOT_FOUND and DELETED alike through these clients.
        return None

    def clear_plan(self) -> ClearPlan:
        return ClearPlan(
            self.describe(),
            "every key on the server, of every app (memcached cannot remove by prefix)",
            whole_server=True,
        )

    def clear(self, dry_run: bool, on_progress: ProgressCallback | None = None) -> None:
        if not dry_run:
            self.cache.clear()
        return None
