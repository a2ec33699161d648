"""Where a cache lives: the location records, and the checks of the addresses in them.

``cachectl.config.settings`` decides from a cache's ``CACHE_*`` settings which record
applies; the records say where to connect and how to name the target without
connecting (``describe``), credentials masked. Split from the settings so that each
module stays readable; the settings module re-exports the records.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple, Union
from urllib.parse import urlsplit

from cachectl.errors import ConfigError
from cachectl.runtime.secrets import mask_url

DEFAULT_SENTINELS = (("127.0.0.1", 26379),)

#: URL schemes of the Redis family, and the library family each names: redis-py reads
#: redis://, rediss:// and unix://; the valkey client reads those and valkey://, valkeys://.
URL_SCHEMES = {
    "redis": "redis",
    "rediss": "redis",
    "valkey": "valkey",
    "valkeys": "valkey",
    "unix": "redis",
}


def url_family(url: str | None) -> str:
    """``valkey`` for a valkey:// or valkeys:// URL, else ``redis``."""
    if not url:
        return "redis"
    return URL_SCHEMES.get(url.partition("://")[0].lower(), "redis")


def redis_py_url(url: str) -> str:
    """``url`` as redis-py reads it: valkey:// is redis://, valkeys:// is rediss:// (the
    same protocol; redis-py refuses the valkey names)."""
    scheme, sep, rest = url.partition("://")
    renamed = {"valkey": "redis", "valkeys": "rediss"}.get(scheme.lower())
    return f"{renamed}{sep}{rest}" if renamed else url


def checked_url(url: str, setting: str = "CACHE_REDIS_URL") -> str:
    """Refuse a Redis or Valkey URL that names no server: redis-py would fall back to
    localhost:6379, and act on whatever listens there."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{setting} {mask_url(url)!r} is not a valid URL: {exc}") from None
    if parts.scheme not in URL_SCHEMES:
        raise ConfigError(
            f"{setting} {mask_url(url)!r}: the scheme must be redis://, rediss://, valkey://, "
            "valkeys:// or unix://"
        )
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigError(f"{setting} {mask_url(url)!r} names no socket path")
        return url
    if not parts.hostname or port == 0 or parts.netloc.endswith(":"):
        raise ConfigError(f"{setting} {mask_url(url)!r} names no server (host and port)")
    checked_host(parts.hostname, setting)
    database = parts.path.strip("/")
    if database and not database.isdigit():
        raise ConfigError(f"{setting} {mask_url(url)!r}: the database must be a number")
    return url


def checked_host(host: str, setting: str) -> str:
    """A host name DNS could answer for: no blanks, labels of 63 characters at most."""
    labels = host.strip("[]").split(".")
    if not host or any(ch.isspace() for ch in host) or len(host) > 253:
        raise ConfigError(f"{setting}: {host!r} is not a host name")
    if any(len(label) > 63 for label in labels):
        raise ConfigError(f"{setting}: {host!r} has a label over 63 characters")
    return host


def checked_servers(servers: Any) -> tuple[str, ...]:
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
            checked_host(host, "CACHE_MEMCACHED_SERVERS")
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
    #: ``valkey`` where the app names the server so (cachelib.ValkeyCache, a valkey://
    #: URL): the valkey client is used when installed, and output says valkey://.
    family: str = "redis"

    def describe(self) -> str:
        if self.url:
            return mask_url(self.url)
        if self.options.get("unix_socket_path"):
            return f"unix://{self.options['unix_socket_path']}?db={self.db}"
        scheme = self.family + ("s" if self.options.get("ssl") else "")
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
    #: CACHE_OPTIONS memcache_client_lib (cachelib 0.17), checked by the client factory.
    client_lib: Any = None

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


def sentinel_addresses(value: Any) -> tuple[tuple[str, int], ...]:
    addresses = []
    for given in value or DEFAULT_SENTINELS:
        entry = tuple(given.rpartition(":")[::2]) if isinstance(given, str) else given
        try:
            host, port = entry
            if "@" in str(host) or not 0 < int(port) < 65536:
                raise ValueError(host)
            addresses.append((checked_host(str(host), "CACHE_REDIS_SENTINELS"), int(port)))
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"CACHE_REDIS_SENTINELS: {entry!r} is not a (host, port) pair"
            ) from exc
    return tuple(addresses)


def cluster_nodes(text: str) -> tuple[tuple[str, int], ...]:
    nodes = []
    for address in text.split(","):
        host, _, port = address.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(
                f"CACHE_REDIS_CLUSTER must list host:port pairs separated by commas, not {text!r}"
            )
        nodes.append((host, int(port)))
    return tuple(nodes)


# --- cachelib's ValkeyCache ---------------------------------------------------------------

#: The CACHE_TYPE of cachelib's Valkey cache (cachelib 0.14+). Flask-Caching 2.5 has no
#: Valkey class of its own, no Valkey sentinel or cluster class and no CACHE_VALKEY_*
#: setting: it calls ``ValkeyCache(*CACHE_ARGS, default_timeout=..., **CACHE_OPTIONS)``.
VALKEY_CACHE = "cachelib.ValkeyCache"
#: ValkeyCache's own parameters, in order; every other keyword goes to ``valkey.Valkey``.
_VALKEY_PARAMETERS = (
    "host",
    "port",
    "password",
    "db",
    "default_timeout",
    "key_prefix",
    "ignore_delete_many_errors",
    "check_connection",
)


class ValkeyArguments(NamedTuple):
    """What cachelib.ValkeyCache is called with, sorted into its parameters."""

    location: RedisLocation
    #: None when neither CACHE_ARGS nor CACHE_OPTIONS gives one (cachelib's default: none).
    key_prefix: str | Callable[[], str] | None
    #: None when Flask-Caching's CACHE_DEFAULT_TIMEOUT applies.
    default_timeout: int | None


def valkey_arguments(args: Any, options: Mapping[str, Any]) -> ValkeyArguments:
    """Where a ``cachelib.ValkeyCache`` connects and with which prefix, from CACHE_ARGS and
    CACHE_OPTIONS as Flask-Caching hands them over (CACHE_REDIS_* and CACHE_KEY_PREFIX are
    not read for it, so they are not read here either)."""
    args = tuple(args or ())
    if len(args) > len(_VALKEY_PARAMETERS):
        raise ConfigError(
            f"CACHE_ARGS: {VALKEY_CACHE} takes at most {len(_VALKEY_PARAMETERS)} "
            f"positional arguments, not {len(args)}"
        )
    given = dict(zip(_VALKEY_PARAMETERS, args))
    twice = sorted(set(given) & set(options))
    if twice:
        raise ConfigError(
            f"{VALKEY_CACHE}: {', '.join(twice)} given both in CACHE_ARGS and CACHE_OPTIONS"
        )
    given.update(options)
    host, port, db = given.get("host", "localhost"), given.get("port", 6379), given.get("db", 0)
    if not isinstance(host, str) or not host:
        raise ConfigError(f"{VALKEY_CACHE}: host must be a host name, not {host!r}")
    for name, number in (("port", port), ("db", db)):
        if isinstance(number, bool) or not isinstance(number, int):
            raise ConfigError(f"{VALKEY_CACHE}: {name} must be a number, not {number!r}")
    if not 0 < port < 65536:
        raise ConfigError(f"{VALKEY_CACHE}: {host!r}:{port} names no server")
    checked_host(host, f"{VALKEY_CACHE} host")
    password = given.get("password")
    client_options = {k: v for k, v in given.items() if k not in _VALKEY_PARAMETERS}
    location = RedisLocation(
        None, host, port, db, None if password is None else str(password), client_options, "valkey"
    )
    return ValkeyArguments(location, given.get("key_prefix"), given.get("default_timeout"))
