"""show-memoized: what a real Flask-Caching app memoized, as an operator looks it up with
the installed ``cachectl`` (the app's own module importable from the current directory)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import RedisTarget, run_console

APP = """
from flask import Flask
from flask_caching import Cache

cache = Cache()


def create_app(config):
    app = Flask("showapp")
    app.config.update(config)
    cache.init_app(app)
    return app


@cache.memoize(300)
def price(item, currency="EUR"):
    return {"item": item, "currency": currency, "price": item * 10}
"""


def _app_dir(tmp_path: Path, config: dict[str, object], calls: str) -> Path:
    """A package ``showapp`` in ``tmp_path``, and ``calls`` run inside its app (by the real
    Flask-Caching, in a process of its own, as the app's workers would)."""
    (tmp_path / "showapp").mkdir()
    (tmp_path / "showapp" / "__init__.py").write_text(APP)
    script = textwrap.dedent(f"""
        from showapp import create_app, price
        app = create_app({config!r})
        with app.app_context():
            {calls}
    """)
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=True)
    return tmp_path


@pytest.fixture
def redis_app(tmp_path: Path, redis_target: RedisTarget) -> tuple[Path, list[str]]:
    config = {"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": redis_target.url}
    where = _app_dir(tmp_path, config, "price(1); price(2, currency='USD')")
    return where, ["--url", redis_target.url]


def test_the_function_shows_its_version_key_ttl_and_results(
    redis_app: tuple[Path, list[str]],
) -> None:
    where, target = redis_app
    done = run_console(*target, "--json", "show-memoized", "showapp.price", cwd=where)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    (version,) = document["version_keys"]
    assert version["key"] == "showapp.price_memver" and len(version["version"]) == 6
    assert 290 < version["ttl"] <= 300
    assert document["current_entries"] == 2


def test_one_call_shows_its_key_ttl_and_value(redis_app: tuple[Path, list[str]]) -> None:
    where, target = redis_app
    done = run_console(*target, "show-memoized", "showapp.price", "2", "--kw", "currency=USD",
                       cwd=where)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().splitlines()[-1] == "{'item': 2, 'currency': 'USD', 'price': 20}"
    as_json = run_console(*target, "--json", "show-memoized", "showapp.price", "1", cwd=where)
    call = json.loads(as_json.stdout)["call"]
    assert call["found"] is True and call["value"] == {"item": 1, "currency": "EUR", "price": 10}
    assert 290 < call["ttl"] <= 300


def test_a_call_not_stored_is_not_found_exit_1(redis_app: tuple[Path, list[str]]) -> None:
    where, target = redis_app
    done = run_console(*target, "show-memoized", "showapp.price", "3", cwd=where)
    assert done.returncode == 1
    assert done.stderr.decode().startswith("not found: ")
    assert "error" not in done.stderr.decode()


def test_a_mistyped_function_is_exit_2_and_names_the_right_one(
    redis_app: tuple[Path, list[str]],
) -> None:
    where, target = redis_app
    done = run_console(*target, "show-memoized", "showapp.prise", cwd=where)
    assert done.returncode == 2
    assert done.stderr.decode() == (
        "error: module showapp has no attribute 'prise' (did you mean price?)\n"
    )


def test_after_an_invalidation_the_new_version_holds_nothing(
    redis_app: tuple[Path, list[str]], redis_target: RedisTarget
) -> None:
    where, target = redis_app
    assert run_console(*target, "delete-memoized", "showapp.price", cwd=where).returncode == 0
    document = json.loads(
        run_console(*target, "--json", "show-memoized", "showapp.price", cwd=where).stdout
    )
    assert document["current_entries"] == 0
    assert redis_target.client.dbsize() == 3  # the two old results stay until they expire


def test_nothing_cached_is_exit_1_and_writes_nothing(redis_target: RedisTarget) -> None:
    done = run_console("--url", redis_target.url, "show-memoized", "nowhere.models:get_user")
    assert done.returncode == 1
    assert "nothing is cached: no version under nowhere.models.get_user_memver" in (
        done.stderr.decode()
    )
    assert redis_target.client.dbsize() == 0


def test_a_cache_directory_shows_the_call_but_cannot_count(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    config = {"CACHE_TYPE": "FileSystemCache", "CACHE_DIR": str(cache_dir)}
    where = _app_dir(tmp_path, config, "price(5)")
    target = ["--dir", str(cache_dir)]
    document = json.loads(
        run_console(*target, "--json", "show-memoized", "showapp.price", "5", cwd=where).stdout
    )
    assert document["current_entries"] is None
    assert "cannot list its keys" in document["not_counted"]
    assert document["call"]["value"] == {"item": 5, "currency": "EUR", "price": 50}
