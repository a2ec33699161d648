"""plan: a real git repository holding a real Flask app with Flask-Caching, a release
committed on top, and the invalidation plan cachectl reads from the two revisions; then
the plan applied to a private redis-server, where exactly the stale entries must go."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import RedisTarget, run, run_console

EXT = """
from flask_caching import Cache

cache = Cache()
"""

APP = """
import os

from flask import Flask

from shop.ext import cache


def create_app():
    app = Flask(__name__)
    app.config.update(
        CACHE_TYPE="RedisCache",
        CACHE_REDIS_URL=os.environ.get("SHOP_REDIS_URL", "redis://127.0.0.1:1/0"),
        CACHE_KEY_PREFIX="shop_",
    )
    cache.init_app(app)
    from shop.views import account, bp

    app.register_blueprint(bp)
    app.register_blueprint(account, url_prefix="/acct")
    return app
"""

MODELS = """
from shop.ext import cache as store


@store.memoize()
def price(item):
    return item * 2


@store.memoize()
def stock(item):
    return item + 100


@store.memoize(timeout=60)
def rate(item):
    return item + 0.5


@store.memoize
def old_name(x):
    return x + 1


def plain(x):
    return x


@store.cached(key_prefix="all_comments")
def all_comments():
    return ["first"]


class Person:
    def __repr__(self):
        return "Person()"

    @store.memoize()
    def greet(self, n):
        return f"hi {n}"
"""

VIEWS = """
from flask import Blueprint, render_template

from shop.ext import cache

bp = Blueprint("shop", __name__, url_prefix="/shop")
account = Blueprint("account", __name__, url_prefix="/ignored")


def computed_prefix():
    return "custom"


@bp.route("/items")
@cache.cached()
def items():
    return "items v1"


@bp.route("/user/<name>")
@cache.cached()
def user(name):
    return f"user {name} v1"


@bp.route("/search")
@cache.cached(query_string=True)
def search():
    return "search v1"


@bp.route("/about")
@cache.cached()
def about():
    return render_template("base.html", user_id="7")


@bp.route("/page")
@cache.cached()
def page():
    return render_template("page.html", user_id="8")


@bp.route("/contact")
@cache.cached()
def contact():
    return "contact"


@account.route("/me")
@cache.cached()
def me():
    return "me v1"


@bp.route("/odd")
@cache.cached(key_prefix=computed_prefix)
def odd():
    return "odd v1"
"""

TEMPLATE = """\
{% cache 600, "sidebar" %}sidebar v1{% endcache %}
{% cache 600, "footer", "en" %}footer v1{% endcache %}
{% cache 600, "card", user_id %}card {{ user_id }} v1{% endcache %}
{% cache 600, "legal" %}legal v1{% endcache %}
"""

#: The release: what each file becomes.
RELEASE = {
    "src/shop/models.py": [
        ("return item * 2", "return item * 3"),  # body changed
        ("return item + 100", "return (item +\n            100)  # only formatting"),
        ("@store.memoize(timeout=60)", "@store.memoize(timeout=30)"),  # decorator argument
        ("def old_name(x)", "def new_name(x)"),  # renamed
        ("return x\n", "return x * 2\n"),  # not cached: nothing to do
        ('["first"]', '["first", "second"]'),  # a constant key_prefix
        ('return f"hi {n}"', 'return f"hello {n}"'),  # a method
    ],
    "src/shop/views.py": [
        ('"items v1"', '"items v2"'),
        ('f"user {name} v1"', 'f"user {name} v2"'),
        ('"search v1"', '"search v2"'),
        ('"me v1"', '"me v2"'),
        ('"odd v1"', '"odd v2"'),
    ],
    "src/shop/templates/base.html": [
        ("sidebar v1", "sidebar v2"),
        ("footer v1", "footer v2"),
        ("card {{ user_id }} v1", "card {{ user_id }} v2"),
    ],
}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def write(repo: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))


def release(repo: Path, edits: dict[str, list[tuple[str, str]]], message: str) -> None:
    for name, replacements in edits.items():
        path = repo / name
        text = path.read_text()
        for old, new in replacements:
            assert old in text, (name, old)
            text = text.replace(old, new)
        path.write_text(text)
    git(repo, "commit", "-qam", message)


@pytest.fixture
def shop_repo(tmp_path: Path) -> Path:
    """The shop at tag v1 (a src/ layout), and the release on top of it at HEAD."""
    repo = tmp_path / "shop"
    repo.mkdir()
    git(repo, "init", "-q")
    write(
        repo,
        {
            "src/shop/__init__.py": "",
            "src/shop/ext.py": EXT,
            "src/shop/app.py": APP,
            "src/shop/models.py": MODELS,
            "src/shop/views.py": VIEWS,
            "src/shop/templates/base.html": TEMPLATE,
            "src/shop/templates/page.html": '{% extends "base.html" %}\n',
        },
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "v1")
    git(repo, "tag", "v1")
    release(repo, RELEASE, "v2")
    return repo


def plan_document(repo: Path, *args: str) -> dict:
    previous = os.getcwd()
    os.chdir(repo)
    try:
        result = run("--json", "plan", *args)
    finally:
        os.chdir(previous)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_plan_names_what_the_release_made_stale(shop_repo: Path) -> None:
    document = plan_document(shop_repo, "--since", "v1")
    commands = {action["command"]: action for action in document["actions"]}
    assert sorted(commands) == sorted(
        [
            "delete-memoized shop.models.price",
            "delete-memoized shop.models.rate",
            # Gone from the release: by its name alone (importing the module misses it).
            "delete-memoized shop.models.old_name --signature '(x)'",
            "delete-memoized shop.models.Person.greet",
            "delete-view /shop/items",
            "delete --pattern 'view//shop/user/*' --yes",
            "delete-view /shop/search --all-queries",
            "delete-view /acct/me",  # register_blueprint's url_prefix wins
            "delete -- all_comments",
            "delete-view /shop/about",  # renders base.html
            "delete-view /shop/page",  # renders page.html, which extends base.html
            "make-fragment-key sidebar --delete",
            "make-fragment-key footer en --delete",
            "delete --pattern '_template_fragment_cache_card_*' --yes",
        ]
    ), commands
    # stock (formatting and a comment only), plain (not cached) and the unchanged
    # "legal" block are not in the plan.
    rate = commands["delete-memoized shop.models.rate"]
    assert rate["reason"] == "decorator arguments changed"
    assert commands["delete-memoized shop.models.old_name --signature '(x)'"]["reason"] == (
        "renamed to shop.models.new_name"
    )
    assert commands["delete-memoized shop.models.price"]["source"] == "src/shop/models.py:5"
    assert (
        "every value of /shop/user/<name>"
        in commands["delete --pattern 'view//shop/user/*' --yes"]["reason"]
    )
    assert commands["delete-view /shop/page"]["reason"] == (
        "view shop.views.page: renders page.html (which uses base.html), changed by the release"
    )
    [look] = document["needs_look"]
    assert look["subject"] == "shop.views.odd" and "key_prefix is computed" in look["reason"]
    assert document["since"] == git(shop_repo, "rev-parse", "v1").strip()
    assert document["applied"] is None


def test_a_release_of_formatting_comments_and_docstrings_plans_nothing(shop_repo: Path) -> None:
    edits = [
        ("return item * 3", '"""The price."""\n    return (item  *\n            3)  # why'),
        ("\n\n\n", "\n\n"),
    ]
    release(shop_repo, {"src/shop/models.py": edits}, "reformat")
    document = plan_document(shop_repo, "--since", "HEAD~1", "--until", "HEAD")
    assert document["actions"] == [] and document["needs_look"] == []


def test_the_installed_command_prints_the_plan_and_refuses_a_typo(shop_repo: Path) -> None:
    shown = run_console("plan", "--since", "v1", cwd=shop_repo)
    text = shown.stdout.decode()
    assert shown.returncode == 0, shown.stderr
    assert "memoized functions:\n  delete-memoized shop.models.price\n" in text
    assert "      code changed (src/shop/models.py:5)" in text
    assert "needs a look (not applied):\n  shop.views.odd:" in text
    assert "warning: 1 change needs a look" in shown.stderr.decode()

    typo = run_console("plan", "--since", "v1.0", cwd=shop_repo)
    assert typo.returncode == 2 and typo.stdout == b""
    assert typo.stderr.decode().splitlines() == [
        f"error: unknown revision 'v1.0' in {shop_repo.resolve()}"
    ]
    outside = run_console("--json", "plan", "--since", "v1", cwd=shop_repo.parent)
    assert outside.returncode == 2
    assert "is not in a git checkout" in json.loads(outside.stdout)["error"]


POPULATE = """
import json, sys
from flask import render_template
from shop.app import create_app
from shop import models

app = create_app()
client = app.test_client()
with app.app_context():
    results = [models.price(2), models.stock(2), models.rate(2), models.Person().greet(1)]
    with app.test_request_context():
        comments = models.all_comments()
    for path in ("/shop/items", "/shop/user/alice", "/shop/search?q=x", "/shop/about",
                 "/acct/me", "/shop/page", "/shop/contact"):
        results.append(client.get(path).get_data(as_text=True))
print(json.dumps([*results, comments]))
"""


def _run_app(repo: Path, redis_target: RedisTarget) -> list:
    env = {**os.environ, "SHOP_REDIS_URL": redis_target.url, "PYTHONPATH": str(repo / "src")}
    # -B: no bytecode cache, which a checkout within the same second (same size, same
    # mtime second) would leave looking fresh for the other release's source.
    done = subprocess.run(
        [sys.executable, "-B", "-c", POPULATE], cwd=repo, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_apply_removes_exactly_the_stale_entries(
    shop_repo: Path, redis_target: RedisTarget
) -> None:
    client = redis_target.client
    git(shop_repo, "checkout", "-q", "v1")  # the old release fills the cache
    first = _run_app(shop_repo, redis_target)
    expected = [4, 102, 2.5, "hi 1", "items v1", "user alice v1", "search v1"]
    assert first == [*expected, _page("7", "v1"), "me v1", _page("8", "v1"), "contact", ["first"]]
    git(shop_repo, "checkout", "-q", "-")
    names = {key.decode() for key in client.keys("*")}
    versions = {name: client.get(name) for name in names if name.endswith("_memver")}
    target = ["--url", redis_target.url, "--key-prefix", "shop_", "--compat", "2.5"]

    previous = os.getcwd()
    os.chdir(shop_repo)
    try:
        dry = run(*target, "--json", "plan", "--since", "v1", "--apply", "--dry-run")
        assert {key.decode() for key in client.keys("*")} == names  # nothing changed
        applied = run(*target, "--json", "plan", "--since", "v1", "--apply")
    finally:
        os.chdir(previous)
    assert dry.exit_code == 0 and applied.exit_code == 0, applied.output
    assert json.loads(dry.stdout)["dry_run"] is True
    document = json.loads(applied.stdout)
    assert len(document["applied"]) == len(document["actions"]) == 14

    left = {key.decode() for key in client.keys("*")}
    gone = names - left
    assert gone == {
        "shop_view//shop/items",
        "shop_view//shop/user/alice",
        "shop_view//acct/me",
        "shop_view//shop/about",
        "shop_view//shop/page",
        "shop_all_comments",
        "shop__template_fragment_cache_sidebar",
        "shop__template_fragment_cache_footer_en",
        "shop__template_fragment_cache_card_7",
        "shop__template_fragment_cache_card_8",
    } | {name for name in names if name.startswith("shop_view//shop/search")}
    assert "shop_view//shop/contact" in left  # an unchanged view, kept
    assert "shop__template_fragment_cache_legal" in left  # unchanged block, kept
    stale = {f"shop_shop.models.{name}_memver" for name in ("price", "rate", "Person.greet")}
    for name, version in versions.items():
        changed = client.get(name) != version
        assert changed == (name in stale), name  # stock's version (formatting only) kept

    # The new release recomputes what changed and serves the rest from the cache.
    again = _run_app(shop_repo, redis_target)
    assert again[:4] == [6, 102, 2.5, "hello 1"]
    assert again[4:7] == ["items v2", "user alice v2", "search v2"]
    # The pages are rendered again, with the unchanged "legal" fragment from the cache.
    assert again[7:] == [
        _page("7", "v2"),
        "me v2",
        _page("8", "v2"),
        "contact",
        ["first", "second"],
    ]


def _page(user: str, version: str) -> str:
    return f"sidebar {version}\nfooter {version}\ncard {user} {version}\nlegal v1"


LATE_VIEWS = """


@cache.cached()
def late():
    return "late v1"


class Listing(MethodView):
    @cache.cached()
    def get(self):
        return "listing v1"


bp.add_url_rule("/late", view_func=late)
bp.add_url_rule("/listing", view_func=Listing.as_view("listing"))
"""


def test_a_cache_that_cannot_list_keys_refuses_a_plan_with_patterns(
    shop_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "keep").write_text("not a cache file")
    monkeypatch.chdir(shop_repo)
    result = run("--dir", str(tmp_path / "cache"), "plan", "--since", "v1", "--apply")
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("error: the plan finds keys by pattern (delete --pattern 'view//")
    assert line.endswith("; nothing was changed")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["keep"]


def test_with_the_app_routes_come_from_its_url_map(shop_repo: Path) -> None:
    """Rules the source cannot give (add_url_rule, a class-based view) are read from
    the loaded app."""
    views = shop_repo / "src/shop/views.py"
    text = views.read_text().replace(
        "from flask import", "from flask.views import MethodView\nfrom flask import"
    )
    views.write_text(text + LATE_VIEWS)
    git(shop_repo, "commit", "-qam", "late")
    release(shop_repo, {"src/shop/views.py": [("late v1", "late v2"), ("listing v1", "v2")]}, "v2")
    env = {**os.environ, "PYTHONPATH": str(shop_repo / "src")}
    static = run_console("--json", "plan", "--since", "HEAD~1", cwd=shop_repo, env=env)
    document = json.loads(static.stdout)
    assert document["actions"] == []
    looks = [look["subject"] for look in document["needs_look"]]
    assert looks == ["shop.views.late", "shop.views.Listing.get"]
    assert "no route decorator found" in document["needs_look"][0]["reason"]

    from_app = run_console(
        "--app", "shop.app:create_app()", "--json", "plan", "--since", "HEAD~1",
        cwd=shop_repo, env=env,
    )  # fmt: skip
    assert from_app.returncode == 0, from_app.stderr
    document = json.loads(from_app.stdout)
    commands = [a["command"] for a in document["actions"]]
    assert commands == ["delete-view /shop/late", "delete-view /shop/listing"]
    assert document["needs_look"] == []


def test_routes_of_an_app_made_in_a_factory_and_of_unknown_objects(shop_repo: Path) -> None:
    write(
        shop_repo,
        {
            "src/shop/factory.py": """
                from flask import Flask

                from shop.ext import cache
                from shop.registry import router


                def make():
                    app = Flask(__name__)

                    @app.route("/home")
                    @cache.cached()
                    def home():
                        return "home v1"

                    @router.route("/far")
                    @cache.cached()
                    def far():
                        return "far v1"

                    return app
                """,
        },
    )
    git(shop_repo, "add", "-A")
    git(shop_repo, "commit", "-qm", "factory")
    release(shop_repo, {"src/shop/factory.py": [("home v1", "home v2"), ("far v1", "v2")]}, "v3")
    document = plan_document(shop_repo, "--since", "HEAD~1")
    [action] = document["actions"]
    assert action["command"] == "delete-view /home"
    assert action["reason"] == "view shop.factory.make.<locals>.home: code changed"
    [look] = document["needs_look"]
    assert look["subject"] == "shop.factory.make.<locals>.far"
    assert "router (line 15) is bound to neither Flask(...) nor Blueprint(...)" in look["reason"]


def test_what_cannot_be_read_needs_a_look(shop_repo: Path) -> None:
    """A module that no longer parses, a decorator on an unknown object and an unnamed
    block are listed or planned, never dropped."""
    write(
        shop_repo,
        {
            "src/shop/other.py": "from somewhere import thing\n\n\n"
            "@thing.memoize()\ndef guess(x):\n    return x\n",
            "src/shop/templates/other.html": "line one\n{% cache 60 %}page v1{% endcache %}\n",
        },
    )
    git(shop_repo, "add", "-A")
    git(shop_repo, "commit", "-qm", "more")
    release(
        shop_repo,
        {
            "src/shop/other.py": [("return x", "return x + 1")],
            "src/shop/models.py": [("def price(item):", "def price(item)")],
            "src/shop/templates/other.html": [("page v1", "page v2")],
        },
        "broken",
    )
    document = plan_document(shop_repo, "--since", "HEAD~1")
    looks = {look["subject"]: look for look in document["needs_look"]}
    assert looks["src/shop/models.py"]["reason"].startswith("does not parse at ")
    assert "not bound to Cache(...)" in looks["shop.other.guess"]["reason"]
    [fragment] = document["actions"]
    filename = f"{shop_repo.resolve()}/src/shop/templates/other.html"
    assert fragment["command"] == f"make-fragment-key {filename}2 --delete"


@pytest.mark.parametrize(
    ("rule", "prefix", "query_string", "generation", "glob"),
    [
        ("/user/<name>", "view/%s", False, "2.5", "view//user/*"),
        ("/a[1]/<int:id>/posts", "view/%s", False, "2.5", "view//a\\[1\\]/*/posts"),
        ("/user/<name>/feed", "feeds/%s", True, "2.5", "feeds//user/*/feed*"),
        ("/user/<name>/feed", "feeds/%s", True, "legacy", "/user/*/feed*"),
    ],
)
def test_a_dynamic_rule_is_a_glob_of_its_keys(
    rule: str, prefix: str, query_string: bool, generation: str, glob: str
) -> None:
    from cachectl.release.plan_actions import view_glob

    assert view_glob(rule, prefix, query_string, generation) == glob


def test_with_the_app_an_unnamed_block_is_named_by_its_folder_as_the_app_has_it(
    tmp_path: Path,
) -> None:
    """A deploy that runs the app through a symbolic link (``/srv/shop/current``) names
    its templates through the link: so does the implicit name of an unnamed block."""
    from types import SimpleNamespace

    import jinja2

    from cachectl.operations.plan import make_plan

    repo = tmp_path / "release-1"
    repo.mkdir()
    git(repo, "init", "-q")
    write(repo, {"pages/home.html": "{% cache 60 %}home v1{% endcache %}\n"})
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "v1")
    release(repo, {"pages/home.html": [("home v1", "home v2")]}, "v2")
    current = tmp_path / "current"
    current.symlink_to(repo)
    folder = f"{current}/pages"
    app = SimpleNamespace(
        jinja_loader=SimpleNamespace(searchpath=[folder]),
        jinja_env=jinja2.Environment(),
        iter_blueprints=lambda: [],
        url_map=SimpleNamespace(iter_rules=lambda: []),
        view_functions={},
    )
    plan = make_plan("HEAD~1", "HEAD", cwd=str(current), app=app)
    [action] = plan.actions
    assert action.target == f"{folder}/home.html1"


def test_follow_calls_adds_what_calls_changed_code(tmp_path: Path) -> None:
    repo = tmp_path / "calls"
    repo.mkdir()
    git(repo, "init", "-q")
    write(
        repo,
        {
            "shop/__init__.py": "",
            "shop/ext.py": EXT,
            "shop/pricing.py": """
                def base(x):
                    return x * 2


                def unchanged(x):
                    return x
                """,
            "shop/models.py": """
                import shop.pricing as pricing
                from shop.ext import cache
                from .pricing import base, unchanged


                @cache.memoize()
                def total(x):
                    return base(x) + 1


                @cache.memoize()
                def through_module(x):
                    return pricing.base(x)


                def middle(x):
                    return base(x)


                @cache.cached(key_prefix="summary")
                def summary():
                    return middle(1)


                @cache.memoize()
                def other(x):
                    return unchanged(x)


                class Cart:
                    def helper(self):
                        return 1

                    @cache.memoize()
                    def sum(self):
                        return self.helper()
                """,
        },
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "v1")
    release(
        repo,
        {
            "shop/pricing.py": [("x * 2", "x * 3")],
            "shop/models.py": [("return 1\n", "return 2\n")],
        },
        "v2",
    )
    assert plan_document(repo, "--since", "HEAD~1")["actions"] == []
    document = plan_document(repo, "--since", "HEAD~1", "--follow-calls")
    reasons = {action["command"]: action["reason"] for action in document["actions"]}
    approximate = ", which changed (followed with --follow-calls: approximate)"
    assert reasons == {
        "delete-memoized shop.models.total": f"calls shop.pricing.base{approximate}",
        "delete-memoized shop.models.through_module": f"calls shop.pricing.base{approximate}",
        "delete-memoized shop.models.Cart.sum": f"calls shop.models.Cart.helper{approximate}",
        "delete -- summary": "view shop.models.summary: calls shop.models.middle → "
        f"shop.pricing.base{approximate} (its constant key_prefix)",
    }
