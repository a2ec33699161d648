"""RedisSentinelCache and RedisClusterCache: the same commands, on real servers."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.conftest import oracle_app, run
from tests.servers import ServerProcess, start_redis, start_redis_cluster, start_sentinel


@pytest.fixture(scope="module")
def cluster() -> Iterator[list[ServerProcess]]:
    nodes = start_redis_cluster()
    yield nodes
    for node in nodes:
        node.stop()


@pytest.fixture(scope="module")
def sentinel() -> Iterator[tuple[ServerProcess, ServerProcess]]:
    master = start_redis()
    watcher = start_sentinel(master.port)
    yield master, watcher
    watcher.stop()
    master.stop()


def cluster_config(nodes: list[ServerProcess]) -> dict:
    return {
        "CACHE_TYPE": "RedisClusterCache",
        "CACHE_REDIS_CLUSTER": ",".join(f"127.0.0.1:{node.port}" for node in nodes),
        "CACHE_KEY_PREFIX": "shop_",
    }


def sentinel_config(watcher: ServerProcess) -> dict:
    return {
        "CACHE_TYPE": "RedisSentinelCache",
        "CACHE_REDIS_SENTINELS": [["127.0.0.1", watcher.port]],
        "CACHE_REDIS_SENTINEL_MASTER": "mymaster",
        "CACHE_KEY_PREFIX": "shop_",
    }


def as_options(config: dict) -> list[str]:
    args = []
    for name, value in config.items():
        args += ["-o", f"{name}={json.dumps(value) if not isinstance(value, str) else value}"]
    return args


def exercise(config: dict) -> None:
    """get / set / delete / clear through cachectl, each seen by a Flask-Caching app."""
    app, cache = oracle_app(config)
    args = as_options(config)
    with app.app_context():
        cache.clear()
        for n in range(300):  # spread over every slot range of the cluster
            cache.set(f"item:{n}", {"n": n})

    got = run(*args, "--json", "get", "item:7")
    assert json.loads(got.stdout)["results"][0]["value"] == {"n": 7}, got.output

    assert run(*args, "set", "banner", "closed", "--timeout", "60").exit_code == 0
    with app.app_context():
        assert cache.get("banner") == "closed"

    deleted = run(*args, "--json", "delete", "item:1", "item:2", "item:200", "absent")
    assert json.loads(deleted.stdout)["removed"] == 3
    with app.app_context():
        assert cache.get("item:1") is None and cache.get("item:3") == {"n": 3}

    counted = run(*args, "--json", "clear", "--dry-run")
    assert json.loads(counted.stdout)["removed"] == 298
    cleared = run(*args, "--json", "clear", "--yes")
    assert json.loads(cleared.stdout)["removed"] == 298
    with app.app_context():
        assert all(cache.get(f"item:{n}") is None for n in range(300))


def test_cluster_commands(cluster: list[ServerProcess]) -> None:
    exercise(cluster_config(cluster))


def test_cluster_clear_leaves_keys_outside_the_prefix(cluster: list[ServerProcess]) -> None:
    import redis

    client = redis.RedisCluster(host="127.0.0.1", port=cluster[0].port)
    for n in range(50):
        client.set(f"other:{n}", b"keep")
    run(*as_options(cluster_config(cluster)), "clear", "--yes")
    assert all(client.exists(f"other:{n}") for n in range(50))


def test_sentinel_commands(sentinel: tuple[ServerProcess, ServerProcess]) -> None:
    _, watcher = sentinel
    exercise(sentinel_config(watcher))
    describe = run(*as_options(sentinel_config(watcher)), "clear", "--dry-run")
    assert "sentinel master 'mymaster'" in describe.stdout
