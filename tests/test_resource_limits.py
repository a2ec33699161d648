"""Bounded memory and time against hostile values and servers, through the installed command.

A value planted to exhaust the reader must not: a 0.9 MB memcached item compressed
from 900 MB (both client libraries, which inflate whole) under an address-space limit
of 1 GB, a Redis value of 100 MB that ``get`` only shows in part; a server that sends
its answer a byte at a time must not hold ``get --timeout 1`` for minutes, while a clear
of many quick replies, longer than the timeout as a whole, finishes; and a server that
renamed EVALSHA (or EVAL too) away must not stop a clear, a clear with ``--exclude`` or
the census of ``stats`` midway. Real servers, the console script, its peak memory read
from the kernel (``wait4``).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import resource
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import CONSOLE_SCRIPT, fill_keys
from tests.servers import ServerProcess, start_memcached, start_redis, start_redis_cluster
from tests.tcp_proxy import FaultProxy

#: The limit a run gets on its address space: what a small container leaves a tool.
ADDRESS_SPACE = 1_000_000_000
#: ``max_bytes``, the codec's promise (``DecodeLimits``).
MAX_BYTES = 16 * 1024 * 1024
#: A 1 MiB pattern whose repetitions make a large value that is not all zeros.
PATTERN = bytes(range(256)) * 4096
#: Repetitions of PATTERN in the large Redis value (100 MiB: 320 MB of peak memory for a
#: plain GET through redis-py).
LARGE_MIB = 100


#: Starts the console script from a small process of its own and reports the script's peak
#: memory. Measured from pytest directly, a forked child counts the RSS it shared with
#: pytest until it ran exec (Linux keeps that high-water mark across exec): after a few
#: hundred tests, pytest's own 300 MB would be the figure.
MEASURE = """\
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as report:
    report.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


@dataclass
class Finished:
    returncode: int
    stdout: bytes
    stderr: str
    seconds: float
    #: Peak resident memory of the process, in MB.
    peak_mb: float


def run_measured(
    *args: str,
    env: dict[str, str] | None = None,
    address_space: int | None = None,
    stdout_file: Path | None = None,
    read_stdout: bool = True,
) -> Finished:
    """The console script run with ``args``, its peak memory from ``wait4``; standard
    output goes to a file (``stdout_file``, else a temporary one), never a pipe a big
    value could fill."""
    import tempfile

    def limit() -> None:
        if address_space is not None:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    with tempfile.TemporaryDirectory() as scratch:
        out_path = stdout_file or Path(scratch) / "stdout"
        err_path = Path(scratch) / "stderr"
        peak_path = Path(scratch) / "peak"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            started = time.monotonic()
            process = subprocess.Popen(
                [sys.executable, "-c", MEASURE, str(peak_path), str(CONSOLE_SCRIPT), *args],
                stdout=out,
                stderr=err,
                env=env,
                preexec_fn=limit,
                start_new_session=True,
            )
            watchdog = threading.Timer(120, lambda: os.killpg(process.pid, 9))
            watchdog.start()
            try:
                process.wait()
            finally:
                watchdog.cancel()
            seconds = time.monotonic() - started
        stdout = out_path.read_bytes() if read_stdout else b""
        peak_kb = int(peak_path.read_text()) if peak_path.exists() else 0
        return Finished(
            process.returncode,
            stdout,
            err_path.read_text(errors="replace"),
            seconds,
            peak_kb / 1024,
        )


def describe(done: Finished) -> str:
    return (
        f"exit {done.returncode} after {done.seconds:.1f} s, peak {done.peak_mb:.0f} MB\n"
        f"stderr: {done.stderr[-2000:]}\nstdout: {done.stdout[:300]!r}"
    )


# --- memcached: compressed values -----------------------------------------------------


@pytest.fixture(scope="module")
def memcached() -> Iterator[ServerProcess]:
    server = start_memcached()
    yield server
    server.stop()


@pytest.fixture(params=["pylibmc", "python-memcached"])
def library_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The environment of a run using this client library: cachectl picks pylibmc when
    it imports, so for python-memcached a module of that name that refuses to is first
    on the path."""
    env = dict(os.environ)
    if request.param == "python-memcached":
        (tmp_path / "pylibmc.py").write_text("raise ImportError('hidden by the test')\n")
        env["PYTHONPATH"] = str(tmp_path)
    return env


def store_raw(port: int, key: str, flags: int, data: bytes) -> None:
    """An item as the server will hand it out, flags and bytes as given."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"set %s %d 0 %d\r\n%s\r\n" % (key.encode(), flags, len(data), data))
        assert sock.recv(100) == b"STORED\r\n"


def memcached_args(server: ServerProcess) -> list[str]:
    servers = f'CACHE_MEMCACHED_SERVERS=["127.0.0.1:{server.port}"]'
    return ["--type", "MemcachedCache", "-o", servers, "--key-prefix", "app_"]


#: 900 MB of zeros, compressed: 0.87 MB, under memcached's 1 MB item limit.
BOMB = zlib.compress(bytes(900_000_000), 9)


@pytest.mark.parametrize("flags", [8, 9], ids=["bytes", "pickle"])
def test_a_compressed_memcached_bomb_is_inflated_no_further_than_the_limit(
    memcached: ServerProcess, library_env: dict[str, str], flags: int
) -> None:
    """Flag 8 (zlib) is the same in both libraries; 9 is a compressed pickle."""
    store_raw(memcached.port, "app_bomb", flags, BOMB)
    done = run_measured(
        *memcached_args(memcached), "get", "bomb", env=library_env, address_space=ADDRESS_SPACE
    )
    assert done.returncode == 0, describe(done)
    assert "Traceback" not in done.stderr and "MemoryError" not in done.stderr, describe(done)
    assert done.peak_mb < 250, describe(done)
    if flags == 8:  # bytes: shown in part, marked
        assert f"the first {MAX_BYTES:,} bytes decompressed" in done.stderr, describe(done)
        assert "shown in part" in done.stderr, describe(done)
        assert b"truncated" in done.stdout, describe(done)
    else:  # a pickle cut short means nothing: not decoded, said why
        assert f"not decoded: over {MAX_BYTES:,} bytes once decompressed" in done.stderr
        assert done.stdout == b"", describe(done)


def test_the_json_document_marks_a_cut_value_truncated(
    memcached: ServerProcess, library_env: dict[str, str]
) -> None:
    text = zlib.compress(("é" * 10_000).encode(), 9)
    store_raw(memcached.port, "app_text", 8 | 16, text)
    store_raw(memcached.port, "app_junk", 8, b"not zlib at all")
    done = run_measured(
        *memcached_args(memcached), "--json", "get", "text", "junk", "--max-bytes", "1001",
        env=library_env,
    )  # fmt: skip
    assert done.returncode == 0, describe(done)
    cut, junk = json.loads(done.stdout)["results"]
    # 1001 bytes hold 500 whole "é" and half of one, which is shown as a replacement.
    assert cut["value"] == "é" * 500 + "\ufffd", cut
    assert cut["truncated"] == "the first 1,001 bytes decompressed", cut
    assert junk["value"] is None and junk["error"].startswith("cannot decompress"), junk


# --- Redis: huge values ---------------------------------------------------------------


@pytest.fixture(scope="module")
def large_redis() -> Iterator[ServerProcess]:
    """A server holding ``big`` (PATTERN repeated, plain bytes) and ``pickled`` (the
    same behind cachelib's ``!``), each LARGE_MIB MiB, built on the server."""
    server = start_redis()
    client = redis.Redis(port=server.port)
    client.set("app_big", b"")
    client.set("app_pickled", b"!")
    for _ in range(LARGE_MIB):
        client.append("app_big", PATTERN)
        client.append("app_pickled", PATTERN)
    client.set("app_small", b"!" + pickle.dumps({"a": [1, 2]}))
    yield server
    server.stop()


def redis_args(server: ServerProcess) -> list[str]:
    return ["--url", f"redis://127.0.0.1:{server.port}/0", "--key-prefix", "app_"]


def test_get_of_a_huge_redis_value_reads_no_more_than_it_shows(
    large_redis: ServerProcess,
) -> None:
    size = LARGE_MIB * len(PATTERN)
    pickled = run_measured(*redis_args(large_redis), "get", "pickled")
    assert pickled.returncode == 0, describe(pickled)
    assert f"not decoded: {size + 1:,} bytes, over {MAX_BYTES:,}" in pickled.stderr
    assert pickled.peak_mb < 100, describe(pickled)  # a plain GET: over 300 MB
    plain = run_measured(*redis_args(large_redis), "--json", "get", "big")
    assert plain.returncode == 0, describe(plain)
    assert plain.peak_mb < 200, describe(plain)  # the 16 MiB shown, in base64 too
    (found,) = json.loads(plain.stdout)["results"]
    assert found["truncated"] == f"the first {MAX_BYTES:,} of {size:,} bytes", found
    small = run_measured(*redis_args(large_redis), "get", "small")
    assert (small.returncode, small.stdout) == (0, b"{'a': [1, 2]}\n"), describe(small)


def test_get_raw_streams_a_huge_redis_value_whole(
    large_redis: ServerProcess, tmp_path: Path
) -> None:
    target = tmp_path / "big.bin"
    done = run_measured(
        *redis_args(large_redis), "get", "--raw", "big", stdout_file=target, read_stdout=False
    )
    assert done.returncode == 0, describe(done)
    assert done.peak_mb < 100, describe(done)
    assert target.stat().st_size == LARGE_MIB * len(PATTERN)
    expected = hashlib.sha256()
    for _ in range(LARGE_MIB):
        expected.update(PATTERN)
    digest = hashlib.sha256()
    with open(target, "rb") as written:
        for block in iter(lambda: written.read(1 << 20), b""):
            digest.update(block)
    assert digest.hexdigest() == expected.hexdigest()


def test_a_redis_cluster_reads_a_long_value_from_its_node() -> None:
    nodes = start_redis_cluster(3)
    try:
        client = redis.RedisCluster(host="127.0.0.1", port=nodes[0].port)
        value = os.urandom(MAX_BYTES + 3 * 1024 * 1024)
        client.set("app_long", value)
        client.set("app_short", b"!" + pickle.dumps("short"))
        nodes_option = f"CACHE_REDIS_CLUSTER=127.0.0.1:{nodes[0].port}"
        cluster = ["-o", "CACHE_TYPE=RedisClusterCache", "-o", nodes_option, "--key-prefix", "app_"]
        short = run_measured(*cluster, "--timeout", "2", "get", "short")
        assert (short.returncode, short.stdout) == (0, b"short\n"), describe(short)
        cut = run_measured(*cluster, "--json", "get", "long")
        assert cut.returncode == 0, describe(cut)
        assert json.loads(cut.stdout)["results"][0]["truncated"].startswith("the first")
        whole = run_measured(*cluster, "get", "--raw", "long")
        assert whole.returncode == 0 and whole.stdout == value, describe(whole)
    finally:
        for node in nodes:
            node.stop()


# --- a deadline for each whole reply --------------------------------------------------


def test_a_redis_server_answering_a_byte_at_a_time_fails_within_the_timeout(
    large_redis: ServerProcess,
) -> None:
    """0.4 s a byte keeps every read of the socket well inside a 1 s socket timeout;
    the reply to get (about 60 bytes here) would take half a minute."""
    with FaultProxy(large_redis.port, protocol="resp") as proxy:
        proxy.dribble()
        url = f"redis://127.0.0.1:{proxy.port}/0"
        done = run_measured("--url", url, "--key-prefix", "app_", "--timeout", "1", "get", "small")
    assert done.returncode == 3, describe(done)
    assert done.seconds < 5, describe(done)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "no whole reply within --timeout" in errors[0], describe(done)


def test_a_memcached_server_answering_a_byte_at_a_time_fails_within_the_timeout(
    memcached: ServerProcess, library_env: dict[str, str]
) -> None:
    store_raw(memcached.port, "app_slow", 0, b"x" * 100)
    with FaultProxy(memcached.port, protocol="memcached") as proxy:
        proxy.dribble()
        servers = f'CACHE_MEMCACHED_SERVERS=["127.0.0.1:{proxy.port}"]'
        done = run_measured(
            "--type", "MemcachedCache", "-o", servers, "--key-prefix", "app_",
            "--timeout", "1", "get", "slow", env=library_env,
        )  # fmt: skip
    assert done.returncode == 3, describe(done)
    assert done.seconds < 5, describe(done)
    assert "Traceback" not in done.stderr, describe(done)


def test_a_clear_of_many_quick_replies_outlasts_the_timeout(own_redis: tuple) -> None:
    """Each reply of the clear arrives within the timeout (a few ms a byte), the clear as
    a whole takes longer than it: not bounded as a whole."""
    server, client = own_redis
    fill_keys(client, "app_{}", 20_000)
    with FaultProxy(server.port, protocol="resp", dribble_interval=0.002) as proxy:
        proxy.dribble()
        url = f"redis://127.0.0.1:{proxy.port}/0"
        done = run_measured("--url", url, "--key-prefix", "app_", "--timeout", "1", "--json",
                            "clear", "--yes")  # fmt: skip
    assert done.returncode == 0, describe(done)
    assert done.seconds > 1.5, describe(done)  # else the case shows nothing
    assert json.loads(done.stdout)["removed"] == 20_000
    assert client.dbsize() == 0


# --- scripts renamed away -------------------------------------------------------------


@pytest.fixture(params=[("EVALSHA",), ("EVALSHA", "EVAL")], ids=["evalsha", "eval-and-evalsha"])
def renamed(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    args: list[str] = []
    for command in request.param:
        args += ["--rename-command", command, ""]
    server = start_redis(*args)
    yield redis.Redis(port=server.port)
    server.stop()


def _seed(client: redis.Redis) -> None:
    client.flushall()
    fill_keys(client, "app_{}", 20_000)
    fill_keys(client, "app_keep:{}", 300)
    fill_keys(client, "other_{}", 50)


def _cachectl(client: redis.Redis, *args: str) -> Finished:
    url = f"redis://127.0.0.1:{client.connection_pool.connection_kwargs['port']}/0"
    return run_measured("--url", url, "--key-prefix", "app_", "--json", *args)


def test_scripts_renamed_away_leave_every_scripted_path_to_the_client(
    renamed: redis.Redis,
) -> None:
    _seed(renamed)
    stats = _cachectl(renamed, "stats")
    assert stats.returncode == 0, describe(stats)
    assert json.loads(stats.stdout)["total"] == 20_300
    by_function = _cachectl(renamed, "stats", "--by-function")
    assert by_function.returncode == 0, describe(by_function)
    kept = _cachectl(renamed, "clear", "--exclude", "keep:*", "--yes")
    assert kept.returncode == 0, describe(kept)
    document = json.loads(kept.stdout)
    assert (document["removed"], document["excluded"]) == (20_000, 300), document
    assert renamed.dbsize() == 350
    fill_keys(renamed, "app_{}", 20_000)
    cleared = _cachectl(renamed, "clear", "--yes")
    assert cleared.returncode == 0, describe(cleared)
    assert json.loads(cleared.stdout)["removed"] == 20_300
    assert sorted(renamed.keys()) == sorted(f"other_{n}".encode() for n in range(50))


def test_stats_by_function_counts_alike_with_and_without_scripts(renamed: redis.Redis) -> None:
    """The census inside the server and the one on the client label keys alike."""
    normal = start_redis()
    try:
        scripted = redis.Redis(port=normal.port)
        for client in (renamed, scripted):
            client.flushall()
            fill_keys(client, "app_view//page/{}", 3000)
            fill_keys(client, "app_" + "a" * 16 + "ver{}", 50)
        documents = [json.loads(_cachectl(c, "stats", "--by-function").stdout) for c in
                     (renamed, scripted)]  # fmt: skip
        for document in documents:
            document.pop("target", None)
        assert _counted(documents[0]) == _counted(documents[1])
    finally:
        normal.stop()


def _counted(value: Any) -> Any:
    """``value`` without the bytes of memory: ``MEMORY USAGE`` of the same key differs by
    a few bytes from one server process to another (Valkey 9.1's), which is no part of
    how keys are labelled and counted."""
    if isinstance(value, dict):
        return {key: _counted(item) for key, item in value.items() if "bytes" not in key}
    if isinstance(value, list):
        return [_counted(item) for item in value]
    return value


if sys.platform != "linux":  # RLIMIT_AS and ru_maxrss in KB are Linux's
    pytestmark = pytest.mark.skip(reason="Linux only")
