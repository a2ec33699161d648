"""clear --exclude GLOB: what an app keeps under its cache's prefix (sessions, rate
limits) survives a clear, on a plain server (the sweep's Lua step), on a server
without scripting (the client-side step) and on a cluster; backends that cannot
apply a glob, and --flush-db, refuse.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cachectl.backends.base import escape_glob
from cachectl.backends.exclusions import Exclusions
from tests.conftest import RedisTarget, run
from tests.servers import ServerProcess, start_redis, start_redis_cluster
from tests.test_console import _run_on_terminal

PREFIX = "app[1]_"  # glob characters in the prefix: escaped, as keys and delete --pattern do

#: Rests of keys (after the prefix) that globs could confuse, the empty one included.
TRICKY = [
    "", "a", "ab", "abc", "a*b", "a[b", "a]b", "a\\b", "a\\", "a?b", "a-b", "aXbXc", "x-y",
    "x^y", "]", "^", "-", "Session:1", "sessionX", "view//p/1", "é-key", "ü",
    "aba", "ababa",
]  # fmt: skip
RAW_TRICKY = [b"\xff\xfe", b"a\x00b"]

#: Globs, read as SCAN MATCH reads them: each must keep exactly what SCAN MATCH finds.
GLOBS = [
    "*", "?", "a*", "a\\*b", "a[*]b", "a[[]b", "a[]]b", "a[^b]*", "[a-c]*", "[c-a]*",
    "x[\\-]y", "x[-]y", "x[\\^]y", "*b*c", "a*b*c*", "???", "a?b", "a\\?b", "\\a*", "é*",
    "[^a]*", "a\\", "[]a]*", "a[\\]]b", "[^^]", "*-*", "[A-Z]*", "a\x00b",
    "*aba*aba*", "*ab*ba", "*ba",
]  # fmt: skip


def target_args(url: str, *extra: str) -> list[str]:
    return ["--url", url, "--key-prefix", PREFIX, *extra]


def fill(client: redis.Redis | redis.RedisCluster, cache_keys: int = 200) -> None:
    """The app's cache, its sessions and rate limits under the same prefix, and a
    key of another app."""
    pipe = client.pipeline(transaction=False)
    for n in range(cache_keys):
        pipe.set(f"{PREFIX}view//page/{n}", b"!")
    for n in range(30):
        pipe.set(f"{PREFIX}session:{n:04x}", b"user")
    for n in range(5):
        pipe.set(f"{PREFIX}LIMITER/10.0.0.{n}/per-minute", b"3")
    pipe.set("other_app_key", b"stays")
    pipe.execute()


def survivors(client: redis.Redis | redis.RedisCluster) -> set[bytes]:
    return set(client.scan_iter(count=1000))


KEPT = (
    {f"{PREFIX}session:{n:04x}".encode() for n in range(30)}
    | {f"{PREFIX}LIMITER/10.0.0.{n}/per-minute".encode() for n in range(5)}
    | {b"other_app_key"}
)


def clear_json(url: str, *args: str, scripted: bool | None = None) -> dict:
    """clear's JSON document; ``scripted`` checks which way the sweep's steps ran."""
    result = run(*target_args(url, "--debug", "--json", "clear", *args))
    assert result.exit_code == 0, result.output
    if scripted is not None:
        assert ("the server runs no script" not in result.stderr) == scripted, result.stderr
    return json.loads(result.stdout)


def test_sessions_and_rate_limits_survive_a_clear(redis_target: RedisTarget) -> None:
    fill(redis_target.client)
    excludes = ["--exclude", "session:*", "--exclude", "LIMITER/*"]

    dry = run(*target_args(redis_target.url, "clear", "--dry-run", *excludes))
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.strip().endswith(
        "would remove 200 keys under the prefix 'app[1]_' from "
        f"{redis_target.url}; would keep 35 matching --exclude ('session:*' 30, 'LIMITER/*' 5)"
    )
    assert len(survivors(redis_target.client)) == 236  # the dry run changed nothing

    done = run(*target_args(redis_target.url, "--debug", "--json", "clear", "--yes", *excludes))
    assert done.exit_code == 0, done.output
    assert "runs no script" not in done.stderr  # the server-side step did it
    document = json.loads(done.stdout)
    assert (document["removed"], document["excluded"], document["warnings"]) == (200, 35, [])
    assert document["exclude"] == [
        {"glob": "session:*", "matched": 30},
        {"glob": "LIMITER/*", "matched": 5},
    ]
    assert survivors(redis_target.client) == KEPT


def test_a_glob_that_keeps_nothing_stops_the_clear_unless_allowed(
    redis_target: RedisTarget,
) -> None:
    fill(redis_target.client, cache_keys=20)
    refused = run(*target_args(redis_target.url, "clear", "--yes", "--exclude", "sesion:*"))
    assert refused.exit_code == 2
    assert refused.stderr == (
        "error: --exclude 'sesion:*' matches no key under the prefix 'app[1]_' right now: "
        "it would keep nothing; nothing was removed. A store that may be empty now "
        "(short-lived counters): add --allow-unmatched-exclude\n"
    )
    assert len(survivors(redis_target.client)) == 56

    document = clear_json(
        redis_target.url,
        "--yes",
        "--allow-unmatched-exclude",
        "--exclude",
        "sesion:*",
        "--exclude",
        f"{PREFIX}LIMITER/*",
    )
    assert (document["removed"], document["excluded"]) == (55, 0)
    assert document["warnings"] == [
        "--exclude 'sesion:*' matched no key under the prefix 'app[1]_': it kept nothing",
        "--exclude 'app[1]_LIMITER/*' matched no key under the prefix 'app[1]_': it kept "
        "nothing (the glob applies after the prefix: leave 'app[1]_' out, as in 'LIMITER/*')",
    ]
    fill(redis_target.client, cache_keys=20)
    text = run(*target_args(redis_target.url, "clear", "--dry-run", "--exclude", "sesion:*"))
    assert text.exit_code == 0
    assert "warning: --exclude 'sesion:*' matches no key under the prefix" in text.stderr
    assert "it would keep nothing" in text.stderr


def test_the_question_on_a_terminal_names_the_exclusions(redis_target: RedisTarget) -> None:
    fill(redis_target.client, cache_keys=20)
    args = target_args(redis_target.url, "clear", "--exclude", "session:*")
    code, screen = _run_on_terminal([*args, "--exclude", "LIMITER/*"], b"n\n")
    assert code == 1
    assert "except keys matching 'session:*' or 'LIMITER/*'?" in screen
    code, screen = _run_on_terminal([*args, "--exclude", "sesion:*"], b"y\n")
    assert code == 2  # stopped before the question: a misspelt glob keeps nothing
    assert "'sesion:*' matches no key under the prefix 'app[1]_' right now" in screen
    assert len(survivors(redis_target.client)) == 56


def test_clear_pattern_takes_exclusions_too(redis_target: RedisTarget) -> None:
    fill(redis_target.client, cache_keys=20)
    document = clear_json(
        redis_target.url, "--yes", "--pattern", "view//*", "--exclude", "view//page/1*"
    )
    # view//page/1 and view//page/10 to 19 stay.
    assert (document["removed"], document["excluded"]) == (9, 11)
    assert len(survivors(redis_target.client)) == 11 + 35 + 1
    outside = clear_json(redis_target.url, "--dry-run", "--pattern", "view//*", "--exclude", "s*")
    assert outside["warnings"] == [
        "--exclude 's*' matches no key under the prefix 'app[1]_' matching 'view//*': "
        "it would keep nothing"
    ]


def _matched_by_scan(client: redis.Redis, glob: str) -> set[bytes]:
    match = escape_glob(PREFIX).encode() + glob.encode("utf-8", "surrogateescape")
    return set(client.scan_iter(match=match, count=1000))


def _fill_tricky(client: redis.Redis) -> None:
    client.flushdb()
    for rest in [r.encode() for r in TRICKY] + RAW_TRICKY:
        client.set(PREFIX.encode() + rest, b"!")
    client.set(b"other_app_key", b"stays")


def _check_globs_read_as_scan_match(url: str, admin: redis.Redis, scripted: bool) -> None:
    """Per glob, the keys kept are the keys SCAN MATCH finds: the counts of a dry run
    with every glob at once, then what a real clear leaves."""
    _fill_tricky(admin)
    expected = {glob: _matched_by_scan(admin, glob) for glob in GLOBS}
    assert all(expected[glob] for glob in ("a[*]b", "x[-]y", "[a-c]*", "é*", "a\\"))
    excludes = [arg for glob in GLOBS for arg in ("--exclude", glob)]
    document = clear_json(url, "--dry-run", *excludes, scripted=scripted)
    assert {e["glob"]: e["matched"] for e in document["exclude"]} == {
        glob: len(keys) for glob, keys in expected.items()
    }
    for chosen in (["a*b*c*", "x[\\-]y", "[^a]*"], ["a[^b]*", "\\a*", "?"]):
        _fill_tricky(admin)
        kept = set().union(*(expected[glob] for glob in chosen))
        done = clear_json(
            url,
            "--yes",
            *[arg for glob in chosen for arg in ("--exclude", glob)],
            scripted=scripted,
        )
        assert done["excluded"] == len(kept)
        assert survivors(admin) == kept | {b"other_app_key"}


def test_globs_are_read_as_scan_match_reads_them(redis_target: RedisTarget) -> None:
    _check_globs_read_as_scan_match(redis_target.url, redis_target.client, scripted=True)


@pytest.fixture(scope="module")
def no_scripts_server() -> Iterator[ServerProcess]:
    """A user who may not run scripts nor UNLINK, as managed services hand out."""
    server = start_redis()
    redis.Redis(port=server.port).execute_command(
        "ACL", "SETUSER", "ops", "on", ">ops-pw", "~*", "+@all", "-@scripting", "-unlink"
    )
    yield server
    server.stop()


def test_a_server_without_scripting_keeps_the_same_keys(no_scripts_server: ServerProcess) -> None:
    url = f"redis://ops:ops-pw@127.0.0.1:{no_scripts_server.port}/0"
    admin = redis.Redis(port=no_scripts_server.port)
    admin.flushdb()
    fill(admin)
    done = run(*target_args(url, "--debug", "--json", "clear", "--yes", "--exclude", "session:*",
                            "--exclude", "LIMITER/*"))  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "the server runs no script" in done.stderr  # the client-side step did it
    assert json.loads(done.stdout)["excluded"] == 35
    assert survivors(admin) == KEPT
    _check_globs_read_as_scan_match(url, admin, scripted=False)
    calls = {name: stats["calls"] for name, stats in admin.info("commandstats").items()}
    assert "cmdstat_keys" not in calls and calls["cmdstat_scan"] > 0


def test_a_cluster_keeps_them_on_every_primary() -> None:
    nodes = start_redis_cluster(primaries=3, replicas=0)
    try:
        client = redis.RedisCluster(host="127.0.0.1", port=nodes[0].port)
        fill(client)
        config = [
            "-o", "CACHE_TYPE=RedisClusterCache", "-o", f"CACHE_REDIS_CLUSTER=127.0.0.1:"
            f"{nodes[0].port}", "--key-prefix", PREFIX, "--json", "clear",
            "--exclude", "session:*", "--exclude", "LIMITER/*",
        ]  # fmt: skip
        dry = run(*config, "--dry-run")
        assert json.loads(dry.stdout)["removed"] == 200, dry.output
        assert len(survivors(client)) == 236
        done = run(*config, "--yes")
        document = json.loads(done.stdout)
        assert (document["removed"], document["excluded"]) == (200, 35), done.output
        assert survivors(client) == KEPT
        client.close()
    finally:
        for node in nodes:
            node.stop()


def test_backends_that_cannot_apply_a_glob_refuse(tmp_path: Path, memcached_address: str) -> None:
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    assert run("--dir", str(cache_dir), "set", "session:1", "v").exit_code == 0
    files = sorted(cache_dir.iterdir())
    refused = run("--dir", str(cache_dir), "clear", "--yes", "--exclude", "session:*")
    assert refused.exit_code == 2
    assert refused.stderr.strip().splitlines() == [
        "error: FileSystemCache names each file by a hash of its key, so a glob over key "
        "names cannot be applied: --exclude is not available here"
    ]
    assert sorted(cache_dir.iterdir()) == files

    memcached = [
        "--type",
        "MemcachedCache",
        "-o",
        f'CACHE_MEMCACHED_SERVERS=["{memcached_address}"]',
    ]
    # memcached lists its keys (LRU crawler): --exclude applies there as on Redis.
    assert run(*memcached, "set", "session:1", "v").exit_code == 0
    assert run(*memcached, "set", "page", "v").exit_code == 0
    kept = run(*memcached, "clear", "--yes", "--exclude", "session:*")
    assert kept.exit_code == 0, kept.output
    assert "removed 1 key under" in kept.stdout and "kept 1 matching --exclude" in kept.stdout
    assert run(*memcached, "get", "session:1").stdout.strip() == "v"
    assert run(*memcached, "get", "page").exit_code == 1


def test_flush_db_and_malformed_globs_are_refused(redis_target: RedisTarget) -> None:
    fill(redis_target.client, cache_keys=5)
    flush = ["--url", redis_target.url, "--key-prefix", "", "clear", "--yes", "--flush-db"]
    refused = run(*flush, "--exclude", "session:*")
    assert refused.exit_code == 2
    assert "--flush-db empties the whole database" in refused.stderr
    without_prefix = run(*flush[:-1], "--exclude", "session:*")  # no --flush-db either
    assert without_prefix.exit_code == 2
    assert "no key prefix is configured" in without_prefix.stderr
    assert "which takes no --exclude" in without_prefix.stderr
    for glob, reason in [
        ("session[*", "never closed"),
        ("[é-z]*", "must run between ASCII characters"),
        ("", "is empty"),
    ]:
        refused = run(*target_args(redis_target.url, "clear", "--yes", "--exclude", glob))
        assert refused.exit_code == 2, glob
        assert reason in refused.stderr, refused.stderr
    assert len(survivors(redis_target.client)) == 41


def test_a_key_a_walk_meets_twice_is_counted_kept_once() -> None:
    """SCAN returns a key twice when Redis shrinks its table mid-walk, which a clear's
    own deletions bring about (a clear keeping 300 keys once reported 301): whichever
    step hands a kept key over again, by the client-side split, the one-key check of
    keys/stats or the names the Lua step returns, it is counted once, for each glob."""
    exclusions = Exclusions(["session:*", "*:1"], nested=["data_*"])
    prefix = b"app_"
    first = [prefix + b"session:1", prefix + b"view//a", prefix + b"data_x", prefix + b"session:2"]
    assert exclusions.split(first, len(prefix)) == [prefix + b"view//a"]
    again = [prefix + b"session:1", prefix + b"session:1", prefix + b"view//b", prefix + b"data_x"]
    assert exclusions.split(again, len(prefix)) == [prefix + b"view//b"]
    assert exclusions.keeps(b"session:2") and not exclusions.keeps(b"view//a")
    exclusions.count_kept([b"session:1", b"session:3", b"session:3"])
    assert (exclusions.excluded, exclusions.kept) == (3, 4)
    assert [hits for _, hits in exclusions.own_globs()] == [3, 1]
    assert exclusions.nested_hits() == [1]
