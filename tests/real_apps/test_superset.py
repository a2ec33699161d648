"""Apache Superset 6.1.0 against cachectl, in Superset's own environment (its lock:
Flask 2.3, Flask-AppBuilder 5, Flask-Caching 2.3, SQLAlchemy 1.4, six, pandas, pyarrow).

Superset keeps five Flask-Caching caches on a manager object whose properties return
them (superset/utils/cache_manager.py: ``cache_manager.cache``, ``.data_cache``,
``.filter_state_cache``, ...), each configured from a settings dict
(``CACHE_CONFIG``, ``FILTER_STATE_CACHE_CONFIG``, ...). It memoizes
cached_common_bootstrap_data (superset/views/base.py:
``@cache_manager.cache.memoize(timeout=60)``) and engine-spec lookups, and invalidates
its filter states itself (superset/commands/dashboard/filter_state/delete.py:
``cache_manager.filter_state_cache.delete(contextual_key)``, ``.delete(key)``); its
config.py documents the memoized DATASET_HEALTH_CHECK and the
``cache_manager.cache.delete_memoized(func)`` a deployment runs when the check changes.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import RedisTarget
from tests.real_apps.harness import (
    HERE,
    AppDriver,
    Snapshot,
    app_environment,
    assert_same_change,
    change,
    clean_environment,
    restore,
    run_app_cachectl,
    run_ops_cachectl,
    snapshot,
    values,
    without_timestamps,
)

APP = "superset.app:create_app()"
HEALTH_CHECK = "superset_config.DATASET_HEALTH_CHECK"
BOOTSTRAP = "superset.views.base.cached_common_bootstrap_data"
#: Another program's key in the same database: no invalidation may touch it.
FOREIGN_KEY = b"celery-task-meta-0f1e"


@dataclass
class Superset:
    venv: Path
    cwd: Path
    env: dict[str, str]
    redis: RedisTarget

    def cachectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_app_cachectl(self.venv, self.cwd, self.env, "--app", APP, *args)

    def config_only(self, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
        """An ops host's cachectl, told what superset_config.py gives that cache."""
        return run_ops_cachectl(
            self.cwd, "--url", self.redis.url, "--key-prefix", prefix, "--compat", "2.3", *args
        )


@pytest.fixture(scope="module")
def superset(
    tmp_path_factory: pytest.TempPathFactory,
    module_redis_target: RedisTarget,
) -> Superset:
    """Superset's deployment for the module: one copy of its metadata database, one
    database of the private Redis."""
    venv = app_environment("superset")
    cwd = tmp_path_factory.mktemp("superset")
    database = cwd / "superset.db"
    shutil.copyfile(venv / "superset-template.db", database)
    env = clean_environment(
        PYTHONPATH=str(HERE / "superset" / "pythonpath"),
        REALAPP_SUPERSET_DB=str(database),
        REALAPP_REDIS_URL=module_redis_target.url,
    )
    return Superset(venv, cwd, env, module_redis_target)


@pytest.fixture(scope="module")
def running(superset: Superset) -> Iterator[tuple[AppDriver, Snapshot]]:
    """Superset running, logged in, its caches filled through its own code, and the
    keyspace then: started and filled once for the module (Superset takes seconds of CPU
    to start). What the tests do to it stays in the cache, which `filled` puts back: the
    filter states live only there, and the rows Superset writes as it serves (its action
    log) are read by no test."""
    driver = AppDriver(superset.venv, HERE / "superset" / "driver.py", superset.cwd, superset.env)
    try:
        driver.call("fill")
        superset.redis.client.set(FOREIGN_KEY, b'{"status": "SUCCESS"}')
        yield driver, snapshot(superset.redis.client)
    finally:
        driver.close()


@pytest.fixture
def filled(superset: Superset, running: tuple[AppDriver, Snapshot]) -> tuple[AppDriver, Snapshot]:
    """The running Superset, with the keyspace as its fill left it: each test starts from
    that snapshot, restored, whatever the test before it did to the cache."""
    driver, filled_keyspace = running
    restore(superset.redis.client, filled_keyspace)
    return driver, filled_keyspace


@pytest.fixture(scope="module")
def startup_output(superset: Superset) -> list[str]:
    """What Superset itself prints and logs while it starts (its config banner, alembic),
    loaded as Flask loads it: the only lines an --app command may leave on stderr. The
    same for every test of the module: loaded once."""
    done = subprocess.run(
        [
            str(superset.venv / "bin" / "python"),
            "-u",
            "-c",
            f"from flask.cli import ScriptInfo; ScriptInfo(app_import_path={APP!r}).load_app()",
        ],
        cwd=superset.cwd,
        env=superset.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout
    return without_timestamps(done.stdout)


#: cachectl's own notices, on the commands that run on several caches: Superset's prefixes
#: nest (superset_ holds superset_data_, ...) and its thumbnail cache is a NullCache.
NESTED_NOTICE = "left out "
NULL_CACHE_NOTICE = "warning: cache THUMBNAIL_CACHE_CONFIG skipped: NullCache stores nothing"


def assert_only_startup_output(
    done: subprocess.CompletedProcess[str], startup: list[str], notices: tuple[str, ...] = ()
) -> None:
    """stderr holds what Superset's start-up prints, as Superset prints it, then only the
    notices of cachectl named (each line starting so), in that order."""
    assert "Traceback" not in done.stderr, done.stderr
    lines = without_timestamps(done.stderr)
    assert lines[: len(startup)] == startup, done.stderr
    rest = lines[len(startup) :]
    assert len(rest) == len(notices), done.stderr
    assert all(line.startswith(notice) for line, notice in zip(rest, notices)), done.stderr


def test_filter_state_deletion_matches_superset_own(
    superset: Superset, filled: tuple[AppDriver, Snapshot], startup_output: list[str]
) -> None:
    driver, filled_keyspace = filled
    client = superset.redis.client
    keys = driver.call("delete_filter_state", 0)
    by_superset = change(filled_keyspace, snapshot(client))
    state_key = f"superset_filter_state_{keys[0]}".encode()
    assert by_superset.deleted == {state_key} and not by_superset.written, by_superset.describe()

    restore(client, filled_keyspace)
    done = superset.cachectl("--cache", "FILTER_STATE_CACHE_CONFIG", "delete", *keys)
    assert done.returncode == 0, done.stderr
    assert_same_change(by_superset, change(filled_keyspace, snapshot(client)), done)
    with_app = done

    restore(client, filled_keyspace)
    done = superset.config_only("superset_filter_state_", "delete", *keys)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert_same_change(by_superset, change(filled_keyspace, snapshot(client)), done)
    assert_only_startup_output(with_app, startup_output)


def test_health_check_invalidation_matches_the_documented_delete_memoized(
    superset: Superset, filled: tuple[AppDriver, Snapshot], startup_output: list[str]
) -> None:
    driver, filled_keyspace = filled
    client = superset.redis.client
    driver.call("blow_health_check_cache")
    by_superset = change(filled_keyspace, snapshot(client))
    assert by_superset.written or by_superset.deleted, "the health check was never memoized"

    restore(client, filled_keyspace)
    done = superset.cachectl("--cache", "CACHE_CONFIG", "delete-memoized", HEALTH_CHECK)
    assert done.returncode == 0, done.stderr
    assert_same_change(by_superset, change(filled_keyspace, snapshot(client)), done)
    with_app = done

    restore(client, filled_keyspace)
    done = superset.config_only("superset_", "delete-memoized", HEALTH_CHECK)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert_same_change(by_superset, change(filled_keyspace, snapshot(client)), done)
    assert_only_startup_output(with_app, startup_output)


def test_read_only_commands_on_every_cache(
    superset: Superset, filled: tuple[AppDriver, Snapshot], startup_output: list[str]
) -> None:
    """Superset pulls in six, Flask-AppBuilder and a manager of caches behind properties:
    no --app command may evaluate what its modules hold or print more than Superset's own
    start-up does, and none may change the cache."""
    _, filled_keyspace = filled
    # Superset memoizes its bootstrap data for 60 s, less than these commands take
    # (Superset starts in about 3 s each time): restored without expiry, what is
    # compared at the end cannot have expired on its own.
    restore(
        superset.redis.client, {key: (dumped, 0) for key, (dumped, _) in filled_keyspace.items()}
    )
    commands: list[tuple[list[str], tuple[str, ...]]] = [
        (["config"], ()),
        (["--cache", "all", "keys"], (NESTED_NOTICE, NULL_CACHE_NOTICE)),
        (["--cache", "all", "clear", "--dry-run"], (NULL_CACHE_NOTICE,)),
        (["--cache", "superset:cache_manager.filter_state_cache", "keys"], ()),
        (["--cache", "data", "stats"], ()),
        (["--cache", "CACHE_CONFIG", "stats", "--by-function"], ()),
        (["--cache", "0", "show-memoized", BOOTSTRAP], ()),
        (["--cache", "0", "show-memoized", HEALTH_CHECK], ()),
    ]
    failures = []
    for command, notices in commands:
        done = superset.cachectl(*command)
        try:
            assert done.returncode == 0, (done.stdout, done.stderr)
            assert_only_startup_output(done, startup_output, notices)
        except AssertionError as problem:
            failures.append(f"{' '.join(command)}: {problem}")
    assert not failures, "\n\n".join(failures)
    listed = superset.cachectl("--cache", "FILTER_STATE_CACHE_CONFIG", "keys").stdout.split()
    assert len(listed) == 4, listed  # two states, two contextual keys
    assert values(snapshot(superset.redis.client)) == values(filled_keyspace)
