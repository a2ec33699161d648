"""What ``--backup`` costs a Redis clear, and what ``restore`` costs against redis-cli --pipe.

Starts a private server as bench/clear_bench.py does (its server start, PING probe,
SLOWLOG reading and GNU time peak memory are imported from there), loads N keys under
the app's prefix and N other keys, values of about 200 bytes (hex digests, which
compress about as well as pickled app data: not the zero padding of DEBUG POPULATE),
and measures on a freshly loaded data set each round, in alternating order:

- ``cachectl clear --yes``;
- ``cachectl --backup F clear --yes`` (F on the same disk as the bench's temporary
  directory; each chunk is fsynced before its keys are unlinked).

Each run's wall time, worst and 99th-percentile PING of a client pinging every
millisecond, the longest command the server ran (SLOWLOG) and the run's peak RSS; then
the medians, and the ratio of the medians (goal: at most 2x, worst PING at most 10 ms,
peak RSS at most 64 MB and flat in N: ``--keys 4000000``).

Then ``cachectl restore F`` into the emptied prefix against ``redis-cli --pipe`` fed the
same RESTORE commands (a RESP file generated from F with cachectl.backup.reader before the
timing starts), each run ``--rounds`` times on an emptied prefix (goal: at most 1.5x), and
after each a check that the prefix holds exactly what it held before the clear: the same
names with the same DUMP bytes (an order-free digest of every name and payload).

    python bench/backup_bench.py                 # N = 1,000,000
    python bench/backup_bench.py --keys 4000000  # memory must not grow with N
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.clear_bench import (
    CACHECTL,
    ENV,
    FLOOR_SCRIPT,
    header,
    measure,
    ratio,
    row,
    start_redis,
    summary_row,
)
from cachectl.backup.reader import BackupFile
from tests.servers import REDIS_FAMILY_SERVERS

PREFIX = "flask_cache_"
VALUE_BYTES = 200

#: N keys named PREFIX:<n> from ARGV[2] to ARGV[3], each a 200-byte value of hex digests.
LOAD_SCRIPT = """
for n = tonumber(ARGV[2]), tonumber(ARGV[3]) do
  local parts = {}
  for part = 1, 5 do parts[part] = redis.sha1hex(ARGV[1] .. n .. ':' .. part) end
  redis.call('SET', ARGV[1] .. ':' .. n, table.concat(parts))
end
return 0
"""

CLEAR = "cachectl clear --yes"
BACKUP_CLEAR = "cachectl --backup F clear --yes"
RESTORE = "cachectl restore F"
PIPE = "redis-cli --pipe (RESTORE)"


def load(client: redis.Redis, count: int) -> None:
    """``count`` keys under the prefix and as many others, 10,000 per script call."""
    client.flushall()
    script = client.register_script(LOAD_SCRIPT)
    for prefix in (PREFIX, "other"):
        for start in range(0, count, 10_000):
            script(args=[prefix, start, min(start + 10_000, count) - 1])


def empty_prefix(port: int) -> None:
    subprocess.run(
        ["redis-cli", "-p", str(port), "EVAL", FLOOR_SCRIPT, "0", PREFIX + "*"],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def digest(client: redis.Redis, match: str = PREFIX + "*") -> tuple[int, int]:
    """How many keys match, and an order-free digest of their names and DUMP payloads."""
    count, total = 0, 0
    cursor = 0
    while True:
        cursor, names = client.scan(cursor, match=match, count=5000)
        if names:
            pipe = client.pipeline(transaction=False)
            for name in names:
                pipe.dump(name)
            for name, payload in zip(names, pipe.execute()):
                count += 1
                total = (total + (zlib.crc32(payload, zlib.crc32(name)) << 32 | len(payload))) % (
                    1 << 64
                )
        if int(cursor) == 0:
            return count, total


def resp_of(backup: Path, out: Path) -> int:
    """The RESTORE commands of every entry in ``backup`` (its lifetime as kept), in RESP."""
    written = 0
    with BackupFile(str(backup)) as source, out.open("wb") as sink:
        for chunk in source.chunks():
            parts = []
            for entry in chunk.entries:
                ttl = b"0" if entry.ttl_ms < 0 else str(entry.ttl_ms).encode()
                args = (b"RESTORE", entry.name, ttl, entry.value)
                parts.append(b"*4\r\n")
                for arg in args:
                    parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
                written += 1
            sink.write(b"".join(parts))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000, help="keys under the prefix")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each (default 3)")
    parser.add_argument(
        "--server", choices=list(REDIS_FAMILY_SERVERS), default="redis-7.0", help="the server"
    )
    parser.add_argument("--dir", help="where the backup files go (default: a temporary dir)")
    options = parser.parse_args()
    if shutil.which("redis-cli") is None:
        raise SystemExit("needs redis-cli (Debian: redis-tools)")

    workdir = Path(tempfile.mkdtemp(prefix="cachectl-backup-bench-", dir=options.dir))
    server, port = start_redis(workdir, options.server, True)
    client = redis.Redis(port=port)
    url = f"redis://127.0.0.1:{port}/0"
    target = [*CACHECTL, "--url", url, "--key-prefix", PREFIX, "-q"]
    backup = workdir / "clear.backup"
    try:
        client.flushall()
        subprocess.run([*target, "clear", "--yes"], env=ENV, check=True)  # bytecode written
        info = client.info("server")
        print(
            f"redis-server {info['redis_version']}, {os.cpu_count()} cores, "
            f"{options.keys:,} keys under {PREFIX!r} + {options.keys:,} others, values of "
            f"{VALUE_BYTES} bytes, {options.rounds} rounds"
        )
        runs: dict[str, list[dict]] = {CLEAR: [], BACKUP_CLEAR: []}
        before = (0, 0)
        for number in range(options.rounds):
            print(f"\nround {number + 1}\n{header()}")
            order = [CLEAR, BACKUP_CLEAR] if number % 2 == 0 else [BACKUP_CLEAR, CLEAR]
            for name in order:
                load(client, options.keys)
                if name == BACKUP_CLEAR:
                    before = digest(client)
                    backup.unlink(missing_ok=True)
                    command = [*target, "--backup", str(backup), "clear", "--yes"]
                else:
                    command = [*target, "clear", "--yes"]
                result = measure(name, command, port, workdir)
                left = sum(1 for _ in client.scan_iter(match=PREFIX + "*", count=10_000))
                others = client.dbsize() - left
                good = left == 0 and others == options.keys
                result["check"] = "ok" if good else f"FAILED: {left} left, {others} others"
                runs[name].append(result)
                print(row(result), flush=True)
        print(f"\nover {options.rounds} rounds: median wall (spread), worst PING of any run,")
        print("median p99 PING, longest server command of any run, largest peak RSS")
        print(header("median wall", 22))
        for name, measured in runs.items():
            print(summary_row(name, measured))
        size = backup.stat().st_size
        print(f"backup file: {size / 1e6:.0f} MB for {options.keys:,} entries")
        print(f"with --backup / without:  {ratio(runs, BACKUP_CLEAR, CLEAR)}  goal <= 2")
        kept = runs[BACKUP_CLEAR]
        print(f"--backup worst PING:      {max(r['worst'] for r in kept):.1f} ms  goal <= 10")
        print(f"--backup longest command: {max(r['longest'] for r in kept):.1f} ms")
        print(f"--backup peak RSS:        {max(r['rss_mb'] for r in kept):.0f} MB  goal <= 64")

        # restore F against redis-cli --pipe of the same RESTORE commands
        resp = workdir / "restore.resp"
        entries = resp_of(backup, resp)
        print(f"\nrestoring {entries:,} entries into the emptied prefix ({options.keys:,} others)")
        print(header())
        pipe_command = f"redis-cli -p {port} --pipe < {resp} > /dev/null"
        restores: dict[str, list[dict]] = {RESTORE: [], PIPE: []}
        for number in range(options.rounds):
            order = [RESTORE, PIPE] if number % 2 == 0 else [PIPE, RESTORE]
            for name in order:
                empty_prefix(port)
                command = [*target, "restore", str(backup)] if name == RESTORE else pipe_command
                result = measure(name, command, port, workdir)
                after = digest(client)
                result["check"] = "ok" if after == before else f"FAILED: {after} != {before}"
                restores[name].append(result)
                print(row(result), flush=True)
        print(header("median wall", 22))
        for name, measured in restores.items():
            print(summary_row(name, measured))
        print(f"restore / redis-cli --pipe: {ratio(restores, RESTORE, PIPE)}  goal <= 1.5")
        failed = [
            r for rs in (*runs.values(), *restores.values()) for r in rs if r["check"] != "ok"
        ]
        if failed:
            print(f"{len(failed)} run(s) left the data wrong: see the rows above")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
