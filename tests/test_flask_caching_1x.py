"""cachectl against apps that still run Flask-Caching 1.x, judged by a real 1.10.1 app.

Flask-Caching up to 1.10 has its own FileSystemCache: each file starts with the expiry as a
protocol-1 pickle (``pickle.dump(expiry, f, 1)``), not with cachelib's 4-byte header, and
its prune unpickles the head of every file in the directory, catching only OSError. A file
in the other format therefore makes the app read nothing from it, and, once the directory
is over CACHE_THRESHOLD, makes every ``cache.set`` of the app raise. Its RedisCache stores
ints as ASCII digits (``cache.inc`` is Redis' INCRBY on them) and everything else as ``!``
followed by a pickle. Its keys are those of the legacy generation (md5).

No library on cachectl's side can vouch for any of that, so the oracle is the library
itself: Flask-Caching 1.10.1 in its own interpreter (``scripts/legacy1x_env.sh`` makes
``.venv-fc1x``; ``CACHECTL_FC1X_PYTHON`` names another), driving a small real Flask app in a
subprocess, while the real ``cachectl`` console script works on the same directory or Redis
database. Each case is what an operator of such an app does: read what the app stored,
write what the app will read, invalidate what it memoized or cached for a view.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RedisTarget, forked_or_started, run_console

FC1X_PYTHON_VARIABLE = "CACHECTL_FC1X_PYTHON"
DEFAULT_FC1X_PYTHON = Path(__file__).resolve().parents[1] / ".venv-fc1x" / "bin" / "python"

#: How cachectl is told that the app runs the pre-2.5 key generation (md5 keys and file
#: names), without naming its release. Flask-Caching 1.x shares those keys with 2.0-2.4, so
#: this does not say which file format the app's FileSystemCache writes: that has to come
#: from the directory's own files (or from a release, ``--compat 1.10``).
LEGACY = ("--compat", "legacy")

#: The app module every oracle run imports: a memoized function and a cached view, as an
#: app on Flask-Caching 1.10 writes them, under a module name cachectl can import too.
SHOP_1X = """
from flask import Flask
from flask_caching import Cache

cache = Cache()
COMPUTED = []


@cache.memoize()
def get_user(user_id, role="member"):
    COMPUTED.append(["get_user", user_id, role])
    return {"id": user_id, "role": role}


@cache.memoize(args_to_ignore=["verbose"])
def report(user_id, verbose=False):
    COMPUTED.append(["report", user_id])
    return user_id


def create_app(config):
    app = Flask(__name__)
    cache.init_app(app, config=config)

    @app.route("/user/<name>")
    @cache.cached()
    def user_page(name):
        COMPUTED.append(["user_page", name])
        return name

    return app
"""

#: What the 1.x interpreter's fork server imports once, so that each step's process (forked
#: from it: tests/forked_runs.py) starts with Flask and Flask-Caching 1.x loaded, as every
#: request of a running app does; the app module itself is imported by each step afresh.
ORACLE_PRELOAD = ("flask", "flask_caching", "redis", "cachelib")

#: Runs one step of the app in the 1.x interpreter: builds the app from SHOP_1X with the
#: config it is given, runs the step's body inside an app context (``P`` holds the step's
#: parameters, ``cache`` the Cache, ``backend`` the backend object the app built) and prints
#: the body's ``result`` as the last line of standard output, as JSON.
DRIVER = """
import json, sys
request = json.loads(sys.stdin.read())
sys.path.insert(0, request["path"])
import shop1x
app = shop1x.create_app(request["config"])
namespace = {
    "app": app, "cache": shop1x.cache, "shop1x": shop1x, "P": request["params"],
    "result": None,
}
with app.app_context():
    namespace["backend"] = shop1x.cache.cache
    exec(request["body"], namespace)
print(json.dumps(namespace["result"], default=repr))
"""


@dataclass(frozen=True)
class Oracle:
    """A Flask-Caching 1.x interpreter and the directory holding the app module."""

    python: Path
    app_dir: Path

    def run(self, config: dict[str, Any], body: str, **params: Any) -> Any:
        """Run ``body`` in an app process of its own (as each request of a restarted app would)
        and return its ``result``; the process's failure fails the test with its
        traceback, which is the observed behaviour of the library."""
        request = {
            "path": str(self.app_dir),
            "config": config,
            "body": textwrap.dedent(body),
            "params": params,
        }
        done = forked_or_started(
            [str(self.python), "-c", DRIVER],
            script=None,
            preload=ORACLE_PRELOAD,
            input=json.dumps(request).encode(),
            timeout=120,
            cwd=self.app_dir,
            env=_clean_environment(),
        )
        stderr = done.stderr.decode(errors="replace")
        assert done.returncode == 0, f"the Flask-Caching 1.x app failed:\n{stderr}"
        return json.loads(done.stdout.decode().splitlines()[-1])


def _clean_environment() -> dict[str, str]:
    """The caller's environment without what would point cachectl (or Flask) at another
    app or config than the one a test names on the command line."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("CACHECTL_", "FLASK_")) and name != "PYTHONPATH"
    }


def _find_fc1x_python() -> Path | None:
    named = os.environ.get(FC1X_PYTHON_VARIABLE)
    for candidate in (Path(named) if named else None, DEFAULT_FC1X_PYTHON):
        if candidate is not None and candidate.exists():
            return candidate
    return None


@pytest.fixture(scope="session")
def fc1x_python() -> Path:
    """The 1.x interpreter, checked to hold Flask-Caching 1.x: a wrong one would make
    every verdict meaningless, so that fails rather than skips."""
    python = _find_fc1x_python()
    if python is None and os.environ.get("CACHECTL_REQUIRE_FC1X"):
        pytest.fail(
            f"scripts/test.sh made no Flask-Caching 1.x interpreter at {DEFAULT_FC1X_PYTHON}"
        )
    if python is None:
        pytest.skip(
            f"no Flask-Caching 1.x interpreter: run scripts/legacy1x_env.sh (it creates "
            f"{DEFAULT_FC1X_PYTHON}) or set {FC1X_PYTHON_VARIABLE}"
        )
    probe = subprocess.run(
        [str(python), "-c", "import flask_caching; print(flask_caching.__version__)"],
        capture_output=True,
        timeout=60,
    )
    version = probe.stdout.decode().strip()
    assert probe.returncode == 0 and version.startswith("1."), (
        f"{python} should run Flask-Caching 1.x, found {version!r}: {probe.stderr.decode()}"
    )
    return python


@pytest.fixture
def oracle(fc1x_python: Path, tmp_path: Path) -> Oracle:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "shop1x.py").write_text(textwrap.dedent(SHOP_1X))
    return Oracle(fc1x_python, app_dir)


def cachectl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The installed cachectl, run from ``cwd`` with no config file or app to find there."""
    return run_console(*args, cwd=cwd, env=_clean_environment())


def cachectl_json(*args: str, cwd: Path) -> dict[str, Any]:
    done = cachectl("--json", *args, cwd=cwd)
    assert done.returncode == 0, (
        f"cachectl {' '.join(args)} exited {done.returncode}: "
        f"{done.stderr.decode(errors='replace')}{done.stdout.decode(errors='replace')}"
    )
    document: dict[str, Any] = json.loads(done.stdout)
    return document


# --- FileSystemCache -----------------------------------------------------------------------

VALUES: dict[str, Any] = {
    "str": "Back at 10:00",
    "int": 42,
    "dict": {"beta": True, "users": [1, 2, 3]},
}
TIMEOUTS = {"no-expiry": 0, "300s": 300}
#: The TTL bucket ``cachectl stats`` must put each timeout in: a misread expiry shows as a
#: date in 1973 (expired) or after 2038 (">= 1 day").
TTL_BUCKETS = {0: "no expiry", 300: "< 1 hour"}


def fs_config(directory: Path, threshold: int = 500) -> dict[str, Any]:
    """The settings of a 1.x app on a FileSystemCache ("filesystem" is the 1.x name)."""
    return {"CACHE_TYPE": "filesystem", "CACHE_DIR": str(directory), "CACHE_THRESHOLD": threshold}


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "cache"
    directory.mkdir()
    return directory


def cache_files(directory: Path) -> list[Path]:
    """The cache entries the app counts: every file but its item counter and temporaries."""
    import hashlib

    counter = hashlib.md5(b"__wz_cache_count").hexdigest()
    return [
        path
        for path in directory.iterdir()
        if path.name != counter and not path.name.endswith(".__wz_cache")
    ]


WRITE = """
for key, value, timeout in P["entries"]:
    assert cache.set(key, value, timeout=timeout), key
"""


@pytest.mark.parametrize("timeout", TIMEOUTS.values(), ids=TIMEOUTS.keys())
@pytest.mark.parametrize("kind", VALUES)
def test_get_and_stats_read_a_file_the_1x_app_wrote(
    oracle: Oracle, cache_dir: Path, kind: str, timeout: int
) -> None:
    value = VALUES[kind]
    oracle.run(fs_config(cache_dir), WRITE, entries=[["banner", value, timeout]])

    got = cachectl_json("--dir", str(cache_dir), *LEGACY, "get", "banner", cwd=cache_dir.parent)
    entry = got["results"][0]
    assert entry["found"] is True, entry
    assert (entry["type"], entry["value"]) == (type(value).__name__, value), entry

    stats = cachectl_json("--dir", str(cache_dir), *LEGACY, "stats", cwd=cache_dir.parent)
    assert stats["total"] == 1, stats
    assert stats["ttl"][TTL_BUCKETS[timeout]] == 1, stats["ttl"]


def test_stats_and_count_see_every_entry_of_the_1x_app(oracle: Oracle, cache_dir: Path) -> None:
    entries = [
        [f"{kind}-{label}", value, timeout]
        for kind, value in VALUES.items()
        for label, timeout in TIMEOUTS.items()
    ]
    oracle.run(fs_config(cache_dir), WRITE, entries=entries)
    assert len(cache_files(cache_dir)) == len(entries)

    counted = cachectl_json(
        "--dir", str(cache_dir), *LEGACY, "keys", "--count", cwd=cache_dir.parent
    )
    assert counted["count"] == len(entries), counted

    stats = cachectl_json("--dir", str(cache_dir), *LEGACY, "stats", cwd=cache_dir.parent)
    assert stats["total"] == len(entries), stats
    assert stats["ttl"]["no expiry"] == len(VALUES), stats["ttl"]
    assert stats["ttl"]["< 1 hour"] == len(VALUES), stats["ttl"]


#: What the directory holds before cachectl writes: entries of the app, or only the item
#: counter a 1.x app writes as it starts (a fresh deploy whose cache is still empty).
SEEDS = {
    "after-entries": [["seed-a", "a", 0], ["seed-b", {"b": 1}, 300]],
    "counter-only": [],
}

FILL_PAST_THRESHOLD = """
backend = cache.cache
result = {"read": cache.get(P["key"]), "sets": []}
for n in range(P["more"]):
    result["sets"].append(cache.set("more-%d" % n, n))
result["count"] = backend._file_count
"""


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("timeout", TIMEOUTS.values(), ids=TIMEOUTS.keys())
@pytest.mark.parametrize("kind", ["str", "int", "dict"])
def test_the_1x_app_reads_and_prunes_what_set_wrote(
    oracle: Oracle, cache_dir: Path, kind: str, timeout: int, seed: str
) -> None:
    """The app must read the value, and keep working once past CACHE_THRESHOLD: its prune
    unpickles the head of every file, cachectl's included, and catches only OSError."""
    oracle.run(fs_config(cache_dir, threshold=3), WRITE, entries=SEEDS[seed])
    value = VALUES[kind]
    as_type = {"str": "str", "int": "int", "dict": "json"}[kind]
    text = value if isinstance(value, str) else json.dumps(value)

    done = cachectl(
        "--dir", str(cache_dir), *LEGACY, "set", "from-cachectl", text,
        "--as", as_type, "--ttl", str(timeout), cwd=cache_dir.parent,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode(errors="replace")

    more = 6
    outcome = oracle.run(
        fs_config(cache_dir, threshold=3), FILL_PAST_THRESHOLD, key="from-cachectl", more=more
    )
    assert outcome["read"] == value, outcome
    assert outcome["sets"] == [True] * more, outcome
    # The app pruned: without it the directory would hold every entry ever written.
    written = len(SEEDS[seed]) + 1 + more
    assert len(cache_files(cache_dir)) < written
    assert isinstance(outcome["count"], int) and outcome["count"] > 0, outcome


READ_COUNTER = """
result = cache.cache.get("__wz_cache_count")
"""


@pytest.mark.parametrize("command", ["set", "delete"])
def test_the_item_counter_stays_readable_by_the_1x_app(
    oracle: Oracle, cache_dir: Path, command: str
) -> None:
    """cachectl keeps CACHE_THRESHOLD's item counter up to date; the 1.x app must still be
    able to read it. Read with threshold 0, so the reading app does not rewrite it first."""
    oracle.run(fs_config(cache_dir), WRITE, entries=[["a", "a", 0], ["b", "b", 0]])
    args = ("set", "c", "c") if command == "set" else ("delete", "a")
    done = cachectl("--dir", str(cache_dir), *LEGACY, *args, cwd=cache_dir.parent)
    assert done.returncode == 0, done.stderr.decode(errors="replace")

    counter = oracle.run(fs_config(cache_dir, threshold=0), READ_COUNTER)
    assert counter == len(cache_files(cache_dir)), counter


def test_set_into_an_empty_directory_needs_the_file_format(tmp_path: Path) -> None:
    """An empty directory shows no file format, and the legacy generation spans both (1.x
    up to 1.10 pickles the expiry, 2.0-2.4 write cachelib's header): cachectl must not
    guess, since a guess in the wrong format breaks the app's prune."""
    empty = tmp_path / "cache"
    empty.mkdir()

    done = cachectl("--dir", str(empty), *LEGACY, "set", "k", "v", cwd=tmp_path)

    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 2, (done.returncode, stderr)
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert "format" in errors[0].lower(), errors[0]
    assert list(empty.iterdir()) == [], "nothing may be written when refusing"


@pytest.mark.parametrize("release", ["1.9", "1.10"])
def test_set_into_an_empty_directory_told_the_release(
    oracle: Oracle, cache_dir: Path, release: str
) -> None:
    """Told the app's release, cachectl knows the format without a file to learn it from:
    the app then reads the value and prunes past its threshold as with its own files."""
    done = cachectl(
        "--dir", str(cache_dir), "--compat", release, "set", "from-cachectl", "v", "--ttl", "0",
        cwd=cache_dir.parent,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode(errors="replace")

    more = 6
    outcome = oracle.run(
        fs_config(cache_dir, threshold=3), FILL_PAST_THRESHOLD, key="from-cachectl", more=more
    )
    assert outcome["read"] == "v", outcome
    assert outcome["sets"] == [True] * more, outcome
    assert len(cache_files(cache_dir)) < 1 + more


# --- Redis ---------------------------------------------------------------------------------

PREFIX = "shop_"
REDIS_VALUES: dict[str, Any] = {
    "str": "Back at 10:00",
    "int": 7,
    "dict": {"beta": True, "users": [1, 2, 3]},
    "list": ["a", 1, None, 2.5],
}


def redis_config(target: RedisTarget) -> dict[str, Any]:
    """A 1.x app's Redis settings ("redis" is the 1.x name), with a key prefix."""
    return {"CACHE_TYPE": "redis", "CACHE_REDIS_URL": target.url, "CACHE_KEY_PREFIX": PREFIX}


def redis_args(target: RedisTarget) -> tuple[str, ...]:
    return ("--url", target.url, "--key-prefix", PREFIX, *LEGACY)


@pytest.mark.parametrize("kind", REDIS_VALUES)
def test_get_reads_a_redis_value_the_1x_app_wrote(
    oracle: Oracle, redis_target: RedisTarget, kind: str, tmp_path: Path
) -> None:
    value = REDIS_VALUES[kind]
    oracle.run(redis_config(redis_target), WRITE, entries=[["banner", value, 300]])

    entry = cachectl_json(*redis_args(redis_target), "get", "banner", cwd=tmp_path)["results"][0]
    assert entry["found"] is True, entry
    assert (entry["type"], entry["value"]) == (type(value).__name__, value), entry


READ_AND_INCREMENT = """
before = cache.get(P["key"])
result = {"type": type(before).__name__, "value": before, "inc": cache.cache.inc(P["key"])}
result["after"] = cache.get(P["key"])
"""


def test_an_int_set_by_cachectl_is_an_int_the_1x_app_can_increment(
    oracle: Oracle, redis_target: RedisTarget, tmp_path: Path
) -> None:
    """1.x stores ints as ASCII digits, which ``cache.inc`` (INCRBY) needs: a pickled int
    reads back as 5 but makes the increment fail."""
    done = cachectl(*redis_args(redis_target), "set", "hits", "5", "--as", "int", cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode(errors="replace")

    outcome = oracle.run(redis_config(redis_target), READ_AND_INCREMENT, key="hits")
    assert outcome == {"type": "int", "value": 5, "inc": 6, "after": 6}, outcome


READ = """
value = cache.get(P["key"])
result = {"type": type(value).__name__, "value": value}
"""

#: Values cachectl pickles (every type but int), as given on its command line.
PICKLED: dict[str, tuple[str, str, Any]] = {
    "str": ("str", "Back at 10:00", "Back at 10:00"),
    "float": ("float", "2.5", 2.5),
    "json-dict": ("json", '{"beta": true, "n": [1, 2]}', {"beta": True, "n": [1, 2]}),
    "json-list": ("json", '["a", 1, null]', ["a", 1, None]),
    "bytes": ("bytes", "raw", "b'raw'"),
}


@pytest.mark.parametrize("case", PICKLED)
def test_a_value_pickled_by_cachectl_is_read_by_the_1x_app(
    oracle: Oracle, redis_target: RedisTarget, case: str, tmp_path: Path
) -> None:
    as_type, text, expected = PICKLED[case]
    done = cachectl(*redis_args(redis_target), "set", "k", text, "--as", as_type, cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode(errors="replace")

    outcome = oracle.run(redis_config(redis_target), READ, key="k")
    # bytes come back through the JSON of the driver as their repr.
    assert outcome["value"] == expected, outcome
    assert outcome["type"] == {"json": type(expected).__name__}.get(as_type, as_type), outcome


def test_pickles_are_readable_by_every_python_1x_runs_on(
    redis_target: RedisTarget, tmp_path: Path
) -> None:
    """Flask-Caching 1.10 supports Python 3.6-3.9 and pickles with the default protocol
    (3 before 3.8, 4 from 3.8); protocol 5 is unknown to 3.6 and 3.7, whose ``pickle.loads``
    raises ValueError, which 1.10's RedisCache does not catch. So at most protocol 4. (No
    1.x interpreter needed: this reads the stored bytes, so it runs everywhere.)"""
    done = cachectl(*redis_args(redis_target), "set", "k", '{"a": 1}', "--as", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    stored = redis_target.client.get(PREFIX + "k")
    assert stored is not None and stored[:2] == b"!\x80", stored
    assert stored[2] <= 4, f"pickle protocol {stored[2]}: {stored!r}"


# --- Keys: memoize and cached views ----------------------------------------------------------

USE = """
client = app.test_client()
shop1x.get_user(1)
shop1x.get_user(2)
shop1x.get_user(1, role="admin")
for name in ("alice", "bob"):
    assert client.get("/user/" + name).status_code == 200
result = shop1x.COMPUTED
"""

READ_VERSION = """
result = cache.get("shop1x.get_user_memver")
"""

EVERY_TARGET = [
    ["get_user", 1, "member"],
    ["get_user", 2, "member"],
    ["get_user", 1, "admin"],
    ["user_page", "alice"],
    ["user_page", "bob"],
]


@dataclass
class Shop1x:
    """The 1.x app on one backend, and cachectl pointed at the same cache."""

    oracle: Oracle
    config: dict[str, Any]
    cachectl_args: tuple[str, ...]

    def use(self) -> list[list[Any]]:
        """Serve every target once in a fresh app process; what it had to compute."""
        computed: list[list[Any]] = self.oracle.run(self.config, USE)
        return computed

    def recomputed_after(self, *args: str) -> list[list[Any]]:
        cachectl_json(*self.cachectl_args, *args, cwd=self.oracle.app_dir)
        return self.use()


@pytest.fixture(params=["redis", "filesystem"])
def shop(request: pytest.FixtureRequest, oracle: Oracle, tmp_path: Path) -> Shop1x:
    if request.param == "redis":
        target: RedisTarget = request.getfixturevalue("redis_target")
        shop = Shop1x(oracle, redis_config(target), redis_args(target))
    else:
        directory = tmp_path / "cache"
        directory.mkdir()
        shop = Shop1x(oracle, fs_config(directory), ("--dir", str(directory), *LEGACY))
    assert shop.use() == EVERY_TARGET
    assert shop.use() == [], "a second process must be served from the cache"
    return shop


def test_delete_memoized_one_call_of_the_1x_app(shop: Shop1x) -> None:
    assert shop.recomputed_after("delete-memoized", "shop1x.get_user", "1") == [
        ["get_user", 1, "member"]
    ]
    assert shop.recomputed_after(
        "delete-memoized", "shop1x.get_user", "1", "--kw", "role=admin"
    ) == [["get_user", 1, "admin"]]


def test_delete_memoized_every_call_of_the_1x_app(shop: Shop1x) -> None:
    """The fresh version cachectl writes must be one the app reads (the right format in a
    1.x cache directory), not one it fails to read and silently replaces."""
    cachectl_json(
        *shop.cachectl_args, "delete-memoized", "shop1x.get_user", cwd=shop.oracle.app_dir
    )
    version = shop.oracle.run({**shop.config, "CACHE_THRESHOLD": 0}, READ_VERSION)
    assert isinstance(version, str) and version, version
    assert shop.use() == EVERY_TARGET[:3]


def test_delete_view_of_the_1x_app(shop: Shop1x) -> None:
    assert shop.recomputed_after("delete-view", "/user/alice") == [["user_page", "alice"]]


REPORT = """
shop1x.report(7, verbose=True)
result = shop1x.COMPUTED
"""


def test_an_ignored_argument_given_by_keyword_stays_in_a_1x_key(shop: Shop1x) -> None:
    """Up to 2.1 an ``args_to_ignore`` argument given by keyword stayed in the key's keyword
    part; from 2.2 it does not. ``legacy`` spans both, so only the release can say."""
    assert shop.oracle.run(shop.config, REPORT) == [["report", 7]]
    assert shop.oracle.run(shop.config, REPORT) == []
    command = ("delete-memoized", "shop1x.report", "7", "--kw", "verbose=True")
    command += ("--ignore", "verbose")
    legacy = cachectl(*shop.cachectl_args, *command, cwd=shop.oracle.app_dir)
    assert legacy.returncode == 2
    assert b"name the app's release with --compat" in legacy.stderr

    told = [arg if arg != "legacy" else "1.10" for arg in shop.cachectl_args]
    assert cachectl_json(*told, *command, cwd=shop.oracle.app_dir)["removed"] == 1
    assert shop.oracle.run(shop.config, REPORT) == [["report", 7]]
