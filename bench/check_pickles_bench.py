"""check-pickles at scale, against stats on the same keys.

Starts a private redis-server and fills it, inside the server, with N keys under the
app's prefix shaped as a Flask-Caching app leaves them (the key shapes of
``stats_bench``: memoized results of 200 functions, views, fragments, other keys, the
version keys), each holding a real pickle as cachelib stores it (``!`` + pickle): model
instances, lists of them, plain dicts, a cached view's response tuple, numbers as
digits; one of 40 such values per key, written by this Python's pickle. Then times whole
``cachectl`` processes in alternating rounds, quoting medians: ``stats`` (the
baseline) and ``check-pickles``, which reads every value. For each it prints the median
wall time, its ratio to ``stats`` (goal: at most 3), the worst PING of a client pinging
every millisecond meanwhile, the longest command the server ran (SLOWLOG) and the peak
resident memory (goal: flat in N). The measuring is ``clear_bench.measure``.

    python bench/check_pickles_bench.py                  # N = 1,000,000, 3 rounds
    python bench/check_pickles_bench.py --keys 2000000   # memory must not grow with N
"""

from __future__ import annotations

import argparse
import datetime
import os
import pickle
import shutil
import statistics
import sys
import tempfile
import types
from decimal import Decimal
from pathlib import Path

import redis
from clear_bench import measure, start_redis  # the same server and meter (from bench/)
from stats_bench import _FILL, PREFIX  # the same key shapes

CACHECTL = [sys.executable, "-m", "cachectl"]


class Product:
    """Stands for an app's model; pickled under the name ``shop.models.Product``."""

    def __init__(self, number: int) -> None:
        self.id = number
        self.name = f"product {number}"
        self.price = Decimal(number) / 4
        self.tags = ["new", "sale"][: number % 3]
        self.created = datetime.datetime(2026, 1, 1 + number % 28)


Product.__module__, Product.__qualname__ = "shop.models", "Product"
sys.modules["shop"] = types.ModuleType("shop")  # where pickle checks it
sys.modules["shop.models"] = types.ModuleType("shop.models")
sys.modules["shop.models"].Product = Product  # type: ignore[attr-defined]


def values() -> list[bytes]:
    """40 values as cachelib stores them: model instances, lists of them, dicts, a view's
    response, text, numbers (digits: no pickle)."""
    found: list[bytes] = []
    for n in range(10):
        found.append(b"!" + pickle.dumps(Product(n), pickle.HIGHEST_PROTOCOL))
        found.append(b"!" + pickle.dumps([Product(n + i) for i in range(3)], 5))
        found.append(b"!" + pickle.dumps({"id": n, "title": f"item {n}", "ok": True}, 5))
        if n % 2:
            found.append(b"!" + pickle.dumps((f"<html>{n}</html>" * 20, 200, {}), 5))
        else:
            found.append(str(n * 1000).encode())
    return found


#: The stats_bench fill, its placeholder value replaced by one of ARGV[4..].
_FILL_VALUES = _FILL.replace(
    "local prefix, first, last = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])",
    "local prefix, first, last = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local kinds = #ARGV - 3",
).replace("'payload:' .. i", "ARGV[4 + i % kinds]")


def fill(client: redis.Redis, count: int) -> None:
    client.flushall()
    step, stored = 20_000, values()  # each call well within the server's script time limit
    for first in range(0, count, step):
        client.eval(_FILL_VALUES, 0, PREFIX, first, min(first + step, count) - 1, *stored)
    for function in range(200):
        version = f"v{function:05d}"[-6:]
        client.set(f"{PREFIX}shop.views.function_{function}_memver", b"!" + pickle.dumps(version))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000, help="keys under the prefix")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    options = parser.parse_args()
    if shutil.which("redis-server") is None:
        raise SystemExit("needs redis-server (Debian: redis-server)")

    workdir = Path(tempfile.mkdtemp(prefix="cachectl-pickles-bench-"))
    server, port = start_redis(workdir, "redis-7.0", True)
    client = redis.Redis(port=port)
    url = f"redis://127.0.0.1:{port}/0"
    ours = [*CACHECTL, "--url", url, "--key-prefix", PREFIX, "-q"]
    contenders = {"stats (baseline)": [*ours, "stats"], "check-pickles": [*ours, "check-pickles"]}
    try:
        fill(client, options.keys)
        print(
            f"redis-server {client.info()['redis_version']}, {os.cpu_count()} cores, "
            f"{client.dbsize():,} keys under {PREFIX!r} (Flask-Caching shapes, real pickles); "
            f"{options.rounds} alternating rounds"
        )
        runs: dict[str, list[dict]] = {name: [] for name in contenders}
        names = list(contenders)
        for round_number in range(options.rounds):
            order = names if round_number % 2 == 0 else names[::-1]
            for name in order:
                runs[name].append(measure(name, contenders[name], port, workdir))
        baseline = statistics.median(r["wall"] for r in runs[names[0]])
        print(
            f"{'command':<20}{'median wall':>12}{'ratio':>8}{'worst PING':>12}"
            f"{'longest':>10}{'peak RSS':>10}"
        )
        for name in names:
            wall = statistics.median(r["wall"] for r in runs[name])
            worst = max(r["worst"] for r in runs[name])
            longest = max(r["longest"] for r in runs[name])
            rss = max(r["rss_mb"] for r in runs[name])
            print(
                f"{name:<20}{wall:>10.2f} s{wall / baseline:>8.2f}{worst:>9.1f} ms"
                f"{longest:>7.1f} ms{rss:>7.0f} MB"
            )
        for name in names:
            walls = ", ".join(f"{r['wall']:.2f}" for r in runs[name])
            print(f"  {name}: {walls} s")
        print("goal: check-pickles at most 3.00x stats; peak RSS flat in N")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
