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
from types import MappingProxyType
from typing import Any, NamedTuple, Union
from urllib.parse import urlsplit

from cachectl.config.constants import HASH_METHOD_NAMES, MAX_TIMEOUT
from cachectl.config.generations import LEGACY, Generation
from cachectl.errors import ConfigError
from cachectl.runtime.secrets import (
    display_value,
    is_secret,
    mask_url,
    secret_text,
    secret_type_problem,
)

# --- Flask-Caching's defaults, all of them ---------------------------------------------

DEFAULT_KEY_PREFIX = "flask_cache_"
DEFAULT_TIMEOUT = 300
DEFAULT_THRESHOLD = 500
DEFAULT_REDIS_HOST = "localhost"
DEFAULT_REDIS_PORT = 6379
DEFAULT_REDIS_DB = 0
DEFAULT_SENTINELS = (("127.0.0.1", 26379),)
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


def _checked_url(url: str, setting: str = "CACHE_REDIS_URL") -> str:
    """Refuse a Redis URL that names no server: redis-py would fall back to
    localhost:6379, and act on whatever listens there."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{setting} {mask_url(url)!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(
            f"{setting} {mask_url(url)!r}: the scheme must be redis://, rediss:// or unix://"
        )
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigError(f"{setting} {mask_url(url)!r} names no socket path")
        return url
    if not parts.hostname or port == 0 or parts.netloc.endswith(":"):
        raise ConfigError(f"{setting} {mask_url(url)!r} names no server (host and port)")
    _checked_host(parts.hostname, setting)
    database = parts.path.strip("/")
    if database and not database.isdigit():
        raise ConfigError(f"{setting} {mask_url(url)!r}: the database must be a number")
    return url


def _checked_host(host: str, setting: str) -> str:
    """A host name DNS could answer for: no blanks, labels of 63 characters at most."""
    labels = host.strip("[]").split(".")
    if not host or any(ch.isspace() for ch in host) or len(host) > 253:
        raise ConfigError(f"{setting}: {host!r} is not a host name")
    if any(len(label) > 63 for label in labels):
        raise ConfigError(f"{setting}: {host!r} has a label over 63 characters")
    return host


def _checked_servers(servers: Any) -> tuple[str, ...]:
    """memcached addresses as the clients take them (``host:port``, ``host``, a unix
    socket); anything else would be read as some other address, or the default."""
    if isinstance(servers, str) or not servers:
        raise ConfigError("CACHE_MEMCACHED_SERVERS must list at least one host:port")
    checked = []
    for server in servers:
        if not isinstance(server, str) or not server.strip():
            raise ConfigError(f"CACHE_MEMCACHED_SERVERS: {server!r} is not host:port")
        if "@" in server:
            raise ConfigError(
                "CACHE_MEMCACHED_SERVERS: put credentials in CACHE_MEMCACHED_USERNAME and "
                "CACHE_MEMCACHED_PASSWORD, not in the address"
            )
        if not server.startswith(("unix:", "/")):
            host, sep, port = server.rpartition(":")
            if not sep:
                host, port = server, "11211"
            if not (port.isdigit() and 0 < int(port) < 65536):
                raise ConfigError(f"CACHE_MEMCACHED_SERVERS: {server!r} is not host:port")
            _checked_host(host, "CACHE_MEMCACHED_SERVERS")
        checked.append(server)
    return tuple(checked)


# --- where a cache lives ---------------------------------------------------------------
# The records are NamedTuples rather than frozen dataclasses: as immutable, and several
# times cheaper to define, which every command pays at start-up (bench/startup_bench.py).

_NO_OPTIONS: Mapping[str, Any] = MappingProxyType({})


class RedisLocation(NamedTuple):
    url: str | None
    host: str
    port: int
    db: int
    password: str | None
    #: CACHE_OPTIONS: keyword arguments of the redis-py client, as Flask-Caching passes them.
    options: Mapping[str, Any] = _NO_OPTIONS

    def describe(self) -> str:
        if self.url:
            return mask_url(self.url)
        if self.options.get("unix_socket_path"):
            return f"unix://{self.options['unix_socket_path']}?db={self.db}"
        scheme = "rediss" if self.options.get("ssl") else "redis"
        return f"{scheme}://{self.host}:{self.port}/{self.db}"


class SentinelLocation(NamedTuple):
    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int
    password: str | None
    sentinel_password: str | None
    options: Mapping[str, Any] = _NO_OPTIONS

    def describe(self) -> str:
        via = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        return f"sentinel master {self.master} via {via}, db {self.db}"


class ClusterLocation(NamedTuple):
    url: str | None
    nodes: tuple[tuple[str, int], ...]
    password: str | None
    options: Mapping[str, Any] = _NO_OPTIONS

    def describe(self) -> str:
        if self.url:
            return f"redis cluster {mask_url(self.url)}"
        return "redis cluster " + ",".join(f"{host}:{port}" for host, port in self.nodes)


class MemcachedLocation(NamedTuple):
    servers: tuple[str, ...]
    username: str | None = None
    password: str | None = None
    #: SASL authentication (SASLMemcachedCache and SpreadSASLMemcachedCache).
    sasl: bool = False
    #: Values split over several keys (SpreadSASLMemcachedCache).
    chunked: bool = False

    def describe(self) -> str:
        return "memcached " + ",".join(self.servers)


class DirectoryLocation(NamedTuple):
    directory: str
    threshold: int
    mode: int
    #: The hash that names the files: CACHE_FILE_HASH_METHOD in 2.5; in legacy the
    #: class default unless CACHE_OPTIONS passes hash_method to the class.
    file_hash_method: Callable[..., Any]

    def describe(self) -> str:
        return f"directory {self.directory}"


class CustomLocation(NamedTuple):
    """A ``cachelib.X`` class or a custom backend class, built as Flask-Caching builds it."""

    cache_type: str
    args: tuple[Any, ...]
    options: Mapping[str, Any]
    #: Every CACHE_* setting, which a custom backend's factory may read.
    config: Mapping[str, Any]

    def describe(self) -> str:
        return f"custom backend {self.cache_type}"


Location = Union[  # a runtime alias, also on Python 3.9
    RedisLocation,
    SentinelLocation,
    ClusterLocation,
    MemcachedLocation,
    DirectoryLocation,
    CustomLocation,
]


def _sentinel_addresses(value: Any) -> tuple[tuple[str, int], ...]:
    addresses = []
    for given in value or DEFAULT_SENTINELS:
        entry = tuple(given.rpartition(":")[::2]) if isinstance(given, str) else given
        try:
            host, port = entry
            if "@" in str(host) or not 0 < int(port) < 65536:
                raise ValueError(host)
            addresses.append((_checked_host(str(host), "CACHE_REDIS_SENTINELS"), int(port)))
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"CACHE_REDIS_SENTINELS: {entry!r} is not a (host, port) pair"
            ) from exc
    return tuple(addresses)


def _cluster_nodes(text: str) -> tuple[tuple[str, int], ...]:
    nodes = []
    for address in text.split(","):
        host, _, port = address.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(
                f"CACHE_REDIS_CLUSTER must list host:port pairs separated by commas, not {text!r}"
            )
        nodes.append((host, int(port)))
    return tuple(nodes)


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
            _checked_url(url)
        elif not host or not 0 < port < 65536:
            raise ConfigError(f"CACHE_REDIS_HOST/PORT {host!r}:{port} names no server")
        else:
            _checked_host(host, "CACHE_REDIS_HOST")
        return RedisLocation(url, host, port, db, password, options)
    if cache_type == "RedisSentinelCache":
        if not get("CACHE_REDIS_SENTINELS"):
            # Flask-Caching would try 127.0.0.1:26379: almost surely not what was meant.
            raise ConfigError("RedisSentinelCache needs CACHE_REDIS_SENTINELS (host, port pairs)")
        return SentinelLocation(
            _sentinel_addresses(get("CACHE_REDIS_SENTINELS")),
            get("CACHE_REDIS_SENTINEL_MASTER", DEFAULT_SENTINEL_MASTER),
            db,
            password,
            secret_text(get("CACHE_REDIS_SENTINEL_PASSWORD")) or None,
            options,
        )
    if cache_type == "RedisClusterCache":
        url = get("CACHE_REDIS_URL") or None
        nodes = () if url else _cluster_nodes(get("CACHE_REDIS_CLUSTER") or "")
        if url is not None:
            _checked_url(url)
        return ClusterLocation(url, nodes, password, options)
    if cache_type in ("MemcachedCache", "SASLMemcachedCache", "SpreadSASLMemcachedCache"):
        given = get("CACHE_MEMCACHED_SERVERS")
        servers = _checked_servers(DEFAULT_MEMCACHED_SERVERS if given is None else given)
        return MemcachedLocation(
            servers,
            get("CACHE_MEMCACHED_USERNAME"),
            secret_text(get("CACHE_MEMCACHED_PASSWORD")),
            sasl=cache_type != "MemcachedCache",
            chunked=cache_type == "SpreadSASLMemcachedCache",
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
