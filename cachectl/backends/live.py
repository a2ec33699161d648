"""Read back, from the backend object a live app built, where and how it stores its entries.

An app that hands its settings to ``cache.init_app(app, config)`` keeps them
nowhere but in the backend Flask-Caching built from them, so in app mode the
connection must be read from that object: guessing it from defaults would point
cachectl at whatever server listens on the default address. This module is the
one place that looks inside those objects: redis-py's connection pools here
(checked against redis-py 4.5 to 8.x, and the valkey client 6.x, whose pools are
redis-py's under other names), cachelib's private attributes through
``cachelib_access``.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from typing import Any

from cachectl.app import static_lookup as static
from cachectl.backends import cachelib_access as access

_VALKEY_CACHE = "cachelib.ValkeyCache"
#: What redis-py keeps of a TLS connection, as ``redis.Redis`` takes it back.
_TLS_OPTIONS = (
    "ssl_keyfile",
    "ssl_certfile",
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_ca_path",
    "ssl_check_hostname",
    "ssl_password",
    "ssl_min_version",
)
_VERIFY_MODES = {
    ssl.CERT_NONE: "none",
    ssl.CERT_OPTIONAL: "optional",
    ssl.CERT_REQUIRED: "required",
}


@dataclass
class LiveReading:
    """Settings read back from a live backend, and those it does not reveal."""

    values: dict[str, Any] = field(default_factory=dict)
    #: Settings the backend needs that could not be read from it (an unknown
    #: client class, SASL credentials a client keeps inside its C library).
    unreadable: list[str] = field(default_factory=list)
    #: The backend is of a class cachectl cannot rebuild (a custom backend):
    #: the live object itself must be used.
    opaque: bool = False


def _redis_auth_and_tls(kwargs: dict[str, Any], connection_class: Any) -> dict[str, Any]:
    """Credentials and TLS options of a redis-py connection pool, as settings."""
    values: dict[str, Any] = {}
    if kwargs.get("password"):
        values["CACHE_REDIS_PASSWORD"] = kwargs["password"]
    options: dict[str, Any] = {}
    if kwargs.get("username"):
        options["username"] = kwargs["username"]
    if connection_class is not None and "SSL" in connection_class.__name__:
        options["ssl"] = True
        for name in _TLS_OPTIONS:
            value = kwargs.get(name)
            if value is None:
                continue
            if isinstance(value, ssl.VerifyMode):
                value = _VERIFY_MODES[value]
            elif isinstance(value, ssl.TLSVersion):
                continue  # not expressible in a config file; redis-py's default applies
            options[name] = value
    if options:
        values["CACHE_OPTIONS"] = options
    return values


def _read_redis_client(client: Any, reading: LiveReading) -> None:
    nodes_manager = getattr(client, "nodes_manager", None)
    if nodes_manager is not None:  # redis.cluster.RedisCluster
        nodes = [f"{node.host}:{node.port}" for node in nodes_manager.startup_nodes.values()]
        node_kwargs = dict(getattr(nodes_manager, "connection_kwargs", None) or {})
        reading.values.update(CACHE_TYPE="RedisClusterCache", CACHE_REDIS_CLUSTER=",".join(nodes))
        reading.values.update(_redis_auth_and_tls(node_kwargs, node_kwargs.get("connection_class")))
        return
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    if pool is None or kwargs is None:
        reading.unreadable += ["CACHE_REDIS_HOST", "CACHE_REDIS_PORT", "CACHE_REDIS_DB"]
        return
    if kwargs.get("credential_provider") is not None:
        reading.unreadable.append("CACHE_REDIS_PASSWORD (a credential_provider object)")
    values = reading.values
    values["CACHE_REDIS_DB"] = int(kwargs.get("db") or 0)
    values.update(_redis_auth_and_tls(kwargs, getattr(pool, "connection_class", None)))
    manager = getattr(pool, "sentinel_manager", None)
    if manager is not None:  # redis.sentinel.SentinelConnectionPool
        sentinels = []
        sentinel_password = None
        for sentinel in manager.sentinels:
            sentinel_kwargs = sentinel.connection_pool.connection_kwargs
            sentinels.append([sentinel_kwargs["host"], int(sentinel_kwargs["port"])])
            sentinel_password = sentinel_password or sentinel_kwargs.get("password")
        values.update(
            CACHE_TYPE="RedisSentinelCache",
            CACHE_REDIS_SENTINELS=sentinels,
            CACHE_REDIS_SENTINEL_MASTER=pool.service_name,
        )
        if sentinel_password:
            values["CACHE_REDIS_SENTINEL_PASSWORD"] = sentinel_password
        return
    values["CACHE_TYPE"] = "RedisCache"
    if kwargs.get("path"):  # a unix socket
        values.setdefault("CACHE_OPTIONS", {})["unix_socket_path"] = kwargs["path"]
        return
    values["CACHE_REDIS_HOST"] = kwargs.get("host", "localhost")
    values["CACHE_REDIS_PORT"] = int(kwargs.get("port", 6379))


def _as_valkey_cache(backend: Any, reading: LiveReading) -> None:
    """A cachelib.ValkeyCache's reading as the app configures one: CACHE_TYPE
    ``cachelib.ValkeyCache`` and the arguments Flask-Caching passes it in CACHE_OPTIONS
    (it reads no CACHE_REDIS_* setting), so ``config`` names the server as the app does
    and cachectl connects with the valkey client where it is installed."""
    values = reading.values
    if values.get("CACHE_TYPE") != "RedisCache":  # a client of another shape: as read
        return
    options = dict(values.pop("CACHE_OPTIONS", None) or {})
    for name, setting in (
        ("host", "CACHE_REDIS_HOST"),
        ("port", "CACHE_REDIS_PORT"),
        ("db", "CACHE_REDIS_DB"),
        ("password", "CACHE_REDIS_PASSWORD"),
    ):
        if setting in values:
            options[name] = values.pop(setting)
    prefix = backend.key_prefix
    if not callable(prefix):
        options["key_prefix"] = prefix or ""
    values.update(CACHE_TYPE=_VALKEY_CACHE, CACHE_ARGS=[], CACHE_OPTIONS=options)


def _memcached_addresses(client: Any) -> list[str] | None:
    """Server addresses of a pylibmc or python-memcached client."""
    addresses = getattr(client, "addresses", None)  # pylibmc
    if isinstance(addresses, (list, tuple)):
        return [str(address) for address in addresses]
    hosts = getattr(client, "servers", None)  # python-memcached
    if isinstance(hosts, (list, tuple)):
        found = []
        for host in hosts:
            if getattr(host, "family", None) == getattr(socket, "AF_UNIX", None):
                found.append(f"unix:{host.address}")
            elif getattr(host, "ip", None) is not None:
                found.append(f"{host.ip}:{host.port}")
            else:
                return None
        return found
    return None


#: The top package of a memcached client's class, and cachelib's memcache_client_lib name.
_CLIENT_PACKAGES = {
    "pylibmc": "pylibmc",
    "_pylibmc": "pylibmc",
    "memcache": "memcache",
    "libmc": "libmc",
    "google": "google",
}


def _read_memcached(backend: Any, reading: LiveReading) -> None:
    # The library cachelib chose decides the value format and the servers a key goes to:
    # read from the client's class (its module), nothing of it run.
    package = type(access.memcached_client(backend)).__module__.split(".")[0]
    if package in _CLIENT_PACKAGES and "SASL" not in type(backend).__name__:
        reading.values["CACHE_OPTIONS"] = {"memcache_client_lib": _CLIENT_PACKAGES[package]}
    addresses = _memcached_addresses(access.memcached_client(backend))
    reserve = access.memcached_client_context(backend)
    if addresses is None and reserve is not None:  # a pool of clients (cachelib 0.17+)
        with reserve() as client:
            addresses = _memcached_addresses(client)
    if addresses is None:
        reading.unreadable.append("CACHE_MEMCACHED_SERVERS")
    else:
        reading.values["CACHE_MEMCACHED_SERVERS"] = addresses
    name = type(backend).__name__
    if "SASL" in name:
        reading.values["CACHE_TYPE"] = name
        # pylibmc hands the credentials to libmemcached and keeps no copy.
        reading.unreadable += ["CACHE_MEMCACHED_USERNAME", "CACHE_MEMCACHED_PASSWORD"]
    else:
        reading.values["CACHE_TYPE"] = "MemcachedCache"


def _read_filesystem(backend: Any, reading: LiveReading) -> None:
    reading.values.update(
        CACHE_TYPE="FileSystemCache",
        CACHE_DIR=access.filesystem_directory(backend),
        CACHE_FILE_HASH_METHOD=access.filesystem_hash_method(backend),
        CACHE_THRESHOLD=access.filesystem_threshold(backend),
    )


def read_live_backend(backend: Any) -> LiveReading:
    """Every setting ``backend`` reveals about where and how it stores entries."""
    import cachelib

    reading = LiveReading()
    # A custom backend is the app's own class: its attributes are read as stored, so
    # none of its properties runs (static_lookup).
    kind = type(backend)
    default_timeout = static.read(backend, "default_timeout", static.MISSING)
    if default_timeout is not static.MISSING and not static.is_descriptor(default_timeout):
        reading.values["CACHE_DEFAULT_TIMEOUT"] = default_timeout
    key_prefix = static.read(backend, "key_prefix", static.MISSING)
    if key_prefix is not static.MISSING and not callable(key_prefix):
        reading.values["CACHE_KEY_PREFIX"] = key_prefix or ""
    serializer = static.read(backend, "serializer")
    class_serializer = static.read(kind, "serializer")
    if serializer is not None and type(serializer) is not type(class_serializer):
        reading.values["CACHE_SERIALIZER"] = serializer
    if access.has_redis_client(backend):  # every cachelib RedisCache, Sentinel and Cluster
        _read_redis_client(access.redis_client(backend), reading)
        if access.is_valkey_cache(backend):
            _as_valkey_cache(backend, reading)
    elif issubclass(kind, cachelib.FileSystemCache):
        _read_filesystem(backend, reading)
    elif issubclass(kind, cachelib.MemcachedCache):
        _read_memcached(backend, reading)
    elif not issubclass(kind, (cachelib.SimpleCache, cachelib.NullCache)):
        reading.opaque = True
    return reading
