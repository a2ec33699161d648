"""Reading a value never runs code from it, unless the operator says --unsafe-unpickle."""

from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path

import pytest

from tests.conftest import RedisTarget, run, run_console


class Planted:
    """A pickle whose loading would run a shell command creating ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class Profile:
    """An app class cachectl has no business importing."""

    def __init__(self) -> None:
        self.name = "alice"
        self.tags = ["a", "b"]


def test_get_on_redis_does_not_run_a_planted_command(redis_target: RedisTarget, tmp_path) -> None:
    marker = tmp_path / "pwned"
    redis_target.client.set("flask_cache_evil", b"!" + pickle.dumps(Planted(marker)))

    result = run_console("--url", redis_target.url, "get", "evil")

    assert result.returncode == 0
    assert not marker.exists()
    assert b"<not loaded: posix.system" in result.stdout
    assert str(marker).encode() in result.stdout

    # The same value with the operator's explicit consent does run: the check above is real.
    run_console("--url", redis_target.url, "get", "--unsafe-unpickle", "evil")
    assert marker.exists()


def test_get_on_the_filesystem_does_not_run_a_planted_command(tmp_path: Path) -> None:
    import hashlib

    marker = tmp_path / "pwned"
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    payload = struct.pack("I", 0) + pickle.dumps(Planted(marker))
    (cache_dir / hashlib.sha256(b"evil").hexdigest()).write_bytes(payload)

    result = run_console("--dir", str(cache_dir), "--compat", "2.5", "--json", "get", "evil")

    assert not marker.exists()
    value = json.loads(result.stdout)["results"][0]["value"]
    assert value["$object"] == "posix.system"


def test_objects_of_app_classes_show_their_state_without_import(redis_target: RedisTarget) -> None:
    redis_target.client.set("flask_cache_profile", b"!" + pickle.dumps(Profile()))

    result = run("--url", redis_target.url, "--json", "get", "profile")

    value = json.loads(result.stdout)["results"][0]["value"]
    assert value == {
        "$object": "tests.test_safety.Profile",
        "state": {"name": "alice", "tags": ["a", "b"]},
    }


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_data_loads_in_every_protocol(protocol: int) -> None:
    import collections
    import datetime
    import decimal
    import uuid

    from cachectl.codec.unpickler import restricted_loads

    value = {
        "when": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
        "day": datetime.date(2026, 1, 2),
        "span": datetime.timedelta(hours=3),
        "price": decimal.Decimal("9.99"),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "ordered": collections.OrderedDict(b=1, a=2),
        "numbers": {1, 2},
        "frozen": frozenset({"x"}),
        "pair": (1, "a"),
        "blob": b"\x00\xff",
        "complex": 1 + 2j,
        "big": 10**30,
    }
    assert restricted_loads(pickle.dumps(value, protocol)) == value


def test_a_corrupt_value_is_reported_not_raised(redis_target: RedisTarget) -> None:
    redis_target.client.set("flask_cache_bad", b"!not a pickle")
    result = run("--url", redis_target.url, "get", "bad")
    assert result.exit_code == 0
    assert "cannot unpickle" in result.stderr


# --- a version key someone else wrote is not a pattern to delete by ---------------------------

#: Entries of another function that a glob in the version would also match.
OTHER_FUNCTIONS = ["app_" + "C" * 16 + "zzzzzz", "app_" + "D" * 16 + "yyyyyyxxxxxx"]


@pytest.mark.parametrize("version", ["*", "?????", "[a-z]*", "abc*ef", "abcdefg", "a b c!"])
def test_purge_refuses_a_version_flask_caching_does_not_write(
    redis_target: RedisTarget, version: str
) -> None:
    client = redis_target.client
    client.set("app_mod.fn_memver", b"!" + pickle.dumps(version))
    for key in OTHER_FUNCTIONS:
        client.set(key, b"!" + pickle.dumps("theirs"))
    base = ("--url", redis_target.url, "--key-prefix", "app_", "delete-memoized", "mod.fn")

    for extra in ((), ("--dry-run",)):
        result = run_console(*base, "--signature", "(a)", "--purge", *extra)
        assert result.returncode == 2, result.stderr
        assert b"not a version Flask-Caching writes" in result.stderr
        assert b"Traceback" not in result.stderr

    assert all(client.get(key) == b"!" + pickle.dumps("theirs") for key in OTHER_FUNCTIONS)
    assert client.get("app_mod.fn_memver") == b"!" + pickle.dumps(version)  # left as it was


def test_purge_by_a_version_flask_caching_writes_takes_only_its_entries(
    redis_target: RedisTarget,
) -> None:
    client = redis_target.client
    client.set("app_mod.fn_memver", b"!" + pickle.dumps("Ab+/9z"))
    mine = "app_" + "E" * 16 + "Ab+/9z"
    client.set(mine, b"!" + pickle.dumps(1))
    for key in OTHER_FUNCTIONS:
        client.set(key, b"!" + pickle.dumps("theirs"))

    result = run_console(
        "--url", redis_target.url, "--key-prefix", "app_", "--json",
        "delete-memoized", "mod.fn", "--signature", "(a)", "--purge",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["purged"] == 1
    assert not client.exists(mine)
    assert all(client.exists(key) for key in OTHER_FUNCTIONS)
