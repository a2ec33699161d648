"""The floor under ``clear --backup``'s ratio: what reading each value costs the server.

``bench/backup_bench.py`` compares ``cachectl --backup F clear --yes`` with ``cachectl clear
--yes``. A keeping clear cannot take less time than the server needs to read every value it
keeps, whatever the client does, so this bench measures that need apart, in the same run as
the plain clear it is compared with. On the same data as backup_bench.py (N keys under the
app's prefix and N others, values of 200 bytes of hex digests), each round:

- ``cachectl clear --yes`` on a fresh load: its wall time, and the server's CPU meanwhile
  (``INFO cpu``, user + system);
- on another fresh load, three walks of the prefix by one script call per ``SCAN`` step of
  500 keys, none removing anything, each the server's CPU: ``SCAN`` alone; ``SCAN`` then
  ``DUMP`` and ``PTTL`` of each match (what ``--backup`` reads, the issue's way of keeping
  any type as it was); ``SCAN`` then ``GET`` and ``PTTL`` (the cheapest read of a string).

Printed: the medians, and each walk's server CPU over the plain clear's median wall. A
keeping clear also has to unlink the keys, send the values to the client and write them,
so its ratio to the plain clear cannot be below the ``DUMP`` walk's.

    python bench/backup_floor_bench.py                # N = 1,000,000, 3 rounds
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.backup_bench import PREFIX, VALUE_BYTES, load
from bench.clear_bench import CACHECTL, ENV, start_redis
from tests.servers import REDIS_FAMILY_SERVERS

#: One SCAN step of the prefix (ARGV: cursor, MATCH, COUNT), then READ for each match.
WALK = """
local step = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
for _, key in ipairs(step[2]) do
  READ
end
return step[1]
"""
WALKS = {
    "SCAN only": "",
    "SCAN + DUMP + PTTL": "local v, t = redis.call('DUMP', key), redis.call('PTTL', key)",
    "SCAN + GET + PTTL": "local v, t = redis.call('GET', key), redis.call('PTTL', key)",
}
PLAIN = "cachectl clear --yes"


def server_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def walk(client: redis.Redis, read: str) -> float:
    """The server's CPU for one walk of the prefix, reading each match with ``read``."""
    script = client.register_script(WALK.replace("READ", read))
    before = server_cpu(client)
    cursor: bytes | int = 0
    while True:
        cursor = script(args=[cursor, PREFIX + "*", 500])
        if int(cursor) == 0:
            return server_cpu(client) - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000, help="keys under the prefix")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument(
        "--server", choices=list(REDIS_FAMILY_SERVERS), default="redis-7.0", help="the server"
    )
    options = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="cachectl-floor-bench-"))
    server, port = start_redis(workdir, options.server, True)
    client = redis.Redis(port=port)
    target = [*CACHECTL, "--url", f"redis://127.0.0.1:{port}/0", "--key-prefix", PREFIX, "-q"]
    try:
        subprocess.run([*target, "clear", "--yes"], env=ENV, check=True)  # bytecode written
        print(
            f"redis-server {client.info('server')['redis_version']}, {os.cpu_count()} cores, "
            f"{options.keys:,} keys under {PREFIX!r} + {options.keys:,} others, values of "
            f"{VALUE_BYTES} bytes, {options.rounds} rounds"
        )
        walls: list[float] = []
        cpus: dict[str, list[float]] = {PLAIN: [], **{name: [] for name in WALKS}}
        for number in range(options.rounds):
            order = ["plain", "walks"] if number % 2 == 0 else ["walks", "plain"]
            for what in order:
                load(client, options.keys)
                if what == "plain":
                    before, started = server_cpu(client), time.perf_counter()
                    subprocess.run([*target, "clear", "--yes"], env=ENV, check=True)
                    walls.append(time.perf_counter() - started)
                    cpus[PLAIN].append(server_cpu(client) - before)
                    print(f"round {number + 1}: {PLAIN}: {walls[-1]:.2f} s wall, "
                          f"server CPU {cpus[PLAIN][-1]:.2f} s", flush=True)  # fmt: skip
                    continue
                for name, read in WALKS.items():
                    cpus[name].append(walk(client, read))
                    print(f"round {number + 1}: {name}: server CPU {cpus[name][-1]:.2f} s",
                          flush=True)  # fmt: skip
        wall = statistics.median(walls)
        print(f"\nmedians over {options.rounds} rounds")
        print(f"{PLAIN:22s} wall {wall:.2f} s, server CPU {statistics.median(cpus[PLAIN]):.2f} s")
        for name in WALKS:
            spent = statistics.median(cpus[name])
            print(f"{name:22s} server CPU {spent:.2f} s = {spent / wall:.2f} x the plain clear")
        print("a keeping clear (--backup) cannot be under the DUMP walk's ratio: it also unlinks "
              "the keys and sends the values to the client")  # fmt: skip
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
