"""The clear's time-budgeted steps, as an operator would notice them.

Each call of the sweep's Lua step loops SCAN + UNLINK until its budget (about
a millisecond) of the server's clock has passed, so a large clear takes a round
trip per budget rather than one per thousand keys, and no step holds the server
much longer than the budget: another client's PING stays quick. The server's
own records say so exactly (SLOWLOG holds every command with its duration when
told to log them all, the script's inner SCANs before the script's own entry),
where the client's PING adds the machine's scheduling on top. The UNLINKs reach a
replica (the step reads the server's clock, so it is replicated by its effects),
and a user who may not read the clock is cleared client-side, as one who may not
run scripts.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable

import pytest
import redis

from cachectl.backends.redis_scripts import STEP_BUDGET_US
from tests.conftest import CONSOLE_SCRIPT, fill_keys, run
from tests.scripted_paths import assert_not_one_scan_a_call, log_every_command, scripted_steps
from tests.servers import ServerProcess, start_redis

APP_KEYS = 150_000
OTHER_KEYS = 50_000


class Pinger(threading.Thread):
    """Another client of the server, PINGing every millisecond: what it waits."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis(port=port)
        self.client.ping()
        self.waits: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            self.client.ping()
            self.waits.append((time.perf_counter() - started) * 1000)
            time.sleep(0.001)


@pytest.mark.parametrize("excluding", [False, True], ids=["clear", "clear-exclude"])
def test_a_large_clear_takes_long_steps_and_other_clients_barely_wait(
    own_redis: tuple[ServerProcess, redis.Redis], excluding: bool
) -> None:
    server, client = own_redis
    fill_keys(client, "app_{}", APP_KEYS)
    fill_keys(client, "app_keep:{}", 500)
    fill_keys(client, "other_{}", OTHER_KEYS)
    log_every_command(client)  # every command, with its duration
    client.config_resetstat()
    excludes = ["--exclude", "keep:*"] if excluding else []

    pinger = Pinger(server.port)
    pinger.start()
    started = time.perf_counter()
    done = subprocess.run(
        [str(CONSOLE_SCRIPT), "--url", f"redis://127.0.0.1:{server.port}/0", "--key-prefix",
         "app_", "--json", "clear", *excludes, "--yes"],
        capture_output=True, timeout=120,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    pinger.stop.set()
    pinger.join()

    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["removed"] == APP_KEYS + (0 if excluding else 500)
    assert client.dbsize() == OTHER_KEYS + (500 if excluding else 0)

    calls = scripted_steps(client)
    steps = [call.us / 1000 for call in calls]  # ms
    scans = client.info("commandstats")["cmdstat_scan"]["calls"]
    assert sum(call.scans for call in calls) == scans, (calls[:20], scans)  # all in scripts
    budget = STEP_BUDGET_US / 1000
    # Steps run for their budget, not for a fixed number of keys: a round trip carries
    # several of the script's SCANs (four or five here, fewer where load slows them),
    assert_not_one_scan_a_call(calls, STEP_BUDGET_US)
    assert sorted(steps)[len(steps) // 2] >= budget / 2, sorted(steps)
    # and none holds the server much past it (docs/performance.md's pause bound: 10 ms).
    assert max(steps) <= 10, sorted(steps)[-10:]
    # The other client: a typical PING waits no longer than a step or two; the
    # worst adds this machine's scheduling (37 ms once, with another lane's tests on
    # both cores), yet stays far below what one blocking call for the whole clear would
    # make it wait. The absolute figure (worst PING under 10 ms) is the bench's, on an
    # idle machine: bench/clear_bench.py.
    waits = sorted(pinger.waits)
    assert len(waits) > 20 and waits[len(waits) // 2] <= 4 * budget, waits
    assert waits[-1] <= seconds * 1000 / 5, (waits[-10:], seconds)


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_the_steps_reach_a_replica(own_redis: tuple[ServerProcess, redis.Redis]) -> None:
    server, client = own_redis
    client.config_set("repl-diskless-sync-delay", 0)  # the first sync at once, not in 5 s
    replica_server = start_redis("--replicaof", "127.0.0.1", str(server.port))
    try:
        replica = redis.Redis(port=replica_server.port)
        fill_keys(client, "app_{}", 30_000)
        fill_keys(client, "other_{}", 5_000)
        _wait_for(lambda: replica.dbsize() == 35_000, "the replica's first sync")

        done = run("--url", f"redis://127.0.0.1:{server.port}/0", "--key-prefix", "app_",
                   "clear", "--yes")  # fmt: skip
        assert "removed 30,000 keys" in done.stdout, done.output

        _wait_for(lambda: replica.dbsize() == 5_000, "the replica to follow the clear")
        assert not list(replica.scan_iter(match="app_*", count=10_000))
        assert replica.info("replication")["master_link_status"] == "up"
    finally:
        replica_server.stop()


def test_a_user_who_may_not_read_the_clock_is_cleared_client_side(
    own_redis: tuple[ServerProcess, redis.Redis],
) -> None:
    server, client = own_redis
    client.execute_command("ACL", "SETUSER", "noclock", "on", ">pw", "~*", "+@all", "-time")
    fill_keys(client, "app_{}", 5_000)
    fill_keys(client, "other_{}", 1_000)
    url = f"redis://noclock:pw@127.0.0.1:{server.port}/0"

    counted = run("--url", url, "--key-prefix", "app_", "--json", "clear", "--dry-run")
    assert json.loads(counted.stdout)["removed"] == 5_000, counted.output
    done = run("--url", url, "--key-prefix", "app_", "--debug", "clear", "--yes")
    assert done.exit_code == 0, done.output
    assert "removed 5,000 keys" in done.stdout
    assert "the server runs no script" in done.stderr  # refused at the first step
    assert client.dbsize() == 1_000


@pytest.mark.parametrize("pool_class", [redis.ConnectionPool, redis.BlockingConnectionPool])
def test_a_pool_of_one_connection_takes_the_lanes_in_turn(
    own_redis: tuple[ServerProcess, redis.Redis], pool_class: type
) -> None:
    """An app's client may allow one connection: the second lane then waits for the
    first (a blocking pool would otherwise wait for a connection that never frees)."""
    from cachectl.backends.redis import RedisBackend

    server, client = own_redis
    fill_keys(client, "app_{}", 20_000)
    fill_keys(client, "other_{}", 1_000)
    waits = {"timeout": 2} if pool_class is redis.BlockingConnectionPool else {}
    pool = pool_class(port=server.port, max_connections=1, **waits)
    backend = RedisBackend.for_client(redis.Redis(connection_pool=pool), "app_", 300)

    started = time.monotonic()
    assert backend.clear(dry_run=False) == 20_000
    assert time.monotonic() - started < 2
    assert client.dbsize() == 1_000
