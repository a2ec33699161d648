"""RedisClusterCache and RedisSentinelCache: every command on real topologies, and failovers.

The cluster has three primaries with one replica each; the sentinel set has a
master, a replica and three sentinels that require a password.
"""

from __future__ import annotations

import json
import pickle
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis
from flask_caching import Cache

from tests.conftest import CONSOLE_SCRIPT, fill_keys, oracle_app, run, run_console
from tests.servers import (
    ServerProcess,
    free_port,
    start_redis_cluster,
    start_sentinel_set,
    stop_all,
    wait_for_cluster,
)

SENTINEL_PASSWORD = "sentinel-secret"
topology_cache = Cache()


@topology_cache.memoize()
def price(n):
    return n * 10


@pytest.fixture(scope="module")
def cluster() -> Iterator[list[ServerProcess]]:
    nodes = start_redis_cluster(primaries=3, replicas=1)
    yield nodes
    for node in nodes:
        node.stop()


@pytest.fixture(scope="module")
def sentinel_set() -> Iterator[dict]:
    started = start_sentinel_set(SENTINEL_PASSWORD)
    yield started
    stop_all(started)


def cluster_config(nodes: list[ServerProcess]) -> dict:
    return {
        "CACHE_TYPE": "RedisClusterCache",
        "CACHE_REDIS_CLUSTER": ",".join(f"127.0.0.1:{node.port}" for node in nodes),
        "CACHE_KEY_PREFIX": "shop_",
    }


def sentinel_config(started: dict) -> dict:
    return {
        "CACHE_TYPE": "RedisSentinelCache",
        "CACHE_REDIS_SENTINELS": [["127.0.0.1", s.port] for s in started["sentinels"]],
        "CACHE_REDIS_SENTINEL_MASTER": "mymaster",
        "CACHE_REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
        "CACHE_KEY_PREFIX": "shop_",
    }


def as_options(config: dict) -> list[str]:
    args = []
    for name, value in config.items():
        args += ["-o", f"{name}={json.dumps(value) if not isinstance(value, str) else value}"]
    return args


def cachectl(config: dict, *args: str) -> dict:
    result = run(*as_options(config), "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def exercise(config: dict, raw: redis.Redis | redis.RedisCluster) -> None:
    """Every command, each checked against what a Flask-Caching app sees."""
    app, cache = oracle_app(config)
    topology_cache.init_app(app, config=config)

    @app.route("/p/<int:n>")
    @cache.cached()
    def product(n):
        return str(n)

    raw.set("unrelated", b"keep")
    with app.app_context():
        cache.clear()
        for n in range(300):  # spread over every slot range of the cluster
            cache.set(f"item:{n}", {"n": n})
        price(0)
        if not isinstance(raw, redis.RedisCluster):
            # cachelib's sentinel backend reads from a replica: until the version key the
            # first call wrote reaches it, each call would write a version of its own.
            assert raw.wait(1, 10_000) == 1
        for n in range(1, 50):
            price(n)
    client = app.test_client()
    for n in range(5):
        client.get(f"/p/{n}")
    total = 300 + 50 + 1 + 5  # items, memoized results, their version key, views

    assert cachectl(config, "get", "item:7")["results"][0]["value"] == {"n": 7}
    cachectl(config, "set", "banner", "closed", "--timeout", "60")
    with app.app_context():
        assert cache.get("banner") == "closed"
    assert cachectl(config, "delete", "item:1", "item:2", "item:200", "absent")["removed"] == 3
    assert cachectl(config, "keys", "--count")["count"] == total + 1 - 3
    # item:2, item:20-29 and item:200-299, less the deleted item:2 and item:200
    assert len(cachectl(config, "keys", "item:2*")["keys"]) == 1 + 10 + 100 - 2
    assert cachectl(config, "stats")["kinds"]["memoize entries"] == 50
    by_function = cachectl(config, "stats", "--by-function")
    # What the server holds under the function's current version, read here key by key:
    # the app reads versions from a replica, so under load a call may still have written
    # a version of its own (an entry then stays under a version no longer current).
    version = pickle.loads(raw.get("shop_tests.test_sentinel_and_cluster.price_memver")[1:])
    current = sum(
        1
        for key in raw.scan_iter(match="shop_*", count=1000)
        if key.endswith(version.encode()) and not key.endswith(b"_memver")
    )
    assert current >= 40
    assert [(row["function"], row["entries"]) for row in by_function["functions"]] == [
        ("tests.test_sentinel_and_cluster.price", current)
    ]
    assert by_function["views"][0]["path"] == "/p" and by_function["views"][0]["entries"] == 5
    assert cachectl(config, "delete", "--pattern", "item:1??", "--yes")["removed"] == 100

    assert (
        cachectl(config, "delete-memoized", "tests.test_sentinel_and_cluster.price", "7")["removed"]
        == 1
    )
    # --purge removes the entries under the current version: all 50 less price(7), unless a
    # call raced the replica and wrote under a version of its own (counted above).
    assert (
        cachectl(config, "delete-memoized", "tests.test_sentinel_and_cluster.price", "--purge")[
            "purged"
        ]
        == current - 1
    )
    assert cachectl(config, "delete-view", "/p/3")["removed"] == 1
    with app.app_context():
        cache.set("_template_fragment_cache_footer", "<footer>")
    assert cachectl(config, "make-fragment-key", "footer", "--delete")["removed"] == 1

    counted = cachectl(config, "clear", "--dry-run")["removed"]
    assert counted == cachectl(config, "clear", "--yes")["removed"] > 0
    assert cachectl(config, "keys", "--count")["count"] == 0
    with app.app_context():
        assert cache.get("item:5") is None
    assert raw.get("unrelated") == b"keep"


def test_every_command_on_a_cluster(cluster: list[ServerProcess]) -> None:
    raw = redis.RedisCluster(host="127.0.0.1", port=cluster[0].port)
    exercise(cluster_config(cluster), raw)
    # Only primaries were asked to scan; replicas never refused a write.
    replicas = [node for node in cluster if redis.Redis(port=node.port).info()["role"] == "slave"]
    assert len(replicas) == 3  # else the check below would check nothing
    for node in replicas:
        calls = redis.Redis(port=node.port).info("commandstats")
        assert "cmdstat_scan" not in calls
        assert calls.get("cmdstat_unlink", {}).get("rejected_calls", 0) == 0


def test_every_command_through_sentinels(sentinel_set: dict) -> None:
    master = redis.Redis(port=sentinel_set["master"].port)
    exercise(sentinel_config(sentinel_set), master)
    description = run(*as_options(sentinel_config(sentinel_set)), "clear", "--dry-run").stdout
    assert "sentinel master 'mymaster'" in description


def test_the_sentinel_password_is_required(sentinel_set: dict) -> None:
    config = {**sentinel_config(sentinel_set), "CACHE_REDIS_SENTINEL_PASSWORD": "wrong"}
    result = run(*as_options(config), "get", "k")
    assert result.exit_code == 3
    assert "wrong" not in result.stderr


def test_a_sentinel_failover_between_two_commands(sentinel_set: dict) -> None:
    config = sentinel_config(sentinel_set)
    cachectl(config, "set", "before", "failover", "--timeout", "0")
    sentinel = redis.Redis(port=sentinel_set["sentinels"][0].port, password=SENTINEL_PASSWORD)
    old_master = sentinel.sentinel_get_master_addr_by_name("mymaster")
    # The replica must have the key before it is promoted.
    replica = redis.Redis(port=sentinel_set["replicas"][0].port)
    deadline = time.monotonic() + 10
    while replica.get("shop_before") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    sentinel.execute_command("SENTINEL", "FAILOVER", "mymaster")
    # Every sentinel must know the new master: one that has not heard yet would send the
    # next write to the old one, which drops it when it becomes a replica (that is Redis's
    # failover window, not cachectl's doing).
    sentinels = [
        redis.Redis(port=s.port, password=SENTINEL_PASSWORD) for s in sentinel_set["sentinels"]
    ]
    deadline = time.monotonic() + 30
    while any(s.sentinel_get_master_addr_by_name("mymaster") == old_master for s in sentinels):
        assert time.monotonic() < deadline, "the sentinels did not fail over"
        time.sleep(0.1)
    # The new master may take a moment to accept writes.
    deadline = time.monotonic() + 15
    while True:
        result = run(*as_options(config), "set", "after", "failover")
        if result.exit_code == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert result.exit_code == 0, result.output
    assert cachectl(config, "get", "before", "after")["ok"] is True


def test_a_primary_failing_during_a_long_clear() -> None:
    """One primary stops answering while it is being swept: exit 3 with a lower bound,
    every time (the keys share a hash slot, so the stalled node is mid-sweep), and a
    second run once it is back finishes the job."""
    nodes = start_redis_cluster(primaries=3, replicas=1)
    try:
        config = cluster_config(nodes)
        raw = redis.RedisCluster(host="127.0.0.1", port=nodes[0].port)
        total = 100_000  # a sweep of seconds: the stop lands while it goes on
        victim_port = raw.get_node_from_key("shop_{one-slot}k0").port
        victim = next(node for node in nodes if node.port == victim_port)
        victim_client = redis.Redis(port=victim.port)
        # One hash slot, so one primary holds them all: filled there, 10,000 a command.
        fill_keys(victim_client, "shop_{{one-slot}}k{}", total)
        process = subprocess.Popen(
            [str(CONSOLE_SCRIPT), "--timeout", "1", *as_options(config), "clear", "--yes"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while victim_client.dbsize() >= total and time.monotonic() < deadline:
            time.sleep(0.002)
        victim.process.send_signal(signal.SIGSTOP)
        try:
            _, stderr = process.communicate(timeout=120)
        finally:
            victim.process.send_signal(signal.SIGCONT)

        assert process.returncode == 3, stderr
        assert b"Traceback" not in stderr
        assert b"(at least " in stderr and b"keys removed before the failure" in stderr

        wait_for_cluster(nodes, timeout=60)
        again = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            again = run_console(*as_options(config), "clear", "--yes")
            if again.returncode == 0:
                break
            time.sleep(0.5)
        assert again is not None and again.returncode == 0, again.stderr
        left = redis.RedisCluster(host="127.0.0.1", port=nodes[0].port)
        assert sum(1 for _ in left.scan_iter(match="shop_*", count=1000)) == 0
    finally:
        for node in nodes:
            node.stop()


def test_a_wrong_sentinel_password_fails_within_the_timeout(sentinel_set: dict) -> None:
    config = {**sentinel_config(sentinel_set), "CACHE_REDIS_SENTINEL_PASSWORD": "wrong"}
    started = time.monotonic()
    result = run_console("--timeout", "1", *as_options(config), "get", "k")
    assert result.returncode == 3, result.stderr
    # One attempt per sentinel, as for data connections: not redis-py's retries.
    assert time.monotonic() - started < 5


def test_no_sentinel_answering_is_one_readable_line() -> None:
    """redis-py's MasterNotFoundError quotes its sentinel client's repr (its pool and every
    option, about 1,500 characters): the error line says what failed and leaves it out."""
    config = {
        "CACHE_TYPE": "RedisSentinelCache",
        "CACHE_REDIS_SENTINELS": [["127.0.0.1", free_port()]],
        "CACHE_REDIS_SENTINEL_MASTER": "mymaster",
    }
    done = run_console(*as_options(config), "get", "k")
    assert done.returncode == 3
    line = done.stderr.decode()
    assert line.count("\n") == 1 and line.startswith("error: "), line
    assert "No master found for 'mymaster'" in line and "Connection refused" in line, line
    assert "<redis." not in line and len(line) < 400, line


class Stored:
    """A class whose instances a cluster's entries hold (check-pickles)."""

    def __init__(self, n: int) -> None:
        self.n = n


def test_check_pickles_on_a_cluster_reads_every_primary(cluster: list[ServerProcess]) -> None:
    config = cluster_config(cluster)
    app, cache = oracle_app(config)
    with app.app_context():
        cache.clear()
        for n in range(300):  # spread over every slot range of the cluster
            cache.set(f"obj:{n}", Stored(n) if n % 3 == 0 else {"n": n})
    found = cachectl(config, "check-pickles")
    assert found["entries"] == 300
    assert {c["name"]: c["entries"] for c in found["classes"]} == {f"{__name__}.Stored": 100}
    gone = cachectl(config, "check-pickles", "--delete", "--class", f"{__name__}.Stored", "--yes")
    assert gone["removed"] == 100
    with app.app_context():
        assert all(cache.get(f"obj:{n}") is None for n in range(0, 300, 3))
        assert cache.get("obj:1") == {"n": 1}
