"""warm: a real Flask app's @cache.memoize functions and @cache.cached views, warmed by
the installed ``cachectl`` through the app's own code, store exactly what the app stores
on its own: the app, run by itself into a second, fresh keyspace (with the same function
versions), is the judge of every key and value."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import RedisTarget, run_console

APP = """
import os

from flask import Flask, request
from flask_caching import Cache

cache = Cache()


def create_app(url=None, directory=None):
    app = Flask("warmapp")
    url = url or os.environ.get("WARM_URL")
    directory = directory or os.environ.get("WARM_DIR")
    if url:
        app.config.update(CACHE_TYPE="RedisCache", CACHE_REDIS_URL=url)
    else:
        app.config.update(CACHE_TYPE="FileSystemCache", CACHE_DIR=directory)
    app.config["CACHE_KEY_PREFIX"] = "shop:"
    cache.init_app(app)

    @app.route("/pricing")
    @cache.cached(timeout=300)
    def pricing():
        return "prices: " + ", ".join(str(price(item)["price"]) for item in (1, 2))

    @app.route("/search")
    @cache.cached(timeout=300, query_string=True)
    def search():
        return "results for " + request.args.get("q", "") + " " + request.headers.get("X-Shop", "")

    @app.route("/broken")
    @cache.cached(timeout=300)
    def broken():
        raise RuntimeError("the database is down\\nsecond line")

    return app


@cache.memoize(300)
def price(item, currency="EUR"):
    return {"item": item, "currency": currency, "price": item * 10}


@cache.memoize(300)
def failing(item):
    raise ValueError(f"no item {item}")


@cache.memoize(300)
def noisy(item):
    print("computing", item)
    return item
"""

IMPORT = "warmapp:create_app()"
#: The function namespaces whose versions the judge copies before it runs.
FUNCTIONS = ("warmapp.price", "warmapp.failing")


def _write_app(where: Path) -> Path:
    (where / "warmapp").mkdir()
    (where / "warmapp" / "__init__.py").write_text(APP)
    return where


def _judge(where: Path, warmed: dict[str, str], fresh: dict[str, str], calls: str) -> None:
    """The app itself, in a process of its own, into the ``fresh`` keyspace: each memoized
    function's version copied from the ``warmed`` one (a version is random), then
    ``calls`` made by the app's own code (``client``: its test client)."""
    script = textwrap.dedent(f"""
        from warmapp import cache, create_app, price, failing
        warmed = create_app(**{warmed!r})
        fresh = create_app(**{fresh!r})
        for name in {FUNCTIONS!r}:
            with warmed.app_context():
                version = cache.get(name + "_memver")
            if version is not None:
                with fresh.app_context():
                    cache.set(name + "_memver", version, timeout=0)
        client = fresh.test_client()
        with fresh.app_context():
            {calls}
    """)
    subprocess.run([sys.executable, "-c", script], cwd=where, check=True)


def _redis_contents(client: redis.Redis) -> dict[bytes, bytes | None]:
    return {key: client.get(key) for key in client.scan_iter()}


@pytest.fixture
def two_dbs(redis_target: RedisTarget) -> tuple[RedisTarget, redis.Redis, str]:
    """The warmed database and a second, fresh one on the same server for the judge."""
    other = (redis_target.db + 8) % 16
    client = redis.Redis(port=redis_target.port, db=other)
    client.flushdb()
    return redis_target, client, f"redis://127.0.0.1:{redis_target.port}/{other}"


def _warm(where: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    import os

    return run_console("--app", IMPORT, *args, cwd=where, env={**os.environ, **env})


def test_redis_warmed_keys_and_values_equal_what_the_app_stores(
    tmp_path: Path, two_dbs: tuple[RedisTarget, redis.Redis, str]
) -> None:
    target, judge_client, judge_url = two_dbs
    where = _write_app(tmp_path)
    env = {"WARM_URL": target.url}
    calls = tmp_path / "calls.txt"
    # Shell words, as on the command line: "'5'" is the string '5' (a bare 5 would be 5).
    calls.write_text("3\n# a comment\n\n4 --kw currency=USD\n\"'5'\"\n")
    steps = [
        ("warm", "memoized", "warmapp.price", "1"),
        ("warm", "memoized", "warmapp.price", "2", "--kw", "currency=USD"),
        ("warm", "memoized", "warmapp.price", "--each", str(calls), "--jobs", "2"),
        ("warm", "view", "/pricing"),
        ("warm", "view", "/search", "--query", "q=shoes", "--header", "X-Shop: north"),
    ]
    for step in steps:
        done = _warm(where, env, *step)
        assert done.returncode == 0, (step, done.stderr)
        assert done.stdout.decode().startswith("stored: "), (step, done.stdout)
    _judge(
        where,
        {"url": target.url},
        {"url": judge_url},
        "price(1); price(2, currency='USD'); price(3); price(4, currency='USD'); price('5'); "
        "client.get('/pricing'); "
        "client.get('/search', query_string='q=shoes', headers={'X-Shop': 'north'})",
    )
    warmed, judged = _redis_contents(target.client), _redis_contents(judge_client)
    # 5 calls, price(2) made by /pricing itself, 2 views, 1 version key
    assert len(warmed) == 9
    assert warmed == judged
    for key in warmed:  # the decorators' own timeout (300 s), set when stored
        if not key.endswith(b"_memver"):
            assert 200 < target.client.ttl(key) <= 300


def test_already_cached_is_left_as_it_is_and_json_reports_each_target(
    tmp_path: Path, redis_target: RedisTarget
) -> None:
    where = _write_app(tmp_path)
    env = {"WARM_URL": redis_target.url}
    first = _warm(where, env, "--json", "warm", "memoized", "warmapp.price", "7")
    assert first.returncode == 0, first.stderr
    (result,) = json.loads(first.stdout)["results"]
    assert result["status"] == "stored" and redis_target.client.exists(f"shop:{result['key']}")
    stored_key = b"shop:" + result["key"].encode()
    redis_target.client.set(stored_key, b"!" + __import__("pickle").dumps("kept"))
    again = _warm(where, env, "--json", "warm", "memoized", "warmapp.price", "7")
    assert again.returncode == 0, again.stderr
    document = json.loads(again.stdout)
    assert document["counts"]["already cached"] == 1
    assert document["results"][0]["status"] == "already cached"
    # Nothing was called: the value put there by hand stands.
    assert redis_target.client.get(stored_key) == b"!" + __import__("pickle").dumps("kept")
    view = _warm(where, env, "warm", "view", "/pricing")
    view_again = _warm(where, env, "warm", "view", "/pricing")
    assert view.stdout.decode().startswith("stored: GET /pricing")
    assert view_again.stdout.decode().startswith("already cached: GET /pricing")


def test_failures_are_one_line_each_and_exit_1(tmp_path: Path, redis_target: RedisTarget) -> None:
    where = _write_app(tmp_path)
    env = {"WARM_URL": redis_target.url}
    view = _warm(where, env, "warm", "view", "/broken")
    assert view.returncode == 1
    out, err = view.stdout.decode(), view.stderr.decode()
    assert out == "failed: GET /broken: RuntimeError: the database is down\n"
    assert "Traceback" not in err and "Traceback" not in out
    function = _warm(where, env, "warm", "memoized", "warmapp.failing", "9")
    assert function.returncode == 1
    assert function.stdout.decode() == "failed: warmapp.failing(9): ValueError: no item 9\n"
    assert "Traceback" not in function.stderr.decode()
    missing = _warm(where, env, "warm", "view", "/nowhere")
    assert missing.returncode == 1
    assert "the app answered 404 NOT FOUND" in missing.stdout.decode()
    assert redis_target.client.keys("shop:view*") == []


def test_warm_needs_the_app_and_checks_its_arguments(
    tmp_path: Path, redis_target: RedisTarget
) -> None:
    where = _write_app(tmp_path)
    no_app = run_console("--url", redis_target.url, "warm", "view", "/pricing", cwd=where)
    assert no_app.returncode == 2
    assert no_app.stderr.decode().count("\n") == 1 and "--app" in no_app.stderr.decode()
    env = {"WARM_URL": redis_target.url}
    bad_line = tmp_path / "bad.txt"
    bad_line.write_text("1\n'unclosed\n")
    bad = _warm(where, env, "warm", "memoized", "warmapp.price", "--each", str(bad_line))
    assert bad.returncode == 2 and "line 2" in bad.stderr.decode()
    too_many = tmp_path / "many.txt"
    too_many.write_text("1\n1 2 3\n")
    unbound = _warm(where, env, "warm", "memoized", "warmapp.price", "--each", str(too_many))
    assert unbound.returncode == 2 and "do not fit" in unbound.stderr.decode()
    assert redis_target.client.keys() == []  # nothing warmed before a bad line


def test_jobs_4_warms_every_call(tmp_path: Path, redis_target: RedisTarget) -> None:
    where = _write_app(tmp_path)
    calls = tmp_path / "calls.txt"
    calls.write_text("".join(f"{n}\n" for n in range(40)))
    done = _warm(
        where,
        {"WARM_URL": redis_target.url},
        "--json",
        "warm",
        "memoized",
        "warmapp.price",
        "--each",
        str(calls),
        "--jobs",
        "4",
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["counts"]["stored"] == 40
    assert [r["target"] for r in document["results"]] == [f"warmapp.price({n})" for n in range(40)]
    entries = [k for k in redis_target.client.keys("shop:*") if not k.endswith(b"_memver")]
    assert len(entries) == 40


def test_filesystem_warmed_files_equal_what_the_app_stores(tmp_path: Path) -> None:
    where = _write_app(tmp_path)
    warmed, judged = tmp_path / "warmed", tmp_path / "judged"
    warmed.mkdir()
    judged.mkdir()
    env = {"WARM_DIR": str(warmed)}
    for step in (
        ("warm", "memoized", "warmapp.price", "1", "--kw", "currency=USD"),
        ("warm", "view", "/pricing"),
    ):
        done = _warm(where, env, *step)
        assert done.returncode == 0, (step, done.stderr)
        assert done.stdout.decode().startswith("stored: ")
    _judge(
        where,
        {"directory": str(warmed)},
        {"directory": str(judged)},
        "price(1, currency='USD'); client.get('/pricing')",
    )

    def payloads(directory: Path) -> dict[str, Any]:
        # A file is its expiry time (4 bytes), then the pickle.
        return {p.name: p.read_bytes()[4:] for p in directory.iterdir() if p.is_file()}

    found = payloads(warmed)
    assert len(found) >= 4  # price(1), price(2) and price(1, USD), the view, the version
    assert found == payloads(judged)


def _stale(client: redis.Redis, key: bytes) -> None:
    """Put a value the app never computed under ``key``, to see it replaced."""
    import pickle

    client.set(key, b"!" + pickle.dumps("stale"), ex=300)


def _key_of(where: Path, env: dict[str, str], *warm_args: str) -> tuple[str, str]:
    done = _warm(where, env, "--json", "warm", *warm_args)
    assert done.returncode == 0, done.stderr
    (result,) = json.loads(done.stdout)["results"]
    return result["status"], "shop:" + result["key"]


def test_invalidate_warm_stores_again_what_it_removed(
    tmp_path: Path, redis_target: RedisTarget
) -> None:
    where = _write_app(tmp_path)
    (tmp_path / "cachectl.toml").write_text(
        "[groups.prices]\n"
        'memoized = ["warmapp.price 1", "warmapp.price 2 --kw currency=USD"]\n'
        'views = ["/pricing", "/search --all-queries"]\n'
        "[groups.everything]\n"
        'memoized = ["warmapp.price"]\n'
        'patterns = ["report:*"]\n'
    )
    env = {"WARM_URL": redis_target.url}
    client = redis_target.client
    _, price_key = _key_of(where, env, "memoized", "warmapp.price", "1")
    _, view_key = _key_of(where, env, "view", "/pricing")
    _stale(client, price_key.encode())
    _stale(client, view_key.encode())
    done = _warm(where, env, "--json", "invalidate", "prices", "--warm")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    commands = [line["command"] for line in document["lines"]]
    assert commands[4:] == [
        "warm memoized -- warmapp.price 1",
        "warm memoized --kw currency=USD -- warmapp.price 2",
        "warm view -- /pricing",
    ]
    statuses = [line["document"]["results"][0]["status"] for line in document["lines"][4:]]
    assert statuses == ["stored", "stored", "stored"]
    assert document["not_warmed"] == [
        {
            "command": "delete-view /search --all-queries",
            "why": "every query of a view cannot be warmed: only one path and query",
        }
    ]
    import pickle

    assert pickle.loads(client.get(price_key)[1:]) == {"item": 1, "currency": "EUR", "price": 10}
    assert pickle.loads(client.get(view_key)[1:]) != "stale"
    assert _key_of(where, env, "memoized", "warmapp.price", "2", "--kw", "currency=USD")[0] == (
        "already cached"
    )
    whole = _warm(where, env, "invalidate", "everything", "--warm", "--yes")
    assert whole.returncode == 0, whole.stderr
    said = whole.stderr.decode()
    assert "not warmed: delete-memoized warmapp.price: a whole function cannot be warmed" in said
    assert "not warmed: delete --yes --pattern 'report:*'" in said
    no_app = run_console("--url", redis_target.url, "invalidate", "prices", "--warm", cwd=where)
    assert no_app.returncode == 2 and "--app" in no_app.stderr.decode()


def test_batch_runs_warm_lines_and_checks_them_first(
    tmp_path: Path, redis_target: RedisTarget
) -> None:
    where = _write_app(tmp_path)
    env = {"WARM_URL": redis_target.url}
    _, price_key = _key_of(where, env, "memoized", "warmapp.price", "3")
    _stale(redis_target.client, price_key.encode())
    deploy = tmp_path / "deploy.txt"
    deploy.write_text(
        "delete-memoized warmapp.price 3\nwarm memoized warmapp.price 3\nwarm view /pricing\n"
    )
    done = _warm(where, env, "--json", "batch", str(deploy))
    assert done.returncode == 0, done.stderr
    lines = json.loads(done.stdout)["lines"]
    assert [line["document"].get("results", [{}])[0].get("status") for line in lines] == [
        None,
        "stored",
        "stored",
    ]
    assert b"stale" not in redis_target.client.get(price_key)
    # A warm line that fails its checks stops the batch before the deletion runs.
    _stale(redis_target.client, price_key.encode())
    deploy.write_text("delete-memoized warmapp.price 3\nwarm memoized warmapp.nothing 3\n")
    refused = _warm(where, env, "batch", str(deploy))
    assert refused.returncode == 2, refused.stderr
    assert "line 2" in refused.stderr.decode()
    assert b"stale" in redis_target.client.get(price_key)


def test_plan_apply_warm_requests_the_view_paths_it_invalidated(
    tmp_path: Path, redis_target: RedisTarget
) -> None:
    where = _write_app(tmp_path)

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=where,
            check=True,
            capture_output=True,
        )

    git("init", "-q")
    git("add", "warmapp")
    git("commit", "-qm", "v1")
    git("tag", "v1")
    env = {"WARM_URL": redis_target.url}
    _, view_key = _key_of(where, env, "view", "/pricing")
    _stale(redis_target.client, view_key.encode())
    module = where / "warmapp" / "__init__.py"
    text = module.read_text().replace('"prices: "', '"prices now: "')
    module.write_text(text.replace("item * 10", "item * 11"))
    git("commit", "-qam", "v2")
    dry = _warm(where, env, "--json", "plan", "--since", "v1", "--apply", "--warm", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["warm"]["results"][0]["status"] == "would warm"
    assert b"stale" in redis_target.client.get(view_key)
    done = _warm(where, env, "--json", "plan", "--since", "v1", "--apply", "--warm")
    assert done.returncode == 0, done.stderr
    warmed = json.loads(done.stdout)["warm"]
    assert [(r["target"], r["status"]) for r in warmed["results"]] == [("GET /pricing", "stored")]
    assert warmed["not_warmable"] == [
        {
            "what": "delete-memoized warmapp.price",
            "why": "a whole function cannot be warmed: only a call with its arguments",
        }
    ]
    import pickle

    assert pickle.loads(redis_target.client.get(view_key)[1:]).startswith("prices now: ")
    no_apply = _warm(where, env, "plan", "--since", "v1", "--warm")
    assert no_apply.returncode == 2 and "--apply" in no_apply.stderr.decode()


def test_what_the_app_prints_leaves_the_json_alone_and_debug_shows_the_traceback(
    tmp_path: Path, redis_target: RedisTarget
) -> None:
    where = _write_app(tmp_path)
    env = {"WARM_URL": redis_target.url}
    noisy = _warm(where, env, "--json", "warm", "memoized", "warmapp.noisy", "1")
    assert noisy.returncode == 0, noisy.stderr
    assert json.loads(noisy.stdout)["counts"]["stored"] == 1
    assert "computing 1" in noisy.stderr.decode()
    debug = _warm(where, env, "--debug", "warm", "memoized", "warmapp.failing", "2")
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr.decode() and 'raise ValueError(f"no item' in (
        debug.stderr.decode()
    )


def test_warm_is_recorded_in_the_audit_log(tmp_path: Path, redis_target: RedisTarget) -> None:
    where = _write_app(tmp_path)
    log = tmp_path / "audit.jsonl"
    env = {"WARM_URL": redis_target.url}
    done = _warm(where, env, "--audit-log", str(log), "warm", "memoized", "warmapp.price", "8")
    assert done.returncode == 0, done.stderr
    (line,) = [json.loads(text) for text in log.read_text().splitlines()]
    assert line["command"] == "warm" and line["exit_code"] == 0
    assert line["done"]["counts"]["stored"] == 1
