"""memcached key listing through the LRU crawler: keys, --count, delete --pattern, stats and a
clear of the app's keys only, on real memcached processes (plain, two at once, one with
its crawler off, SASL), with keys written by a real Flask-Caching app."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import SASL_PASSWORD, SASL_USER, RedisTarget, oracle_app, run
from tests.servers import ServerProcess, start_memcached


def _flushed(server: ServerProcess) -> str:
    import memcache

    address = f"127.0.0.1:{server.port}"
    client = memcache.Client([address])
    client.flush_all()
    client.disconnect_all()
    return address


@pytest.fixture(scope="module")
def second_server() -> Iterator[ServerProcess]:
    server = start_memcached()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def no_crawler_server() -> Iterator[ServerProcess]:
    server = start_memcached("-o", "no_lru_crawler")
    yield server
    server.stop()


def args_for(*addresses: str, prefix: str | None = None) -> list[str]:
    servers = json.dumps(list(addresses))
    args = ["--type", "MemcachedCache", "-o", f"CACHE_MEMCACHED_SERVERS={servers}"]
    if prefix is not None:
        args += ["-o", f"CACHE_KEY_PREFIX={json.dumps(prefix)}"]
    return args


def app_for(*addresses: str, prefix: str = "flask_cache_") -> Any:
    return oracle_app(
        {
            "CACHE_TYPE": "MemcachedCache",
            "CACHE_MEMCACHED_SERVERS": list(addresses),
            "CACHE_KEY_PREFIX": prefix,
        }
    )


def fill(address: str, prefix: str, names: list[str], *more: str) -> None:
    """Write ``names`` through a real Flask-Caching app (its prefixing, its client)."""
    app, cache = app_for(address, *more, prefix=prefix)
    with app.app_context():
        for name in names:
            cache.set(name, name.upper())


def listed(*args: str) -> list[str]:
    result = run(*args, "--json", "keys")
    assert result.exit_code == 0, result.output
    return sorted(json.loads(result.stdout)["keys"])


def test_keys_and_stats_see_what_flask_caching_wrote(memcached_address: str, library: str) -> None:
    app, cache = app_for(memcached_address, prefix="shop_")

    @cache.memoize(120)
    def price(item: str) -> int:
        return len(item)

    with app.app_context(), app.test_request_context("/"):
        price("apple")
        price("kiwi")
        cache.set("view//about", "<html>")
        cache.set("café", 1, timeout=0)  # URL-encoded in the dump, decoded back
    fill(memcached_address, "other_", ["view//about", "x"])  # another app, same server
    args = args_for(memcached_address, prefix="shop_")

    names = listed(*args)
    assert "view//about" in names and "café" in names
    assert not any(name.startswith("other_") for name in names)
    assert len(names) == 5  # two entries, a version key, a view, café
    count = run(*args, "keys", "--count")
    assert count.stdout == "5\n", count.output
    assert run(*args, "keys", "view//*").stdout == "view//about\n"

    stats = json.loads(run(*args, "--json", "stats").stdout)
    assert stats["total"] == 5 and stats["kinds"]["memoize entries"] == 2
    assert stats["kinds"]["memoize versions"] == 1 and stats["kinds"]["views"] == 1
    assert stats["ttl"]["no expiry"] == 1 and stats["ttl"]["< 1 hour"] == 4
    assert stats["memory"]["sampled_keys"] == 5 and stats["memory"]["sampled_bytes"] > 0
    sampled = json.loads(run(*args, "--json", "stats", "--sample", "2").stdout)
    assert sampled["total"] == 5 and sampled["examined"] == 2


GLOB_KEYS = ["p0", "p1", "p2", "*lit", "view//a/b", "axbxc", "abc", "a?c", "[x]", "pé"]
GLOBS = ["*", "p?", "p[0-1]", "p[^0]", "\\*lit", "a*b*c", "a\\?c", "view//*", "\\[x\\]", "p*", ""]


def test_globs_match_as_on_redis(memcached_address: str, redis_target: RedisTarget) -> None:
    """The same key names on Redis and memcached: every glob lists the same keys."""
    fill(memcached_address, "app_", GLOB_KEYS)
    for name in GLOB_KEYS:
        redis_target.client.set("app_" + name, b"x")
    on_memcached = args_for(memcached_address, prefix="app_")
    on_redis = ["--url", redis_target.url, "--key-prefix", "app_"]
    for glob in GLOBS:
        mc = json.loads(run(*on_memcached, "--json", "keys", glob).stdout)["keys"]
        rd = json.loads(run(*on_redis, "--json", "keys", glob).stdout)["keys"]
        assert sorted(mc) == sorted(rd), glob
    refused = run(*on_memcached, "keys", "p[0")
    assert refused.exit_code == 2 and refused.stderr.count("error:") == 1, refused.output


def test_clear_removes_only_the_apps_keys(memcached_address: str, library: str) -> None:
    fill(memcached_address, "app_", [f"k{n}" for n in range(2500)])  # three batches
    fill(memcached_address, "other_", ["session", "k1"])
    args = args_for(memcached_address, prefix="app_")

    dry = run(*args, "--json", "clear", "--dry-run")
    assert json.loads(dry.stdout)["removed"] == 2500, dry.output
    done = run(*args, "clear", "--yes")
    assert done.exit_code == 0, done.output
    assert "removed 2,500 keys under the prefix 'app_'" in done.stdout
    assert listed(*args) == []
    assert listed(*args_for(memcached_address, prefix="other_")) == ["k1", "session"]
    app, cache = app_for(memcached_address, prefix="other_")
    with app.app_context():
        assert cache.get("session") == "SESSION"


def test_delete_pattern_and_clear_exclude(memcached_address: str, library: str) -> None:
    fill(memcached_address, "app_", ["view//a", "view//b", "session:1", "report"])
    args = args_for(memcached_address, prefix="app_")

    dry = run(*args, "delete", "--pattern", "view//*", "--dry-run")
    assert "would remove 2 keys" in dry.stdout, dry.output
    assert len(listed(*args)) == 4
    done = run(*args, "delete", "--pattern", "view//*", "--yes")
    assert "removed 2 keys" in done.stdout, done.output
    assert listed(*args) == ["report", "session:1"]

    kept = run(*args, "clear", "--exclude", "session:*", "--yes")
    assert kept.exit_code == 0 and "kept 1 matching --exclude" in kept.stdout, kept.output
    assert listed(*args) == ["session:1"]


def test_two_servers(memcached_address: str, second_server: ServerProcess, library: str) -> None:
    """Both servers are listed; a copy the client's hash would not pick (left there by
    an older server list) is found and removed where it is."""
    import memcache

    second = _flushed(second_server)
    names = [f"k{n}" for n in range(200)]
    fill(memcached_address, "app_", names, second)
    fill(memcached_address, "other_", ["keep"], second)
    for address in (memcached_address, second):
        memcache.Client([address]).set("app_stale", "x")
    per_server = [listed(*args_for(a, prefix="app_")) for a in (memcached_address, second)]
    assert all(len(found) > 1 for found in per_server)  # the hash spread them
    args = args_for(memcached_address, second, prefix="app_")

    assert run(*args, "keys", "--count").stdout == "202\n"
    done = run(*args, "clear", "--yes")
    assert "removed 202 keys" in done.stdout, done.output
    for address in (memcached_address, second):
        assert listed(*args_for(address, prefix="app_")) == []
    assert listed(*args_for(memcached_address, second, prefix="other_")) == ["keep"]


def test_a_server_with_its_crawler_off_is_refused_before_anything_goes(
    memcached_address: str, no_crawler_server: ServerProcess
) -> None:
    off = _flushed(no_crawler_server)
    fill(memcached_address, "app_", ["a", "b"])
    fill(off, "app_", ["c"])
    both = args_for(memcached_address, off, prefix="app_")

    for command in (["keys"], ["keys", "--count"], ["stats"], ["delete", "--pattern", "*"]):
        refused = run(*both, *command, "--yes" if command[0] == "delete" else "--json")
        assert refused.exit_code == 2, (command, refused.output)
        assert "no_lru_crawler" in refused.stderr and refused.stderr.count("error:") == 1
    cleared = run(*both, "clear", "--yes")
    assert cleared.exit_code == 2 and "--flush-all" in cleared.stderr, cleared.output
    assert listed(*args_for(memcached_address, prefix="app_")) == ["a", "b"]  # nothing went

    flushed = run(*args_for(off, prefix="app_"), "clear", "--flush-all", "--yes")
    assert flushed.exit_code == 0, flushed.output
    app, cache = app_for(off, prefix="app_")
    with app.app_context():
        assert cache.get("c") is None


def test_sasl_servers_cannot_list_keys(sasl_memcached_address: str) -> None:
    args = [
        "--type", "SASLMemcachedCache",
        "-o", f'CACHE_MEMCACHED_SERVERS=["{sasl_memcached_address}"]',
        "-o", f"CACHE_MEMCACHED_USERNAME={SASL_USER}",
        "-o", f"CACHE_MEMCACHED_PASSWORD={SASL_PASSWORD}",
    ]  # fmt: skip
    assert run(*args, "set", "k", "v").exit_code == 0
    for command in (["keys"], ["keys", "--count"], ["stats"], ["clear", "--yes"]):
        refused = run(*args, *command)
        assert refused.exit_code == 2, (command, refused.output)
        assert "SASL" in refused.stderr and refused.stderr.count("error:") == 1
    assert "--flush-all" in run(*args, "clear", "--yes").stderr
    assert run(*args, "get", "k").exit_code == 0  # nothing went
    assert run(*args, "clear", "--flush-all", "--yes").exit_code == 0
    assert run(*args, "get", "k").exit_code == 1


def test_spread_values_count_once_and_go_with_every_chunk(memcached_address: str) -> None:
    """SpreadSASLMemcachedCache without credentials talks to a plain server, whose
    crawler lists KEY.0, KEY.1, ...: one entry, removed with all its chunks."""
    settings = {"CACHE_TYPE": "SpreadSASLMemcachedCache"}
    app, cache = oracle_app({**settings, "CACHE_MEMCACHED_SERVERS": [memcached_address]})
    with app.app_context():
        cache.set("big", "x" * 3_000_000)  # three chunks
        cache.set("small", 1)
    args = ["--type", "SpreadSASLMemcachedCache", *args_for(memcached_address)[2:]]
    plain = args_for(memcached_address)
    assert len(listed(*plain)) == 4  # big.0, big.1, big.2, small.0 as MemcachedCache sees them

    assert listed(*args) == ["big", "small"]
    assert run(*args, "keys", "--count").stdout == "2\n"
    done = run(*args, "delete", "--pattern", "b*", "--yes")
    assert "removed 1 key under" in done.stdout, done.output
    assert listed(*plain) == ["small.0"]


def test_refusals_come_before_any_count(memcached_address: str) -> None:
    refused = run(*args_for(memcached_address), "delete", "--pattern", "x[", "--yes")
    assert refused.exit_code == 2
    assert refused.stderr.startswith("error: the glob 'x['") and "before" not in refused.stderr


def test_without_a_prefix_clear_asks_for_flush_all(memcached_address: str) -> None:
    fill(memcached_address, "", ["a", "b"])
    args = args_for(memcached_address, prefix="")
    assert listed(*args) == ["a", "b"]
    refused = run(*args, "clear", "--yes")
    assert refused.exit_code == 2 and "--flush-all" in refused.stderr, refused.output
    assert listed(*args) == ["a", "b"]
    mixed = run(*args, "clear", "--flush-all", "--pattern", "a", "--yes")
    assert mixed.exit_code == 2 and listed(*args) == ["a", "b"]


# --- a hostile or broken peer ------------------------------------------------------------


class HostilePeer:
    """A listener that answers ``stats settings`` as a crawler-capable memcached does,
    then answers the metadump with ``reply`` (and then stalls, connection open), or
    with ``walks[walk]`` for the walk asked for (``hash``, ``all``)."""

    def __init__(self, reply: bytes, walks: dict[bytes, bytes] | None = None) -> None:
        self.reply = reply
        self.walks = walks or {}
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            while request := conn.recv(4096):
                if request.startswith(b"stats settings"):
                    conn.sendall(b"STAT lru_crawler yes\r\nSTAT dump_enabled yes\r\nEND\r\n")
                elif request.startswith(b"stats"):  # the client library's check
                    conn.sendall(b"STAT pid 1\r\nEND\r\n")
                elif request.startswith(b"lru_crawler"):
                    walk = request.split()[2]
                    if walk in self.walks:
                        conn.sendall(self.walks[walk])
                        return
                    conn.sendall(self.reply)
                    self.stop.wait(10)
                    return

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


@pytest.mark.parametrize(
    "reply",
    [
        b"key=flask_cache_a exp=-1 la=1 cas=1 fetch=no cls=1 size=60\n\x00\xffgarbage\r\n",
        b"key=flask_cache_a exp=soon la=1\n",
        b"key=" + b"x" * 100_000,  # a line without end
        b"key=flask_cache_a exp=-1 la=1 cas=1 fetch=no cls=1 size=60\n",  # then silence
    ],
    ids=["garbage", "bad-field", "endless-line", "stall"],
)
@pytest.mark.parametrize("command", ["keys", "clear"])
def test_a_hostile_reply_is_one_error_line_exit_3(reply: bytes, command: str) -> None:
    peer = HostilePeer(reply)
    try:
        started = time.monotonic()
        args = [*args_for(f"127.0.0.1:{peer.port}"), "--timeout", "1", command]
        result = run(*args, *(["--yes"] if command == "clear" else []))
        elapsed = time.monotonic() - started
    finally:
        peer.close()
    assert result.exit_code == 3, result.output
    assert result.stderr.count("error:") == 1 and "Traceback" not in result.stderr
    assert elapsed < 3


def test_a_server_without_the_hash_walk_is_walked_by_its_lru_queues() -> None:
    dump = b"key=flask_cache_a exp=-1 la=1 cas=1 fetch=no cls=1 size=60\nEND\r\n"
    peer = HostilePeer(b"", {b"hash": b"BADCLASS invalid class id\r\n", b"all": dump})
    try:
        result = run(*args_for(f"127.0.0.1:{peer.port}"), "--timeout", "1", "keys")
    finally:
        peer.close()
    assert (result.exit_code, result.stdout) == (0, "a\n"), result.output


def test_counts_are_exact_while_the_app_reads(memcached_address: str) -> None:
    """Reads move items between memcached's LRU queues; the hash walk sees each once."""
    import memcache

    writer = memcache.Client([memcached_address])
    for start in range(0, 60000, 5000):
        writer.set_multi({f"flask_cache_k{n}": "v" for n in range(start, start + 5000)})
    stop = threading.Event()

    def read() -> None:
        reader = memcache.Client([memcached_address])
        while not stop.is_set():
            reader.get_multi([f"flask_cache_k{n}" for n in range(0, 60000, 7)])

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    try:
        counts = [run(*args_for(memcached_address), "keys", "--count").stdout for _ in range(3)]
    finally:
        stop.set()
        thread.join()
    assert counts == ["60000\n"] * 3


def test_a_server_lost_during_a_clear_is_exit_3_with_what_went(
    memcached_address: str, library: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Of two servers, the second dies after its dump was read, before its deletes:
    python-memcached would answer as if the deletes were done; both libraries exit 3."""
    from cachectl.backends.memcached import MemcachedBackend

    victim = start_memcached()
    second = f"127.0.0.1:{victim.port}"
    try:
        fill(memcached_address, "app_", [f"k{n}" for n in range(200)], second)
        original = MemcachedBackend._delete_on

        def delete_on(self: Any, server: str, names: list[bytes]) -> None:
            if server == second:
                victim.stop()
            original(self, server, names)

        monkeypatch.setattr(MemcachedBackend, "_delete_on", delete_on)
        args = args_for(*sorted([memcached_address, second]), prefix="app_")
        result = run(*args, "--timeout", "1", "clear", "--yes")
    finally:
        victim.stop()
    assert result.exit_code == 3, result.output
    assert "keys removed before the failure" in result.stderr
    assert result.stderr.count("error:") == 1 and "Traceback" not in result.stderr


def test_a_garbled_dump_from_one_server_stops_the_clear_before_anything_goes(
    memcached_address: str,
) -> None:
    fill(memcached_address, "flask_cache_", ["a", "b"])
    peer = HostilePeer(b"key=flask_cache_c exp=-1 la=1\n\x00\xffgarbage\r\n")
    try:
        servers = args_for(memcached_address, f"127.0.0.1:{peer.port}")
        result = run(*servers, "--timeout", "1", "clear", "--yes")
    finally:
        peer.close()
    assert result.exit_code == 3 and result.stderr.count("error:") == 1, result.output
    assert listed(*args_for(memcached_address)) == ["a", "b"]
