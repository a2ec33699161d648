"""Build the backend a cache's settings describe, the way Flask-Caching builds it.

Each cachelib object gets the arguments Flask-Caching's factory would give it,
plus the short timeouts an administration tool needs so a dead server fails
fast. Where a cache lives comes from the typed settings (``cachectl.config.settings``),
which hold every default; ``CACHE_TYPE`` names were resolved there too.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from cachectl.backends.base import CacheBackend
from cachectl.config.settings import (
    KNOWN_TYPES,
    CacheSettings,
    ClusterLocation,
    CustomLocation,
    DirectoryLocation,
    MemcachedLocation,
    RedisLocation,
    SentinelLocation,
)
from cachectl.errors import BackendError, ConfigError

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


_OPTIONS_REFUSED = "the client refuses an option of CACHE_OPTIONS or of the URL's query"


def _redis_options(options: Any, timeout: float, library: Any = None) -> dict[str, Any]:
    """CACHE_OPTIONS for the client (of ``library``, redis-py by default), with cachectl's
    own fail-fast timeouts."""
    import importlib

    name = getattr(library, "__name__", "redis")
    backoff = importlib.import_module(f"{name}.backoff")
    retry = importlib.import_module(f"{name}.retry")

    merged = dict(options)
    merged.update(
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # One attempt: --timeout is then the real bound on a dead server.
        retry=retry.Retry(backoff.NoBackoff(), 0),
    )
    return merged


def _redis_client(location: RedisLocation, timeout: float) -> Any:
    """A client of the library the location's family names (the valkey client for a
    Valkey server where installed, else redis-py: both speak the protocol)."""
    from cachectl.backends.redis_clients import client_library
    from cachectl.config.locations import redis_py_url

    library = client_library(location.family)
    options = _redis_options(location.options, timeout, library)
    try:
        if location.url:
            url = location.url if library.__name__ == "valkey" else redis_py_url(location.url)
            client = library.from_url(url, db=location.db, **options)
        else:
            client = library.Redis(
                host=location.host,
                port=location.port,
                db=location.db,
                password=location.password,
                **options,
            )
    except ValueError as exc:
        raise ConfigError(f"CACHE_REDIS_URL: {exc}") from exc
    except TypeError as exc:
        raise ConfigError(f"{location.describe()}: {_OPTIONS_REFUSED}: {exc}") from exc
    return client


def _redis_cache(client: Any, settings: CacheSettings, family: str | None = None) -> Any:
    """The cachelib cache the app would write through (for a CACHE_SERIALIZER): a
    ValkeyCache where the app names Valkey (given the client, of either library)."""
    import cachelib

    cache_class = getattr(cachelib, "ValkeyCache", None) if family == "valkey" else None
    return (cache_class or cachelib.RedisCache)(
        host=client,
        default_timeout=settings.default_timeout,
        key_prefix=settings.key_prefix or None,
    )


def _build_redis_family(location: Any, settings: CacheSettings, timeout: float) -> CacheBackend:
    """A Redis, Sentinel or Cluster cache. cachectl reads and writes cachelib's default
    format itself, so cachelib (which imports every backend it has) is loaded only when
    an app's CACHE_SERIALIZER must write."""
    if isinstance(location, SentinelLocation):
        client = _sentinel_client(location, timeout)
    elif isinstance(location, ClusterLocation):
        client = _cluster_client(location, timeout)
    else:
        client = _redis_client(location, timeout)
    family = getattr(location, "family", None)
    if settings.serializer is not None:
        return wrap_backend(_redis_cache(client, settings, family), settings)
    from cachectl.backends.redis import RedisBackend

    return RedisBackend.for_client(client, settings.key_prefix, settings.default_timeout, family)


def _sentinel_client(location: SentinelLocation, timeout: float) -> Any:
    from redis.sentinel import Sentinel

    options = _redis_options(location.options, timeout)
    sentinel_options = {
        k[len("sentinel_") :]: options.pop(k) for k in list(options) if k.startswith("sentinel_")
    }
    sentinel_options.setdefault("socket_timeout", timeout)
    sentinel_options.setdefault("socket_connect_timeout", timeout)
    # One attempt, as for the data connections: --timeout bounds a dead sentinel too.
    sentinel_options["retry"] = options["retry"]
    if location.sentinel_password:
        sentinel_options["password"] = location.sentinel_password
    sentinel = Sentinel(
        list(location.sentinels),
        password=location.password,
        db=location.db,
        sentinel_kwargs=sentinel_options,
        **options,
    )
    # Reads go to the master too: an administrator must not act on what a
    # lagging replica still shows.
    return sentinel.master_for(location.master)


def _cluster_client(location: ClusterLocation, timeout: float) -> Any:
    from redis.cluster import ClusterNode, RedisCluster

    from cachectl.config.locations import redis_py_url

    options = _redis_options(location.options, timeout)
    options.pop("retry")  # the cluster client retries per node by design
    try:
        if location.url:
            client = RedisCluster.from_url(redis_py_url(location.url), **options)
        else:
            nodes = [ClusterNode(host, port) for host, port in location.nodes]
            client = RedisCluster(startup_nodes=nodes, password=location.password, **options)
    except TypeError as exc:
        raise ConfigError(f"{location.describe()}: {_OPTIONS_REFUSED}: {exc}") from exc
    except Exception as exc:  # the cluster client connects at once to learn its nodes
        raise BackendError(f"{location.describe()}: {exc}") from exc
    return client


def _build_filesystem(
    location: DirectoryLocation, settings: CacheSettings, create_dir: bool
) -> Any:
    import cachelib

    from cachectl.backends.cachelib_access import set_filesystem_threshold

    directory = location.directory
    if not create_dir and not os.path.isdir(directory):
        raise ConfigError(f"CACHE_DIR {directory} does not exist or is not a directory")
    try:
        cache = cachelib.FileSystemCache(
            directory,
            # 0 at first: a threshold makes cachelib count every file at start-up.
            threshold=0,
            default_timeout=settings.default_timeout,
            mode=location.mode,
            hash_method=location.file_hash_method,
        )
    except OSError as exc:
        raise ConfigError(f"CACHE_DIR {directory}: {exc.strerror}") from exc
    # With the real threshold, sets keep the app's item counter and pruning right.
    set_filesystem_threshold(cache, location.threshold)
    return cache


def _build_memcached(location: MemcachedLocation, settings: CacheSettings, timeout: float) -> Any:
    import cachelib

    from cachectl.backends import memcached_clients

    servers = list(location.servers)
    if location.sasl:
        try:
            client = memcached_clients.pylibmc_client(
                servers, timeout, username=location.username, password=location.password
            )
        except ImportError as exc:
            raise ConfigError(
                f"{settings.cache_type} authenticates with SASL, which needs pylibmc: "
                "pip install pylibmc"
            ) from exc
    else:  # the library the app uses (memcache_client_lib, else cachelib's order)
        client = memcached_clients.build_client(servers, timeout, location.client_lib)
    return cachelib.MemcachedCache(
        client, default_timeout=settings.default_timeout, key_prefix=settings.key_prefix or None
    )


def _import_custom(path: str, setting: str = "CACHE_TYPE") -> Any:
    """The object a dotted CACHE_TYPE (or CACHE_SERIALIZER) names, imported as
    Flask-Caching would (the current directory first on sys.path, as ``flask --app``).

    Only ever for a name the operator gave: ``--config``, ``-o``, ``--type``, ``--env``
    or the app itself. A config file found by walking up from the current directory may
    not name code (``cachectl.config.sources`` refuses it, exit 2), or a module planted in the
    current directory would run as whoever runs cachectl."""
    from cachectl.runtime.importing import on_sys_path

    module_name, _, attribute = path.rpartition(".")
    try:
        with on_sys_path(os.getcwd()):
            return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"unknown {setting} {path!r}: cannot import it ({exc})") from exc


def _build_custom(location: CustomLocation, settings: CacheSettings) -> Any:
    """A ``cachelib.X`` class or a custom backend, called as Flask-Caching calls it."""
    args = list(location.args)
    options: dict[str, Any] = {"default_timeout": settings.default_timeout}
    options.update(location.options)
    cache_type = location.cache_type
    if cache_type.startswith("cachelib."):
        import cachelib

        factory = getattr(cachelib, cache_type.split(".", 1)[1], None)
        if factory is None:
            raise ConfigError(f"unknown CACHE_TYPE {cache_type!r}: cachelib has no such class")
        call = lambda: factory(*args, **options)  # noqa: E731
    else:
        factory = _import_custom(cache_type)
        factory = getattr(factory, "factory", factory)  # Flask-Caching style classes
        call = lambda: factory(None, dict(location.config), args, options)  # noqa: E731
    try:
        return call()
    except Exception as exc:
        raise ConfigError(
            f"CACHE_TYPE {cache_type} could not be created: {type(exc).__name__}: {exc}"
        ) from exc


def _serializer(settings: CacheSettings) -> Any:
    """The CACHE_SERIALIZER instance, or None for cachelib's default format."""
    value = settings.serializer
    if value is None:
        return None
    if isinstance(value, str):
        value = _import_custom(value, "CACHE_SERIALIZER")
    try:
        return value() if isinstance(value, type) else value
    except Exception as exc:
        raise ConfigError(f"CACHE_SERIALIZER {value!r} could not be created: {exc}") from exc


def wrap_backend(cache: Any, settings: CacheSettings, timeout: float = 5.0) -> CacheBackend:
    """The administration backend for a cachelib object, chosen by its family (each
    family's module imported only when it is the one: a Redis command loads no memcached
    client)."""
    import cachelib

    from cachectl.backends.cachelib_access import is_redis_cache
    from cachectl.backends.generic import GenericBackend

    serializer = _serializer(settings)
    if serializer is not None and hasattr(cache, "serializer"):
        cache.serializer = serializer  # as Flask-Caching 2.5 applies CACHE_SERIALIZER
    if is_redis_cache(cache):
        from cachectl.backends.redis import RedisBackend

        return RedisBackend.for_cachelib(cache, serializer)
    if isinstance(cache, cachelib.FileSystemCache):
        from cachectl.backends.filesystem import FileSystemBackend

        generation = settings.generation
        return FileSystemBackend(cache, serializer, generation.file_format, generation)
    if isinstance(cache, cachelib.MemcachedCache):
        from cachectl.backends.memcached import MemcachedBackend

        location = settings.location
        servers = list(location.servers) if isinstance(location, MemcachedLocation) else []
        chunked = isinstance(location, MemcachedLocation) and location.chunked
        # A SASL type without a username talks to a server without SASL, which also
        # speaks the text protocol (mg, the LRU crawler): only credentials make it SASL.
        sasl = isinstance(location, MemcachedLocation) and location.sasl and bool(location.username)
        return MemcachedBackend(cache, servers, chunked=chunked, sasl=sasl, timeout=timeout)
    for in_process in (cachelib.SimpleCache, cachelib.NullCache):
        if isinstance(cache, in_process):
            raise ConfigError(IN_PROCESS_HELP[in_process.__name__] + SWITCH_ADVICE)
    return GenericBackend(cache)


def build_backend(
    settings: CacheSettings,
    timeout: float = 5.0,
    create_dir: bool = False,
    app_built: Any = None,
) -> CacheBackend:
    """Connect to the cache ``settings`` describe (nothing is sent to the server yet).

    ``app_built`` is a backend object a loaded app built from a class cachectl
    cannot rebuild (a custom backend): how it connects only it knows, so it is used.
    """
    if not settings.cache_type:
        raise ConfigError("CACHE_TYPE is not set: " + IN_PROCESS_HELP["NullCache"] + SWITCH_ADVICE)
    short = settings.cache_type.removeprefix("cachelib.")
    if short in IN_PROCESS_HELP:
        raise ConfigError(IN_PROCESS_HELP[short] + SWITCH_ADVICE)
    if app_built is not None:
        return wrap_backend(app_built, settings, timeout)
    location = settings.location
    if isinstance(location, (RedisLocation, SentinelLocation, ClusterLocation)):
        return _build_redis_family(location, settings, timeout)
    if isinstance(location, DirectoryLocation):
        cache = _build_filesystem(location, settings, create_dir)
    elif isinstance(location, MemcachedLocation):
        cache = _build_memcached(location, settings, timeout)
    elif isinstance(location, CustomLocation):
        cache = _build_custom(location, settings)
    else:
        raise ConfigError(
            f"unknown CACHE_TYPE {settings.cache_type!r} "
            f"(Flask-Caching knows {', '.join(KNOWN_TYPES)})"
        )
    return wrap_backend(cache, settings, timeout)
