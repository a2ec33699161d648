"""The CacheBackend interface callers outside ``cachectl.backends`` rely on, per backend.

Backends are built from resolved settings as the CLI builds them, against the
private servers of the fixtures; nothing is reached through a backend's client.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cachectl.backends import CacheBackend, build_backend
from cachectl.config.resolve import ConfigRequest, resolve_config
from cachectl.errors import UsageError
from tests.conftest import RedisTarget

#: One key of each kind Flask-Caching writes, (prefix removed) -> its kind.
SHAPES = {
    "AAAAAAAAAAAAAAAABBBBBB": "memoize entries",
    "shop.views.price_memver": "memoize versions",
    "view//about": "views",
    "_template_fragment_cache_sidebar": "fragments",
    "user:1": "other",
}


def backend_for(tmp_path: Path, **settings: Any) -> CacheBackend:
    """The backend for ``CACHE_<NAME>`` settings, resolved like the command line's."""
    overrides = [(f"CACHE_{name.upper()}", value, "test") for name, value in settings.items()]
    request = ConfigRequest(overrides=overrides, cwd=tmp_path, environ={})
    return build_backend(resolve_config(request).settings())


def redis_backend(tmp_path: Path, target: RedisTarget, prefix: str = "app_") -> CacheBackend:
    return backend_for(tmp_path, type="RedisCache", redis_url=target.url, key_prefix=prefix)


def test_redis_stats_count_the_app_keys_by_kind_and_ttl(
    tmp_path: Path, redis_target: RedisTarget
) -> None:
    backend = redis_backend(tmp_path, redis_target)
    for key in SHAPES:
        backend.set(key, "v", timeout=30)
    backend.set("forever", "v", timeout=0)
    redis_target.client.set("other_app_key", b"not ours")

    found = backend.stats(None)
    assert (found.total, found.examined) == (6, 6)
    assert found.kinds == {kind: 1 for kind in SHAPES.values()} | {"other": 2}
    assert found.ttls == {"< 1 minute": 5, "no expiry": 1}
    assert found.memory_sampled == 6

    sampled = backend.stats(2)
    assert (sampled.total, sampled.examined, sampled.estimated) == (6, 2, True)


def test_filesystem_stats_count_cache_files_only(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    directory.mkdir()
    backend = backend_for(tmp_path, type="FileSystemCache", dir=str(directory), threshold=500)
    for key in SHAPES:
        backend.set(key, "v", timeout=3600 * 2)
    backend.set("forever", "v", timeout=0)
    (directory / "README").write_text("not a cache file")

    found = backend.stats(None)
    assert (found.total, found.examined) == (6, 6)
    assert found.kinds == {"other": 6}  # file names are hashes: kinds cannot be told
    assert found.ttls == {"< 1 day": 5, "no expiry": 1}
    assert backend.stats(4).examined == 4


def test_memcached_stats_count_the_app_keys_by_kind_and_ttl(
    tmp_path: Path, memcached_address: str
) -> None:
    backend = backend_for(tmp_path, type="MemcachedCache", memcached_servers=[memcached_address])
    for key in SHAPES:
        backend.set(key, "v", timeout=30)
    backend.set("forever", "v", timeout=0)

    found = backend.stats(None)
    assert (found.total, found.examined) == (6, 6)
    assert found.kinds == {kind: 1 for kind in SHAPES.values()} | {"other": 2}
    assert found.ttls == {"< 1 minute": 5, "no expiry": 1}
    assert found.memory_sampled == 6 and found.memory_bytes > 0
    assert backend.stats(2).estimated


def test_stats_and_pattern_deletes_refuse_backends_that_cannot_list_keys(tmp_path: Path) -> None:
    sasl = backend_for(
        tmp_path,
        type="SASLMemcachedCache",
        memcached_servers=["127.0.0.1:9"],
        memcached_username="u",
        memcached_password="p",
    )
    with pytest.raises(UsageError, match="cannot list its keys: SASL servers"):
        sasl.stats(None)
    with pytest.raises(UsageError, match="cannot list its keys"):
        sasl.delete_matching("*", dry_run=True)


def test_clear_plans_say_which_consent_a_clear_needs(
    tmp_path: Path, redis_target: RedisTarget, memcached_address: str
) -> None:
    prefixed = redis_backend(tmp_path, redis_target).clear_plan()
    assert (prefixed.needs_flush_db, prefixed.accepts_flush_db, prefixed.needs_yes) == (
        None,
        False,
        None,
    )

    unprefixed_backend = redis_backend(tmp_path, redis_target, prefix="")
    unprefixed = unprefixed_backend.clear_plan()
    assert unprefixed.accepts_flush_db and unprefixed.needs_yes is None
    assert unprefixed.needs_flush_db == (
        f"no key prefix is configured, so every key in {unprefixed_backend.describe()} would "
        "look like the app's; clear refuses. Pass --flush-db to empty that whole database "
        "on purpose"
    )

    memcached = backend_for(tmp_path, type="MemcachedCache", memcached_servers=[memcached_address])
    plan = memcached.clear_plan()
    assert (plan.needs_yes, plan.refused, plan.whole_server) == (None, None, False)
    flush_all = memcached.flush_all_plan()
    assert flush_all.needs_yes == (
        "clear --flush-all empties the whole server: pass --yes to flush it"
    )
    assert (flush_all.needs_flush_db, flush_all.accepts_flush_db, flush_all.whole_server) == (
        None,
        False,
        True,
    )

    files = backend_for(tmp_path, type="FileSystemCache", dir=str(tmp_path)).clear_plan()
    assert (files.needs_flush_db, files.accepts_flush_db, files.needs_yes) == (None, False, None)


def test_literal_pattern_matches_only_the_text_itself(
    tmp_path: Path, redis_target: RedisTarget
) -> None:
    backend = redis_backend(tmp_path, redis_target)
    assert backend.literal_pattern("a*b?c[d]e\\f") == "a\\*b\\?c\\[d\\]e\\\\f"
    for key in ("k[1]*?\\x", "k1zzx", "k[1]abcx"):
        backend.set(key, "v", timeout=60)
    pattern = backend.literal_pattern("k[1]*?\\") + "*"
    assert list(backend.scan_keys(pattern)) == ["k[1]*?\\x"]
    assert backend.delete_matching(pattern, dry_run=True) == 1


def test_can_show_raw_bytes_tells_whether_get_returns_the_stored_bytes(
    tmp_path: Path, redis_target: RedisTarget, memcached_address: str
) -> None:
    backends = {
        "redis": redis_backend(tmp_path, redis_target),
        "filesystem": backend_for(tmp_path, type="FileSystemCache", dir=str(tmp_path)),
        "memcached": backend_for(
            tmp_path, type="MemcachedCache", memcached_servers=[memcached_address]
        ),
    }
    shown = {name: backend.can_show_raw_bytes for name, backend in backends.items()}
    assert shown == {"redis": True, "filesystem": True, "memcached": False}
    for backend in backends.values():
        backend.set("k", {"a": 1}, timeout=60)
        stored = backend.get("k")
        assert stored is not None and (stored.raw is not None) == backend.can_show_raw_bytes
