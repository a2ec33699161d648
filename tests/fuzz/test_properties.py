"""Generated inputs through Click's test runner: whatever the input, never an internal error.

The corpus in ``corpus.py`` holds the inputs someone thought of; these properties
try the ones nobody did (control characters, surrogates, half-written literals and
signatures, odd URLs, settings of the wrong type), in-process so hundreds of them
cost seconds. Every run is derandomized: a failure reproduces on the next run and
on the other engineer's machine. The servers are the session's private Redis and a
temporary directory; a connection to a default port is refused, so a fallback to
the machine's own Redis fails loudly instead of touching it.
"""

from __future__ import annotations

import json
import os
import socket
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cachectl.cli import cli
from tests.fuzz.corpus import GUARDED_PORTS
from tests.servers import ServerProcess, free_port

PROPERTY_DB = 14
SETTINGS = settings(
    derandomize=True,
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
#: Unset every variable that would point cachectl at another app or file.
CLEAN_ENV: dict[str, str | None] = {
    name: None for name in os.environ if name.startswith(("CACHECTL_", "FLASK_"))
}


@pytest.fixture(scope="module", autouse=True)
def _guard_default_ports() -> Iterator[None]:
    """Refuse in-process connections to the machine's default-port servers (a URL such
    as ``redis://127.0.0.1/0`` names 6379 on purpose; it then meets a refused connection,
    exit 3, and never the machine's own Redis)."""
    original = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        if isinstance(address, tuple) and len(address) >= 2 and address[1] in GUARDED_PORTS:
            raise ConnectionRefusedError(111, "refused by the fuzz tests (a default port)")
        original(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign]
    yield
    socket.socket.connect = original  # type: ignore[method-assign]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A working directory with no cachectl.toml above it, and the cache directory in it."""
    directory = tmp_path_factory.mktemp("properties")
    (directory / "fscache").mkdir()
    previous = Path.cwd()
    os.chdir(directory)
    yield directory
    os.chdir(previous)


@pytest.fixture(scope="module")
def redis_url(redis_server: ServerProcess) -> str:
    redis.Redis(port=redis_server.port, db=PROPERTY_DB).flushdb()
    return f"redis://127.0.0.1:{redis_server.port}/{PROPERTY_DB}"


@pytest.fixture(scope="module")
def fs_dir(workdir: Path) -> str:
    return str(workdir / "fscache")


def invoke(*args: str) -> Result:
    """One in-process run of the cachectl group, exceptions kept for inspection."""
    return CliRunner().invoke(cli, list(args), env=CLEAN_ENV, catch_exceptions=True)


def assert_no_internal_error(result: Result, args: tuple[str, ...]) -> None:
    """Exit 4 is a bug whatever the input; any failure is one ``error:`` line."""
    context = f"args={args!r} exit={result.exit_code} stderr={result.stderr[:400]!r}"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"escaped exception {result.exception!r}; {context}")
    assert result.exit_code != 4, f"internal error; {context}"
    assert "Traceback" not in result.stderr, context
    if result.exit_code not in (0, 1):
        # Warnings given before the failure are information, not a second error.
        lines = [line for line in result.stderr.splitlines() if not line.startswith("warning: ")]
        assert lines and lines[0].startswith("error: "), f"no error line first; {context}"
        assert len([line for line in lines if line.lower().startswith("error")]) == 1, context
        assert len(lines) <= 2, f"more than an error line and a hint; {context}"


# --- strategies ------------------------------------------------------------------------

keys = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(categories=["Cc", "Cs", "Zs", "Zl"]), min_size=1, max_size=8),
    st.from_regex(r"\A-[A-Za-z0-9_]{1,12}\Z"),
    st.text(max_size=12).map(lambda text: "-" + text),
    st.text(alphabet=string.printable, max_size=20),
)
plain_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
literals = st.one_of(
    plain_values.map(repr),
    plain_values.map(repr).flatmap(
        lambda text: st.integers(0, max(len(text) - 1, 0)).map(lambda cut: text[:cut])
    ),
    st.text(max_size=20),
    st.sampled_from(["[" * 3000, "1" * 5000, "__import__('os')", "lambda: 1", "1 +", "'\\N{x}'"]),
)
identifiers = st.from_regex(r"\A[a-z_][a-z0-9_]{0,6}\Z")
parameters = st.one_of(
    identifiers,
    st.tuples(identifiers, plain_values.map(repr)).map(lambda pair: f"{pair[0]}={pair[1]}"),
    identifiers.map(lambda name: f"*{name}"),
    identifiers.map(lambda name: f"**{name}"),
    st.sampled_from(["*", "/", "", "1", "a=", "(", ")", "self.x"]),
)
signatures = st.one_of(
    st.lists(parameters, max_size=5).map(lambda params: "(" + ", ".join(params) + ")"),
    st.text(max_size=20),
    st.lists(parameters, max_size=4).map(", ".join),
)
url_hosts = st.sampled_from(
    ["127.0.0.1", "localhost", "[::1]", "", "[::1", "a" * 64 + ".x", "%zz", "h h", "0.0.0.0"]
)
url_ports = st.one_of(
    st.sampled_from(["{redis_port}", "{dead_port}", "", "0", "-1", "65536", "99999", "x"]),
    st.integers(-5, 70000).map(str),
)
urls = st.one_of(
    st.builds(
        lambda scheme, user, host, port, db, query: (
            f"{scheme}://{user}{host}{':' if port != '' else ''}{port}/{db}{query}"
        ),
        st.sampled_from(["redis", "rediss", "unix", "http", "", "redis+sentinel", "REDIS"]),
        st.sampled_from(["", ":pw@", "u:pw@", "@", ":@", "u@"]),
        url_hosts,
        url_ports,
        st.one_of(st.integers(-2, 20).map(str), st.sampled_from(["", "x", "0/1"])),
        st.sampled_from(["", "?ssl=1", "?socket_timeout=x", "?db=3", "?x=1", "?password=pw"]),
    ),
    st.text(max_size=30),
)
option_names = st.sampled_from(
    [
        "CACHE_DEFAULT_TIMEOUT",
        "CACHE_THRESHOLD",
        "CACHE_KEY_PREFIX",
        "CACHE_OPTIONS",
        "CACHE_REDIS_DB",
        "CACHE_HASH_METHOD",
        "CACHE_FILE_HASH_METHOD",
        "CACHE_SOURCE_CHECK",
        "CACHE_IGNORE_ERRORS",
        "CACHE_NO_NULL_WARNING",
    ]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["mode", "threshold", "default_timeout", "nosuch", "db", "password"]),
            inner,
            max_size=2,
        )
    ),
    max_leaves=6,
)
option_values = st.one_of(json_values.map(json.dumps), st.text(max_size=15))


# --- properties -----------------------------------------------------------------------------


@SETTINGS
@given(key=keys)
def test_any_key_on_redis_never_breaks(redis_url: str, key: str) -> None:
    for args in (("--url", redis_url, "get", key), ("--url", redis_url, "set", key, "v")):
        result = invoke(*args)
        assert_no_internal_error(result, args)
        if args[2] == "set" and result.exit_code == 0:
            got = invoke("--url", redis_url, "get", "--", key)
            assert got.exit_code == 0, (key, got.stderr)
            assert got.stdout == "v\n"


@SETTINGS
@given(key=keys)
def test_any_key_on_the_filesystem_never_breaks(fs_dir: str, key: str) -> None:
    for args in (("--dir", fs_dir, "get", key), ("--dir", fs_dir, "delete", key)):
        assert_no_internal_error(invoke(*args), args)


@SETTINGS
@given(literal=literals, keyword=st.booleans())
def test_any_memoize_argument_never_breaks(redis_url: str, literal: str, keyword: bool) -> None:
    base = ("--url", redis_url, "delete-memoized", "shop.fuzz.f", "--signature", "(a, *r, **k)")
    args = (*base, "--dry-run", "--kw", f"a={literal}") if keyword else (*base, "--", literal)
    assert_no_internal_error(invoke(*args), args)


@SETTINGS
@given(signature=signatures)
def test_any_signature_never_breaks(redis_url: str, signature: str) -> None:
    args = (
        "--url", redis_url, "delete-memoized", "shop.fuzz.f", "--signature", signature,
        "--dry-run", "--", "1",
    )  # fmt: skip
    assert_no_internal_error(invoke(*args), args)


@SETTINGS
@given(url=urls)
def test_any_url_never_breaks(redis_server: ServerProcess, workdir: Path, url: str) -> None:
    url = url.replace("{redis_port}", str(redis_server.port))
    url = url.replace("{dead_port}", str(free_port()))
    for args in (
        ("--url", url, "config"),
        ("--url", url, "--timeout", "0.5", "get", "k"),
    ):
        assert_no_internal_error(invoke(*args), args)


@SETTINGS
@given(name=option_names, value=option_values)
def test_any_setting_value_never_breaks(redis_url: str, fs_dir: str, name: str, value: str) -> None:
    option = f"{name}={value}"
    for args in (
        ("--url", redis_url, "-o", option, "get", "k"),
        ("--dir", fs_dir, "-o", option, "set", "k", "v"),
        ("--url", redis_url, "-o", option, "config"),
    ):
        assert_no_internal_error(invoke(*args), args)


@SETTINGS
@given(value=st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=30))
def test_any_text_value_reads_back_byte_exact(redis_url: str, value: str) -> None:
    """Off a terminal, ``get`` prints the value as stored: no escaping, no styling."""
    stored = invoke("--url", redis_url, "set", "--", "exact", value)
    assert stored.exit_code == 0, stored.stderr
    got = invoke("--url", redis_url, "get", "exact")
    assert got.exit_code == 0, got.stderr
    assert got.stdout_bytes == value.encode() + b"\n"


CONTROL_VALUE = "\x1b]0;title\x07before\x1b[2Jafter\x1b[31mred\x1b[0m\r\n\x07"


def test_terminal_sequences_are_byte_exact_off_a_terminal(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    assert invoke("--url", redis_url, "set", "ctl", CONTROL_VALUE).exit_code == 0
    plain = invoke("--url", redis_url, "get", "ctl")
    assert plain.exit_code == 0, plain.stderr
    assert plain.stdout_bytes == CONTROL_VALUE.encode() + b"\n"
    raw = invoke("--url", redis_url, "get", "--raw", "ctl")
    assert raw.exit_code == 0, raw.stderr
    assert raw.stdout_bytes == client.get("flask_cache_ctl")
    as_json = invoke("--url", redis_url, "--json", "get", "ctl")
    assert as_json.exit_code == 0, as_json.stderr
    assert CONTROL_VALUE in string_leaves(json.loads(as_json.stdout))


def string_leaves(document: Any) -> list[str]:
    """Every string in a JSON document, decoded (control characters as themselves)."""
    if isinstance(document, str):
        return [document]
    if isinstance(document, dict):
        return [leaf for value in document.values() for leaf in string_leaves(value)]
    if isinstance(document, list):
        return [leaf for value in document for leaf in string_leaves(value)]
    return []


def test_terminal_sequences_are_byte_exact_on_the_filesystem(fs_dir: str) -> None:
    assert invoke("--dir", fs_dir, "set", "ctl", CONTROL_VALUE, "--as", "bytes").exit_code == 0
    raw = invoke("--dir", fs_dir, "get", "--raw", "ctl")
    assert raw.exit_code == 0, raw.stderr
    assert CONTROL_VALUE.encode() in raw.stdout_bytes
    assert invoke("--dir", fs_dir, "set", "ctl", CONTROL_VALUE).exit_code == 0
    plain = invoke("--dir", fs_dir, "get", "ctl")
    assert plain.stdout_bytes == CONTROL_VALUE.encode() + b"\n"
