"""cachelib 0.17's ``memcache_client_lib`` decides the memcached client library, and with
it which of several servers a key goes to: cachectl uses the library the app uses, named
by the setting (config-only) or read from the live backend's client (--app), and says
which in ``config``. A real Flask app stores the keys through the library it was told to
use; cachectl must then find, read and delete them."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask_caching import Cache

from tests.conftest import run, run_console
from tests.servers import ServerProcess, start_memcached
from tests.test_memcached_listing import _flushed

NAMES = [f"item{n}" for n in range(24)]


@pytest.fixture(scope="module")
def servers() -> Any:
    first, second = start_memcached(), start_memcached()
    yield first, second
    first.stop()
    second.stop()


@pytest.fixture
def addresses(servers: tuple[ServerProcess, ServerProcess]) -> list[str]:
    return [_flushed(server) for server in servers]


def chosen_app(addresses: list[str], library: str) -> tuple[Flask, Cache]:
    """An app whose cachelib MemcachedCache uses ``library``: Flask-Caching 2.5.1's own
    MemcachedCache does not pass memcache_client_lib on (TypeError), cachelib's does."""
    app = Flask("chosen")
    app.config.update(
        CACHE_TYPE="cachelib.MemcachedCache",
        CACHE_ARGS=[addresses],
        CACHE_OPTIONS={"key_prefix": "app_", "memcache_client_lib": library},
    )
    return app, Cache(app)


def config_only(addresses: list[str], library: str | None) -> list[str]:
    args = ["--type", "MemcachedCache", "--key-prefix", "app_"]
    args += ["-o", f"CACHE_MEMCACHED_SERVERS={json.dumps(addresses)}"]
    if library is not None:
        args += ["-o", f'CACHE_OPTIONS={{"memcache_client_lib": "{library}"}}']
    return args


def found(args: list[str]) -> int:
    """How many of NAMES cachectl reads back, each from the server its library picks."""
    result = run(*args, "--json", "get", *NAMES)
    return sum(doc["found"] for doc in json.loads(result.stdout)["results"])


@pytest.mark.parametrize("library", ["memcache", "pylibmc"])
def test_config_only_uses_the_library_the_setting_names(addresses: list[str], library: str) -> None:
    app, cache = chosen_app(addresses, library)
    with app.app_context():
        for name in NAMES:
            cache.set(name, name.upper())
    package = type(app.extensions["cache"][cache]._client).__module__.split(".")[0]
    assert package == library  # the app really uses it

    args = config_only(addresses, library)
    shown = json.loads(run(*args, "--json", "config").stdout)
    assert shown["memcached_client"]["library"] == library
    assert "memcache_client_lib" in shown["memcached_client"]["why"]
    assert found(args) == len(NAMES)
    other = "pylibmc" if library == "memcache" else "memcache"
    # The other library sends some keys to the other server: the choice matters.
    assert found(config_only(addresses, other)) < len(NAMES)

    listed = run(*args, "--json", "keys")
    assert sorted(json.loads(listed.stdout)["keys"]) == sorted(NAMES)
    assert run(*args, "delete", "item3").exit_code == 0
    with app.app_context():
        assert cache.get("item3") is None and cache.get("item4") == "ITEM4"
    cleared = run(*args, "clear", "--yes")
    assert "removed 23 keys" in cleared.stdout, cleared.output
    with app.app_context():
        assert all(cache.get(name) is None for name in NAMES)


def test_without_the_setting_cachelibs_order_decides(
    addresses: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    shown = json.loads(run(*config_only(addresses, None), "--json", "config").stdout)
    assert shown["memcached_client"]["library"] == "pylibmc"
    monkeypatch.setitem(sys.modules, "pylibmc", None)  # as if it were not installed
    text = run(*config_only(addresses, None), "config").stdout
    assert "memcached client library: memcache (the first of" in text


@pytest.mark.parametrize(
    ("library", "words"),
    [("libmc", "libmc (memcache_client_lib 'libmc') is not supported"),
     ("google", "App Engine's memcache service"),
     ("pymemcache", "memcache_client_lib must be pylibmc, memcache, libmc or google")],
)  # fmt: skip
def test_a_library_cachectl_cannot_use_is_one_error_line(
    addresses: list[str], library: str, words: str
) -> None:
    result = run(*config_only(addresses, library), "keys")
    assert result.exit_code == 2, result.output
    assert words in result.stderr and result.stderr.count("error:") == 1
    assert "Traceback" not in result.stderr


APP_SOURCE = """
import os
from flask import Flask
from flask_caching import Cache

cache = Cache()


def create_app():
    app = Flask(__name__)
    app.config.update(
        CACHE_TYPE="cachelib.MemcachedCache",
        CACHE_ARGS=[os.environ["SHOP_MEMCACHED"].split(",")],
        CACHE_OPTIONS={"key_prefix": "app_", "memcache_client_lib": "memcache"},
    )
    cache.init_app(app)
    return app
"""


def test_app_mode_reads_the_library_from_the_live_backend(
    tmp_path: Path, addresses: list[str]
) -> None:
    """pylibmc is installed, so cachelib's order would pick it: the live client says
    python-memcached, and cachectl uses that, as ``config`` says."""
    package = tmp_path / "shopapp"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(APP_SOURCE))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CACHECTL_", "FLASK_"))}
    env["SHOP_MEMCACHED"] = ",".join(addresses)
    app, cache = chosen_app(addresses, "memcache")  # the same settings, in this process
    with app.app_context():
        for name in NAMES:
            cache.set(name, name.upper())

    def cachectl(*args: str) -> Any:
        return run_console("--app", "shopapp:create_app()", *args, cwd=tmp_path, env=env)

    shown = cachectl("--json", "config")
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert document["memcached_client"]["library"] == "memcache"
    got = cachectl("--json", "get", *NAMES)
    assert sum(doc["found"] for doc in json.loads(got.stdout)["results"]) == len(NAMES)
    assert cachectl("delete", "item5").returncode == 0
    with app.app_context():
        assert cache.get("item5") is None and cache.get("item6") == "ITEM6"
