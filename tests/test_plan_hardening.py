"""plan never misses silently: source in any encoding Python reads, source it cannot
compare, decorators reached through aliases or applied by a call, nested functions, and
apps with several caches. Each test builds a real git repository, and the plans run
through the installed command; applied plans go to a private redis-server.

(The bad-input corpus, tests/fuzz, plants files but cannot make a git history, so the
hostile sources of plan live here.)"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import RedisTarget, run_console
from tests.test_release_plan import git, release, write

EXT = """
from flask_caching import Cache

cache = Cache()
data_cache = Cache()
memo = cache.memoize
"""


def _repo(tmp_path: Path, files: dict[str, str], name: str = "app") -> Path:
    repo = tmp_path / name
    repo.mkdir()
    git(repo, "init", "-q")
    write(repo, files)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "v1")
    return repo


def _plan(repo: Path, *args: str, env: dict[str, str] | None = None) -> dict:
    done = run_console("--json", *args, cwd=repo, env=env)
    assert done.returncode == 0, done.stderr
    assert b"Traceback" not in done.stderr
    return json.loads(done.stdout)


def _commands(document: dict) -> list[str]:
    return [action["command"] for action in document["actions"]]


def test_a_coding_line_is_read_as_python_reads_it(tmp_path: Path) -> None:
    source = (
        "# -*- coding: latin-1 -*-\nfrom flask_caching import Cache\n\ncache = Cache()\n\n\n"
        "@cache.memoize()\ndef greet(name):\n    return 'h\xe9llo ' + name\n"
    )
    repo = tmp_path / "latin"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "greeting.py").write_bytes(source.encode("latin-1"))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "v1")
    (repo / "greeting.py").write_bytes(source.replace("h\xe9llo", "b\xe9njour").encode("latin-1"))
    git(repo, "commit", "-qam", "v2")
    document = _plan(repo, "plan", "--since", "HEAD~1")
    assert _commands(document) == ["delete-memoized greeting.greet"]
    assert document["needs_look"] == []


def test_source_that_cannot_be_compared_needs_a_look(tmp_path: Path) -> None:
    """Too deep to compare, not decodable, not parsing: listed, exit 0, no traceback."""
    long_sum = " + ".join(["x"] * 1200)
    memoized = "from ext import cache\n\n\n@cache.memoize()\n"
    repo = _repo(
        tmp_path,
        {
            "ext.py": EXT,
            "deep.py": f"{memoized}def f(x):\n    return {long_sum}\n",
            "broken.py": f"{memoized}def g(x):\n    return x\n",
        },
    )
    (repo / "deep.py").write_text(
        (repo / "deep.py").read_text().replace("return x", "return 2 * x")
    )
    (repo / "broken.py").write_bytes(
        b"from ext import cache\n\n# caf\xe9\ndef g(x):\n    return x\n"
    )
    git(repo, "commit", "-qam", "v2")
    done = run_console("plan", "--since", "HEAD~1", cwd=repo)
    assert done.returncode == 0, done.stderr
    assert b"Traceback" not in done.stderr and b"RecursionError" not in done.stderr
    assert b"warning: 2 changes need a look" in done.stderr
    document = _plan(repo, "plan", "--since", "HEAD~1")
    looks = {look["subject"]: look["reason"] for look in document["needs_look"]}
    assert "nested too deeply to compare" in looks["deep.py"]
    assert "not text in its declared encoding" in looks["broken.py"]
    assert document["actions"] == []


ALIASES = {
    "shop/__init__.py": "",
    "shop/ext.py": EXT,
    "shop/helpers.py": "def compute(x):\n    return x + 1\n",
    "shop/models.py": """
        from flask_caching import Cache

        from . import helpers
        from .ext import cache as c
        from .ext import data_cache, memo

        local_memo = c.memoize
        made = c.memoize(timeout=60)


        @memo(300)
        def through_imported_alias(x):
            return x


        @local_memo
        def through_local_alias(x):
            return x


        @made
        def through_made_decorator(x):
            return x


        def plain(x):
            return x


        price = c.memoize(timeout=5)(plain)
        compute = data_cache.memoize()(helpers.compute)


        def view():
            return "page"


        cached_view = c.cached(key_prefix="front")(view)


        def factory():
            @data_cache.memoize()
            def inner(x):
                return x

            return inner
        """,
}


def test_decorators_through_aliases_and_calls_are_found(tmp_path: Path) -> None:
    repo = _repo(tmp_path, ALIASES)
    edits = [
        ("through_imported_alias(x):\n    return x", "through_imported_alias(x):\n    return 1"),
        ("through_local_alias(x):\n    return x", "through_local_alias(x):\n    return 2"),
        ("through_made_decorator(x):\n    return x", "through_made_decorator(x):\n    return 3"),
        ("def plain(x):\n    return x", "def plain(x):\n    return 4"),
        ('return "page"', 'return "page v2"'),
        ("def inner(x):\n        return x", "def inner(x):\n        return 5"),
    ]
    release(repo, {"shop/models.py": edits, "shop/helpers.py": [("x + 1", "x + 2")]}, "v2")
    document = _plan(repo, "plan", "--since", "HEAD~1")
    commands = _commands(document)
    # Two caches in the repository: each command names its own.
    main, data = "--cache shop.ext:cache", "--cache shop.ext:data_cache"
    assert sorted(commands) == sorted(
        [
            f"{main} delete-memoized shop.models.through_imported_alias",
            f"{main} delete-memoized shop.models.through_local_alias",
            f"{main} delete-memoized shop.models.through_made_decorator",
            f"{main} delete-memoized shop.models.plain",  # its keys name the wrapped function
            f"{data} delete-memoized shop.helpers.compute",  # cached by another module's call
            f"{data} delete-memoized 'shop.models.factory.<locals>.inner' --signature '(x)'",
            f"{main} delete -- front",
        ]
    ), commands
    assert document["needs_look"] == []


def test_a_lambda_cached_by_a_call_needs_a_look(tmp_path: Path) -> None:
    repo = _repo(
        tmp_path,
        {"ext.py": EXT, "m.py": "from ext import cache\n\nf = cache.memoize(5)(lambda x: x)\n"},
    )
    release(repo, {"m.py": [("lambda x: x", "lambda x: x + 1")]}, "v2")
    [look] = _plan(repo, "plan", "--since", "HEAD~1")["needs_look"]
    assert "wraps a function the source cannot name" in look["reason"]


MULTI_APP = """
import os

from flask import Flask

from shop.ext import cache, data_cache


def create_app():
    app = Flask(__name__)
    url = os.environ["SHOP_REDIS_URL"]
    cache.init_app(app, config={"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": url,
                                "CACHE_KEY_PREFIX": "main_"})
    data_cache.init_app(app, config={"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": url,
                                     "CACHE_KEY_PREFIX": "data_"})
    return app
"""

POPULATE = """
from shop.app import create_app
from shop import models

app = create_app()
with app.app_context():
    models.through_imported_alias(1)
    models.price(1)
    models.compute(1)
    models.factory()(1)
"""


@pytest.fixture
def two_caches(tmp_path: Path, redis_target: RedisTarget) -> tuple[Path, dict[str, str]]:
    """The aliases app with two caches on one Redis (prefixes main_ and data_), filled by
    the old release, and the release on top."""
    files = {**ALIASES, "shop/app.py": MULTI_APP}
    files["shop/__init__.py"] = ""
    repo = _repo(tmp_path, files)
    env = {**os.environ, "SHOP_REDIS_URL": redis_target.url, "PYTHONPATH": str(repo)}
    done = subprocess.run(
        [sys.executable, "-B", "-c", POPULATE], cwd=repo, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    edits = [
        ("through_imported_alias(x):\n    return x", "through_imported_alias(x):\n    return 1"),
        ("def plain(x):\n    return x", "def plain(x):\n    return 4"),
        ("def inner(x):\n        return x", "def inner(x):\n        return 5"),
    ]
    release(repo, {"shop/models.py": edits, "shop/helpers.py": [("x + 1", "x + 2")]}, "v2")
    return repo, env


def _versions(client: object) -> dict[str, bytes]:
    return {k.decode(): client.get(k) for k in client.keys("*_memver")}  # type: ignore[attr-defined]


def test_apply_runs_each_action_on_its_own_cache(
    two_caches: tuple[Path, dict[str, str]], redis_target: RedisTarget
) -> None:
    repo, env = two_caches
    before = _versions(redis_target.client)
    assert set(before) == {
        "main_shop.models.through_imported_alias_memver",
        "main_shop.models.plain_memver",
        "data_shop.helpers.compute_memver",
        "data_shop.models.factory.locals.inner_memver",
    }
    app = ("--app", "shop.app:create_app()", "--compat", "2.5")
    chosen = run_console(*app, "--json", "--cache", "0", "plan", "--since", "HEAD~1", "--apply",
                         cwd=repo, env=env)  # fmt: skip
    assert chosen.returncode == 0, chosen.stderr
    assert b"2 actions of other caches left out (--cache shop.ext:cache)" in chosen.stderr
    after_one = _versions(redis_target.client)
    changed = {name for name in before if after_one[name] != before[name]}
    assert changed == {name for name in before if name.startswith("main_")}

    every = run_console(*app, "--json", "--cache", "all", "plan", "--since", "HEAD~1", "--apply",
                        cwd=repo, env=env)  # fmt: skip
    assert every.returncode == 0, every.stderr
    document = json.loads(every.stdout)
    assert {(done["cache"], done["version_key_existed"]) for done in document["applied"]} == {
        ("shop.ext:cache", True),
        ("shop.ext:data_cache", True),
    }
    after_all = _versions(redis_target.client)
    assert all(after_all[name] != after_one[name] for name in before)
    assert b"found nothing" not in every.stderr


def test_one_configured_cache_for_two_in_the_source_is_not_guessed(
    two_caches: tuple[Path, dict[str, str]], redis_target: RedisTarget
) -> None:
    repo, env = two_caches
    before = _versions(redis_target.client)
    done = run_console("--url", redis_target.url, "--key-prefix", "main_", "--json", "plan",
                       "--since", "HEAD~1", "--apply", cwd=repo, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["applied"] == [] and document["actions"] == []
    assert all("describes one" in look["reason"] for look in document["needs_look"])
    assert len(document["needs_look"]) == 4
    assert _versions(redis_target.client) == before


def test_a_missing_entry_is_a_warning(tmp_path: Path, redis_target: RedisTarget) -> None:
    repo = _repo(
        tmp_path,
        {"ext.py": EXT, "m.py": "from ext import memo\n\n\n@memo()\ndef f():\n    return 1\n"},
    )
    release(repo, {"m.py": [("return 1", "return 2")]}, "v2")
    done = run_console("--url", redis_target.url, "plan", "--since", "HEAD~1", "--apply", cwd=repo)
    assert done.returncode == 0, done.stderr
    assert "warning: delete-memoized m.f found nothing" in done.stderr.decode()


CONFIG = """
[caches."shop.ext:cache"]
CACHE_TYPE = "RedisCache"
CACHE_REDIS_URL = "{url}"
CACHE_KEY_PREFIX = "main_"

[caches."shop.ext:data_cache"]
CACHE_TYPE = "RedisCache"
CACHE_REDIS_URL = "{url}"
CACHE_KEY_PREFIX = "data_"
"""


def test_every_printed_command_runs_as_printed(
    two_caches: tuple[Path, dict[str, str]], redis_target: RedisTarget, tmp_path: Path
) -> None:
    """Each line of several plans, run by the installed command in the checkout (its
    modules importable): done (0) or nothing cached (1), never a usage error (2)."""
    from tests.test_release_plan import APP as SHOP_APP
    from tests.test_release_plan import EXT as SHOP_EXT
    from tests.test_release_plan import MODELS, RELEASE, TEMPLATE, VIEWS

    repo, env = two_caches
    (repo / "cachectl.toml").write_text(CONFIG.format(url=redis_target.url))
    shop = _repo(
        tmp_path,
        {
            "src/shop/__init__.py": "",
            "src/shop/ext.py": SHOP_EXT,
            "src/shop/app.py": SHOP_APP,
            "src/shop/models.py": MODELS,
            "src/shop/views.py": VIEWS,
            "src/shop/templates/base.html": TEMPLATE,
        },
        name="shop",
    )
    release(shop, {name: RELEASE[name] for name in RELEASE}, "v2")
    shop_env = {**os.environ, "PYTHONPATH": str(shop / "src")}
    plans = [
        (repo, env, ()),
        (shop, shop_env, ("--url", redis_target.url, "--compat", "2.5")),
    ]
    ran = 0
    for checkout, environment, target in plans:
        document = _plan(checkout, "plan", "--since", "HEAD~1", env=environment)
        assert document["actions"]
        for action in document["actions"]:
            words = shlex.split(action["command"])
            done = run_console(*target, *words, cwd=checkout, env=environment)
            assert done.returncode in (0, 1), (action["command"], done.stderr)
            ran += 1
    assert ran >= 15
