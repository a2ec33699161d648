"""delete-view --endpoint for class-based views: Flask's View and MethodView, flask-restx
resources and flask-smorest MethodViews. The real app serves GET and stores an entry;
cachectl, a separate process with --app, must name and remove exactly that key."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.conftest import RedisTarget, run_console, run_python

APP_SOURCE = """
import functools
import os

from flask import Flask, request
from flask.views import MethodView, View
from flask_caching import Cache
from flask_restx import Api, Resource
from flask_smorest import Api as SmorestApi, Blueprint

cache = Cache()
pets = Blueprint("pets", __name__, url_prefix="/pets")


class UserView(MethodView):
    @cache.cached()
    def get(self, name):
        return f"user {name}"


class AboutView(View):
    decorators = [cache.cached(key_prefix="about/%s")]

    def dispatch_request(self):
        return "about us"


def report_key():
    # A callable key_prefix: no arguments, only the request to go by.
    return "reports/year-" + request.view_args["year"]


class ReportView(MethodView):
    @cache.cached(key_prefix=report_key)
    def get(self, year):
        return f"report {year}"


class SearchView(MethodView):
    @cache.cached(query_string=True, key_prefix="search/%s")
    def get(self):
        return repr(sorted(request.args.items(multi=True)))


def tag_key(view, slug):
    return f"tags/{type(view).__name__}/{slug}"


def audited(f):
    # Another decorator above the cache: functools.wraps copies make_cache_key onto it.
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        return f(*args, **kwargs)

    return wrapper


class TagView(MethodView):
    @audited
    @cache.cached(make_cache_key=tag_key)
    def get(self, slug):
        return f"tag {slug}"


class PlainView(MethodView):
    def get(self):
        return "never cached"


class WriteOnlyView(MethodView):
    def post(self):
        return "written"


@pets.route("/<name>")
class Pet(MethodView):
    @pets.response(200)
    @cache.cached(key_prefix="pets/%s")
    def get(self, name):
        return {"name": name}


def create_app():
    app = Flask(__name__)
    app.config.update(
        CACHE_TYPE="RedisCache",
        CACHE_REDIS_URL=os.environ["SHOP_REDIS_URL"],
        CACHE_KEY_PREFIX="shop_",
        API_TITLE="pets",
        API_VERSION="1",
        OPENAPI_VERSION="3.0.2",
    )
    cache.init_app(app)
    for rule, view in [
        ("/users/<name>", UserView.as_view("user")),
        ("/about", AboutView.as_view("about")),
        ("/reports/<year>", ReportView.as_view("report")),
        ("/search", SearchView.as_view("search")),
        ("/tags/<slug>", TagView.as_view("tag")),
        ("/plain", PlainView.as_view("plain")),
        ("/write", WriteOnlyView.as_view("write")),
    ]:
        app.add_url_rule(rule, view_func=view)

    api = Api(app, doc=False, prefix="/api")
    items = api.namespace("items")

    @items.route("/<int:item_id>")
    class Item(Resource):
        @cache.cached(key_prefix="item/%s")
        def get(self, item_id):
            return {"id": item_id}

    SmorestApi(app).register_blueprint(pets)
    return app
"""


@pytest.fixture
def shop(tmp_path: Path, redis_target: RedisTarget) -> dict[str, str]:
    """The app package in tmp_path and the environment that points it at the private Redis."""
    package = tmp_path / "shopapp"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(APP_SOURCE))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CACHECTL_", "FLASK_"))}
    env["SHOP_REDIS_URL"] = redis_target.url
    return env


def serve(tmp_path: Path, env: dict[str, str], *urls: str) -> None:
    """GET each URL through the app's test client, in a process of its own as the app is."""
    script = (
        "import sys\nfrom shopapp import create_app\nclient = create_app().test_client()\n"
        "for url in sys.argv[1:]:\n"
        "    response = client.get(url)\n"
        "    assert response.status_code == 200, (url, response.status_code)\n"
    )
    done = run_python("-c", script, *urls, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr.decode()


def delete_view(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return run_console(
        "--app", "shopapp:create_app()", "--json", "delete-view", *args, cwd=tmp_path, env=env
    )


def stored(redis_target: RedisTarget) -> set[str]:
    return {key.decode() for key in redis_target.client.scan_iter(match="shop_*")}


@pytest.mark.parametrize(
    ("cli_args", "url", "other_url", "expected"),
    [
        # MethodView, get decorated.
        (["--endpoint", "user", "--arg", "name=alice"], "/users/alice", "/users/bob",
         "view//users/alice"),
        # View with decorators = [cache.cached(...)]: the whole view function is cached.
        (["--endpoint", "about"], "/about", "/users/bob", "about//about"),
        # flask-restx Resource on a Namespace: the endpoint is "<namespace>_<dashed class>".
        (["--endpoint", "items_item", "--arg", "item_id=7"], "/api/items/7", "/api/items/8",
         "item//api/items/7"),
        # flask-smorest: the endpoint is "<blueprint>.<class name>"; @blp.response is outermost.
        (["--endpoint", "pets.Pet", "--arg", "name=rex"], "/pets/rex", "/pets/tom",
         "pets//pets/rex"),
        # A callable key_prefix, which reads the matched URL's variables.
        (["--endpoint", "report", "--arg", "year=2024"], "/reports/2024", "/reports/2023",
         "reports/year-2024"),
        # query_string=True: --query in another order than the request's.
        (["--endpoint", "search", "--query", "page=2&q=shoes"], "/search?q=shoes&page=2",
         "/search?q=hats", None),
        # make_cache_key given to the decorator: called with the view instance.
        (["--endpoint", "tag", "--arg", "slug=red"], "/tags/red", "/tags/blue",
         "tags/TagView/red"),
    ],
    ids=["methodview", "view-decorators", "restx", "smorest", "callable-prefix", "query",
         "make-cache-key"],
)  # fmt: skip
def test_the_key_the_app_stored_is_named_and_deleted(
    tmp_path: Path,
    shop: dict[str, str],
    redis_target: RedisTarget,
    cli_args: list[str],
    url: str,
    other_url: str,
    expected: str | None,
) -> None:
    serve(tmp_path, shop, url)
    (target,) = stored(redis_target)
    serve(tmp_path, shop, other_url)
    before = stored(redis_target)
    assert target in before and len(before) == 2
    if expected is not None:
        assert target == "shop_" + expected

    dry = delete_view(tmp_path, shop, *cli_args, "--dry-run")
    assert dry.returncode == 0, dry.stderr.decode()
    assert ["shop_" + key for key in json.loads(dry.stdout)["deleted"]] == [target]
    assert stored(redis_target) == before

    done = delete_view(tmp_path, shop, *cli_args)
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout)["removed"] == 1
    assert stored(redis_target) == before - {target}


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ("plain", "the view of 'plain' (class PlainView, method get) is not decorated"),
        ("write", "the view of 'write' (class WriteOnlyView) has no get method"),
    ],
)
def test_an_uncached_class_view_is_one_line_and_exit_2(
    tmp_path: Path, shop: dict[str, str], endpoint: str, message: str
) -> None:
    result = run_console(
        "--app", "shopapp:create_app()", "delete-view", "--endpoint", endpoint,
        cwd=tmp_path, env=shop,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert "Traceback" not in result.stderr.decode()
