"""--app runs the app's start-up and nothing else (issue 19): what an app's modules hold is
never evaluated while cachectl names its caches, finds a function or a view.

Real apps hold objects that act when touched: six.moves' lazy descriptors import a module
when read (in an environment without ``_gdbm`` every --app command exited 4), a manager's
properties run code, a LocalProxy-like ``__getattr__`` raises or logs, and flask-restx's
``Api.__schema__`` renders the whole Swagger document (and logs a traceback when it
cannot). Each trap here is planted in a tiny app's package, writes a line to a file each
time it is touched (the test reads it across processes), and the same --app commands must
then exit as they do without the trap, touch nothing and print nothing on stderr.
Naming a property explicitly (``--cache pkg.ext:manager.data_cache``) evaluates that one
property, as asked.
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest
import redis

from tests.conftest import RedisTarget, run_console, run_python
from tests.servers import ServerProcess

FLASK = Path(sys.executable).with_name("flask")
APP = "trapshop:create_app()"
#: The database of the session's private Redis the trap-free runs use: the other tests
#: of this module each have an empty one of conftest's (redis_target), and use theirs
#: only after the trap-free runs are done.
BASELINE_DB = 15

PACKAGE = {
    "__init__.py": """
        import os

        from flask import Flask
        from flask_caching import Cache

        from trapshop import traps

        cache = Cache()


        @cache.memoize()
        def price(item):
            return {"item": item, "price": 10 * item}


        def create_app():
            app = Flask(__name__)
            app.config.update(
                CACHE_TYPE="RedisCache",
                CACHE_REDIS_URL=os.environ["TRAP_REDIS_URL"],
                CACHE_KEY_PREFIX="trap_",
            )
            cache.init_app(app)

            @app.route("/menu")
            @cache.cached()
            def menu():
                return "soup of the day"

            traps.plant(app, os.environ.get("TRAP", ""))
            return app
    """,
    "touched.py": """
        import os


        def touched(what):
            with open(os.environ["TRAP_TOUCHED"], "a") as log:
                log.write(what + "\\n")
    """,
    # six.moves, as six builds it: a module object whose class attributes are lazy
    # descriptors that import the module they stand for when read.
    "lazymoves.py": """
        import importlib
        import sys
        import types

        from trapshop.touched import touched


        class LazyModule:
            def __init__(self, name, module):
                self.name = name
                self.module = module

            def __get__(self, obj, owner):
                touched("lazy descriptor " + self.name)
                return importlib.import_module(self.module)


        class MovedItems(types.ModuleType):
            dbm_gnu = LazyModule("dbm_gnu", "_trapshop_gdbm_not_installed")
            reprlib = LazyModule("reprlib", "reprlib")


        moves = MovedItems(__name__ + ".moves")
        sys.modules[moves.__name__] = moves
    """,
    "traps.py": """
        import logging

        from trapshop.touched import touched


        class Reports:
            @property
            def summary(self):
                touched("property Reports.summary")
                return {"orders": 3}


        class RaisingProxy:
            '''Like a LocalProxy outside its context: every attribute raises.'''

            def __getattr__(self, name):
                touched("RaisingProxy." + name)
                raise RuntimeError("Working outside of application context.")


        class LoggingProxy:
            def __getattr__(self, name):
                touched("LoggingProxy." + name)
                logging.getLogger().warning("LoggingProxy was asked for %s", name)
                raise AttributeError(name)


        class CacheManager:
            '''Superset's pattern: caches behind properties of a manager object.'''

            def __init__(self):
                self.ready = True

            @property
            def data_cache(self):
                touched("property CacheManager.data_cache")
                if not self.ready:
                    raise RuntimeError("the cache manager is not initialised")
                from trapshop import cache

                return cache


        reports = moves = raising = logging_proxy = api = None
        manager = CacheManager()


        def plant(app, trap):
            global reports, moves, raising, logging_proxy, api, manager
            if trap == "lazy":
                from trapshop.lazymoves import moves
            elif trap == "property":
                reports = Reports()
            elif trap == "getattr":
                raising = RaisingProxy()
                logging_proxy = LoggingProxy()
            elif trap == "restx":
                from flask_restx import Api, Resource

                class CountingApi(Api):
                    @property
                    def __schema__(self):
                        touched("Api.__schema__")
                        return super().__schema__

                api = CountingApi(app, doc=False)

                @api.route("/items/<int:item>")
                class Item(Resource):
                    def get(self, item):
                        return {"item": item}

            elif trap == "broken-manager":
                manager.ready = False
    """,
}

#: The --app commands each trap must leave as they are without it (read-only ones first).
COMMANDS = [
    ["config"],
    ["keys"],
    ["get", "view//menu"],
    ["show-memoized", "trapshop.price", "3"],
    ["stats"],
    ["clear", "--dry-run"],
    ["delete-view", "--endpoint", "menu", "--dry-run"],
    ["delete-memoized", "trapshop.price", "3"],
    ["delete-memoized", "trapshop.price"],
]
FLASK_COMMAND = ["cachectl", "keys"]


def plant_trapshop(directory: Path) -> Path:
    package = directory / "trapshop"
    package.mkdir()
    for name, source in PACKAGE.items():
        (package / name).write_text(textwrap.dedent(source).lstrip())
    return directory


@pytest.fixture
def trapshop(tmp_path: Path, redis_target: RedisTarget) -> Path:
    return plant_trapshop(tmp_path)


def environment(cwd: Path, redis_target: RedisTarget, trap: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CACHECTL_", "FLASK_"))}
    env.update(
        TRAP=trap, TRAP_REDIS_URL=redis_target.url, TRAP_TOUCHED=str(cwd / f"touched-{trap}")
    )
    return env


def fill(cwd: Path, env: dict[str, str]) -> None:
    """The app's own code fills its cache: a view and a memoized call."""
    script = (
        "from trapshop import create_app, price\n"
        "app = create_app()\n"
        "assert app.test_client().get('/menu').status_code == 200\n"
        "with app.app_context():\n    price(3)\n"
    )
    done = run_python("-c", script, cwd=cwd, env=env, text=True)
    assert done.returncode == 0, done.stderr


def run_all(cwd: Path, redis_target: RedisTarget, trap: str) -> list[tuple[int, str]]:
    """Fill, then every command in turn: (exit status, stderr) of each."""
    redis_target.client.flushdb()
    env = environment(cwd, redis_target, trap)
    fill(cwd, env)
    results = []
    for command in COMMANDS:
        done = run_console("--app", APP, *command, cwd=cwd, env=env)
        results.append((done.returncode, done.stderr.decode(errors="replace")))
    flask = run_python(str(FLASK), "--app", APP, *FLASK_COMMAND, cwd=cwd, env=env, text=True)
    results.append((flask.returncode, flask.stderr))
    return results


def touched(cwd: Path, trap: str) -> list[str]:
    log = cwd / f"touched-{trap}"
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture(scope="module")
def without_traps(
    tmp_path_factory: pytest.TempPathFactory, redis_server: ServerProcess
) -> list[int]:
    """What the commands do on the app without a trap: the same for every trap, so found
    once for the module, in a trapshop and a database of its own (emptied by run_all)."""
    shop = plant_trapshop(tmp_path_factory.mktemp("without-traps"))
    client = redis.Redis(port=redis_server.port, db=BASELINE_DB)
    results = run_all(shop, RedisTarget(redis_server.port, BASELINE_DB, client), "")
    client.flushdb()
    assert [stderr for _, stderr in results] == [""] * len(results), results
    statuses = [status for status, _ in results]
    assert statuses == [0] * len(statuses), results
    return statuses


@pytest.mark.parametrize("trap", ["lazy", "property", "getattr", "restx"])
def test_app_commands_do_not_touch_what_the_app_holds(
    trapshop: Path, redis_target: RedisTarget, without_traps: list[int], trap: str
) -> None:
    results = run_all(trapshop, redis_target, trap)
    names = [" ".join(command) for command in COMMANDS] + ["flask " + " ".join(FLASK_COMMAND)]
    problems = [
        f"{name}: exit {status}, stderr {stderr!r}"
        for name, (status, stderr), expected in zip(names, results, without_traps)
        if status != expected or stderr
    ]
    assert not problems, "\n".join(problems)
    assert touched(trapshop, trap) == []


def test_a_property_named_explicitly_is_read(trapshop: Path, redis_target: RedisTarget) -> None:
    env = environment(trapshop, redis_target, "")
    fill(trapshop, env)
    done = run_console(
        "--app", APP, "--cache", "trapshop.traps:manager.data_cache", "keys", cwd=trapshop, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""
    assert sorted(done.stdout.split()) == sorted(
        key.decode().removeprefix("trap_").encode() for key in redis_target.client.scan_iter()
    )


def test_a_property_named_explicitly_that_raises_exits_2_naming_it(
    trapshop: Path, redis_target: RedisTarget
) -> None:
    env = environment(trapshop, redis_target, "broken-manager")
    fill(trapshop, env)
    path = "trapshop.traps:manager.data_cache"
    done = run_console("--app", APP, "--cache", path, "keys", cwd=trapshop, env=env)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and path in lines[0], lines
    assert "Traceback" not in done.stderr.decode()
