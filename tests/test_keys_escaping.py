"""Key names survive a pipe: keys prints each on one line (control characters, backslashes
and bytes that are not UTF-8 escaped), delete --from-file reads that form back, and
-0/--null carries raw names between them as find -print0 | xargs -0 do."""

from __future__ import annotations

import shlex
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cachectl.codec.key_names import escape_key, unescape_key
from tests.conftest import CONSOLE_SCRIPT, RedisTarget, run_console

PREFIX = b"app_"
#: A view key a visitor made with GET /search/x%0Asession:admin, and a session it must
#: not take with it.
PLANTED = b"view//search/x\nsession:admin"
BYSTANDER = b"session:admin"


def _target(target: RedisTarget) -> list[str]:
    return ["--url", target.url, "--key-prefix", PREFIX.decode()]


def _pipeline(target: RedisTarget, glob: str, null: bool) -> subprocess.CompletedProcess:
    """``cachectl keys GLOB | cachectl delete --from-file -`` in a shell, as an operator
    types it (with -0 / --null on both ends if ``null``)."""
    cachectl = shlex.join([str(CONSOLE_SCRIPT), *_target(target)])
    keys_flag, delete_flag = ("-0", "--null") if null else ("", "")
    line = (
        f"set -o pipefail; {cachectl} keys {keys_flag} {shlex.quote(glob)} "
        f"| {cachectl} delete {delete_flag} --from-file -"
    )
    return subprocess.run(["bash", "-c", line], capture_output=True, timeout=120)


@pytest.mark.parametrize("null", [False, True], ids=["escaped", "null"])
def test_a_key_with_a_line_break_deletes_only_itself(redis_target: RedisTarget, null: bool) -> None:
    redis_target.client.set(PREFIX + PLANTED, b"<html>")
    redis_target.client.set(PREFIX + BYSTANDER, b"admin")
    done = _pipeline(redis_target, "view//search/*", null)
    assert done.returncode == 0, done.stderr
    assert not redis_target.client.exists(PREFIX + PLANTED)
    assert redis_target.client.get(PREFIX + BYSTANDER) == b"admin"
    assert b"deleted 1 key" in done.stdout


def test_keys_never_prints_a_raw_line_break_inside_a_name(redis_target: RedisTarget) -> None:
    redis_target.client.set(PREFIX + PLANTED, b"1")
    redis_target.client.set(PREFIX + b"plain:key", b"1")
    listed = run_console(*_target(redis_target), "keys")
    assert listed.returncode == 0, listed.stderr
    assert sorted(listed.stdout.splitlines()) == [b"plain:key", b"view//search/x\\nsession:admin"]


#: Names that must come back byte for byte: backslashes (and text that looks like an
#: escape), tabs and other controls, a C1 control, Unicode line separators, bytes that
#: are not UTF-8, and an ordinary name.
ROUND_TRIP = [
    b"back\\slash",
    b"looks\\nlike\\x41an\\\\escape\\",
    b"tab\there\rand\x1b[31mred",
    "nel\x85and\u2028sep".encode(),
    b"not-utf8-\xff\xfe\xc3",
    "caf\u00e9 \u65e5\u672c".encode(),
    b"ordinary:key",
]


@pytest.mark.parametrize("null", [False, True], ids=["escaped", "null"])
def test_awkward_names_round_trip_through_a_pipe(redis_target: RedisTarget, null: bool) -> None:
    for name in ROUND_TRIP:
        redis_target.client.set(PREFIX + b"k:" + name, b"1")
    redis_target.client.set(PREFIX + b"other", b"1")
    done = _pipeline(redis_target, "k:*", null)
    assert done.returncode == 0, done.stderr
    assert sorted(redis_target.client.keys(b"*")) == [PREFIX + b"other"]
    assert f"deleted {len(ROUND_TRIP)} keys".encode() in done.stdout


def test_ordinary_names_print_unchanged_and_escapes_are_shown(redis_target: RedisTarget) -> None:
    for name in ROUND_TRIP:
        redis_target.client.set(PREFIX + b"k:" + name, b"1")
    listed = run_console(*_target(redis_target), "keys", "k:*")
    lines = set(listed.stdout.splitlines())
    assert b"k:ordinary:key" in lines and "k:caf\u00e9 \u65e5\u672c".encode() in lines
    assert b"k:back\\\\slash" in lines
    assert b"k:not-utf8-\\xff\\xfe\\xc3" in lines
    assert b"k:nel\\xc2\\x85and\\xe2\\x80\\xa8sep" in lines
    assert len(lines) == len(ROUND_TRIP)


def test_null_output_is_the_stored_bytes(redis_target: RedisTarget) -> None:
    redis_target.client.set(PREFIX + PLANTED, b"1")
    redis_target.client.set(PREFIX + b"bin\xff", b"1")
    redis_target.client.set(PREFIX + b"has\x00nul", b"1")
    listed = run_console(*_target(redis_target), "keys", "-0")
    assert listed.returncode == 0
    assert sorted(listed.stdout.split(b"\0")) == sorted([b"", PLANTED, b"bin\xff"])
    assert b"has\\x00nul holds a NUL byte" in listed.stderr


def test_a_backslash_that_starts_no_escape_is_refused(redis_target: RedisTarget) -> None:
    redis_target.client.set(PREFIX + b"a\\q", b"1")
    redis_target.client.set(PREFIX + b"a", b"1")
    done = run_console(*_target(redis_target), "delete", "--from-file", "-", input=b"a\\q\n")
    assert done.returncode == 2
    assert b"line 1" in done.stderr and b"no escape" in done.stderr
    assert redis_target.client.exists(PREFIX + b"a\\q") and redis_target.client.exists(
        PREFIX + b"a"
    )


def test_null_needs_from_file(redis_target: RedisTarget) -> None:
    done = run_console(*_target(redis_target), "delete", "--null", "k")
    assert done.returncode == 2 and b"--null applies to --from-file" in done.stderr


@given(st.binary(max_size=40))
@settings(max_examples=500, deadline=None)
def test_every_name_round_trips_and_stays_on_one_line(data: bytes) -> None:
    name = data.decode("utf-8", "surrogateescape")
    shown = escape_key(name)
    assert unescape_key(shown) == name
    assert not set(shown) & set("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\0")
    assert len(shown.splitlines()) <= 1
    if "\\" not in name and name.isprintable():
        assert shown == name
