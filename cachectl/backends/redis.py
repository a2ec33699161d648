"""Redis, Redis Sentinel and Redis Cluster caches (cachelib's ``RedisCache`` family)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
import redis.exceptions

from cachectl.backends.base import (
    CacheBackend,
    ClearPlan,
    ProgressCallback,
    Tally,
    batched,
    partial_work,
)
from cachectl.backends.redis_sweep import scan_all, sweep
from cachectl.codec import StoredValue, decode_redis_value
from cachectl.config import mask_url
from cachectl.errors import BackendError

_GLOB_SPECIALS = "\\*?[]"


def escape_glob(text: str) -> str:
    """Make ``text`` match only itself in a SCAN MATCH pattern (a prefix like
    ``app[1]_`` must not turn into a character class)."""
    return "".join("\\" + ch if ch in _GLOB_SPECIALS else ch for ch in text)


def describe_client(client: Any) -> str:
    """``redis://host:port/db`` (or the socket path) of a redis-py client, no password."""
    if isinstance(client, redis.RedisCluster):
        nodes = ",".join(f"{node.host}:{node.port}" for node in client.get_nodes()[:3])
        return f"redis cluster {nodes}"
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    service = getattr(pool, "service_name", None)
    if service:  # a SentinelConnectionPool
        sentinels = ",".join(
            f"{s.connection_pool.connection_kwargs.get('host')}:"
            f"{s.connection_pool.connection_kwargs.get('port')}"
            for s in pool.sentinel_manager.sentinels
        )
        return f"redis sentinel master {service!r} via {sentinels} db {kwargs.get('db', 0)}"
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    scheme = "rediss" if issubclass(pool.connection_class, redis.SSLConnection) else "redis"
    user = kwargs.get("username")
    auth = (
        f"{user}:****@"
        if user and kwargs.get("password")
        else ("****@" if kwargs.get("password") else "")
    )
    return mask_url(
        f"{scheme}://{auth}{kwargs.get('host')}:{kwargs.get('port')}/{kwargs.get('db', 0)}"
    )


class RedisBackend(CacheBackend):
    """A cachelib Redis cache: the app's format for values, SCAN + UNLINK for clears."""

    kind = "redis"
    can_list_keys = True

    def __init__(self, cache: Any, serializer: Any = None) -> None:
        super().__init__(cache)
        self.client = cache._write_client
        #: A non-default CACHE_SERIALIZER, or None for cachelib's own format.
        self.serializer = serializer
        self._unlink_supported = True

    @property
    def key_prefix(self) -> str:
        return self.cache._get_prefix()

    @property
    def is_cluster(self) -> bool:
        return isinstance(self.client, redis.RedisCluster)

    def describe(self) -> str:
        return describe_client(self.client)

    @contextmanager
    def server_errors(self) -> Iterator[None]:
        try:
            yield
        except redis.exceptions.RedisError as exc:
            message = f"{self.describe()}: {type(exc).__name__}: {exc}"
            if isinstance(exc, redis.exceptions.AuthenticationError) or "NOAUTH" in str(exc):
                message += (
                    " (a password is needed or wrong: CACHE_REDIS_PASSWORD; a file written "
                    "by config --write leaves it out, give it with FLASK_CACHE_REDIS_PASSWORD "
                    "and --env)"
                )
            raise BackendError(message) from exc

    def check(self) -> None:
        with self.server_errors():
            self.client.ping()

    def get(self, key: str, unsafe: bool = False) -> StoredValue | None:
        with self.server_errors():
            raw = self.client.get(self.key_prefix + key)
        if raw is None:
            return None
        return decode_redis_value(raw, self.serializer, unsafe)

    def set(self, key: str, value: Any, timeout: int | None) -> None:
        with self.server_errors():
            self.cache.set(key, value, timeout=timeout)

    def _unlink(self, names: list[Any]) -> int:
        """Remove ``names`` (full keys) in one round trip; how many existed."""
        if self.is_cluster:
            # A multi-key command must stay within one hash slot; the cluster
            # pipeline routes each key to its own node instead.
            pipe = self.client.pipeline(transaction=False)
            for name in names:
                pipe.unlink(name)
            return sum(pipe.execute())
        if self._unlink_supported:
            try:
                return self.client.unlink(*names)
            except redis.exceptions.ResponseError as exc:
                if "unknown command" not in str(exc).lower():
                    raise
                self._unlink_supported = False  # Redis < 4: fall back to DEL
        return self.client.delete(*names)

    def delete(self, keys: Iterable[str], on_progress: ProgressCallback | None = None) -> int:
        tally = Tally(on_progress)
        with partial_work(tally, "removed"), self.server_errors():
            for batch in batched(keys):
                tally.add(self._unlink([self.key_prefix + key for key in batch]))
        return tally.count

    def clear_plan(self) -> ClearPlan:
        if not self.key_prefix:
            return ClearPlan(
                self.describe(), "every key in the database (no key prefix)", whole_server=True
            )
        return ClearPlan(self.describe(), f"keys under the prefix {self.key_prefix!r}")

    def scan_prefixed(self, pattern: str = "*") -> Iterator[Any]:
        """Keys under the prefix (full names), streamed with SCAN (never KEYS, which
        blocks), every primary of a cluster at once."""
        return scan_all(self.client, escape_glob(self.key_prefix) + pattern)

    def scan_keys(self, pattern: str) -> Iterator[str]:
        cut = len(self.key_prefix.encode())
        with self.server_errors():
            for name in self.scan_prefixed(pattern):
                yield name[cut:].decode("utf-8", "surrogateescape")

    def clear(self, dry_run: bool, on_progress: ProgressCallback | None = None) -> int:
        if not self.key_prefix:
            # Without a prefix every key in the database looks like the app's:
            # the CLI only comes here through --flush-db.
            return self.flush_db(dry_run)
        return self.delete_matching("*", dry_run, on_progress)

    def count(self, pattern: str = "*", on_progress: ProgressCallback | None = None) -> int:
        return self.delete_matching(pattern, dry_run=True, on_progress=on_progress)

    def delete_matching(
        self, pattern: str, dry_run: bool, on_progress: ProgressCallback | None = None
    ) -> int:
        """Unlink (or count) the keys under the prefix whose rest matches the glob
        ``pattern``, streamed and non-blocking (see redis_sweep)."""
        tally = Tally(on_progress)
        with partial_work(tally, "counted" if dry_run else "removed"), self.server_errors():
            sweep(self.client, escape_glob(self.key_prefix) + pattern, dry_run, tally)
        return tally.count

    def flush_db(self, dry_run: bool) -> int:
        with self.server_errors():
            size = self.client.dbsize()
            if not dry_run:
                self.client.flushdb(asynchronous=True)
        return size
