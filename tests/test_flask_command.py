"""``flask cachectl …``: cachectl inside Flask's own CLI, with Flask loading the app.

Run through the real ``flask`` command of the test environment, where installing
cachectl registered the group through the ``flask.commands`` entry point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import RedisTarget

FLASK = Path(sys.executable).with_name("flask")

SHOP = """
from flask import Flask
from flask_caching import Cache

cache = Cache()
CALLS = []


@cache.memoize()
def price(item):
    CALLS.append(item)
    return {"item": item, "price": 10 * item}


def create_app():
    app = Flask(__name__)
    app.config.update(
        CACHE_TYPE="RedisCache", CACHE_REDIS_URL="{url}", CACHE_KEY_PREFIX="shop_"
    )
    cache.init_app(app)
    return app
"""


@pytest.fixture
def shop(tmp_path: Path, redis_target: RedisTarget) -> Path:
    (tmp_path / "shop.py").write_text(textwrap.dedent(SHOP).replace("{url}", redis_target.url))
    return tmp_path


def flask(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "CACHECTL_"))}
    return subprocess.run(
        [str(FLASK), *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def fill(shop: Path) -> None:
    """The app itself caches two results."""
    script = (
        "import shop; app = shop.create_app()\nwith app.app_context(): shop.price(1); shop.price(2)"
    )
    subprocess.run([sys.executable, "-c", script], cwd=shop, check=True, timeout=60)


def test_the_group_is_listed_in_flasks_help(shop: Path) -> None:
    result = flask(shop, "--app", "shop:create_app", "--help")
    assert result.returncode == 0, result.stderr
    assert (
        "cachectl" in result.stdout and "Administer the app's Flask-Caching cache" in result.stdout
    )


def test_delete_memoized_in_flask_removes_what_the_app_cached(
    shop: Path, redis_target: RedisTarget
) -> None:
    fill(shop)
    entries = {k for k in redis_target.client.scan_iter("shop_*") if not k.endswith(b"memver")}
    assert len(entries) == 2

    result = flask(
        shop, "--app", "shop:create_app", "cachectl", "delete-memoized", "shop.price", "1"
    )

    assert result.returncode == 0, result.stderr
    assert "removed 1 key\n" in result.stdout
    left = {k for k in redis_target.client.scan_iter("shop_*") if not k.endswith(b"memver")}
    assert len(left) == 1 and left < entries


def test_the_same_json_and_exit_codes_as_cachectl(shop: Path) -> None:
    fill(shop)
    keys = flask(shop, "--app", "shop:create_app", "cachectl", "keys", "--json")
    assert keys.returncode == 0, keys.stderr
    assert len(json.loads(keys.stdout)["keys"]) == 3

    typo = flask(shop, "--app", "shop:create_app", "cachectl", "delete-memoized", "shop.pirce")
    assert typo.returncode == 2
    assert (
        typo.stderr.strip() == "error: module shop has no attribute 'pirce' (did you mean price?)"
    )

    missing = flask(shop, "--app", "shop:create_app", "cachectl", "get", "nope")
    assert missing.returncode == 1 and "not found: nope" in missing.stderr


def test_flask_app_from_the_environment_and_discovery(shop: Path) -> None:
    fill(shop)
    by_env = flask(shop, "cachectl", "--json", "stats", env={"FLASK_APP": "shop:create_app"})
    assert by_env.returncode == 0, by_env.stderr
    assert json.loads(by_env.stdout)["total"] == 3

    # No --app and no FLASK_APP: Flask finds app.py in the working directory.
    (shop / "app.py").write_text("from shop import create_app\napp = create_app()\n")
    found = flask(shop, "cachectl", "--json", "stats")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["total"] == 3


def test_every_flask_command_pays_nothing_for_the_plugin() -> None:
    """Flask imports plugin commands whenever ``flask`` starts: ours imports only Click."""
    probe = "import sys, cachectl.flask_command; print(sorted(m for m in sys.modules "
    probe += "if m.startswith(('cachectl.cli', 'cachectl.config', 'cachelib', 'redis'))))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_usage_error_is_one_line_as_in_cachectl(shop: Path) -> None:
    result = flask(shop, "--app", "shop:create_app", "cachectl", "get")
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == "error: Missing argument 'KEYS...'."
    assert "Traceback" not in result.stderr


def test_an_apps_own_cache_command_keeps_working_beside_cachectl(shop: Path) -> None:
    """Flask lets a plugin command replace the app's own command of the same name; apps
    have their own ``cache`` groups (udata's ``cache flush``), so cachectl's is named
    ``cachectl`` and installing it takes nothing away."""
    source = (shop / "shop.py").read_text()
    (shop / "shop.py").write_text(
        source.replace("    return app\n", "")
        + "\n    @app.cli.group('cache')\n    def own_cache():\n        pass\n\n"
        + "    @own_cache.command('flush')\n    def flush():\n"
        + "        print('flushed by the app')\n\n"
        + "    return app\n"
    )
    own = flask(shop, "--app", "shop:create_app", "cache", "flush")
    assert own.returncode == 0, own.stderr
    assert own.stdout == "flushed by the app\n"
    ours = flask(shop, "--app", "shop:create_app", "cachectl", "--json", "config")
    assert ours.returncode == 0, ours.stderr
