"""memcached: a clear of the app's prefix, cachectl against a raw floor on the same data.

Starts a private memcached (``-m 512``: the items must all stay), loads N keys under the
app's prefix and N other keys (pipelined ``set ... noreply``, values of a few bytes), and
for each contender, on a freshly loaded data set, times the whole process, then checks
that the prefix is empty and every other key is still there (``lru_crawler metadump``).
The contenders:

- floor: this script in ``--floor`` mode, a fresh Python process (interpreter start-up
  counted, as for cachectl) that takes one ``lru_crawler metadump hash`` (``all``, the LRU
  queues, left keys behind right after a load: items still moving between queues), keeps the lines
  whose key starts with the prefix (compared URL-encoded, as the server prints it), and
  sends a quiet meta delete ``md KEY q`` for each, pipelined on one connection, then
  ``mn`` and waits for its ``MN``: the least a client can do for this job;
- ``cachectl clear --yes`` (from bytecode, after a warm-up run).

Each round runs every contender once, the order alternating from round to round
(``--rounds``, at least three for medians); the summary quotes the median wall time of
each, its spread, and the ratio of the medians against the floor (with the same ratio
round by round).

    python bench/memcached_clear_bench.py                 # 200,000 keys among 400,000
    python bench/memcached_clear_bench.py --keys 1000000  # 1,000,000 among 2,000,000
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote_from_bytes

PREFIX = "flask_cache_"
CACHECTL = [sys.executable, "-m", "cachectl"]
#: As installed: modules load from bytecode, which the warm-up run writes.
ENV = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}

FLOOR = "floor: metadump hash + md q pipelined"
CACHECTL_CLEAR = "cachectl clear --yes"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_memcached(workdir: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    args = ["memcached", "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "512"]
    if os.geteuid() == 0:
        args += ["-u", "root"]
    log = open(workdir / "memcached.log", "wb")  # noqa: SIM115  # kept by the server
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit("memcached did not start")


def command(port: int, text: bytes) -> bytes:
    """One command's whole reply, up to its END/OK line."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(text)
        reply = b""
        while not reply.endswith((b"END\r\n", b"OK\r\n")) and not reply.startswith(b"VERSION"):
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            reply += chunk
        return reply


def load(port: int, count: int) -> None:
    """flush_all, then N keys under the prefix and N others, pipelined without replies."""
    command(port, b"flush_all\r\n")
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for name in (PREFIX.encode() + b"k", b"other:k"):
            for start in range(0, count, 10_000):
                sock.sendall(
                    b"".join(
                        b"set %s%d 0 0 8 noreply\r\nvalue:%02d\r\n" % (name, n, n % 100)
                        for n in range(start, min(start + 10_000, count))
                    )
                )
        sock.sendall(b"mn\r\n")
        reply = b""
        while not reply.endswith(b"MN\r\n"):
            reply += sock.recv(4096)


def census(port: int) -> tuple[int, int]:
    """(keys under the prefix, other keys) on the server, by its own dump."""
    dump = command(port, b"lru_crawler metadump hash\r\n")
    mine = others = 0
    encoded = b"key=" + quote_from_bytes(PREFIX.encode(), safe="").encode()
    for line in dump.splitlines():
        if line.startswith(encoded):
            mine += 1
        elif line.startswith(b"key="):
            others += 1
    return mine, others


def floor(port: int, prefix: str) -> None:
    """The floor itself (``--floor``): one dump, then ``md KEY q`` for each match, on one
    connection, then ``mn``. Keys under a plain prefix need no decoding: the server's
    URL encoding of the prefix is compared as it is."""
    encoded = b"key=" + quote_from_bytes(prefix.encode(), safe="-._~").encode()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"lru_crawler metadump hash\r\n")
        chunks = []
        tail = b""
        while not tail.endswith(b"END\r\n"):
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise SystemExit("the server closed the connection mid-dump")
            chunks.append(chunk)
            tail = (tail + chunk)[-5:]
        lines = b"".join(chunks).split(b"\n")
        keys = [line[4 : line.index(b" ")] for line in lines if line.startswith(encoded)]
        for start in range(0, len(keys), 10_000):
            sock.sendall(b"".join(b"md %s q\r\n" % key for key in keys[start : start + 10_000]))
        sock.sendall(b"mn\r\n")
        reply = b""
        while not reply.endswith(b"MN\r\n"):
            reply += sock.recv(4096)
        if reply != b"MN\r\n":
            raise SystemExit(f"errors from the server: {reply[:200]!r}")


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=ENV, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=200_000, help="keys under the prefix")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    parser.add_argument("--floor", type=int, metavar="PORT", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.floor is not None:
        floor(options.floor, PREFIX)
        return
    if shutil.which("memcached") is None:
        raise SystemExit("needs memcached (Debian: memcached)")
    workdir = Path(tempfile.mkdtemp(prefix="cachectl-mc-bench-"))
    server, port = start_memcached(workdir)
    address = f"127.0.0.1:{port}"
    contenders = {
        FLOOR: [sys.executable, __file__, "--floor", str(port)],
        CACHECTL_CLEAR: [
            *CACHECTL, "--type", "MemcachedCache", "-o", f'CACHE_MEMCACHED_SERVERS=["{address}"]',
            "--key-prefix", PREFIX, "-q", "clear", "--yes",
        ],
    }  # fmt: skip
    try:
        load(port, 10)
        for argv in contenders.values():  # warm-up: bytecode written, files cached
            timed(argv)
        version = command(port, b"version\r\n").split()[-1].decode()
        print(
            f"memcached {version}, {os.cpu_count()} cores, {options.keys:,} keys under "
            f"{PREFIX!r} + {options.keys:,} others, {options.rounds} alternating rounds"
        )
        runs: dict[str, list[float]] = {name: [] for name in contenders}
        names = list(contenders)
        for number in range(options.rounds):
            for name in names if number % 2 == 0 else names[::-1]:
                load(port, options.keys)
                wall = timed(contenders[name])
                left, others = census(port)
                check = "ok" if (left, others) == (0, options.keys) else f"FAILED {left}/{others}"
                runs[name].append(wall)
                print(f"round {number + 1}  {name:<40}{wall:>7.2f} s  {check}", flush=True)
        base = statistics.median(runs[FLOOR])
        print(f"\n{'contender':<40}{'median wall (spread)':>24}{'ratio':>8}")
        for name in names:
            walls = runs[name]
            median = statistics.median(walls)
            spread = f"{median:.2f} s ({min(walls):.2f}-{max(walls):.2f})"
            print(f"{name:<40}{spread:>24}{median / base:>8.2f}")
        each = ", ".join(f"{a / b:.2f}" for a, b in zip(runs[CACHECTL_CLEAR], runs[FLOOR]))
        print(f"cachectl / floor round by round: {each}  (target <= 1.3)")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
