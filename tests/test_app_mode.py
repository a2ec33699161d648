"""--app: the real Flask app is imported with Flask's loader and its Cache objects are read."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.conftest import RedisTarget, run_console, run_python

APP_SOURCE = """
import os
from flask import Flask
from flask_caching import Cache

cache = Cache()
sessions = Cache()


def create_app(kind="redis"):
    app = Flask(__name__)
    if kind == "simple":
        app.config["CACHE_TYPE"] = "SimpleCache"
    elif kind == "broken":
        raise RuntimeError("database is down")
    else:
        app.config.update(
            CACHE_TYPE="RedisCache",
            CACHE_REDIS_URL=os.environ["SHOP_REDIS_URL"],
            CACHE_KEY_PREFIX="shop_",
            CACHE_DEFAULT_TIMEOUT=120,
        )
    cache.init_app(app)
    if kind == "two":
        # Given only to init_app: stored nowhere but in the live backend object.
        sessions.init_app(app, config={"CACHE_KEY_PREFIX": "sess_", "CACHE_DEFAULT_TIMEOUT": 60})
    return app
"""


@pytest.fixture
def shop(tmp_path: Path, redis_target: RedisTarget) -> dict[str, str]:
    package = tmp_path / "shopapp"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(APP_SOURCE))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CACHECTL_", "FLASK_"))}
    env["SHOP_REDIS_URL"] = redis_target.url
    return env


def in_app(tmp_path: Path, env: dict[str, str], code: str, kind: str = "redis") -> str:
    """Run ``code`` inside the shop app (a separate process, as the real app would be)."""
    script = (
        f"from shopapp import create_app, cache, sessions\n"
        f"app = create_app({kind!r})\n"
        f"with app.app_context():\n" + textwrap.indent(textwrap.dedent(code), "    ")
    )
    done = run_python("-c", script, cwd=tmp_path, env=env, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def cachectl(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return run_console(*args, cwd=tmp_path, env=env)


def test_app_settings_are_taken_from_the_live_app(tmp_path: Path, shop: dict[str, str]) -> None:
    result = cachectl(tmp_path, shop, "--app", "shopapp:create_app()", "--json", "config")
    assert result.returncode == 0, result.stderr
    settings = json.loads(result.stdout)["settings"]
    assert settings["CACHE_KEY_PREFIX"]["value"] == "shop_"
    assert settings["CACHE_DEFAULT_TIMEOUT"]["value"] == 120
    assert settings["CACHE_KEY_PREFIX"]["source"].startswith("app shopapp:create_app()")


def test_reads_writes_and_clears_what_the_app_uses(tmp_path: Path, shop: dict[str, str]) -> None:
    in_app(tmp_path, shop, "cache.set('menu', ['soup', 'bread'])\ncache.set('visits', 3)\n")

    got = cachectl(tmp_path, shop, "--app", "shopapp:create_app()", "get", "menu")
    assert got.stdout == b"['soup', 'bread']\n"

    cachectl(tmp_path, shop, "--app", "shopapp:create_app()", "set", "banner", "closed today")
    assert in_app(tmp_path, shop, "print(cache.get('banner'))\n") == "closed today\n"

    cleared = cachectl(tmp_path, shop, "--app", "shopapp:create_app()", "clear", "--yes")
    assert cleared.returncode == 0
    assert (
        in_app(tmp_path, shop, "print(cache.get('menu'), cache.get('visits'))\n") == "None None\n"
    )


def test_flask_app_variable_is_honoured(tmp_path: Path, shop: dict[str, str]) -> None:
    in_app(tmp_path, shop, "cache.set('k', 'from the app')\n")
    result = cachectl(tmp_path, {**shop, "FLASK_APP": "shopapp:create_app()"}, "get", "k")
    assert result.stdout == b"from the app\n", result.stderr
    via_cachectl_app = cachectl(
        tmp_path, {**shop, "CACHECTL_APP": "shopapp:create_app()"}, "get", "k"
    )
    assert via_cachectl_app.stdout == b"from the app\n"


def test_several_caches_are_picked_by_index_or_import_path(
    tmp_path: Path, shop: dict[str, str]
) -> None:
    app_arg = "shopapp:create_app('two')"
    in_app(tmp_path, shop, "sessions.set('s1', 'session data')\n", kind="two")

    ambiguous = cachectl(tmp_path, shop, "--app", app_arg, "get", "s1")
    assert ambiguous.returncode == 2
    assert b"several caches" in ambiguous.stderr and b"shopapp:sessions" in ambiguous.stderr

    for pick in ("1", "shopapp:sessions"):
        result = cachectl(tmp_path, shop, "--app", app_arg, "--cache", pick, "get", "s1")
        assert result.stdout == b"session data\n", result.stderr

    document = json.loads(
        cachectl(tmp_path, shop, "--app", app_arg, "--cache", "1", "--json", "config").stdout
    )
    assert document["settings"]["CACHE_KEY_PREFIX"]["value"] == "sess_"
    assert document["settings"]["CACHE_DEFAULT_TIMEOUT"]["value"] == 60

    unknown = cachectl(tmp_path, shop, "--app", app_arg, "--cache", "shopapp:nope", "get", "s1")
    assert unknown.returncode == 2


def test_a_config_file_overrides_the_app(tmp_path: Path, shop: dict[str, str]) -> None:
    (tmp_path / "ops.toml").write_text('CACHE_KEY_PREFIX = "ops_"\n')
    result = cachectl(
        tmp_path, shop, "--app", "shopapp:create_app()", "--config", "ops.toml", "--json", "config"
    )
    settings = json.loads(result.stdout)["settings"]
    assert settings["CACHE_KEY_PREFIX"]["value"] == "ops_"
    assert settings["CACHE_TYPE"]["value"] == "RedisCache"


@pytest.mark.parametrize(
    ("app_arg", "message"),
    [
        ("shopapp:create_app('simple')", b"no outside tool can reach them"),
        ("shopapp:create_app('broken')", b"database is down"),
        ("no_such_app_module", b"could not load the app"),
        ("shopapp:missing_factory()", b"could not load the app"),
    ],
)
def test_app_problems_exit_2_with_one_line(
    tmp_path: Path, shop: dict[str, str], app_arg: str, message: bytes
) -> None:
    result = cachectl(tmp_path, shop, "--app", app_arg, "get", "k")
    assert result.returncode == 2
    assert message in result.stderr
    assert b"Traceback" not in result.stderr


def test_a_misspelled_module_with_the_app_loaded_is_exit_2_with_the_right_name(
    tmp_path: Path, shop: dict[str, str], redis_target: RedisTarget
) -> None:
    """With the app loaded, a module the app does not have is a typo, never a name to
    invalidate blindly (which would print "nothing is cached" and exit 0)."""
    (tmp_path / "shopapp" / "pricing.py").write_text(
        "from shopapp import cache\n\n@cache.memoize()\ndef price(item):\n    return 1\n"
    )
    in_app(tmp_path, shop, "from shopapp.pricing import price\nprice('tea')\n")
    before = sorted(redis_target.client.scan_iter("*"))
    for command in ("delete-memoized", "show-memoized"):
        typo = cachectl(
            tmp_path, shop, "--app", "shopapp:create_app()", command, "shopap.pricing.price"
        )
        assert typo.returncode == 2, typo.stderr
        stderr = typo.stderr.decode()
        assert "the app has no module 'shopap'" in stderr
        assert "did you mean shopapp.pricing.price?" in stderr
        assert "Traceback" not in stderr and len(stderr.splitlines()) == 1
    wrong_function = cachectl(
        tmp_path, shop, "--app", "shopapp:create_app()", "delete-memoized", "shopapp.pricing.prise"
    )
    assert wrong_function.returncode == 2 and b"did you mean price?" in wrong_function.stderr
    version_key = "shop_shopapp.pricing.price_memver"
    version = redis_target.client.get(version_key)
    assert sorted(redis_target.client.scan_iter("*")) == before
    right = cachectl(
        tmp_path, shop, "--app", "shopapp:create_app()", "delete-memoized", "shopapp.pricing.price"
    )
    assert right.returncode == 0, right.stderr
    assert redis_target.client.get(version_key) != version  # a new version was written
