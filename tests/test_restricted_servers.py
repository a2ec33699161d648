"""Servers that say no: ACL users without UNLINK or MEMORY, a full server, a lost step.

Managed Redis services hand out restricted users; a cache server can be full.
cachectl must still do what the user may do, and say plainly what it may not.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator

import pytest
import redis

from tests.conftest import run
from tests.servers import ServerProcess, start_redis


@pytest.fixture(scope="module")
def acl_server() -> Iterator[ServerProcess]:
    server = start_redis()
    admin = redis.Redis(port=server.port)
    # No UNLINK, no MEMORY, keys under app_ only: what a managed service may hand out.
    admin.execute_command(
        "ACL", "SETUSER", "limited", "on", ">limited-pw", "~app_*", "+@all", "-unlink", "-memory"
    )
    yield server
    server.stop()


def _limited(server: ServerProcess) -> list[str]:
    return ["--url", f"redis://limited:limited-pw@127.0.0.1:{server.port}/0", "--key-prefix",
            "app_"]  # fmt: skip


def _fill(server: ServerProcess, count: int) -> redis.Redis:
    admin = redis.Redis(port=server.port)
    admin.flushall()
    admin.set("other_key", b"stays")
    pipe = admin.pipeline(transaction=False)
    for n in range(count):
        pipe.set(f"app_{n}", b"!" + pickle.dumps(n))
    pipe.execute()
    return admin


def test_a_user_without_unlink_clears_and_deletes_with_del(acl_server: ServerProcess) -> None:
    admin = _fill(acl_server, 2500)
    deleted = run(*_limited(acl_server), "--json", "delete", "0", "1", "2")
    assert json.loads(deleted.stdout)["removed"] == 3, deleted.stderr
    cleared = run(*_limited(acl_server), "--json", "clear", "--yes")
    assert cleared.exit_code == 0, cleared.stderr
    assert json.loads(cleared.stdout)["removed"] == 2497
    assert admin.keys("app_*") == [] and admin.get("other_key") == b"stays"
    assert "DEL" not in cleared.stderr  # said only with --debug


def test_debug_says_once_that_del_replaces_unlink(acl_server: ServerProcess) -> None:
    admin = _fill(acl_server, 10)
    deleted = run(*_limited(acl_server), "--debug", "delete", "0", "1", "2", "3")
    assert deleted.exit_code == 0, deleted.stderr
    notices = [line for line in deleted.stderr.splitlines() if "with DEL instead" in line]
    assert len(notices) == 1 and notices[0].startswith("debug: UNLINK refused")
    cleared = run(*_limited(acl_server), "--debug", "clear", "--yes")
    assert cleared.exit_code == 0, cleared.stderr
    assert "debug: UNLINK is not allowed for this user: removing with DEL" in cleared.stderr
    assert admin.keys("app_*") == []


def test_stats_without_memory_still_counts(acl_server: ServerProcess) -> None:
    _fill(acl_server, 50)
    result = run(*_limited(acl_server), "--json", "stats")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["total"] == 50
    assert document["memory"]["estimated_total_bytes"] is None
    assert "memory" in document["memory"]["unavailable"].lower()


def test_a_full_server_is_named_as_full() -> None:
    server = start_redis("--maxmemory", "2mb", "--maxmemory-policy", "noeviction")
    try:
        admin = redis.Redis(port=server.port)
        filler = b"x" * 100_000
        for n in range(100):
            try:
                admin.set(f"fill_{n}", filler)
            except redis.exceptions.ResponseError:
                break
        result = run("--url", f"redis://127.0.0.1:{server.port}/0", "set", "k", "v" * 100_000)
        assert result.exit_code == 3
        assert "out of memory and evicts nothing" in result.stderr
    finally:
        server.stop()
