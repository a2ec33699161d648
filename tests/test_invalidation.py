"""End to end: a real Flask app caches; cachectl, as a separate process, invalidates one
target; the app recomputes exactly that target and serves everything else from cache."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RedisTarget, run_console

SHOP = """
import collections
import os

from flask import Flask, render_template, request
from flask_caching import Cache

cache = Cache()
COMPUTED = collections.Counter()


def computed(*what):
    COMPUTED[what] += 1
    return COMPUTED[what]


@cache.memoize()
def get_user(user_id, role="member"):
    return {"id": user_id, "role": role, "run": computed("get_user", user_id, role)}


class Person:
    def __init__(self, pid):
        self.pid = pid

    def __repr__(self):
        return f"Person({self.pid})"

    @cache.memoize()
    def has_membership(self, role_id):
        return computed("has_membership", self.pid, role_id)


def create_app():
    app = Flask(__name__)
    app.config.update(
        CACHE_TYPE=os.environ["SHOP_CACHE_TYPE"],
        CACHE_REDIS_URL=os.environ.get("SHOP_REDIS_URL"),
        CACHE_DIR=os.environ.get("SHOP_CACHE_DIR"),
        CACHE_KEY_PREFIX="shop_",
        CACHE_DEFAULT_TIMEOUT=600,
    )
    cache.init_app(app)
    app.jinja_env.globals["computed"] = computed

    @app.route("/user/<name>")
    @cache.cached()
    def user_page(name):
        return f"{name}:{computed('user_page', name)}"

    @app.route("/search")
    @cache.cached(query_string=True)
    def search():
        return f"{computed('search', tuple(sorted(request.args.items(multi=True))))}"

    @app.route("/page/<name>")
    def page(name):
        return render_template("page.html", name=name)

    return app
"""

PAGE = """<main>
{% cache 600, "sidebar", name %}{{ computed("sidebar", name) }}{% endcache %}
{% cache 600 %}{{ computed("footer") }}{% endcache %}
</main>
"""

TARGETS = [
    ("get_user", 1, "member"),
    ("get_user", 2, "member"),
    ("get_user", 1, "admin"),
    ("has_membership", 3, 5),
    ("has_membership", 4, 5),
    ("user_page", "alice"),
    ("user_page", "bob"),
    ("search", (("page", "2"), ("q", "a"))),
    ("search", (("q", "b"),)),
    ("sidebar", "alice"),
    ("sidebar", "bob"),
    ("footer",),
]


@pytest.fixture(scope="module")
def shop_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("shop")
    package = root / "shopapp"
    (package / "templates").mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(SHOP))
    (package / "templates" / "page.html").write_text(PAGE)
    sys.path.insert(0, str(root))
    yield root
    sys.path.remove(str(root))
    for name in [m for m in sys.modules if m == "shopapp" or m.startswith("shopapp.")]:
        del sys.modules[name]


class Shop:
    """The app in this process, and cachectl pointed at the same cache from outside."""

    def __init__(self, root: Path, env: dict[str, str], mode: str) -> None:
        import shopapp

        self.module = shopapp
        self.root = root
        self.mode = mode
        os.environ.update(env)
        self.app = shopapp.create_app()
        self.client = self.app.test_client()
        self.env = {**os.environ, **env}
        for name in ("CACHECTL_APP", "CACHECTL_CONFIG", "FLASK_APP"):
            self.env.pop(name, None)
        config = {
            "CACHE_TYPE": env["SHOP_CACHE_TYPE"],
            "CACHE_KEY_PREFIX": "shop_",
            "CACHE_DEFAULT_TIMEOUT": 600,
        }
        if "SHOP_REDIS_URL" in env:
            config["CACHE_REDIS_URL"] = env["SHOP_REDIS_URL"]
        if "SHOP_CACHE_DIR" in env:
            config["CACHE_DIR"] = env["SHOP_CACHE_DIR"]
        (root / "cache.json").write_text(json.dumps(config))

    def use(self) -> None:
        """Exercise every target once; the counters say which were computed."""
        module = self.module
        with self.app.app_context():
            module.get_user(1)
            module.get_user(2)
            module.get_user(1, role="admin")
            module.Person(3).has_membership(5)
            module.Person(4).has_membership(5)
        for url in ("/user/alice", "/user/bob", "/search?q=a&page=2", "/search?q=b"):
            assert self.client.get(url).status_code == 200
        for name in ("alice", "bob"):
            assert self.client.get(f"/page/{name}").status_code == 200

    def counts(self) -> dict[tuple, int]:
        return {target: self.module.COMPUTED[target] for target in TARGETS}

    def cachectl(self, *args: str) -> dict:
        source = (
            ["--app", "shopapp:create_app()"] if self.mode == "app" else ["--config", "cache.json"]
        )
        result = run_console(*source, "--json", *args, cwd=self.root, env=self.env)
        assert result.returncode == 0, result.stderr.decode()
        return json.loads(result.stdout)

    def recomputed_after(self, *args: str) -> set[tuple]:
        """Run cachectl, use the app again, and say which targets were recomputed."""
        before = self.counts()
        document = self.cachectl(*args)
        self.use()
        after = self.counts()
        self.last = document
        return {target for target in TARGETS if after[target] != before[target]}


@pytest.fixture(params=["redis", "filesystem"])
def backend_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    if request.param == "redis":
        target: RedisTarget = request.getfixturevalue("redis_target")
        return {"SHOP_CACHE_TYPE": "RedisCache", "SHOP_REDIS_URL": target.url}
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    return {"SHOP_CACHE_TYPE": "FileSystemCache", "SHOP_CACHE_DIR": str(cache_dir)}


@pytest.fixture(params=["config", "app"])
def shop(request: pytest.FixtureRequest, shop_dir: Path, backend_env: dict[str, str]) -> Shop:
    shop = Shop(shop_dir, backend_env, request.param)
    shop.module.COMPUTED.clear()
    shop.use()
    assert set(shop.counts().values()) == {1}
    return shop


def test_one_memoized_call(shop: Shop) -> None:
    assert shop.recomputed_after("delete-memoized", "shopapp.get_user", "1") == {
        ("get_user", 1, "member")
    }
    assert shop.last["removed"] == 1
    assert shop.recomputed_after(
        "delete-memoized", "shopapp.get_user", "1", "--kw", "role=admin"
    ) == {("get_user", 1, "admin")}


def test_every_result_of_a_function(shop: Shop) -> None:
    assert shop.recomputed_after("delete-memoized", "shopapp:get_user") == {
        ("get_user", 1, "member"),
        ("get_user", 2, "member"),
        ("get_user", 1, "admin"),
    }


def test_one_instance_of_a_method(shop: Shop) -> None:
    assert shop.recomputed_after(
        "delete-memoized", "shopapp.Person.has_membership", "--instance", "Person(3)"
    ) == {("has_membership", 3, 5)}
    assert shop.recomputed_after(
        "delete-memoized", "shopapp.Person.has_membership", "5", "--instance", "Person(4)"
    ) == {("has_membership", 4, 5)}


def test_a_view(shop: Shop) -> None:
    assert shop.recomputed_after("delete-view", "/user/alice") == {("user_page", "alice")}


def test_a_query_string_view(shop: Shop) -> None:
    assert shop.recomputed_after("delete-view", "/search", "--query", "page=2&q=a") == {
        ("search", (("page", "2"), ("q", "a")))
    }


def test_a_template_fragment(shop: Shop) -> None:
    assert shop.recomputed_after("make-fragment-key", "sidebar", "bob", "--delete") == {
        ("sidebar", "bob")
    }


def test_an_unnamed_fragment_found_by_the_fragments_listing(shop: Shop) -> None:
    listing = shop.cachectl("fragments", str(shop.root / "shopapp" / "templates"))["fragments"]
    footer = next(block for block in listing if block["name"] is None)
    assert footer["line"] == 3
    key = footer["key"]
    sidebar = next(block for block in listing if block["name"] == "'sidebar'")
    assert sidebar["key"] is None and sidebar["vary_on"] == ["name"]
    assert shop.recomputed_after("delete", key) == {("footer",)}


def test_dry_run_changes_nothing(shop: Shop) -> None:
    assert shop.recomputed_after("delete-memoized", "shopapp.get_user", "--dry-run") == set()
    assert shop.recomputed_after("delete-memoized", "shopapp.get_user", "2", "--dry-run") == set()
    assert shop.last["deleted"] and shop.last["removed"] is None
    assert shop.recomputed_after("delete-view", "/user/bob", "--dry-run") == set()


@pytest.fixture
def redis_shop(shop_dir: Path, redis_target: RedisTarget) -> Shop:
    env = {"SHOP_CACHE_TYPE": "RedisCache", "SHOP_REDIS_URL": redis_target.url}
    shop = Shop(shop_dir, env, "config")
    shop.module.COMPUTED.clear()
    shop.use()
    shop.redis = redis_target.client
    return shop


def stored(shop: Shop) -> set[bytes]:
    return set(shop.redis.scan_iter(match="shop_*"))


def test_purge_removes_the_entries_of_the_old_version(redis_shop: Shop) -> None:
    before = stored(redis_shop)
    recomputed = redis_shop.recomputed_after("delete-memoized", "shopapp.get_user", "--purge")
    assert redis_shop.last["purged"] == 3
    assert recomputed == {
        ("get_user", 1, "member"),
        ("get_user", 2, "member"),
        ("get_user", 1, "admin"),
    }
    # The three old entries are gone, replaced by three new ones; nothing else changed.
    old_entries = before - stored(redis_shop)
    assert len(old_entries) == 3
    assert all(len(key) == len("shop_") + 16 + 6 for key in old_entries)


def test_purge_dry_run_counts_without_removing(redis_shop: Shop) -> None:
    before = stored(redis_shop)
    document = redis_shop.cachectl("delete-memoized", "shopapp.get_user", "--purge", "--dry-run")
    assert document["purged"] == 3
    assert stored(redis_shop) == before


def test_purge_of_one_instance(redis_shop: Shop) -> None:
    recomputed = redis_shop.recomputed_after(
        "delete-memoized", "shopapp.Person.has_membership", "--instance", "Person(3)", "--purge"
    )
    assert recomputed == {("has_membership", 3, 5)}
    assert redis_shop.last["purged"] == 1


def test_verhash_deletes_the_version_key(redis_shop: Shop) -> None:
    document = redis_shop.cachectl("delete-memoized", "shopapp.get_user", "--verhash")
    assert document["deleted"] == ["shopapp.get_user_memver"]
    assert document["removed"] == 1
    assert not redis_shop.redis.exists("shop_shopapp.get_user_memver")


def test_a_reset_version_expires_as_the_librarys_own_reset(redis_shop: Shop) -> None:
    """2.5 writes it with no expiry, legacy with the default timeout: do as the app does."""
    key = "shop_shopapp.get_user_memver"
    with redis_shop.app.app_context():
        redis_shop.module.cache.delete_memoized(redis_shop.module.get_user)
    by_the_library = redis_shop.redis.ttl(key)
    redis_shop.cachectl("delete-memoized", "shopapp.get_user")
    assert redis_shop.redis.ttl(key) in (by_the_library, by_the_library - 1)
    assert by_the_library in (-1, 600)


def test_all_query_variants_of_a_view(redis_shop: Shop) -> None:
    assert redis_shop.recomputed_after("delete-view", "/search", "--all-queries") == {
        ("search", (("page", "2"), ("q", "a"))),
        ("search", (("q", "b"),)),
    }
    assert redis_shop.last["purged"] == 2


def test_signature_given_when_the_function_cannot_be_imported(
    redis_shop: Shop, tmp_path: Path
) -> None:
    (tmp_path / "cache.json").write_text((redis_shop.root / "cache.json").read_text())
    elsewhere = {**redis_shop.env, "PYTHONPATH": ""}
    missing = run_console(
        "--config",
        "cache.json",
        "delete-memoized",
        "shopapp.get_user",
        "1",
        cwd=tmp_path,
        env=elsewhere,
    )
    assert missing.returncode == 2
    assert b"--signature" in missing.stderr

    before = redis_shop.counts()
    done = run_console(
        "--config", "cache.json", "--json", "delete-memoized", "shopapp.get_user", "2",
        "--signature", "(user_id, role='member')", cwd=tmp_path, env=elsewhere,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["removed"] == 1
    redis_shop.use()
    changed = {t for t, n in redis_shop.counts().items() if n != before[t]}
    assert changed == {("get_user", 2, "member")}


def test_a_method_call_without_its_instance_is_refused(redis_shop: Shop) -> None:
    result = run_console(
        "--config", "cache.json", "delete-memoized", "shopapp.Person.has_membership", "5",
        cwd=redis_shop.root, env=redis_shop.env,
    )  # fmt: skip
    assert result.returncode == 2
    assert b"--instance" in result.stderr


def test_endpoint_in_app_mode(shop_dir: Path, redis_target: RedisTarget) -> None:
    env = {"SHOP_CACHE_TYPE": "RedisCache", "SHOP_REDIS_URL": redis_target.url}
    shop = Shop(shop_dir, env, "app")
    shop.module.COMPUTED.clear()
    shop.use()
    assert shop.recomputed_after("delete-view", "--endpoint", "user_page", "--arg", "name=bob") == {
        ("user_page", "bob")
    }
    assert shop.recomputed_after("delete-view", "--endpoint", "search", "--query", "q=b") == {
        ("search", (("q", "b"),))
    }
    listing = shop.cachectl("fragments")["fragments"]
    assert [block["line"] for block in listing] == [2, 3]
