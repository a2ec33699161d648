"""``--once-per ID``: a fleet of hosts runs one deploy hook, and the change is made once.

Real servers throughout: twenty processes of ``python -m cachectl`` racing on one Redis,
a Redis Cluster, memcached through both client libraries, a FileSystemCache directory.
What an operator notices: which run did the work, what the others said, that the marker
outlives the clear it guards, that a failed run lets a retry run, the claim's lifetime,
and the audit line.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from tests.conftest import RedisTarget, fill_keys, oracle_app, run
from tests.servers import start_redis, start_redis_cluster, start_sentinel_set, stop_all

WORKTREE = Path(__file__).resolve().parent.parent
PREFIX = "app_"
MARKER = f"cachectl-once:{PREFIX}:"


def _command(*args: str) -> list[str]:
    """This checkout's cachectl, as its console script would run it."""
    return [sys.executable, "-m", "cachectl", *args]


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(WORKTREE), **extra}
    env.pop("CACHECTL_ONCE_PER", None)
    return {**env, **extra}


def _console(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _command(*args), capture_output=True, text=True, env=_env(**env), timeout=120
    )


def _lines(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def _target(redis_target: RedisTarget) -> list[str]:
    return ["--url", redis_target.url, "--key-prefix", PREFIX]


# Redis ---------------------------------------------------------------------------------------


def test_twenty_concurrent_runs_one_clears_and_nineteen_name_it(
    tmp_path: Path, redis_target: RedisTarget
) -> None:
    client = redis_target.client
    fill_keys(client, PREFIX + "page:{}", 500)
    log = tmp_path / "audit.jsonl"
    args = [*_target(redis_target), "--audit-log", str(log), "--once-per", "release-42"]
    processes = [
        subprocess.Popen(
            _command(*args, "--json", "clear", "--yes"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for _ in range(20)
    ]
    results = {
        process.pid: (*process.communicate(timeout=120), process.returncode)
        for process in processes
    }

    assert all(code == 0 for _, _, code in results.values()), results
    documents = {pid: json.loads(out) for pid, (out, _, _) in results.items()}
    workers = [pid for pid, document in documents.items() if "removed" in document]
    assert len(workers) == 1, documents
    (worker,) = workers
    assert documents[worker]["removed"] == 500
    skipped = [document for pid, document in documents.items() if pid != worker]
    assert len(skipped) == 19
    for document in skipped:
        assert document["done"] is False
        assert document["once_per"]["claimed"] is False
        claimant = document["once_per"]["claimed_by"]
        assert claimant["pid"] == worker and claimant["host"] and claimant["user"]
        assert claimant["command"].endswith("--json clear --yes")
    assert client.dbsize() == 1  # the marker alone

    lines = _lines(log)
    assert len(lines) == 20
    claimed = [line for line in lines if line["once_per"]["claimed"]]
    assert len(claimed) == 1 and claimed[0]["pid"] == worker
    assert claimed[0]["done"]["removed"] == 500
    assert all(
        line["once_per"]["claimed_by"]["pid"] == worker for line in lines if line is not claimed[0]
    )


def test_the_others_say_who_claimed_it_on_one_line(redis_target: RedisTarget) -> None:
    redis_target.client.set(PREFIX + "k", b"!\x80\x05N.")
    first = _console(*_target(redis_target), "--once-per", "r1", "delete", "k")
    assert first.returncode == 0 and "deleted 1 key" in first.stdout, first.stderr
    again = _console(*_target(redis_target), "--once-per", "r1", "set", "k", "secret-value")
    assert again.returncode == 0
    (line,) = again.stderr.splitlines()
    assert line.startswith("--once-per 'r1': claimed by ")
    assert "(pid " in line and "delete k; nothing done" in line
    assert redis_target.client.get(PREFIX + "k") is None  # the set did not run


def test_the_marker_outlives_every_clear_cachectl_makes_and_the_apps_own(
    redis_target: RedisTarget,
) -> None:
    client = redis_target.client
    target = _target(redis_target)
    assert run(*target, "--once-per", "v2", "set", "a", "1").exit_code == 0
    assert client.exists(MARKER + "v2")
    for clear in (
        ["clear", "--yes"],
        ["clear", "--yes", "--exclude", "nothing*", "--allow-unmatched-exclude"],
        ["delete", "--pattern", "*", "--yes"],
    ):
        assert run(*target, *clear).exit_code == 0
        assert client.exists(MARKER + "v2"), clear
    app, cache = oracle_app(
        {
            "CACHE_TYPE": "RedisCache",
            "CACHE_REDIS_URL": redis_target.url,
            "CACHE_KEY_PREFIX": PREFIX,
        }
    )
    with app.app_context():
        cache.set("b", 2)
        cache.clear()  # Flask-Caching's own: the keys under its prefix
    assert client.exists(MARKER + "v2")
    skipped = run(*target, "--once-per", "v2", "set", "a", "1")
    assert skipped.exit_code == 0 and "nothing done" in skipped.stderr
    assert client.get(PREFIX + "a") is None


def test_a_prefix_the_marker_name_begins_with_gets_a_name_outside_it(
    redis_target: RedisTarget,
) -> None:
    """Prefix ``cache``: ``cachectl-once:...`` would be one of its keys, so a clear would
    take it; the marker is spelled ``~cachectl-once:...`` instead."""
    client = redis_target.client
    target = ["--url", redis_target.url, "--key-prefix", "cache"]
    assert run(*target, "--once-per", "v1", "set", "x", "1").exit_code == 0
    assert client.exists("~cachectl-once:cache:v1") and not client.exists("cachectl-once:cache:v1")
    assert run(*target, "clear", "--yes").exit_code == 0
    assert client.keys("*") == [b"~cachectl-once:cache:v1"]


def test_the_claim_lives_once_ttl_seconds(redis_target: RedisTarget) -> None:
    client = redis_target.client
    assert run(*_target(redis_target), "--once-per", "a", "set", "k", "v").exit_code == 0
    assert 7 * 86400 * 1000 - 60_000 < client.pttl(MARKER + "a") <= 7 * 86400 * 1000
    done = run(*_target(redis_target), "--once-per", "b", "--once-ttl", "120", "set", "k", "v")
    assert done.exit_code == 0
    assert 119_000 < client.pttl(MARKER + "b") <= 120_000
    record = json.loads(client.get(MARKER + "b"))
    assert record["expires"] - time.time() == pytest.approx(120, abs=5)
    assert record["command"].endswith("--once-ttl 120 set k '<value>'")  # masked as logged


def test_a_failed_run_gives_its_claim_back_and_the_retry_runs(
    tmp_path: Path, redis_target: RedisTarget
) -> None:
    client = redis_target.client
    log = tmp_path / "audit.jsonl"
    args = [*_target(redis_target), "--audit-log", str(log), "--once-per", "fix-1"]
    failed = run(*args, "expire", "missing", "60")  # exit 1: not found
    assert failed.exit_code == 1
    assert not client.exists(MARKER + "fix-1")
    client.set(PREFIX + "missing", b"!\x80\x05N.")
    assert run(*args, "expire", "missing", "60").exit_code == 0
    assert 0 < client.ttl(PREFIX + "missing") <= 60
    assert client.exists(MARKER + "fix-1")
    first, second = _lines(log)
    assert first["exit_code"] == 1
    assert first["once_per"] == {"id": "fix-1", "ttl": 604800, "claimed": True, "released": True}
    assert second["once_per"] == {"id": "fix-1", "ttl": 604800, "claimed": True}


def test_a_run_stopped_by_a_signal_gives_its_claim_back() -> None:
    server = start_redis("--enable-debug-command", "yes")
    try:
        client = redis.Redis(port=server.port)
        client.execute_command("DEBUG", "POPULATE", 400_000, "big_", 1)
        args = ["--url", f"redis://127.0.0.1:{server.port}/0", "--key-prefix", "big_"]
        process = subprocess.Popen(
            _command(*args, "--once-per", "deploy-9", "clear", "--yes"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(),
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
            client.exists("cachectl-once:big_:deploy-9") and client.dbsize() < 400_001
        ):
            time.sleep(0.005)
        assert process.poll() is None, "the run ended before the signal: more keys are needed"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 143, stderr
        assert not client.exists("cachectl-once:big_:deploy-9")
        retry = _console(*args, "--once-per", "deploy-9", "clear", "--yes")
        assert retry.returncode == 0 and client.keys("big_*") == []
    finally:
        server.stop()


def test_a_release_leaves_a_claim_that_is_no_longer_its_own(redis_target: RedisTarget) -> None:
    """The claim expired and another run took it: giving back ours must not remove theirs."""
    from cachectl.backends.redis import RedisBackend
    from cachectl.operations import once

    backend = RedisBackend.for_client(redis_target.client, PREFIX, 300)
    held = once.claim(backend, "r", 60, ["clear"])
    assert held.claimed
    redis_target.client.set(MARKER + "r", b'{"pid": 1}')
    assert once.release(backend, held) is False
    assert redis_target.client.get(MARKER + "r") == b'{"pid": 1}'


def test_dry_runs_never_claim_and_reads_refuse_or_ignore_it(redis_target: RedisTarget) -> None:
    client = redis_target.client
    target = _target(redis_target)
    assert run(*target, "--once-per", "x", "clear", "--dry-run").exit_code == 0
    assert not client.exists(MARKER + "x")
    refused = run(*target, "--once-per", "x", "stats")
    assert refused.exit_code == 2
    assert refused.stderr.strip() == (
        "error: --once-per guards a command that changes the cache; stats as given changes "
        "nothing: leave --once-per out"
    )
    # A deploy hook exports it for every command, reads included: they run.
    read = _console(*target, "stats", CACHECTL_ONCE_PER="x")
    assert read.returncode == 0, read.stderr
    assert not client.exists(MARKER + "x")
    assert run(*target, "--cache", "all", "--once-per", "x", "clear", "--yes").exit_code == 2


def test_a_batch_claims_once_for_all_its_lines(redis_target: RedisTarget) -> None:
    target = _target(redis_target)
    lines = "set a 1\nset b 2\ndelete a\n"
    assert run(*target, "--once-per", "b1", "batch", "-", input=lines).exit_code == 0
    assert redis_target.client.get(PREFIX + "b") is not None
    redis_target.client.delete(PREFIX + "b")
    again = run(*target, "--once-per", "b1", "batch", "-", input=lines)
    assert again.exit_code == 0 and "nothing done" in again.stderr
    assert not redis_target.client.exists(PREFIX + "b")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--once-per", ""),
        ("--once-per", "   "),
        ("--once-per", "rel\n1"),
        ("--once-per", "rel\x1b[2J"),
        ("--once-per", "x" * 201),
        ("--once-per", "x" * 70_000),
        ("--once-ttl", "0"),
        ("--once-ttl", "-5"),
        ("--once-ttl", "nan"),
        ("--once-ttl", "1e3"),
        ("--once-ttl", str(30 * 86400 + 1)),
        ("--once-ttl", "99999999999999999999999"),
    ],
)
def test_hostile_ids_and_lifetimes_stop_before_anything(
    redis_target: RedisTarget, option: str, value: str
) -> None:
    other = ["--once-per", "ok"] if option == "--once-ttl" else []
    done = _console(*_target(redis_target), *other, option, value, "set", "k", "v")
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr
    assert "\x1b" not in done.stderr
    assert redis_target.client.keys("*") == []


def test_an_id_that_is_not_utf8_from_the_environment_is_refused(redis_target: RedisTarget) -> None:
    env = _env()
    env_bytes = {k.encode(): v.encode() for k, v in env.items()}
    env_bytes[b"CACHECTL_ONCE_PER"] = b"rel-\xff"
    done = subprocess.run(
        _command(*_target(redis_target), "set", "k", "v"), capture_output=True, env=env_bytes
    )
    assert done.returncode == 2 and b"not UTF-8" in done.stderr
    assert redis_target.client.keys("*") == []


def test_a_cluster_claims_once() -> None:
    nodes = start_redis_cluster(primaries=3, replicas=0)
    try:
        client = redis.RedisCluster(host="127.0.0.1", port=nodes[0].port)
        config = [
            "-o", "CACHE_TYPE=RedisClusterCache",
            "-o", f"CACHE_REDIS_CLUSTER=127.0.0.1:{nodes[0].port}", "--key-prefix", PREFIX,
        ]  # fmt: skip
        for n in range(30):
            client.set(f"{PREFIX}{n}", b"!\x80\x05N.")
        done = run(*config, "--once-per", "c1", "--json", "clear", "--yes")
        assert json.loads(done.stdout)["removed"] == 30, done.output
        client.set(f"{PREFIX}new", b"!\x80\x05N.")
        again = run(*config, "--once-per", "c1", "--json", "clear", "--yes")
        assert json.loads(again.stdout)["once_per"]["claimed"] is False
        assert client.exists(f"{PREFIX}new") and client.exists(MARKER + "c1")
        client.close()
    finally:
        for node in nodes:
            node.stop()


# memcached -----------------------------------------------------------------------------------


def _mc(address: str) -> list[str]:
    return [
        "--type",
        "MemcachedCache",
        "-o",
        f'CACHE_MEMCACHED_SERVERS=["{address}"]',
        "--key-prefix",
        PREFIX,
    ]


def test_memcached_claims_with_add_and_keeps_it_through_clear(
    memcached_address: str, library: str
) -> None:
    args = _mc(memcached_address)
    assert run(*args, "set", "a", "1").exit_code == 0
    done = run(*args, "--once-per", "m1", "delete", "a")
    assert done.exit_code == 0, done.output
    app, cache = oracle_app(
        {
            "CACHE_TYPE": "MemcachedCache",
            "CACHE_MEMCACHED_SERVERS": [memcached_address],
            "CACHE_KEY_PREFIX": PREFIX,
        }
    )
    with app.app_context():
        cache.set("a", "back")
    assert run(*args, "clear", "--yes").exit_code == 0  # by prefix, through the crawler
    skipped = run(*args, "--json", "--once-per", "m1", "delete", "a")
    assert skipped.exit_code == 0
    document = json.loads(skipped.stdout)
    assert document["once_per"]["claimed_by"]["command"].endswith("--once-per m1 delete a")
    # A failed run gives it back: the retry runs.
    failed = run(*args, "--once-per", "m2", "expire", "missing", "60")
    assert failed.exit_code == 1
    with app.app_context():
        cache.set("missing", "v")
    assert run(*args, "--once-per", "m2", "expire", "missing", "60").exit_code == 0
    assert "nothing done" in run(*args, "--once-per", "m2", "expire", "missing", "60").stderr
    # Emptying the whole server removes the marker with it: it is written again.
    flushed = run(*args, "--once-per", "m3", "clear", "--flush-all", "--yes")
    assert flushed.exit_code == 0, flushed.output
    with app.app_context():
        cache.set("a", "after")
    again = run(*args, "--once-per", "m3", "clear", "--flush-all", "--yes")
    assert again.exit_code == 0 and "nothing done" in again.stderr
    with app.app_context():
        assert cache.get("a") == "after"


# FileSystemCache ---------------------------------------------------------------------------


def test_filesystem_claims_with_an_exclusive_file_that_clear_prune_and_keys_leave(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "cache"
    directory.mkdir()
    args = ["--dir", str(directory)]
    assert run(*args, "set", "a", "1").exit_code == 0
    assert run(*args, "--once-per", "f1", "clear", "--yes").exit_code == 0
    (marker,) = [
        path
        for path in directory.iterdir()
        if path.name.startswith("cachectl-once.") and not path.name.endswith(".lock")
    ]
    assert stat.S_IMODE(marker.stat().st_mode) == 0o600
    assert json.loads(marker.read_text())["command"].endswith("--once-per f1 clear --yes")
    assert run(*args, "set", "b", "2").exit_code == 0
    for command in (["clear", "--yes"], ["prune"]):
        assert run(*args, *command).exit_code == 0
        assert marker.exists(), command
    assert run(*args, "set", "c", "3").exit_code == 0
    assert json.loads(run(*args, "--json", "stats").stdout)["total"] == 1
    skipped = run(*args, "--once-per", "f1", "delete", "c")
    assert skipped.exit_code == 0 and "nothing done" in skipped.stderr
    assert run(*args, "get", "c").stdout.strip() == "3"


def test_filesystem_the_apps_own_clear_removes_the_marker(tmp_path: Path) -> None:
    """Documented: cachelib's FileSystemCache.clear() removes every file of the directory
    but its count file, the marker too; the next run with the ID then runs again."""
    directory = tmp_path / "cache"
    directory.mkdir()
    assert run("--dir", str(directory), "--once-per", "f2", "set", "a", "1").exit_code == 0
    app, cache = oracle_app({"CACHE_TYPE": "FileSystemCache", "CACHE_DIR": str(directory)})
    with app.app_context():
        cache.clear()
    assert not list(directory.glob("cachectl-once.[0-9a-f]*"))
    assert (
        "nothing done"
        not in run("--dir", str(directory), "--once-per", "f2", "set", "a", "1").stderr
    )


def test_filesystem_an_expired_claim_is_taken_over(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    directory.mkdir()
    args = ["--dir", str(directory), "--once-ttl", "1"]
    assert run(*args, "--once-per", "f3", "set", "a", "1").exit_code == 0
    # Claimed (that a claimed ID skips is the other tests' part: here a second run could
    # come after the second has passed on a loaded machine).
    assert list(directory.glob("cachectl-once.[0-9a-f]*"))
    time.sleep(1.2)
    again = run(*args, "--once-per", "f3", "set", "a", "3")
    assert again.exit_code == 0 and "nothing done" not in again.stderr
    assert run("--dir", str(directory), "get", "a").stdout.strip() == "3"


def test_filesystem_a_link_planted_at_the_marker_is_refused(tmp_path: Path) -> None:
    from cachectl.backends.once_markers import marker_file_name

    directory = tmp_path / "cache"
    directory.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    (directory / marker_file_name("f4")).symlink_to(victim)
    done = run("--dir", str(directory), "--once-per", "f4", "set", "a", "1")
    assert done.exit_code == 2, done.output
    assert victim.read_text() == "keep me"
    assert run("--dir", str(directory), "get", "a").exit_code != 0


def test_a_clear_of_the_whole_database_writes_its_claim_again(redis_target: RedisTarget) -> None:
    """``clear --flush-db`` empties the database, the marker with it: the marker is
    written again after the work, so the next host still skips."""
    client = redis_target.client
    args = ["--url", redis_target.url, "-o", "CACHE_KEY_PREFIX=", "--once-per", "db1"]
    client.set("anything", b"1")
    done = run(*args, "clear", "--flush-db", "--yes")
    assert done.exit_code == 0, done.output
    assert client.keys("*") == [b"cachectl-once::db1"]
    assert client.pttl("cachectl-once::db1") > 600_000_000
    client.set("anything", b"1")
    skipped = run(*args, "clear", "--flush-db", "--yes")
    assert skipped.exit_code == 0 and "nothing done" in skipped.stderr
    assert client.exists("anything")


def test_invalidate_claims_once_on_the_cache_its_groups_act_on(
    tmp_path: Path, redis_target: RedisTarget
) -> None:
    config = tmp_path / "cachectl.toml"
    config.write_text(
        f'CACHE_TYPE = "RedisCache"\nCACHE_REDIS_URL = "{redis_target.url}"\n'
        f'CACHE_KEY_PREFIX = "{PREFIX}"\n[groups.reports]\npatterns = ["report:*"]\n'
    )
    client = redis_target.client
    fill_keys(client, PREFIX + "report:{}", 10)
    args = ["--config", str(config), "--once-per", "inv-1", "invalidate", "reports", "--yes"]
    done = _console(*args)
    assert done.returncode == 0, done.stderr
    assert client.keys(PREFIX + "report:*") == [] and client.exists(MARKER + "inv-1")
    fill_keys(client, PREFIX + "report:{}", 10)
    skipped = _console(*args)
    assert skipped.returncode == 0 and "nothing done" in skipped.stderr
    assert len(client.keys(PREFIX + "report:*")) == 10


def test_a_sentinel_claims_once_on_the_master_and_hides_its_password() -> None:
    started = start_sentinel_set("sentinel-pw-9", replicas=0, sentinels=1)
    try:
        sentinel = started["sentinels"][0]
        options = [
            "-o", "CACHE_TYPE=RedisSentinelCache",
            "-o", f'CACHE_REDIS_SENTINELS=[["127.0.0.1", {sentinel.port}]]',
            "-o", "CACHE_REDIS_SENTINEL_MASTER=mymaster",
            "-o", "CACHE_REDIS_SENTINEL_PASSWORD=sentinel-pw-9",
            "--key-prefix", PREFIX,
        ]  # fmt: skip
        master = redis.Redis(port=started["master"].port)
        master.set(PREFIX + "k", b"!\x80\x05N.")
        assert run(*options, "--once-per", "s1", "delete", "k").exit_code == 0
        assert not master.exists(PREFIX + "k")
        record = master.get(MARKER + "s1")
        assert record is not None and b"sentinel-pw-9" not in record
        master.set(PREFIX + "k", b"!\x80\x05N.")
        skipped = run(*options, "--once-per", "s1", "delete", "k")
        assert skipped.exit_code == 0 and "nothing done" in skipped.stderr
        assert "sentinel-pw-9" not in skipped.stderr and master.exists(PREFIX + "k")
    finally:
        stop_all(started)
