"""The bad-input corpus, as data, and the runner that feeds it to the console script.

Every case is one command line an operator, a script or a typo could produce, with
the exit codes the contract allows for it. The data is kept apart from the tests so
that ``tests.fuzz.report`` can run exactly the same inputs to count outcomes, and so a
new bad input is one line here rather than a new test function.

Placeholders in argv, file contents and env values are substituted at run time:

``{redis_url}``  ``redis://127.0.0.1:PORT/DB`` of the private redis-server
``{redis_port}`` its port
``{mc}``         ``127.0.0.1:PORT`` of the private memcached
``{mc_port}``    its port
``{dead_port}``  a loopback port nothing listens on (connection refused)
``{tmp}``        the case's own temporary directory (also its working directory);
                 ``{tmp}/fscache`` exists and is the FileSystemCache directory
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Union

from tests.forked_runs import ForkServer

Arg = Union[str, bytes]  # a runtime alias: `str | bytes` fails on Python 3.9
Mode = Literal["plain", "json", "json-after"]

CONSOLE_SCRIPT = Path(sys.executable).with_name("cachectl")
#: Every secret planted in the corpus contains this marker; it must never be printed.
SECRET = "S3CRET"
USAGE: frozenset[int] = frozenset({2})
UNREACHABLE: frozenset[int] = frozenset({3})
USAGE_OR_SERVER: frozenset[int] = frozenset({2, 3})
OK: frozenset[int] = frozenset({0})
NOT_FOUND: frozenset[int] = frozenset({1})
SUBPROCESS_TIMEOUT = 60.0


@dataclass(frozen=True, eq=False)
class Case:
    """One input and what the contract demands of it."""

    id: str
    argv: tuple[Arg, ...]
    #: The command it targets, as the report groups them ("delete --pattern", "(usage)").
    command: str
    #: "redis", "memcached", "filesystem" or "none" (nothing to connect to).
    backend: str
    expect: frozenset[int]
    reason: str
    files: Mapping[str, bytes] = field(default_factory=dict)
    stdin: bytes | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    #: Regular expressions stderr must match (plain mode), e.g. the option a message names.
    must_match: tuple[str, ...] = ()
    #: For the control cases that succeed: fields the --json document must hold.
    json_fields: Mapping[str, object] = field(default_factory=dict)
    #: Paths (``{tmp}`` allowed) that must not exist after the run.
    absent: tuple[str, ...] = ()
    #: Index of the subcommand's name in argv, where its own args start.
    sub_index: int | None = None
    #: Symbolic links made before the run: path inside ``{tmp}`` -> target (``{tmp}`` allowed).
    symlinks: Mapping[str, str] = field(default_factory=dict)
    #: Named pipes (FIFOs) made before the run, as paths inside ``{tmp}``.
    fifos: tuple[str, ...] = ()

    @property
    def is_error(self) -> bool:
        """A bad input: only exits 2 or 3 are allowed, with one ``error:`` line."""
        return self.expect <= USAGE_OR_SERVER


# --- building blocks ---------------------------------------------------------------

REDIS: tuple[str, ...] = ("--url", "{redis_url}")
MEMCACHED: tuple[str, ...] = ("--type", "MemcachedCache", "-o", 'CACHE_MEMCACHED_SERVERS=["{mc}"]')
FILESYSTEM: tuple[str, ...] = ("--dir", "{tmp}/fscache")
FAMILIES: dict[str, tuple[str, ...]] = {
    "redis": REDIS,
    "memcached": MEMCACHED,
    "filesystem": FILESYSTEM,
    "none": (),
}
BACKENDS = ("redis", "memcached", "filesystem")
TEMPLATE = b"{% cache 60, 'sidebar' %}x{% endcache %}\n"

#: A valid invocation of each command (for every family where it is valid), so that a
#: case made of "bad config + valid command" fails only because of the config.
VALID: dict[str, tuple[str, ...]] = {
    "get": ("get", "k"),
    "set": ("set", "k", "v"),
    "delete": ("delete", "k"),
    "delete --pattern": ("delete", "--pattern", "x*", "--yes"),
    "clear": ("clear", "--yes"),
    "keys": ("keys",),
    "stats": ("stats",),
    "delete-memoized": ("delete-memoized", "shop.models.get_user"),
    "delete-view": ("delete-view", "/about"),
    "make-fragment-key": ("make-fragment-key", "sidebar", "--delete"),
    "fragments": ("fragments", "templates"),
    "config": ("config",),
    "config --write": ("config", "--write", "out.toml"),
}
#: Commands that reach the cache server (so an unreachable one must exit 3).
CONNECTING = (
    "get",
    "set",
    "delete",
    "delete --pattern",
    "clear",
    "keys",
    "stats",
    "delete-memoized",
    "delete-view",
    "make-fragment-key",
)
CONFIG_COMMANDS = tuple(VALID)


def valid_for(command: str, backend: str) -> tuple[str, ...] | None:
    """The valid form of ``command`` on ``backend``, or None where it has none."""
    if backend == "filesystem" and command == "keys":
        return ("keys", "--count")
    if backend == "filesystem" and command == "delete --pattern":
        return None
    return VALID[command]


def family_of(argv: Sequence[Arg]) -> str:
    """The backend family a command line without a family prefix points at."""
    text = " ".join(arg if isinstance(arg, str) else arg.decode(errors="replace") for arg in argv)
    if "Memcached" in text:
        return "memcached"
    if "Redis" in text or "CACHE_REDIS" in text:
        return "redis"
    if "--dir" in text or "FileSystem" in text or "CACHE_DIR" in text:
        return "filesystem"
    return "none"


def rotate(items: Sequence[str], start: int, count: int) -> list[str]:
    """``count`` items from ``start``, wrapping: spreads faults across commands evenly."""
    return [items[(start + n) % len(items)] for n in range(count)]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"


class Corpus:
    """Collects cases and refuses a repeated id or a repeated input."""

    def __init__(self) -> None:
        self.cases: list[Case] = []
        self._ids: set[str] = set()
        self._inputs: set[tuple[object, ...]] = set()

    def add(
        self,
        id: str,
        command: str,
        backend: str,
        expect: frozenset[int],
        reason: str,
        *,
        globals_: Sequence[Arg] = (),
        args: Sequence[Arg] = (),
        family: Sequence[str] | None = None,
        **extra: object,
    ) -> None:
        """A case: ``cachectl FAMILY... GLOBALS... ARGS...`` (ARGS start at the subcommand)."""
        prefix = tuple(FAMILIES[backend] if family is None else family)
        argv = (*prefix, *globals_, *args)
        if id in self._ids:
            raise ValueError(f"duplicate case id {id}")
        files = extra.get("files") or {}
        key = (
            argv,
            tuple(sorted(files.items())),  # type: ignore[attr-defined]
            extra.get("stdin"),
            tuple(sorted((extra.get("env") or {}).items())),  # type: ignore[attr-defined]
            tuple(sorted((extra.get("symlinks") or {}).items())),  # type: ignore[attr-defined]
            extra.get("fifos"),
        )
        if key in self._inputs:
            raise ValueError(f"case {id} repeats an input")
        self._ids.add(id)
        self._inputs.add(key)
        sub_index = len(prefix) + len(globals_) if args else None
        self.cases.append(
            Case(
                id=id,
                argv=argv,
                command=command,
                backend=backend,
                expect=expect,
                reason=reason,
                sub_index=sub_index,
                **extra,  # type: ignore[arg-type]
            )
        )


# --- the corpus ----------------------------------------------------------------------

DEEP_JSON_OPEN = "[" * 10000
DEEP_JSON = "[" * 10000 + "]" * 10000
NOT_UTF8 = b"\xff\xfe\xfa bad \xc3\x28"


def _config_files(c: Corpus) -> None:
    """Config files of each format that cannot be used, each with several commands."""
    faults: list[tuple[str, str, bytes, str]] = [
        # (slug, file name, content, reason)
        ("py-raises", "settings.py", b"raise RuntimeError('boom in config')\n", "a .py raising"),
        ("py-sys-exit-0", "settings.py", b"import sys\nsys.exit(0)\n", ".py calling sys.exit(0)"),
        ("py-sys-exit-3", "settings.py", b"import sys\nsys.exit(3)\n", ".py calling sys.exit(3)"),
        ("py-systemexit-msg", "settings.py", b"raise SystemExit('bye')\n", "SystemExit(str)"),
        ("py-syntax", "settings.py", b"CACHE_TYPE = 'RedisCache\n", ".py syntax error"),
        ("py-indent", "settings.py", b"CACHE_TYPE = 1\n  CACHE_DIR = 2\n", ".py indentation"),
        ("py-import-missing", "settings.py", b"import nosuch_dep_xyz\n", ".py import fails"),
        ("py-recursion", "settings.py", b"def f():\n    return f()\nf()\n", ".py recursion"),
        ("py-not-utf8", "settings.py", b"CACHE_KEY_PREFIX = '" + NOT_UTF8 + b"'\n", "not UTF-8"),
        ("py-nul", "settings.py", b"CACHE_TYPE = 'RedisCache'\x00\n", ".py with a NUL byte"),
        ("py-type-int", "settings.py", b"CACHE_TYPE = 42\n", "CACHE_TYPE of the wrong type"),
        ("py-timeout-str", "settings.py", b"CACHE_DEFAULT_TIMEOUT = 'soon'\n", "timeout str"),
        ("py-caches-str", "settings.py", b"CACHECTL_CACHES = 'sessions'\n", "caches not a dict"),
        ("py-caches-int", "settings.py", b"CACHECTL_CACHES = {'s': 5}\n", "named cache not dict"),
        ("py-compat-int", "settings.py", b"CACHECTL_COMPAT = 3\n", "compat of wrong type"),
        ("py-compat-bad", "settings.py", b"CACHECTL_COMPAT = '3'\n", "unknown generation"),
        ("toml-invalid", "cache.toml", b"CACHE_TYPE = \n", "invalid TOML"),
        ("toml-not-utf8", "cache.toml", b"CACHE_KEY_PREFIX = '" + NOT_UTF8 + b"'\n", "bytes"),
        ("toml-deep", "cache.toml", b"x = " + DEEP_JSON.encode() + b"\n", "nested 10000"),
        ("toml-deep-open", "cache.toml", b"x = " + DEEP_JSON_OPEN.encode() + b"\n", "open 10000"),
        ("toml-deep-tables", "cache.toml", b"x = " + b"{a = " * 5000 + b"1" + b"}" * 5000, "deep"),
        ("toml-type-int", "cache.toml", b"CACHE_TYPE = 1\n", "CACHE_TYPE not a string"),
        ("toml-timeout-str", "cache.toml", b"CACHE_DEFAULT_TIMEOUT = 'x'\n", "timeout str"),
        ("toml-timeout-neg", "cache.toml", b"CACHE_DEFAULT_TIMEOUT = -5\n", "negative timeout"),
        ("toml-timeout-nan", "cache.toml", b"CACHE_DEFAULT_TIMEOUT = nan\n", "NaN timeout"),
        ("toml-timeout-inf", "cache.toml", b"CACHE_DEFAULT_TIMEOUT = inf\n", "inf timeout"),
        ("toml-caches-str", "cache.toml", b"caches = 'sessions'\n", "caches not a table"),
        ("toml-caches-int", "cache.toml", b"[caches]\nsessions = 1\n", "non-table named cache"),
        ("toml-caches-array", "cache.toml", b"[[caches]]\nx = 1\n", "array of tables"),
        ("toml-compat-int", "cache.toml", b"compat = 3\n", "compat of the wrong type"),
        ("toml-compat-bad", "cache.toml", b"compat = '3'\n", "unknown generation"),
        ("toml-dup-key", "cache.toml", b"CACHE_TYPE = 'a'\nCACHE_TYPE = 'b'\n", "dup key"),
        ("toml-prefix-table", "cache.toml", b"[CACHE_KEY_PREFIX]\na = 1\n", "prefix a table"),
        ("toml-url-int", "cache.toml", b"CACHE_TYPE = 'RedisCache'\nCACHE_REDIS_URL = 5\n", "url"),
        (
            "toml-url-bad",
            "cache.toml",
            b"CACHE_TYPE = 'RedisCache'\nCACHE_REDIS_URL = 'x://'\n",
            "",
        ),
        ("json-invalid", "cache.json", b'{"CACHE_TYPE": }', "invalid JSON"),
        ("json-not-utf8", "cache.json", b'{"CACHE_KEY_PREFIX": "' + NOT_UTF8 + b'"}', "bytes"),
        ("json-deep", "cache.json", DEEP_JSON.encode(), "nested 10000 deep"),
        ("json-deep-dict", "cache.json", b'{"a": ' * 10000 + b"1" + b"}" * 10000, "deep"),
        ("json-list", "cache.json", b"[1, 2]", "top level not an object"),
        ("json-string", "cache.json", b'"RedisCache"', "top level a string"),
        ("json-empty", "cache.json", b"", "empty JSON file"),
        ("json-type-int", "cache.json", b'{"CACHE_TYPE": 1}', "CACHE_TYPE not a string"),
        ("json-timeout-nan", "cache.json", b'{"CACHE_DEFAULT_TIMEOUT": NaN}', "NaN timeout"),
        ("json-timeout-big", "cache.json", b'{"CACHE_DEFAULT_TIMEOUT": 1e400}', "inf timeout"),
        ("json-caches-str", "cache.json", b'{"caches": "x"}', "caches not an object"),
        ("json-caches-int", "cache.json", b'{"caches": {"sessions": 1}}', "non-table cache"),
        ("json-caches-list", "cache.json", b'{"caches": [1]}', "caches a list"),
        (
            "json-dir-nul",
            "cache.json",
            b'{"CACHE_TYPE": "FileSystemCache", "CACHE_DIR": "a\\u0000b"}',
            "CACHE_DIR with a NUL",
        ),
        ("json-lone-surrogate", "cache.json", b'{"CACHE_KEY_PREFIX": "\\ud800"}', "surrogate"),
        ("json-compat-list", "cache.json", b'{"compat": ["2.5"]}', "compat of the wrong type"),
        ("json-options-list", "cache.json", b'{"CACHE_OPTIONS": [1]}', "CACHE_OPTIONS a list"),
        ("yaml", "cache.yaml", b"CACHE_TYPE: RedisCache\n", "unknown config format"),
        ("no-suffix", "cachefile", b"CACHE_TYPE = 'RedisCache'\n", "no suffix"),
    ]
    for n, (name, filename, content, reason) in enumerate(faults):
        backend = BACKENDS[n % 3]
        # A setting the family's own option would override: the file alone names the cache.
        own = name in ("toml-url-int", "toml-url-bad", "json-dir-nul")
        if own:
            backend = "filesystem" if "dir" in name else "redis"
        if name.endswith("type-int") and backend == "memcached":
            backend = "redis"  # --type MemcachedCache would override the file's CACHE_TYPE
        commands = [cmd for cmd in rotate(CONFIG_COMMANDS, n * 3, 5) if valid_for(cmd, backend)]
        for command in commands[:3]:
            args = valid_for(command, backend)
            assert args is not None
            c.add(
                f"cfgfile-{name}-{slug(command)}-{backend}",
                command,
                backend,
                USAGE,
                f"config file: {reason}",
                globals_=("--config", filename),
                args=args,
                family=() if own else None,
                files={filename: content, "templates/page.html": TEMPLATE},
            )
    # Files that are missing, not files, or found without being named.
    others: list[tuple[str, tuple[str, ...], dict[str, bytes], dict[str, str], str]] = [
        ("missing", ("--config", "nosuch.toml"), {}, {}, "named file missing"),
        ("missing-py", ("--config", "nosuch.py"), {}, {}, "named .py missing"),
        ("empty-name", ("--config", ""), {}, {}, "empty --config"),
        ("directory", ("--config", "sub.toml"), {"sub.toml/x": b""}, {}, "a directory"),
        ("devnull", ("--config", "/dev/null"), {}, {}, "/dev/null has no suffix"),
        ("env-missing", (), {}, {"CACHECTL_CONFIG": "{tmp}/gone.toml"}, "CACHECTL_CONFIG"),
        ("found-invalid", (), {"cachectl.toml": b"CACHE_TYPE = = 1\n"}, {}, "found, invalid"),
        (
            "found-pyproject-invalid",
            (),
            {"pyproject.toml": b"[tool.cachectl]\nCACHE_TYPE = 1\ncaches = 2\n"},
            {},
            "[tool.cachectl] with wrong types",
        ),
        (
            "found-not-utf8",
            (),
            {"cachectl.toml": b"CACHE_KEY_PREFIX = '" + NOT_UTF8 + b"'\n"},
            {},
            "found cachectl.toml not UTF-8",
        ),
    ]
    for n, (name, globals_, files, env, reason) in enumerate(others):
        for command in rotate(("get", "config", "stats", "delete-view", "set"), n, 2):
            c.add(
                f"cfgfile-{name}-{slug(command)}",
                command,
                "none",
                USAGE,
                f"config file: {reason}",
                globals_=globals_,
                args=VALID[command],
                files=files,
                env=env,
            )
    # Named caches.
    named: list[tuple[str, str, dict[str, bytes], str]] = [
        ("none-anywhere", "sessions", {}, "--cache with no named caches anywhere"),
        ("empty-name", "", {}, "--cache ''"),
        ("unknown", "nosuch", {"cachectl.toml": b"[caches.a]\nCACHE_DIR = 'fscache'\n"}, "name"),
        (
            "ambiguous",
            "",
            {"c.toml": b"[caches.a]\nCACHE_DIR='fscache'\n[caches.b]\nCACHE_DIR='fscache'\n"},
            "several caches and no --cache",
        ),
    ]
    for name, wanted, files, reason in named:
        for command in ("get", "clear", "config"):
            globals_: tuple[str, ...] = (
                ("--cache", wanted) if wanted or name == "empty-name" else ()
            )
            if "c.toml" in files:
                globals_ = ("--config", "c.toml")
            c.add(
                f"cache-name-{name}-{slug(command)}",
                command,
                "filesystem" if files else "redis",
                USAGE,
                reason,
                globals_=globals_,
                args=VALID[command],
                family=() if files else REDIS,
                files=files,
            )


def _urls(c: Corpus) -> None:
    """--url values that cannot be a Redis server, and servers that do not answer."""
    bad: list[tuple[str, str, frozenset[int], str]] = [
        ("empty", "", USAGE, "--url ''"),
        ("scheme-only", "redis://", USAGE, "no host"),
        ("port-zero", "redis://127.0.0.1:0/0", USAGE, "port 0"),
        ("unix-empty", "unix://", USAGE, "unix socket without a path"),
        ("notaport", "redis://h:notaport", USAGE, "port not a number"),
        ("port-range", "redis://127.0.0.1:99999/0", USAGE, "port out of range"),
        ("port-negative", "redis://127.0.0.1:-1/0", USAGE, "negative port"),
        ("ssl-query", "redis://127.0.0.1:{redis_port}/0?ssl=1", USAGE_OR_SERVER, "ssl on plain"),
        ("rediss-plain", "rediss://127.0.0.1:{redis_port}/0", UNREACHABLE, "TLS to plain"),
        ("unknown-scheme", "foo://127.0.0.1:{redis_port}/0", USAGE, "unknown scheme"),
        ("http-scheme", "http://127.0.0.1:{redis_port}/", USAGE, "http URL"),
        ("no-scheme", "127.0.0.1:{redis_port}", USAGE, "no scheme"),
        ("long-label", "redis://" + "a" * 64 + ".example/0", USAGE, "64-char label"),
        ("long-host", "redis://" + ("a" * 63 + ".") * 5 + "x/0", USAGE, "over 253 chars"),
        ("db-word", "redis://127.0.0.1:{redis_port}/notadb", USAGE, "database not a number"),
        ("db-range", "redis://127.0.0.1:{redis_port}/99", USAGE_OR_SERVER, "db out of range"),
        ("db-negative", "redis://127.0.0.1:{redis_port}/-1", USAGE_OR_SERVER, "negative db"),
        ("ipv6-open", "redis://[::1/0", USAGE, "unclosed IPv6 bracket"),
        ("pw-ipv6-open", "redis://:" + SECRET + "pw1@[::1/0", USAGE, "malformed with secret"),
        ("user-pw-open", "redis://u:" + SECRET + "pw2@[::1/0", USAGE, "malformed with user"),
        ("pct-bad", "redis://%zz@127.0.0.1:{redis_port}/0", USAGE_OR_SERVER, "bad escape"),
        ("space-host", "redis://127.0.0.1 :{redis_port}/0", USAGE, "space in host"),
        ("port-empty", "redis://127.0.0.1:/0", USAGE, "empty port"),
        ("timeout-q", "redis://127.0.0.1:{redis_port}/0?socket_timeout=abc", USAGE, "query"),
        ("hc-q", "redis://127.0.0.1:{redis_port}/0?health_check_interval=x", USAGE, "query"),
        ("maxconn-q", "redis://127.0.0.1:{redis_port}/0?max_connections=-1", USAGE, "query"),
        ("dead", "redis://127.0.0.1:{dead_port}/0", UNREACHABLE, "nothing listens"),
        ("dead-pw", "redis://:" + SECRET + "pw3@127.0.0.1:{dead_port}/0", UNREACHABLE, "pw"),
        ("dead-qpw", "redis://127.0.0.1:{dead_port}/0?password=" + SECRET + "pw4", UNREACHABLE, ""),
        (
            "pw-no-auth",
            "redis://:" + SECRET + "pw5@127.0.0.1:{redis_port}/0",
            frozenset({0, 3}),
            "a password the server does not need: whatever happens, it is not shown",
        ),
        ("memcached-port", "redis://127.0.0.1:{mc_port}/0", UNREACHABLE, "speaks memcached"),
        ("unix-missing", "unix:///nonexistent/redis.sock", USAGE_OR_SERVER, "no socket file"),
        ("sentinel-scheme", "redis+sentinel://127.0.0.1:{dead_port}", USAGE_OR_SERVER, "scheme"),
    ]
    commands = ("get", "set", "delete", "keys", "stats", "clear", "config", "delete-view")
    for n, (name, url, expect, reason) in enumerate(bad):
        picks = rotate(commands, n, 3)
        if name == "dead":
            picks = list(CONNECTING)
        for command in picks:
            exp = expect
            if command == "config" and expect != USAGE:
                continue  # config does not connect: nothing wrong for it to find
            c.add(
                f"url-{name}-{slug(command)}",
                command,
                "redis",
                exp,
                f"--url: {reason or name}",
                globals_=("--url", url),
                args=VALID[command],
                family=(),
            )
    # Timeout options on the way to a server.
    for n, value in enumerate(["nan", "inf", "1e300", "-1", "0", "abc", "", "-inf", "1e-9"]):
        for command in rotate(("get", "set", "stats", "delete", "clear"), n, 2):
            backend = BACKENDS[n % 3]
            c.add(
                f"timeout-{slug(value) if value else 'empty'}-{n}-{slug(command)}",
                command,
                backend,
                USAGE,
                f"--timeout {value!r} is not a usable number of seconds",
                globals_=("--timeout", value),
                args=valid_for(command, backend) or VALID["get"],
            )


def _settings(c: Corpus) -> None:
    """-o / --type / --dir values that no backend can use."""
    bad: list[tuple[str, str, tuple[str, ...], frozenset[int], tuple[str, ...], str]] = [
        # (slug, backend, globals, expect, commands, reason)
        ("timeout-2p40", "redis", ("-o", "CACHE_DEFAULT_TIMEOUT=1099511627776"), USAGE,
         ("set",), "2**40 s default timeout"),
        ("timeout-2p40", "memcached", ("-o", "CACHE_DEFAULT_TIMEOUT=1099511627776"), USAGE,
         ("set",), "2**40 s default timeout"),
        ("timeout-2p40", "filesystem", ("-o", "CACHE_DEFAULT_TIMEOUT=1099511627776"), USAGE,
         ("set",), "2**40 s default timeout"),
        ("timeout-str", "redis", ("-o", 'CACHE_DEFAULT_TIMEOUT="soon"'), USAGE,
         ("set", "config"), "timeout a string"),
        ("timeout-neg", "filesystem", ("-o", "CACHE_DEFAULT_TIMEOUT=-5"), USAGE,
         ("set",), "negative timeout"),
        ("timeout-nan", "memcached", ("-o", "CACHE_DEFAULT_TIMEOUT=NaN"), USAGE,
         ("set", "config"), "NaN timeout"),
        ("timeout-inf", "redis", ("-o", "CACHE_DEFAULT_TIMEOUT=1e400"), USAGE,
         ("set",), "infinite timeout"),
        ("timeout-list", "filesystem", ("-o", "CACHE_DEFAULT_TIMEOUT=[]"), USAGE,
         ("set", "config"), "timeout a list"),
        ("fs-options-mode", "filesystem", ("-o", 'CACHE_OPTIONS={"mode": "rw"}'), USAGE,
         ("set", "get"), "FileSystemCache mode must be an int"),
        ("fs-options-nosuch", "filesystem", ("-o", 'CACHE_OPTIONS={"nosuch": 1}'), USAGE,
         ("set", "get"), "unknown FileSystemCache option"),
        ("redis-options-nosuch", "redis", ("-o", 'CACHE_OPTIONS={"nosuch": 1}'), USAGE,
         ("get", "set", "stats"), "unknown redis client option"),
        ("redis-options-list", "redis", ("-o", "CACHE_OPTIONS=[1]"), USAGE,
         ("get", "config"), "CACHE_OPTIONS a list"),
        ("redis-options-str", "redis", ("-o", 'CACHE_OPTIONS="x"'), USAGE,
         ("get",), "CACHE_OPTIONS a string"),
        ("redis-options-timeout", "redis", ("-o", 'CACHE_OPTIONS={"socket_timeout": "x"}'),
         USAGE, ("get",), "socket_timeout a string"),
        ("mc-servers-notaport", "none", ("--type", "MemcachedCache", "-o",
         'CACHE_MEMCACHED_SERVERS=["h:notaport"]'), USAGE, ("get", "set", "delete"), "port"),
        ("mc-servers-range", "none", ("--type", "MemcachedCache", "-o",
         'CACHE_MEMCACHED_SERVERS=["127.0.0.1:99999"]'), USAGE, ("get",), "port range"),
        ("mc-servers-empty", "none", ("--type", "MemcachedCache", "-o",
         "CACHE_MEMCACHED_SERVERS=[]"), USAGE, ("get", "set"), "no servers"),
        ("mc-servers-int", "none", ("--type", "MemcachedCache", "-o",
         "CACHE_MEMCACHED_SERVERS=42"), USAGE, ("get",), "servers an int"),
        ("mc-servers-entry-int", "none", ("--type", "MemcachedCache", "-o",
         "CACHE_MEMCACHED_SERVERS=[123]"), USAGE, ("get",), "server entry an int"),
        ("mc-servers-blank", "none", ("--type", "MemcachedCache", "-o",
         'CACHE_MEMCACHED_SERVERS=[""]'), USAGE, ("get",), "blank server"),
        ("mc-servers-dead", "none", ("--type", "MemcachedCache", "-o",
         'CACHE_MEMCACHED_SERVERS=["127.0.0.1:{dead_port}"]'), UNREACHABLE,
         ("get", "set", "delete", "clear", "stats", "delete-memoized", "delete-view",
          "make-fragment-key"), "memcached not listening"),
        ("mc-servers-redis", "none", ("--type", "MemcachedCache", "-o",
         'CACHE_MEMCACHED_SERVERS=["127.0.0.1:{redis_port}"]'), UNREACHABLE,
         ("get", "set"), "a Redis port is not memcached"),
        ("mc-servers-cred", "none", ("--type", "MemcachedCache", "-o",
         'CACHE_MEMCACHED_SERVERS=["ops:' + SECRET + 'mc1@127.0.0.1:{dead_port}"]'),
         USAGE_OR_SERVER, ("get", "config"), "credentials in a server entry"),
        ("sasl-dead", "none", ("--type", "SASLMemcachedCache", "-o",
         'CACHE_MEMCACHED_SERVERS=["127.0.0.1:{dead_port}"]', "-o",
         "CACHE_MEMCACHED_USERNAME=ops", "-o", "CACHE_MEMCACHED_PASSWORD=" + SECRET + "mc2"),
         USAGE_OR_SERVER, ("get", "set"), "SASL memcached not listening"),
        ("serializer", "redis", ("-o", 'CACHE_SERIALIZER="nosuch.mod.X"'), USAGE,
         ("get", "set"), "serializer that does not import"),
        ("serializer", "filesystem", ("-o", "CACHE_SERIALIZER=nosuch.mod.X"), USAGE,
         ("get",), "serializer that does not import"),
        ("hash-method", "redis", ("-o", "CACHE_HASH_METHOD=nosuch"), USAGE,
         ("delete-view", "delete-memoized", "make-fragment-key"), "unknown hash"),
        ("file-hash-method", "filesystem", ("-o", "CACHE_FILE_HASH_METHOD=nosuch"), USAGE,
         ("get", "set"), "unknown file hash"),
        ("threshold-str", "filesystem", ("-o", 'CACHE_THRESHOLD="many"'), USAGE,
         ("set",), "threshold a string"),
        ("redis-db-str", "none", ("--type", "RedisCache", "-o", "CACHE_REDIS_HOST=127.0.0.1",
         "-o", "CACHE_REDIS_PORT={redis_port}", "-o", 'CACHE_REDIS_DB="x"'), USAGE, ("get",),
         "database a string"),
        ("redis-port-str", "none", ("--type", "RedisCache", "-o", "CACHE_REDIS_HOST=127.0.0.1",
         "-o", 'CACHE_REDIS_PORT="abc"'), USAGE, ("get", "config"), "port a string"),
        ("redis-port-range", "none", ("--type", "RedisCache", "-o",
         "CACHE_REDIS_HOST=127.0.0.1", "-o", "CACHE_REDIS_PORT=70000"), USAGE, ("get",), ""),
        ("redis-host-empty", "none", ("--type", "RedisCache", "-o", 'CACHE_REDIS_HOST=""'),
         USAGE, ("get",), "empty host"),
        ("redis-pw-dead", "none", ("--type", "RedisCache", "-o", "CACHE_REDIS_HOST=127.0.0.1",
         "-o", "CACHE_REDIS_PORT={dead_port}", "-o", "CACHE_REDIS_PASSWORD=" + SECRET + "pw6"),
         UNREACHABLE, ("get", "clear"), "password and no server"),
        ("sentinel-missing", "none", ("--type", "RedisSentinelCache",), USAGE, ("get",),
         "no CACHE_REDIS_SENTINELS"),
        ("sentinel-notaport", "none", ("--type", "RedisSentinelCache", "-o",
         'CACHE_REDIS_SENTINELS=[["127.0.0.1", "notaport"]]'), USAGE, ("get",), "port"),
        ("sentinel-dead", "none", ("--type", "RedisSentinelCache", "-o",
         'CACHE_REDIS_SENTINELS=[["127.0.0.1", {dead_port}]]', "-o",
         "CACHE_REDIS_SENTINEL_PASSWORD=" + SECRET + "pw7"), UNREACHABLE, ("get", "stats"), ""),
        ("sentinel-cred", "none", ("--type", "RedisSentinelCache", "-o",
         'CACHE_REDIS_SENTINELS=["redis://:' + SECRET + 'pw8@127.0.0.1:{dead_port}"]'),
         USAGE_OR_SERVER, ("get", "config"), "credentials in a sentinel entry"),
        ("cluster-notaport", "none", ("--type", "RedisClusterCache", "-o",
         "CACHE_REDIS_CLUSTER=127.0.0.1:notaport"), USAGE, ("get",), "cluster port"),
        ("cluster-dead", "none", ("--type", "RedisClusterCache", "-o",
         "CACHE_REDIS_CLUSTER=127.0.0.1:{dead_port}"), UNREACHABLE, ("get", "keys"), ""),
        ("type-nosuch", "none", ("--type", "NoSuchCache"), USAGE, ("get", "config"), "type"),
        ("type-simple", "none", ("--type", "SimpleCache"), USAGE, ("get", "clear"), "in-process"),
        ("type-null", "none", ("--type", "NullCache"), USAGE, ("set",), "in-process"),
        ("type-uwsgi", "none", ("--type", "UWSGICache"), USAGE, ("get",), "in-process"),
        ("type-dotted-missing", "none", ("--type", "nosuch.module.Cache"), USAGE, ("get",), ""),
        ("type-not-a-cache", "none", ("--type", "json.JSONDecoder"), USAGE, ("get",), "class"),
        ("type-module", "none", ("--type", "os.path"), USAGE, ("get",), "a module"),
        ("type-empty", "none", ("--type", ""), USAGE, ("get", "config"), "empty type"),
        ("type-trailing-dot", "none", ("--type", "cachelib."), USAGE, ("get",), "dotted"),
        ("dir-empty", "none", ("--dir", ""), USAGE, ("get", "set"), "empty --dir"),
        ("dir-file", "none", ("--dir", "/dev/null"), USAGE, ("get", "set", "clear"), "a file"),
        ("dir-regular-file", "none", ("--dir", "{tmp}/plain.txt"), USAGE, ("set", "stats"), ""),
        ("dir-nul-o", "none", ("-o", 'CACHE_DIR="a\\u0000b"', "--type", "FileSystemCache"),
         USAGE, ("get", "set"), "NUL in CACHE_DIR"),
        ("option-no-equals", "redis", ("-o", "CACHE_TYPE"), USAGE, ("get",), "NAME only"),
        ("option-empty-name", "redis", ("-o", "=1"), USAGE, ("get",), "VALUE only"),
        ("option-not-cache", "redis", ("-o", "FOO=1"), USAGE, ("get",), "not a CACHE_ name"),
        ("option-empty", "redis", ("-o", ""), USAGE, ("get",), "empty -o"),
        ("compat-3", "redis", ("--compat", "3"), USAGE, ("get", "config"), "unknown generation"),
        ("compat-env", "redis", (), USAGE, ("get",), "CACHECTL_COMPAT=3"),
        ("key-prefix-empty-clear", "redis", ("--key-prefix", ""), USAGE, ("clear",),
         "clear without a prefix needs --flush-db"),
    ]  # fmt: skip
    for name, backend, globals_, expect, commands, reason in bad:
        for command in commands:
            args = valid_for(command, backend if backend != "none" else "redis")
            assert args is not None
            env = {"CACHECTL_COMPAT": "3"} if name == "compat-env" else {}
            exp = expect
            if command == "config" and expect == USAGE_OR_SERVER:
                exp = frozenset({0, 2})  # config does not connect; the point is the mask
            files = {"plain.txt": b"not a directory\n"} if name == "dir-regular-file" else {}
            must: tuple[str, ...] = ("CACHE_SERIALIZER",) if name == "serializer" else ()
            c.add(
                f"setting-{name}-{slug(command)}-{backend}",
                command,
                backend if backend != "none" else family_of(globals_),
                exp,
                reason or name,
                globals_=globals_,
                family=() if backend == "none" else None,
                args=args,
                files=files,
                env=env,
                must_match=must,
            )
    # A typo in --dir never creates the directory.
    for command in ("set", "get", "delete", "clear", "stats", "make-fragment-key"):
        args = valid_for(command, "filesystem")
        assert args is not None
        c.add(
            f"dir-typo-{slug(command)}",
            command,
            "filesystem",
            USAGE,
            "--dir that does not exist: refused, never created",
            globals_=("--dir", "{tmp}/nonexistent/typo"),
            args=args,
            family=(),
            absent=("{tmp}/nonexistent",),
        )
    c.add(
        "dir-typo-absolute-set",
        "set",
        "filesystem",
        USAGE,
        "--dir /nonexistent/typo set k v: exit 2 and no directory created",
        globals_=("--dir", "/nonexistent/typo"),
        args=("set", "k", "v"),
        family=(),
        absent=("/nonexistent",),
    )


def _secrets_shown(c: Corpus) -> None:
    """Settings that hold secrets: config shows them masked, errors never repeat them.
    Several of these succeed (exit 0): the secret check must hold for output too."""
    secret_settings: list[tuple[str, tuple[str, ...]]] = [
        ("redis-password", ("-o", "CACHE_REDIS_PASSWORD=" + SECRET + "a1")),
        ("url-password", ("--url", "redis://:" + SECRET + "a2@cache.internal:6379/0")),
        ("url-user-password", ("--url", "redis://ops:" + SECRET + "a3@cache.internal:6379/0")),
        ("url-query-password", ("--url", "redis://cache.internal/0?password=" + SECRET + "a4")),
        ("options-password", ("-o", 'CACHE_OPTIONS={"password": "' + SECRET + 'a5"}')),
        ("options-auth", ("-o", 'CACHE_OPTIONS={"auth": "' + SECRET + 'a6"}')),
        ("options-ssl-password", ("-o", 'CACHE_OPTIONS={"ssl_password": "' + SECRET + 'a7"}')),
        ("options-token", ("-o", 'CACHE_OPTIONS={"token": "' + SECRET + 'a8"}')),
        ("api-key", ("-o", "CACHE_API_KEY=" + SECRET + "a9")),
        ("credentials", ("-o", 'CACHE_CREDENTIALS={"user": "u", "pw": "' + SECRET + 'b1"}')),
        (
            "sentinels",
            (
                "--type",
                "RedisSentinelCache",
                "-o",
                'CACHE_REDIS_SENTINELS=["redis://:' + SECRET + 'b2@10.0.0.1:26379"]',
            ),
        ),
        (
            "sentinel-pair",
            (
                "--type",
                "RedisSentinelCache",
                "-o",
                'CACHE_REDIS_SENTINELS=[["u:' + SECRET + 'b3@10.0.0.1", 26379]]',
            ),
        ),
        (
            "memcached-servers",
            (
                "--type",
                "MemcachedCache",
                "-o",
                'CACHE_MEMCACHED_SERVERS=["ops:' + SECRET + 'b4@10.0.0.1:11211"]',
            ),
        ),
        ("memcached-password", ("-o", "CACHE_MEMCACHED_PASSWORD=" + SECRET + "b5")),
        ("sentinel-password", ("-o", "CACHE_REDIS_SENTINEL_PASSWORD=" + SECRET + "b6")),
    ]
    for name, globals_ in secret_settings:
        c.add(
            f"secret-config-{name}",
            "config",
            "none",
            frozenset({0, 2}),
            "config output masks every secret (exit 0, or 2 when refused as invalid)",
            globals_=globals_,
            args=("config",),
        )
    c.add(
        "secret-config-write-stdout",
        "config --write",
        "redis",
        frozenset({0, 2}),
        "config --write - never writes a secret",
        globals_=("-o", "CACHE_REDIS_PASSWORD=" + SECRET + "b7"),
        args=("config", "--write", "-"),
        family=("--url", "redis://:" + SECRET + "b8@127.0.0.1:{redis_port}/0"),
    )
    for suffix, content in (
        ("toml", b'CACHE_TYPE = "RedisCache"\nCACHE_REDIS_URL = "redis://:S3CRETc1@h:1/0"\n'),
        ("json", b'{"CACHE_TYPE": "RedisCache", "CACHE_REDIS_PASSWORD": "S3CRETc2"}'),
        ("py", b"CACHE_TYPE = 'RedisCache'\nCACHE_OPTIONS = {'password': 'S3CRETc3'}\n"),
    ):
        c.add(
            f"secret-config-file-{suffix}",
            "config",
            "none",
            OK,
            "secrets read from a file are masked",
            globals_=("--config", f"cache.{suffix}"),
            args=("config",),
            files={f"cache.{suffix}": content},
        )
        c.add(
            f"secret-config-file-invalid-{suffix}",
            "config",
            "none",
            USAGE,
            "a file that fails to parse is not quoted back with its secret",
            globals_=("--config", f"cache.{suffix}"),
            args=("config",),
            files={f"cache.{suffix}": content.replace(b"S3CRET", b"S3CRET'\"=[{(")},
        )
    c.add(
        "secret-env-password-unreachable",
        "get",
        "redis",
        UNREACHABLE,
        "FLASK_CACHE_REDIS_PASSWORD is not echoed by the connection error",
        globals_=("--env",),
        args=("get", "k"),
        family=("--url", "redis://127.0.0.1:{dead_port}/0"),
        env={"FLASK_CACHE_REDIS_PASSWORD": SECRET + "c4"},
    )


def _arguments(c: Corpus) -> None:
    """Keys, values and arguments of each command that cannot be taken as given."""
    dash = "-CKju7mEypY"
    for backend in BACKENDS:
        for command, args in (
            ("get", ("get", dash)),
            ("set", ("set", dash, "v")),
            ("delete", ("delete", dash)),
            ("make-fragment-key", ("make-fragment-key", dash)),
            ("delete-view", ("delete-view", dash)),
        ):
            c.add(
                f"dash-key-{slug(command)}-{backend}",
                command,
                backend,
                USAGE,
                "a key that looks like an option: the message must point at --",
                args=args,
                must_match=(r"--(?![A-Za-z])",),
            )
    c.add(
        "dash-arg-delete-memoized",
        "delete-memoized",
        "redis",
        USAGE,
        "a negative literal read as an option: the message must point at --",
        args=("delete-memoized", "shop.reports.total", "-5", "--signature", "(n)"),
        must_match=(r"--(?![A-Za-z])",),
    )
    bad_bytes = os.fsencode("\udcff\udcfek")  # b"\xff\xfek": what a shell passes verbatim
    for backend in BACKENDS:
        bad_args: tuple[tuple[str, str, tuple[Arg, ...]], ...] = (
            ("get", "get", ("get", bad_bytes)),
            ("set-key", "set", ("set", bad_bytes, "v")),
            ("set-value", "set", ("set", "k", bad_bytes)),
            ("delete", "delete", ("delete", bad_bytes)),
            ("make-fragment-key", "make-fragment-key", ("make-fragment-key", "x", bad_bytes)),
            ("delete-view", "delete-view", ("delete-view", b"/" + bad_bytes)),
        )
        for name, command, args in bad_args:
            # Redis stores any bytes as a key, so a key that is not UTF-8 (one `keys`
            # prints escaped) can be deleted by its bytes; elsewhere it cannot be a key.
            deletable = name == "delete" and backend == "redis"
            c.add(
                f"not-utf8-{name}-{backend}",
                command,
                backend,
                OK if deletable else USAGE,
                "a key that is not UTF-8: Redis deletes it by its bytes"
                if deletable
                else "argv bytes that are not UTF-8",
                args=args,
            )
    c.add(
        "not-utf8-key-prefix",
        "get",
        "redis",
        USAGE,
        "--key-prefix bytes that are not UTF-8",
        globals_=("--key-prefix", bad_bytes),
        args=("get", "k"),
    )
    c.add(
        "not-utf8-delete-memoized-arg",
        "delete-memoized",
        "redis",
        USAGE,
        "a memoize argument that is not UTF-8",
        args=("delete-memoized", "shop.f", bad_bytes, "--signature", "(a)"),
    )
    # memcached's key rules.
    for name, key in (
        ("space", "a b"),
        ("newline", "a\nb"),
        ("long", "k" * 300),
    ):
        for command, args in (("get", ("get", key)), ("set", ("set", key, "v"))):
            c.add(
                f"memcached-key-{name}-{command}",
                command,
                "memcached",
                USAGE_OR_SERVER,
                "memcached cannot store this key",
                args=args,
            )
    # --from-file.
    # Redis keys are bytes: a name that is not UTF-8 (as keys lists it) is deleted as
    # stored; the other backends cannot hold one, so it is refused.
    for backend in BACKENDS:
        c.add(
            f"from-file-not-utf8-{backend}",
            "delete",
            backend,
            OK if backend == "redis" else USAGE,
            "--from-file with invalid UTF-8",
            args=("delete", "--from-file", "keys.txt"),
            files={"keys.txt": b"ok\n" + NOT_UTF8 + b"\n"},
        )
    c.add(
        "from-file-stdin-not-utf8",
        "delete",
        "redis",
        OK,
        "--from-file - with invalid UTF-8: a Redis key of those bytes",
        args=("delete", "--from-file", "-"),
        stdin=NOT_UTF8,
    )
    c.add(
        "from-file-missing",
        "delete",
        "redis",
        USAGE,
        "--from-file that does not exist",
        args=("delete", "--from-file", "nosuch.txt"),
    )
    c.add(
        "from-file-directory",
        "delete",
        "filesystem",
        USAGE,
        "--from-file a directory",
        args=("delete", "--from-file", "fscache"),
    )
    # set values.
    value_cases: list[tuple[str, tuple[str, ...], bytes | None, str]] = [
        ("json-deep-open", ("set", "k", DEEP_JSON_OPEN, "--as", "json"), None, "10000 ["),
        ("json-deep", ("set", "k", DEEP_JSON, "--as", "json"), None, "10000 deep"),
        ("json-invalid", ("set", "k", "{", "--as", "json"), None, "invalid JSON"),
        ("json-empty", ("set", "k", "", "--as", "json"), None, "empty JSON"),
        ("int-word", ("set", "k", "x", "--as", "int"), None, "--as int x"),
        ("int-float", ("set", "k", "1.5", "--as", "int"), None, "--as int 1.5"),
        ("int-empty", ("set", "k", "", "--as", "int"), None, "--as int ''"),
        ("int-digits", ("set", "k", "1" * 5000, "--as", "int"), None, "over int digit limit"),
        ("float-word", ("set", "k", "x", "--as", "float"), None, "--as float x"),
        ("as-nosuch", ("set", "k", "v", "--as", "nosuch"), None, "unknown --as"),
        ("stdin-int-word", ("set", "k", "-", "--as", "int"), b"abc\n", "stdin not an int"),
        ("stdin-int-empty", ("set", "k", "-", "--as", "int"), b"", "empty stdin as int"),
        ("stdin-not-utf8", ("set", "k", "-"), NOT_UTF8, "stdin not UTF-8 for --as str"),
        ("stdin-json-deep", ("set", "k", "-", "--as", "json"), DEEP_JSON.encode(), "deep"),
        ("ttl-huge", ("set", "k", "v", "--ttl", "99999999999999999999"), None, "ttl overflow"),
        ("ttl-negative", ("set", "k", "v", "--ttl", "-5"), None, "negative ttl"),
        ("ttl-word", ("set", "k", "v", "--ttl", "soon"), None, "ttl a word"),
        ("ttl-2p40", ("set", "k", "v", "--ttl", "1099511627776"), None, "ttl 2**40"),
        ("timeout-alias-neg", ("set", "k", "v", "--timeout", "-1"), None, "old --timeout"),
        ("missing-value", ("set", "k"), None, "VALUE missing"),
        ("extra-value", ("set", "k", "v", "w"), None, "one value too many"),
    ]
    for n, (name, args, stdin, reason) in enumerate(value_cases):
        backends = BACKENDS if n % 2 == 0 or name.startswith("ttl") else (BACKENDS[n % 3],)
        for backend in backends:
            c.add(
                f"set-{name}-{backend}",
                "set",
                backend,
                USAGE,
                reason,
                args=args,
                stdin=stdin,
            )


def _commands(c: Corpus) -> None:
    """Options of each command that cannot be honoured."""
    per_command: list[tuple[str, str, str, tuple[str, ...], str]] = [
        # (id, command, backend, args, reason)
        ("get-raw-two", "get", "redis", ("get", "--raw", "a", "b"), "--raw takes one key"),
        ("get-none", "get", "redis", ("get",), "no key"),
        ("get-unknown-option", "get", "filesystem", ("get", "--nosuch", "k"), "unknown option"),
        ("delete-nothing", "delete", "redis", ("delete",), "no keys, no --from-file"),
        ("delete-pattern-and-keys", "delete", "redis", ("delete", "k", "--pattern", "x*"), ""),
        ("delete-dry-run-keys", "delete", "redis", ("delete", "--dry-run", "k"), "dry-run"),
        ("delete-pattern-no-yes", "delete --pattern", "redis", ("delete", "--pattern", "x*"),
         "no terminal and no --yes"),
        ("delete-pattern-fs", "delete --pattern", "filesystem",
         ("delete", "--pattern", "x*", "--yes"), "Redis only"),
        ("delete-pattern-mc", "delete --pattern", "memcached",
         ("delete", "--pattern", "x[0", "--yes"), "a '[' never closed"),
        ("clear-no-yes-redis", "clear", "redis", ("clear",), "no terminal, no --yes"),
        ("clear-no-yes-fs", "clear", "filesystem", ("clear",), "no terminal, no --yes"),
        ("clear-no-yes-mc", "clear", "memcached", ("clear",), "no terminal, no --yes"),
        ("clear-pattern-no-yes", "clear", "redis", ("clear", "--pattern", "x*"), "no --yes"),
        ("clear-flush-db-prefix", "clear", "redis", ("clear", "--flush-db", "--yes"),
         "--flush-db only without a prefix"),
        ("clear-pattern-fs", "clear", "filesystem", ("clear", "--pattern", "x*", "--yes"), ""),
        ("clear-pattern-mc", "clear", "memcached",
         ("clear", "--flush-all", "--pattern", "x*", "--yes"), "--flush-all takes no --pattern"),
        ("clear-flush-all-exclude-mc", "clear", "memcached",
         ("clear", "--flush-all", "--exclude", "x*", "--yes"), "--flush-all takes no --exclude"),
        ("clear-flush-all-redis", "clear", "redis", ("clear", "--flush-all", "--yes"),
         "--flush-all is memcached's"),
        ("clear-flush-db-fs", "clear", "filesystem", ("clear", "--flush-db", "--yes"), ""),
        ("clear-extra-arg", "clear", "redis", ("clear", "everything"), "unexpected argument"),
        ("keys-fs", "keys", "filesystem", ("keys",), "cannot list file names"),
        ("keys-mc", "keys", "memcached", ("keys", "[z-"), "a '[' never closed"),
        ("keys-count-mc", "keys", "memcached", ("keys", "--count", "[é-ü]"), "non-ASCII range"),
        ("keys-limit-zero", "keys", "redis", ("keys", "--limit", "0"), "limit 0"),
        ("keys-limit-negative", "keys", "redis", ("keys", "--limit", "-1"), "limit -1"),
        ("keys-limit-word", "keys", "redis", ("keys", "--limit", "all"), "limit a word"),
        ("keys-two-globs", "keys", "redis", ("keys", "a*", "b*"), "one GLOB"),
        ("stats-sample-zero", "stats", "redis", ("stats", "--sample", "0"), "sample 0"),
        ("stats-sample-word", "stats", "filesystem", ("stats", "--sample", "x"), "sample word"),
        ("stats-extra", "stats", "redis", ("stats", "now"), "unexpected argument"),
        ("stats-top-alone", "stats", "redis", ("stats", "--top", "3"), "--top, no --by-function"),
        ("stats-top-negative", "stats", "redis", ("stats", "--by-function", "--top", "-1"),
         "top -1"),
        ("stats-by-function-sample", "stats", "memcached",
         ("stats", "--by-function", "--sample", "5"), "--sample with --by-function"),
        ("stats-by-function-fs", "stats", "filesystem", ("stats", "--by-function"),
         "no key names on the filesystem"),
        ("view-prefix-format", "delete-view", "redis",
         ("delete-view", "/a", "--view-prefix", "%s%s%d"), "not a key_prefix template"),
        ("view-prefix-two", "delete-view", "filesystem",
         ("delete-view", "/a", "--view-prefix", "%s/%s"), "two %s"),
        ("view-no-path", "delete-view", "redis", ("delete-view",), "no PATH, no --endpoint"),
        ("view-endpoint-no-app", "delete-view", "redis", ("delete-view", "--endpoint", "index"),
         "--endpoint needs --app"),
        ("view-arg-no-equals", "delete-view", "redis",
         ("delete-view", "--endpoint", "index", "--arg", "x"), "NAME=VALUE"),
        ("view-all-queries-fs", "delete-view", "filesystem",
         ("delete-view", "/s", "--all-queries"), "Redis only"),
        ("view-all-queries-mc", "delete-view", "memcached",
         ("delete-view", "/s", "--query", "a=1", "--all-queries"), "--query or --all-queries"),
        ("view-hash-nosuch", "delete-view", "redis",
         ("delete-view", "/s", "--query", "a=1", "--hash-method", "nosuch"), "bad choice"),
        ("view-path-and-endpoint", "delete-view", "redis",
         ("delete-view", "/a", "--endpoint", "index"), "both PATH and --endpoint"),
        ("fragment-not-utf8-fs", "make-fragment-key", "filesystem",
         ("make-fragment-key", "x", "\udcff"), "vary_on not UTF-8 (surrogate in argv)"),
        ("fragment-no-name", "make-fragment-key", "redis", ("make-fragment-key",), "NAME"),
        ("fragment-unknown-option", "make-fragment-key", "memcached",
         ("make-fragment-key", "x", "--purge"), "unknown option"),
        ("fragments-missing-dir", "fragments", "none", ("fragments", "nosuchdir"), "no dir"),
        ("fragments-file", "fragments", "none", ("fragments", "plain.txt"), "a file, not a dir"),
        ("fragments-default-missing", "fragments", "none", ("fragments",), "no ./templates"),
        ("fragments-bad-app", "fragments", "none", ("fragments",), "--app that does not import"),
        ("config-force-alone", "config", "redis", ("config", "--force"), "--force needs --write"),
        ("config-write-exists", "config --write", "redis", ("config", "--write", "plain.txt"),
         "file exists, no --force"),
        ("config-write-nodir", "config --write", "redis",
         ("config", "--write", "nosuch/dir/out.toml"), "directory missing"),
        ("config-write-empty", "config --write", "redis", ("config", "--write", ""), "empty"),
        ("config-write-dir", "config --write", "filesystem", ("config", "--write", "fscache"),
         "a directory"),
        ("config-write-dir-force", "config --write", "filesystem",
         ("config", "--write", "fscache", "--force"), "a directory, even with --force"),
        ("config-write-no-value", "config --write", "redis", ("config", "--write"), "no FILE"),
        ("config-extra", "config", "redis", ("config", "extra"), "unexpected argument"),
        ("completion-none", "completion", "none", ("completion",), "no shell"),
        ("completion-tcsh", "completion", "none", ("completion", "tcsh"), "unknown shell"),
        ("completion-upper", "completion", "none", ("completion", "BASH"), "case matters"),
        ("completion-empty", "completion", "none", ("completion", ""), "empty shell"),
        ("completion-two", "completion", "none", ("completion", "bash", "zsh"), "one shell"),
        ("completion-option", "completion", "none", ("completion", "--all"), "unknown option"),
    ]  # fmt: skip
    for name, command, backend, args, reason in per_command:
        files: dict[str, bytes] = {}
        globals_: tuple[str, ...] = ()
        if name in ("fragments-file", "config-write-exists"):
            files = {"plain.txt": b"already here\n"}
        if name == "fragments-bad-app":
            globals_ = ("--app", "nosuchmodule_fuzz")
        c.add(name, command, backend, USAGE, reason or name, globals_=globals_, args=args,
              files=files)  # fmt: skip


def _memoized(c: Corpus) -> None:
    """delete-memoized names, arguments and signatures that cannot describe a call."""
    names = [":", ".", "mod:", "mod.", "", ":f", "json:", "json..dumps", "1mod.f", "json.dumps.",
             "a b.c", "json:dumps:x", "mod:f()", "json.dumps(", "-"]  # fmt: skip
    for n, name in enumerate(names):
        backend = BACKENDS[n % 3]
        args: tuple[str, ...] = ("delete-memoized", name)
        if name.startswith("-"):
            args = ("delete-memoized", "--", name)
        c.add(
            f"memo-name-{slug(name) if slug(name) != 'x' else 'sym'}-{n}-{backend}",
            "delete-memoized",
            backend,
            USAGE,
            f"{name!r} cannot name a function",
            args=args,
        )
    for n, (name, suggestion) in enumerate(
        (
            ("json.dumpz", "dumps"),
            ("json:dumpz", "dumps"),
            ("json.decoder.JSONDecodr.decode", "JSONDecoder"),
            ("os.path.joinn", "join"),
        )
    ):
        c.add(
            f"memo-typo-{n}-{slug(name)}",
            "delete-memoized",
            "redis",
            USAGE,
            "a typo in an importable module: suggest the real name",
            args=("delete-memoized", name),
            must_match=(re.escape(suggestion),),
        )
    sig = ("--signature", "(a, b=1)")
    bindings: list[tuple[str, tuple[str, ...], str]] = [
        ("too-many", ("1", "2", "3", *sig), "three arguments for (a, b=1)"),
        ("kw-nosuch", ("1", "--kw", "nosuch=1", *sig), "no such parameter"),
        ("missing-required", ("--kw", "b=2", *sig), "a is required"),
        ("kw-twice", ("1", "--kw", "a=2", *sig), "a given twice"),
        ("kw-no-equals", ("1", "--kw", "b", *sig), "--kw NAME=VALUE"),
        ("kw-empty-name", ("1", "--kw", "=2", *sig), "--kw without a name"),
        ("json-too-many", ("1", "2"), "json.dumps takes one positional argument"),
        ("no-signature", ("1",), "not importable and no --signature"),
        ("instance-function", ("--instance", "X(1)"), "json.dumps is not a method"),
        ("verhash-with-args", ("1", "--verhash", *sig), "--verhash deletes the version key only"),
        ("purge-fs", ("--purge",), "--purge is Redis only"),
        ("hash-nosuch", ("1", "--hash-method", "nosuch", *sig), "bad choice"),
    ]
    for name, extra, reason in bindings:
        function = "json.dumps" if name.startswith(("json", "instance")) else "shop.models.f"
        backend = "filesystem" if name == "purge-fs" else "redis"
        if name == "kw-twice":
            backend = "memcached"
        c.add(
            f"memo-bind-{name}",
            "delete-memoized",
            backend,
            USAGE,
            reason,
            args=("delete-memoized", function, *extra),
        )
    c.add(
        "memo-bind-purge-mc",
        "delete-memoized",
        "memcached",
        NOT_FOUND,
        "--purge lists memcached's keys with the LRU crawler: nothing cached under a name "
        "not imported here, exit 1 (nothing matched)",
        args=("delete-memoized", "shop.models.f", "--purge"),
    )
    signatures = ["(a, a)", "(**kw, a)", "(", "", "(1)", "(a=)", "(*, )", "(a, /, b, /)",
                  "(a): pass", "(a=1, b)", "(*a, *b)", "(a b)", "(self.x)", ")(",
                  "(a=[" + "[" * 5000 + ")", "(" + "a, " * 300 + "a)",
                  "(a=__import__('pathlib').Path('PWNED').touch())",
                  "(a=(lambda: __import__('os').system('touch PWNED2'))())"]  # fmt: skip
    for n, signature in enumerate(signatures):
        c.add(
            f"memo-signature-{n:02d}-{slug(signature)[:24]}",
            "delete-memoized",
            BACKENDS[n % 3],
            USAGE,
            f"--signature {signature[:40]!r} is not a Python parameter list of literals",
            args=("delete-memoized", "shop.models.f", "1", "--signature", signature),
            absent=("{tmp}/PWNED", "{tmp}/PWNED2"),
        )
    literals = ["'abc", "[1, 2", '{"a": }', "(1,", "[" * 10000, "1" * 5000,
                "__import__('os')", "lambda: 1", "f(x)", "1 +", "b'\\x'", "{1: [}",
                "\"" + "a" * 10 , "1_", "0x", "'\\N{nosuch}'"]  # fmt: skip
    for n, literal in enumerate(literals):
        c.add(
            f"memo-literal-{n:02d}-{slug(literal)[:20]}",
            "delete-memoized",
            BACKENDS[n % 3],
            USAGE,
            "an argument that is neither a Python literal nor a bare word",
            args=("delete-memoized", "shop.models.f", "--signature", "(a)", "--", literal),
        )
        if n < 5:
            c.add(
                f"memo-kw-literal-{n:02d}-{slug(literal)[:20]}",
                "delete-memoized",
                BACKENDS[(n + 1) % 3],
                USAGE,
                "a --kw value that is neither a Python literal nor a bare word",
                args=(
                    "delete-memoized",
                    "shop.models.f",
                    "--signature",
                    "(a)",
                    "--kw",
                    f"a={literal}",
                ),
            )


SIMPLE_CACHE = (
    b"from flask_caching import Cache\ncache = Cache(app, config={'CACHE_TYPE': 'SimpleCache'})\n"
)


def _apps(c: Corpus) -> None:
    """--app strings and app modules that cannot give a cache."""
    flask_app = b"from flask import Flask\napp = Flask(__name__)\n"
    apps: list[tuple[str, str, dict[str, bytes], tuple[str, ...], str]] = [
        ("nosuchmodule", "nosuchmodule_fuzz", {}, (), "module does not exist"),
        ("attr-missing", "json:nosuch", {}, (), "no such attribute"),
        ("call-module", "os:path()", {}, (), "a module is not callable"),
        ("syntax", "json:dumps(", {}, (), "not a call expression"),
        ("empty", "", {}, (), "empty --app"),
        ("colon-only", ":", {}, (), "no module"),
        ("call-args", "json:loads('[')", {}, (), "factory raising"),
        ("not-an-app", "json:dumps", {}, (), "not a Flask app"),
        ("import-error", "badapp", {"badapp.py": b"import nosuch_dependency_xyz\n"},
         ("nosuch_dependency_xyz",), "the app's own import fails"),
        ("runtime-error", "badapp", {"badapp.py": b"raise RuntimeError('db down')\n"},
         ("db down",), "the app raises while importing"),
        ("sys-exit-0", "badapp", {"badapp.py": b"import sys\nsys.exit(0)\n"}, (),
         "an app exiting 0 at import is not success"),
        ("syntax-error", "badapp", {"badapp.py": b"def (:\n"}, (), "the app has a syntax error"),
        ("no-cache", "plainapp", {"plainapp.py": flask_app}, (), "an app without a Cache"),
        ("factory-none", "factapp:create_app()",
         {"factapp.py": b"def create_app():\n    return None\n"}, (), "factory returns None"),
        ("factory-raises", "factapp:create_app()",
         {"factapp.py": b"def create_app():\n    raise ValueError('bad env')\n"}, ("bad env",),
         "factory raises"),
        ("factory-args", "factapp:create_app(1, 2, 3)",
         {"factapp.py": b"def create_app():\n    pass\n"}, (), "factory called wrongly"),
        ("simple-cache", "simpleapp", {"simpleapp.py": flask_app + SIMPLE_CACHE}, (),
         "in-process cache"),
        ("secret-in-error", "secretapp", {"secretapp.py": b"raise RuntimeError('redis://:"
         + SECRET.encode() + b"d1@db:6379 refused')\n"}, (), "a secret in the app's error"),
    ]  # fmt: skip
    for n, (name, target, files, mentions, reason) in enumerate(apps):
        picks = rotate(("get", "config", "delete-view", "stats", "clear"), n, 2)
        if name == "simple-cache":
            picks = ["get", "clear"]  # config may show an in-process cache; using it is refused
        for command in picks:
            c.add(
                f"app-{name}-{slug(command)}",
                command,
                "none",
                USAGE,
                f"--app: {reason}",
                globals_=("--app", target),
                args=VALID[command],
                files=files,
                must_match=tuple(re.escape(m) for m in mentions),
            )
    c.add(
        "app-flask-app-env",
        "get",
        "none",
        USAGE,
        "an exported FLASK_APP that does not import",
        args=("get", "k"),
        env={"FLASK_APP": "nosuchmodule_fuzz"},
    )
    c.add(
        "app-env-cachectl-app",
        "config",
        "none",
        USAGE,
        "CACHECTL_APP that does not import",
        args=("config",),
        env={"CACHECTL_APP": "json:nosuch"},
    )
    c.add(
        "app-config-write-no-cache",
        "config --write",
        "none",
        USAGE,
        "config --write of an app with no cache",
        globals_=("--app", "plainapp"),
        args=("config", "--write", "out.toml"),
        files={"plainapp.py": flask_app},
        absent=("{tmp}/out.toml",),
    )


def _usage(c: Corpus) -> None:
    """Click's own usage errors: one ``error:`` line too."""
    usage: list[tuple[str, tuple[str, ...], str]] = [
        ("no-command", (), "no command"),
        ("unknown-command", ("nosuch",), "unknown command"),
        ("typo-command", ("gett", "k"), "typo of get"),
        ("unknown-global-option", ("--nosuch", "get", "k"), "unknown option"),
        ("global-missing-value", ("--url",), "--url without its value"),
        ("option-missing-value", ("-o",), "-o without its value"),
        ("timeout-missing-value", ("get", "k", "--timeout"), "no value after the option"),
        ("compat-bad-choice", ("--compat", "2.4", "config"), "2.4 is not a generation"),
        ("json-twice-value", ("--json=yes", "config"), "flag with a value"),
        ("help-typo", ("--hlep",), "typo of --help"),
        ("version-extra", ("--version=1",), "--version takes no value"),
        ("command-case", ("GET", "k"), "commands are lower case"),
    ]
    for name, argv, reason in usage:
        c.add(f"usage-{name}", "(usage)", "none", USAGE, reason, globals_=argv)


def _controls(c: Corpus) -> None:
    """Inputs that must NOT fail: they prove the harness can tell success from failure."""
    c.add(
        "control-delete-view-relative",
        "delete-view",
        "redis",
        OK,
        "a path without / is allowed, with a warning that Flask paths start with /",
        args=("delete-view", "about"),
        must_match=(r"(?i)start\w*\s+with\s+\W?/",),
    )
    for backend in BACKENDS:
        c.add(
            f"control-delete-memoized-nothing-cached-{backend}",
            "delete-memoized",
            backend,
            NOT_FOUND,
            "nothing cached under a name that cannot be imported here: exit 1 (nothing "
            "matched: perhaps misspelled), say so; --json version_key_existed false",
            args=("delete-memoized", "shop.models.get_user"),
            must_match=(r"(?i)nothing\s+matched",),
            json_fields={"ok": True, "version_key_existed": False, "nothing_matched": True},
        )
    c.add(
        "control-get-dash-after-double-dash",
        "get",
        "redis",
        NOT_FOUND,
        "-- makes a dash key a key: not found is exit 1, not an error",
        args=("get", "--", "-CKju7mEypY"),
    )
    c.add(
        "control-delete-missing-key",
        "delete",
        "filesystem",
        OK,
        "deleting a key that does not exist is not an error",
        args=("delete", "nosuch"),
    )
    c.add(
        "control-keys-count-fs",
        "keys",
        "filesystem",
        OK,
        "--count works for the filesystem",
        args=("keys", "--count"),
    )
    c.add(
        "control-completion-bash",
        "completion",
        "none",
        OK,
        "a valid completion request",
        args=("completion", "bash"),
    )


def _lifetimes_and_exclusions(c: Corpus) -> None:
    """ttl, expire, persist, prune, clear --exclude and the audit log's options given what
    they cannot honour."""
    cases: list[tuple[str, str, str, tuple[str, ...], frozenset[int], str]] = [
        # (id, command, backend, args, expected exit, reason)
        ("ttl-none", "ttl", "redis", ("ttl",), USAGE, "no key"),
        ("ttl-missing", "ttl", "filesystem", ("ttl", "nosuchkey"), NOT_FOUND, "not there"),
        ("expire-word", "expire", "redis", ("expire", "k", "soon"), USAGE, "seconds a word"),
        ("expire-zero", "expire", "redis", ("expire", "k", "0"), USAGE,
         "0 means never to the app and now to Redis"),
        ("expire-negative", "expire", "memcached", ("expire", "k", "-5"), USAGE, "negative"),
        ("expire-no-seconds", "expire", "filesystem", ("expire", "k"), USAGE, "no SECONDS"),
        ("expire-missing", "expire", "redis", ("expire", "nosuchkey", "60"), NOT_FOUND,
         "not there"),
        ("persist-none", "persist", "redis", ("persist",), USAGE, "no key"),
        ("persist-missing", "persist", "memcached", ("persist", "nosuchkey"), NOT_FOUND,
         "not there"),
        ("prune-redis", "prune", "redis", ("prune",), USAGE, "Redis expires keys itself"),
        ("prune-mc", "prune", "memcached", ("prune", "--dry-run"), USAGE, "memcached too"),
        ("prune-extra", "prune", "filesystem", ("prune", "old"), USAGE, "unexpected argument"),
        ("exclude-fs", "clear", "filesystem", ("clear", "--exclude", "s:*", "--yes"), USAGE,
         "file names are hashes"),
        ("exclude-mc", "clear", "memcached", ("clear", "--exclude", "s:*", "--yes"), USAGE,
         "memcached cannot list keys"),
        ("exclude-flush-db", "clear", "redis",
         ("clear", "--flush-db", "--exclude", "s:*", "--yes"), USAGE, "flush-db empties all"),
        ("exclude-empty", "clear", "redis", ("clear", "--exclude", "", "--yes"), USAGE,
         "empty glob (an unset variable)"),
        ("exclude-open-class", "clear", "redis", ("clear", "--exclude", "s[ab", "--yes"), USAGE,
         "a [ never closed"),
        ("exclude-no-glob", "clear", "redis", ("clear", "--exclude"), USAGE, "no GLOB"),
    ]  # fmt: skip
    for name, command, backend, args, expect, reason in cases:
        c.add(name, command, backend, expect, reason, args=args)
    audit_cases: list[tuple[str, tuple[str, ...], tuple[str, ...], str]] = [
        ("audit-log-empty", ("--audit-log", ""), ("delete", "k"), "empty log path"),
        ("audit-required-no-log", ("--audit-required",), ("delete", "k"), "no log set"),
        ("audit-required-dir", ("--audit-required", "--audit-log", "."), ("clear", "--yes"),
         "the log is a directory"),
        ("audit-required-nodir", ("--audit-required", "--audit-log", "no/such/dir/a.log"),
         ("set", "k", "v"), "the log's directory is missing"),
    ]  # fmt: skip
    for name, globals_, args, reason in audit_cases:
        c.add(name, args[0], "redis", USAGE, reason, globals_=globals_, args=args)


def build_corpus() -> list[Case]:
    """Every case, in a stable order."""
    c = Corpus()
    for part in (
        _config_files,
        _urls,
        _settings,
        _secrets_shown,
        _arguments,
        _commands,
        _memoized,
        _apps,
        _usage,
        _controls,
        _lifetimes_and_exclusions,
    ):
        part(c)
    # Each class of hostile input may live in a module of its own, tests/fuzz/cases_*.py,
    # with an ``add_cases(corpus)`` function: found here, so adding one needs no edit above.
    import importlib
    import pkgutil

    import tests.fuzz

    for module in sorted(info.name for info in pkgutil.iter_modules(tests.fuzz.__path__)):
        if module.startswith("cases_"):
            importlib.import_module(f"tests.fuzz.{module}").add_cases(c)
    return c.cases


CASES: list[Case] = build_corpus()
CASES_BY_ID: dict[str, Case] = {case.id: case for case in CASES}


# --- running ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Targets:
    """Where the placeholders point in this run."""

    redis_port: int
    redis_db: int
    memcached_port: int
    dead_port: int

    def values(self, tmp: Path) -> dict[str, str]:
        return {
            "{redis_url}": f"redis://127.0.0.1:{self.redis_port}/{self.redis_db}",
            "{redis_port}": str(self.redis_port),
            "{mc}": f"127.0.0.1:{self.memcached_port}",
            "{mc_port}": str(self.memcached_port),
            "{dead_port}": str(self.dead_port),
            "{tmp}": str(tmp),
        }

    def substitute(self, value: Arg, tmp: Path) -> Arg:
        """``value`` with every placeholder replaced (str or bytes alike)."""
        for placeholder, actual in self.values(tmp).items():
            if isinstance(value, bytes):
                value = value.replace(placeholder.encode(), actual.encode())
            else:
                value = value.replace(placeholder, actual)
        return value


#: Default ports of the machine's own servers (Redis, memcached, Sentinel). A buggy
#: fallback to a default must never reach them, so each run carries a ``sitecustomize``
#: that refuses Python-level connections to them and records the attempt.
GUARDED_PORTS = (6379, 11211, 26379)
GUARD_SOURCE = f"""\
import os
import socket

_PORTS = {GUARDED_PORTS!r}
_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex


def _blocked(address):
    return isinstance(address, tuple) and len(address) >= 2 and address[1] in _PORTS


def _refuse(address):
    # Read at each refusal, not at start-up: a forked run gets its variables later.
    log_path = os.environ.get("FUZZGUARD_LOG")
    if log_path:
        with open(log_path, "a") as log:
            log.write(f"{{address[0]}}:{{address[1]}}\\n")
    raise ConnectionRefusedError(111, "refused by the fuzz harness (a default port)")


def connect(self, address):
    if _blocked(address):
        _refuse(address)
    return _connect(self, address)


def connect_ex(self, address):
    if _blocked(address):
        _refuse(address)
    return _connect_ex(self, address)


socket.socket.connect = connect
socket.socket.connect_ex = connect_ex
"""


def install_guard(base: Path) -> Path:
    """Write the connection guard under ``base``; returns the directory to put on PYTHONPATH."""
    directory = base / "fuzzguard"
    directory.mkdir(exist_ok=True)
    (directory / "sitecustomize.py").write_text(GUARD_SOURCE)
    return directory


@dataclass
class Outcome:
    """What one run of one case produced."""

    case: Case
    mode: Mode
    argv: list[Arg]
    returncode: int | None
    stdout: bytes
    stderr: bytes
    present: list[str]
    #: host:port of every connection the guard refused (a fallback to a default server).
    guarded: list[str] = field(default_factory=list)
    #: The run's own directory (its name differs from run to run).
    directory: str = ""
    #: Whether it was forked from the fork server rather than started afresh.
    forked: bool = False

    @property
    def text_err(self) -> str:
        return self.stderr.decode("utf-8", errors="replace")

    @property
    def text_out(self) -> str:
        return self.stdout.decode("utf-8", errors="replace")


def clean_env(extra: Mapping[str, str], guard: Path | None = None) -> dict[str, str]:
    """The caller's environment without anything that would point cachectl elsewhere
    (and, given ``guard``, with the default-port guard loaded by every Python started)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("CACHECTL_", "FLASK_"))
    }
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if guard is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(guard), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def argv_for(case: Case, mode: Mode) -> list[Arg]:
    """The argv of ``case`` with ``--json`` where ``mode`` puts it."""
    argv: list[Arg] = list(case.argv)
    if mode == "json":
        argv.insert(0, "--json")
    elif mode == "json-after":
        assert case.sub_index is not None
        argv.insert(case.sub_index + 1, "--json")
    return argv


def run_case(
    case: Case, targets: Targets, mode: Mode, base: Path, forks: ForkServer | None = None
) -> Outcome:
    """Run ``case`` once as the console script, in a fresh directory under ``base``: forked
    from ``forks`` when given (and the case's variables allow), else started afresh."""
    for path in case.absent:
        if "{tmp}" not in path and os.path.lexists(path):
            raise RuntimeError(f"{path} exists before {case.id} runs: remove it first")
    tmp = Path(tempfile.mkdtemp(prefix=f"{case.id[:40]}-{mode}-", dir=base))
    (tmp / "fscache").mkdir()
    for name, content in case.files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = targets.substitute(content, tmp)
        assert isinstance(data, bytes)
        path.write_bytes(data)
    for name, target in case.symlinks.items():
        link = tmp / name
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(str(targets.substitute(target, tmp)), link)
    for name in case.fifos:
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(tmp / name)
    argv = [targets.substitute(arg, tmp) for arg in argv_for(case, mode)]
    env = {name: str(targets.substitute(value, tmp)) for name, value in case.env.items()}
    guard_log = base / f"{tmp.name}.guard"
    env["FUZZGUARD_LOG"] = str(guard_log)
    stdin = case.stdin if case.stdin is not None else b""
    returncode: int | None
    full_env = clean_env(env, install_guard(base))
    forked = forks is not None and forks.can_fork(full_env)
    if forks is not None and forked:
        returncode, stdout, stderr = forks.run(argv, full_env, tmp, stdin, SUBPROCESS_TIMEOUT)
    else:
        try:
            done = subprocess.run(
                [str(CONSOLE_SCRIPT), *argv],
                input=stdin,
                capture_output=True,
                cwd=tmp,
                env=full_env,
                timeout=SUBPROCESS_TIMEOUT,
            )
            returncode = done.returncode
            stdout, stderr = done.stdout, done.stderr
        except subprocess.TimeoutExpired as exc:
            returncode = None
            stdout, stderr = exc.stdout or b"", exc.stderr or b""
    present = [
        str(path)
        for path in (str(targets.substitute(p, tmp)) for p in case.absent)
        if os.path.lexists(path)
    ]
    for path in present:
        if not path.startswith(str(tmp)):
            # Created by the run (a mistyped --dir outside the case's directory): remove
            # it, or the next run would find it existing and prove nothing.
            shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)
    guarded = guard_log.read_text().split() if guard_log.exists() else []
    guard_log.unlink(missing_ok=True)
    return Outcome(case, mode, argv, returncode, stdout, stderr, present, guarded, str(tmp), forked)


def run_many(
    jobs: Iterable[tuple[Case, Mode]],
    targets: Targets,
    base: Path,
    workers: int | None = None,
    forked: bool = True,
) -> Iterator[Outcome]:
    """Run the jobs concurrently (each is its own process), in order of submission:
    forked from one fork server (see forked_runs.py), or with ``forked=False`` each
    started afresh through the console script."""
    jobs = list(jobs)
    workers = workers or max(4, (os.cpu_count() or 2) * 3)
    forks = ForkServer(CONSOLE_SCRIPT, clean_env({}, install_guard(base))) if forked else None
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [
                pool.submit(run_case, case, targets, mode, base, forks) for case, mode in jobs
            ]
            for future in futures:
                yield future.result()
    finally:
        if forks is not None:
            forks.close()


# --- the contract ---------------------------------------------------------------------------


def violations(outcome: Outcome) -> list[str]:
    """Every way ``outcome`` breaks the contract (empty: it holds)."""
    case = outcome.case
    problems: list[str] = []
    code = outcome.returncode
    err, out = outcome.text_err, outcome.text_out
    if code is None:
        return [f"timed out after {SUBPROCESS_TIMEOUT:.0f} s"]
    if code not in case.expect:
        problems.append(f"exit {code}, expected {sorted(case.expect)}")
    if "Traceback" in err or "Traceback" in out:
        problems.append("printed a traceback")
    if SECRET in err or SECRET in out:
        problems.append("printed a secret")
    for path in outcome.present:
        problems.append(f"created {path}")
    if outcome.guarded:
        problems.append(
            f"fell back to a default server ({', '.join(sorted(set(outcome.guarded)))})"
        )
    if outcome.mode == "plain":
        problems += _plain_violations(case, code, err)
    else:
        problems += _json_violations(case, code, out)
    return problems


def _plain_violations(case: Case, code: int, err: str) -> list[str]:
    problems: list[str] = []
    # Warnings that came before the failure (a password in argv, a flush that
    # takes the whole server) are information, not a second error.
    lines = [line for line in err.splitlines() if not line.startswith("warning: ")]
    error_lines = [line for line in lines if line.lower().startswith("error")]
    if code in (2, 3, 4) or case.is_error:
        if not lines or not lines[0].startswith("error: "):
            problems.append("stderr does not start with one 'error: ' line")
        if len(error_lines) != 1:
            problems.append(f"{len(error_lines)} error lines")
        if len(lines) > 2:
            problems.append(f"{len(lines)} stderr lines (one error line, one hint at most)")
    elif error_lines:
        problems.append("an 'error' line on a run that must succeed")
    for pattern in case.must_match:
        if not re.search(pattern, err):
            problems.append(f"stderr does not match {pattern!r}")
    return problems


def _json_violations(case: Case, code: int, out: str) -> list[str]:
    try:
        document = json.loads(out)
    except ValueError:
        return ["stdout is not exactly one JSON document"]
    if not isinstance(document, dict):
        return ["the JSON document is not an object"]
    problems: list[str] = []
    if case.is_error or code not in (0, 1):
        if document.get("ok") is not False:
            problems.append('"ok" is not false')
        if not isinstance(document.get("error"), str) or not document.get("error"):
            problems.append('no "error" message')
        if document.get("exit_code") != code:
            problems.append(f'"exit_code" {document.get("exit_code")!r} != exit status {code}')
    elif code == 0 and document.get("ok") is False:
        problems.append('"ok" false on success')
    for name, value in case.json_fields.items():
        if document.get(name, "<missing>") != value:
            problems.append(f'"{name}" is {document.get(name, "<missing>")!r}, wants {value!r}')
    return problems


def shown(outcome: Outcome, limit: int = 300) -> str:
    """A short account of what the run printed, for failure messages."""
    err = outcome.text_err.strip().replace("\n", " | ")
    out = outcome.text_out.strip().replace("\n", " ")
    return f"exit {outcome.returncode}; stderr: {err[:limit]!r}; stdout: {out[:limit]!r}"
