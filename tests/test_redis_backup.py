"""``--backup FILE`` on Redis and ``restore FILE``: every destructive command keeps what it
removes or overwrites, and a restore puts the keyspace under the prefix back as it was.

Each round trip compares the database key by key: the same names, the same ``DUMP``
bytes (any type, any encoding), a lifetime no longer than before and short of it by no
more than the time that passed; keys outside the prefix are never touched, by the command
or by the restore. Real servers only: a plain Redis, a Cluster and a Sentinel set (the
fixtures of tests/test_sentinel_and_cluster.py), a server with scripting renamed away, an
ACL server, and a run killed with SIGKILL or stopped with SIGTERM in the middle of a clear.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cachectl.backup.file_format import ENTRIES, FRAME_SIZE, MARKER, TRAILER
from cachectl.backup.reader import BackupFile
from tests.conftest import CONSOLE_SCRIPT, RedisTarget, fill_keys, run
from tests.servers import ServerProcess, start_redis
from tests.test_invalidation import Shop, redis_shop, shop_dir  # noqa: F401  (fixtures)
from tests.test_nested_prefixes import make_nest
from tests.test_no_scripting import scripting_commands
from tests.test_release_plan import _run_app, git, shop_repo  # noqa: F401  (a fixture)
from tests.test_sentinel_and_cluster import (  # noqa: F401  (fixtures)
    as_options,
    cluster,
    cluster_config,
    sentinel_config,
    sentinel_set,
)

PREFIX = "app_"
#: A DUMP never changes between two reads of the same value; a lifetime read back after a
#: restore may be short of the one before by the time between the two reads, plus the time
#: a keeping step took (its clock is read before its DUMPs: the error is always on the
#: short side, never a longer life), and by the rounding of one millisecond each way.
SLACK_MS = 50
STEP_MS = 500

Keyspace = dict[bytes, tuple[bytes, int]]


def keyspace(client: redis.Redis | redis.RedisCluster, match: str = "*") -> Keyspace:
    """Every key matching ``match``: its DUMP payload and its PTTL."""
    if isinstance(client, redis.RedisCluster):
        names = list(client.scan_iter(match=match, count=1000, target_nodes="primaries"))
    else:
        names = list(client.scan_iter(match=match, count=1000))
    found: Keyspace = {}
    for start in range(0, len(names), 5000):
        group = names[start : start + 5000]
        pipe = client.pipeline(transaction=False)
        for name in group:
            pipe.dump(name)
            pipe.pttl(name)
        replies = pipe.execute()
        for at, name in enumerate(group):
            if replies[2 * at] is not None:
                found[bytes(name)] = (bytes(replies[2 * at]), int(replies[2 * at + 1]))
    return found


def assert_same(before: Keyspace, after: Keyspace, elapsed_ms: float) -> None:
    """The same keys with the same bytes; each lifetime within the time that passed."""
    missing, extra = sorted(set(before) - set(after)), sorted(set(after) - set(before))
    assert not missing and not extra, f"missing {missing[:5]}, extra {extra[:5]}"
    for name, (payload, ttl) in before.items():
        payload_after, ttl_after = after[name]
        assert payload_after == payload, name
        if ttl < 0:
            assert ttl_after == ttl, name
        else:
            assert ttl - elapsed_ms - STEP_MS <= ttl_after <= ttl + SLACK_MS, (name, ttl, ttl_after)


def split(space: Keyspace, prefix: bytes = PREFIX.encode()) -> tuple[Keyspace, Keyspace]:
    """The keys under ``prefix``, and the others."""
    ours = {name: value for name, value in space.items() if name.startswith(prefix)}
    return ours, {name: value for name, value in space.items() if not name.startswith(prefix)}


def seed(client: redis.Redis) -> None:
    """The app's keys of every type, some with lifetimes, and other apps' keys."""
    pipe = client.pipeline(transaction=False)
    for n in range(1500):
        name = f"{PREFIX}item:{n}"
        if n % 3:
            pipe.set(name, b"!" + os.urandom(40), px=600_000 + n)
        else:
            pipe.set(name, b"!" + os.urandom(40))
    pipe.hset(f"{PREFIX}hash", mapping={"a": "1", "b": "2"})
    pipe.rpush(f"{PREFIX}list", *[str(n) for n in range(200)])
    pipe.zadd(f"{PREFIX}zset", {"x": 1.5, "y": 2})
    pipe.sadd(f"{PREFIX}set", 1, 2, 3)  # an intset: a set of strings DUMPs in hash order
    pipe.set(f"{PREFIX}ünïcode [*]", b"odd name")
    pipe.set(b"app_\xff\xfe not utf-8", b"raw name")
    for n in range(300):
        pipe.set(f"other_{n}", b"not ours", px=900_000)
    pipe.set("app", b"not under the prefix either")
    pipe.execute()


def target_args(target: RedisTarget, *extra: str) -> list[str]:
    return ["--url", target.url, "--key-prefix", PREFIX, *extra]


class RoundTrip:
    """The database before a command with ``--backup``, then after its restore."""

    def __init__(
        self, client: redis.Redis | redis.RedisCluster, backup: Path, prefix: str = PREFIX
    ) -> None:
        self.client = client
        self.backup = backup
        self.prefix = prefix.encode()
        self.started = time.monotonic()
        self.before = keyspace(client)

    def after_command(self, removed_or_changed: int | None = None) -> None:
        """Keys outside the prefix stayed; the prefix changed (else nothing was tested)."""
        ours, theirs = split(self.before, self.prefix)
        now_ours, now_theirs = split(keyspace(self.client), self.prefix)
        assert_same(theirs, now_theirs, self._elapsed())
        elapsed = self._elapsed()
        changed = {
            name
            for name, (payload, ttl) in ours.items()
            if name not in now_ours
            or now_ours[name][0] != payload
            or (now_ours[name][1] < 0) != (ttl < 0)
            or not ttl - elapsed - SLACK_MS <= now_ours[name][1] <= ttl + SLACK_MS
        }
        assert changed or set(now_ours) != set(ours), "the command changed nothing"
        if removed_or_changed is not None:
            assert len(changed) == removed_or_changed

    def _elapsed(self) -> float:
        return (time.monotonic() - self.started) * 1000

    def after_restore(self, extra_ours: set[bytes] = frozenset()) -> None:  # type: ignore[assignment]
        """The whole database as before (less keys the app itself wrote since)."""
        after = keyspace(self.client)
        for name in extra_ours:
            after.pop(name, None)
        assert_same(self.before, after, self._elapsed())


def backup_doc(result: object) -> dict:
    document = json.loads(result.stdout)  # type: ignore[attr-defined]
    assert "backup" in document, document
    return document["backup"]


@pytest.fixture
def seeded(redis_target: RedisTarget) -> RedisTarget:
    seed(redis_target.client)
    return redis_target


def restore(target: RedisTarget, backup: Path, *extra: str) -> dict:
    result = run(*target_args(target), "--json", "restore", str(backup), *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# --- every destructive command, on a plain Redis ------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["delete", "item:1", "item:2", "hash", "absent"],
        ["delete", "--pattern", "item:1*", "--yes"],
        ["clear", "--yes"],
        ["clear", "--yes", "--exclude", "item:2*"],
        ["set", "item:3", "new value"],
        ["set", "list", "new value", "--ttl", "30"],
        ["expire", "item:4", "5"],
        ["persist", "item:5"],
        ["make-fragment-key", "sidebar", "--delete"],
    ],
    ids=lambda command: " ".join(command),
)
def test_each_command_round_trips(seeded: RedisTarget, tmp_path: Path, command: list[str]) -> None:
    client = seeded.client
    client.set(f"{PREFIX}_template_fragment_cache_sidebar", b"<div>", ex=300)
    backup = tmp_path / "kept.backup"
    trip = RoundTrip(client, backup)
    result = run(*target_args(seeded), "--json", "--backup", str(backup), *command)
    assert result.exit_code == 0, result.output
    kept = backup_doc(result)
    assert kept["file"] == str(backup) and kept["created"] and kept["entries"] > 0
    trip.after_command()
    restored = restore(seeded, backup, "--replace")
    assert restored["restored"] == kept["entries"] and restored["failed"] == 0
    trip.after_restore()


def test_delete_from_file_with_names_that_are_not_utf8(seeded: RedisTarget, tmp_path: Path) -> None:
    listing = run(*target_args(seeded), "keys", "-0", "*")
    assert listing.exit_code == 0, listing.stderr
    names = tmp_path / "names"
    names.write_bytes(listing.stdout_bytes)
    backup = tmp_path / "kept.backup"
    trip = RoundTrip(seeded.client, backup)
    deleted = run(
        *target_args(seeded), "--json", "--backup", str(backup), "delete", "--from-file",
        str(names), "-0",
    )  # fmt: skip
    assert deleted.exit_code == 0, deleted.output
    assert json.loads(deleted.stdout)["removed"] == backup_doc(deleted)["entries"] == 1506
    assert split(keyspace(seeded.client))[0] == {}
    trip.after_command()
    restore(seeded, backup)
    trip.after_restore()


def test_clear_every_cache_and_nested_caches(redis_target: RedisTarget, tmp_path: Path) -> None:
    nest = make_nest(redis_target, tmp_path)
    both = {0: redis_target.client, 1: nest.other_db}
    before = {n: keyspace(client) for n, client in both.items()}
    backup = tmp_path / "all.backup"
    cleared = nest.run("--json", "--backup", str(backup), "--cache", "all", "clear", "--yes")
    assert cleared.exit_code == 0, cleared.output
    assert backup_doc(cleared)["entries"] == 4 + 3 + 1 + 1  # main, data, thumbnail, elsewhere
    assert set(keyspace(redis_target.client)) == {b"zzz", b"pk_a"}
    assert keyspace(nest.other_db) == {}
    # One file, four caches: each restore takes its own cache's entries.
    for name in (None, "data", "thumbnail", "elsewhere"):
        args = ["--cache", name] if name else []
        result = nest.run(*args, "--json", "restore", str(backup))
        assert result.exit_code == 0, result.output
        document = json.loads(result.stdout)
        assert document["restored"] == {None: 4, "data": 3, "thumbnail": 1, "elsewhere": 1}[name]
        assert document["other_caches"] == 9 - document["restored"]
    for n, client in both.items():
        assert_same(before[n], keyspace(client), 60_000)

    nested = tmp_path / "nested.backup"
    cleared = nest.run("--json", "--backup", str(nested), "clear", "--yes", "--include-nested")
    assert cleared.exit_code == 0, cleared.output
    assert backup_doc(cleared)["entries"] == 4 + 3 + 1
    assert nest.run("restore", str(nested)).exit_code == 0
    assert_same(before[0], keyspace(redis_target.client), 60_000)


def test_delete_memoized_and_delete_view_in_a_real_app(
    redis_shop: Shop,  # noqa: F811
    tmp_path: Path,
) -> None:
    client = redis_shop.redis
    client.set("other_app_key", b"stays", ex=100)
    cases = [
        ("delete-memoized", "shopapp.get_user", "1"),
        ("delete-memoized", "shopapp:get_user"),  # rewrites the function's version key
        ("delete-memoized", "shopapp.get_user", "--purge"),
        ("delete-memoized", "shopapp.Person.has_membership", "--instance", "Person(3)"),
        ("delete-view", "/user/alice"),
        ("delete-view", "/search", "--all-queries"),
        ("make-fragment-key", "sidebar", "bob", "--delete"),
    ]
    for number, case in enumerate(cases):
        redis_shop.use()  # every target cached again
        before = keyspace(client)
        started = time.monotonic()
        backup = tmp_path / f"{number}.backup"
        document = redis_shop.cachectl("--backup", str(backup), *case)
        assert document["backup"]["entries"] >= 1, (case, document)
        after = keyspace(client)
        assert after != before, case
        assert after[b"other_app_key"][0] == before[b"other_app_key"][0]
        restored = redis_shop.cachectl("restore", str(backup), "--replace")
        assert restored["restored"] == document["backup"]["entries"], case
        assert_same(before, keyspace(client), (time.monotonic() - started) * 1000)
        # The app reads every target from the cache again: nothing is recomputed.
        counts = redis_shop.counts()
        redis_shop.use()
        assert redis_shop.counts() == counts, case


GROUPS = """
[groups.prices]
views = ["/pricing"]
fragments = ["footer"]
patterns = ["item:1*"]
"""


def test_invalidate_and_batch_keep_every_line_in_one_file(
    seeded: RedisTarget, tmp_path: Path
) -> None:
    client = seeded.client
    client.set(f"{PREFIX}view//pricing", b"<html>", ex=300)
    client.set(f"{PREFIX}_template_fragment_cache_footer", b"<footer>")
    config = tmp_path / "cachectl.toml"
    config.write_text(
        f'CACHE_TYPE = "RedisCache"\nCACHE_REDIS_URL = "{seeded.url}"\n'
        f'CACHE_KEY_PREFIX = "{PREFIX}"\n' + GROUPS
    )
    backup = tmp_path / "invalidate.backup"
    trip = RoundTrip(client, backup)
    result = run("--config", str(config), "--json", "--backup", str(backup), "invalidate",
                 "prices", "--yes")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert backup_doc(result)["entries"] == 2 + 611  # the view, the fragment, item:1*
    trip.after_command()
    assert run("--config", str(config), "restore", str(backup)).exit_code == 0
    trip.after_restore()

    lines = tmp_path / "deploy.txt"
    lines.write_text("delete item:7\nset item:8 changed\nexpire item:9 3\nclear --yes\n")
    backup = tmp_path / "batch.backup"
    trip = RoundTrip(client, backup)
    result = run(*target_args(seeded), "--json", "--backup", str(backup), "batch", str(lines))
    assert result.exit_code == 0, result.output
    # item:7, item:8's and item:9's values before, then the clear (item:8 as set by the batch)
    assert backup_doc(result)["entries"] == 3 + 1505 + 2
    trip.after_command()
    # Restored in file order, each key's first copy is its value before the batch: the
    # clear's copies of item:8 and item:9 (as the batch left them) find them present.
    first = restore(seeded, backup)
    assert (first["restored"], first["present"]) == (1508, 2)
    trip.after_restore()


@pytest.mark.parametrize("keys", [700, 2_500, 9_000, 30_000])
def test_a_keeping_clear_keeps_each_key_once(
    redis_target: RedisTarget, tmp_path: Path, keys: int
) -> None:
    """The lane that walks the first half of the table goes on past its middle in its last
    step, where the other lane started: whether each lane takes a few steps or many, no
    key is kept twice (a second entry restores as "present")."""
    client = redis_target.client
    fill_keys(client, PREFIX + "{}", keys)
    fill_keys(client, "other_{}", keys // 2)
    backup = tmp_path / "once.backup"
    result = run(*target_args(redis_target), "--json", "--backup", str(backup), "clear", "--yes")
    assert result.exit_code == 0, result.output
    with BackupFile(str(backup)) as kept:
        names = [entry.name for chunk in kept.chunks() for entry in chunk.entries]
    assert len(names) == len(set(names)) == keys == json.loads(result.stdout)["removed"]
    assert client.dbsize() == keys // 2


# --- topologies and servers ------------------------------------------------------------------


def test_cluster_round_trip(cluster: list[ServerProcess], tmp_path: Path) -> None:  # noqa: F811
    config = {**cluster_config(cluster), "CACHE_KEY_PREFIX": PREFIX}
    client = redis.RedisCluster(host="127.0.0.1", port=cluster[0].port)
    client.flushall(target_nodes="primaries")
    for n in range(2000):  # every slot range
        client.set(f"{PREFIX}{n}", os.urandom(30), px=None if n % 2 else 500_000)
    client.set("other", b"stays")
    before = keyspace(client)
    started = time.monotonic()
    backup = tmp_path / "cluster.backup"
    cleared = run(*as_options(config), "--json", "--backup", str(backup), "clear", "--yes")
    assert cleared.exit_code == 0, cleared.output
    assert backup_doc(cleared)["entries"] == 2000
    assert list(keyspace(client)) == [b"other"]
    deleted = run(*as_options(config), "--json", "--backup", str(tmp_path / "none.backup"),
                  "delete", "1", "2")  # fmt: skip
    assert deleted.exit_code == 0 and backup_doc(deleted)["created"] is False
    restored = run(*as_options(config), "--json", "restore", str(backup))
    assert restored.exit_code == 0, restored.output
    assert json.loads(restored.stdout)["restored"] == 2000
    assert_same(before, keyspace(client), (time.monotonic() - started) * 1000)


def test_sentinel_round_trip(sentinel_set: dict, tmp_path: Path) -> None:  # noqa: F811
    config = {**sentinel_config(sentinel_set), "CACHE_KEY_PREFIX": PREFIX}
    master = redis.Redis(port=sentinel_set["master"].port)
    master.flushall()
    seed(master)
    trip = RoundTrip(master, tmp_path / "sentinel.backup")
    args = [*as_options(config), "--json"]
    cleared = run(*args, "--backup", str(trip.backup), "delete", "--pattern", "*", "--yes")
    assert cleared.exit_code == 0, cleared.output
    assert backup_doc(cleared)["entries"] == 1506
    trip.after_command()
    assert run(*args, "restore", str(trip.backup)).exit_code == 0
    trip.after_restore()


@pytest.fixture(scope="module")
def no_scripting() -> Iterator[ServerProcess]:
    renames: list[str] = []
    for command in scripting_commands():
        renames += ["--rename-command", command, ""]
    server = start_redis(*renames)
    yield server
    server.stop()


def test_a_server_without_scripting_keeps_and_restores_client_side(
    no_scripting: ServerProcess, tmp_path: Path
) -> None:
    client = redis.Redis(port=no_scripting.port)
    client.flushall()
    seed(client)
    target = RedisTarget(no_scripting.port, 0, client)
    for number, command in enumerate(
        (["clear", "--yes"], ["delete", "--pattern", "item:*", "--yes"], ["delete", "hash"])
    ):
        backup = tmp_path / f"{number}.backup"
        trip = RoundTrip(client, backup)
        result = run(*target_args(target), "--json", "--backup", str(backup), *command)
        assert result.exit_code == 0, result.output
        trip.after_command()
        restore(target, backup)
        trip.after_restore()


# --- a run that does not end well ------------------------------------------------------------

BIG = 80_000  # the clear takes about a second: the signal lands in it (checked)


@pytest.fixture(scope="module")
def debug_server() -> Iterator[ServerProcess]:
    server = start_redis("--enable-debug-command", "yes")
    yield server
    server.stop()


def _populated(server: ServerProcess) -> redis.Redis:
    client = redis.Redis(port=server.port)
    client.flushall()
    client.execute_command("DEBUG", "POPULATE", BIG, PREFIX + "big", 64)
    client.set("other", b"stays")
    return client


def _start_clear(server: ServerProcess, backup: Path) -> subprocess.Popen:
    args = ["--url", f"redis://127.0.0.1:{server.port}/0", "--key-prefix", PREFIX]
    return subprocess.Popen(
        [str(CONSOLE_SCRIPT), *args, "--backup", str(backup), "clear", "--yes"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _once_some_are_gone(process: subprocess.Popen, client: redis.Redis, gone: int) -> None:
    deadline = time.monotonic() + 60
    while client.dbsize() > BIG + 1 - gone and time.monotonic() < deadline:
        time.sleep(0.002)
    assert process.poll() is None, "the clear ended before the signal: more keys are needed"


def test_sigkill_mid_clear_leaves_a_file_that_restores_what_went(
    debug_server: ServerProcess, tmp_path: Path
) -> None:
    client = _populated(debug_server)
    before = keyspace(client)
    backup = tmp_path / "killed.backup"
    process = _start_clear(debug_server, backup)
    _once_some_are_gone(process, client, 20_000)
    process.kill()
    process.communicate(timeout=30)
    remaining = set(client.scan_iter(count=1000))  # the names are enough here
    gone = set(before) - remaining
    assert 20_000 <= len(gone) < BIG

    listing = run("--json", "restore", "--list", str(backup))
    assert json.loads(listing.stdout)["complete"] is False
    restored = run("--url", f"redis://127.0.0.1:{debug_server.port}/0", "--key-prefix", PREFIX,
                   "--json", "restore", str(backup))  # fmt: skip
    assert restored.exit_code == 0, restored.output
    document = json.loads(restored.stdout)
    # Each key that went is restored; keys kept but not yet removed are counted present.
    assert document["restored"] == len(gone)
    assert document["restored"] + document["present"] == json.loads(listing.stdout)["entries"]
    assert_same(before, keyspace(client), 60_000)


def test_sigterm_mid_clear_ends_the_file_with_its_trailer(
    debug_server: ServerProcess, tmp_path: Path
) -> None:
    client = _populated(debug_server)
    before = keyspace(client)
    backup = tmp_path / "stopped.backup"
    process = _start_clear(debug_server, backup)
    _once_some_are_gone(process, client, 10_000)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr.decode()
    gone = len(before) - client.dbsize()
    assert f"kept {gone:,} entries in {backup}" in stderr.decode()
    listing = json.loads(run("--json", "restore", "--list", str(backup)).stdout)
    assert listing["complete"] is True and listing["entries"] == gone
    assert listing["trailer"]["entries"] == gone
    restored = run("--url", f"redis://127.0.0.1:{debug_server.port}/0", "--key-prefix", PREFIX,
                   "--json", "restore", str(backup))  # fmt: skip
    assert json.loads(restored.stdout)["restored"] == gone
    assert_same(before, keyspace(client), 60_000)


def _chunk_offsets(data: bytes) -> list[tuple[int, bytes, int]]:
    """Each record: where it starts, its kind, its length."""
    records, at = [], 0
    while at < len(data):
        assert data[at : at + len(MARKER)] == MARKER
        kind = data[at + 8 : at + 12]
        length = int.from_bytes(data[at + 12 : at + 16], "big")
        records.append((at, kind, length))
        at += FRAME_SIZE + length
    return records


def _cleared_into(seeded: RedisTarget, backup: Path) -> Keyspace:
    before = keyspace(seeded.client)
    result = run(*target_args(seeded), "--backup", str(backup), "clear", "--yes")
    assert result.exit_code == 0, result.output
    return before


def test_a_damaged_chunk_is_reported_and_the_rest_restores(
    seeded: RedisTarget, tmp_path: Path
) -> None:
    backup = tmp_path / "damaged.backup"
    before = _cleared_into(seeded, backup)
    data = bytearray(backup.read_bytes())
    chunks = [(at, length) for at, kind, length in _chunk_offsets(bytes(data)) if kind == ENTRIES]
    assert len(chunks) >= 2
    at, length = chunks[len(chunks) // 2]
    for offset in range(at + FRAME_SIZE + length // 2, at + FRAME_SIZE + length // 2 + 8):
        data[offset] ^= 0xFF
    backup.write_bytes(bytes(data))
    result = run(*target_args(seeded), "--json", "restore", str(backup))
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert document["ok"] is False and len(document["damaged"]) == 1
    assert "checksum" in document["damaged"][0]
    ours, theirs = split(before)
    now_ours, now_theirs = split(keyspace(seeded.client))
    assert theirs.keys() == now_theirs.keys()
    lost = set(ours) - set(now_ours)
    assert 0 < len(lost) <= 1000 and document["restored"] == len(ours) - len(lost)
    assert_same({name: ours[name] for name in now_ours}, now_ours, 60_000)
    text = run(*target_args(seeded), "restore", str(backup))
    assert text.exit_code == 1 and "damaged part of" in text.stderr


def test_a_file_cut_short_restores_every_whole_chunk(seeded: RedisTarget, tmp_path: Path) -> None:
    backup = tmp_path / "cut.backup"
    before = _cleared_into(seeded, backup)
    data = backup.read_bytes()
    records = _chunk_offsets(data)
    assert records[-1][1] == TRAILER
    backup.write_bytes(data[: records[-1][0]])  # no trailer: the run was killed there
    listing = json.loads(run("--json", "restore", "--list", str(backup)).stdout)
    assert listing["complete"] is False and listing["damaged"] == []
    result = run(*target_args(seeded), "--json", "restore", str(backup))
    assert result.exit_code == 0, result.output
    assert_same(before, keyspace(seeded.client), 60_000)


def test_restore_leaves_newer_entries_unless_replace(seeded: RedisTarget, tmp_path: Path) -> None:
    backup = tmp_path / "kept.backup"
    run(*target_args(seeded), "--backup", str(backup), "delete", "item:1", "item:2", "item:3")
    seeded.client.set(f"{PREFIX}item:1", b"newer")
    seeded.client.set(f"{PREFIX}item:2", b"newer")
    dry = restore(seeded, backup, "--dry-run")
    assert (dry["restored"], dry["present"]) == (1, 2)
    assert seeded.client.get(f"{PREFIX}item:3") is None
    document = restore(seeded, backup)
    assert (document["restored"], document["present"]) == (1, 2)
    assert seeded.client.get(f"{PREFIX}item:1") == b"newer"
    text = run(*target_args(seeded), "restore", str(backup))
    assert "3 keys exist now: left as they are (--replace overwrites)" in text.stdout
    replaced = restore(seeded, backup, "--replace")
    assert (replaced["restored"], replaced["present"]) == (3, 0)
    assert seeded.client.get(f"{PREFIX}item:1") != b"newer"


def test_restore_skips_what_expired_since(seeded: RedisTarget, tmp_path: Path) -> None:
    seeded.client.set(f"{PREFIX}brief", b"x", px=300)
    backup = tmp_path / "kept.backup"
    run(*target_args(seeded), "--backup", str(backup), "delete", "brief", "item:0")
    time.sleep(0.4)
    document = restore(seeded, backup)
    assert (document["restored"], document["expired"]) == (1, 1)
    assert not seeded.client.exists(f"{PREFIX}brief")


@pytest.fixture(scope="module")
def acl_server() -> Iterator[ServerProcess]:
    server = start_redis()
    admin = redis.Redis(port=server.port)
    admin.execute_command(
        "ACL", "SETUSER", "nodump", "on", ">pw", "~*", "+@all", "-dump"
    )  # fmt: skip
    admin.execute_command(
        "ACL", "SETUSER", "norestore", "on", ">pw", "~*", "+@all", "-restore"
    )  # fmt: skip
    yield server
    server.stop()


def _as(server: ServerProcess, user: str) -> list[str]:
    return ["--url", f"redis://{user}:pw@127.0.0.1:{server.port}/0", "--key-prefix", PREFIX]


@pytest.mark.parametrize(
    "command",
    [["clear", "--yes"], ["delete", "item:1"], ["set", "item:1", "x"], ["expire", "item:1", "9"]],
    ids=lambda command: command[0],
)
def test_a_user_without_dump_is_told_and_nothing_goes(
    acl_server: ServerProcess, tmp_path: Path, command: list[str]
) -> None:
    admin = redis.Redis(port=acl_server.port)
    admin.flushall()
    seed(admin)
    before = keyspace(admin)
    result = run(*_as(acl_server, "nodump"), "--backup", str(tmp_path / "b"), *command)
    assert result.exit_code == 3, result.output
    assert "refused DUMP" in result.stderr and "+dump" in result.stderr
    assert_same(before, keyspace(admin), 60_000)


def test_a_user_without_restore_gets_the_refusals(
    acl_server: ServerProcess, tmp_path: Path
) -> None:
    admin = redis.Redis(port=acl_server.port)
    admin.flushall()
    seed(admin)
    backup = tmp_path / "kept.backup"
    cleared = run(*_as(acl_server, "norestore"), "--backup", str(backup), "clear", "--yes")
    assert cleared.exit_code == 0, cleared.output
    result = run(*_as(acl_server, "norestore"), "--json", "restore", str(backup))
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert document["restored"] == 0 and document["failed"] == 1506, json.dumps(document)
    assert document["failures"] and all("RESTORE" in why for why in document["failures"])
    text = run(*_as(acl_server, "norestore"), "restore", str(backup))
    assert "1,506 entries refused by the server" in text.stderr


# --- the option itself ----------------------------------------------------------------------


def test_the_audit_line_names_the_backup(seeded: RedisTarget, tmp_path: Path) -> None:
    log, backup = tmp_path / "audit.jsonl", tmp_path / "kept.backup"
    args = [*target_args(seeded), "--audit-log", str(log), "--backup", str(backup)]
    assert run(*args, "delete", "item:1", "item:2").exit_code == 0
    (line,) = [json.loads(text) for text in log.read_text().splitlines()]
    assert line["backup"] == {"file": str(backup), "entries": 2, "created": True}


@pytest.mark.parametrize(
    "command", [["get", "item:1"], ["keys"], ["stats"], ["ttl", "item:1"]], ids=lambda c: c[0]
)
def test_backup_on_a_command_that_changes_nothing_is_refused(
    seeded: RedisTarget, tmp_path: Path, command: list[str]
) -> None:
    backup = tmp_path / "kept.backup"
    result = run(*target_args(seeded), "--backup", str(backup), *command)
    assert result.exit_code == 2, result.output
    assert f"{command[0]} does neither" in result.stderr
    assert not backup.exists()


@pytest.mark.parametrize("taken", ["file", "symlink", "dangling symlink"])
def test_a_path_already_taken_is_refused_before_anything_goes(
    seeded: RedisTarget, tmp_path: Path, taken: str
) -> None:
    backup = tmp_path / "kept.backup"
    elsewhere = tmp_path / "elsewhere"
    if taken == "file":
        backup.write_bytes(b"someone's file")
    else:
        if taken == "symlink":
            elsewhere.write_bytes(b"")
        backup.symlink_to(elsewhere)
    before = keyspace(seeded.client)
    result = run(*target_args(seeded), "--backup", str(backup), "clear", "--yes")
    assert result.exit_code == 2, result.output
    assert "nothing was done" in result.stderr
    assert keyspace(seeded.client).keys() == before.keys()
    if taken == "file":
        assert backup.read_bytes() == b"someone's file"
    else:
        assert backup.is_symlink() and (not elsewhere.exists() or elsewhere.read_bytes() == b"")


def test_plan_apply_round_trips(shop_repo: Path, redis_target: RedisTarget) -> None:  # noqa: F811
    """A release's plan, applied with --backup, then restored: the cache of the old release
    is back as it was, its version keys included."""
    client = redis_target.client
    git(shop_repo, "checkout", "-q", "v1")  # the old release fills the cache
    _run_app(shop_repo, redis_target)
    git(shop_repo, "checkout", "-q", "-")
    client.set("other_app_key", b"stays", ex=100)
    backup = shop_repo / "plan.backup"
    target = ["--url", redis_target.url, "--key-prefix", "shop_", "--compat", "2.5", "--json"]
    trip = RoundTrip(client, backup, "shop_")
    previous = os.getcwd()
    os.chdir(shop_repo)
    try:
        applied = run(*target, "--backup", str(backup), "plan", "--since", "v1", "--apply")
        assert applied.exit_code == 0, applied.output
        trip.after_command()
        assert backup_doc(applied)["entries"] > 0
        restored = run(*target, "restore", str(backup), "--replace")
        assert restored.exit_code == 0, restored.output
    finally:
        os.chdir(previous)
    trip.after_restore()


@pytest.mark.parametrize("path", ["laid-out", "dry-run"])
def test_a_file_naming_keys_outside_the_prefix_never_writes_them(
    redis_target: RedisTarget, tmp_path: Path, path: str
) -> None:
    """A crafted file (or one edited by hand) that says its prefix is the cache's but names
    other keys: those are refused and counted, the rest restored, exit 1."""
    from cachectl.backup.file_format import Entry
    from cachectl.backup.writer import BackupWriter, now_ms

    client = redis_target.client
    client.set("app_ours", b"v1")
    client.set("session:victim", b"v2")
    payload = client.dump("app_ours")
    client.delete("app_ours", "session:victim")
    backup = tmp_path / "crafted.backup"
    writer = BackupWriter(str(backup), ["cachectl", "crafted"])
    keeper = writer.keeper({"family": "redis", "server": "elsewhere", "prefix": PREFIX})
    keeper.keep(
        [Entry(b"app_ours", payload), Entry(b"session:victim", payload), Entry(b"ap", payload)],
        now_ms(),
    )
    writer.close()

    extra = ["--dry-run"] if path == "dry-run" else []
    result = run(*target_args(redis_target), "--json", "restore", str(backup), *extra)
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert (document["restored"], document["failed"]) == (1, 2)
    assert "not under the prefix" in document["failures"][0]
    assert client.exists("session:victim", "ap") == 0
    assert client.exists("app_ours") == (0 if path == "dry-run" else 1)


def test_an_only_glob_that_does_not_parse_is_one_line(seeded: RedisTarget, tmp_path: Path) -> None:
    backup = tmp_path / "b.backup"
    assert run(*target_args(seeded, "--backup", str(backup)), "clear", "--yes").exit_code == 0
    refused = run(*target_args(seeded), "restore", str(backup), "--only", "[abc")
    assert refused.exit_code == 2 and "never closed" in refused.stderr
    assert "internal error" not in refused.stderr
