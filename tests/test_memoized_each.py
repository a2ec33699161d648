"""delete-memoized --each and show-memoized --each: many calls of one memoized function, one
a line, against a real Flask-Caching app on a real Redis and a real FileSystemCache.

The oracle is the app itself: its own ``cache.memoize`` stores the results, and whether a
call is still stored is asked of its own decorator (``make_cache_key``, then the cache's
``has``), so a key cachectl formed differently would leave the entry behind and fail.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RedisTarget, run_console

APP = """
import os

from flask import Flask
from flask_caching import Cache

cache = Cache()


@cache.memoize(600)
def price(item, currency="EUR", *extra, **options):
    return {"item": item, "currency": currency}


class Person:
    def __init__(self, pid):
        self.pid = pid

    def __repr__(self):
        return f"Person({self.pid})"

    @cache.memoize(600)
    def has_membership(self, role_id):
        return [self.pid, role_id]


def create_app():
    app = Flask(__name__)
    app.config.update(
        CACHE_TYPE=os.environ["EACH_CACHE_TYPE"],
        CACHE_REDIS_URL=os.environ.get("EACH_REDIS_URL"),
        CACHE_DIR=os.environ.get("EACH_CACHE_DIR"),
        CACHE_KEY_PREFIX="each_",
        CACHE_THRESHOLD=100_000,
    )
    cache.init_app(app)
    return app
"""

#: Calls of ``price``: (args, kwargs), arguments of many kinds a line must carry exactly.
CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((1,), {}),
    ((2,), {}),
    ((3,), {"currency": "USD"}),
    (("a b",), {}),
    (('it\'s "quoted" #1 $HOME;',), {}),
    ((-5,), {}),
    ((2.5,), {"currency": None}),
    (([1, 2],), {}),
    (({"k": "v"},), {}),
    ((None,), {"flag": True}),
    (("x" * 300,), {}),
    (("é€",), {}),
    ((7, "GBP", 8, 9), {}),
]


def shell_line(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """A call as an operator writes it on the command line: each argument a Python
    literal, quoted for the shell; keywords as --kw NAME=VALUE; ``--`` before a word
    that starts with a dash."""
    words = [repr(arg) for arg in args]
    options = [f"--kw={name}={value!r}" for name, value in kwargs.items()]
    return shlex.join([*options, "--", *words])


def json_line(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    if not kwargs:
        return json.dumps(list(args))
    return json.dumps({"*": list(args), **kwargs})


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("each")
    (root / "eachapp.py").write_text(textwrap.dedent(APP))
    sys.path.insert(0, str(root))
    yield root
    sys.path.remove(str(root))
    sys.modules.pop("eachapp", None)


class App:
    """The app in this process (the oracle), and cachectl pointed at its cache."""

    def __init__(self, root: Path, env: dict[str, str], mode: str) -> None:
        import eachapp

        self.module = eachapp
        self.root = root
        self.mode = mode
        os.environ.update(env)
        self.app = eachapp.create_app()
        self.env = {**os.environ, **env}
        for name in ("CACHECTL_APP", "CACHECTL_CONFIG", "FLASK_APP"):
            self.env.pop(name, None)
        config = {
            "CACHE_TYPE": env["EACH_CACHE_TYPE"],
            "CACHE_KEY_PREFIX": "each_",
            "CACHE_THRESHOLD": 100_000,
        }
        if "EACH_REDIS_URL" in env:
            config["CACHE_REDIS_URL"] = env["EACH_REDIS_URL"]
        if "EACH_CACHE_DIR" in env:
            config["CACHE_DIR"] = env["EACH_CACHE_DIR"]
        (root / "cache.json").write_text(json.dumps(config))

    def call_all(self) -> None:
        with self.app.app_context():
            for args, kwargs in CALLS:
                self.module.price(*args, **kwargs)
            for pid in (7, 8):
                self.module.Person(pid).has_membership(1)

    def stored(self, args: tuple[Any, ...], kwargs: dict[str, Any], person: int = 0) -> bool:
        """Whether the app's own decorator finds the call's result stored."""
        module = self.module
        with self.app.app_context():
            if person:
                function = module.Person.has_membership
                key = function.make_cache_key(function.uncached, module.Person(person), *args)
            else:
                key = module.price.make_cache_key(module.price.uncached, *args, **kwargs)
            return bool(module.cache.cache.has(key))

    def cachectl(self, *args: str, input: bytes | None = None) -> Any:
        app_mode = self.mode == "app"
        source = ["--app", "eachapp:create_app()"] if app_mode else ["--config", "cache.json"]
        return run_console(*source, *args, input=input, cwd=self.root, env=self.env)


@pytest.fixture(params=["redis", "filesystem"])
def backend_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    if request.param == "redis":
        target: RedisTarget = request.getfixturevalue("redis_target")
        return {"EACH_CACHE_TYPE": "RedisCache", "EACH_REDIS_URL": target.url}
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    return {"EACH_CACHE_TYPE": "FileSystemCache", "EACH_CACHE_DIR": str(cache_dir)}


@pytest.fixture(params=["config", "app"])
def app(request: pytest.FixtureRequest, app_dir: Path, backend_env: dict[str, str]) -> App:
    app = App(app_dir, backend_env, request.param)
    app.call_all()
    assert all(app.stored(args, kwargs) for args, kwargs in CALLS)
    return app


def _lines(app: App, text: str, name: str = "calls.txt") -> str:
    (app.root / name).write_text(text)
    return name


@pytest.mark.parametrize("each_format", ["shell", "json"])
def test_each_deletes_exactly_the_calls_listed(app: App, each_format: str) -> None:
    listed, kept = CALLS[::2], CALLS[1::2]
    write = shell_line if each_format == "shell" else json_line
    text = "# the products the data fix touched\n\n" + "\n".join(write(*c) for c in listed)
    name = _lines(app, text + "\n" + write((999,), {}) + "\n")  # one call never made
    done = app.cachectl("--json", "delete-memoized", "eachapp.price", "--each", name,
                        "--each-format", each_format)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    document = json.loads(done.stdout)
    assert (document["calls"], document["deleted"], document["not_cached"]) == (
        len(listed) + 1, len(listed), 1,
    )  # fmt: skip
    assert not any(app.stored(args, kwargs) for args, kwargs in listed)
    assert all(app.stored(args, kwargs) for args, kwargs in kept)
    assert app.stored((1,), {}, person=7)


def test_show_each_reports_the_keys_the_app_stored(app: App) -> None:
    """Every key show-memoized --each reports for a call is the key under which the app's
    own decorator stored it (the whole keyspace, on Redis)."""
    text = "\n".join(shell_line(*call) for call in CALLS) + "\n" + shell_line((999,), {})
    done = app.cachectl("--json", "show-memoized", "eachapp.price", "--each",
                        _lines(app, text + "\n"))  # fmt: skip
    assert done.returncode == 1, done.stderr.decode()  # the last call is not cached
    *records, summary = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert [record["cached"] for record in records] == [True] * len(CALLS) + [False]
    assert [record["line"] for record in records] == list(range(1, len(CALLS) + 2))
    assert summary == {"ok": False, "summary": True, "function": "eachapp.price",
                       "calls": len(CALLS) + 1, "cached": len(CALLS), "not_cached": 1}  # fmt: skip
    module = app.module
    with app.app.app_context():
        expected = [module.price.make_cache_key(module.price.uncached, *a, **k) for a, k in CALLS]
    assert [record["key"] for record in records[:-1]] == expected
    name = _lines(app, "\n".join(json_line(*call) for call in CALLS))
    as_json = app.cachectl("--json", "show-memoized", "eachapp.price", "--each-format", "json",
                           "--each", name)  # fmt: skip
    assert as_json.returncode == 0, as_json.stderr.decode()
    keys = [json.loads(line)["key"] for line in as_json.stdout.decode().splitlines()[:-1]]
    assert keys == expected


def test_show_each_in_text_a_line_per_call(app: App) -> None:
    done = app.cachectl("show-memoized", "eachapp.price", "--each",
                        _lines(app, "1\n\n# not a call\n999\n"))  # fmt: skip
    assert done.returncode == 1
    out = done.stdout.decode().splitlines()
    assert out[0].startswith("line 1: cached ") and out[1].startswith("line 4: not cached ")
    assert done.stderr.decode() == "1 of 2 calls cached\n"
    everything = app.cachectl("show-memoized", "eachapp.price", "--each", _lines(app, "1\n2\n"))
    assert everything.returncode == 0


def test_a_method_per_instance_line(app: App) -> None:
    text = "1 --instance 'Person(7)'\n1 --instance 'Person(9)'\n"
    done = app.cachectl("--json", "delete-memoized", "eachapp.Person.has_membership",
                        "--each", _lines(app, text))  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout)["deleted"] == 1
    assert not app.stored((1,), {}, person=7) and app.stored((1,), {}, person=8)


def test_standard_input(app: App) -> None:
    done = app.cachectl("delete-memoized", "eachapp.price", "--each", "-", input=b"1\n2\n2\n")
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode() == "deleted 2 cached results; 1 of 3 calls not cached\n"
    assert not app.stored((1,), {}) and not app.stored((2,), {}) and app.stored((-5,), {})


BAD_LINES = [
    ("1\n2\n'unclosed\n", 3, "no closing single quote"),
    ("1\n2 --kw item=3\n", 2, "the arguments do not fit eachapp.price"),
    ("1\n2 --kw 3=3\n", 2, "--kw takes NAME=VALUE"),
    ("1\n\n# fine\n'not-a-literal('\n", 4, "neither a Python literal nor a bare word"),
    ("1\nnot-a-literal(\n", 2, "an unquoted '(', which a shell would read as an operator"),
    ("1\n2 --nosuch\n", 2, "No such option '--nosuch'"),
    ("1\n2 ; rm -rf /\n", 2, "an unquoted ';'"),
    ("1\n--kw currency=EUR\n", 2, "missing a required argument: 'item'"),
    ("1\n--\n", 2, "no arguments: a call without any is the whole function"),
    ("1\n2 --help\n", 2, "No such option '--help'"),
]


@pytest.mark.parametrize(("text", "number", "reason"), BAD_LINES)
def test_a_bad_line_stops_before_anything_is_deleted(
    app: App, text: str, number: int, reason: str
) -> None:
    done = app.cachectl("delete-memoized", "eachapp.price", "--each", _lines(app, text))
    assert done.returncode == 2
    stderr = done.stderr.decode()
    assert stderr.startswith(f"error: calls.txt, line {number}: ") and reason in stderr, stderr
    assert stderr.endswith("; nothing was deleted\n") and stderr.count("\n") == 1
    assert done.stdout == b""
    assert app.stored((1,), {}) and app.stored((2,), {})


BAD_JSON = [
    ('[1]\n{"*": 1}\n', 2, '"*" holds the positional arguments'),
    ("[1]\n[1,\n", 2, "not JSON"),
    ('[1]\n"1"\n', 2, "not str"),
    ('[1]\n{"not a name": 1}\n', 2, "'not a name' is not a parameter name"),
    ("[1]\n" + "[" * 100_000 + "\n", 2, "JSON nested too deeply"),
    ("[1]\n[]\n", 2, "no arguments"),
]


@pytest.mark.parametrize(("text", "number", "reason"), BAD_JSON)
def test_a_bad_json_line_stops_before_anything_is_deleted(
    app: App, text: str, number: int, reason: str
) -> None:
    done = app.cachectl("delete-memoized", "eachapp.price", "--each", _lines(app, text),
                        "--each-format", "json")  # fmt: skip
    assert done.returncode == 2
    stderr = done.stderr.decode()
    assert stderr.startswith(f"error: calls.txt, line {number}: ") and reason in stderr, stderr
    assert stderr.count("\n") == 1
    assert app.stored((1,), {})


HOSTILE = [
    (b"1\n2 " + b"9" * (1 << 20) + b"\n", 2, "longer than 1,048,576 bytes"),
    (b"1\n2" + b"9" * (1 << 21), 2, "longer than 1,048,576 bytes"),  # no line break at all
    (b"1\n2\x003\n", 2, "a NUL byte (byte 2)"),
    (b"1\n\xff\xfe\n", 2, "not UTF-8 text (byte 1)"),
    (b"1\n'\xc3'\n", 2, "not UTF-8 text (byte 2)"),
]


@pytest.mark.parametrize(("data", "number", "reason"), HOSTILE)
def test_hostile_lines_are_one_line_of_error(
    app: App, data: bytes, number: int, reason: str
) -> None:
    for command in ("delete-memoized", "show-memoized"):
        done = app.cachectl(command, "eachapp.price", "--each", "-", input=data)
        assert done.returncode == 2
        stderr = done.stderr.decode()
        assert stderr.startswith(f"error: standard input, line {number}: {reason}; "), stderr
        assert stderr.count("\n") == 1 and len(stderr) < 300
    assert app.stored((1,), {}) and app.stored((2,), {})


def test_an_argument_of_70000_bytes_fits(app: App) -> None:
    with app.app.app_context():
        app.module.price("y" * 70_000)
    done = app.cachectl("--json", "delete-memoized", "eachapp.price", "--each", "-",
                        input=f"'{'y' * 70_000}'\n".encode())  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout)["deleted"] == 1
    assert not app.stored(("y" * 70_000,), {})


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["1"], "ARGs does not go with --each"),
        (["--kw", "currency=EUR"], "--kw does not go with --each"),
        (["--purge"], "--purge does not go with --each"),
        (["--dry-run"], "--dry-run does not go with --each"),
    ],
)
def test_what_does_not_go_with_each(app: App, extra: list[str], message: str) -> None:
    name = _lines(app, "1\n")
    done = app.cachectl("delete-memoized", "eachapp.price", "--each", name, *extra)
    assert done.returncode == 2 and message in done.stderr.decode()
    assert app.stored((1,), {})


def test_each_format_needs_each(redis_target: RedisTarget) -> None:
    done = run_console("--url", redis_target.url, "show-memoized", "x.y", "--each-format", "json")
    assert done.returncode == 2
    assert done.stderr.decode() == "error: --each-format applies to --each\n"


def test_a_name_not_imported_with_nothing_cached_is_exit_1(redis_target: RedisTarget) -> None:
    done = run_console("--url", redis_target.url, "--compat", "2.5", "delete-memoized",
                       "nowhere.get_user", "--signature", "(user_id)", "--each", "-",
                       input=b"1\n2\n")  # fmt: skip
    assert done.returncode == 1, done.stderr.decode()
    assert "nothing matched nowhere.get_user" in done.stderr.decode()
    assert redis_target.client.dbsize() == 0


def test_many_lines_in_batches(app: App) -> None:
    """Thousands of calls, duplicates among them: each stored result deleted once, every
    other line counted as not cached."""
    with app.app.app_context():
        for item in range(2500):
            app.module.price(item)
    text = "".join(f"{item}\n" for item in range(3000)) + "1\n"
    done = app.cachectl("--json", "delete-memoized", "eachapp.price", "--each", "-",
                        input=text.encode())  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    document = json.loads(done.stdout)
    assert (document["calls"], document["deleted"], document["not_cached"]) == (3001, 2500, 501)
    assert not app.stored((2499,), {}) and app.stored((-5,), {})


def test_plain_lines_after_the_first_are_still_checked(app: App) -> None:
    """Lines of positional ARGs alone skip the look-ups once the first is formed, not the
    check of how many: a line with one too many stops the run, naming it; lines naming
    another instance between them are formed as their own."""
    text = "1\n2 --instance 'Person(8)'\n1 --instance 'Person(7)'\n1\n1 2\n"
    done = app.cachectl("delete-memoized", "eachapp.Person.has_membership", "--instance",
                        "Person(7)", "--each", _lines(app, text))  # fmt: skip
    assert done.returncode == 2
    stderr = done.stderr.decode()
    assert stderr.startswith("error: calls.txt, line 5: the arguments do not fit "), stderr
    assert app.stored((1,), {}, person=7)
    done = app.cachectl("--json", "delete-memoized", "eachapp.Person.has_membership",
                        "--instance", "Person(7)", "--each", _lines(app, text[:-4]))  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout)["deleted"] == 1
    assert not app.stored((1,), {}, person=7) and app.stored((1,), {}, person=8)


def test_with_nothing_cached_each_line_is_still_checked(redis_target: RedisTarget) -> None:
    done = run_console("--url", redis_target.url, "--compat", "2.5", "delete-memoized",
                       "nowhere.get_user", "--signature", "(user_id)", "--each", "-",
                       input=b"1\n2\n3 4\n")  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.decode().startswith("error: standard input, line 3: the arguments do not")
