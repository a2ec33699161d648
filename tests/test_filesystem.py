"""cachectl against a FileSystemCache directory written by a real Flask-Caching app."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.conftest import oracle_app, run
from tests.test_redis import VALUES


def fs_app(directory: Path, **extra):
    return oracle_app({"CACHE_TYPE": "FileSystemCache", "CACHE_DIR": str(directory), **extra})


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "cache"
    directory.mkdir()
    return directory


@pytest.mark.parametrize("key", sorted(VALUES))
def test_get_reads_what_the_app_wrote(cache_dir: Path, key: str) -> None:
    from cachectl.codec.rendering import to_jsonable

    app, cache = fs_app(cache_dir)
    with app.app_context():
        cache.set(key, VALUES[key])

    result = run("--dir", str(cache_dir), "--json", "get", key)

    document = json.loads(result.stdout)["results"][0]
    assert document["found"] is True, result.output
    assert document["value"] == to_jsonable(VALUES[key])


def test_the_app_reads_what_set_wrote(cache_dir: Path) -> None:
    run("--dir", str(cache_dir), "set", "flags", '{"beta": true}', "--as", "json")
    run("--dir", str(cache_dir), "set", "count", "3", "--as", "int")
    app, cache = fs_app(cache_dir)
    with app.app_context():
        assert cache.get("flags") == {"beta": True}
        assert cache.get("count") == 3


def test_legacy_generation_names_files_with_md5(cache_dir: Path) -> None:
    """Flask-Caching < 2.5 named cache files by md5 of the key."""
    import hashlib

    run("--dir", str(cache_dir), "--compat", "2.4", "set", "k", "v")
    assert (cache_dir / hashlib.md5(b"k").hexdigest()).exists()
    run("--dir", str(cache_dir), "--compat", "2.5", "set", "k", "v")
    assert (cache_dir / hashlib.sha256(b"k").hexdigest()).exists()


def test_a_configured_file_hash_method_is_honoured(cache_dir: Path) -> None:
    import hashlib

    app, cache = fs_app(cache_dir, CACHE_FILE_HASH_METHOD=hashlib.sha1)
    with app.app_context():
        cache.set("k", "by the app")
    result = run("--dir", str(cache_dir), "-o", "CACHE_FILE_HASH_METHOD=sha1", "get", "k")
    assert result.stdout == "by the app\n"


def test_expired_entries_are_not_found(cache_dir: Path) -> None:
    app, cache = fs_app(cache_dir)
    with app.app_context():
        cache.set("short", "lived", timeout=1)
    time.sleep(2.1)
    assert run("--dir", str(cache_dir), "get", "short").exit_code == 1


def test_delete_and_clear_are_seen_by_the_app(cache_dir: Path) -> None:
    app, cache = fs_app(cache_dir)
    with app.app_context():
        for n in range(5):
            cache.set(f"k{n}", n)

    deleted = run("--dir", str(cache_dir), "--json", "delete", "k0", "k1", "nope")
    assert json.loads(deleted.stdout) == {"ok": True, "requested": 3, "removed": 2}
    with app.app_context():
        assert cache.get("k0") is None and cache.get("k2") == 2
        # The item count the app prunes by follows the deletion.
        assert app.extensions["cache"][cache]._file_count == 3

    cleared = run("--dir", str(cache_dir), "--json", "clear", "--yes")
    assert json.loads(cleared.stdout)["removed"] == 3
    with app.app_context():
        assert all(cache.get(f"k{n}") is None for n in range(5))


def test_clear_leaves_files_that_are_not_cache_files(cache_dir: Path) -> None:
    app, cache = fs_app(cache_dir)
    with app.app_context():
        cache.set("a", 1)
        cache.set("b", 2)
    keep = ["README", "deadbeef", "0" * 63, "upload.tmp", "x" * 64]
    for name in keep:
        (cache_dir / name).write_text("not a cache entry")
    (cache_dir / "subdir").mkdir()

    result = run("--dir", str(cache_dir), "clear", "--yes")

    assert "removed 2 cache files" in result.stdout
    remaining = set(os.listdir(cache_dir))
    assert set(keep) | {"subdir"} <= remaining


def test_clear_resets_the_item_count_the_app_prunes_by(cache_dir: Path) -> None:
    app, cache = fs_app(cache_dir, CACHE_THRESHOLD=3)
    with app.app_context():
        for n in range(3):
            cache.set(f"k{n}", n)
    run("--dir", str(cache_dir), "clear", "--yes")
    with app.app_context():
        backend = app.extensions["cache"][cache]
        assert backend._file_count == 0
        for n in range(3):
            cache.set(f"new{n}", n)
        # Had the count stayed at 3, the app would already be pruning these.
        assert [cache.get(f"new{n}") for n in range(3)] == [0, 1, 2]


def test_a_missing_cache_dir_is_a_config_error(tmp_path: Path) -> None:
    result = run("--dir", str(tmp_path / "typo"), "get", "k")
    assert result.exit_code == 2
    assert "does not exist" in result.stderr
    assert not (tmp_path / "typo").exists()
