"""Build the backend a configuration describes, the way Flask-Caching builds it.

``CACHE_TYPE`` is resolved as Flask-Caching resolves it (2.5 names, the legacy
lowercase aliases, ``cachelib.X``, a dotted path to a custom class), and each
cachelib object gets the arguments Flask-Caching's factory would give it, plus
the short timeouts an administration tool needs so a dead server fails fast.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import cachelib
from cachelib.redis_base import BaseRedisCache

from cachectl.backends.base import CacheBackend
from cachectl.backends.generic import GenericBackend
from cachectl.config import CacheSettings
from cachectl.errors import BackendError, ConfigError
from cachectl.generations import LEGACY

#: Legacy (Flask-Caching < 2.5) lowercase names of the built-in backends.
LEGACY_ALIASES = {
    "redis": "RedisCache",
    "redissentinel": "RedisSentinelCache",
    "rediscluster": "RedisClusterCache",
    "filesystem": "FileSystemCache",
    "memcached": "MemcachedCache",
    "gaememcached": "MemcachedCache",
    "saslmemcached": "SASLMemcachedCache",
    "spreadsaslmemcached": "SpreadSASLMemcachedCache",
    "simple": "SimpleCache",
    "null": "NullCache",
    "uwsgi": "UWSGICache",
}

IN_PROCESS_HELP = {
    "SimpleCache": (
        "SimpleCache keeps its entries in the memory of the app's own process: no "
        "outside tool can reach them, and with several workers (gunicorn -w 4) each "
        "worker even has a cache of its own"
    ),
    "UWSGICache": (
        "UWSGICache lives inside the uWSGI server process and is reachable only from "
        "code running in it"
    ),
    "NullCache": (
        "NullCache stores nothing (it is also what Flask-Caching uses when CACHE_TYPE "
        "is not set), so there is no cache to administer"
    ),
}
SWITCH_ADVICE = (
    "; to administer the cache from outside, switch the app to RedisCache, "
    "MemcachedCache or FileSystemCache"
)


def canonical_cache_type(cache_type: str) -> str:
    """``RedisCache`` for ``redis``, ``flask_caching.backends.RedisCache`` and the like."""
    name = cache_type.strip()
    if name in LEGACY_ALIASES:
        return LEGACY_ALIASES[name]
    for module_prefix in ("flask_caching.backends.",):
        if name.startswith(module_prefix):
            return name.rsplit(".", 1)[-1]
    return name


def _redis_options(settings: CacheSettings, timeout: float) -> dict[str, Any]:
    """CACHE_OPTIONS for the client, with cachectl's own fail-fast timeouts."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    options = dict(settings.get("CACHE_OPTIONS") or {})
    options.update(
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # One attempt: --timeout is then the real bound on a dead server.
        retry=Retry(NoBackoff(), 0),
    )
    return options


def _prefix(settings: CacheSettings) -> Any:
    return settings.get("CACHE_KEY_PREFIX") or None


def _build_redis(settings: CacheSettings, timeout: float) -> Any:
    import redis

    options = _redis_options(settings, timeout)
    url = settings.get("CACHE_REDIS_URL")
    if url:
        try:
            client = redis.from_url(url, db=settings.get("CACHE_REDIS_DB", 0), **options)
        except ValueError as exc:
            raise ConfigError(f"CACHE_REDIS_URL: {exc}") from exc
    else:
        client = redis.Redis(
            host=settings.get("CACHE_REDIS_HOST", "localhost"),
            port=settings.get("CACHE_REDIS_PORT", 6379),
            db=settings.get("CACHE_REDIS_DB", 0),
            password=settings.get("CACHE_REDIS_PASSWORD") or None,
            **options,
        )
    return cachelib.RedisCache(
        host=client, default_timeout=settings["CACHE_DEFAULT_TIMEOUT"], key_prefix=_prefix(settings)
    )


def _sentinel_addresses(value: Any) -> list[tuple[str, int]]:
    addresses = []
    for entry in value or [("127.0.0.1", 26379)]:
        if isinstance(entry, str):
            host, _, port = entry.rpartition(":")
            entry = (host, port)
        try:
            host, port = entry
            addresses.append((str(host), int(port)))
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"CACHE_REDIS_SENTINELS: {entry!r} is not a (host, port) pair"
            ) from exc
    return addresses


def _build_sentinel(settings: CacheSettings, timeout: float) -> Any:
    from redis.sentinel import Sentinel

    options = _redis_options(settings, timeout)
    sentinel_options = {
        k[len("sentinel_") :]: options.pop(k) for k in list(options) if k.startswith("sentinel_")
    }
    sentinel_options.setdefault("socket_timeout", timeout)
    sentinel_options.setdefault("socket_connect_timeout", timeout)
    if settings.get("CACHE_REDIS_SENTINEL_PASSWORD"):
        sentinel_options["password"] = settings["CACHE_REDIS_SENTINEL_PASSWORD"]
    sentinel = Sentinel(
        _sentinel_addresses(settings.get("CACHE_REDIS_SENTINELS")),
        password=settings.get("CACHE_REDIS_PASSWORD") or None,
        db=settings.get("CACHE_REDIS_DB", 0),
        sentinel_kwargs=sentinel_options,
        **options,
    )
    # Reads go to the master too: an administrator must not act on what a
    # lagging replica still shows.
    master = sentinel.master_for(settings.get("CACHE_REDIS_SENTINEL_MASTER", "mymaster"))
    return cachelib.RedisCache(
        host=master, default_timeout=settings["CACHE_DEFAULT_TIMEOUT"], key_prefix=_prefix(settings)
    )


def _build_cluster(settings: CacheSettings, timeout: float) -> Any:
    from redis.cluster import ClusterNode, RedisCluster

    options = _redis_options(settings, timeout)
    options.pop("retry")  # the cluster client retries per node by design
    url = settings.get("CACHE_REDIS_URL")
    if url:
        client = RedisCluster.from_url(url, **options)
    else:
        nodes = []
        for address in (settings.get("CACHE_REDIS_CLUSTER") or "").split(","):
            host, _, port = address.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(
                    "CACHE_REDIS_CLUSTER must list host:port pairs separated by commas, "
                    f"not {settings.get('CACHE_REDIS_CLUSTER')!r}"
                )
            nodes.append(ClusterNode(host, int(port)))
        try:
            client = RedisCluster(
                startup_nodes=nodes,
                password=settings.get("CACHE_REDIS_PASSWORD") or None,
                **options,
            )
        except Exception as exc:
            raise BackendError(
                f"redis cluster {settings.get('CACHE_REDIS_CLUSTER')}: {exc}"
            ) from exc
    return cachelib.RedisCache(
        host=client, default_timeout=settings["CACHE_DEFAULT_TIMEOUT"], key_prefix=_prefix(settings)
    )


def _file_hash_method(settings: CacheSettings) -> Any:
    options = settings.get("CACHE_OPTIONS") or {}
    if settings.generation.name == LEGACY:
        # Legacy Flask-Caching never read CACHE_FILE_HASH_METHOD: the class default
        # (md5) applies unless CACHE_OPTIONS passes hash_method to the class.
        return options.get("hash_method", settings.generation.file_hash_method)
    return settings["CACHE_FILE_HASH_METHOD"]


def _build_filesystem(settings: CacheSettings, timeout: float, create_dir: bool = False) -> Any:
    directory = settings.get("CACHE_DIR")
    if not directory:
        raise ConfigError("FileSystemCache needs CACHE_DIR (--dir)")
    directory = os.fspath(directory)
    if not create_dir and not os.path.isdir(directory):
        raise ConfigError(f"CACHE_DIR {directory} does not exist or is not a directory")
    options = settings.get("CACHE_OPTIONS") or {}
    try:
        cache = cachelib.FileSystemCache(
            directory,
            # 0 at first: a threshold makes cachelib count every file at start-up.
            threshold=0,
            default_timeout=settings["CACHE_DEFAULT_TIMEOUT"],
            mode=options.get("mode", 0o600),
            hash_method=_file_hash_method(settings),
        )
    except OSError as exc:
        raise ConfigError(f"CACHE_DIR {directory}: {exc.strerror}") from exc
    # With the real threshold, sets keep the app's item counter and pruning right.
    cache._threshold = settings["CACHE_THRESHOLD"]
    return cache


def _memcached_servers(settings: CacheSettings) -> list[str]:
    servers = settings.get("CACHE_MEMCACHED_SERVERS") or ["127.0.0.1:11211"]
    return [str(server) for server in servers]


def _build_memcached(settings: CacheSettings, timeout: float) -> Any:
    from cachectl.backends import memcached

    servers = _memcached_servers(settings)
    try:
        import pylibmc  # noqa: F401  # cachelib prefers it, so the app does too
    except ImportError:
        try:
            client = memcached.python_memcached_client(servers, timeout)
        except ImportError as exc:
            raise ConfigError(
                "MemcachedCache needs a memcached client: pip install 'flask-cachectl[memcached]'"
            ) from exc
    else:
        client = memcached.pylibmc_client(servers, timeout)
    return cachelib.MemcachedCache(
        client, default_timeout=settings["CACHE_DEFAULT_TIMEOUT"], key_prefix=_prefix(settings)
    )


def _build_sasl_memcached(settings: CacheSettings, timeout: float) -> Any:
    from cachectl.backends import memcached

    try:
        client = memcached.pylibmc_client(
            _memcached_servers(settings),
            timeout,
            username=settings.get("CACHE_MEMCACHED_USERNAME"),
            password=settings.get("CACHE_MEMCACHED_PASSWORD"),
        )
    except ImportError as exc:
        raise ConfigError(
            f"{settings['CACHE_TYPE']} authenticates with SASL, which needs pylibmc: "
            "pip install pylibmc"
        ) from exc
    return cachelib.MemcachedCache(
        client, default_timeout=settings["CACHE_DEFAULT_TIMEOUT"], key_prefix=_prefix(settings)
    )


_BUILDERS = {
    "RedisCache": _build_redis,
    "RedisSentinelCache": _build_sentinel,
    "RedisClusterCache": _build_cluster,
    "FileSystemCache": _build_filesystem,
    "MemcachedCache": _build_memcached,
    "SASLMemcachedCache": _build_sasl_memcached,
    "SpreadSASLMemcachedCache": _build_sasl_memcached,
}


def _import_custom(path: str) -> Any:
    """The object a dotted CACHE_TYPE names, imported as Flask-Caching would
    (the current directory first on sys.path, as ``flask --app`` has it)."""
    module_name, _, attribute = path.rpartition(".")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"unknown CACHE_TYPE {path!r}: cannot import it ({exc})") from exc


def _build_custom(cache_type: str, settings: CacheSettings) -> Any:
    """A ``cachelib.X`` class or a custom backend, called as Flask-Caching calls it."""
    args = list(settings.get("CACHE_ARGS") or [])
    options = {"default_timeout": settings["CACHE_DEFAULT_TIMEOUT"]}
    options.update(settings.get("CACHE_OPTIONS") or {})
    if cache_type.startswith("cachelib."):
        factory = getattr(cachelib, cache_type.split(".", 1)[1], None)
        if factory is None:
            raise ConfigError(f"unknown CACHE_TYPE {cache_type!r}: cachelib has no such class")
        call = lambda: factory(*args, **options)  # noqa: E731
    else:
        factory = _import_custom(cache_type)
        factory = getattr(factory, "factory", factory)  # Flask-Caching style classes
        call = lambda: factory(None, dict(settings.values), args, options)  # noqa: E731
    try:
        return call()
    except Exception as exc:
        raise ConfigError(
            f"CACHE_TYPE {cache_type} could not be created: {type(exc).__name__}: {exc}"
        ) from exc


def _serializer(settings: CacheSettings) -> Any:
    """The CACHE_SERIALIZER instance, or None for cachelib's default format."""
    value = settings.get("CACHE_SERIALIZER")
    if value is None:
        return None
    if isinstance(value, str):
        value = _import_custom(value)
    return value() if isinstance(value, type) else value


def wrap_backend(cache: Any, settings: CacheSettings) -> CacheBackend:
    """The administration backend for a cachelib object, chosen by its family."""
    from cachectl.backends.filesystem import FileSystemBackend
    from cachectl.backends.memcached import MemcachedBackend
    from cachectl.backends.redis import RedisBackend

    serializer = _serializer(settings)
    if serializer is not None and hasattr(cache, "serializer"):
        cache.serializer = serializer  # as Flask-Caching 2.5 applies CACHE_SERIALIZER
    if isinstance(cache, BaseRedisCache):
        return RedisBackend(cache, serializer)
    if isinstance(cache, cachelib.FileSystemCache):
        return FileSystemBackend(cache, serializer)
    if isinstance(cache, cachelib.MemcachedCache):
        chunked = canonical_cache_type(settings["CACHE_TYPE"]) == "SpreadSASLMemcachedCache"
        return MemcachedBackend(cache, _memcached_servers(settings), chunked=chunked)
    for in_process in (cachelib.SimpleCache, cachelib.NullCache):
        if isinstance(cache, in_process):
            raise ConfigError(IN_PROCESS_HELP[in_process.__name__] + SWITCH_ADVICE)
    return GenericBackend(cache)


def build_backend(
    settings: CacheSettings, timeout: float = 5.0, create_dir: bool = False
) -> CacheBackend:
    """Connect to the cache ``settings`` describe (nothing is sent to the server yet)."""
    if not settings.get("CACHE_TYPE"):
        raise ConfigError("CACHE_TYPE is not set: " + IN_PROCESS_HELP["NullCache"] + SWITCH_ADVICE)
    cache_type = canonical_cache_type(str(settings["CACHE_TYPE"]))
    short = cache_type.removeprefix("cachelib.")
    if short in IN_PROCESS_HELP:
        raise ConfigError(IN_PROCESS_HELP[short] + SWITCH_ADVICE)
    if settings.live_backend is not None:
        # A custom backend class of a loaded app: how it connects is known only to
        # the object the app built, so that object itself is used.
        return wrap_backend(settings.live_backend, settings)
    if cache_type in _BUILDERS:
        if cache_type == "FileSystemCache":
            cache = _build_filesystem(settings, timeout, create_dir)
        else:
            cache = _BUILDERS[cache_type](settings, timeout)
    elif "." in cache_type:
        cache = _build_custom(cache_type, settings)
    else:
        known = ", ".join([*_BUILDERS, *IN_PROCESS_HELP])
        raise ConfigError(f"unknown CACHE_TYPE {cache_type!r} (Flask-Caching knows {known})")
    return wrap_backend(cache, settings)
