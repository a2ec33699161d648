"""The Flask-Caching generation is never guessed silently.

On an ops host without Flask-Caching, nothing may say which generation the app runs. Then
what is the same in both (plain keys, clear, invalidating every result of a function) runs,
what differs (the key of one memoized call, a view key with a query string, a
FileSystemCache file name) exits 2 and says how to choose, unless the cache itself shows
the generation (the hash length of FileSystemCache file names).
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import pytest

from tests.conftest import RedisTarget, run


@pytest.fixture(autouse=True)
def no_flask_caching_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on an ops host where only cachectl is installed."""
    monkeypatch.setattr("cachectl.config.generations._installed_flask_caching", lambda: None)
    monkeypatch.delenv("CACHECTL_COMPAT", raising=False)


def redis_args(target: RedisTarget) -> list[str]:
    return ["--url", target.url, "--key-prefix", "app_"]


def test_config_says_the_generation_is_not_known(redis_target: RedisTarget) -> None:
    result = run(*redis_args(redis_target), "--json", "config")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["generation_source"].startswith("not known")


def test_what_is_the_same_in_both_generations_runs(redis_target: RedisTarget) -> None:
    client = redis_target.client
    client.set("app_mod.fn_memver", b"!" + pickle.dumps("AbCdEf"))
    assert run(*redis_args(redis_target), "set", "k", "v").exit_code == 0
    assert run(*redis_args(redis_target), "get", "k").stdout == "v\n"
    everything = run(*redis_args(redis_target), "delete-memoized", "mod.fn", "--signature", "(a)")
    assert everything.exit_code == 0, everything.stderr
    assert client.get("app_mod.fn_memver") != b"!" + pickle.dumps("AbCdEf")
    assert run(*redis_args(redis_target), "delete-view", "/about").exit_code == 0
    assert run(*redis_args(redis_target), "clear", "--yes").exit_code == 0


@pytest.mark.parametrize(
    "command",
    [
        ["delete-memoized", "mod.fn", "42", "--signature", "(a)"],
        ["delete-view", "/search", "--query", "q=shoes"],
        ["delete-view", "/search", "--all-queries"],
    ],
    ids=["memoized-call", "view-query", "view-all-queries"],
)
def test_what_differs_exits_2_and_says_how_to_choose(
    redis_target: RedisTarget, command: list[str]
) -> None:
    redis_target.client.set("app_mod.fn_memver", b"!" + pickle.dumps("AbCdEf"))
    result = run(*redis_args(redis_target), *command)
    assert result.exit_code == 2
    assert "differs between Flask-Caching generations" in result.stderr
    assert "--compat 2.5 or --compat legacy" in result.stderr

    told = run(*redis_args(redis_target), "--compat", "legacy", *command)
    assert told.exit_code == 0, told.stderr


@pytest.mark.parametrize(("hash_name", "generation"), [("md5", "legacy"), ("sha256", "2.5")])
def test_file_names_show_the_generation(tmp_path: Path, hash_name: str, generation: str) -> None:
    directory = tmp_path / "cache"
    directory.mkdir()
    digest = hashlib.new(hash_name, b"seen").hexdigest()
    (directory / digest).write_bytes(b"\x00\x00\x00\x00" + pickle.dumps("there"))

    config = json.loads(run("--dir", str(directory), "--json", "config").stdout)
    assert config["generation"] == generation
    assert config["generation_source"] == f"the file names in {directory} ({hash_name})"
    assert run("--dir", str(directory), "get", "seen").stdout == "there\n"


def test_an_empty_or_mixed_directory_refuses_keys_but_clears(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    directory.mkdir()
    refused = run("--dir", str(directory), "set", "k", "v")
    assert refused.exit_code == 2 and "differs between Flask-Caching generations" in refused.stderr
    assert list(directory.iterdir()) == []

    for hash_name in ("md5", "sha256"):
        name = hashlib.new(hash_name, b"k").hexdigest()
        (directory / name).write_bytes(b"\x00\x00\x00\x00" + pickle.dumps("v"))
    (directory / "notes.txt").write_text("stays")
    assert run("--dir", str(directory), "get", "k").exit_code == 2
    assert run("--dir", str(directory), "delete", "k").exit_code == 2
    cleared = run("--dir", str(directory), "--json", "clear", "--yes")
    assert cleared.exit_code == 0, cleared.stderr
    assert json.loads(cleared.stdout)["removed"] == 2
    assert [p.name for p in directory.iterdir()] == ["notes.txt"]
