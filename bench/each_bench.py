"""Invalidating 100,000 calls of one memoized function: ``delete-memoized --each`` against
deleting the same 100,000 keys listed (``delete --from-file``), and against 100,000 single
``delete-memoized`` invocations.

Starts a private redis-server (Debian's redis-server 7.0 by default, ``--server`` as in
clear_bench.py) and writes a small real module beside it (``benchshop.py``: Flask-Caching's
``@cache.memoize`` on ``get_product(product_id)``, imported by cachectl, config-only: the
settings come from ``--url``, ``--key-prefix`` and ``--compat``). The entries' keys are those
Flask-Caching itself forms for ``get_product(0)`` ... ``get_product(99999)`` (the real
decorator's ``make_cache_key``, under a fixed version), so both contenders delete exactly the
same keys; each run starts from the same freshly loaded 100,000 entries (and 100,000 other
keys that must survive), and must leave none of the entries.

Contenders, alternating over the rounds (each round runs both, in turn first), as the wall
time of the whole command, interpreter start-up included:

- ``cachectl delete --from-file keys.txt`` (the 100,000 keys, one a line);
- ``cachectl delete-memoized benchshop.get_product --each ids.txt`` (the 100,000 ids).

Then 100 single ``cachectl delete-memoized benchshop.get_product ID`` invocations, timed
together and extrapolated to 100,000. It prints the medians, ``--each / --from-file`` (goal:
at most 3) and ``100,000 single invocations / --each`` (goal: at least 50).

    python bench/each_bench.py             # 5 rounds
    python bench/each_bench.py --rounds 9
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from clear_bench import REDIS_FAMILY_SERVERS, start_redis  # the same private redis-server

CACHECTL = [sys.executable, "-m", "cachectl"]
CALLS = 100_000
SINGLES = 100
PREFIX = "shop_"
FUNCTION = "benchshop.get_product"
VERSION = "AbCdEf"

BENCH_MODULE = """
from flask_caching import Cache

cache = Cache()


@cache.memoize()
def get_product(product_id):
    return {"id": product_id}
"""


def flask_caching_keys(workdir: Path, count: int) -> list[str]:
    """The keys Flask-Caching's own decorator forms for get_product(0..count-1) under
    VERSION (prefix left out), from a real app with a NullCache whose get_many answers
    the version: computed in a child process, with the bench module importable."""
    program = f"""
import sys
from flask import Flask
import benchshop
app = Flask("bench")
app.config.update(CACHE_TYPE="NullCache", CACHE_KEY_PREFIX="")
benchshop.cache.init_app(app)
benchshop.cache.cache.get_many = lambda *keys: [{VERSION!r}] * len(keys)
function = benchshop.get_product
with app.app_context():
    for n in range({count}):
        sys.stdout.write(function.make_cache_key(function.uncached, n) + "\\n")
"""
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=workdir, capture_output=True, text=True, check=True
    )
    return done.stdout.split()


def load(client: redis.Redis, keys: list[str]) -> None:
    """The same cache before each run: the version key, the entries, as many others."""
    client.flushall()
    pipe = client.pipeline(transaction=False)
    pipe.set(f"{PREFIX}{FUNCTION}_memver", b"!" + pickle.dumps(VERSION))  # as cachelib stores it
    for index, key in enumerate(keys):
        pipe.set(PREFIX + key, b"!\x80\x04K\x01.")
        if index % 10_000 == 9_999:
            pipe.execute()
    pipe.execute()
    client.execute_command("DEBUG", "POPULATE", len(keys), "other", 16)


#: Peak memory of a run, where GNU time is installed (its maximum resident set).
GNU_TIME = "/usr/bin/time"
PEAKS: dict[str, list[int]] = {}


def timed(command: list[str], cwd: Path, name: str = "") -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CACHECTL_", "FLASK_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: modules load from bytecode
    measured = bool(name) and os.path.exists(GNU_TIME)
    prefix = [GNU_TIME, "-f", "peak %M"] if measured else []
    started = time.perf_counter()
    done = subprocess.run([*prefix, *command], capture_output=True, cwd=cwd, env=env)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr.decode()}")
    if measured:
        last = done.stderr.decode().strip().splitlines()[-1]
        PEAKS.setdefault(name, []).append(int(last.split()[1]) // 1024)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds (at least 3)")
    parser.add_argument("--server", default="redis-7.0", choices=REDIS_FAMILY_SERVERS)
    parser.add_argument("--calls", type=int, default=CALLS, help="lines (memory must not grow)")
    options = parser.parse_args()
    rounds = max(options.rounds, 3)
    calls = options.calls
    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        (workdir / "benchshop.py").write_text(BENCH_MODULE)
        # cachectl from this checkout, the bench module from the working directory.
        os.environ["PYTHONPATH"] = os.pathsep.join([str(repo), str(workdir)])
        keys = flask_caching_keys(workdir, calls)
        (workdir / "keys.txt").write_text("\n".join(keys) + "\n")
        (workdir / "ids.txt").write_text("\n".join(str(n) for n in range(calls)) + "\n")
        server, port = start_redis(workdir, options.server, True)
        try:
            client = redis.Redis(port=port)
            target = [*CACHECTL, "--url", f"redis://127.0.0.1:{port}/0",
                      "--key-prefix", PREFIX, "--compat", "2.5"]  # fmt: skip
            contenders = {
                "delete --from-file": [*target, "delete", "--from-file", "keys.txt"],
                "delete-memoized --each": [*target, "delete-memoized", FUNCTION, "--each",
                                           "ids.txt"],
            }  # fmt: skip
            for command in contenders.values():  # warm-up: bytecode, file cache
                load(client, keys)
                timed(command, workdir)
            times: dict[str, list[float]] = {name: [] for name in contenders}
            names = list(contenders)
            for round_number in range(rounds):
                shift = round_number % len(names)
                for name in names[shift:] + names[:shift]:
                    load(client, keys)
                    times[name].append(timed(contenders[name], workdir, name))
                    left = client.exists(*(PREFIX + key for key in keys[:: calls // 1000]))
                    if left or client.dbsize() != calls + 1:
                        raise SystemExit(f"{name} left entries, or removed other keys")
            load(client, keys)
            singles = sum(
                timed([*target, "delete-memoized", FUNCTION, str(n)], workdir)
                for n in range(SINGLES)
            )
            if client.exists(*(PREFIX + key for key in keys[:SINGLES])):
                raise SystemExit("the single invocations left entries")
        finally:
            server.terminate()
            server.wait(timeout=10)
    median = {name: statistics.median(values) for name, values in times.items()}
    each, listed = median["delete-memoized --each"], median["delete --from-file"]
    extrapolated = singles * calls / SINGLES
    print(
        f"{calls:,} calls, {rounds} alternating rounds, {os.cpu_count()} cores, "
        f"Python {sys.version.split()[0]}, {options.server}, load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    for name, seconds in median.items():
        spread = f"{min(times[name]):.2f}-{max(times[name]):.2f}"
        peak = f", peak {max(PEAKS[name])} MB" if name in PEAKS else ""
        print(f"  {name:<24} {seconds:7.2f} s ({spread}){peak}")
    single = f"{SINGLES} single delete-memoized"
    print(f"  {single:<24} {singles:7.2f} s ({extrapolated:,.0f} s for {calls:,})")
    ratios = ", ".join(
        f"{e / f:.2f}" for e, f in zip(times["delete-memoized --each"], times["delete --from-file"])
    )
    print(f"--each / --from-file: {each / listed:.2f} (rounds: {ratios}; goal: at most 3)")
    print(f"{calls:,} single invocations / --each: {extrapolated / each:,.0f}x (goal: at least 50)")


if __name__ == "__main__":
    main()
