"""check-pickles: a real app's release renames a model class; the entries its old code
pickled are found (by --app and by --python), and --delete removes exactly those.

The app is a package in a real git repository made here: commit 1 has ``Product``,
commit 2 renames it ``Item``, commit 3 keeps the name ``Product`` for a factory function.
The cache is filled by the app itself at commit 1 (``@cache.memoize`` functions that
return model instances, a plain value), in its own process; cachectl then reads it with
the code of a later commit checked out.
"""

from __future__ import annotations

import collections
import datetime
import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
import redis

from cachectl.codec import pickle_refs
from tests.conftest import RedisTarget, empty_database, run, run_console
from tests.servers import ServerProcess, start_redis
from tests.test_hostile_pickles import CASES, assert_harmless
from tests.test_no_scripting import scripting_commands

INIT = """
import os
from flask import Flask
from flask_caching import Cache

cache = Cache()


def create_app():
    app = Flask(__name__)
    app.config.update(
        CACHE_TYPE="RedisCache",
        CACHE_REDIS_URL=os.environ["SHOP_REDIS_URL"],
        CACHE_KEY_PREFIX="shop_",
    )
    cache.init_app(app)
    from shop import views  # noqa: F401
    return app
"""

MODELS_V1 = """
class Product:
    def __init__(self, number):
        self.number = number


class Category:
    def __init__(self, name):
        self.name = name
"""

MODELS_V2 = MODELS_V1.replace("class Product:", "class Item:")

MODELS_V3 = (
    MODELS_V2
    + """

def Product(number):
    return Item(number)
"""
)

VIEWS = """
from shop import cache
from shop.models import {model} as Model, Category


@cache.memoize()
def get_product(number):
    return Model(number)


@cache.memoize()
def get_category(name):
    return Category(name)


@cache.memoize()
def get_price(number):
    return {{"number": number, "price": number * 1.5}}
"""


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def commit(repo: Path, models: str, model: str, message: str) -> str:
    package = repo / "shop"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text(textwrap.dedent(INIT))
    (package / "models.py").write_text(textwrap.dedent(models))
    (package / "views.py").write_text(textwrap.dedent(VIEWS.format(model=model)))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@dataclass(frozen=True)
class Filled:
    """The repository at commit 1 and what the app stored, as DUMP payloads with the
    milliseconds each had left (-1: none) right after it stored them."""

    repo: Path
    revisions: list[str]
    entries: dict[bytes, tuple[bytes, int]]


@pytest.fixture(scope="module")
def filled_once(tmp_path_factory: pytest.TempPathFactory, redis_server: ServerProcess) -> Filled:
    """The repository and its three commits, made once; the cache filled once by the app at
    commit 1, in its own process, on a database of its own, then read back whole and
    emptied."""
    root = tmp_path_factory.mktemp("shop")
    repo = root / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    revisions = [
        commit(repo, MODELS_V1, "Product", "models"),
        commit(repo, MODELS_V2, "Item", "rename Product to Item"),
        commit(repo, MODELS_V3, "Item", "Product is a factory now"),
    ]
    git(repo, "checkout", "-q", revisions[0])
    target = empty_database(redis_server)
    client = target.client
    env = app_env(target.url)
    fill = """
        from shop import create_app, cache
        from shop.views import get_product, get_category, get_price
        app = create_app()
        with app.app_context():
            for n in range(1, 4):
                assert get_product(n).number == n
                get_category(str(n))
                get_price(n)
            cache.set("banner", "hello")
    """
    subprocess.run([sys.executable, "-c", textwrap.dedent(fill)], cwd=repo, env=env, check=True)
    pipe = client.pipeline(transaction=False)
    keys = sorted(client.scan_iter("*"))
    for key in keys:
        pipe.dump(key)
        pipe.pttl(key)
    replies = pipe.execute()
    client.flushdb()
    client.close()
    entries = {key: (replies[2 * i], replies[2 * i + 1]) for i, key in enumerate(keys)}
    assert len(entries) > 9  # nine calls and the banner, and the versions memoize keeps
    return Filled(repo, revisions, entries)


def app_env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CACHECTL_", "FLASK_"))}
    env["SHOP_REDIS_URL"] = url
    return env


@pytest.fixture
def shop(tmp_path: Path, redis_target: RedisTarget, filled_once: Filled) -> dict[str, object]:
    """The repository, three commits, and the cache filled by the app at commit 1: a copy
    of the repository for this test, and this test's database holding exactly what the
    app stored, each entry with the time it had left then."""
    repo = tmp_path / "repo"
    shutil.copytree(filled_once.repo, repo, symlinks=True)
    pipe = redis_target.client.pipeline(transaction=False)
    for key, (payload, left) in filled_once.entries.items():
        pipe.restore(key, max(left, 0), payload)
    pipe.execute()
    return {
        "repo": repo,
        "env": app_env(redis_target.url),
        "revisions": filled_once.revisions,
        "client": redis_target.client,
    }


def keys_holding(client, text: bytes) -> set[bytes]:  # type: ignore[no-untyped-def]
    return {k for k in client.scan_iter("shop_*") if text in (client.get(k) or b"")}


def check(shop: dict[str, object], *args: str) -> subprocess.CompletedProcess:
    return run_console(*args, cwd=shop["repo"], env=shop["env"])  # type: ignore[arg-type]


def test_without_the_app_the_classes_are_counted_per_class_and_function(
    shop: dict[str, object],
) -> None:
    done = check(
        shop,
        "--url",
        str(shop["env"]["SHOP_REDIS_URL"]),
        "--key-prefix",
        "shop_",  # type: ignore[index]
        "--json",
        "check-pickles",
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    classes = {c["name"]: c for c in document["classes"]}
    assert set(classes) == {"shop.models.Product", "shop.models.Category"}
    product = classes["shop.models.Product"]
    assert product["entries"] == 3 and product["resolves"] is None
    assert product["uses"] == ["referenced", "instantiated"]
    client = shop["client"]
    held = keys_holding(client, b"Product")
    assert product["bytes"] == sum(client.strlen(k) for k in held)  # type: ignore[attr-defined]
    groups = {g["group"]: g for g in document["groups"]}
    assert groups["memoized shop.views.get_product"]["entries"] == 3
    assert groups["memoized shop.views.get_product"]["classes"] == ["shop.models.Product"]
    assert groups["memoized shop.views.get_category"]["classes"] == ["shop.models.Category"]
    assert document["entries"] == len(list(client.scan_iter("shop_*")))  # type: ignore[attr-defined]


def test_after_the_rename_the_app_finds_the_old_entries_and_delete_removes_exactly_them(
    shop: dict[str, object],
) -> None:
    repo, client = shop["repo"], shop["client"]
    git(repo, "checkout", "-q", shop["revisions"][1])  # type: ignore[index, arg-type]
    done = check(shop, "--app", "shop:create_app()", "--json", "check-pickles")
    assert done.returncode == 1, done.stderr
    document = json.loads(done.stdout)
    classes = {c["name"]: c for c in document["classes"]}
    assert classes["shop.models.Product"]["resolves"] is False
    assert classes["shop.models.Product"]["problem"] == "shop.models has no attribute Product"
    assert classes["shop.models.Category"]["resolves"] is True
    assert document["unresolvable"] == {"classes": 1, "entries_at_most": 3}

    text = check(shop, "--app", "shop:create_app()", "check-pickles")
    assert text.returncode == 1
    assert b"shop.models has no attribute Product" in text.stdout
    assert b"1 class no longer resolves in" in text.stdout

    before = set(client.scan_iter("shop_*"))  # type: ignore[attr-defined]
    doomed = keys_holding(client, b"Product")
    assert len(doomed) == 3
    dry = check(
        shop, "--app", "shop:create_app()", "--json", "check-pickles", "--delete", "--dry-run"
    )
    assert json.loads(dry.stdout)["would_remove"] == 3
    assert set(client.scan_iter("shop_*")) == before  # type: ignore[attr-defined]
    refused = check(shop, "--app", "shop:create_app()", "check-pickles", "--delete")
    assert refused.returncode == 2 and b"--yes" in refused.stderr
    gone = check(shop, "--app", "shop:create_app()", "--json", "check-pickles", "--delete", "--yes")
    assert gone.returncode == 0, gone.stderr
    assert json.loads(gone.stdout)["removed"] == 3
    assert set(client.scan_iter("shop_*")) == before - doomed  # type: ignore[attr-defined]
    again = check(shop, "--app", "shop:create_app()", "--json", "check-pickles")
    assert again.returncode == 0
    assert json.loads(again.stdout)["unresolvable"]["classes"] == 0


def test_the_apps_own_interpreter_resolves_the_names(shop: dict[str, object]) -> None:
    git(shop["repo"], "checkout", "-q", shop["revisions"][1])  # type: ignore[index, arg-type]
    url = str(shop["env"]["SHOP_REDIS_URL"])  # type: ignore[index]
    done = check(
        shop,
        "--url",
        url,
        "--key-prefix",
        "shop_",
        "--json",
        "check-pickles",
        "--python",
        sys.executable,
    )
    assert done.returncode == 1, done.stderr
    document = json.loads(done.stdout)
    assert document["resolved_in"] == f"--python {sys.executable}"
    broken = {c["name"]: c["problem"] for c in document["classes"] if c["resolves"] is False}
    assert broken == {"shop.models.Product": "shop.models has no attribute Product"}


def test_a_class_that_became_a_function_is_reported(shop: dict[str, object]) -> None:
    git(shop["repo"], "checkout", "-q", shop["revisions"][2])  # type: ignore[index, arg-type]
    done = check(shop, "--app", "shop:create_app()", "--json", "check-pickles")
    assert done.returncode == 1, done.stderr
    classes = {c["name"]: c for c in json.loads(done.stdout)["classes"]}
    assert classes["shop.models.Product"]["problem"] == "now a function, not a class"


def test_a_missing_module_is_reported(shop: dict[str, object]) -> None:
    repo = shop["repo"]
    git(repo, "checkout", "-q", shop["revisions"][1])  # type: ignore[index, arg-type]
    (repo / "shop" / "models.py").rename(repo / "shop" / "entities.py")  # type: ignore[operator]
    views = repo / "shop" / "views.py"  # type: ignore[operator]
    views.write_text(views.read_text().replace("shop.models", "shop.entities"))
    done = check(shop, "--app", "shop:create_app()", "--json", "check-pickles")
    problems = {c["name"]: c["problem"] for c in json.loads(done.stdout)["classes"]}
    assert problems == {
        "shop.models.Product": "module shop.models is missing",
        "shop.models.Category": "module shop.models is missing",
    }


def test_delete_needs_the_apps_code(redis_target: RedisTarget) -> None:
    result = run("--url", redis_target.url, "--key-prefix", "app_", "check-pickles", "--delete")
    assert result.exit_code == 2
    assert "--app or --python" in result.stderr


def test_hostile_pickles_are_read_without_running_anything(
    redis_target: RedisTarget, tmp_path: Path
) -> None:
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "file").write_text("precious")
    pipe = redis_target.client.pipeline()
    for name, hostile in CASES.items():
        pipe.set(f"app_{name}", b"!" + hostile.build(tmp_path))
    pipe.execute()
    started = time.perf_counter()
    result = run(
        "--url",
        redis_target.url,
        "--key-prefix",
        "app_",
        "--json",
        "check-pickles",
        "--python",
        sys.executable,
    )
    seconds = time.perf_counter() - started
    assert_harmless(tmp_path)
    assert result.exit_code in (0, 1), result.stderr
    document = json.loads(result.stdout)
    assert document["entries"] == len(CASES)
    names = {c["name"] for c in document["classes"]}
    assert {"posix.system", "builtins.eval"} <= names or {"os.system"} <= names
    assert seconds < 60, seconds  # each value bounded as get bounds it (2 s at most)


def test_the_opcode_reader_names_what_pickle_would_import() -> None:
    class_path = f"{__name__}.Sample"
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        refs = pickle_refs.references(pickle.dumps([Sample(1), Sample(2)], protocol))
        assert refs.names[class_path] & pickle_refs.INSTANTIATED, protocol
        assert refs.stopped is None
    assert pickle_refs.references(pickle.dumps({"a": [1, 2.5, "x"]}, 5)).names == {}
    cut = pickle_refs.references(b"\x80\x05\x8c\x02os\x94\x8c\x06system\x94\x93")
    assert cut == pickle_refs.Refs({"os.system": pickle_refs.REFERENCED}, "truncated pickle")


class Sample:
    def __init__(self, number: int) -> None:
        self.number = number


def test_a_filesystem_cache_is_read_file_by_file(tmp_path: Path) -> None:
    from flask import Flask
    from flask_caching import Cache

    app = Flask("fs")
    app.config.update(CACHE_TYPE="FileSystemCache", CACHE_DIR=str(tmp_path / "c"))
    cache = Cache(app)
    with app.app_context():
        cache.set("one", Sample(1))
        cache.set("two", {"plain": True})
    result = run("--dir", str(tmp_path / "c"), "--json", "check-pickles")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert [c["name"] for c in document["classes"]] == [f"{__name__}.Sample"]
    assert document["pickles"] == 2


def ordinary_values() -> dict[str, bytes]:
    """Pickles of every protocol of values an app caches: classes of the standard
    library, a model of this module, plain data."""
    value = [datetime.datetime(2020, 1, 1), Decimal(1), collections.OrderedDict(a=1), {1, 2}]
    value += [b"xx", "text", Sample(3), (Sample(4), [Sample(5)])]
    found = {f"ordinary-p{p}": pickle.dumps(value, p) for p in range(pickle.HIGHEST_PROTOCOL + 1)}
    for p in range(pickle.HIGHEST_PROTOCOL + 1):  # where the pre-filter's answer is close
        found[f"text-c-newlines-p{p}"] = pickle.dumps("abc\nmodule\nname\n" * 3, p)
        found[f"text-newlines-p{p}"] = pickle.dumps("hello\nworld\n", p)
        found[f"bytes-93-p{p}"] = pickle.dumps(b"\x93\x82\x83\x84c\n\n", p)
        found[f"class-p{p}"] = pickle.dumps(Sample, p)
        found[f"instance-p{p}"] = pickle.dumps(Sample(p), p)
    return found


def test_the_names_read_on_redis_are_what_the_walk_in_python_names(
    redis_target: RedisTarget, tmp_path: Path
) -> None:
    """The names read on Redis (redis_pickles, pickle_names) and codec.pickle_refs agree
    on every pickle of the hostile corpus and on ordinary ones: the same names, the same
    roles."""
    from cachectl.backends.redis_pickles import SCRIPT_VALUE_BYTES, walked_entries
    from cachectl.codec.limits import DecodeLimits

    values = {name: case.build(tmp_path) for name, case in CASES.items()}
    values.update(ordinary_values())
    pipe = redis_target.client.pipeline()
    for name, data in values.items():
        pipe.set(f"app_{name}", b"!" + data)
    pipe.execute()
    patient = DecodeLimits(max_seconds=60)
    walked = walked_entries(redis_target.client, "app_*", 4, 16 * 1024 * 1024 + 1)
    assert walked is not None
    compared = counted_only = 0
    for entry in walked:
        if not entry.name:  # pickles that name nothing, only counted by the script
            assert entry.refs == pickle_refs.NONE
            counted_only += entry.entries
            continue
        data = values[entry.name.decode()]
        if len(data) + 1 > SCRIPT_VALUE_BYTES:
            assert entry.refs is None  # read and walked on the client
            continue
        expected = pickle_refs.references(data, patient)
        assert entry.refs is not None
        assert entry.refs.names == expected.names, entry.name
        assert (entry.refs.stopped is None) == (expected.stopped is None), entry.name
        compared += 1
    plain = [
        name
        for name, data in values.items()
        if len(data) + 1 <= SCRIPT_VALUE_BYTES
        and pickle_refs.references(data, patient) == pickle_refs.NONE
    ]
    assert counted_only == len(plain)
    assert compared + counted_only > 150


def test_a_server_that_runs_no_script_gives_the_same_report(tmp_path: Path) -> None:
    renames: list[str] = []
    for command in scripting_commands():
        renames += ["--rename-command", command, ""]
    plain, scripted = start_redis(*renames), start_redis()
    try:
        reports = []
        for server in (plain, scripted):
            client = redis.Redis(port=server.port)
            for name, data in ordinary_values().items():
                client.set(f"app_{name}", b"!" + data)
            client.set("app_count", b"12")
            url = f"redis://127.0.0.1:{server.port}/0"
            result = run("--url", url, "--key-prefix", "app_", "--json", "check-pickles")
            assert result.exit_code == 0, result.stderr
            report = json.loads(result.stdout)
            del report["target"]
            reports.append(report)
        assert reports[0] == reports[1]
        assert reports[0]["not_pickles"] == 1
        assert {c["name"] for c in reports[0]["classes"]} >= {f"{__name__}.Sample"}
    finally:
        plain.stop()
        scripted.stop()


def test_delete_on_a_filesystem_cache_removes_only_the_files_naming_a_lost_class(
    tmp_path: Path,
) -> None:
    from flask import Flask
    from flask_caching import Cache

    app = Flask("fs")
    app.config.update(CACHE_TYPE="FileSystemCache", CACHE_DIR=str(tmp_path / "c"))
    cache = Cache(app)
    # A pickle of an instance of gone_module.Thing, a class no code has.
    lost = b"\x80\x04\x8c\x0bgone_module\x94\x8c\x05Thing\x94\x93\x94)\x81\x94."
    assert pickle_refs.references(lost).names == {"gone_module.Thing": 5}
    with app.app_context():
        cache.set("kept", Sample(1))
        cache.set("plain", [1, 2])
        cache.set("lost", "placeholder")
    lost_file = Path(cache.cache._get_filename("lost"))
    head = lost_file.read_bytes()[:4]  # cachelib's expiry header, then the pickle
    lost_file.write_bytes(head + lost)
    (tmp_path / "c" / "notes.txt").write_text("not a cache file")
    before = sorted(p.name for p in (tmp_path / "c").iterdir())
    log = tmp_path / "audit.jsonl"
    kept = tmp_path / "lost.backup"
    result = run(
        "--dir", str(tmp_path / "c"), "--audit-log", str(log), "--backup", str(kept), "--json",
        "check-pickles", "--python", sys.executable, "--delete", "--yes",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["removed"] == 1
    assert document["backup"]["entries"] == 1  # what --delete removed can be put back
    assert {c["name"]: c["problem"] for c in document["classes"] if c["problem"]} == {
        "gone_module.Thing": "module gone_module is missing"
    }
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == sorted(
        set(before) - {lost_file.name}
    )
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    assert logged[-1]["command"] == "check-pickles"
    assert logged[-1]["done"]["removed"] == 1
    assert run("--dir", str(tmp_path / "c"), "restore", str(kept)).exit_code == 0
    assert lost_file.read_bytes() == head + lost


def test_plan_since_lists_the_entries_of_a_renamed_class_and_apply_removes_them(
    shop: dict[str, object],
) -> None:
    repo, client = shop["repo"], shop["client"]
    rev0, rev1, _ = shop["revisions"]  # type: ignore[misc]
    git(repo, "checkout", "-q", rev1)  # type: ignore[arg-type]
    url = str(shop["env"]["SHOP_REDIS_URL"])  # type: ignore[index]
    ours = ["--url", url, "--key-prefix", "shop_"]
    planned = check(shop, *ours, "--json", "plan", "--since", rev0, "--until", rev1)
    assert planned.returncode == 0, planned.stderr
    actions = [a for a in json.loads(planned.stdout)["actions"] if a["action"] == "delete-pickles"]
    assert [(a["target"], a["command"]) for a in actions] == [
        (
            "shop.models.Product",
            "check-pickles --class shop.models.Product --delete --yes",
        )
    ]
    assert "renamed or removed" in actions[0]["reason"]
    assert actions[0]["source"] == "shop/models.py:2"

    before = set(client.scan_iter("shop_*"))  # type: ignore[attr-defined]
    doomed = keys_holding(client, b"Product")
    applied = check(shop, *ours, "plan", "--since", rev0, "--until", rev1, "--apply")
    assert applied.returncode == 0, applied.stderr
    assert set(client.scan_iter("shop_*")) == before - doomed  # type: ignore[attr-defined]


def test_delete_class_removes_the_entries_naming_it(shop: dict[str, object]) -> None:
    client = shop["client"]
    url = str(shop["env"]["SHOP_REDIS_URL"])  # type: ignore[index]
    ours = ["--url", url, "--key-prefix", "shop_"]
    before = set(client.scan_iter("shop_*"))  # type: ignore[attr-defined]
    doomed = keys_holding(client, b"Category")
    dry = check(shop, *ours, "--json", "check-pickles", "--delete", "--class",
                "shop.models.Category", "--dry-run")  # fmt: skip
    assert json.loads(dry.stdout)["would_remove"] == len(doomed) == 3
    done = check(shop, *ours, "check-pickles", "--delete", "--class", "shop.models.Category",
                 "--yes")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert set(client.scan_iter("shop_*")) == before - doomed  # type: ignore[attr-defined]
