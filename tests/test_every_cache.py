"""--cache all: clear, stats, keys, config, delete --pattern and batch lines on every
cache of the app in turn (named caches of a config file; the Cache objects of a real
Flask app with --app), results grouped by cache, one confirmation, two caches with
the same server, database and prefix run once, a failing cache does not stop the
others, and every other command refuses it (exit 2).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from tests.conftest import RedisTarget, run_console
from tests.servers import free_port
from tests.test_console import _run_on_terminal
from tests.test_nested_prefixes import (
    DATA,
    MAIN,
    OUTSIDE,
    THUMBNAIL,
    Nest,
    fill,
    make_nest,
    write_app,
    write_config,
)

AGAIN = """\
[caches.again]
CACHE_KEY_PREFIX = "pkg_"
"""


@pytest.fixture
def nest(redis_target: RedisTarget, tmp_path: Path) -> Nest:
    return make_nest(redis_target, tmp_path)


def with_duplicate(nest: Nest) -> Nest:
    """The file gains a cache 'again' with the default cache's server, db and prefix."""
    write_config(nest.config, nest.url, nest.other_url, AGAIN)
    return nest


def by_cache(document: dict) -> dict[str, dict]:
    return {result["cache"]: result for result in document["caches"]}


def test_keys_and_stats_on_every_cache_with_the_duplicate_run_once(nest: Nest) -> None:
    with_duplicate(nest)
    text = nest.run("--cache", "all", "keys", "--count")
    assert text.exit_code == 0, text.output
    assert text.stdout.splitlines() == [
        "== cache default ==",
        str(len(MAIN)),
        "== cache data ==",
        str(len(DATA)),
        "== cache thumbnail ==",
        str(len(THUMBNAIL)),
        "== cache elsewhere ==",
        "1",
        "cache again: the same server, database and prefix as cache default: not run again",
    ]
    document = json.loads(nest.run("--json", "--cache", "all", "stats").stdout)
    assert document["ok"] is True and document["exit_code"] == 0
    results = by_cache(document)
    assert list(results) == ["default", "data", "thumbnail", "elsewhere", "again"]
    assert results["default"]["document"]["total"] == len(MAIN)
    assert results["data"]["document"]["total"] == len(DATA)
    assert results["again"] == {"cache": "again", "skipped": True, "same_as": "default"}
    keys = by_cache(json.loads(nest.run("--json", "--cache", "all", "keys").stdout))
    assert sorted(keys["thumbnail"]["document"]["keys"]) == ["1"]


def test_clear_every_cache(nest: Nest) -> None:
    with_duplicate(nest)
    before = nest.left()
    dry = json.loads(nest.run("--json", "--cache", "all", "clear", "--dry-run").stdout)
    removed = {
        name: r["document"]["removed"] for name, r in by_cache(dry).items() if "document" in r
    }
    assert removed == {"default": len(MAIN), "data": 3, "thumbnail": 1, "elsewhere": 1}
    assert nest.left() == before and nest.other_db.exists("pkg_other_1")

    refused = nest.run("--cache", "all", "clear")  # no terminal, no --yes
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    assert nest.left() == before

    done = nest.run("--cache", "all", "clear", "--yes")
    assert done.exit_code == 0, done.output
    assert nest.left() == set(OUTSIDE)
    assert not nest.other_db.exists("pkg_other_1")


def test_one_question_on_a_terminal_lists_every_target(nest: Nest) -> None:
    args = ["--config", str(nest.config), "--cache", "all", "clear"]
    code, screen = _run_on_terminal(args, b"n\n")
    assert code == 1
    for prefix in ("'pkg_'", "'pkg_data_'", "'pkg_thumbnail_'", "'pkg_other_'"):
        assert prefix in screen
    assert screen.count("[y/N]") == 1
    assert nest.main.exists("pkg_a")
    code, screen = _run_on_terminal(args, b"y\n")
    assert code == 0 and screen.count("[y/N]") == 1
    assert nest.left() == set(OUTSIDE)


def test_delete_pattern_config_and_batch_on_every_cache(nest: Nest, tmp_path: Path) -> None:
    deleted = nest.run("--json", "--cache", "all", "delete", "--pattern", "1", "--yes")
    results = by_cache(json.loads(deleted.stdout))
    assert {name: r["document"]["removed"] for name, r in results.items()} == {
        "default": 0,
        "data": 1,
        "thumbnail": 1,
        "elsewhere": 1,
    }
    assert not nest.main.exists("pkg_data_1") and nest.main.exists("pkg_data_2")

    config = by_cache(json.loads(nest.run("--json", "--cache", "all", "config").stdout))
    prefixes = {n: r["document"]["settings"]["CACHE_KEY_PREFIX"] for n, r in config.items()}
    assert prefixes["thumbnail"]["value"] == "pkg_thumbnail_"

    lines = tmp_path / "deploy.txt"
    lines.write_text("keys --count\nclear --dry-run\n")
    batch = nest.run("--json", "--cache", "all", "batch", str(lines))
    assert batch.exit_code == 0, batch.output
    document = json.loads(batch.stdout)
    first = by_cache(document["lines"][0]["document"])
    assert first["data"]["document"]["count"] == 2
    text = nest.run("--cache", "all", "batch", str(lines))
    assert text.stdout.count("== cache data ==") == 2


def test_what_refuses_every_cache(nest: Nest, tmp_path: Path) -> None:
    config = str(nest.config)
    refusals = {
        ("get", "a"): b"--cache all applies to clear, stats, keys, config, delete --pattern",
        ("ttl", "a"): b"ttl takes one cache: name it with --cache NAME",
        ("delete", "a"): b"--cache all deletes by --pattern only",
        ("config", "--write", "-"): b"config --write already writes every cache",
    }
    for args, said in refusals.items():
        refused = run_console("--config", config, "--cache", "all", *args)
        assert refused.returncode == 2 and said in refused.stderr, (args, refused.stderr)
    typo = run_console("--config", config, "--cache", "al", "clear", "--dry-run")
    assert typo.returncode == 2 and b"no cache named 'al'" in typo.stderr
    assert b"did you mean all?" in typo.stderr
    assert b"thumbnail" in typo.stderr
    lines = tmp_path / "lines.txt"
    lines.write_text("keys --count\nget a\n")
    batch = run_console("--config", config, "--cache", "all", "batch", str(lines))
    assert batch.returncode == 2 and b"line 2 (get a)" in batch.stderr
    assert b"== cache" not in batch.stdout  # nothing ran
    nothing = run_console("--url", "redis://127.0.0.1:1/0", "--cache", "all", "keys")
    assert nothing.returncode == 2 and b"no config file or app names caches" in nothing.stderr
    assert nest.main.exists("pkg_a")


def test_a_failing_cache_does_not_stop_the_others(nest: Nest) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    down = f'[caches.down]\nCACHE_KEY_PREFIX = "gone_"\nCACHE_REDIS_URL = "{url}"\n'
    write_config(nest.config, nest.url, nest.other_url, down)
    done = nest.run("--json", "--timeout", "1", "--cache", "all", "clear", "--yes")
    assert done.exit_code == 3
    document = json.loads(done.stdout)
    assert document["ok"] is False and document["exit_code"] == 3
    results = by_cache(document)
    assert results["down"]["exit_code"] == 3 and results["down"]["document"]["ok"] is False
    assert results["elsewhere"]["exit_code"] == 0
    assert nest.left() == set(OUTSIDE)


def test_every_cache_of_a_flask_app(redis_target: RedisTarget, tmp_path: Path) -> None:
    other_db = (redis_target.db + 1) % 16
    other = redis.Redis(port=redis_target.port, db=other_db)
    other.flushdb()
    fill(redis_target.client, other)
    other_url = f"redis://127.0.0.1:{redis_target.port}/{other_db}"
    root = write_app(tmp_path / "app", redis_target.url, other_url)
    app = ["--app", "nestapp:create_app()", "--cache", "all"]
    counted = run_console(*app, "--json", "keys", "--count", cwd=root)
    assert counted.returncode == 0, counted.stderr
    results = by_cache(json.loads(counted.stdout))
    assert {name: r["document"]["count"] for name, r in results.items()} == {
        "nestapp:cache": len(MAIN),
        "nestapp:data_cache": len(DATA),
        "nestapp:thumbnail_cache": len(THUMBNAIL),
        "nestapp:other_db_cache": 1,
    }
    typo = run_console(
        "--app", "nestapp:create_app()", "--cache", "nestapp:data_cahce", "stats", cwd=root
    )
    assert typo.returncode == 2 and b"did you mean nestapp:data_cache" in typo.stderr
    done = run_console(*app, "clear", "--yes", cwd=root)
    assert done.returncode == 0, done.stderr
    assert b"== cache nestapp:other_db_cache ==" in done.stdout
    assert set(redis_target.client.keys("*")) == set(OUTSIDE)
    assert not other.exists("pkg_other_1")


def test_a_cache_in_the_apps_process_is_skipped_not_failed(nest: Nest) -> None:
    local = '[caches.local]\nCACHE_TYPE = "SimpleCache"\nCACHE_KEY_PREFIX = "pkg_local_"\n'
    write_config(nest.config, nest.url, nest.other_url, local)
    alone = nest.run("clear", "--dry-run")  # no sibling, and no warning about it
    assert alone.exit_code == 0 and "local" not in alone.output
    done = nest.run("--json", "--cache", "all", "keys", "--count")
    assert done.exit_code == 0, done.output
    skipped = by_cache(json.loads(done.stdout))["local"]
    assert skipped["skipped"] is True and "SimpleCache" in skipped["reason"]
    assert "cache local skipped" in done.stderr
