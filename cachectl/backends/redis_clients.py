"""Which client library speaks to a Redis-family server: redis-py, or the valkey client.

Both speak the same protocol and the valkey client is a fork of redis-py, with the same
classes under other names (``valkey.Valkey``, ``valkey.ValkeyCluster``) and exceptions
of its own (``valkey.exceptions.ValkeyError``), which a ``redis.exceptions`` clause does
not catch. cachectl uses the valkey client where the app names Valkey and it is installed
(``client_library``), and asks here, never of one library, what a client or an
exception is. The valkey client is imported only where one is used: if it was never
imported, no client or exception of it can exist.
"""

from __future__ import annotations

import re
import sys
from types import ModuleType
from typing import Any

import redis
import redis.exceptions


def client_library(family: str) -> ModuleType:
    """The library cachectl connects with for a server the settings name ``family``
    (``redis`` or ``valkey``): valkey's own client where it is installed, else redis-py."""
    if family == "valkey":
        try:
            import valkey
        except ImportError:
            return redis
        return valkey
    return redis


def _valkey() -> ModuleType | None:
    return sys.modules.get("valkey")


def library_of(thing: Any) -> ModuleType:
    """The library a client, a connection pool or an exception comes from."""
    valkey = _valkey()
    if valkey is not None and type(thing).__module__.split(".")[0] == "valkey":
        return valkey
    return redis


def is_valkey(thing: Any) -> bool:
    """Whether ``thing`` (a client, a pool, an exception) is the valkey client's."""
    return library_of(thing) is not redis


def is_cluster(client: Any) -> bool:
    """Whether ``client`` is a cluster client, of either library."""
    if isinstance(client, redis.RedisCluster):
        return True
    valkey = _valkey()
    return valkey is not None and isinstance(client, valkey.ValkeyCluster)


def client_errors() -> tuple[type[BaseException], ...]:
    """The base class of every error of each library in use."""
    valkey = _valkey()
    if valkey is None:
        return (redis.exceptions.RedisError,)
    return (redis.exceptions.RedisError, valkey.exceptions.ValkeyError)


def error_class(exc: BaseException, name: str) -> type[BaseException] | tuple[()]:
    """The exception class ``name`` (``TimeoutError``) of the library ``exc`` comes from,
    or ``()`` (matches nothing) where that library has none."""
    found: type[BaseException] | tuple[()] = getattr(library_of(exc).exceptions, name, ())
    return found


def is_error(exc: BaseException, name: str) -> bool:
    """Whether ``exc`` is its library's exception ``name`` (``ResponseError``)."""
    return isinstance(exc, error_class(exc, name))


def errors_named(name: str) -> tuple[type[BaseException], ...]:
    """For an ``except`` clause: the exception class ``name`` (``NoScriptError``) of each
    library in use."""
    found = [getattr(redis.exceptions, name)]
    valkey = _valkey()
    if valkey is not None and hasattr(valkey.exceptions, name):
        found.append(getattr(valkey.exceptions, name))
    return tuple(found)


def is_blocking_pool(pool: Any) -> bool:
    """Whether ``pool`` is a ``BlockingConnectionPool`` of either library."""
    return isinstance(pool, library_of(pool).BlockingConnectionPool)


def describe_client(client: Any, family: str | None = None) -> str:
    """``redis://host:port/db`` (or the socket path) of a client, no password: valkey://
    where the app names its server Valkey (``family``; by default, for the valkey
    client's), whichever library speaks to it."""
    from cachectl.runtime.secrets import mask_url

    family = family or ("valkey" if is_valkey(client) else "redis")
    if is_cluster(client):
        nodes = ",".join(f"{node.host}:{node.port}" for node in client.get_nodes()[:3])
        return f"{family} cluster {nodes}"
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    service = getattr(pool, "service_name", None)
    if service:  # a SentinelConnectionPool
        sentinels = ",".join(
            f"{s.connection_pool.connection_kwargs.get('host')}:"
            f"{s.connection_pool.connection_kwargs.get('port')}"
            for s in pool.sentinel_manager.sentinels
        )
        return f"{family} sentinel master {service!r} via {sentinels} db {kwargs.get('db', 0)}"
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    tls = issubclass(pool.connection_class, library_of(client).SSLConnection)
    scheme = family + ("s" if tls else "")
    user = kwargs.get("username")
    auth = (
        f"{user}:****@"
        if user and kwargs.get("password")
        else ("****@" if kwargs.get("password") else "")
    )
    return mask_url(
        f"{scheme}://{auth}{kwargs.get('host')}:{kwargs.get('port')}/{kwargs.get('db', 0)}"
    )


#: A client object's repr inside a message (redis-py's MasterNotFoundError quotes the
#: sentinel client it asked: its pool, connection and every option, hundreds of characters).
_CLIENT_REPR = re.compile(r"\s*:?\s*<(?:redis|valkey)\.[^\n]*>(?=\s*-|\s*$)")


def without_client_reprs(exc: BaseException) -> str:
    """The client's message, one readable line: reprs of client objects left out (what
    failed still shows: "No master found for 'mymaster' - network:ConnectionError: ...")."""
    return _CLIENT_REPR.sub("", str(exc))
