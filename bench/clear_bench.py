"""Clear and bulk delete at scale: cachectl against the usual ways, measured side by side.

Starts a private redis-server, loads N keys under the app's prefix and N other
keys, and for each method, on a freshly loaded data set, measures the wall
time, the worst and 99th-percentile round trip of a client that PINGs every
millisecond meanwhile, and the method's peak resident memory. Then checks that
the prefix is empty and every other key survived. Ratios are against the
baselines measured in the same run:

- cachelib: ``RedisCache(key_prefix=...).clear()``, what Flask-Caching's
  ``cache.clear()`` runs (KEYS + one DEL);
- redis-cli: ``redis-cli --scan --pattern 'prefix*' | xargs -n 1000 redis-cli unlink``;
- cachectl: ``cachectl clear --yes``.

The same for deleting 100,000 listed keys: ``cachectl delete --from-file``
against ``xargs -n 1000 redis-cli unlink`` on the same list.

    python bench/clear_bench.py                 # N = 1,000,000
    python bench/clear_bench.py --keys 4000000  # memory must not grow with N
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

PREFIX = "flask_cache_"
HERE = Path(__file__).resolve().parent
CACHECTL = [sys.executable, "-m", "cachectl"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis(workdir: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(workdir), "--enable-debug-command", "yes",
            "--logfile", str(workdir / "redis.log"),
        ]
    )  # fmt: skip
    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            return process, port
        except redis.ConnectionError:
            time.sleep(0.05)
    raise SystemExit("redis-server did not start")


def load(client: redis.Redis, count: int) -> None:
    """N keys under the prefix and N others; DEBUG POPULATE fills them server-side."""
    client.flushall()
    client.execute_command("DEBUG", "POPULATE", count, PREFIX, 16)  # flask_cache_:<n>
    client.execute_command("DEBUG", "POPULATE", count, "other", 16)  # other:<n>


def pinger(port: int, stop: multiprocessing.Event, results: multiprocessing.Queue) -> None:
    """PING every millisecond until told to stop; report every round trip in ms."""
    client = redis.Redis(port=port)
    client.ping()
    samples = []
    while not stop.is_set():
        started = time.perf_counter()
        client.ping()
        samples.append((time.perf_counter() - started) * 1000)
        time.sleep(0.001)
    results.put(samples)


def measure(name: str, command: list[str] | str, port: int, env: dict | None = None) -> dict:
    stop = multiprocessing.Event()
    queue: multiprocessing.Queue = multiprocessing.Queue()
    watcher = multiprocessing.Process(target=pinger, args=(port, stop, queue))
    watcher.start()
    time.sleep(0.2)
    started = time.perf_counter()
    process = subprocess.Popen(
        command, shell=isinstance(command, str), env=env, stdout=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    stop.set()
    samples = sorted(queue.get())
    watcher.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{name} failed with {status}")
    return {
        "method": name,
        "wall": wall,
        "worst": samples[-1],
        "p99": samples[int(len(samples) * 0.99) - 1],
        "median": statistics.median(samples),
        "rss_mb": usage.ru_maxrss / 1024,
    }


def check(client: redis.Redis, count: int) -> str:
    left = sum(1 for _ in client.scan_iter(match=PREFIX + "*", count=10_000))
    others = client.dbsize() - left
    return "ok" if left == 0 and others == count else f"FAILED: {left} left, {others} others"


def row(result: dict) -> str:
    return (
        f"{result['method']:<34}{result['wall']:>8.2f} s{result['worst']:>9.1f} ms"
        f"{result['p99']:>8.1f} ms{result['rss_mb']:>9.0f} MB  {result['check']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--keys", type=int, default=1_000_000, help="keys under the prefix (and as many others)"
    )
    parser.add_argument(
        "--delete-keys", type=int, default=100_000, help="keys for the --from-file comparison"
    )
    options = parser.parse_args()
    if shutil.which("redis-cli") is None or shutil.which("redis-server") is None:
        raise SystemExit("needs redis-server and redis-cli (Debian: redis-server, redis-tools)")

    workdir = Path(tempfile.mkdtemp(prefix="cachectl-bench-"))
    server, port = start_redis(workdir)
    client = redis.Redis(port=port)
    url = f"redis://127.0.0.1:{port}/0"
    clears = {
        "cachelib RedisCache.clear()": [
            sys.executable, "-c",
            f"import cachelib; cachelib.RedisCache(port={port}, key_prefix={PREFIX!r}).clear()",
        ],
        "redis-cli --scan | xargs unlink": (
            f"redis-cli -p {port} --scan --pattern '{PREFIX}*'"
            f" | xargs -n 1000 redis-cli -p {port} unlink > /dev/null"
        ),
        "cachectl clear --yes": [*CACHECTL, "--url", url, "--key-prefix", PREFIX, "-q",
                                 "clear", "--yes"],
    }  # fmt: skip
    try:
        print(
            f"redis-server {client.info()['redis_version']}, {os.cpu_count()} cores, "
            f"{options.keys:,} keys under {PREFIX!r} + {options.keys:,} others"
        )
        print(f"{'method':<34}{'wall':>10}{'worst PING':>12}{'p99':>11}{'peak RSS':>12}")
        results = {}
        for name, command in clears.items():
            load(client, options.keys)
            result = measure(name, command, port)
            result["check"] = check(client, options.keys)
            results[name] = result
            print(row(result), flush=True)
        ours = results["cachectl clear --yes"]["wall"]
        cachelib_wall = results["cachelib RedisCache.clear()"]["wall"]
        pipeline_wall = results["redis-cli --scan | xargs unlink"]["wall"]
        print(f"cachectl / cachelib clear():   {ours / cachelib_wall:.2f}  (target <= 0.8)")
        print(f"cachectl / redis-cli pipeline: {ours / pipeline_wall:.2f}  (target <= 0.5)")

        count = options.delete_keys
        listing = workdir / "keys.txt"
        full = workdir / "full-keys.txt"
        listing.write_text("".join(f":{n}\n" for n in range(count)))
        full.write_text("".join(f"{PREFIX}:{n}\n" for n in range(count)))
        xargs = f"xargs -n 1000 redis-cli -p {port} unlink < {full} > /dev/null"
        ours = [*CACHECTL, "--url", url, "--key-prefix", PREFIX, "-q"]
        deletes = {
            "xargs redis-cli unlink (list)": xargs,
            "cachectl delete --from-file": [*ours, "delete", "--from-file", str(listing)],
        }
        print(
            f"\ndeleting {count:,} listed keys (of {count:,} under the prefix + {count:,} others)"
        )
        timings = {}
        for name, command in deletes.items():
            load(client, count)
            result = measure(name, command, port)
            result["check"] = check(client, count)
            timings[name] = result["wall"]
            print(row(result), flush=True)
        ratio = timings["cachectl delete --from-file"] / timings["xargs redis-cli unlink (list)"]
        print(f"cachectl / xargs redis-cli:    {ratio:.2f}  (target <= 1.0)")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
