"""Network faults in the middle of a command, through a proxy, against real servers.

A cron job or a deploy script decides from the exit code alone, so a cache
server that stalls, resets the connection or answers garbage half-way through
a long clear must end as exit 3 with one ``error:`` line, within the
``--timeout`` it was given, and with a count it can trust: never more keys than
really went, and said to be a lower bound ("at least", ``*_at_least`` in JSON)
since the step whose reply was lost may have run. Nothing outside the app's
prefix may go, and running the command again must finish the job.

Killing the server (``test_scale``) tests only one of these failures, at a
moment chosen by the scheduler. ``tests.tcp_proxy`` puts a real redis-server
or memcached behind a loopback proxy that faults at an exact point of the
traffic (the eleventh sweep step, the middle of a reply), so every case here
hits the same place on every run. Each case runs the installed ``cachectl``
as an operator's shell would (``--json``, so the JSON contract is checked
with the same run as the ``error:`` line), then again without the fault.
Data goes in and is counted through a direct connection, never the proxy.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import pickle
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.conftest import CONSOLE_SCRIPT, run_console
from tests.servers import ServerProcess, start_memcached, start_redis
from tests.tcp_proxy import JUNK, Fault, FaultProxy, MemcachedSplitter, RespSplitter

#: Short, so each stalled case costs about a second; the bound below is generous
#: because the suite runs on busy CI machines.
TIMEOUT = "1"
#: With --timeout 1, no case may take longer than this (start-up included).
WALL_CLOCK_BOUND = 15.0
PREFIX = "flask_cache_"
#: Enough keys for a clear to take several sweep steps (each runs for about a
#: millisecond on the server), so a fault at the second or third lands in the
#: middle with steps done before it and steps left after it.
APP_KEYS = 20_000
#: A memcached delete is two round trips a key through cachelib (delete, then a
#: check); 1,200 keys still span two batches of 1,000.
MEMCACHED_KEYS = 1_200

FAULTS = [Fault.STALL, Fault.RESET, Fault.GARBAGE]

#: The function whose memoized results delete-memoized --purge removes, its version
#: before the command, and a version whose entries the purge must leave alone.
MEMOIZED = "shop.catalog.get_product"
OLD_VERSION, OTHER_VERSION = "OLDver", "NEWver"

#: cachectl's note of a count that may be low: "(at least 9450 keys removed before ...)".
AT_LEAST = re.compile(rb"\(at least ([\d,]+) keys? (\w+) before the failure\)")


# --- running cachectl -----------------------------------------------------------------


@dataclass
class Run:
    """One finished cachectl process."""

    returncode: int
    stdout: bytes
    stderr: bytes
    seconds: float
    #: ``time.monotonic()`` when it had exited.
    finished: float

    def describe(self) -> str:
        return (
            f"exit {self.returncode} after {self.seconds:.1f} s\n"
            f"stderr: {self.stderr.decode(errors='replace')}\n"
            f"stdout: {self.stdout[:2000].decode(errors='replace')}"
        )


def run_cachectl(command: list[str], *args: str) -> Run:
    """Run ``command`` (the console script, or an equivalent) with ``args``; the
    subprocess timeout only stops a hang from stalling the suite, the bound on the
    wall clock is asserted by the caller. The console script runs as ``run_console``
    runs it (a process of its own, forked from the tests' fork server, which has paid
    for Python's start-up and cachectl's imports once); an equivalent is started afresh."""
    started = time.monotonic()
    done: subprocess.CompletedProcess
    if command[0] == str(CONSOLE_SCRIPT):
        done = run_console(*command[1:], *args)
    else:
        done = subprocess.run([*command, *args], capture_output=True, timeout=90)
    finished = time.monotonic()
    return Run(done.returncode, done.stdout, done.stderr, finished - started, finished)


def check_failure_contract(run: Run, address: str) -> dict[str, Any]:
    """What every faulted run must show, whatever the command: exit 3 (a dead or
    lying server is a backend failure, never a success, a miss or a bug), within the
    bound, one ``error:`` line naming the server and no traceback, and with
    ``--json`` one document that says the same. Returns that document."""
    assert run.returncode == 3, run.describe()
    assert run.seconds < WALL_CLOCK_BOUND, run.describe()
    assert b"Traceback" not in run.stderr, run.describe()
    lines = run.stderr.decode(errors="replace").splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, run.describe()
    # Documented warnings (memcached: a clear empties the whole server) may precede it.
    assert all(line.startswith(("error: ", "warning: ")) for line in lines), run.describe()
    assert address in errors[0], run.describe()
    document: dict[str, Any] = json.loads(run.stdout)
    assert document["ok"] is False and document["exit_code"] == 3, run.describe()
    assert document["error"] == errors[0].removeprefix("error: "), run.describe()
    return document


def check_timeout_honoured(run: Run, proxy: FaultProxy) -> None:
    """``--timeout`` is what bounds the wait for a server that went silent (docs/reliability.md:
    "so a dead server fails a cron job quickly"): from the moment the fault hit, the
    run may take a timeout, a retry at most, and its exit; not a client library's
    own default. Timed from the fault, not from the start, so that a slow start-up
    on a busy machine does not count."""
    assert proxy.fired_at is not None
    reaction = run.finished - proxy.fired_at
    assert reaction <= 3 * float(TIMEOUT), (
        f"with --timeout {TIMEOUT}, the run ended {reaction:.1f} s after the fault\n"
        f"{run.describe()}"
    )


def check_lower_bound(run: Run, document: dict[str, Any], counted_as: str, really: int) -> int:
    """The count of a faulted run is a lower bound, said so in both forms, and not
    above what the server really lost (or examined): the step whose reply was lost
    may have run, so an exact-looking count could be low."""
    marks = AT_LEAST.findall(run.stderr)
    assert len(marks) == 1, run.describe()
    said, word = int(marks[0][0].replace(b",", b"")), marks[0][1].decode()
    assert word == counted_as, run.describe()
    assert document.get(f"{counted_as}_at_least") == said, run.describe()
    assert counted_as not in document, run.describe()  # never an exact-looking count
    # Every counted case faults mid-way, after confirmed work: zero would hide it.
    assert 0 < said <= really, f"reported at least {said}, really {really}\n{run.describe()}"
    return said


# --- Redis ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RedisCase:
    """One command and the point of its traffic where the fault hits."""

    name: str
    args: tuple[str, ...]
    #: "views" (plain app keys) or "memoized" (results of MEMOIZED under OLD_VERSION).
    data: str
    #: Keyword arguments of FaultProxy.arm (besides the fault).
    trigger: dict[str, Any] = field(hash=False)
    #: Glob (full key names) of what the command removes; None when it removes nothing.
    removes: str | None = None
    #: The word its failure message counts progress with, when it counts.
    counted_as: str | None = None


OLD_ENTRIES = PREFIX + "?" * 16 + OLD_VERSION

REDIS_CASES = [
    # Each sweep step is one call of the Lua step, about a millisecond of the
    # server's time: the first goes as EVAL (with the script's text), the others as
    # EVALSHA, in two lanes (two connections, one call of each in flight).
    # clear: the second EVALSHA (the third step) runs on the server and the reply
    # that comes next is cut one byte in, exactly what docs/reliability.md's "at least" is
    # for: the server ran the step whose reply was lost.
    RedisCase(
        "clear",
        ("clear", "--yes"),
        "views",
        {"after_commands": 1, "only": [b"EVALSHA"], "reply_bytes": 1},
        removes=PREFIX + "*",
        counted_as="removed",
    ),
    # delete --pattern: the third EVALSHA (the fourth step) never reaches the
    # server (stall, reset), or its whole reply is junk (garbage).
    RedisCase(
        "delete-pattern",
        ("delete", "--pattern", "view//*", "--yes"),
        "views",
        {"after_commands": 2, "only": [b"EVALSHA"]},
        removes=PREFIX + "view//*",
        counted_as="removed",
    ),
    # The eleventh of ~21 SCAN replies is cut two bytes in, inside its header ("*2"):
    # a fixed offset of a reply, so a garbled reply breaks the same field every run.
    RedisCase(
        "keys",
        ("keys",),
        "views",
        {"after_commands": 10, "only": [b"SCAN"], "reply_bytes": 2},
    ),
    # The census script walks about two milliseconds of keys a call: the fault hits
    # the fourth call (the first EVALSHA answers NOSCRIPT and EVAL loads the script).
    RedisCase(
        "stats",
        ("stats",),
        "views",
        {"after_commands": 3, "only": [b"EVALSHA"]},
        counted_as="examined",
    ),
    RedisCase(
        "delete-memoized-purge",
        ("delete-memoized", MEMOIZED, "--purge"),
        "memoized",
        {"after_commands": 10, "only": [b"UNLINK"]},
        removes=OLD_ENTRIES,
        counted_as="removed",
    ),
    # get reads a value's length and first bytes together (EXISTS, STRLEN, GETRANGE):
    # the fault hits the second key's read.
    RedisCase(
        "get",
        ("get", "view//p/1", "view//p/2"),
        "views",
        {"after_commands": 1, "only": [b"GETRANGE"]},
    ),
    RedisCase("set", ("set", "fault-probe", "v"), "views", {"after_commands": 0, "only": [b"SET"]}),
]

#: Keys outside the prefix, some of them close to it; none may ever go.
FOREIGN_REDIS = (
    [f"other_{n}" for n in range(100)]
    + [f"flask_cach_{n}" for n in range(20)]
    + [f"xflask_cache_{n}" for n in range(20)]
    + [f"FLASK_CACHE_{n}" for n in range(20)]
)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[ServerProcess]:
    """A private redis-server for this module: its tests empty it at will."""
    server = start_redis()
    yield server
    server.stop()


def _mset_in_chunks(client: redis.Redis, values: dict[str, bytes]) -> None:
    items = list(values.items())
    pipe = client.pipeline(transaction=False)
    for start in range(0, len(items), 1000):
        pipe.mset(dict(items[start : start + 1000]))
    pipe.execute()


def _stored(value: object) -> bytes:
    """A value as cachelib's RedisCache stores it (a pickle behind a "!")."""
    return b"!" + pickle.dumps(value)


@functools.cache
def redis_data(data: str) -> dict[str, bytes]:
    """The keys of a data set and their values (built once: 20,000 pickles)."""
    values: dict[str, bytes] = {key: b"foreign " + key.encode() for key in FOREIGN_REDIS}
    if data == "views":
        values.update({f"{PREFIX}view//p/{n}": _stored(n) for n in range(APP_KEYS)})
        values.update({f"{PREFIX}other/{n}": _stored(n) for n in range(50)})
    else:
        values[f"{PREFIX}{MEMOIZED}_memver"] = _stored(OLD_VERSION)
        for n in range(APP_KEYS + 50):
            digest = base64.b64encode(hashlib.sha256(b"%d" % n).digest())[:16].decode()
            version = OLD_VERSION if n < APP_KEYS else OTHER_VERSION
            values[f"{PREFIX}{digest}{version}"] = _stored(n)
    return values


def seed_redis(client: redis.Redis, data: str) -> None:
    """The app's keys, keys under the prefix the command must leave, and foreign keys.
    Scripts are flushed too, so every run starts the same way."""
    client.flushall()
    client.script_flush()
    _mset_in_chunks(client, redis_data(data))


#: SCAN's whole walk with MATCH, run inside the server: the count, without the names.
_COUNT_MATCHES = """
local cursor, found = "0", 0
repeat
    local reply = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 1000)
    cursor, found = reply[1], found + #reply[2]
until cursor == "0"
return found
"""


def count_redis(client: redis.Redis, match: str) -> int:
    """How many keys match the glob ``match``, by a SCAN walk on the server."""
    return int(client.eval(_COUNT_MATCHES, 0, match))


def cached_value(client: redis.Redis, key: str) -> object:
    """What the app's cache.get(key) returns (None when absent), read directly."""
    raw = client.get(PREFIX + key)
    if raw is None:
        return None
    assert isinstance(raw, bytes) and raw.startswith(b"!"), raw
    return pickle.loads(raw[1:])


def memoized_version(client: redis.Redis) -> object:
    return cached_value(client, f"{MEMOIZED}_memver")


@pytest.mark.parametrize("fault", FAULTS, ids=lambda fault: fault.value)
@pytest.mark.parametrize("case", REDIS_CASES, ids=lambda case: case.name)
def test_redis_fault_mid_command(
    redis_server: ServerProcess, case: RedisCase, fault: Fault
) -> None:
    client = redis.Redis(port=redis_server.port)
    seed_redis(client, case.data)
    foreign = dict(zip(FOREIGN_REDIS, client.mget(FOREIGN_REDIS), strict=True))
    app_keys_before = count_redis(client, PREFIX + "*")
    in_scope_before = count_redis(client, case.removes) if case.removes else 0

    with FaultProxy(redis_server.port, protocol="resp") as proxy:
        command = [str(CONSOLE_SCRIPT), "--url", f"redis://127.0.0.1:{proxy.port}/0"]
        command += ["--timeout", TIMEOUT]
        proxy.arm(fault, **case.trigger)
        faulted = run_cachectl(command, "--json", *case.args)

        assert proxy.fired.wait(5), f"the fault never hit\n{faulted.describe()}"
        assert proxy.errors == [] and proxy.faults_injected == 1
        document = check_failure_contract(faulted, proxy.address)
        assert dict(zip(FOREIGN_REDIS, client.mget(FOREIGN_REDIS), strict=True)) == foreign
        left = count_redis(client, case.removes) if case.removes else 0
        if case.counted_as == "removed":
            check_lower_bound(faulted, document, "removed", in_scope_before - left)
        elif case.counted_as == "examined":
            check_lower_bound(faulted, document, "examined", app_keys_before)
        else:  # nothing was to go: nothing went
            assert count_redis(client, PREFIX + "view//*") == APP_KEYS
        if case.data == "memoized":
            # The purge runs before the new version is written: the version stays.
            assert memoized_version(client) == OLD_VERSION

        proxy.heal()
        again = run_cachectl(command, *case.args)

    assert again.returncode == 0, again.describe()
    assert b"Traceback" not in again.stderr
    assert dict(zip(FOREIGN_REDIS, client.mget(FOREIGN_REDIS), strict=True)) == foreign
    if case.removes:
        assert count_redis(client, case.removes) == 0
        if case.counted_as == "removed" and case.data == "views":
            # Without a fault the count is exact: what the faulted run left.
            assert re.search(rb"\bremoved %s\b" % f"{left:,}".encode(), again.stdout), (
                again.describe()
            )
    if case.name == "delete-pattern":
        assert count_redis(client, PREFIX + "other/*") == 50
    if case.data == "memoized":
        assert memoized_version(client) not in (None, OLD_VERSION)
        assert count_redis(client, PREFIX + "?" * 16 + OTHER_VERSION) == 50
    if case.name == "keys":
        assert len(again.stdout.splitlines()) == app_keys_before
    if case.name == "set":
        assert cached_value(client, "fault-probe") == "v"
    check_timeout_honoured(faulted, proxy)


# --- memcached ------------------------------------------------------------------------


@dataclass(frozen=True)
class MemcachedCase:
    name: str
    args: tuple[str, ...]
    trigger: dict[str, Any] = field(hash=False)


MEMCACHED_CASES = [
    MemcachedCase("set", ("set", "fault-probe", "v"), {"after_commands": 0, "only": [b"SET"]}),
    # The fault hits the last key read: nothing after it can reveal the loss.
    MemcachedCase("get", ("get", "k1", "k2"), {"after_commands": 1, "only": [b"GET"]}),
    # Batches of 1,000 deletes: the fault hits the 101st delete of the second batch.
    MemcachedCase(
        "delete", ("delete", "--from-file", "KEYS"), {"after_commands": 1100, "only": [b"DELETE"]}
    ),
    MemcachedCase(
        "clear", ("clear", "--flush-all", "--yes"), {"after_commands": 0, "only": [b"FLUSH_ALL"]}
    ),
]

#: cachelib picks pylibmc when it is installed, python-memcached otherwise; cachectl
#: follows. The python-memcached runs are the real CLI with pylibmc hidden, as on a
#: host where it is not installed (the same way tests/test_memcached.py does it).
WITHOUT_PYLIBMC = (
    "import sys; sys.modules['pylibmc'] = None; sys.argv[0] = 'cachectl'; "
    "from cachectl.cli import main; main()"
)
CLIENT_LIBRARIES = {
    "pylibmc": [str(CONSOLE_SCRIPT)],
    "python-memcached": [sys.executable, "-c", WITHOUT_PYLIBMC],
}
APP_MEMCACHED = [f"k{n}" for n in range(MEMCACHED_KEYS)]
FOREIGN_MEMCACHED = [f"other_{n}" for n in range(50)]


@pytest.fixture(scope="module")
def memcached_server() -> Iterator[ServerProcess]:
    """A private memcached for this module: its tests flush it at will."""
    server = start_memcached()
    yield server
    server.stop()


@pytest.fixture
def direct_memcached(memcached_server: ServerProcess) -> Iterator[Any]:
    """A client straight to the server (not through the proxy), for seeding and counting."""
    import memcache

    client = memcache.Client([f"127.0.0.1:{memcached_server.port}"])
    yield client
    client.disconnect_all()


def seed_memcached(client: Any) -> None:
    client.flush_all()
    values: dict[str, object] = {PREFIX + key: n for n, key in enumerate(APP_MEMCACHED)}
    values.update({key: "foreign" for key in FOREIGN_MEMCACHED})
    assert client.set_multi(values) == []


def present(client: Any, keys: list[str]) -> int:
    """How many of ``keys`` the server still holds."""
    found = 0
    for start in range(0, len(keys), 500):
        found += len(client.get_multi(keys[start : start + 500]))
    return found


@pytest.mark.parametrize("fault", FAULTS, ids=lambda fault: fault.value)
@pytest.mark.parametrize("library", sorted(CLIENT_LIBRARIES))
@pytest.mark.parametrize("case", MEMCACHED_CASES, ids=lambda case: case.name)
def test_memcached_fault_mid_command(
    memcached_server: ServerProcess,
    direct_memcached: Any,
    tmp_path: Path,
    case: MemcachedCase,
    library: str,
    fault: Fault,
) -> None:
    seed_memcached(direct_memcached)
    key_file = tmp_path / "keys.txt"
    key_file.write_text("".join(f"{key}\n" for key in APP_MEMCACHED))
    args = [str(key_file) if arg == "KEYS" else arg for arg in case.args]
    app_keys = [PREFIX + key for key in APP_MEMCACHED]

    with FaultProxy(memcached_server.port, protocol="memcached") as proxy:
        command = [*CLIENT_LIBRARIES[library], "--type", "MemcachedCache"]
        command += ["-o", f'CACHE_MEMCACHED_SERVERS=["{proxy.address}"]', "--timeout", TIMEOUT]
        proxy.arm(fault, **case.trigger)
        faulted = run_cachectl(command, "--json", *args)

        assert proxy.fired.wait(5), f"the fault never hit\n{faulted.describe()}"
        assert proxy.errors == [] and proxy.faults_injected == 1
        document = check_failure_contract(faulted, proxy.address)
        if case.name != "clear":  # clear --flush-all empties the whole server, by design
            assert present(direct_memcached, FOREIGN_MEMCACHED) == len(FOREIGN_MEMCACHED)
        if case.name == "delete":
            gone = len(app_keys) - present(direct_memcached, app_keys)
            check_lower_bound(faulted, document, "sent", gone)
        elif case.name in ("get", "set"):
            assert present(direct_memcached, app_keys) == len(app_keys)

        proxy.heal()
        again = run_cachectl(command, *args)

    assert again.returncode == 0, again.describe()
    assert b"Traceback" not in again.stderr
    if case.name in ("delete", "clear"):
        assert present(direct_memcached, app_keys) == 0
    if case.name == "clear":
        assert present(direct_memcached, FOREIGN_MEMCACHED) == 0
    else:
        assert present(direct_memcached, FOREIGN_MEMCACHED) == len(FOREIGN_MEMCACHED)
    if case.name == "set":
        assert direct_memcached.get(PREFIX + "fault-probe") in ("v", b"v")
    check_timeout_honoured(faulted, proxy)


# --- the proxy itself -----------------------------------------------------------------
# A cachectl failure above must be cachectl's, not the proxy's: these check that the
# proxy cuts, counts and resets exactly where it says, without any cachectl.


@contextmanager
def talking_server(payload: bytes) -> Iterator[int]:
    """A TCP server on a free port that sends ``payload`` to each client, then waits
    for the client to hang up (so only the proxy can end the connection early)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)  # closing it would not wake a blocked accept()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            connection.settimeout(None)
            with connection:
                connection.sendall(payload)
                with suppress(OSError):
                    while connection.recv(65536):
                        pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def read_until_quiet(sock: socket.socket, fired: threading.Event) -> tuple[bytes, str | None]:
    """Everything the socket gives until, once the fault has fired, it goes quiet for
    0.3 s, closes or fails; and how it ended: None (quiet), "closed" or the error's
    name. (Before the fault a busy machine may pause longer than that.)"""
    sock.settimeout(0.3)
    received = bytearray()
    deadline = time.monotonic() + 20
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            if fired.is_set() or time.monotonic() > deadline:
                return bytes(received), None
            continue
        except OSError as exc:
            return bytes(received), type(exc).__name__
        if not chunk:
            return bytes(received), "closed"
        received += chunk


@pytest.mark.parametrize("fault", FAULTS, ids=lambda fault: fault.value)
def test_the_proxy_faults_after_exactly_n_reply_bytes(fault: Fault) -> None:
    payload = bytes(range(256)) * 1024  # 256 kB, several segments
    cut = 100_003
    with talking_server(payload) as port, FaultProxy(port) as proxy:
        proxy.arm(fault, after_server_bytes=cut)
        with socket.create_connection(("127.0.0.1", proxy.port)) as client:
            received, ending = read_until_quiet(client, proxy.fired)
        assert proxy.fired.wait(5) and proxy.errors == []
    if fault is Fault.STALL:
        assert (received, ending) == (payload[:cut], None)  # silence, socket open
    elif fault is Fault.GARBAGE:
        assert (received, ending) == (payload[:cut] + JUNK, None)  # junk, then silence
    else:
        assert received == payload[:cut] and ending == "ConnectionResetError"


def test_the_proxy_counts_pipelined_commands_and_holds_the_rest(
    redis_server: ServerProcess,
) -> None:
    direct = redis.Redis(port=redis_server.port)
    direct.flushall()
    with FaultProxy(redis_server.port, protocol="resp") as proxy:
        client = redis.Redis(port=proxy.port, socket_timeout=0.5, retry=Retry(NoBackoff(), 0))
        client.ping()
        proxy.arm(Fault.STALL, after_commands=4, only=[b"SET"])
        pipe = client.pipeline(transaction=False)
        for n in range(10):
            pipe.set(f"p{n}", n)
        with pytest.raises(redis.exceptions.TimeoutError):
            pipe.execute()
        assert proxy.fired.wait(5)
        # Exactly the four SETs let through ran; the rest never reached the server.
        assert sorted(direct.keys("p*")) == [b"p0", b"p1", b"p2", b"p3"]
        proxy.heal()
        assert client.ping() is True
    # Stopped, the proxy leaves no connection open on the server: only ours is left.
    deadline = time.monotonic() + 5
    while len(direct.client_list()) > 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(direct.client_list()) == 1


def test_the_splitters_cut_commands_whatever_the_segments() -> None:
    resp = (
        b"*1\r\n$4\r\nPING\r\n"
        + b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$7\r\na\r\n*2\r\n\r\n"  # a value that looks like RESP
        + b"PING\r\n"  # an inline command
    )
    memcached = (
        b"stats\r\nset k 0 0 12\r\nget x\r\nabc\r\n\r\ndelete k\r\n"
        b"append k 0 0 0\r\n\r\nget a b\r\n"
    )
    for splitter_class, stream, names in (
        (RespSplitter, resp, [b"PING", b"SET", b"PING"]),
        (MemcachedSplitter, memcached, [b"STATS", b"SET", b"DELETE", b"APPEND", b"GET"]),
    ):
        whole = splitter_class().feed(stream)
        assert [name for name, _ in whole] == names
        assert b"".join(raw for _, raw in whole) == stream
        one_by_one = splitter_class()
        fed = [
            command for n in range(len(stream)) for command in one_by_one.feed(stream[n : n + 1])
        ]
        assert fed == whole
