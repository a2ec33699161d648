"""A FileSystemCache directory is only ever touched in its cache files, in their format.

Writes never prune (cachelib's prune removes any file in CACHE_DIR, a ``.bashrc`` too),
a directory mostly of other files is pointed out before a clear, and the files of
Flask-Caching 1.10 and older (a pickled expiry instead of cachelib's 4-byte header) are
read and written in their own format.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import time
from pathlib import Path

import pytest

from tests.conftest import oracle_app, run

OTHERS = {".bashrc": b"x\n", "data.csv": b"1\n", "notes.txt": b"keep me\n"}


@pytest.fixture
def home_like(tmp_path: Path) -> Path:
    """A directory that is mostly not a cache: what a mistyped CACHE_DIR points at."""
    directory = tmp_path / "h"
    directory.mkdir()
    for name, data in OTHERS.items():
        (directory / name).write_bytes(data)
    (directory / "p").mkdir()
    return directory


def others_intact(directory: Path) -> bool:
    return (
        all((directory / n).read_bytes() == d for n, d in OTHERS.items())
        and (directory / "p").is_dir()
    )


def test_set_past_the_threshold_removes_no_other_file(home_like: Path) -> None:
    for n in range(1, 5):
        result = run("--dir", str(home_like), "-o", "CACHE_THRESHOLD=2", "set", f"k{n}", "v")
        assert result.exit_code == 0, result.stderr
        assert "Traceback" not in result.stderr
    assert others_intact(home_like)
    assert run("--dir", str(home_like), "get", "k1").stdout == "v\n"


def test_set_keeps_the_apps_count_and_says_it_prunes_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    directory.mkdir()
    app, cache = oracle_app(
        {"CACHE_TYPE": "FileSystemCache", "CACHE_DIR": str(directory), "CACHE_THRESHOLD": 2}
    )
    with app.app_context():
        cache.set("a", 1)
        cache.set("b", 2)
    (directory / "data.csv").write_bytes(b"1\n")

    result = run("--dir", str(directory), "-o", "CACHE_THRESHOLD=2", "set", "c", "3")

    assert result.exit_code == 0, result.stderr
    assert "holds 3 entries, over CACHE_THRESHOLD 2: cachectl prunes nothing" in result.stderr
    assert (directory / "data.csv").exists()
    with app.app_context():
        assert app.extensions["cache"][cache]._file_count == 3  # what the app prunes by
        assert [cache.get(k) for k in "abc"] == [1, 2, "3"]


def test_clear_of_a_directory_mostly_of_other_files_says_so(home_like: Path) -> None:
    run("--dir", str(home_like), "set", "k", "v")
    dry = run("--dir", str(home_like), "--json", "clear", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert json.loads(dry.stdout)["removed"] == 1
    caution = json.loads(dry.stdout)["caution"]
    assert "4 entries that are not cache files" in caution and "is CACHE_DIR right?" in caution
    assert "is CACHE_DIR right?" in dry.stderr

    before = set(os.listdir(home_like))
    cleared = run("--dir", str(home_like), "clear", "--yes")
    assert cleared.exit_code == 0 and "is CACHE_DIR right?" in cleared.stderr
    # The one cache file went; nothing else, and no count file was left behind.
    after = set(os.listdir(home_like))
    assert after < before and len(before - after) == 1
    assert all(c in "0123456789abcdef" for c in (before - after).pop())
    assert others_intact(home_like)


def test_clear_of_a_cache_directory_has_no_caution(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    directory.mkdir()
    for n in range(3):
        run("--dir", str(directory), "set", f"k{n}", "v")
    dry = run("--dir", str(directory), "--json", "clear", "--dry-run")
    assert json.loads(dry.stdout)["caution"] is None and dry.stderr == ""


# --- Flask-Caching 1.10 and older: the expiry is a pickle ------------------------------------


def pickled_file(value: object, expires: int, protocol: int = pickle.HIGHEST_PROTOCOL) -> bytes:
    """A cache file as Flask-Caching <= 1.10 writes one: ``pickle.dump(expiry, f, 1)`` then
    ``pickle.dump(value, f, HIGHEST_PROTOCOL)``."""
    return pickle.dumps(expires, 1) + pickle.dumps(value, protocol)


def read_as_flask_caching_110(path: Path) -> tuple[int, object]:
    """What Flask-Caching 1.10's FileSystemCache.get does with a file: two pickle loads."""
    with path.open("rb") as stream:
        return pickle.load(stream), pickle.load(stream)


@pytest.fixture
def dir_110(tmp_path: Path) -> Path:
    directory = tmp_path / "fc110"
    directory.mkdir()
    soon = int(time.time()) + 300
    files = {"forever": pickled_file({"a": [1, 2]}, 0), "soon": pickled_file("text", soon)}
    files["gone"] = pickled_file("old", int(time.time()) - 10)
    files["__wz_cache_count"] = pickled_file(3, 0)
    for key, data in files.items():
        (directory / hashlib.md5(key.encode()).hexdigest()).write_bytes(data)
    return directory


LEGACY = ("--compat", "legacy")


def test_files_with_a_pickled_expiry_are_read(dir_110: Path) -> None:
    base = ("--dir", str(dir_110), *LEGACY)
    document = json.loads(run(*base, "--json", "get", "forever", "soon").stdout)
    assert [r["value"] for r in document["results"]] == [{"a": [1, 2]}, "text"]
    assert run(*base, "get", "gone").exit_code == 1  # expired, as the app sees it

    stats = json.loads(run(*base, "--json", "stats").stdout)
    assert stats["total"] == 3
    assert stats["ttl"].get("expired", 0) == 1, stats["ttl"]  # not every entry from 1973


def test_set_writes_a_pickled_expiry_where_the_directory_has_one(dir_110: Path) -> None:
    base = ("--dir", str(dir_110), *LEGACY, "-o", "CACHE_THRESHOLD=500")
    assert run(*base, "set", "new", "42", "--as", "int", "--ttl", "60").exit_code == 0
    assert run(*base, "set", "flags", '{"beta": true}', "--as", "json", "--ttl", "0").exit_code == 0

    expires, value = read_as_flask_caching_110(dir_110 / hashlib.md5(b"new").hexdigest())
    assert value == 42 and time.time() + 50 < expires <= time.time() + 61
    assert read_as_flask_caching_110(dir_110 / hashlib.md5(b"flags").hexdigest()) == (
        0,
        {"beta": True},
    )
    # Protocol 4 at most: an app on Python 3.6 or 3.7 reads it.
    data = (dir_110 / hashlib.md5(b"new").hexdigest()).read_bytes()
    stream = io.BytesIO(data)
    pickle.load(stream)
    assert stream.read(2)[1] <= 4
    # The count the app prunes by went up by two, in the app's own format.
    assert read_as_flask_caching_110(dir_110 / hashlib.md5(b"__wz_cache_count").hexdigest()) == (
        0,
        5,
    )


def test_delete_keeps_the_pickled_count_in_its_format(dir_110: Path) -> None:
    base = ("--dir", str(dir_110), *LEGACY, "-o", "CACHE_THRESHOLD=500")
    assert run(*base, "delete", "forever").exit_code == 0
    count_file = dir_110 / hashlib.md5(b"__wz_cache_count").hexdigest()
    assert read_as_flask_caching_110(count_file) == (0, 2)
    assert run(*base, "clear", "--yes").exit_code == 0
    assert read_as_flask_caching_110(count_file) == (0, 0)


def test_an_empty_directory_of_an_unknown_release_is_not_written(tmp_path: Path) -> None:
    directory = tmp_path / "empty"
    directory.mkdir()
    result = run("--dir", str(directory), *LEGACY, "set", "k", "v")
    assert result.exit_code == 2
    assert "cannot tell which file format to write" in result.stderr
    assert "--compat" in result.stderr and os.listdir(directory) == []


@pytest.mark.parametrize(
    ("release", "pickled"), [("1.9", True), ("1.10", True), ("2.0", False), ("2.4", False)]
)
def test_the_release_decides_for_an_empty_directory(
    tmp_path: Path, release: str, pickled: bool
) -> None:
    directory = tmp_path / "empty"
    directory.mkdir()
    assert (
        run("--dir", str(directory), "--compat", release, "set", "k", "v", "--ttl", "0").exit_code
        == 0
    )
    data = (directory / hashlib.md5(b"k").hexdigest()).read_bytes()
    assert data.startswith(pickle.dumps(0, 1)) is pickled
    assert run("--dir", str(directory), "--compat", release, "get", "k").stdout == "v\n"


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_an_expiry_pickled_by_cachelib_before_0_7_is_read(tmp_path: Path, protocol: int) -> None:
    """cachelib 0.5-0.6 (under Flask-Caching 1.11) pickled the expiry with its highest
    protocol, framed from 4 on: the same format for the app, another first few bytes."""
    directory = tmp_path / "cachelib06"
    directory.mkdir()
    soon = int(time.time()) + 300
    for key, value, expires in (("forever", [1, 2], 0), ("soon", "text", soon)):
        data = pickle.dumps(expires, protocol) + pickle.dumps(value, protocol)
        (directory / hashlib.md5(key.encode()).hexdigest()).write_bytes(data)
    base = ("--dir", str(directory), *LEGACY)

    document = json.loads(run(*base, "--json", "get", "forever", "soon").stdout)
    assert [r["value"] for r in document["results"]] == [[1, 2], "text"]
    assert json.loads(run(*base, "--json", "stats").stdout)["ttl"]["< 1 hour"] == 1

    assert run(*base, "set", "new", "v", "--ttl", "0").exit_code == 0
    assert read_as_flask_caching_110(directory / hashlib.md5(b"new").hexdigest()) == (0, "v")
