"""Usage errors that say what to type instead, through the installed command and through
``flask cachectl``: a mistyped command names the closest ones, and a global option written
after the command says that it goes before it (where Click alone suggested the
subcommand's nearest option: ``get --url`` → "Did you mean '--raw'?")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import RedisTarget, run_console

FLASK = Path(sys.executable).with_name("flask")


def cachectl(*args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CACHECTL_", "FLASK_"))}
    done = run_console(*args, cwd=cwd, env=env)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


@pytest.mark.parametrize(
    ("typed", "suggested"),
    [
        ("delte", "delete"),
        ("stat", "stats"),
        ("gte", "get"),
        ("delete-memoised", "delete-memoized"),
        ("invalid", "invalidate"),
    ],
)
def test_a_mistyped_command_names_the_closest(tmp_path: Path, typed: str, suggested: str) -> None:
    code, out, err = cachectl(typed, "foo", cwd=tmp_path)
    assert code == 2 and out == ""
    first, hint = err.splitlines()
    assert first == f"error: no command '{typed}' (did you mean {suggested}?)"
    assert hint == "Try 'cachectl --help' for help."


def test_a_word_close_to_no_command_gets_no_guess(tmp_path: Path) -> None:
    code, _, err = cachectl("frobnicate", cwd=tmp_path)
    assert code == 2
    assert err.splitlines()[0] == "error: no command 'frobnicate'"


def test_a_mistyped_command_with_json_is_one_document(tmp_path: Path) -> None:
    code, out, _ = cachectl("--json", "delte", "foo", cwd=tmp_path)
    assert code == 2
    assert json.loads(out) == {
        "ok": False,
        "error": "no command 'delte' (did you mean delete?)",
        "exit_code": 2,
    }


@pytest.mark.parametrize(
    ("after", "placed"),
    [
        (["--url", "redis://:S3CRET@127.0.0.1:1/0"], "--url URL"),
        (["--url=redis://:S3CRET@127.0.0.1:1/0"], "--url URL"),
        (["--key-prefix", "shop_"], "--key-prefix PREFIX"),
        (["-o", "CACHE_KEY_PREFIX=shop_"], "-o NAME=VALUE"),
        (["--timeout", "3"], "--timeout SECONDS"),
        (["--env"], "--env"),
        (["--compat", "2.4"], "--compat RELEASE"),
    ],
)
def test_a_global_option_after_the_command_says_where_it_goes(
    tmp_path: Path, after: list[str], placed: str
) -> None:
    code, out, err = cachectl("get", *after, "k", cwd=tmp_path)
    assert code == 2 and out == ""
    option = placed.split()[0]
    assert err.splitlines()[0] == (
        f"error: {option} is a global option: put it before the command: cachectl {placed} get ..."
    )
    assert "S3CRET" not in err  # the value is not echoed: it may hold a password
    assert "Did you mean" not in err


def test_following_the_advice_works(redis_target: RedisTarget, tmp_path: Path) -> None:
    """The placement the message gives is the one that runs: the key is read."""
    redis_target.client.set("shop_k", b"!" + __import__("pickle").dumps("v"))
    code, _, err = cachectl("get", "--url", redis_target.url, "--key-prefix", "shop_", "k")
    assert code == 2 and "put it before the command: cachectl --url URL get" in err
    code, out, err = cachectl("--url", redis_target.url, "--key-prefix", "shop_", "get", "k")
    assert (code, out) == (0, "v\n"), err


def test_the_flags_that_may_follow_the_command_still_do(redis_target: RedisTarget) -> None:
    code, out, err = cachectl("--url", redis_target.url, "get", "--json", "missing")
    assert code == 1, err
    assert json.loads(out)["results"][0]["found"] is False
    code, out, err = cachectl("--url", redis_target.url, "get", "-q", "missing")
    assert (code, out, err) == (1, "", "")


def test_a_global_option_after_the_command_with_json_is_one_document(tmp_path: Path) -> None:
    code, out, _ = cachectl("get", "--json", "--dir", str(tmp_path), "k", cwd=tmp_path)
    assert code == 2
    document = json.loads(out)
    assert document["error"] == (
        "--dir is a global option: put it before the command: cachectl --dir DIR get ..."
    )


def test_an_option_no_one_has_keeps_clicks_suggestion(tmp_path: Path) -> None:
    code, _, err = cachectl("get", "--raww", "k", cwd=tmp_path)
    assert code == 2
    assert err.splitlines()[0] == "error: No such option '--raww'. Did you mean '--raw'?"
    code, _, err = cachectl("get", "-x", "k", cwd=tmp_path)
    assert code == 2
    assert err.splitlines()[0].startswith("error: No such option '-x'; a key or argument")


SHOP = """
from flask import Flask
from flask_caching import Cache

cache = Cache()


def create_app():
    app = Flask(__name__)
    app.config.update(CACHE_TYPE="RedisCache", CACHE_REDIS_URL="{url}", CACHE_KEY_PREFIX="shop_")
    cache.init_app(app)
    return app
"""


def test_flask_cache_gives_the_same_hints(tmp_path: Path, redis_target: RedisTarget) -> None:
    (tmp_path / "shop.py").write_text(textwrap.dedent(SHOP).replace("{url}", redis_target.url))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "CACHECTL_"))}

    def flask(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(FLASK), "--app", "shop:create_app", "cachectl", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    typo = flask("delte", "k")
    assert typo.returncode == 2
    assert "no command 'delte' (did you mean delete?)" in typo.stderr
    misplaced = flask("get", "--key-prefix", "other_", "k")
    assert misplaced.returncode == 2
    assert (
        "--key-prefix is a global option: put it before the command: "
        "flask cachectl --key-prefix PREFIX get ..."
    ) in misplaced.stderr
    placed = flask("--key-prefix", "other_", "get", "k")
    assert placed.returncode == 1, placed.stderr  # runs: not found under that prefix
