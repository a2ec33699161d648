"""stats and stats --by-function at scale, against keys --count on the same data.

Starts a private redis-server and fills it, inside the server, with N keys under the
app's prefix shaped as a Flask-Caching app leaves them (memoized results of 200
functions, a tenth of them under versions no key names any more, their version keys,
cached views, template fragments, a few other keys; four in five with a TTL) and N
other keys. Then times whole ``cachectl`` processes in alternating rounds, quoting
medians: ``keys --count`` (the baseline: one counting pass over the same keys),
``stats`` and ``stats --by-function``, each from bytecode after one warm-up run. For
each it prints the median wall time, its ratio to the baseline (goal: at most 2), the
worst PING of a client pinging every millisecond meanwhile, the longest command the
server ran by its own clock (SLOWLOG) and the peak resident memory (goal: under
64 MB, flat in N). The measuring is ``clear_bench.measure``.

    python bench/stats_bench.py                  # N = 1,000,000, 5 rounds
    python bench/stats_bench.py --keys 4000000   # memory must not grow with N
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import redis
from clear_bench import ENV, measure, start_redis  # the same server and meter (from bench/)

PREFIX = "flask_cache_"
CACHECTL = [sys.executable, "-m", "cachectl"]

#: Fills keys FIRST..LAST (ARGV) under the prefix. Of each 100 keys: 80 memoized
#: results (of 200 functions; a tenth under an orphaned version), 12 views under 30
#: path segments, 6 fragments under 10 names, 1 other key, 1 spare; every fifth
#: without TTL. Then the version keys.
_FILL = """
local prefix, first, last = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local function version(n) return string.format('v%05d', n) end
for i = first, last do
  local slot, name = i % 100, nil
  if slot < 80 then
    local f = i % 200
    local v = (i % 10 == 0) and version(100000 - f) or version(f)
    name = string.format('%016d', i) .. string.sub(v, -6)
  elseif slot < 92 then
    name = 'view//section' .. (i % 30) .. '/item/' .. i
  elseif slot < 98 then
    name = '_template_fragment_cache_block' .. (i % 10) .. '_' .. i
  else
    name = 'other:' .. i
  end
  if i % 5 == 0 then
    redis.call('SET', prefix .. name, 'payload:' .. i)
  else
    redis.call('SET', prefix .. name, 'payload:' .. i, 'EX', 600 + i % 90000)
  end
end
return last - first + 1
"""


def fill(client: redis.Redis, count: int) -> None:
    client.flushall()
    step = 100_000
    for first in range(0, count, step):
        client.eval(_FILL, 0, PREFIX, first, min(first + step, count) - 1)
    for function in range(200):  # version keys: "v00017" -> "00017"[-6:] as the entries end
        client.set(f"{PREFIX}shop.views.function_{function}_memver", f"v{function:05d}"[-6:])
    client.execute_command("DEBUG", "POPULATE", count, "other", 16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000, help="keys under the prefix")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    options = parser.parse_args()
    if shutil.which("redis-server") is None:
        raise SystemExit("needs redis-server (Debian: redis-server)")

    workdir = Path(tempfile.mkdtemp(prefix="cachectl-stats-bench-"))
    server, port = start_redis(workdir)
    client = redis.Redis(port=port)
    url = f"redis://127.0.0.1:{port}/0"
    ours = [*CACHECTL, "--url", url, "--key-prefix", PREFIX, "-q"]
    contenders = {
        "keys --count (baseline)": [*ours, "keys", "--count"],
        "stats": [*ours, "stats"],
        "stats --by-function": [*ours, "stats", "--by-function"],
    }
    try:
        fill(client, options.keys)
        for command in contenders.values():  # writes the bytecode the rounds then load
            subprocess.run(command, check=True, env=ENV, stdout=subprocess.DEVNULL)
        print(
            f"redis-server {client.info()['redis_version']}, {os.cpu_count()} cores, "
            f"{client.dbsize():,} keys: {options.keys:,} under {PREFIX!r} (Flask-Caching "
            f"shapes) + {options.keys:,} others; {options.rounds} alternating rounds"
        )
        runs: dict[str, list[dict]] = {name: [] for name in contenders}
        names = list(contenders)
        for round_number in range(options.rounds):
            order = names if round_number % 2 == 0 else names[::-1]
            for name in order:
                runs[name].append(measure(name, contenders[name], port, workdir))
        baseline = statistics.median(r["wall"] for r in runs[names[0]])
        print(
            f"{'command':<28}{'median wall':>12}{'ratio':>8}{'worst PING':>12}"
            f"{'longest':>10}{'peak RSS':>10}"
        )
        for name in names:
            wall = statistics.median(r["wall"] for r in runs[name])
            worst = max(r["worst"] for r in runs[name])
            longest = max(r["longest"] for r in runs[name])
            rss = max(r["rss_mb"] for r in runs[name])
            print(
                f"{name:<28}{wall:>10.2f} s{wall / baseline:>8.2f}{worst:>9.1f} ms"
                f"{longest:>7.1f} ms{rss:>7.0f} MB"
            )
        spread = {name: ", ".join(f"{r['wall']:.2f}" for r in runs[name]) for name in names}
        for name in names:
            print(f"  {name}: {spread[name]} s")
        print("goal: stats and stats --by-function at most 2.00x keys --count; peak RSS < 64 MB")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
