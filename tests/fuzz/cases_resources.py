"""Bounds on time and memory at their edges: the smallest --timeout against a server that
is not there (each whole reply bounded, the connection too), and the decode limits at
their smallest and largest on keys that are missing (the length is asked before any
value is read). The hostile values and servers themselves need data planted on a server
or a misbehaving peer: tests/test_resource_limits.py."""

from __future__ import annotations

from tests.fuzz.corpus import MEMCACHED, NOT_FOUND, UNREACHABLE, Corpus

_DEAD_SERVERS = 'CACHE_MEMCACHED_SERVERS=["127.0.0.1:{dead_port}"]'
_DEAD_MEMCACHED = ("--type", "MemcachedCache", "-o", _DEAD_SERVERS)


def add_cases(c: Corpus) -> None:
    c.add(
        "res-timeout-smallest-dead-redis",
        "get",
        "redis",
        UNREACHABLE,
        "the smallest --timeout, nothing listening: exit 3 at once",
        family=("--url", "redis://127.0.0.1:{dead_port}/0"),
        globals_=("--timeout", "0.1"),
        args=("get", "k"),
    )
    c.add(
        "res-timeout-smallest-dead-memcached",
        "get",
        "memcached",
        UNREACHABLE,
        "the smallest --timeout, nothing listening (cachectl's own check): exit 3",
        family=_DEAD_MEMCACHED,
        globals_=("--timeout", "0.1"),
        args=("get", "k"),
    )
    for backend in ("redis", "memcached"):
        limits = (("--max-bytes", "1"), ("--max-bytes", "10" * 9), ("--max-output", "1"))
        for option, value in limits:
            c.add(
                f"res-{backend}-missing{option}-{len(value)}",
                "get",
                backend,
                NOT_FOUND,
                f"{option} {value} on a missing key: not found, whatever the limit",
                args=("get", "res-nothing-here", option, value),
            )
    c.add(
        "res-memcached-several-keys-missing",
        "get",
        "memcached",
        NOT_FOUND,
        "several missing keys, each read over its own bounded connection (pylibmc)",
        family=MEMCACHED,
        args=("get", "res-a", "res-b", "res-c"),
    )
