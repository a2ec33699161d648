"""App mode reaches exactly the app's caches, however the app configured them.

The app here is built the way large real apps are: settings dicts in a config
module, passed to ``init_app`` by a manager object that holds several caches
(and exposes them as properties), a ``Cache(config=...)`` at module level, caches
on two Redis servers, another database, memcached and a directory, and a start-up
that prints. A decoy Redis holds the same keys: it must never be touched.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.conftest import SASL_PASSWORD, SASL_USER, run_console, run_python
from tests.servers import ServerProcess, start_redis

PASSWORD = "app-pw-7f3"

CONFIG_MODULE = """
import os

port = int(os.environ["BIG_REDIS_PORT"])
CACHE_DEFAULT_TIMEOUT = 3600
# Not a cache setting of cachectl's: an app value that happens to start with CACHE_.
CACHE_WARMUP_EXECUTORS = 4
CACHE_CONFIG = {
    "CACHE_TYPE": "RedisCache",
    "CACHE_REDIS_HOST": "127.0.0.1",
    "CACHE_REDIS_PORT": port,
    "CACHE_REDIS_PASSWORD": os.environ["BIG_REDIS_PASSWORD"],
    "CACHE_REDIS_DB": 2,
    "CACHE_KEY_PREFIX": "big_",
}
DATA_CACHE_CONFIG = {
    "CACHE_TYPE": "RedisCache",
    "CACHE_REDIS_URL": f"redis://:{os.environ['BIG_REDIS_PASSWORD']}@127.0.0.1:{port}/3",
    "CACHE_KEY_PREFIX": "big_data_",
    "CACHE_DEFAULT_TIMEOUT": 600,
}
FILTER_STATE_CACHE_CONFIG = {
    "CACHE_TYPE": "RedisCache",
    "CACHE_REDIS_HOST": "127.0.0.1",
    "CACHE_REDIS_PORT": int(os.environ["OTHER_REDIS_PORT"]),
    "CACHE_KEY_PREFIX": "big_filter_",
}
MEMO_CACHE_CONFIG = {
    "CACHE_TYPE": "MemcachedCache",
    "CACHE_MEMCACHED_SERVERS": [os.environ["BIG_MEMCACHED"]],
    "CACHE_KEY_PREFIX": "big_memo_",
}
FILES_CACHE_CONFIG = {
    "CACHE_TYPE": "FileSystemCache",
    "CACHE_DIR": os.environ["BIG_CACHE_DIR"],
    "CACHE_THRESHOLD": 50,
}
"""

EXTENSIONS_MODULE = """
import os
from flask_caching import Cache


class CacheManager:
    def __init__(self):
        self._cache = Cache()
        self._data_cache = Cache()
        self._filter_state_cache = Cache()
        self._memo_cache = Cache()
        self._files_cache = Cache()

    def init_app(self, app):
        self._cache.init_app(app, app.config["CACHE_CONFIG"])
        self._data_cache.init_app(app, app.config["DATA_CACHE_CONFIG"])
        self._filter_state_cache.init_app(app, app.config["FILTER_STATE_CACHE_CONFIG"])
        self._memo_cache.init_app(app, dict(app.config["MEMO_CACHE_CONFIG"]))  # a copy
        self._files_cache.init_app(app, app.config["FILES_CACHE_CONFIG"])

    @property
    def cache(self):
        return self._cache

    @property
    def data_cache(self):
        return self._data_cache

    @property
    def filter_state_cache(self):
        return self._filter_state_cache


cache_manager = CacheManager()
reports = Cache(
    config={
        "CACHE_TYPE": "RedisCache",
        "CACHE_REDIS_URL": f"redis://127.0.0.1:{os.environ['OTHER_REDIS_PORT']}/5",
        "CACHE_KEY_PREFIX": "big_reports_",
    }
)
"""

APP_MODULE = """
from flask import Flask

from bigapp.extensions import cache_manager, reports


def create_app():
    print("Loaded your LOCAL configuration")
    app = Flask(__name__)
    app.config.from_object("bigapp.config")
    cache_manager.init_app(app)
    reports.init_app(app)
    print("plugins loaded: 3")
    return app
"""

FUNCS_MODULE = """
from bigapp.extensions import cache_manager

cache = cache_manager.data_cache


class Locale:
    def __init__(self, code):
        self.code = code

    def __repr__(self):
        return f"Locale({self.code!r})"


@cache.memoize()
def price(item, currency="EUR"):
    return {"item": item, "currency": currency}


@cache.memoize()
def greeting(n, locale):
    return f"{n} in {locale.code}"
"""

APP = "bigapp.app:create_app()"


@dataclass
class BigApp:
    root: Path
    env: dict[str, str]
    app_redis: redis.Redis  # db 2 of the app's server (CACHE_CONFIG)
    server: ServerProcess
    other: ServerProcess
    decoy: ServerProcess

    def client(self, server: ServerProcess, db: int, password: str | None = None) -> redis.Redis:
        return redis.Redis(port=server.port, db=db, password=password)

    def cachectl(self, *args: str) -> subprocess.CompletedProcess:
        return run_console(*args, cwd=self.root, env=self.env)

    def run_in_app(self, code: str) -> str:
        """Run ``code`` inside the real app, in its own process, as the app would."""
        script = (
            "from bigapp.app import create_app\n"
            "from bigapp.extensions import cache_manager, reports\n"
            "app = create_app()\n"
            "with app.app_context():\n" + textwrap.indent(textwrap.dedent(code), "    ")
        )
        done = run_python("-c", script, cwd=self.root, env=self.env, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout.replace("Loaded your LOCAL configuration\n", "").replace(
            "plugins loaded: 3\n", ""
        )


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[ServerProcess, ServerProcess, ServerProcess]]:
    started = [start_redis("--requirepass", PASSWORD), start_redis(), start_redis()]
    yield started[0], started[1], started[2]
    for server in started:
        server.stop()


@pytest.fixture
def big(
    tmp_path: Path,
    servers: tuple[ServerProcess, ServerProcess, ServerProcess],
    memcached_address: str,
) -> BigApp:
    server, other, decoy = servers
    for target, password in ((server, PASSWORD), (other, None), (decoy, None)):
        redis.Redis(port=target.port, password=password).flushall()
    package = tmp_path / "bigapp"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, source in (
        ("config", CONFIG_MODULE),
        ("extensions", EXTENSIONS_MODULE),
        ("app", APP_MODULE),
        ("funcs", FUNCS_MODULE),
    ):
        (package / f"{name}.py").write_text(textwrap.dedent(source))
    (tmp_path / "files").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CACHECTL_", "FLASK_"))}
    env.update(
        BIG_REDIS_PORT=str(server.port),
        BIG_REDIS_PASSWORD=PASSWORD,
        OTHER_REDIS_PORT=str(other.port),
        BIG_MEMCACHED=memcached_address,
        BIG_CACHE_DIR=str(tmp_path / "files"),
    )
    app_redis = redis.Redis(port=server.port, db=2, password=PASSWORD)
    return BigApp(tmp_path, env, app_redis, server, other, decoy)


def config_of(big: BigApp, *selection: str) -> dict:
    result = big.cachectl("--app", APP, *selection, "--json", "config")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_config_lists_every_cache_by_its_names_with_clean_stdout(big: BigApp) -> None:
    result = big.cachectl("--app", APP, "--json", "config")
    assert result.returncode == 0, result.stderr
    caches = json.loads(result.stdout)["caches"]  # stdout is one JSON document
    assert b"Loaded your LOCAL configuration" in result.stderr  # the app's prints
    assert b"CACHE_WARMUP_EXECUTORS" not in result.stderr and b"CACHE_CONFIG" not in result.stderr
    names = {cache["index"]: cache["names"] for cache in caches}
    assert names[0] == ["CACHE_CONFIG", "bigapp.extensions:cache_manager.cache"]
    assert names[1] == ["DATA_CACHE_CONFIG", "bigapp.extensions:cache_manager.data_cache"]
    assert "MEMO_CACHE_CONFIG" in names[3]  # found by content: init_app got a copy
    assert len(names[5]) == 1 and names[5][0].endswith(":reports")  # an import path
    assert [cache["name"] for cache in caches][:2] == ["CACHE_CONFIG", "DATA_CACHE_CONFIG"]

    text = big.cachectl("--app", APP, "config")
    assert text.returncode == 0
    assert b"Loaded your LOCAL" not in text.stdout and b"pick one with --cache" in text.stdout
    assert f"redis://127.0.0.1:{big.server.port}/3".encode() in text.stdout


@pytest.mark.parametrize(
    "spelling",
    ["DATA_CACHE_CONFIG", "data", "1", "bigapp.extensions:cache_manager.data_cache"],
)
def test_a_cache_is_picked_by_any_of_its_names(big: BigApp, spelling: str) -> None:
    settings = config_of(big, "--cache", spelling)["settings"]
    assert settings["CACHE_KEY_PREFIX"]["value"] == "big_data_"
    assert settings["CACHE_REDIS_PORT"]["value"] == big.server.port
    assert settings["CACHE_REDIS_DB"]["value"] == 3
    assert settings["CACHE_REDIS_PASSWORD"]["value"] == "****"
    assert settings["CACHE_REDIS_PORT"]["source"].endswith("live backend")
    assert settings["CACHE_DEFAULT_TIMEOUT"]["value"] == 600


def test_an_attribute_path_that_discovery_cannot_see_still_resolves(big: BigApp) -> None:
    # Named by the path the operator knows, whichever name the app's modules offer first.
    settings = config_of(big, "--cache", "bigapp.extensions:cache_manager._files_cache")["settings"]
    assert settings["CACHE_TYPE"]["value"] == "FileSystemCache"
    assert settings["CACHE_DIR"]["value"] == str(big.root / "files")


def test_unknown_or_ambiguous_names_exit_2_with_the_choices(big: BigApp) -> None:
    result = big.cachectl("--app", APP, "--cache", "dat", "get", "k")
    assert result.returncode == 2
    assert b"DATA_CACHE_CONFIG" in result.stderr and b"Traceback" not in result.stderr
    several = big.cachectl("--app", APP, "get", "k")
    assert several.returncode == 2 and b"several caches" in several.stderr


@pytest.mark.parametrize(
    ("cache", "attribute", "server", "db", "prefix"),
    [
        ("CACHE_CONFIG", "cache_manager.cache", "server", 2, "big_"),
        ("data", "cache_manager.data_cache", "server", 3, "big_data_"),
        ("filter_state", "cache_manager.filter_state_cache", "other", 0, "big_filter_"),
        ("bigapp.extensions:reports", "reports", "other", 5, "big_reports_"),
    ],
)
def test_every_command_reaches_the_apps_own_server_database_and_prefix(
    big: BigApp, cache: str, attribute: str, server: str, db: int, prefix: str
) -> None:
    big.run_in_app(f"{attribute}.set('menu', ['soup'])\n{attribute}.set('visits', 3)\n")
    target = getattr(big, server)
    app_side = big.client(target, db, PASSWORD if server == "server" else None)
    decoy = big.client(big.decoy, db)
    decoy.set(f"{prefix}menu", b"decoy")
    decoy.set(f"{prefix}visits", b"7")
    neighbour = big.app_redis if prefix != "big_" else big.client(big.server, 3, PASSWORD)
    neighbour.set("big_data_menu" if prefix == "big_" else "big_neighbour", b"stays")

    got = big.cachectl("--app", APP, "--cache", cache, "get", "menu", "visits")
    assert got.returncode == 0, got.stderr
    assert got.stdout == b"menu: ['soup']\nvisits: 3\n"

    counted = big.cachectl("--app", APP, "--cache", cache, "--json", "keys", "--count")
    assert json.loads(counted.stdout)["count"] == 2

    cleared = big.cachectl("--app", APP, "--cache", cache, "clear", "--yes")
    assert cleared.returncode == 0, cleared.stderr
    assert app_side.keys(f"{prefix}*") == []
    assert decoy.get(f"{prefix}menu") == b"decoy" and decoy.get(f"{prefix}visits") == b"7"
    assert neighbour.dbsize() == 1  # the app's other cache on that server keeps its keys


def test_memcached_and_a_directory_given_to_init_app(big: BigApp) -> None:
    big.run_in_app(
        "cache_manager._memo_cache.set('m', {'from': 'memcached'})\n"
        "cache_manager._files_cache.set('f', {'from': 'files'})\n"
    )
    memo = big.cachectl("--app", APP, "--cache", "MEMO_CACHE_CONFIG", "get", "m")
    assert memo.stdout == b"{'from': 'memcached'}\n", memo.stderr
    files = big.cachectl("--app", APP, "--cache", "files", "get", "f")
    assert files.stdout == b"{'from': 'files'}\n", files.stderr


def test_the_apps_config_module_names_its_caches(big: BigApp) -> None:
    for spelling in ("DATA_CACHE_CONFIG", "data"):
        result = big.cachectl(
            "--config", "bigapp/config.py", "--cache", spelling, "--json", "config"
        )
        assert result.returncode == 0, result.stderr
        settings = json.loads(result.stdout)["settings"]
        assert settings["CACHE_KEY_PREFIX"]["value"] == "big_data_"
        assert settings["CACHE_TYPE"]["value"] == "RedisCache"
    big.run_in_app("cache_manager.data_cache.set('k', 'v')\n")
    got = big.cachectl("--config", "bigapp/config.py", "--cache", "data", "get", "k")
    assert got.stdout == b"v\n", got.stderr


def test_a_config_file_found_here_wins_over_an_exported_flask_app(big: BigApp) -> None:
    (big.root / "cachectl.toml").write_text(
        f'CACHE_TYPE = "RedisCache"\nCACHE_REDIS_URL = "redis://127.0.0.1:{big.other.port}/0"\n'
        'CACHE_KEY_PREFIX = "ops_"\n'
    )
    big.client(big.other, 0).set("ops_k", b"!" + pickle.dumps("from the file's server"))
    env = {**big.env, "FLASK_APP": "no_such_module_on_this_host"}
    result = run_console("get", "k", cwd=big.root, env=env)
    assert result.stdout == b"from the file's server\n", result.stderr
    (big.root / "cachectl.toml").unlink()
    without_file = run_console("get", "k", cwd=big.root, env=env)
    assert without_file.returncode == 2 and b"could not load the app" in without_file.stderr


def test_object_arguments_are_given_by_their_repr(big: BigApp) -> None:
    key = big.run_in_app(
        "from bigapp.funcs import greeting, Locale\n"
        "greeting(1, Locale('en'))\n"
        "greeting(2, Locale('en'))\n"
        "print(greeting.make_cache_key(greeting.uncached, 1, Locale('en')))\n"
    ).strip()
    data = big.client(big.server, 3, PASSWORD)
    assert data.exists(f"big_data_{key}")
    result = big.cachectl(
        "--app", APP, "--cache", "data", "--json",
        "delete-memoized", "bigapp.funcs.greeting", "1", "--repr", "Locale('en')",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["deleted"] == [key]
    assert not data.exists(f"big_data_{key}")
    assert len(data.keys("big_data_*")) == 2  # the other call and the version key stay

    # Its position among the other arguments is kept.
    swapped = big.cachectl(
        "--app", APP, "--cache", "data", "--json", "delete-memoized", "--dry-run",
        "bigapp.funcs.greeting", "--repr", "Locale('en')", "2",
    )  # fmt: skip
    other_key = big.run_in_app(
        "from bigapp.funcs import greeting, Locale\n"
        "print(greeting.make_cache_key(greeting.uncached, Locale('en'), 2))\n"
    ).strip()
    assert json.loads(swapped.stdout)["deleted"] == [other_key]


def test_written_config_runs_without_the_app_and_derives_the_same_keys(big: BigApp) -> None:
    written = big.cachectl("--app", APP, "config", "--write", "cachectl.toml")
    assert written.returncode == 0, written.stderr
    text = (big.root / "cachectl.toml").read_text()
    assert PASSWORD not in text
    assert "FLASK_CACHE_REDIS_PASSWORD" in text and "compat = " in text
    again = big.cachectl("--app", APP, "config", "--write", "cachectl.toml")
    assert again.returncode == 2 and b"--force" in again.stderr

    big.run_in_app(
        "from bigapp.funcs import price\nprice('tea')\ncache_manager.data_cache.set('k', 'v')\n"
    )
    env = {**big.env, "FLASK_CACHE_REDIS_PASSWORD": PASSWORD}
    listed = json.loads(big.cachectl("--app", APP, "--json", "config").stdout)["caches"]
    names = [cache["name"] for cache in listed]
    assert names[1] == "DATA_CACHE_CONFIG"
    for name in names:
        from_app = config_of(big, "--cache", name)["settings"]
        # The secret comes back from the environment, for the caches that have one.
        secret = (
            {"FLASK_CACHE_REDIS_PASSWORD": PASSWORD} if "CACHE_REDIS_PASSWORD" in from_app else {}
        )
        from_file = json.loads(
            run_console(
                "--config",
                "cachectl.toml",
                "--env",
                "--cache",
                name,
                "--json",
                "config",
                cwd=big.root,
                env={**big.env, **secret},
            ).stdout
        )["settings"]
        assert {k: v["value"] for k, v in from_file.items()} == {
            k: v["value"] for k, v in from_app.items()
        }

    call = ("delete-memoized", "--dry-run", "bigapp.funcs.price", "tea")
    in_app_mode = big.cachectl("--app", APP, "--cache", "data", "--json", *call)
    config_only = run_console(
        "--env", "--cache", "data", "--json", *call, cwd=big.root, env=env
    )  # the cachectl.toml here is found by itself
    assert in_app_mode.returncode == config_only.returncode == 0, config_only.stderr
    assert json.loads(config_only.stdout)["deleted"] == json.loads(in_app_mode.stdout)["deleted"]
    got = run_console("--env", "--cache", "data", "get", "k", cwd=big.root, env=env)
    assert got.stdout == b"v\n", got.stderr


ODD_APP = """
import os
import pickle

import redis
from flask_caching.backends.base import BaseCache
from flask import Flask
from flask_caching import Cache
from flask_caching.backends import SASLMemcachedCache


class CompositeRedisCache(BaseCache):
    '''A custom backend that keeps its own client: nothing outside can see where.'''

    def __init__(self, url, prefix):
        super().__init__()
        self.client = redis.Redis.from_url(url)
        self.key_prefix = prefix

    @classmethod
    def factory(cls, app, config, args, kwargs):
        return cls(os.environ["ODD_REDIS_URL"], config["CACHE_KEY_PREFIX"])

    def get(self, key):
        raw = self.client.get(self.key_prefix + key)
        return None if raw is None else pickle.loads(raw)

    def set(self, key, value, timeout=None):
        return self.client.set(self.key_prefix + key, pickle.dumps(value))

    def delete(self, key):
        return bool(self.client.delete(self.key_prefix + key))


custom = Cache()
sasl = Cache()


def create_app(kind):
    app = Flask(__name__)
    if kind == "sasl-init":
        sasl.init_app(
            app,
            {
                "CACHE_TYPE": "SASLMemcachedCache",
                "CACHE_MEMCACHED_SERVERS": [os.environ["ODD_SASL_MEMCACHED"]],
                "CACHE_MEMCACHED_USERNAME": os.environ["ODD_SASL_USER"],
                "CACHE_MEMCACHED_PASSWORD": os.environ["ODD_SASL_PASSWORD"],
                "CACHE_KEY_PREFIX": "odd_",
            },
        )
    elif kind == "custom":
        custom.init_app(
            app, {"CACHE_TYPE": "oddapp.CompositeRedisCache", "CACHE_KEY_PREFIX": "odd_"}
        )
    else:
        # Registered by hand, without init_app: the credentials are nowhere to be read.
        app.extensions["cache"] = {
            sasl: SASLMemcachedCache(
                servers=[os.environ["ODD_MEMCACHED"]], username="u", password="p"
            )
        }
    return app
"""


@pytest.fixture
def odd(tmp_path: Path, redis_target, memcached_address: str) -> dict[str, str]:
    (tmp_path / "oddapp.py").write_text(textwrap.dedent(ODD_APP))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CACHECTL_", "FLASK_"))}
    env.update(ODD_REDIS_URL=redis_target.url, ODD_MEMCACHED=memcached_address)
    return env


def test_sasl_credentials_given_to_init_app_are_used(
    tmp_path: Path, odd: dict[str, str], sasl_memcached_address: str
) -> None:
    import pylibmc

    env = {
        **odd,
        "ODD_SASL_MEMCACHED": sasl_memcached_address,
        "ODD_SASL_USER": SASL_USER,
        "ODD_SASL_PASSWORD": SASL_PASSWORD,
    }
    app = "oddapp:create_app('sasl-init')"
    stored = run_console("--app", app, "set", "k", "over SASL", cwd=tmp_path, env=env)
    assert stored.returncode == 0, stored.stderr
    client = pylibmc.Client(
        [sasl_memcached_address], binary=True, username=SASL_USER, password=SASL_PASSWORD
    )
    assert client.get("odd_k") == "over SASL"
    shown = json.loads(run_console("--app", app, "--json", "config", cwd=tmp_path, env=env).stdout)
    assert shown["settings"]["CACHE_MEMCACHED_PASSWORD"]["value"] == "****"


def test_a_custom_backend_class_is_used_as_the_app_built_it(
    tmp_path: Path, odd: dict[str, str], redis_target
) -> None:
    app = "oddapp:create_app('custom')"
    stored = run_console("--app", app, "set", "k", "via cachectl", cwd=tmp_path, env=odd)
    assert stored.returncode == 0, stored.stderr
    assert pickle.loads(redis_target.client.get("odd_k")) == "via cachectl"
    where = run_console("--app", app, "--json", "config", cwd=tmp_path, env=odd)
    assert json.loads(where.stdout)["settings"]["CACHE_TYPE"]["value"] == (
        "oddapp.CompositeRedisCache"
    )


def test_settings_the_live_backend_hides_are_asked_for_not_assumed(
    tmp_path: Path, odd: dict[str, str]
) -> None:
    app = "oddapp:create_app('sasl')"
    result = run_console("--app", app, "get", "k", cwd=tmp_path, env=odd)
    assert result.returncode == 2
    assert b"cannot read CACHE_MEMCACHED_USERNAME, CACHE_MEMCACHED_PASSWORD" in result.stderr
    assert b"Traceback" not in result.stderr
