"""Whether two caches live in the same keyspace: the same Redis server and database.

Two caches of an app whose prefixes nest (``pkg_`` and ``pkg_data_``) only share
keys when they share a keyspace, so ``clear`` of the outer one must leave the
inner one's keys alone only then. What the backends were built with says where
they connect; the rule, from conclusive to not:

- another database number is another keyspace: **different**, whatever else;
- a Redis Cluster has one keyspace over its nodes: two clusters that share a node
  are the **same**, clusters that share none are **different**; a cluster and a
  single server are **different**;
- one host and port (or one Unix socket), or host names that resolve to a common
  address on one port: the **same**;
- another port on the same or another host, another socket path: **different**
  (cachectl cannot see through a proxy or a port forward);
- a sentinel master: the same service name through sentinels that overlap is the
  **same**, another service name is **different**;
- what cannot be told apart from what the client holds (a Unix socket against a
  TCP address, a sentinel master against a plain address, a host name that does
  not resolve here): **possibly** the same. Callers treat it as the same, to keep
  the other cache's keys, and say so.
"""

from __future__ import annotations

import socket
from typing import Any, NamedTuple

SAME, DIFFERENT, POSSIBLY = "same", "different", "possibly"


class Location(NamedTuple):
    """Where a Redis-family backend connects, as far as its client tells."""

    #: "tcp", "unix", "sentinel" or "cluster".
    family: str
    #: (host, port) pairs: the server, the sentinels, or the cluster's nodes.
    addresses: frozenset[tuple[str, int]]
    db: int
    #: The socket path, or the sentinel service name.
    name: str = ""


class Verdict(NamedTuple):
    outcome: str  # SAME, DIFFERENT or POSSIBLY
    reason: str


def location_of(backend: Any) -> Location | None:
    """The location of a Redis-family backend; None for any other backend."""
    from cachectl.backends.redis import RedisBackend

    if not isinstance(backend, RedisBackend):
        return None
    from cachectl.backends.redis_clients import is_cluster

    client = backend.client
    if is_cluster(client):
        nodes = frozenset((str(node.host), int(node.port)) for node in client.get_nodes())
        return Location("cluster", nodes, 0)
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    db = int(kwargs.get("db", 0) or 0)
    service = getattr(pool, "service_name", None)
    if service:
        sentinels = frozenset(
            (
                str(s.connection_pool.connection_kwargs.get("host")),
                int(s.connection_pool.connection_kwargs.get("port") or 26379),
            )
            for s in pool.sentinel_manager.sentinels
        )
        return Location("sentinel", sentinels, db, str(service))
    if "path" in kwargs:
        return Location("unix", frozenset(), db, str(kwargs["path"]))
    address = (str(kwargs.get("host", "localhost")), int(kwargs.get("port", 6379)))
    return Location("tcp", frozenset({address}), db)


def _resolved(host: str) -> frozenset[str] | None:
    try:
        return frozenset(str(info[4][0]) for info in socket.getaddrinfo(host, None))
    except (OSError, UnicodeError):
        return None


def _same_address(a: tuple[str, int], b: tuple[str, int]) -> str:
    """SAME, DIFFERENT or POSSIBLY for two host:port addresses."""
    if a == b:
        return SAME
    if a[1] != b[1]:
        return DIFFERENT
    left, right = _resolved(a[0]), _resolved(b[0])
    if left is None or right is None:
        return POSSIBLY
    return SAME if left & right else DIFFERENT


def compare(a: Location | None, b: Location | None) -> Verdict:
    """Whether ``a`` and ``b`` are one keyspace, by the rule in this module's docstring."""
    if a is None or b is None:
        return Verdict(DIFFERENT, "not both Redis")
    if a.db != b.db:
        return Verdict(DIFFERENT, f"database {a.db} and {b.db}")
    families = {a.family, b.family}
    if families == {"cluster"}:
        if a.addresses & b.addresses:
            return Verdict(SAME, "the same cluster")
        return Verdict(DIFFERENT, "clusters with no node in common")
    if "cluster" in families:
        return Verdict(DIFFERENT, "a cluster and a single server")
    if a.family != b.family:
        return Verdict(
            POSSIBLY, f"a {a.family} and a {b.family} connection may reach the same server"
        )
    if a.family == "unix":
        same = a.name == b.name
        return Verdict(SAME if same else DIFFERENT, "socket " + ("path" if same else "paths"))
    if a.family == "sentinel":
        if a.name != b.name:
            return Verdict(DIFFERENT, "other sentinel masters")
        if a.addresses & b.addresses:
            return Verdict(SAME, f"sentinel master {a.name!r}")
        return Verdict(POSSIBLY, f"master {a.name!r} named by sentinels with none in common")
    outcomes = {_same_address(x, y) for x in a.addresses for y in b.addresses}
    for outcome, reason in (
        (SAME, "the same server and database"),
        (POSSIBLY, "host names that do not resolve here may name the same server"),
    ):
        if outcome in outcomes:
            return Verdict(outcome, reason)
    return Verdict(DIFFERENT, "other servers")
