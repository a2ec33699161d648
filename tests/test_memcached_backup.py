"""``--backup`` and ``restore`` on memcached: every entry a command removes or overwrites is
kept (its bytes, client flags and lifetime, read with meta commands) and put back as the
app reads it, through Flask-Caching with each client library, on real memcached servers."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import pytest

from tests.conftest import SASL_PASSWORD, SASL_USER, oracle_app, run
from tests.servers import ServerProcess, start_memcached
from tests.test_memcached_listing import args_for

PREFIX = "app_"


def app_for(*addresses: str, cache_type: str = "MemcachedCache") -> Any:
    return oracle_app(
        {
            "CACHE_TYPE": cache_type,
            "CACHE_MEMCACHED_SERVERS": list(addresses),
            "CACHE_KEY_PREFIX": PREFIX,
        }
    )


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def stored(address: str) -> dict[bytes, tuple[bytes, int, int]]:
    """Every item on the server: key -> (bytes as stored, client flags, seconds left or
    -1), read with its metadump and meta gets, as nothing of cachectl's reads them."""
    with socket.create_connection(("127.0.0.1", port_of(address)), timeout=5) as conn:
        reader = conn.makefile("rb")
        conn.sendall(b"lru_crawler metadump hash\r\n")
        keys = []
        while (line := reader.readline()) != b"END\r\n":
            keys.append(unquote_to_bytes(line.split()[0][4:]))
        items = {}
        for start in range(0, len(keys), 500):  # pipelined, 500 at a time
            group = keys[start : start + 500]
            conn.sendall(b"".join(b"mg %s v f t k q\r\n" % key for key in group) + b"mn\r\n")
            while (head := reader.readline().split())[0] != b"MN":
                data = reader.read(int(head[1]) + 2)[:-2]
                flags = {word[:1]: word[1:] for word in head[2:]}
                items[flags[b"k"]] = (data, int(flags[b"f"]), int(flags[b"t"]))
    return items


def server_stat(address: str, name: str) -> int:
    """One figure of the server's ``stats``."""
    with socket.create_connection(("127.0.0.1", port_of(address)), timeout=5) as conn:
        conn.sendall(b"stats\r\n")
        reply = b""
        while not reply.endswith(b"END\r\n"):
            reply += conn.recv(65536)
    return int(reply.split(b"STAT %s " % name.encode())[1].split()[0])


def items_on(address: str) -> int:
    """How many items the server holds (``stats``: curr_items)."""
    return server_stat(address, "curr_items")


def under_prefix(items: dict[bytes, Any]) -> dict[bytes, Any]:
    return {key: item for key, item in items.items() if key.startswith(PREFIX.encode())}


def same_entries(before: dict, after: dict, elapsed: float) -> None:
    """The same keys, bytes and flags; each lifetime what it was less the time since
    (memcached counts whole seconds)."""
    assert sorted(after) == sorted(before)
    for key, (data, flags, left) in before.items():
        assert after[key][:2] == (data, flags), key
        if left < 0:
            assert after[key][2] == -1, key
        else:
            assert left - elapsed - 2 <= after[key][2] <= left + 1, (key, left, after[key][2])


def documented(*args: str) -> dict:
    done = run(*args)
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)


def fill_app(address: str, *more: str) -> Any:
    """An app's entries of several kinds and lifetimes, and another app's key."""
    app, cache = app_for(address, *more)
    with app.app_context():
        cache.set("profile", {"name": "alice", "roles": ["admin"]}, timeout=300)
        cache.set("count", 42, timeout=0)
        cache.set("greeting", "héllo", timeout=600)
        cache.set("blob", b"\x00\x01" * 5000, timeout=120)
        for n in range(50):
            cache.set(f"user:{n}", {"n": n}, timeout=900)

        @cache.memoize(300)
        def price(item: str) -> int:
            return len(item)

        price("apple")
    other, other_cache = oracle_app(
        {"CACHE_TYPE": "MemcachedCache", "CACHE_MEMCACHED_SERVERS": [address, *more]}
    )
    with other.app_context():
        other_cache.set("session", "theirs", timeout=0)
    return app, cache


def test_clear_then_restore_gives_back_the_keyspace(
    memcached_address: str, library: str, tmp_path: Path
) -> None:
    app, cache = fill_app(memcached_address)
    before = stored(memcached_address)
    mine = under_prefix(before)
    foreign = {key: item for key, item in before.items() if key not in mine}
    assert len(mine) == 56 and foreign
    args = args_for(memcached_address, prefix=PREFIX)
    backup = tmp_path / "clear.backup"
    started = time.monotonic()

    cleared = documented(*args, "--json", "--backup", str(backup), "clear", "--yes")

    assert cleared["removed"] == 56
    assert stored(memcached_address) == foreign
    assert oct(os.stat(backup).st_mode & 0o777) == "0o600"
    listing = documented("--json", "restore", "--list", str(backup))
    assert listing["entries"] == 56 and listing["complete"]
    assert listing["caches"][0]["family"] == "memcached"

    restored = documented(*args, "--json", "restore", str(backup))

    assert (restored["restored"], restored["present"], restored["expired"]) == (56, 0, 0)
    after = stored(memcached_address)
    same_entries(mine, under_prefix(after), time.monotonic() - started)
    assert {key: item for key, item in after.items() if key not in mine} == foreign
    with app.app_context():
        assert cache.get("profile") == {"name": "alice", "roles": ["admin"]}
        assert cache.get("count") == 42 and cache.get("greeting") == "héllo"
        assert cache.get("blob") == b"\x00\x01" * 5000
        assert cache.get("user:7") == {"n": 7}


def test_delete_set_and_expire_keep_what_they_change(
    memcached_address: str, library: str, tmp_path: Path
) -> None:
    app, cache = fill_app(memcached_address)
    before = under_prefix(stored(memcached_address))
    args = args_for(memcached_address, prefix=PREFIX)
    keys = tmp_path / "keys.txt"
    keys.write_text("user:1\nuser:2\nmissing\n")

    assert run(*args, "--backup", str(tmp_path / "d"), "delete", "profile").exit_code == 0
    done = run(*args, "--backup", str(tmp_path / "f"), "delete", "--from-file", str(keys))
    assert done.exit_code == 0, done.output
    done = run(*args, "--backup", str(tmp_path / "s"), "set", "count", "7", "--as", "json")
    assert done.exit_code == 0, done.output
    done = run(*args, "--backup", str(tmp_path / "e"), "expire", "greeting", "5")
    assert done.exit_code == 0, done.output
    with app.app_context():
        assert cache.get("profile") is None and cache.get("user:1") is None
        assert cache.get("count") == 7
    assert stored(memcached_address)[b"app_greeting"][2] <= 5

    assert documented("--json", "restore", "--list", str(tmp_path / "f"))["entries"] == 2
    for name in ("d", "f"):
        assert documented(*args, "--json", "restore", str(tmp_path / name))["restored"] >= 1
    # The value set since the backup is newer: left, and counted, unless --replace.
    kept = documented(*args, "--json", "restore", str(tmp_path / "s"))
    assert (kept["restored"], kept["present"]) == (0, 1)
    with app.app_context():
        assert cache.get("count") == 7
    replaced = documented(*args, "--json", "restore", "--replace", str(tmp_path / "e"))
    assert replaced["restored"] == 1
    replaced = documented(*args, "--json", "restore", "--replace", str(tmp_path / "s"))
    assert replaced["restored"] == 1

    after = under_prefix(stored(memcached_address))
    same_entries(before, after, 30)
    assert after[b"app_greeting"][2] > 500  # its lifetime back, not expire's 5 seconds
    with app.app_context():
        assert cache.get("profile") == {"name": "alice", "roles": ["admin"]}
        assert cache.get("user:2") == {"n": 2} and cache.get("count") == 42


def test_dry_run_only_and_expired_entries(memcached_address: str, tmp_path: Path) -> None:
    app, cache = fill_app(memcached_address)
    with app.app_context():
        # memcached counts lifetimes in whole seconds of its own clock, which may lag the
        # machine's by a second or more: an entry given 1 s may be gone at once, before
        # the backup reads it; given 3 s, it outlives the backup but may live 5.
        cache.set("brief", "soon gone", timeout=3)
    brief_ends = int(time.time()) + 3  # cachelib sends the lifetime's end, this or earlier
    args = args_for(memcached_address, prefix=PREFIX)
    backup = str(tmp_path / "b")
    assert documented(*args, "--json", "--backup", backup, "clear", "--yes")["removed"] == 57
    with app.app_context():
        cache.set("user:3", "written since")
    # Until memcached's own clock is past the entry's end: its lifetime left when it was
    # kept is then spent, however far that clock lags the machine's.
    waited = time.monotonic()
    while server_stat(memcached_address, "time") <= brief_ends:
        assert time.monotonic() - waited < 10, "memcached's clock does not move"
        time.sleep(0.1)
    time.sleep(0.1)

    dry = documented(*args, "--json", "restore", "--dry-run", backup)
    assert (dry["restored"], dry["present"], dry["expired"]) == (55, 1, 1)
    assert set(under_prefix(stored(memcached_address))) == {b"app_user:3"}

    only = documented(*args, "--json", "restore", "--only", "user:*", backup)
    assert (only["restored"], only["present"], only["not_matching"]) == (49, 1, 7)
    with app.app_context():
        assert cache.get("user:3") == "written since" and cache.get("user:4") == {"n": 4}
        assert cache.get("profile") is None
    rest = documented(*args, "--json", "restore", backup)
    assert (rest["restored"], rest["present"], rest["expired"]) == (6, 50, 1)
    with app.app_context():
        assert cache.get("profile") == {"name": "alice", "roles": ["admin"]}
        assert cache.get("brief") is None


def test_a_key_written_again_between_keep_and_delete_is_kept_as_it_went(
    memcached_address: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The delete names the CAS it kept: a value the app wrote meanwhile is not removed
    unkept; it is read and kept again, then removed. The same bytes written again (a new
    CAS, as memcached also gives an entry it moves in memory) are not kept twice."""
    from cachectl.backends import memcached_keep

    app, cache = fill_app(memcached_address)
    original = memcached_keep.MetaSession.remove
    rewritten = []

    def remove(self: memcached_keep.MetaSession, cas: dict[bytes, int]) -> list[bytes]:
        if not rewritten:
            with app.app_context():
                cache.set("profile", "rewritten")
            rewritten.append(True)
        return original(self, cas)

    answers: list[list[bytes]] = []

    def remove_same(self: memcached_keep.MetaSession, cas: dict[bytes, int]) -> list[bytes]:
        if not answers:
            with app.app_context():
                cache.set("profile", {"name": "alice", "roles": ["admin"]}, timeout=300)
        changed = original(self, cas)
        answers.append(changed)
        return changed

    monkeypatch.setattr(memcached_keep.MetaSession, "remove", remove)
    args = args_for(memcached_address, prefix=PREFIX)
    backup = str(tmp_path / "b")
    assert documented(*args, "--json", "--backup", backup, "clear", "--yes")["removed"] == 56
    assert under_prefix(stored(memcached_address)) == {}
    assert documented("--json", "restore", "--list", backup)["entries"] == 57
    monkeypatch.undo()
    restored = documented(*args, "--json", "restore", "--only", "profile", backup)
    assert (restored["restored"], restored["present"]) == (1, 1)  # the first kept, then the newer
    documented(*args, "--json", "restore", "--replace", "--only", "profile", backup)
    with app.app_context():
        assert cache.get("profile") == "rewritten"  # the last one kept is the one that went

    fill_app(memcached_address)
    monkeypatch.setattr(memcached_keep.MetaSession, "remove", remove_same)
    same = str(tmp_path / "same")
    assert documented(*args, "--json", "--backup", same, "clear", "--yes")["removed"] == 56
    assert answers[0] == [b"app_profile"]  # a new CAS: read again, found the same
    assert documented("--json", "restore", "--list", same)["entries"] == 56


@pytest.fixture(scope="module")
def second_server() -> Iterator[ServerProcess]:
    server = start_memcached()
    yield server
    server.stop()


def test_two_servers_each_key_back_where_the_client_reads_it(
    memcached_address: str, second_server: ServerProcess, library: str, tmp_path: Path
) -> None:
    second = f"127.0.0.1:{second_server.port}"
    run(*args_for(second), "clear", "--flush-all", "--yes")
    app, cache = fill_app(memcached_address, second)
    before = {**stored(memcached_address), **stored(second)}
    assert under_prefix(stored(memcached_address)) and under_prefix(stored(second))
    args = args_for(memcached_address, second, prefix=PREFIX)

    done = run(*args, "--backup", str(tmp_path / "d"), "delete", "user:1", "user:2", "count")
    assert done.exit_code == 0, done.output
    assert (
        documented(*args, "--json", "--backup", str(tmp_path / "c"), "clear", "--yes")["removed"]
        == 53
    )
    assert documented(*args, "--json", "restore", str(tmp_path / "c"))["restored"] == 53
    assert documented(*args, "--json", "restore", str(tmp_path / "d"))["restored"] == 3

    after = {**stored(memcached_address), **stored(second)}
    same_entries(under_prefix(before), under_prefix(after), 30)
    with app.app_context():
        assert all(cache.get(f"user:{n}") == {"n": n} for n in range(50))
        assert cache.get("count") == 42


def test_spread_values_are_kept_chunk_by_chunk(memcached_address: str, tmp_path: Path) -> None:
    app, cache = app_for(memcached_address, cache_type="SpreadSASLMemcachedCache")
    big = "x" * 2_500_000 + "end"  # three chunks
    with app.app_context():
        cache.set("big", big)
        cache.set("small", 1)
    args = ["--type", "SpreadSASLMemcachedCache", *args_for(memcached_address, prefix=PREFIX)[2:]]
    backup = str(tmp_path / "b")
    assert documented(*args, "--json", "--backup", backup, "clear", "--yes")["removed"] == 2
    assert under_prefix(stored(memcached_address)) == {}
    assert documented("--json", "restore", "--list", backup)["entries"] == 4
    assert documented(*args, "--json", "restore", backup)["restored"] == 4
    with app.app_context():
        assert cache.get("big") == big and cache.get("small") == 1


def test_flush_all_with_backup_is_refused(memcached_address: str, tmp_path: Path) -> None:
    fill_app(memcached_address)
    before = stored(memcached_address)
    backup = tmp_path / "b"
    started = time.monotonic()
    refused = run(
        *args_for(memcached_address), "--backup", str(backup), "clear", "--flush-all", "--yes"
    )
    assert refused.exit_code == 2, refused.output
    assert refused.stderr.count("error:") == 1 and "flush_all" in refused.stderr
    same_entries(before, stored(memcached_address), time.monotonic() - started)
    assert not backup.exists()


def test_sasl_servers_refuse_backup_before_anything_changes(
    sasl_memcached_address: str, tmp_path: Path
) -> None:
    settings = {
        "CACHE_TYPE": "SASLMemcachedCache",
        "CACHE_MEMCACHED_SERVERS": [sasl_memcached_address],
        "CACHE_MEMCACHED_USERNAME": SASL_USER,
        "CACHE_MEMCACHED_PASSWORD": SASL_PASSWORD,
    }
    app, cache = oracle_app(settings)
    with app.app_context():
        cache.set("profile", "kept")
    args = [
        "--type", "SASLMemcachedCache",
        "-o", f'CACHE_MEMCACHED_SERVERS=["{sasl_memcached_address}"]',
        "-o", f"CACHE_MEMCACHED_USERNAME={SASL_USER}",
        "-o", f"CACHE_MEMCACHED_PASSWORD={SASL_PASSWORD}",
    ]  # fmt: skip
    backup = tmp_path / "b"
    for command in (["delete", "profile"], ["set", "profile", "new"]):
        refused = run(*args, "--backup", str(backup), *command)
        assert refused.exit_code == 2, refused.output
        assert refused.stderr.count("error:") == 1 and "SASL" in refused.stderr
    assert not backup.exists()
    with app.app_context():
        assert cache.get("profile") == "kept"


def test_a_backup_of_another_family_is_refused_in_one_line(
    memcached_address: str, tmp_path: Path
) -> None:
    from cachectl.backup.file_format import Entry
    from cachectl.backup.writer import BackupWriter, now_ms

    path = str(tmp_path / "redis.backup")
    writer = BackupWriter(path, ["cachectl", "clear"])
    keeper = writer.keeper({"family": "redis", "server": "redis://x", "prefix": PREFIX})
    keeper.keep([Entry(b"app_profile", b"\x00payload", 5000)], now_ms())
    writer.close()

    refused = run(*args_for(memcached_address, prefix=PREFIX), "restore", path)

    assert refused.exit_code == 2, refused.output
    assert refused.stderr.count("\n") == 1 and "holds redis entries" in refused.stderr
    assert stored(memcached_address) == {}


def test_pattern_and_exclude_keep_exactly_what_they_remove(
    memcached_address: str, library: str, tmp_path: Path
) -> None:
    app, cache = fill_app(memcached_address)
    before = under_prefix(stored(memcached_address))
    args = args_for(memcached_address, prefix=PREFIX)
    by_pattern, rest = str(tmp_path / "p"), str(tmp_path / "r")

    done = documented(
        *args, "--json", "--backup", by_pattern, "delete", "--pattern", "user:1*", "--yes"
    )
    assert done["removed"] == 11
    done = documented(*args, "--json", "--backup", rest, "clear", "--exclude", "user:*", "--yes")
    assert done["removed"] == 6
    assert len(under_prefix(stored(memcached_address))) == 39
    assert documented("--json", "restore", "--list", by_pattern)["entries"] == 11
    assert documented("--json", "restore", "--list", rest)["entries"] == 6

    assert documented(*args, "--json", "restore", by_pattern)["restored"] == 11
    assert documented(*args, "--json", "restore", rest)["restored"] == 6
    same_entries(before, under_prefix(stored(memcached_address)), 30)
    with app.app_context():
        assert cache.get("user:12") == {"n": 12} and cache.get("count") == 42


def test_an_entry_the_server_refuses_is_counted_and_the_rest_restored(
    memcached_address: str, tmp_path: Path
) -> None:
    """A value larger than the server takes (restored into a server with a smaller item
    size): reported, exit 1, and the entries around it restored."""
    from cachectl.backup.file_format import Entry
    from cachectl.backup.writer import BackupWriter, now_ms

    path = str(tmp_path / "b")
    writer = BackupWriter(path, ["cachectl", "clear"])
    keeper = writer.keeper({"family": "memcached", "server": "x", "prefix": PREFIX})
    entries = [
        Entry(b"app_a", b"1", 60_000),
        Entry(b"app_huge", b"x" * 2_000_000),
        Entry(b"app_b", b"2"),
    ]
    keeper.keep(entries, now_ms())
    writer.close()

    done = run(*args_for(memcached_address, prefix=PREFIX), "--json", "restore", path)

    assert done.exit_code == 1, done.output
    report = json.loads(done.stdout)
    assert (report["restored"], report["failed"]) == (2, 1)
    assert "too large" in report["failures"][0]
    items = stored(memcached_address)
    assert items[b"app_a"][:2] == (b"1", 0) and 55 <= items[b"app_a"][2] <= 60
    assert items[b"app_b"] == (b"2", 0, -1)


def test_a_clear_killed_midway_leaves_a_backup_of_every_entry_gone(
    memcached_address: str, tmp_path: Path
) -> None:
    """SIGKILL once the first keys are gone: each key the clear removed is in the
    file (its chunk was on disk before its delete went), so a restore gives back exactly
    the keyspace there was; the keys the run did not reach are present, left alone."""
    import signal
    import subprocess
    import sys

    total = 60_000
    with socket.create_connection(("127.0.0.1", port_of(memcached_address)), timeout=5) as conn:
        reader = conn.makefile("rb")
        for start in range(0, total, 5000):
            lines = (
                b"ms app_k%d 8 T3600 q\r\nvalue%03d\r\n" % (n, n % 1000)
                for n in range(start, start + 5000)
            )
            conn.sendall(b"".join(lines) + b"mn\r\n")
            assert reader.readline() == b"MN\r\n"
    started = time.monotonic()
    before = under_prefix(stored(memcached_address))
    assert len(before) == total
    backup = tmp_path / "killed.backup"
    args = args_for(memcached_address, prefix=PREFIX)
    process = subprocess.Popen(
        [sys.executable, "-m", "cachectl", *args, "--backup", str(backup), "clear", "--yes"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if items_on(memcached_address) < total:
            break
        time.sleep(0.002)
    assert process.poll() is None, "the clear ended before the kill: more keys are needed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)

    left = under_prefix(stored(memcached_address))
    assert 0 < len(left) < total
    listing = documented("--json", "restore", "--list", str(backup))
    assert not listing["complete"] and listing["entries"] >= total - len(left)

    restored = documented(*args, "--json", "restore", str(backup))

    assert restored["restored"] == total - len(left)
    assert restored["present"] == listing["entries"] - restored["restored"]
    same_entries(before, under_prefix(stored(memcached_address)), time.monotonic() - started)


def test_a_file_naming_keys_outside_the_prefix_never_writes_them(
    memcached_address: str, tmp_path: Path
) -> None:
    """A crafted file that says its prefix is the cache's but names another app's key: that
    entry is refused and counted, never written; the rest restored, exit 1."""
    from cachectl.backup.file_format import Entry
    from cachectl.backup.writer import BackupWriter, now_ms

    path = str(tmp_path / "crafted")
    writer = BackupWriter(path, ["cachectl", "crafted"])
    keeper = writer.keeper({"family": "memcached", "server": "x", "prefix": PREFIX})
    keeper.keep([Entry(b"app_fine", b"1"), Entry(b"session:victim", b"planted")], now_ms())
    writer.close()

    done = run(*args_for(memcached_address, prefix=PREFIX), "--json", "restore", path)

    assert done.exit_code == 1, done.output
    report = json.loads(done.stdout)
    assert (report["restored"], report["failed"]) == (1, 1)
    assert "not under the prefix" in report["failures"][0]
    items = stored(memcached_address)
    assert b"session:victim" not in items and items[b"app_fine"][0] == b"1"
