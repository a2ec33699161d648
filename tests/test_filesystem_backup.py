"""``--backup`` and ``restore`` on FileSystemCache directories written by the real
Flask-Caching and cachelib: each removed or overwritten file is kept byte for byte and
written back under its own name, never outside CACHE_DIR, never through a link."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import struct
import time
from pathlib import Path

import pytest

from tests.conftest import oracle_app, run

RELEASE = ".".join(importlib.metadata.version("flask-caching").split(".")[:2])
FILE_HASH = hashlib.sha256 if tuple(map(int, RELEASE.split("."))) >= (2, 5) else hashlib.md5
COUNT_FILE = FILE_HASH(b"__wz_cache_count").hexdigest()
VALUES = {
    "user:1": {"name": "Ada", "roles": ["admin"]},
    "page:/": "<html>home</html>",
    "hits": 42,
    "blob": b"\x00\xff" * 300,
    "forever": [1, 2, 3],
}


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "cache"
    directory.mkdir()
    return directory


def fs_app(directory: Path, **extra: object):
    config = {"CACHE_TYPE": "FileSystemCache", "CACHE_DIR": str(directory), **extra}
    return oracle_app(config)


def fill(directory: Path, **extra: object):
    """The app writes VALUES ("forever" without expiry, the rest for 600 s or less)."""
    app, cache = fs_app(directory, CACHE_THRESHOLD=500, **extra)
    with app.app_context():
        for n, (key, value) in enumerate(VALUES.items()):
            cache.set(key, value, timeout=0 if key == "forever" else 600 - n)
    return app, cache


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every regular file's bytes by name (the item count aside)."""
    return {
        p.name: p.read_bytes()
        for p in directory.iterdir()
        if p.name != COUNT_FILE and p.is_file() and not p.is_symlink()
    }


def file_of(directory: Path, key: str) -> Path:
    return directory / FILE_HASH(key.encode()).hexdigest()


def args(directory: Path, *more: str) -> list[str]:
    return ["--dir", str(directory), "--compat", RELEASE, *more]


def app_reads(app, cache) -> dict[str, object]:
    with app.app_context():
        return {key: cache.get(key) for key in VALUES}


def item_count(app, cache) -> int:
    with app.app_context():
        return int(app.extensions["cache"][cache]._file_count)


def kept_entries(path: Path) -> list:
    from cachectl.backup.reader import BackupFile

    with BackupFile(str(path)) as backup:
        return [entry for chunk in backup.chunks() for entry in chunk.entries]


def test_clear_then_restore_gives_the_app_back_every_entry_byte_for_byte(
    cache_dir: Path, tmp_path: Path
) -> None:
    app, cache = fill(cache_dir)
    before = snapshot(cache_dir)
    (cache_dir / "notes.txt").write_text("not a cache file")
    backup = tmp_path / "clear.backup"

    cleared = run(*args(cache_dir, "--backup", str(backup), "clear", "--yes"))

    assert cleared.exit_code == 0, cleared.output
    assert f"kept 5 entries in {backup}" in cleared.stderr
    assert app_reads(app, cache) == dict.fromkeys(VALUES)
    assert item_count(app, cache) == 0
    assert (backup.stat().st_mode & 0o777) == 0o600
    entries = kept_entries(backup)
    assert {e.extra.decode() for e in entries} == set(before)
    assert all(e.name == b"" for e in entries)  # file names are hashes: no key known
    assert {e.extra.decode(): e.value for e in entries} == before

    restored = run(*args(cache_dir, "--json", "restore", str(backup)))

    assert restored.exit_code == 0, restored.output
    document = json.loads(restored.stdout)
    assert (document["restored"], document["present"], document["expired"]) == (5, 0, 0)
    assert snapshot(cache_dir) == {**before, "notes.txt": b"not a cache file"}
    assert app_reads(app, cache) == VALUES
    assert item_count(app, cache) == 5  # as the app's own sets would have left it
    with app.app_context():  # the expiries came back too: 600 s and never
        remaining = struct.unpack("I", file_of(cache_dir, "hits").read_bytes()[:4])[0]
        assert 590 < remaining - time.time() <= 600
        assert file_of(cache_dir, "forever").read_bytes()[:4] == b"\0\0\0\0"


def test_a_clear_keeps_in_chunks_each_written_before_its_files_go(
    cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cachectl.backends import filesystem_keep

    monkeypatch.setattr(filesystem_keep, "KEEP_FILES", 2)
    app, cache = fill(cache_dir)
    backup = tmp_path / "chunks.backup"
    assert run(*args(cache_dir, "--backup", str(backup), "clear", "--yes")).exit_code == 0
    listing = json.loads(run("--json", "restore", "--list", str(backup)).stdout)
    assert (listing["entries"], listing["chunks"], listing["complete"]) == (5, 3, True)
    cache_record = listing["caches"][0]
    assert (cache_record["family"], cache_record["server"]) == ("filesystem", str(cache_dir))
    assert run(*args(cache_dir, "restore", str(backup))).exit_code == 0
    assert app_reads(app, cache) == VALUES


def test_restore_into_another_cache_dir(cache_dir: Path, tmp_path: Path) -> None:
    fill(cache_dir)
    backup = tmp_path / "moved.backup"
    assert run(*args(cache_dir, "--backup", str(backup), "clear", "--yes")).exit_code == 0
    other = tmp_path / "other"
    other.mkdir()
    app, cache = fs_app(other, CACHE_THRESHOLD=500)
    with app.app_context():
        cache.set("unrelated", 1)

    assert run(*args(other, "restore", str(backup))).exit_code == 0

    assert app_reads(app, cache) == VALUES
    assert item_count(app, cache) == 6


def test_restore_leaves_newer_entries_unless_replace(cache_dir: Path, tmp_path: Path) -> None:
    app, cache = fill(cache_dir)
    backup = tmp_path / "b.backup"
    assert run(*args(cache_dir, "--backup", str(backup), "clear", "--yes")).exit_code == 0
    with app.app_context():
        cache.set("user:1", "rewritten since")
        cache.set("hits", 7)
    fresh = snapshot(cache_dir)

    dry = run(*args(cache_dir, "--json", "restore", "--dry-run", str(backup)))
    assert dry.exit_code == 0, dry.output
    assert (json.loads(dry.stdout)["restored"], json.loads(dry.stdout)["present"]) == (3, 2)
    assert snapshot(cache_dir) == fresh  # a dry run writes nothing

    done = run(*args(cache_dir, "restore", str(backup)))
    assert done.exit_code == 0, done.output
    assert "restored 3 entries" in done.stdout and "2 keys exist now" in done.stdout
    assert app_reads(app, cache) == {**VALUES, "user:1": "rewritten since", "hits": 7}
    assert item_count(app, cache) == 5

    dry_replace = run(*args(cache_dir, "--json", "restore", "--replace", "--dry-run", str(backup)))
    assert json.loads(dry_replace.stdout)["restored"] == 5
    assert app_reads(app, cache)["hits"] == 7

    replaced = run(*args(cache_dir, "--json", "restore", "--replace", str(backup)))
    assert json.loads(replaced.stdout)["restored"] == 5
    assert app_reads(app, cache) == VALUES
    assert item_count(app, cache) == 5  # replacing adds no file


def test_an_expired_file_in_the_way_is_no_newer_entry(cache_dir: Path, tmp_path: Path) -> None:
    app, cache = fill(cache_dir)
    backup = tmp_path / "b.backup"
    assert run(*args(cache_dir, "--backup", str(backup), "delete", "hits")).exit_code == 0
    with app.app_context():
        cache.set("hits", "short-lived", timeout=600)
    path = file_of(cache_dir, "hits")
    path.write_bytes(struct.pack("I", int(time.time()) - 5) + path.read_bytes()[4:])

    assert (
        json.loads(run(*args(cache_dir, "--json", "restore", str(backup))).stdout)["restored"] == 1
    )
    assert app_reads(app, cache)["hits"] == 42


def test_delete_keeps_each_file_under_its_key(cache_dir: Path, tmp_path: Path) -> None:
    app, cache = fill(cache_dir)
    backup = tmp_path / "delete.backup"

    deleted = run(
        *args(cache_dir, "--backup", str(backup), "--json", "delete", "hits", "blob", "x")
    )

    assert json.loads(deleted.stdout)["removed"] == 2
    assert json.loads(deleted.stdout)["backup"]["entries"] == 2
    entries = kept_entries(backup)
    assert {e.name for e in entries} == {b"hits", b"blob"}
    assert {e.extra.decode() for e in entries} == {
        file_of(cache_dir, "hits").name,
        file_of(cache_dir, "blob").name,
    }
    assert all(0 < e.ttl_ms <= 600_000 for e in entries)
    assert item_count(app, cache) == 3

    assert run(*args(cache_dir, "restore", str(backup))).exit_code == 0
    assert app_reads(app, cache) == VALUES
    assert item_count(app, cache) == 5


def test_set_over_an_existing_file_keeps_the_old_one(cache_dir: Path, tmp_path: Path) -> None:
    app, cache = fill(cache_dir)
    backup = tmp_path / "set.backup"

    assert run(*args(cache_dir, "--backup", str(backup), "set", "hits", "0")).exit_code == 0
    assert app_reads(app, cache)["hits"] == "0"
    # A set of a new key overwrites nothing: the file keeps only the overwritten entry.
    new_backup = tmp_path / "new.backup"
    made = run(*args(cache_dir, "--backup", str(new_backup), "set", "brand-new", "1"))
    assert made.exit_code == 0 and not new_backup.exists()
    assert [e.name for e in kept_entries(backup)] == [b"hits"]

    kept = run(*args(cache_dir, "--json", "restore", str(backup)))
    assert json.loads(kept.stdout)["present"] == 1
    assert app_reads(app, cache)["hits"] == "0"
    assert run(*args(cache_dir, "restore", "--replace", str(backup))).exit_code == 0
    assert app_reads(app, cache)["hits"] == 42


def test_expire_and_persist_keep_the_expiry_they_change(cache_dir: Path, tmp_path: Path) -> None:
    app, cache = fill(cache_dir)
    original = file_of(cache_dir, "forever").read_bytes()
    first, second = tmp_path / "expire.backup", tmp_path / "persist.backup"

    assert run(*args(cache_dir, "--backup", str(first), "expire", "forever", "60")).exit_code == 0
    changed = file_of(cache_dir, "forever").read_bytes()
    assert changed != original
    assert run(*args(cache_dir, "--backup", str(second), "persist", "hits")).exit_code == 0
    assert file_of(cache_dir, "hits").read_bytes()[:4] == b"\0\0\0\0"

    assert [(e.name, e.value, e.ttl_ms) for e in kept_entries(first)] == [
        (b"forever", original, -1)
    ]
    restored = run(*args(cache_dir, "restore", "--replace", str(first)))
    assert restored.exit_code == 0, restored.output
    assert file_of(cache_dir, "forever").read_bytes() == original
    assert run(*args(cache_dir, "restore", "--replace", str(second))).exit_code == 0
    expiry = struct.unpack("I", file_of(cache_dir, "hits").read_bytes()[:4])[0]
    assert 590 < expiry - time.time() <= 600
    assert app_reads(app, cache) == VALUES


def test_prune_keeps_what_it_removes_and_restore_skips_it_as_expired(
    cache_dir: Path, tmp_path: Path
) -> None:
    app, cache = fill(cache_dir)
    past = struct.pack("I", int(time.time()) - 60)
    for key in ("hits", "blob"):
        path = file_of(cache_dir, key)
        path.write_bytes(past + path.read_bytes()[4:])
    alive = snapshot(cache_dir)
    backup = tmp_path / "prune.backup"

    pruned = run(*args(cache_dir, "--backup", str(backup), "prune"))

    assert pruned.exit_code == 0, pruned.output
    entries = kept_entries(backup)
    assert {e.extra.decode() for e in entries} == {
        file_of(cache_dir, "hits").name,
        file_of(cache_dir, "blob").name,
    }
    assert all(e.ttl_ms == 0 for e in entries)
    assert item_count(app, cache) == 3
    restored = run(*args(cache_dir, "--json", "restore", str(backup)))
    document = json.loads(restored.stdout)
    assert (document["restored"], document["expired"], document["ok"]) == (0, 2, True)
    assert set(snapshot(cache_dir)) == set(alive) - {
        file_of(cache_dir, "hits").name,
        file_of(cache_dir, "blob").name,
    }


def test_only_is_refused_for_files_without_keys(cache_dir: Path, tmp_path: Path) -> None:
    fill(cache_dir)
    backup = tmp_path / "b.backup"
    assert run(*args(cache_dir, "--backup", str(backup), "clear", "--yes")).exit_code == 0
    refused = run(*args(cache_dir, "restore", "--only", "user:*", str(backup)))
    assert refused.exit_code == 2 and "--only" in refused.stderr
    assert snapshot(cache_dir) == {}


def hostile_backup(path: Path, directory: Path, entries: list) -> None:
    from cachectl.backup.writer import BackupWriter, now_ms

    writer = BackupWriter(str(path), ["cachectl", "hostile"])
    keeper = writer.keeper({"family": "filesystem", "server": str(directory), "prefix": ""})
    keeper.keep(entries, now_ms())
    writer.close()


def test_a_hostile_backup_cannot_write_outside_cache_dir(cache_dir: Path, tmp_path: Path) -> None:
    from cachectl.backup.file_format import Entry

    fill(cache_dir)
    payload = struct.pack("I", 0) + b"planted"
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    outside = tmp_path / "outside"
    outside.mkdir()
    linked_name = FILE_HASH(b"linked").hexdigest()
    (cache_dir / linked_name).symlink_to(victim)
    (cache_dir / "sub").symlink_to(outside)
    good_name = FILE_HASH(b"good").hexdigest()
    names = [
        b"../x",
        b"../" + good_name.encode(),
        str(victim).encode(),
        b"/etc/passwd",
        b"sub/" + good_name.encode(),
        b"..",
        b"",
        COUNT_FILE.encode(),  # the item count is bookkeeping, never an entry
        good_name.upper().encode(),
        linked_name.encode(),  # a link planted in CACHE_DIR is never written through
    ]
    backup = tmp_path / "hostile.backup"
    hostile_backup(
        backup,
        cache_dir,
        [Entry(b"", payload, -1, 0, name) for name in names] + [Entry(b"", payload, -1, 0, b"")],
    )
    before, names_before = snapshot(cache_dir), sorted(os.listdir(cache_dir))

    for extra in ([], ["--replace"]):
        result = run(*args(cache_dir, "--json", "restore", *extra, str(backup)))
        assert result.exit_code == 1, result.output
        document = json.loads(result.stdout)
        assert (document["restored"], document["failed"]) == (0, len(names) + 1)
        assert document["ok"] is False

    assert victim.read_bytes() == b"precious"
    assert os.path.islink(cache_dir / linked_name)
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "x").exists() and not (tmp_path / good_name).exists()
    assert snapshot(cache_dir) == before
    assert sorted(os.listdir(cache_dir)) == names_before  # no temporary file left either


def test_a_well_named_entry_of_a_hostile_file_still_lands_in_cache_dir_only(
    cache_dir: Path, tmp_path: Path
) -> None:
    from cachectl.backup.file_format import Entry

    app, cache = fs_app(cache_dir)
    good_name = FILE_HASH(b"good").hexdigest()
    backup = tmp_path / "mixed.backup"
    import pickle

    value = struct.pack("I", 0) + pickle.dumps("from the backup")
    hostile_backup(
        backup,
        cache_dir,
        [Entry(b"", value, -1, 0, good_name.encode()), Entry(b"", value, -1, 0, b"../x")],
    )
    result = run(*args(cache_dir, "--json", "restore", str(backup)))
    assert result.exit_code == 1
    assert json.loads(result.stdout)["restored"] == 1
    assert (cache_dir / good_name).read_bytes() == value
    with app.app_context():
        assert cache.get("good") == "from the backup"
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("kind", ["file", "link", "dangling link"])
def test_a_backup_path_that_is_taken_refuses_before_anything_changes(
    cache_dir: Path, tmp_path: Path, kind: str
) -> None:
    app, cache = fill(cache_dir)
    before = snapshot(cache_dir)
    target = tmp_path / "target"
    backup = tmp_path / "taken.backup"
    if kind == "file":
        backup.write_bytes(b"an earlier backup")
    else:
        if kind == "link":
            target.write_bytes(b"someone else's file")
        backup.symlink_to(target)

    for command in (["clear", "--yes"], ["delete", "hits"], ["prune"], ["set", "hits", "1"]):
        result = run(*args(cache_dir, "--backup", str(backup), *command))
        assert result.exit_code == 2, result.output
        assert "nothing was done" in result.stderr

    assert snapshot(cache_dir) == before
    assert app_reads(app, cache) == VALUES
    if kind == "file":
        assert backup.read_bytes() == b"an earlier backup"
    elif kind == "link":
        assert target.read_bytes() == b"someone else's file"
    else:
        assert not target.exists()


def test_a_redis_backup_is_refused_by_a_cache_dir(cache_dir: Path, tmp_path: Path) -> None:
    from cachectl.backup.file_format import Entry

    backup = tmp_path / "redis.backup"
    from cachectl.backup.writer import BackupWriter, now_ms

    writer = BackupWriter(str(backup), ["cachectl"])
    keeper = writer.keeper({"family": "redis", "server": "redis://x", "prefix": ""})
    keeper.keep([Entry(b"k", b"payload")], now_ms())
    writer.close()
    result = run(*args(cache_dir, "restore", str(backup)))
    assert result.exit_code == 2 and "redis entries" in result.stderr
    assert snapshot(cache_dir) == {}


def test_restore_replace_with_backup_keeps_the_files_it_replaces(
    cache_dir: Path, tmp_path: Path
) -> None:
    app, cache = fill(cache_dir)
    first, second = tmp_path / "first.backup", tmp_path / "second.backup"
    assert run(*args(cache_dir, "--backup", str(first), "clear", "--yes")).exit_code == 0
    with app.app_context():
        cache.set("hits", "newer")
    newer = file_of(cache_dir, "hits").read_bytes()

    replaced = run(*args(cache_dir, "--backup", str(second), "restore", "--replace", str(first)))

    assert replaced.exit_code == 0, replaced.output
    assert app_reads(app, cache) == VALUES
    assert [e.value for e in kept_entries(second)] == [newer]
    assert run(*args(cache_dir, "restore", "--replace", str(second))).exit_code == 0
    assert app_reads(app, cache)["hits"] == "newer"


def test_files_of_flask_caching_110_round_trip_with_their_pickled_expiry(
    cache_dir: Path, tmp_path: Path
) -> None:
    """Flask-Caching <= 1.10 pickles the expiry before the value, and names files by md5."""
    import pickle

    soon, gone = int(time.time()) + 600, int(time.time()) - 60
    files = {
        "alive": pickle.dumps(soon, 1) + pickle.dumps({"v": 1}, 4),
        "forever": pickle.dumps(0, 1) + pickle.dumps([1], 4),
        "expired": pickle.dumps(gone, 1) + pickle.dumps("old", 4),
    }
    for key, data in files.items():
        (cache_dir / hashlib.md5(key.encode()).hexdigest()).write_bytes(data)
    before = snapshot(cache_dir)
    legacy = ["--dir", str(cache_dir), "--compat", "1.10"]
    backup = tmp_path / "legacy.backup"

    assert run(*legacy, "--backup", str(backup), "clear", "--yes").exit_code == 0
    assert snapshot(cache_dir) == {}
    ttls = {e.extra.decode(): e.ttl_ms for e in kept_entries(backup)}
    assert ttls[hashlib.md5(b"forever").hexdigest()] == -1
    assert ttls[hashlib.md5(b"expired").hexdigest()] == 0
    assert 590_000 < ttls[hashlib.md5(b"alive").hexdigest()] <= 600_000

    restored = json.loads(run(*legacy, "--json", "restore", str(backup)).stdout)

    assert (restored["restored"], restored["expired"]) == (2, 1)
    expired_name = hashlib.md5(b"expired").hexdigest()
    assert snapshot(cache_dir) == {k: v for k, v in before.items() if k != expired_name}
    assert run(*legacy, "get", "alive").stdout == "{'v': 1}\n"


def test_a_clear_killed_midway_leaves_a_backup_of_every_file_gone(
    cache_dir: Path, tmp_path: Path
) -> None:
    import pickle
    import signal
    import subprocess
    import sys

    original = {}
    for n in range(3_000):
        name = FILE_HASH(f"k{n}".encode()).hexdigest()
        original[name] = struct.pack("I", 0) + pickle.dumps("x" * 200 + str(n), 4)
        (cache_dir / name).write_bytes(original[name])
    backup = tmp_path / "killed.backup"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    command = args(cache_dir, "--backup", str(backup), "clear", "--yes")
    clearing = subprocess.Popen(
        [sys.executable, "-m", "cachectl", *command],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while len(os.listdir(cache_dir)) > 2_500 and time.monotonic() < deadline:
        time.sleep(0.005)
    clearing.send_signal(signal.SIGKILL)
    clearing.wait()
    left = snapshot(cache_dir)
    assert 0 < len(left) <= 2_500  # killed midway

    listing = json.loads(run("--json", "restore", "--list", str(backup)).stdout)
    assert listing["complete"] is False and listing["damaged"] == []
    restored = json.loads(run(*args(cache_dir, "--json", "restore", str(backup))).stdout)

    assert restored["restored"] == len(original) - len(left)
    assert restored["present"] == listing["entries"] - restored["restored"]  # kept, not yet gone
    assert snapshot(cache_dir) == original


def test_a_file_too_large_to_keep_is_refused_and_stays(
    cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cachectl.backends import filesystem_keep

    app, cache = fill(cache_dir)
    monkeypatch.setattr(filesystem_keep, "KEEP_FILE_LIMIT", 500)  # "blob" is 600 bytes
    before = snapshot(cache_dir)

    for command in (["delete", "blob"], ["set", "blob", "x"], ["persist", "blob"]):
        backup = tmp_path / f"{command[0]}.backup"
        refused = run(*args(cache_dir, "--backup", str(backup), *command))
        assert refused.exit_code == 2, refused.output
        assert "more than a backup keeps" in refused.stderr
        assert not backup.exists()  # nothing kept, so no file either
    assert snapshot(cache_dir) == before
    assert app_reads(app, cache) == VALUES


def test_a_batch_keeps_every_line_s_changes_in_one_file(cache_dir: Path, tmp_path: Path) -> None:
    app, cache = fill(cache_dir)
    lines = tmp_path / "deploy.txt"
    lines.write_text("delete user:1\nset hits 0\nexpire forever 60\nclear --yes\n")
    backup = tmp_path / "batch.backup"

    done = run(*args(cache_dir, "--backup", str(backup), "batch", str(lines)))

    assert done.exit_code == 0, done.output
    assert app_reads(app, cache) == dict.fromkeys(VALUES)
    names = [e.name for e in kept_entries(backup)]
    # each line's entries, in order: the key where the line names it, none from clear
    assert names == [b"user:1", b"hits", b"forever", b"", b"", b"", b""]
    restored = json.loads(run(*args(cache_dir, "--json", "restore", str(backup))).stdout)
    # The first copy of each file is the one from before the batch: it goes back first,
    # and the later copies of hits and forever (as clear found them) are present by then.
    assert (restored["restored"], restored["present"]) == (5, 2)
    assert app_reads(app, cache) == VALUES


def test_a_file_the_app_rewrites_while_its_chunk_is_kept_stays(
    cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cachectl.backup.writer import BackupWriter

    app, cache = fill(cache_dir)
    write_chunk = BackupWriter.write_chunk

    def app_writes_meanwhile(self, *given, **named):
        write_chunk(self, *given, **named)
        with app.app_context():  # the app sets hits again between the keep and the removal
            cache.set("hits", "fresh")

    monkeypatch.setattr(BackupWriter, "write_chunk", app_writes_meanwhile)
    backup = tmp_path / "race.backup"

    cleared = run(*args(cache_dir, "--backup", str(backup), "--json", "clear", "--yes"))

    assert json.loads(cleared.stdout)["removed"] == 4
    assert app_reads(app, cache) == {**dict.fromkeys(VALUES), "hits": "fresh"}
    monkeypatch.undo()
    assert run(*args(cache_dir, "restore", str(backup))).exit_code == 0
    assert app_reads(app, cache) == {**VALUES, "hits": "fresh"}


def test_a_file_of_two_alike_caches_goes_back_only_where_each_came_from(
    cache_dir: Path, tmp_path: Path
) -> None:
    """Two directories without key prefix in one file (``--cache all``): each restore takes
    the entries of its own directory; a third directory is told the file is ambiguous."""
    from cachectl.backup.file_format import Entry
    from cachectl.backup.writer import BackupWriter, now_ms

    second = tmp_path / "second"
    second.mkdir()
    app, cache = fs_app(cache_dir)
    with app.app_context():
        cache.set("one", 1)
    path = tmp_path / "two.backup"
    writer = BackupWriter(str(path), ["cachectl", "--cache", "all", "clear"])
    for directory in (cache_dir, second):
        keeper = writer.keeper({"family": "filesystem", "server": str(directory), "prefix": ""})
        files = {name: (directory / name).read_bytes() for name in os.listdir(directory)}
        named = {
            name: data
            for name, data in files.items()
            if len(name) == len(COUNT_FILE) and name != COUNT_FILE
        }
        entries = [Entry(b"", data, -1, 0, name.encode()) for name, data in named.items()]
        keeper.keep(
            entries
            or [
                Entry(b"", struct.pack("I", 0) + b"x", -1, 0, FILE_HASH(b"x").hexdigest().encode())
            ],
            now_ms(),
        )
        for name in named:
            os.remove(directory / name)
    writer.close()

    third = tmp_path / "third"
    third.mkdir()
    refused = run(*args(third, "restore", str(path)))
    assert refused.exit_code == 2
    assert "holds 2 caches" in refused.output
    assert os.listdir(third) == []

    restored = run(*args(cache_dir, "restore", str(path)))
    assert restored.exit_code == 0, restored.output
    with app.app_context():
        assert cache.get("one") == 1
    assert FILE_HASH(b"x").hexdigest() not in os.listdir(cache_dir)
