"""Start-up: what one short cachectl command costs against a bare redis-py script.

A cron job or a deploy script runs many short commands, so the time to start matters as
much as the time to work. Starts a private redis-server and times, as wall time of a whole
process, in alternating rounds (each round runs every contender once, in a rotated order,
so a noisy neighbour hits them alike), the median of each over the rounds:

- ``cachectl --url … get k`` (a hit) and ``get missing`` (a miss, exit 1);
- ``cachectl --help``;
- the baselines: ``python -c pass``, ``python -c "import redis; redis.Redis(…).get('k')"``
  (what cachectl does, with nothing else), that script again ending as cachectl does
  (``gc.freeze()`` first, which skips the interpreter's last garbage collection) and
  ``redis-cli get k``.

Every contender runs in a scratch directory (no ``cachectl.toml`` or ``pyproject.toml``
to find above it, as on an ops host) with compiled bytecode, as an installed package has.

It prints the medians and the ratios docs/performance.md quotes: ``get`` against the bare redis-py
script (goal: at most 1.15) and against the script ending as cachectl does (what cachectl
adds by its imports and work alone), ``--help`` less ``python -c pass`` (goal: at most
60 ms).

    python bench/startup_bench.py             # 30 rounds
    python bench/startup_bench.py --rounds 60
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
from clear_bench import start_redis  # the same private redis-server (run from bench/)

CACHECTL = str(Path(sys.executable).with_name("cachectl"))


def contenders(port: int) -> dict[str, list[str]]:
    url = f"redis://127.0.0.1:{port}/0"
    bare = f"import redis; redis.Redis(port={port}).get('flask_cache_k')"
    # The same script, ending as cachectl ends (see cli/group.py's main): without the
    # interpreter's last garbage collection. Against it, what remains is what cachectl
    # imports and does beyond redis-py.
    bare_frozen = bare + "; import gc; gc.freeze()"
    return {
        "cachectl get (hit)": [CACHECTL, "--url", url, "get", "k"],
        "cachectl get (miss)": [CACHECTL, "--url", url, "get", "missing"],
        "cachectl --help": [CACHECTL, "--help"],
        "python -c pass": [sys.executable, "-c", "pass"],
        "python redis-py get": [sys.executable, "-c", bare],
        "... + gc.freeze()": [sys.executable, "-c", bare_frozen],
        "redis-cli get": ["redis-cli", "-p", str(port), "get", "flask_cache_k"],
    }


def timed(command: list[str], env: dict[str, str], cwd: str) -> float:
    started = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=cwd)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="rounds (at least 20)")
    rounds = max(parser.parse_args().rounds, 20)
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        raise SystemExit("needs redis-server and redis-cli (Debian: redis-server, redis-tools)")
    # Nothing from the caller's shell may point cachectl elsewhere or make it load an app.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CACHECTL_", "FLASK_"))}
    # As installed, a package's modules load from compiled bytecode (pip compiles them);
    # a shell with PYTHONDONTWRITEBYTECODE would make every run compile cachectl's
    # sources again and time the compiler. The warm-up run below writes the bytecode.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryDirectory() as workdir:
        server, port = start_redis(Path(workdir))
        try:
            redis.Redis(port=port).set("flask_cache_k", b"!" + b"\x80\x04\x95\x05\x00")
            commands = contenders(port)
            for command in commands.values():  # warm the file cache once
                timed(command, env, workdir)
            times: dict[str, list[float]] = {name: [] for name in commands}
            names = list(commands)
            for round_number in range(rounds):
                shift = round_number % len(names)
                for name in names[shift:] + names[:shift]:
                    times[name].append(timed(commands[name], env, workdir))
        finally:
            server.terminate()
            server.wait(timeout=10)
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"{rounds} alternating rounds, {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    for name, seconds in median.items():
        print(f"  {name:<22} {seconds * 1000:7.1f} ms")
    bare = median["python redis-py get"]
    print(f"cachectl get (hit) / bare redis-py get:  {median['cachectl get (hit)'] / bare:.2f}x")
    print(f"cachectl get (miss) / bare redis-py get: {median['cachectl get (miss)'] / bare:.2f}x")
    frozen = median["... + gc.freeze()"]
    hit, miss = median["cachectl get (hit)"] / frozen, median["cachectl get (miss)"] / frozen
    print(f"same, against the script ending as cachectl does: {hit:.2f}x (hit), {miss:.2f}x (miss)")
    extra = (median["cachectl --help"] - median["python -c pass"]) * 1000
    print(f"cachectl --help - python -c pass:        {extra:+.0f} ms")


if __name__ == "__main__":
    main()
