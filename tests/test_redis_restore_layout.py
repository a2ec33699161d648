"""``restore`` into Redis writes each entry's RESTORE command straight from the file's layout
(redis_restore._restore_commands): fast, so hand-made. Here its bytes are checked against
redis-py's own ``pack_command`` of the same command, for every kind of entry the loop
tells apart (lifetime or none, expired, outside the prefix, keys past the table of
prefab heads, ``--replace``), and a chunk whose entries do not parse against the count
its head gives is reported as damaged, not sent, and the rest of the file restored."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
import redis
from redis.connection import Connection

from cachectl.backends.redis_restore import _restore_commands
from cachectl.backup.file_format import (
    ENTRIES,
    DamagedRecord,
    Entry,
    chunk_body,
    entry_bytes,
    frame,
)
from cachectl.backup.reader import RestoreCounts
from cachectl.backup.writer import BackupWriter, now_ms
from tests.conftest import RedisTarget, run

PREFIX = b"app_"


def _entries(rng: random.Random, count: int) -> list[Entry]:
    names = [
        PREFIX + bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 30, 251, 252, 400])))
        for _ in range(count)
    ]
    names += [b"", b"ap", b"other_key", b"app", PREFIX]  # outside the prefix, and the bare prefix
    return [
        Entry(
            name,
            os.urandom(rng.choice([0, 1, 9, 10, 200, 5000])),
            ttl_ms=rng.choice([-1, 0, 1, 999, 1000, 1001, 86_400_000, 10**12]),
            flags=rng.randrange(2**32),
            extra=b"x" * rng.choice([0, 0, 3]),
        )
        for name in names
    ]


@pytest.mark.parametrize("replace", [False, True], ids=["plain", "replace"])
def test_each_command_is_what_redis_py_would_send(replace: bool) -> None:
    rng = random.Random(23)
    entries = _entries(rng, 400)
    elapsed = 1000
    counts = RestoreCounts()
    laid_out = b"".join(entry_bytes(entry) for entry in entries)
    parts, sent = _restore_commands(len(entries), laid_out, elapsed, replace, counts, PREFIX)

    packer = Connection()
    expected, alive, expired, outside = [], 0, 0, 0
    for entry in entries:
        if not entry.name.startswith(PREFIX):
            outside += 1
            continue
        if entry.ttl_ms >= 0 and entry.ttl_ms <= elapsed:
            expired += 1
            continue
        left = 0 if entry.ttl_ms < 0 else entry.ttl_ms - elapsed
        command = ["RESTORE", entry.name, left, entry.value] + (["REPLACE"] if replace else [])
        expected += packer.pack_command(*command)
        alive += 1
    assert b"".join(parts) == b"".join(expected)
    assert (sent, counts.expired, counts.failed) == (alive, expired, outside)
    assert alive and expired and outside
    assert all("not under the prefix" in why for why in counts.failures)


def test_a_chunk_of_nothing_alive_sends_nothing() -> None:
    counts = RestoreCounts()
    gone = entry_bytes(Entry(PREFIX + b"k", b"v", ttl_ms=5))
    assert _restore_commands(1, gone, 10, False, counts, PREFIX) == ([], 0)
    assert counts.expired == 1
    assert _restore_commands(0, b"", 10, True, RestoreCounts(), PREFIX) == ([], 0)


@pytest.mark.parametrize(
    "damage",
    ["cut inside the last entry", "a byte after the last entry", "one entry fewer than said"],
)
def test_entries_that_do_not_parse_are_damaged_before_anything_is_sent(damage: str) -> None:
    entries = [Entry(PREFIX + b"%d" % n, b"payload", ttl_ms=-1) for n in range(5)]
    laid_out, count = b"".join(entry_bytes(entry) for entry in entries), len(entries)
    if damage == "cut inside the last entry":
        laid_out = laid_out[:-3]
    elif damage == "a byte after the last entry":
        laid_out += b"\x00"
    else:
        count += 1
    with pytest.raises(DamagedRecord):
        _restore_commands(count, laid_out, 0, False, RestoreCounts(), PREFIX)


def test_a_chunk_whose_checksum_fits_but_entries_do_not_is_reported_and_skipped(
    redis_target: RedisTarget, tmp_path: Path
) -> None:
    """A file edited by hand (checksums recomputed): its whole chunks restore, the one that
    does not parse is named among the damaged, nothing of it is written, exit 1."""
    client: redis.Redis = redis_target.client
    client.set("app_a", b"1")
    client.set("app_b", b"2", px=600_000)
    payloads = {name: client.dump(name) for name in ("app_a", "app_b")}
    client.delete("app_a", "app_b")
    backup = tmp_path / "edited.backup"
    writer = BackupWriter(str(backup), ["cachectl", "edited"])
    keeper = writer.keeper({"family": "redis", "server": "elsewhere", "prefix": "app_"})
    keeper.keep([Entry(b"app_a", payloads["app_a"])], now_ms())
    writer.close()
    bad = entry_bytes(Entry(b"app_b", payloads["app_b"], ttl_ms=600_000))
    with open(backup, "ab") as stream:  # two entries said, one there
        stream.write(frame(ENTRIES, chunk_body(0, now_ms(), 2, bad)))

    args = ["--url", redis_target.url, "--key-prefix", "app_", "--json", "restore", str(backup)]
    result = run(*args)
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert document["restored"] == 1 and document["ok"] is False
    assert len(document["damaged"]) == 1 and "past its end" in document["damaged"][0]
    assert client.get("app_a") == b"1" and not client.exists("app_b")


class _Trickle:
    """A socket that hands over what it holds a few bytes at a time."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step = data, step

    def recv(self, size: int) -> bytes:
        piece, self.data = self.data[: min(size, self.step)], self.data[min(size, self.step) :]
        return piece


@pytest.mark.parametrize("step", [1, 3, 5, 7, 1 << 16])
def test_replies_are_counted_chunk_by_chunk_however_they_arrive(step: int) -> None:
    """Each chunk's replies exactly, the next chunk's left for it, whatever the cut."""
    from cachectl.backends.redis_restore import Restorer

    busy = b"-BUSYKEY Target key name already exists.\r\n"
    refused = b"-ERR DUMP payload version or checksum are wrong\r\n"
    chunks = [[b"+OK\r\n"] * 4, [b"+OK\r\n", busy, b"+OK\r\n", refused], [busy], [b"+OK\r\n"] * 9]
    restorer = Restorer(None, PREFIX)
    restorer._connection = type("Connection", (), {})()
    restorer._connection._sock = _Trickle(b"".join(b"".join(c) for c in chunks), step)
    found = []
    for replies in chunks:
        counts = RestoreCounts()
        restorer._read(len(replies), counts)
        found.append((counts.restored, counts.present, counts.failed))
    assert found == [(4, 0, 0), (2, 1, 1), (0, 1, 0), (9, 0, 0)]
    assert restorer._pending == b""
