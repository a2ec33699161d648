from __future__ import annotations

import compileall
import io
import itertools
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner, Result
from flask import Flask
from flask_caching import Cache

import cachectl
from cachectl.cli import cli
from tests.forked_runs import PRELOAD, Memory, shared_server
from tests.servers import (
    ServerProcess,
    redis_family_name,
    redis_server_binary,
    start_memcached,
    start_redis,
    start_sasl_memcached,
)

CONSOLE_SCRIPT = Path(sys.executable).with_name("cachectl")
CONSOLE_TIMEOUT = 120


def pytest_sessionstart(session: pytest.Session) -> None:
    """Byte-compile the package first, as an install does: the console-script runs the tests
    start set PYTHONDONTWRITEBYTECODE (no __pycache__ in a case's directory), so a module no
    test process had imported yet would be compiled again by every run."""
    compileall.compile_dir(str(Path(cachectl.__file__).parent), quiet=1)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep ``xdist_group`` tests on one worker under ``--dist loadgroup``. pytest-xdist 3.8
    marks them by appending ``@group`` to ``item._nodeid``, which pytest 9.2 no longer
    reads (it keeps a structured ``_id``; pytest-xdist issue 1386): the groups were then
    dealt out test by test, and the bad-input corpus, whose session fixture runs every
    selected case, ran whole on each worker. Here the suffix is written where pytest keeps
    the id, when xdist's own hook (run before this one) did not get it there."""
    if not getattr(config.option, "loadgroup", False) or not hasattr(config, "workerinput"):
        return
    for item in items:
        names = {
            str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
            for mark in item.iter_markers("xdist_group")
        }
        suffix = "@" + "_".join(sorted(names))
        if names and not item.nodeid.endswith(suffix) and hasattr(item, "_id"):
            from _pytest.nodeid import coerce_node_id

            item._id = coerce_node_id(item.nodeid + suffix)


def pytest_report_header() -> str:
    """Which Redis-family server this session's tests run on (``CACHECTL_REDIS_SERVER``)."""
    return f"Redis-family server: {redis_family_name()} ({redis_server_binary()})"


class _BothStreams(Result):
    """A Click < 8.2 result whose ``output`` holds both streams, as from Click 8.2 on."""

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def cli_runner() -> CliRunner:
    """Click's test runner with standard error kept apart from standard output: always so
    from Click 8.2, which dropped ``mix_stderr``; before, only when asked."""
    try:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]  # Click < 8.2
    except TypeError:
        return CliRunner()


def run(*args: str, input: str | bytes | None = None, env: dict[str, str] | None = None) -> Result:
    """Run cachectl in-process through Click's test runner."""
    result = cli_runner().invoke(cli, list(args), input=input, env=env, catch_exceptions=False)
    if result.stderr_bytes is not None and "output_bytes" not in vars(result):  # Click < 8.2
        result.__class__ = _BothStreams
    return result


class Completed(subprocess.CompletedProcess):
    """A finished run, as ``subprocess.run`` returns it, with what its memory came to when
    it was forked from a fork server (``memory``; None for a run started afresh)."""

    memory: Memory | None = None


def forked_or_started(
    command: Sequence[str],
    *,
    script: Path | None,
    preload: Sequence[str] = PRELOAD,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    input: bytes | None = None,
    timeout: float = CONSOLE_TIMEOUT,
    text: bool = False,
    fresh: bool = False,
) -> Completed:
    """``command`` (the program, then its arguments) run as a process of its own, its
    output captured (decoded as ``subprocess.run(text=True)`` decodes it when ``text``):
    forked from this test process's fork server for ``script`` (None: the server for Python
    command lines run by ``command[0]``), ``preload`` imported (tests/forked_runs.py), when
    ``env`` (the test's own when None) agrees with the server's on what Python reads at
    start-up; else, with
    ``fresh`` or with ``CACHECTL_TESTS_NO_FORK=1``, started afresh. A run past ``timeout``
    raises TimeoutExpired either way. A forked run's result has its memory (``memory``:
    its peak resident set and the server's at the fork, tests/forked_runs.py; None for a
    run started afresh)."""
    environment = dict(os.environ) if env is None else env
    if not fresh and not os.environ.get("CACHECTL_TESTS_NO_FORK"):
        server = shared_server(script, preload, command[0] if script is None else sys.executable)
        if server.can_fork(environment):
            status, stdout, stderr, memory = server.run_measured(
                command[1:], environment, cwd or Path.cwd(), input, timeout
            )
            if status is None:
                raise subprocess.TimeoutExpired(list(command), timeout)
            if text:
                done = Completed(list(command), status, _as_text(stdout), _as_text(stderr))
            else:
                done = Completed(list(command), status, stdout, stderr)
            done.memory = memory
            return done
    started = subprocess.run(
        list(command),
        input=input,
        capture_output=True,
        cwd=cwd,
        env=env,
        text=text,
        timeout=timeout,
    )
    return Completed(started.args, started.returncode, started.stdout, started.stderr)


def _as_text(data: bytes) -> str:
    """Output decoded as ``subprocess.run(text=True)`` decodes it."""
    return io.TextIOWrapper(io.BytesIO(data)).read()


def run_console(
    *args: str,
    input: bytes | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    fresh: bool = False,
) -> Completed:
    """Run the installed ``cachectl`` console script as an operator's shell would: a
    process of its own, with these arguments, stdin, directory and environment (the
    test's own when ``env`` is None), its output captured. It is forked from this test
    process's fork server (tests/forked_runs.py), which has started Python and imported
    cachectl once, when its environment agrees with the server's on what Python reads at
    start-up; ``fresh`` (for tests about start-up itself) starts the script afresh, as
    every run does with ``CACHECTL_TESTS_NO_FORK=1`` (to rule the fork server out)."""
    return forked_or_started(
        [str(CONSOLE_SCRIPT), *args],
        script=CONSOLE_SCRIPT,
        env=env,
        cwd=cwd,
        input=input,
        fresh=fresh,
    )


#: What the apps' own processes import first (each where installed): Flask, Flask-Caching
#: and the clients and extensions the test apps use.
APP_PRELOAD = (
    "flask",
    "flask.cli",
    "flask_caching",
    "redis",
    "cachelib",
    "memcache",
    "pylibmc",
    "flask_restx",
    "flask_smorest",
)


def run_python(
    *args: str, cwd: Path, env: dict[str, str], text: bool = False
) -> subprocess.CompletedProcess:
    """Run a test app's own process, ``python ARGS...`` (``-c CODE ...`` or a script such
    as ``flask``), in ``cwd`` with exactly ``env``, its output captured, forked from a
    fork server that has imported Flask and the like (``APP_PRELOAD``) where
    ``forked_or_started`` can. Never for cachectl's own runs: the tests check what those
    import."""
    return forked_or_started(
        [sys.executable, *args], script=None, preload=APP_PRELOAD, env=env, cwd=cwd, text=text
    )


def oracle_app(config: dict, name: str = "oracle") -> tuple[Flask, Cache]:
    """A real Flask app with a real Flask-Caching Cache: the judge of formats."""
    app = Flask(name)
    app.config.update(config)
    return app, Cache(app)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[ServerProcess]:
    server = start_redis()
    yield server
    server.stop()


@dataclass
class RedisTarget:
    port: int
    db: int
    client: redis.Redis

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/{self.db}"


_databases = itertools.count()


#: Databases a module holds (``module_redis_target``): the per-test rotation passes over
#: them, so a test's flush never empties a database under a module's shared fixture.
_held: set[int] = set()


def empty_database(server: ServerProcess) -> RedisTarget:
    """The private server's next database (of its 16, in turn, past any a module holds),
    emptied."""
    db = next(_databases) % 16
    while db in _held:
        db = next(_databases) % 16
    client = redis.Redis(port=server.port, db=db)
    client.flushdb()
    return RedisTarget(server.port, db, client)


@pytest.fixture
def redis_target(redis_server: ServerProcess) -> RedisTarget:
    """An empty database of the private server, a different one for each test."""
    return empty_database(redis_server)


@pytest.fixture(scope="module")
def module_redis_target(redis_server: ServerProcess) -> Iterator[RedisTarget]:
    """An empty database of the private server for a whole module, whose tests share what
    a module-scoped fixture put in it (and put it back as they need it): emptied once, when
    the module's first test asks for it, and held from the other tests' rotation until the
    module ends."""
    target = empty_database(redis_server)
    _held.add(target.db)
    try:
        yield target
    finally:
        _held.discard(target.db)


@pytest.fixture
def own_redis() -> Iterator[tuple[ServerProcess, redis.Redis]]:
    """A redis-server of this test's own, for tests that count its commands or stop it."""
    server = start_redis()
    yield server, redis.Redis(port=server.port)
    server.stop()


def fill_keys(client: redis.Redis, pattern: str, count: int) -> None:
    """``count`` keys named by ``pattern`` (``{}`` takes the number), each holding ``1``
    with no lifetime: one MSET of 10,000 at a time (a sixth of the CPU a pipeline of
    10,000 SETs costs the test process, and no scripting, which some servers lack)."""
    for start in range(0, count, 10_000):
        mapping = {pattern.format(n): b"1" for n in range(start, min(start + 10_000, count))}
        client.mset(mapping)


@pytest.fixture(scope="session")
def memcached_server() -> Iterator[ServerProcess]:
    server = start_memcached()
    yield server
    server.stop()


@pytest.fixture
def memcached_address(memcached_server: ServerProcess) -> str:
    """The private memcached, emptied for this test."""
    import memcache

    address = f"127.0.0.1:{memcached_server.port}"
    client = memcache.Client([address])
    client.flush_all()
    client.disconnect_all()
    return address


@pytest.fixture(params=["pylibmc", "python-memcached"])
def library(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The memcached client library, each in turn: cachelib (the app) and cachectl pick
    pylibmc first, python-memcached without it."""
    if request.param == "python-memcached":
        monkeypatch.setitem(sys.modules, "pylibmc", None)
    return request.param


SASL_USER, SASL_PASSWORD = "ops", "s3cret-pw"


@pytest.fixture(scope="session")
def sasl_memcached_server() -> Iterator[ServerProcess]:
    server = start_sasl_memcached(SASL_USER, SASL_PASSWORD)
    yield server
    server.stop()


@pytest.fixture
def sasl_memcached_address(sasl_memcached_server: ServerProcess) -> str:
    import pylibmc

    address = f"127.0.0.1:{sasl_memcached_server.port}"
    client = pylibmc.Client([address], binary=True, username=SASL_USER, password=SASL_PASSWORD)
    client.flush_all()
    return address
