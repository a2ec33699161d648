"""The one place that reaches into cachelib's private attributes.

cachelib offers no public way to ask a cache where it keeps its entries (the
client of a RedisCache, the directory and file naming of a FileSystemCache) or
to keep FileSystemCache's item counter right after files are removed behind its
back. cachectl needs all of that, so it reads the private attributes, here and
nowhere else: when a cachelib release renames one, this module is the whole fix.

Each accessor names the cachelib releases it was checked against, read from the
released wheels: 0.9.0, 0.10.2, 0.12.0, 0.13.0, 0.14.0, 0.15.0, 0.16.0 and 0.17.0.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import cachelib

from cachectl.app import static_lookup as static

# --- the Redis family (RedisCache, and Flask-Caching's Sentinel and Cluster caches) ---

_RedisFamily: type
try:
    # cachelib 0.15+: RedisCache and ValkeyCache share this base.
    from cachelib.redis_base import BaseRedisCache

    _RedisFamily = BaseRedisCache
except ImportError:  # cachelib 0.9-0.13 have only RedisCache
    _RedisFamily = cachelib.RedisCache


def is_redis_cache(cache: Any) -> bool:
    """Whether ``cache`` stores through a redis-py client, whichever cachelib built it.

    ``cachelib.redis_base`` exists from 0.15 on only; before, RedisCache was the
    one class of the family. Checked: 0.9.0 to 0.17.0.
    """
    return issubclass(type(cache), _RedisFamily)


def is_valkey_cache(cache: Any) -> bool:
    """Whether ``cache`` is cachelib's ValkeyCache (0.14.0 on; absent before), or a
    subclass: the app names its server Valkey."""
    valkey_cache = getattr(cachelib, "ValkeyCache", None)
    return valkey_cache is not None and issubclass(type(cache), valkey_cache)


def has_redis_client(cache: Any) -> bool:
    """Whether ``cache`` carries a redis-py client the way cachelib's Redis caches do,
    even an object of a class cachectl does not know (a subclass, a look-alike).

    ``_write_client``: a class attribute of RedisCache (0.9.0-0.13.0) and of
    BaseRedisCache (0.15.0-0.17.0).
    """
    return static.read(cache, "_write_client", static.MISSING) is not static.MISSING


def redis_client(cache: Any) -> Any:
    """The redis-py client ``cache`` writes through.

    cachelib keeps a read client and a write client; they are the same object
    in every release (0.9.0-0.17.0 assign both from one value), and the write
    client is the one that is surely the primary, which an administrator must
    read from rather than a lagging replica.
    """
    return static.read(cache, "_write_client")


def redis_key_prefix(cache: Any) -> str:
    """The key prefix as the cache applies it right now.

    ``key_prefix`` is public but may be a callable from 0.12.0 on, resolved by the
    private ``_get_prefix()`` (absent before 0.12.0, where it is always a string).
    Resolved the same way here, so no private method is needed. Checked: 0.9.0 to
    0.17.0.
    """
    prefix = cache.key_prefix
    if callable(prefix):
        prefix = prefix()
    return prefix or ""


# --- FileSystemCache ----------------------------------------------------------------
# ``_path``, ``_threshold``, ``_hash_method``, ``_fs_count_file``, ``_get_filename``
# ``_mode`` and ``serializer``: unchanged in name and meaning from 0.9.0 to
# 0.17.0 (the default hash_method moved from md5 to sha256, which is why it is read).


def filesystem_directory(cache: Any) -> str:
    """CACHE_DIR of a FileSystemCache (``_path``, 0.9.0-0.17.0)."""
    return str(os.fspath(cache._path))


def filesystem_file_name(cache: Any, key: str) -> str:
    """The path of the file holding ``key`` (``_get_filename``, 0.9.0-0.17.0):
    CACHE_DIR joined with the hex digest of the key."""
    return str(cache._get_filename(key))


def filesystem_hash_method(cache: Any) -> Callable[..., Any]:
    """The hashlib constructor naming the files (``_hash_method``, 0.9.0-0.17.0)."""
    method: Callable[..., Any] = cache._hash_method
    return method


def filesystem_count_file_name(cache: Any) -> str:
    """The base name of the file where cachelib keeps its item counter: named like a
    key, but bookkeeping (``_fs_count_file``, "__wz_cache_count", 0.9.0-0.17.0)."""
    return os.path.basename(str(cache._get_filename(cache._fs_count_file)))


def filesystem_threshold(cache: Any) -> int:
    """CACHE_THRESHOLD; 0 means no counter is kept (``_threshold``, 0.9.0-0.17.0)."""
    return int(cache._threshold)


def set_filesystem_threshold(cache: Any, threshold: int) -> None:
    """Set CACHE_THRESHOLD after construction (``_threshold``, 0.9.0-0.17.0).

    Built with threshold 0, cachelib skips counting every file at start-up;
    with the real threshold set afterwards, sets still keep the app's counter and
    pruning right.
    """
    cache._threshold = threshold


def filesystem_mode(cache: Any) -> int:
    """The permission bits of cache files (``_mode``, 0.9.0-0.17.0; 0600 by default)."""
    return int(cache._mode)


def filesystem_serializer(cache: Any) -> Any:
    """What writes a value after the expiry header: ``serializer`` (public in 0.9.0-0.17.0),
    cachelib's pickle one or the app's CACHE_SERIALIZER."""
    return cache.serializer


# --- MemcachedCache ----------------------------------------------------------------


def memcached_client(cache: Any) -> Any:
    """What a MemcachedCache keeps in ``_client`` (0.9.0-0.17.0): the client object
    it was given, or that it built; from 0.15.0 on, for pylibmc and libmc, a pool of
    clients rather than a client (see ``memcached_client_context``). None when absent.
    """
    return static.read(cache, "_client")


def memcached_client_context(cache: Any) -> Callable[[], AbstractContextManager[Any]] | None:
    """The callable that lends one client of the pool for a ``with`` block
    (``_client_context``, added in 0.15.0; absent 0.9.0-0.14.0, hence None)."""
    found: Callable[[], AbstractContextManager[Any]] | None = static.read(cache, "_client_context")
    return found
