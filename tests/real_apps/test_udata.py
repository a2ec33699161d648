"""udata (data.gouv.fr's open-data portal, 17.18.0 on PyPI) against cachectl, in udata's
own environment: Flask 3.1, Flask-Caching 2.5, flask-restx (udata's API), six, celery.

udata memoizes generate_pydenticon (its avatar API, udata/core/avatars/api.py:
``@cache.memoize()``), get_spatial_granularities and ResourceSchema.all, caches
get_spatial_admin_levels (``@cache.cached(key_prefix="admin_levels")``), and invalidates
with its ``udata cache flush`` command (udata/commands/cache.py: ``cache.clear()``).
"""

from __future__ import annotations

import json
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
)

APP = "udata.wsgi:app"
PREFIX = "udata-cache"
AVATAR_FUNCTION = "udata.core.avatars.api.generate_pydenticon"
#: Another program's key in the same database: no invalidation may touch it.
FOREIGN_KEY = b"celery-task-meta-0f1e"


@dataclass
class Udata:
    venv: Path
    cwd: Path
    env: dict[str, str]
    redis: RedisTarget

    def cachectl(self, *args: str):
        return run_app_cachectl(self.venv, self.cwd, self.env, "--app", APP, *args)

    def config_only(self, *args: str):
        """An ops host's cachectl, told the settings udata.cfg gives the app."""
        return run_ops_cachectl(
            self.cwd, "--url", self.redis.url, "--key-prefix", PREFIX, "--compat", "2.5", *args
        )


@pytest.fixture(scope="module")
def udata(
    tmp_path_factory: pytest.TempPathFactory,
    module_redis_target: RedisTarget,
) -> Udata:
    env = clean_environment(
        UDATA_SETTINGS=str(HERE / "udata" / "udata.cfg"),
        REALAPP_REDIS_URL=module_redis_target.url,
    )
    return Udata(
        app_environment("udata"), tmp_path_factory.mktemp("udata"), env, module_redis_target
    )


@pytest.fixture(scope="module")
def running(udata: Udata) -> Iterator[tuple[AppDriver, Snapshot]]:
    """udata running, its avatar cache filled through its API, and the keyspace then:
    started and filled once for the module. The tests' invalidations change only the cache
    (udata keeps the avatars nowhere else), which `filled` puts back."""
    driver = AppDriver(udata.venv, HERE / "udata" / "driver.py", udata.cwd, udata.env)
    try:
        assert driver.call("fill") == [200, 200, 200]
        udata.redis.client.set(FOREIGN_KEY, b'{"status": "SUCCESS"}')
        yield driver, snapshot(udata.redis.client)
    finally:
        driver.close()


@pytest.fixture
def filled(udata: Udata, running: tuple[AppDriver, Snapshot]) -> tuple[AppDriver, Snapshot]:
    """The running udata, with the keyspace as its fill left it: each test starts from that
    snapshot, restored, whatever the test before it did to the cache."""
    driver, filled_keyspace = running
    restore(udata.redis.client, filled_keyspace)
    return driver, filled_keyspace


# The app's own invalidation (driver action and arguments) -> the cachectl command that
# must do the same, and what config-only adds (an ops host cannot import the function).
INVALIDATIONS = {
    "udata cache flush": (("flush",), ["clear", "--yes"], []),
    "delete_memoized(generate_pydenticon, 'alice', 32)": (
        ("forget_avatar", "alice", 32),
        ["delete-memoized", AVATAR_FUNCTION, "alice", "32"],
        ["--signature", "(identifier, size)"],
    ),
}


@pytest.mark.parametrize("invalidation", list(INVALIDATIONS))
def test_cachectl_invalidates_as_udata_does(
    udata: Udata, filled: tuple[AppDriver, Snapshot], invalidation: str
) -> None:
    driver, filled_keyspace = filled
    (action, *action_args), command, config_only_needs = INVALIDATIONS[invalidation]
    client = udata.redis.client
    driver.call(action, *action_args)
    by_the_app = change(filled_keyspace, snapshot(client))
    assert by_the_app.deleted, f"udata's {invalidation} deleted nothing: the fill is wrong"
    assert FOREIGN_KEY not in by_the_app.deleted

    for run, arguments in (
        (udata.cachectl, command),
        (udata.config_only, command + config_only_needs),
    ):
        restore(client, filled_keyspace)
        done = run(*arguments)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        assert done.stderr == "", done.stderr
        assert_same_change(by_the_app, change(filled_keyspace, snapshot(client)), done)


def test_read_only_commands_leave_the_cache_and_stderr_alone(
    udata: Udata, filled: tuple[AppDriver, Snapshot]
) -> None:
    """udata registers a flask-restx Api and pulls in six: no --app command may evaluate
    what its modules hold (Api.__schema__, six.moves) or print anything on stderr
    (udata's start-up prints nothing)."""
    _, filled_keyspace = filled
    commands = [
        ["config"],
        ["--json", "keys"],
        ["stats", "--by-function"],
        ["show-memoized", AVATAR_FUNCTION, "alice", "32"],
        ["clear", "--dry-run"],
        ["get", "admin_levels"],
    ]
    listed = ""
    for command in commands:
        done = udata.cachectl(*command)
        expected_status = 1 if command[0] == "get" else 0  # nothing cached as admin_levels
        assert done.returncode == expected_status, (command, done.stdout, done.stderr)
        assert done.stderr == ("" if expected_status == 0 else done.stderr.splitlines()[0] + "\n")
        assert "Traceback" not in done.stderr
        if command == ["--json", "keys"]:
            listed = done.stdout
    keys = json.loads(listed)
    assert len(keys["keys"]) == 4, keys  # three avatars and the function's version key
    assert values(snapshot(udata.redis.client)) == values(filled_keyspace)


def test_udata_own_cache_command_still_works_beside_cachectl(
    udata: Udata, filled: tuple[AppDriver, Snapshot]
) -> None:
    """cachectl's `flask cachectl` plugin (entry point flask.commands: cachectl) must not take
    the place of udata's own `udata cache` group (`udata cache flush`)."""
    _, filled_keyspace = filled
    done = run_app_cachectl(udata.venv, udata.cwd, udata.env, "--version")
    assert done.returncode == 0
    flush = udata.venv / "bin" / "udata"
    import subprocess

    ran = subprocess.run(
        [str(flush), "cache", "flush"],
        cwd=udata.cwd,
        env=udata.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    remaining = set(snapshot(udata.redis.client))
    assert remaining == {FOREIGN_KEY}, (remaining, set(filled_keyspace))
