"""Sweeps at scale: the server-side path, the fallback without scripting, pattern
operations, keys, stats, and a lost connection mid-way. Each test that inspects the
server's command statistics gets a server of its own."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import redis

from tests.conftest import CONSOLE_SCRIPT, RedisTarget, fill_keys, oracle_app, run, run_console


def command_calls(client: redis.Redis) -> dict[str, int]:
    return {name: stats["calls"] for name, stats in client.info("commandstats").items()}


def test_clear_runs_server_side_and_never_sends_keys(own_redis) -> None:
    server, client = own_redis
    fill_keys(client, "app_{}", 20_000)
    fill_keys(client, "other_{}", 5_000)

    result = run(
        "--url", f"redis://127.0.0.1:{server.port}/0", "--key-prefix", "app_", "clear", "--yes"
    )

    assert "removed 20,000 keys" in result.stdout
    calls = command_calls(client)
    # The script's text goes once (EVAL), then its digest (EVALSHA); how many steps
    # the time budget makes is tests/test_sweep_budget.py's business.
    assert calls.get("cmdstat_eval", 0) == 1 and calls.get("cmdstat_evalsha", 0) >= 1
    assert "cmdstat_keys" not in calls
    assert client.dbsize() == 5_000


def test_clear_falls_back_when_the_server_refuses_scripts(own_redis) -> None:
    server, client = own_redis
    client.execute_command("ACL", "SETUSER", "default", "-@scripting")
    fill_keys(client, "app_{}", 20_000)
    fill_keys(client, "other_{}", 5_000)

    dry = run(
        "--url", f"redis://127.0.0.1:{server.port}/0", "--key-prefix", "app_", "clear", "--dry-run"
    )
    assert "would remove 20,000 keys" in dry.stdout
    done = run(
        "--url", f"redis://127.0.0.1:{server.port}/0", "--key-prefix", "app_", "clear", "--yes"
    )
    assert "removed 20,000 keys" in done.stdout, done.output

    calls = command_calls(client)
    assert calls.get("cmdstat_unlink", 0) >= 20
    assert "cmdstat_keys" not in calls
    assert client.dbsize() == 5_000


def test_pattern_delete_matches_after_the_prefix_only(redis_target: RedisTarget) -> None:
    client = redis_target.client
    fill_keys(client, "shop[1]_view//p/{}", 1500)
    fill_keys(client, "shop[1]_report:{}", 10)
    fill_keys(client, "shop1_view//p/{}", 10)  # would match if the prefix's [1] were a class
    fill_keys(client, "view//p/{}", 10)  # unprefixed
    args = ["--url", redis_target.url, "--key-prefix", "shop[1]_"]

    counted = run(*args, "--json", "delete", "--pattern", "view//p/*", "--dry-run")
    assert json.loads(counted.stdout)["removed"] == 1500
    refused = run(*args, "delete", "--pattern", "view//p/*")
    assert refused.exit_code == 2 and "--yes" in refused.stderr

    done = run(*args, "delete", "--pattern", "view//p/*", "--yes")
    assert "removed 1,500 keys" in done.stdout
    assert client.dbsize() == 30
    assert len(client.keys("shop[[]1]_report:*")) == 10


def test_clear_pattern_is_the_same_operation(redis_target: RedisTarget) -> None:
    fill_keys(redis_target.client, "flask_cache_view//{}", 30)
    fill_keys(redis_target.client, "flask_cache_other{}", 5)
    result = run("--url", redis_target.url, "--json", "clear", "--pattern", "view//*", "--yes")
    assert json.loads(result.stdout)["removed"] == 30
    assert redis_target.client.dbsize() == 5


def test_keys_streams_names_without_the_prefix(redis_target: RedisTarget) -> None:
    fill_keys(redis_target.client, "flask_cache_view//{}", 50)
    fill_keys(redis_target.client, "flask_cache_x{}", 5)
    fill_keys(redis_target.client, "not_ours{}", 5)
    url = ["--url", redis_target.url]

    listed = run(*url, "keys", "view//*").stdout.split()
    assert sorted(listed) == sorted(f"view//{n}" for n in range(50))
    assert len(run(*url, "keys", "--limit", "7").stdout.split()) == 7
    assert run(*url, "keys", "--count").stdout == "55\n"
    assert sorted(json.loads(run(*url, "--json", "keys", "x*").stdout)["keys"]) == [
        f"x{n}" for n in range(5)
    ]


def test_keys_on_the_filesystem_says_it_cannot_list_but_counts(tmp_path: Path) -> None:
    run("--dir", str(tmp_path), "set", "a", "1")
    run("--dir", str(tmp_path), "set", "b", "2")
    listing = run("--dir", str(tmp_path), "keys")
    assert listing.exit_code == 2
    assert "cannot list its keys" in listing.stderr
    assert run("--dir", str(tmp_path), "keys", "--count").stdout == "2\n"


def test_stats_recognises_what_flask_caching_stored(redis_target: RedisTarget, tmp_path) -> None:
    app, cache = oracle_app(
        {"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": redis_target.url, "CACHE_KEY_PREFIX": "s_"}
    )

    @cache.memoize(timeout=0)
    def square(n):
        return n * n

    @app.route("/page/<int:n>")
    @cache.cached(timeout=30)
    def page(n):
        return str(n)

    with app.app_context():
        for n in range(40):
            square(n)
        cache.set("_template_fragment_cache_sidebar", "<aside>", timeout=7200)
        cache.set("plain", 1, timeout=200_000)
    client = app.test_client()
    for n in range(10):
        client.get(f"/page/{n}")

    document = json.loads(
        run("--url", redis_target.url, "--key-prefix", "s_", "--json", "stats").stdout
    )

    assert document["total"] == 40 + 1 + 10 + 1 + 1
    assert document["kinds"] == {
        "memoize entries": 40,
        "memoize versions": 1,
        "views": 10,
        "fragments": 1,
        "other": 1,
    }
    assert document["ttl"]["no expiry"] == 41
    assert document["ttl"]["< 1 minute"] == 10
    assert document["ttl"]["< 1 day"] == 1 and document["ttl"][">= 1 day"] == 1
    assert document["memory"]["estimated_total_bytes"] > 0

    sampled = json.loads(
        run(
            "--url", redis_target.url, "--key-prefix", "s_", "--json", "stats", "--sample", "5"
        ).stdout
    )
    assert sampled["total"] == 53 and sampled["examined"] == 5 and sampled["estimated"] is True


def test_lost_connection_mid_clear_exits_3_with_the_count(own_redis) -> None:
    server, client = own_redis
    fill_keys(client, "big_{}", 400_000)
    process = subprocess.Popen(
        [str(CONSOLE_SCRIPT), "--url", f"redis://127.0.0.1:{server.port}/0", "--key-prefix", "big_",
         "clear", "--yes"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while client.dbsize() == 400_000 and time.monotonic() < deadline:
        time.sleep(0.005)
    server.process.send_signal(signal.SIGKILL)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 3, stderr
    assert b"Traceback" not in stderr
    # The server may have run the step whose reply was lost: a lower bound, said so.
    assert b"(at least " in stderr and b"keys removed before the failure" in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_no_prompt_and_no_traceback_for_patterns_on_memcached(memcached_address: str) -> None:
    result = run_console(
        "--type", "MemcachedCache", "-o", f'CACHE_MEMCACHED_SERVERS=["{memcached_address}"]',
        "delete", "--pattern", "x*", "--yes",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr  # the LRU crawler lists memcached's keys
    assert result.stdout.startswith(b"removed 0 keys") and b"Traceback" not in result.stderr


def test_memcached_clears_of_100k_keys_never_wait_on_their_own_dump() -> None:
    """memcached's crawler can hold a lock a delete needs while its client is not reading.
    Streamed (deleting between reads of the dump), the second of these clears stalled
    after 7,000 keys until the timeout; the dump is now read whole before any delete."""
    import sys

    import memcache

    from tests.servers import start_memcached

    server = start_memcached()
    address = f"127.0.0.1:{server.port}"
    without_pylibmc = (
        "import sys; sys.modules['pylibmc'] = None; sys.argv[0] = 'cachectl'; "
        "from cachectl.cli import main; main()"
    )
    try:
        writer = memcache.Client([address])
        for command in ([str(CONSOLE_SCRIPT)], [sys.executable, "-c", without_pylibmc]):
            for start in range(0, 100_000, 5000):
                writer.set_multi({f"flask_cache_k{n}": "v" for n in range(start, start + 5000)})
            servers = f'CACHE_MEMCACHED_SERVERS=["{address}"]'
            done = subprocess.run(
                [*command, "--type", "MemcachedCache", "-o", servers, "--timeout", "2",
                 "clear", "--yes"],
                capture_output=True, timeout=120,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            assert done.stdout.startswith(b"removed 100,000 keys"), done.stdout
        writer.disconnect_all()
    finally:
        server.stop()
