"""A deploy's invalidations: one ``cachectl batch`` against the same lines run one by one.

A deploy script that invalidates twenty things with ``--app`` pays, per invocation, the
interpreter, cachectl's imports, Flask's and the app's own start-up; a batch pays them
once. Starts a private redis-server and writes a small real Flask app beside it
(``benchapp.py``: Flask-Caching's RedisCache, ``@cache.memoize`` functions, ``@cache.cached``
views, a ``{% cache %}`` fragment). Its ``create_app()`` does deliberate start-up work, as
a real app's factory does (the issue's example ran database set-up on every call): it
builds an in-memory SQLite catalogue of 20,000 rows and registers 200 routes. That work is
part of what is measured; a heavier app widens the gap, a lighter one narrows it.

Contenders, each on the same freshly loaded cache, alternating over the rounds (each
round runs both, in turn first), as the wall time of the whole job:

- ``cachectl --app 'benchapp:create_app()' batch lines.txt`` (the 20 lines);
- the same 20 lines as 20 ``cachectl --app 'benchapp:create_app()' LINE`` processes.

It prints the median of each and their ratio (goal: at most 1/8).

    python bench/batch_bench.py             # 5 rounds
    python bench/batch_bench.py --rounds 9
"""

from __future__ import annotations

import argparse
import os
import pickle
import shlex
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
APP = "benchapp:create_app()"

BENCH_APP = """
import os
import sqlite3

from flask import Flask, render_template_string
from flask_caching import Cache

cache = Cache()


@cache.memoize()
def price_list(currency="EUR"):
    return {"currency": currency}


@cache.memoize()
def get_product(product_id):
    return {"id": product_id}


def create_app():
    app = Flask(__name__)
    app.config.update(
        CACHE_TYPE="RedisCache",
        CACHE_REDIS_URL=os.environ["BENCH_REDIS_URL"],
        CACHE_KEY_PREFIX="shop_",
    )
    cache.init_app(app)
    # Deliberate start-up work, as a real factory does: a database set up and filled,
    # and a few hundred routes registered.
    db = sqlite3.connect(":memory:")
    db.execute("create table product (id integer primary key, name text, price real)")
    db.executemany(
        "insert into product values (?, ?, ?)",
        ((n, f"product {n}", n * 1.5) for n in range(20_000)),
    )
    db.execute("create index by_name on product (name)")
    app.extensions["catalogue"] = db

    @app.route("/pricing")
    @cache.cached()
    def pricing():
        return render_template_string("{% cache 60, 'footer' %}footer{% endcache %}")

    for n in range(200):
        app.add_url_rule(f"/page/{n}", f"page_{n}", lambda n=n: str(n))
    return app
"""

#: The batch: what a release invalidates, and a few reads a deploy checks.
LINES = [
    "delete-memoized benchapp.price_list",
    "delete-memoized benchapp.price_list USD",
    "delete-memoized benchapp.get_product 1042",
    "delete-memoized benchapp.get_product 1043",
    "delete-memoized benchapp.get_product 1044",
    "delete-view /pricing",
    "delete-view /page/1",
    "delete-view /page/2",
    "delete-view /page/3",
    "make-fragment-key footer --delete",
    "make-fragment-key product_card 1042 --delete",
    "delete report:1 report:2",
    "delete --pattern 'export:*' --yes",
    "set maintenance-banner 'back at 10:00' --ttl 600",
    "get maintenance-banner",
    "ttl maintenance-banner",
    "expire maintenance-banner 300",
    "persist maintenance-banner",
    "keys --count",
    "stats",
]


def load(client: redis.Redis) -> None:
    """The same cache before each contender: version keys, views, fragments, reports."""
    client.flushdb()
    pipe = client.pipeline()
    pickled = b"!" + pickle.dumps("AbCdEf", protocol=4)  # as cachelib stores a str
    for name in ("benchapp.price_list", "benchapp.get_product"):
        pipe.set(f"shop_{name}_memver", pickled)
    for n in range(1, 4):
        pipe.set(f"shop_view//page/{n}", b"!\x80\x04K\x01.")
        pipe.set(f"shop_report:{n}", b"1")
    for n in range(500):
        pipe.set(f"shop_export:{n}", b"1")
        pipe.set(f"shop_other:{n}", b"1")
    pipe.execute()


def timed(commands: list[list[str]], env: dict[str, str], cwd: str) -> float:
    started = time.perf_counter()
    for command in commands:
        done = subprocess.run(command, capture_output=True, env=env, cwd=cwd)
        if done.returncode != 0:
            raise SystemExit(f"{shlex.join(command)} failed:\n{done.stderr.decode()}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds (at least 3)")
    rounds = max(parser.parse_args().rounds, 3)
    if shutil.which("redis-server") is None:
        raise SystemExit("needs redis-server (Debian: redis-server)")
    with tempfile.TemporaryDirectory() as workdir:
        server, port = start_redis(Path(workdir))
        try:
            url = f"redis://127.0.0.1:{port}/0"
            # Nothing from the caller's shell may point cachectl elsewhere; bytecode is
            # written and used, as for an installed package (see startup_bench.py).
            env = {k: v for k, v in os.environ.items() if not k.startswith(("CACHECTL_", "FLASK_"))}
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["BENCH_REDIS_URL"] = url
            Path(workdir, "benchapp.py").write_text(BENCH_APP)
            Path(workdir, "lines.txt").write_text("\n".join(LINES) + "\n")
            app = [CACHECTL, "--app", APP]
            contenders = {
                "batch (1 process)": [[*app, "batch", "lines.txt"]],
                "20 invocations": [[*app, *shlex.split(line)] for line in LINES],
            }
            client = redis.Redis(port=port)
            for commands in contenders.values():  # warm-up: bytecode, file cache
                load(client)
                timed(commands, env, workdir)
            times: dict[str, list[float]] = {name: [] for name in contenders}
            names = list(contenders)
            for round_number in range(rounds):
                shift = round_number % len(names)
                for name in names[shift:] + names[:shift]:
                    load(client)
                    times[name].append(timed(contenders[name], env, workdir))
        finally:
            server.terminate()
            server.wait(timeout=10)
    median = {name: statistics.median(values) for name, values in times.items()}
    print(
        f"{len(LINES)} lines with --app, {rounds} alternating rounds, {os.cpu_count()} cores, "
        f"Python {sys.version.split()[0]}"
    )
    for name, seconds in median.items():
        print(f"  {name:<20} {seconds:7.2f} s")
    ratio = median["batch (1 process)"] / median["20 invocations"]
    print(f"batch / 20 invocations: {ratio:.3f} (1/{1 / ratio:.1f}; goal: at most 1/8)")


if __name__ == "__main__":
    main()
