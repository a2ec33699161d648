"""cachectl against a real memcached, with a real Flask-Caching app as the judge.

Each test runs with both client libraries cachelib can pick: pylibmc (its first
choice) and python-memcached (when pylibmc is not installed). The app and
cachectl share the process here, so both always use the same one, as they do
on a real host.
"""

from __future__ import annotations

import json
import re
import sys

import pytest

from tests.conftest import oracle_app, run
from tests.servers import free_port
from tests.test_redis import VALUES


@pytest.fixture(autouse=True, params=["pylibmc", "python-memcached"])
def client_library(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "python-memcached":
        monkeypatch.setitem(sys.modules, "pylibmc", None)  # as if it were not installed
    return request.param


def mc_args(address: str) -> list[str]:
    return ["--type", "MemcachedCache", "-o", f'CACHE_MEMCACHED_SERVERS=["{address}"]']


def mc_app(address: str):
    return oracle_app({"CACHE_TYPE": "MemcachedCache", "CACHE_MEMCACHED_SERVERS": [address]})


@pytest.mark.parametrize("key", sorted(k for k in VALUES if VALUES[k] is not None))
def test_get_reads_what_the_app_wrote(memcached_address: str, key: str) -> None:
    from cachectl.codec.rendering import to_jsonable

    app, cache = mc_app(memcached_address)
    with app.app_context():
        cache.set(key, VALUES[key])

    result = run(*mc_args(memcached_address), "--json", "get", key)

    document = json.loads(result.stdout)["results"][0]
    assert document["found"] is True, result.output
    assert document["value"] == to_jsonable(VALUES[key])


def test_the_app_reads_what_set_wrote(memcached_address: str) -> None:
    run(*mc_args(memcached_address), "set", "flags", '{"beta": true}', "--as", "json")
    run(*mc_args(memcached_address), "set", "n", "7", "--as", "int")
    run(*mc_args(memcached_address), "set", "s", "text")
    app, cache = mc_app(memcached_address)
    with app.app_context():
        assert cache.get("flags") == {"beta": True}
        assert cache.get("n") == 7
        assert cache.get("s") == "text"


def test_set_refuses_a_lifetime_memcached_would_drop_at_once(memcached_address: str) -> None:
    """Over 30 days memcached reads a lifetime as a Unix time in 32 bits: past 2038 it
    answers STORED and drops the item. cachectl refuses; 40 days is stored and kept."""
    args = mc_args(memcached_address)
    too_late = run(*args, "set", "long", "v", "--ttl", "2000000000")
    assert too_late.exit_code == 2 and "2038" in too_late.stderr
    assert run(*args, "set", "forty-days", "v", "--ttl", str(40 * 86400)).exit_code == 0
    app, cache = mc_app(memcached_address)
    with app.app_context():
        assert cache.get("long") is None
        assert cache.get("forty-days") == "v"


def test_delete_is_seen_by_the_app(memcached_address: str) -> None:
    app, cache = mc_app(memcached_address)
    with app.app_context():
        cache.set("gone", 1)
        cache.set("kept", 2)
    result = run(*mc_args(memcached_address), "--json", "delete", "gone")
    assert json.loads(result.stdout) == {"ok": True, "requested": 1, "removed": None}
    with app.app_context():
        assert cache.get("gone") is None
        assert cache.get("kept") == 2


def test_flush_all_empties_the_server_only_with_yes(memcached_address: str) -> None:
    app, cache = mc_app(memcached_address)
    with app.app_context():
        cache.set("k", "v")

    refused = run(*mc_args(memcached_address), "clear", "--flush-all")
    assert refused.exit_code == 2
    assert "every key on the server" in refused.stderr and "--yes" in refused.stderr
    with app.app_context():
        assert cache.get("k") == "v"

    done = run(*mc_args(memcached_address), "clear", "--flush-all", "--yes")
    assert done.exit_code == 0
    assert "every key on the server" in done.stderr
    with app.app_context():
        assert cache.get("k") is None


def test_unreachable_memcached_exits_3() -> None:
    result = run(*mc_args(f"127.0.0.1:{free_port()}"), "--timeout", "1", "get", "k")
    assert result.exit_code == 3
    assert result.stderr.startswith("error: memcached 127.0.0.1:")


def test_planted_pickles_do_not_run(memcached_address: str, tmp_path) -> None:
    from tests.test_safety import Planted

    marker = tmp_path / "pwned"
    app, cache = mc_app(memcached_address)
    with app.app_context():
        cache.set("evil", Planted(marker))
    assert not marker.exists()

    result = run(*mc_args(memcached_address), "get", "evil")

    assert result.exit_code == 0, result.output
    assert not marker.exists()
    assert "<not loaded: posix.system" in result.stdout


def test_a_corrupt_pickle_is_reported_not_raised(memcached_address: str) -> None:
    import socket

    host, port = memcached_address.rsplit(":", 1)
    data = b"\x80\x04not a pickle"
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        # Flag 1 marks a pickled value for both client libraries.
        conn.sendall(b"set flask_cache_bad 1 0 %d\r\n%s\r\n" % (len(data), data))
        assert conn.recv(64) == b"STORED\r\n"

    result = run(*mc_args(memcached_address), "get", "bad")

    assert result.exit_code == 0, result.output
    assert "bad: cannot unpickle" in result.stderr and "Traceback" not in result.stderr


def deletes_seen(port: int) -> int:
    """How many delete commands the memcached server on ``port`` has answered."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"stats\r\n")
        reply = b""
        while not reply.endswith(b"END\r\n"):
            reply += conn.recv(65536)
    stats = dict(line.split(b" ")[1:3] for line in reply.splitlines() if line.startswith(b"STAT"))
    return int(stats[b"delete_hits"]) + int(stats[b"delete_misses"])


def test_a_server_lost_mid_delete_is_a_failure_not_a_success(client_library: str) -> None:
    """Keys stream in on stdin; the server dies between two batches. python-memcached
    swallows the error and pylibmc raises it: either way, exit 3 with the count."""
    import subprocess
    import time

    from tests.servers import start_memcached

    server = start_memcached()
    hide = "sys.modules['pylibmc'] = None; " if client_library == "python-memcached" else ""
    process = subprocess.Popen(
        [sys.executable, "-c", f"import sys; {hide}from cachectl.cli import main; main()",
         *mc_args(f"127.0.0.1:{server.port}"), "delete", "--from-file", "-"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdin is not None
        process.stdin.write(b"".join(b"k%d\n" % n for n in range(2500)))
        process.stdin.flush()
        # The first two batches of 1000 reach the live server (however slowly cachectl
        # starts on a busy machine), then it dies.
        deadline = time.monotonic() + 60
        while (seen := deletes_seen(server.port)) < 2000 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.stop()
        process.stdin.write(b"".join(b"k%d\n" % n for n in range(2500, 5000)))
        process.stdin.close()
        process.wait(timeout=60)
        assert process.stderr is not None
        stderr = process.stderr.read()
    finally:
        server.stop()
    assert process.returncode == 3, stderr
    # Never more than the server really answered; a batch whose replies were lost with
    # the server is not counted, which is why the count is "at least".
    sent = re.search(rb"at least ([\d,]+) keys? sent before the failure", stderr)
    assert sent is not None, stderr
    assert 1000 <= int(sent.group(1).replace(b",", b"")) <= seen
    assert b"Traceback" not in stderr
