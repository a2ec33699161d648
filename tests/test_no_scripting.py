"""A server with no scripting at all: every scripted path goes client-side, as bounded.

Valkey can run with its Lua engine unloaded, and managed services switch scripting
off; here a real server of the session's flavour (``CACHECTL_REDIS_SERVER``) has every
scripting command renamed away in its configuration (EVAL, EVALSHA, SCRIPT, and where
the server has them FUNCTION, FCALL and the read-only variants): no mock. A clear, a
clear with ``--exclude``, a dry run, ``stats`` and ``stats --by-function`` must give
the counts the scripted paths give, leave every key outside the prefix (and those
excluded) in place, never send KEYS, and never hold the server long: the server's
SLOWLOG, set at the bound, stays empty.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.conftest import run
from tests.scripted_paths import fresh_keyspace, scripted_commands
from tests.servers import ServerProcess, redis_family_version, start_redis

APP_KEYS = 60_000
KEPT_KEYS = 500
OTHER_KEYS = 20_000
#: As in tests/test_script_bounds.py: no command may hold the server longer.
BOUND_MS = 25


def scripting_commands() -> list[str]:
    """Every command that runs a script on the session's server (Redis 6.2 has neither
    functions nor the read-only variants, and refuses to rename what it lacks)."""
    commands = ["EVAL", "EVALSHA", "SCRIPT"]
    family, version = redis_family_version()
    if family == "valkey" or version >= (7, 0):
        commands += ["EVAL_RO", "EVALSHA_RO", "FUNCTION", "FCALL", "FCALL_RO"]
    return commands


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    renames: list[str] = []
    for command in scripting_commands():
        renames += ["--rename-command", command, ""]
    started = start_redis(*renames)
    yield started
    started.stop()


def test_the_server_really_runs_no_script(server: ServerProcess) -> None:
    client = redis.Redis(port=server.port)
    for command in (("EVAL", "return 1", 0), ("EVALSHA", "0" * 40, 0), ("SCRIPT", "FLUSH")):
        with pytest.raises(redis.exceptions.ResponseError, match="unknown command"):
            client.execute_command(*command)


def _fresh(server: ServerProcess) -> redis.Redis:
    return fresh_keyspace(server, APP_KEYS, KEPT_KEYS, OTHER_KEYS, BOUND_MS)


COMMANDS = scripted_commands(APP_KEYS, KEPT_KEYS)
LEFT = {
    "clear": OTHER_KEYS,
    "clear-exclude": OTHER_KEYS + KEPT_KEYS,
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_scripted_path_runs_client_side_in_short_steps(
    server: ServerProcess, name: str
) -> None:
    client = _fresh(server)
    args, expected = COMMANDS[name]
    done = run("--url", f"redis://127.0.0.1:{server.port}/0", "--key-prefix", "app_",
               "--json", "--debug", *args)  # fmt: skip
    assert done.exit_code == 0, done.output
    document = json.loads(done.stdout)
    assert {key: document[key] for key in expected} == expected, document
    assert "the server runs no script" in done.stderr, done.stderr  # said with --debug

    slow = [(entry["duration"] / 1000, entry["command"][:40]) for entry in client.slowlog_get(1000)]
    assert not slow, f"commands over {BOUND_MS} ms by the server's clock: {slow[:10]}"
    calls = {command: stats["calls"] for command, stats in client.info("commandstats").items()}
    assert "cmdstat_keys" not in calls, calls
    # Steps of a thousand keys or so: a SCAN each, and as many UNLINKs.
    assert calls["cmdstat_scan"] >= (APP_KEYS + KEPT_KEYS + OTHER_KEYS) // 2000, calls
    if name in LEFT:
        assert calls["cmdstat_unlink"] >= APP_KEYS // 2000, calls
        assert client.dbsize() == LEFT[name]
        assert client.get("other_0") == b"1" and client.get(f"other_{OTHER_KEYS - 1}") == b"1"
    else:
        assert client.dbsize() == APP_KEYS + KEPT_KEYS + OTHER_KEYS


def _canonical(value: Any) -> Any:
    """``value`` with each list sorted (rows of equal counts come in the order the walk
    met them) and without the bytes of memory (``MEMORY USAGE`` of the same key differs
    by a few bytes from one server process to another): what is counted."""
    if isinstance(value, dict):
        return {
            key: _canonical(item)
            for key, item in value.items()
            if not (key.startswith("memory") and key != "memory_sampled_keys")
            and "bytes" not in key
        }
    if isinstance(value, list):
        return sorted((_canonical(item) for item in value), key=json.dumps)
    return value


def _flask_shaped(client: redis.Redis) -> None:
    """Keys in the shapes Flask-Caching leaves, some with a TTL."""
    client.flushall()
    pipe = client.pipeline(transaction=False)
    for n in range(2000):
        pipe.set(f"app_view//page/{n % 40}/{n}", b"1", ex=30 if n % 3 else None)
        pipe.set(f"app_{'a' * 16}{n % 7:06d}"[:26], b"1", ex=7200)
        pipe.set(f"app__template_fragment_cache_side{n % 5}_{n}", b"1", ex=100_000)
    for n in range(20):
        pipe.set(f"app_{'b' * 10}{n:02d}_memver", b"!" + b"x" * 5)
    pipe.set("other_key", b"1")
    pipe.execute()


@pytest.mark.parametrize("detail", [[], ["--by-function"]], ids=["stats", "by-function"])
def test_the_client_side_census_counts_what_the_script_counts(
    server: ServerProcess, detail: list[str]
) -> None:
    scripted_server = start_redis()
    try:
        documents = []
        for port in (server.port, scripted_server.port):
            _flask_shaped(redis.Redis(port=port))
            done = run("--url", f"redis://127.0.0.1:{port}/0", "--key-prefix", "app_", "--json",
                       "stats", *detail)  # fmt: skip
            assert done.exit_code == 0, done.output
            document = json.loads(done.stdout)
            document.pop("target", None)
            documents.append(_canonical(document))
        assert documents[0] == documents[1]
    finally:
        scripted_server.stop()
