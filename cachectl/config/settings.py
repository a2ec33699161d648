"""One cache's settings as a typed, immutable record, with every default in one place.

Sources (files, the environment, a live app) speak Flask-Caching's ``CACHE_*``
names, and ``cachectl.config.resolve`` merges them with the provenance ``config`` shows.
Everything downstream (the backend factory, the operations) reads this record
instead: a setting's type, default and meaning are decided once, here, so the
factory holds no hard-coded address and no command reads a ``CACHE_*`` string.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from cachectl.config.constants import HASH_METHOD_NAMES, MAX_TIMEOUT
from cachectl.config.generations import LEGACY, Generation
from cachectl.config.locations import (
    VALKEY_CACHE,
    ClusterLocation,
    CustomLocation,
    DirectoryLocation,
    Location,
    MemcachedLocation,
    RedisLocation,
    SentinelLocation,
    checked_host,
    checked_servers,
    checked_url,
    cluster_nodes,
    sentinel_addresses,
    url_family,
    valkey_arguments,
)
from cachectl.errors import ConfigError
from cachectl.runtime.secrets import (
    display_value,
    is_secret,
    secret_text,
    secret_type_problem,
)

#: Re-exported: the backends and operations read the location records from here.
__all__ = [
    "CacheSettings",
    "ClusterLocation",
    "CustomLocation",
    "DirectoryLocation",
    "Location",
    "MemcachedLocation",
    "RedisLocation",
    "SentinelLocation",
]

# --- Flask-Caching's defaults, all of them ---------------------------------------------

DEFAULT_KEY_PREFIX = "flask_cache_"
DEFAULT_TIMEOUT = 300
DEFAULT_THRESHOLD = 500
DEFAULT_REDIS_HOST = "localhost"
DEFAULT_REDIS_PORT = 6379
DEFAULT_REDIS_DB = 0
DEFAULT_SENTINEL_MASTER = "mymaster"
DEFAULT_MEMCACHED_SERVERS = ("127.0.0.1:11211",)
DEFAULT_FILE_MODE = 0o600

#: The settings cachectl reads, with the types Flask-Caching expects of them.
SETTING_TYPES: dict[str, tuple[type, ...]] = {
    "CACHE_TYPE": (str,),
    "CACHE_KEY_PREFIX": (str,),
    "CACHE_DEFAULT_TIMEOUT": (int,),
    "CACHE_THRESHOLD": (int,),
    "CACHE_DIR": (str, os.PathLike),
    "CACHE_ARGS": (list, tuple),
    "CACHE_OPTIONS": (dict,),
    "CACHE_REDIS_URL": (str,),
    "CACHE_REDIS_HOST": (str,),
    "CACHE_REDIS_PORT": (int,),
    "CACHE_REDIS_DB": (int,),
    "CACHE_REDIS_PASSWORD": (str,),
    "CACHE_REDIS_SENTINELS": (list, tuple),
    "CACHE_REDIS_SENTINEL_MASTER": (str,),
    "CACHE_REDIS_SENTINEL_PASSWORD": (str,),
    "CACHE_REDIS_CLUSTER": (str,),
    "CACHE_MEMCACHED_SERVERS": (list, tuple),
    "CACHE_MEMCACHED_USERNAME": (str,),
    "CACHE_MEMCACHED_PASSWORD": (str,),
    "CACHE_HASH_METHOD": (str,),
    "CACHE_FILE_HASH_METHOD": (str,),
    "CACHE_SERIALIZER": (object,),  # a dotted name, a class or an instance
    "CACHE_SOURCE_CHECK": (bool,),
    "CACHE_IGNORE_ERRORS": (bool,),
    "CACHE_NO_NULL_WARNING": (bool,),
    "CACHE_ENABLE_SIGNALS": (bool,),
}
#: The settings that hold a credential: a value of the wrong type is refused by a message
#: that names the setting, never the value (``secrets.secret_type_problem``).
SECRET_SETTINGS = frozenset(name for name in SETTING_TYPES if is_secret(name))
#: Settings a live app may hand over as Python objects rather than plain data.
_OBJECT_SETTINGS = {"CACHE_SERIALIZER", "CACHE_HASH_METHOD", "CACHE_FILE_HASH_METHOD"}

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
IN_PROCESS_TYPES = ("SimpleCache", "UWSGICache", "NullCache")
KNOWN_TYPES = (
    "RedisCache",
    "RedisSentinelCache",
    "RedisClusterCache",
    "FileSystemCache",
    "MemcachedCache",
    "SASLMemcachedCache",
    "SpreadSASLMemcachedCache",
    *IN_PROCESS_TYPES,
)


def generation_defaults(generation: Generation) -> dict[str, Any]:
    """The ``CACHE_*`` defaults ``config`` shows for what no source set."""
    return {
        "CACHE_KEY_PREFIX": DEFAULT_KEY_PREFIX,
        "CACHE_DEFAULT_TIMEOUT": DEFAULT_TIMEOUT,
        "CACHE_THRESHOLD": DEFAULT_THRESHOLD,
        "CACHE_HASH_METHOD": generation.hash_method,
        "CACHE_FILE_HASH_METHOD": generation.file_hash_method,
    }


def canonical_cache_type(cache_type: str) -> str:
    """``RedisCache`` for ``redis``, ``flask_caching.backends.RedisCache`` and the like."""
    name = cache_type.strip()
    if name in LEGACY_ALIASES:
        return LEGACY_ALIASES[name]
    if name.startswith("flask_caching.backends."):
        return name.rsplit(".", 1)[-1]
    return name


def resolve_hash_method(name: str, value: Any) -> Callable[..., Any]:
    """A hashlib constructor from a name (``"md5"``) or the constructor itself."""
    if callable(value):
        given: Callable[..., Any] = value
        return given
    if isinstance(value, str) and value.lower().removeprefix("hashlib.") in HASH_METHOD_NAMES:
        constructor: Callable[..., Any] = getattr(hashlib, value.lower().removeprefix("hashlib."))
        return constructor
    raise ConfigError(f"{name} must be one of {', '.join(HASH_METHOD_NAMES)}, not {value!r}")


def check_types(values: Mapping[str, Any], sources: Mapping[str, str]) -> list[str]:
    """Refuse a value of the wrong type (exit 2, naming its source, never quoting a
    credential); warn about names cachectl does not read."""
    warnings = []
    for name, value in values.items():
        expected = SETTING_TYPES.get(name)
        if expected is None:
            warnings.append(f"{name} (from {sources.get(name)}) is not a setting cachectl knows")
            continue
        if value is None or name in _OBJECT_SETTINGS:
            continue
        if name in SECRET_SETTINGS:
            problem = secret_type_problem(value)
            if problem is not None:
                raise ConfigError(f"{name} (from {sources.get(name)}) must be a string ({problem})")
            continue
        if name == "CACHE_KEY_PREFIX" and callable(value):
            continue
        wrong_bool = isinstance(value, bool) and bool not in expected
        if wrong_bool or not isinstance(value, expected):
            wanted = " or ".join(t.__name__ for t in expected)
            raise ConfigError(
                f"{name} (from {sources.get(name)}) must be {wanted}, "
                f"not {type(value).__name__} {display_value(name, value)}"
            )
        if (
            name in ("CACHE_DEFAULT_TIMEOUT", "CACHE_THRESHOLD")
            and isinstance(value, int)
            and value < 0
        ):
            raise ConfigError(f"{name} (from {sources.get(name)}) must not be negative")
        if name == "CACHE_DEFAULT_TIMEOUT" and isinstance(value, int) and value > MAX_TIMEOUT:
            raise ConfigError(
                f"{name} (from {sources.get(name)}) must be at most {MAX_TIMEOUT} seconds"
            )
    return warnings


def _location(
    cache_type: str, values: Mapping[str, Any], generation: Generation
) -> Location | None:
    """Where a cache of ``cache_type`` lives, from its settings and the defaults."""
    get = values.get
    options = dict(get("CACHE_OPTIONS") or {})
    for name in ("socket_timeout", "socket_connect_timeout"):
        value = options.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(f"CACHE_OPTIONS {name} must be a number of seconds, not {value!r}")
    db = get("CACHE_REDIS_DB", DEFAULT_REDIS_DB)
    password = secret_text(get("CACHE_REDIS_PASSWORD")) or None
    if cache_type == "RedisCache":
        host = get("CACHE_REDIS_HOST", DEFAULT_REDIS_HOST)
        port = get("CACHE_REDIS_PORT", DEFAULT_REDIS_PORT)
        url = get("CACHE_REDIS_URL") or None
        if url is not None:
            checked_url(url)
        elif not host or not 0 < port < 65536:
            raise ConfigError(f"CACHE_REDIS_HOST/PORT {host!r}:{port} names no server")
        else:
            checked_host(host, "CACHE_REDIS_HOST")
        return RedisLocation(url, host, port, db, password, options, url_family(url))
    if cache_type == VALKEY_CACHE:
        return valkey_arguments(get("CACHE_ARGS"), options).location
    if cache_type == "RedisSentinelCache":
        if not get("CACHE_REDIS_SENTINELS"):
            # Flask-Caching would try 127.0.0.1:26379: almost surely not what was meant.
            raise ConfigError("RedisSentinelCache needs CACHE_REDIS_SENTINELS (host, port pairs)")
        return SentinelLocation(
            sentinel_addresses(get("CACHE_REDIS_SENTINELS")),
            get("CACHE_REDIS_SENTINEL_MASTER", DEFAULT_SENTINEL_MASTER),
            db,
            password,
            secret_text(get("CACHE_REDIS_SENTINEL_PASSWORD")) or None,
            options,
        )
    if cache_type == "RedisClusterCache":
        url = get("CACHE_REDIS_URL") or None
        nodes = () if url else cluster_nodes(get("CACHE_REDIS_CLUSTER") or "")
        if url is not None:
            checked_url(url)
        return ClusterLocation(url, nodes, password, options)
    if cache_type in ("MemcachedCache", "SASLMemcachedCache", "SpreadSASLMemcachedCache"):
        given = get("CACHE_MEMCACHED_SERVERS")
        servers = checked_servers(DEFAULT_MEMCACHED_SERVERS if given is None else given)
        return MemcachedLocation(
            servers,
            get("CACHE_MEMCACHED_USERNAME"),
            secret_text(get("CACHE_MEMCACHED_PASSWORD")),
            sasl=cache_type != "MemcachedCache",
            chunked=cache_type == "SpreadSASLMemcachedCache",
            client_lib=options.get("memcache_client_lib"),
        )
    if cache_type == "FileSystemCache":
        directory = get("CACHE_DIR")
        if not directory:
            raise ConfigError("FileSystemCache needs CACHE_DIR (--dir)")
        unknown = sorted(set(options) - {"mode", "hash_method"})
        if unknown:
            raise ConfigError(
                f"CACHE_OPTIONS {', '.join(unknown)}: FileSystemCache takes only mode and "
                "hash_method"
            )
        if "\x00" in os.fspath(directory):
            raise ConfigError(f"CACHE_DIR {os.fspath(directory)!r} contains a NUL character")
        mode = options.get("mode", DEFAULT_FILE_MODE)
        if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o777:
            raise ConfigError(f"CACHE_OPTIONS mode must be a file mode such as 0o600, not {mode!r}")
        if generation.name == LEGACY:
            # Legacy Flask-Caching never read CACHE_FILE_HASH_METHOD: the class default
            # (md5) applies unless CACHE_OPTIONS passes hash_method to the class.
            file_hash = options.get("hash_method", generation.file_hash_method)
        else:
            file_hash = get("CACHE_FILE_HASH_METHOD", generation.file_hash_method)
        return DirectoryLocation(
            os.fspath(directory),
            get("CACHE_THRESHOLD", DEFAULT_THRESHOLD),
            mode,
            file_hash,
        )
    if "." in cache_type:
        return CustomLocation(cache_type, tuple(get("CACHE_ARGS") or ()), options, dict(values))
    return None


class CacheSettings(NamedTuple):
    """What the backend factory and the operations need to know about one cache."""

    #: The name the cache was picked by (``default``, a file's table, an app's label).
    name: str
    #: Canonical CACHE_TYPE (``RedisCache``, ``cachelib.X``, a dotted path), or None.
    cache_type: str | None
    key_prefix: str
    default_timeout: int
    hash_method: Callable[..., Any]
    serializer: Any
    source_check: bool
    generation: Generation
    #: Where it lives; None for an in-process or unknown type (the factory says why).
    location: Location | None

    @classmethod
    def from_values(
        cls, name: str, values: Mapping[str, Any], generation: Generation
    ) -> CacheSettings:
        """The record for merged ``CACHE_*`` values (defaults not yet applied are)."""
        raw_type = values.get("CACHE_TYPE")
        cache_type = canonical_cache_type(str(raw_type)) if raw_type else None
        if cache_type and "." not in cache_type and cache_type not in KNOWN_TYPES:
            raise ConfigError(
                f"unknown CACHE_TYPE {cache_type!r} (Flask-Caching knows {', '.join(KNOWN_TYPES)})"
            )
        prefix_text = values.get("CACHE_KEY_PREFIX")
        if isinstance(prefix_text, str):
            try:
                prefix_text.encode("utf-8")
            except UnicodeEncodeError:
                raise ConfigError(f"CACHE_KEY_PREFIX {prefix_text!r} is not valid UTF-8") from None
        location = _location(cache_type, values, generation) if cache_type else None
        prefix = values.get("CACHE_KEY_PREFIX")
        return cls(
            name=name,
            cache_type=cache_type,
            key_prefix=DEFAULT_KEY_PREFIX if prefix is None else prefix,
            default_timeout=values.get("CACHE_DEFAULT_TIMEOUT", DEFAULT_TIMEOUT),
            hash_method=resolve_hash_method(
                "CACHE_HASH_METHOD", values.get("CACHE_HASH_METHOD") or generation.hash_method
            ),
            serializer=values.get("CACHE_SERIALIZER"),
            source_check=bool(values.get("CACHE_SOURCE_CHECK", False)),
            generation=generation,
            location=location,
        )

    def describe_location(self) -> str:
        """Where the settings say the cache lives, credentials masked, without connecting."""
        return self.location.describe() if self.location else str(self.cache_type)
