"""View keys exact to the Flask-Caching release, not the minor version (issue 22).

Flask-Caching 2.5.0 took a view argument named ``path`` or ``query_args`` for
``make_cache_key``'s own argument (a route ``/files/<path:path>`` is keyed ``view/a/b``);
2.5.1 reverted that. A real app stores real entries through the test client, on a real
Redis; cachectl's ``delete-view`` must remove exactly the entry the library stored. These
tests run against the Flask-Caching installed: 2.5.1+ in .venv, and 2.5.0 in .venv-fc250
(``bash scripts/fc250_env.sh``), so each release is its own oracle.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import shlex
import sys
import textwrap
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from cachectl.config.generations import resolve_generation
from cachectl.release.plan_actions import view_glob
from tests.conftest import RedisTarget, run, run_console

RELEASE = metadata.version("flask-caching")
pytestmark = pytest.mark.skipif(
    not RELEASE.startswith("2.5."), reason="the 2.5.0/2.5.1 difference (other lanes: 2.4)"
)
IS_250 = RELEASE == "2.5.0"

APP = """
import os

from flask import Flask
from flask_caching import Cache

cache = Cache()
app = Flask(__name__)
app.config.update(
    CACHE_TYPE="RedisCache", CACHE_REDIS_URL=os.environ["RELAPP_REDIS_URL"],
    CACHE_KEY_PREFIX="rel_", CACHE_DEFAULT_TIMEOUT=600,
)
cache.init_app(app)


@app.route("/files/<path:path>")
@cache.cached()
def files(path):
    return "file " + path


@app.route("/docs/", defaults={"path": ""})
@app.route("/docs/<path:path>")
@cache.cached()
def docs(path):
    return "docs " + path


@app.route("/fq/<path:path>")
@cache.cached(query_string=True)
def files_by_query(path):
    return "fq " + path


@app.route("/q/<query_args>")
@cache.cached(query_string=True)
def by_query_args(query_args):
    return "q " + query_args


@app.route("/q2/<query_args>")
@cache.cached()
def plain_query_args(query_args):
    return "q2 " + query_args


@app.route("/user/<name>")
@cache.cached()
def user(name):
    return "user " + name


@app.route("/about")
@cache.cached()
def about():
    return "about"


@app.route("/search")
@cache.cached(query_string=True)
def search():
    return "search"
"""

#: (the URL requested, the delete-view arguments that name its entry).
REQUESTS = [
    ("/files/a/b.txt", ["/files/a/b.txt"]),
    ("/docs/", ["/docs/"]),
    ("/fq/docs/x?b=2&a=1", ["/fq/docs/x", "--query", "a=1&b=2"]),
    ("/q/k=v?z=1", ["/q/k=v", "--query", "z=1"]),
    ("/q2/k=w", ["/q2/k=w"]),
    ("/user/alice", ["/user/alice"]),
    ("/about", ["/about"]),
    ("/search?x=1", ["/search", "--query", "x=1"]),
]
#: The requests whose key 2.5.0 forms from a view argument.
EXPLICIT = {"/files/a/b.txt", "/docs/", "/fq/docs/x?b=2&a=1", "/q/k=v?z=1"}
_names = itertools.count()


class Stored:
    """The app's source in a directory, and the key the library stored for each request."""

    def __init__(self, tmp_path: Path, redis_target: RedisTarget, monkeypatch: Any) -> None:
        self.module = f"relapp_{next(_names)}"
        self.source = tmp_path / "src"
        self.source.mkdir()
        (self.source / f"{self.module}.py").write_text(textwrap.dedent(APP))
        (self.source / "settings.py").write_text(
            f"CACHE_TYPE = 'RedisCache'\nCACHE_REDIS_URL = {redis_target.url!r}\n"
            "CACHE_KEY_PREFIX = 'rel_'\n"
        )
        self.elsewhere = tmp_path / "elsewhere"
        self.elsewhere.mkdir()
        self.redis = redis_target
        monkeypatch.setenv("RELAPP_REDIS_URL", redis_target.url)
        spec = importlib.util.spec_from_file_location(
            self.module, self.source / f"{self.module}.py"
        )
        assert spec is not None and spec.loader is not None
        app_module = importlib.util.module_from_spec(spec)
        sys.modules[self.module] = app_module
        spec.loader.exec_module(app_module)
        client = app_module.app.test_client()
        self.keys: dict[str, str] = {}
        for url, _ in REQUESTS:
            before = self.stored()
            assert client.get(url).status_code == 200
            (key,) = self.stored() - before
            self.keys[url] = key

    def stored(self) -> set[str]:
        return {key.decode() for key in self.redis.client.keys("*")}


@pytest.fixture
def stored(tmp_path: Path, redis_target: RedisTarget, monkeypatch: Any) -> Stored:
    return Stored(tmp_path, redis_target, monkeypatch)


def test_the_releases_differ_as_the_issue_says(stored: Stored) -> None:
    """The oracle itself: 2.5.0 keys /files/<path> by the argument, 2.5.1 by request.path."""
    files = stored.keys["/files/a/b.txt"]
    assert files == ("rel_view/a/b.txt" if IS_250 else "rel_view//files/a/b.txt")
    assert stored.keys["/about"] == "rel_view//about"
    # A route's defaults are view arguments too: the catch-all's empty path is the key.
    assert stored.keys["/docs/"] == ("rel_view/" if IS_250 else "rel_view//docs/")
    assert stored.keys["/q2/k=w"] == "rel_view//q2/k=w"  # query_args matters with query strings


def test_the_installed_release_is_read_exactly() -> None:
    generation = resolve_generation()
    assert generation.origin == f"installed Flask-Caching {RELEASE}"
    assert generation.view_arguments_in_key is IS_250


def _delete(stored: Stored, how: str, words: list[str]) -> tuple[int, str]:
    """delete-view by one of the ways an operator runs it: (exit code, stderr)."""
    config_only = ["--url", stored.redis.url, "--key-prefix", "rel_"]
    if how == "console --app":
        done = run_console(
            "--app", f"{stored.module}:app", "delete-view", *words, cwd=stored.source
        )
        return done.returncode, done.stderr.decode()
    if how == "console, source in the current directory":
        done = run_console(*config_only, "delete-view", *words, cwd=stored.source)
        return done.returncode, done.stderr.decode()
    if how == "console, source beside the config file":
        config = str(stored.source / "settings.py")
        done = run_console("--config", config, "delete-view", *words, cwd=stored.elsewhere)
        return done.returncode, done.stderr.decode()
    if how == "runner --app":
        result = run("--app", f"{stored.module}:app", "delete-view", *words)
        return result.exit_code, result.stderr
    assert how == "runner, source in the current directory"
    result = run(*config_only, "delete-view", *words)
    return result.exit_code, result.stderr


WAYS = [
    "console --app",
    "console, source in the current directory",
    "console, source beside the config file",
    "runner --app",
    "runner, source in the current directory",
]


@pytest.mark.parametrize("how", WAYS)
def test_delete_view_removes_exactly_the_stored_entry(
    stored: Stored, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(stored.source)
    monkeypatch.syspath_prepend(str(stored.source))
    for url, words in REQUESTS:
        before = stored.stored()
        code, stderr = _delete(stored, how, words)
        assert (code, "warning" not in stderr) == (0, True), (url, stderr)
        assert before - stored.stored() == {stored.keys[url]}, (how, url)


@pytest.mark.parametrize("console", [True, False], ids=["console", "runner"])
def test_without_the_source_it_says_so_in_one_line(
    stored: Stored, console: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Config-only, nothing at hand to say which route a path reaches: under 2.5.0 one
    warning line, and the request path's key (the entry of /files/... stays); under 2.5.1
    nothing to say, and the exact key."""
    monkeypatch.chdir(stored.elsewhere)
    for url, words in REQUESTS:
        before = stored.stored()
        args = ["--url", stored.redis.url, "--key-prefix", "rel_", "delete-view", *words]
        if console:
            done = run_console(*args, cwd=stored.elsewhere)
            stderr = done.stderr.decode()
        else:
            stderr = run(*args).stderr
        warnings = [line for line in stderr.splitlines() if line.startswith("warning:")]
        if IS_250:
            assert len(warnings) == 1, stderr
            assert "path or query_args" in warnings[0] and "--app" in warnings[0]
            expected = set() if url in EXPLICIT else {stored.keys[url]}
        else:
            assert warnings == [], stderr
            expected = {stored.keys[url]}
        assert before - stored.stored() == expected, url


def test_compat_names_the_release(stored: Stored, monkeypatch: pytest.MonkeyPatch) -> None:
    """--compat 2.5.0 / 2.5.1 choose the rule whatever is installed (--dry-run: the key)."""
    monkeypatch.chdir(stored.source)
    for compat, expected in (("2.5.0", "view/a/b.txt"), ("2.5.1", "view//files/a/b.txt")):
        result = run(
            "--compat", compat, "--url", stored.redis.url, "--json",
            "delete-view", "/files/a/b.txt", "--dry-run",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert expected in result.stdout
        # --compat 2.5 (no patch release) keeps 2.5.1's keys, as before the release was read.
    result = run("--compat", "2.5", "--url", stored.redis.url, "--json", "delete-view", "/files/a")
    assert "view//files/a" in result.stdout and "warning" not in result.stderr


def test_plan_pattern_of_a_path_route_matches_exactly_its_entries(stored: Stored) -> None:
    """plan deletes a changed dynamic view by a glob: under 2.5.0 a route with a ``path``
    argument stores ``view/<value>``, which the glob must reach without taking the
    entries of views keyed by the request path."""
    form = resolve_generation().key_form
    for rule, query_string, urls in (
        ("/files/<path:path>", False, {"/files/a/b.txt"}),
        ("/fq/<path:path>", True, {"/fq/docs/x?b=2&a=1"}),
        ("/q/<query_args>", True, {"/q/k=v?z=1"}),
        ("/user/<name>", False, {"/user/alice"}),
    ):
        glob = "rel_" + view_glob(rule, "view/%s", query_string, form)
        matched = {key.decode() for key in stored.redis.client.scan_iter(match=glob)}
        expected = {stored.keys[url] for url in urls}
        # 2.5.0 keys every path-argument view in one space (view/<value>): the library's own.
        if IS_250 and "<path:path>" in rule:
            expected = {stored.keys[u] for u in ("/files/a/b.txt", "/fq/docs/x?b=2&a=1")}
        assert matched == expected, (rule, glob)


@pytest.mark.parametrize("how", ["--app", "config-only, source at hand"])
def test_batch_delete_view_lines_form_the_single_commands_keys(
    stored: Stored, how: str, tmp_path: Path
) -> None:
    """``batch`` runs each ``delete-view`` line as the command runs on its own: the route's
    arguments form the key under 2.5.0 there too, so the batch removes every entry."""
    deploy = tmp_path / "deploy.txt"
    deploy.write_text("".join(f"delete-view {shlex.join(words)}\n" for _, words in REQUESTS))
    if how == "--app":
        target = ["--app", f"{stored.module}:app"]
    else:
        target = ["--url", stored.redis.url, "--key-prefix", "rel_"]
    before = stored.stored()
    done = run_console(*target, "batch", str(deploy), cwd=stored.source)
    stderr = done.stderr.decode()
    assert done.returncode == 0 and "warning" not in stderr, stderr
    assert before - stored.stored() == set(stored.keys.values())


def test_printed_plan_is_the_applied_plan(stored: Stored) -> None:
    """``plan`` printed forms its patterns for the release --apply forms them for (2.5.0's
    ``view/[^/]*`` for a route with a ``path`` argument), with the cache's settings or
    without any; and the printed command, run as printed, removes the changed view's entry."""
    from tests.test_release_plan import git

    repo = stored.source
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "v1")
    module = repo / f"{stored.module}.py"
    module.write_text(module.read_text().replace('"file " + path', '"File " + path'))
    git(repo, "commit", "-qam", "v2")
    target = ["--url", stored.redis.url, "--key-prefix", "rel_"]

    def commands(*args: str, apply: bool = False) -> list[str]:
        applying = ["--apply", "--dry-run"] if apply else []
        done = run_console("--json", *args, "plan", "--since", "HEAD~1", *applying, cwd=repo)
        assert done.returncode == 0, done.stderr
        document = json.loads(done.stdout)
        if document["applied"] is not None:
            return [applied["command"] for applied in document["applied"]]
        return [action["command"] for action in document["actions"]]

    printed = commands()
    glob = view_glob("/files/<path:path>", "view/%s", False, resolve_generation().key_form)
    assert printed == [shlex.join(["delete", "--pattern", glob, "--yes"])]
    assert ("[^/]*" in glob) is IS_250
    assert commands(*target) == printed
    assert commands(*target, apply=True) == printed
    before = stored.stored()
    done = run_console(*target, *shlex.split(printed[0]), cwd=repo)
    assert done.returncode == 0, done.stderr
    assert stored.keys["/files/a/b.txt"] in before - stored.stored()


UNREAD = """
from relapp_routes import RULE, app


@app.route(RULE)
def {name}({parameters}):
    return "elsewhere"
"""


@pytest.mark.parametrize("takes_path", [False, True], ids=["plain view", "view taking path"])
def test_an_unreadable_rule_warns_only_where_it_could_decide_the_key(
    stored: Stored, takes_path: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rule the source does not spell out (``@app.route(RULE)``) matters under 2.5.0 only
    where it could decide the key: at a path whose route has a ``path``/``query_args``
    argument (it might take that path first), or anywhere if its own view could take
    such an argument. Elsewhere no warning, and the exact key; the warning names the rule."""
    monkeypatch.chdir(stored.source)
    module = stored.source / "relapp_more.py"
    parameters = "path" if takes_path else ""
    module.write_text(UNREAD.format(name="more", parameters=parameters))
    for url, words in REQUESTS:
        before = stored.stored()
        args = ["--url", stored.redis.url, "--key-prefix", "rel_", "delete-view", *words]
        stderr = run_console(*args, cwd=stored.source).stderr.decode()
        warnings = [line for line in stderr.splitlines() if line.startswith("warning:")]
        warned = IS_250 and (takes_path or url in EXPLICIT)
        if warned:
            assert len(warnings) == 1, (url, stderr)
            assert f"{module}: the rule of @app.route (line 5) is not a literal" in warnings[0]
        else:
            assert warnings == [], (url, stderr)
        exact = not warned or url not in EXPLICIT
        assert before - stored.stored() == ({stored.keys[url]} if exact else set()), url


ADDED = """
from relapp_routes import app


def listing(path):
    return "listed"


app.add_url_rule("/listing/<path:path>", view_func=listing)
"""


def test_a_route_added_with_add_url_rule_is_named_in_the_warning(
    stored: Stored, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``app.add_url_rule(...)`` names a view this reading does not follow: under 2.5.0 it
    could take any path with a ``path`` argument, so each config-only delete-view says so
    in one line, naming the call; under 2.5.1 nothing is said."""
    monkeypatch.chdir(stored.source)
    module = stored.source / "relapp_added.py"
    module.write_text(ADDED)
    for url, words in REQUESTS:
        args = ["--url", stored.redis.url, "--key-prefix", "rel_", "delete-view", *words]
        stderr = run_console(*args, cwd=stored.source).stderr.decode()
        warnings = [line for line in stderr.splitlines() if line.startswith("warning:")]
        if IS_250:
            assert len(warnings) == 1, (url, stderr)
            assert f"{module}: the route added by add_url_rule (line 9)" in warnings[0]
        else:
            assert warnings == [], (url, stderr)
