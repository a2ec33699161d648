"""Invalidation groups in the config file: groups lists them, invalidate runs them as a batch."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import RedisTarget, oracle_app, run, run_console
from tests.test_batch import normalized, snapshot

GROUPS_TOML = """
[groups.prices]
memoized = ["shop.pricing.price_list", "shop.catalog.get_product 1042 --signature '(product_id)'"]
views = ["/pricing", "/search --all-queries"]
fragments = ["footer", "product_card 1042"]
patterns = ["report:*"]

[groups.catalog]
views = ["/pricing", "/catalog"]
"""

GROUPS = {
    "prices": {
        "memoized": [
            "shop.pricing.price_list",
            "shop.catalog.get_product 1042 --signature '(product_id)'",
        ],
        "views": ["/pricing", "/search --all-queries"],
        "fragments": ["footer", "product_card 1042"],
        "patterns": ["report:*"],
    },
    "catalog": {"views": ["/pricing", "/catalog"]},
}

PREFIX = "shop_"


def write_config(directory: Path, target: RedisTarget, form: str = "toml") -> Path:
    settings = {
        "CACHE_TYPE": "RedisCache",
        "CACHE_REDIS_URL": target.url,
        "CACHE_KEY_PREFIX": PREFIX,
    }
    if form == "toml":
        path = directory / "cachectl.toml"
        lines = [f"{name} = {json.dumps(value)}" for name, value in settings.items()]
        path.write_text("\n".join(lines) + "\n" + GROUPS_TOML)
    elif form == "json":
        path = directory / "cache.json"
        path.write_text(json.dumps({**settings, "groups": GROUPS}))
    else:
        path = directory / "cache_settings.py"
        body = "".join(f"{name} = {value!r}\n" for name, value in settings.items())
        path.write_text(body + f"CACHECTL_GROUPS = {GROUPS!r}\n")
    return path


def seed(target: RedisTarget) -> None:
    """What a real Flask-Caching app would hold: the group's targets and bystanders."""
    target.client.flushdb()
    _, cache = oracle_app(
        {"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": target.url, "CACHE_KEY_PREFIX": PREFIX}
    )
    cache.set("shop.pricing.price_list_memver", "AbCdEf", timeout=0)
    cache.set("shop.catalog.get_product_memver", "XyZ123", timeout=0)
    cache.set("view//pricing", "<html>prices</html>")
    cache.set("view//catalog", "<html>catalog</html>")
    cache.set("view//about", "<html>about</html>")
    cache.set("_template_fragment_cache_footer", "<footer>")
    cache.set("_template_fragment_cache_product_card_1042", "<div>")
    cache.set("report:1", 1)
    cache.set("session:abc", {"user": 1})


@pytest.mark.parametrize("form", ["json", "py"])
def test_the_three_forms_describe_the_same_groups(
    redis_target: RedisTarget, tmp_path: Path, form: str
) -> None:
    toml = run("--config", str(write_config(tmp_path, redis_target)), "--json", "groups")
    other = run("--config", str(write_config(tmp_path, redis_target, form)), "--json", "groups")
    assert toml.exit_code == other.exit_code == 0, (toml.stderr, other.stderr)
    assert json.loads(toml.stdout)["groups"] == json.loads(other.stdout)["groups"]
    listed = json.loads(toml.stdout)["groups"]
    assert [group["name"] for group in listed] == ["prices", "catalog"]
    assert listed[0]["commands"][-1] == "delete --yes --pattern 'report:*'"


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ('[groups.prices]\nmemoised = ["f"]\n', "group 'prices': unknown key 'memoised'"),
        (
            '[groups.prices]\nviews = "/pricing"\n',
            "group 'prices': views must be a list of strings",
        ),
        ("[groups.prices]\nviews = [1]\n", "group 'prices': views must be a list of strings"),
        ('[groups]\nprices = "/pricing"\n', "group 'prices' must be a table"),
        ("[groups.prices]\n", "group 'prices' has no actions"),
        ('[groups.prices]\nviews = ["\'/a"]\n', "group 'prices': views entry"),
        ('groups = ["prices"]\n', "groups must be a table"),
    ],
)
def test_a_group_table_is_checked_strictly(
    redis_target: RedisTarget, tmp_path: Path, table: str, says: str
) -> None:
    path = tmp_path / "cachectl.toml"
    path.write_text(f'CACHE_REDIS_URL = "{redis_target.url}"\n{table}')
    for args in (["groups"], ["invalidate", "prices", "--yes"]):
        result = run("--config", str(path), *args)
        assert result.exit_code == 2, result.stderr
        assert f"{path}: " in result.stderr and says in result.stderr, result.stderr


def test_invalidate_is_the_batch_of_its_actions(redis_target: RedisTarget, tmp_path: Path) -> None:
    config = ["--config", str(write_config(tmp_path, redis_target)), "--json"]
    seed(redis_target)
    by_group = run(*config, "invalidate", "prices", "catalog", "prices", "--yes")
    assert by_group.exit_code == 0, by_group.stderr
    document = json.loads(by_group.stdout)
    after = snapshot(redis_target)
    commands = [line["command"] for line in document["lines"]]
    assert commands.count("delete-view /pricing") == 1 and len(commands) == 8
    assert [line["group"] for line in document["lines"]][-1] == "catalog"
    assert document["groups"] == ["prices", "catalog"]

    seed(redis_target)
    batch_file = tmp_path / "same.txt"
    batch_file.write_text("\n".join(commands) + "\n")
    as_batch = run(*config, "batch", str(batch_file))
    assert [normalized(line["document"]) for line in json.loads(as_batch.stdout)["lines"]] == [
        normalized(line["document"]) for line in document["lines"]
    ]
    assert snapshot(redis_target) == after
    left = {key.decode() for key in after}
    assert left == {
        "shop_shop.pricing.price_list_memver",
        "shop_shop.catalog.get_product_memver",
        "shop_view//about",
        "shop_session:abc",
    }


def test_invalidate_dry_run_changes_nothing_and_asks_nothing(
    redis_target: RedisTarget, tmp_path: Path
) -> None:
    config = ["--config", str(write_config(tmp_path, redis_target))]
    seed(redis_target)
    before = snapshot(redis_target)
    dry = run(*config, "--json", "invalidate", "prices", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert all(line["document"]["dry_run"] for line in json.loads(dry.stdout)["lines"])
    unasked = run(*config, "invalidate", "prices")
    assert unasked.exit_code == 2 and "pass --yes" in unasked.stderr
    assert snapshot(redis_target) == before


def test_console_invalidate_with_a_typo_and_a_failing_action(
    redis_target: RedisTarget, tmp_path: Path
) -> None:
    write_config(tmp_path, redis_target)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CACHECTL_", "FLASK_"))}
    typo = run_console("invalidate", "prcies", cwd=tmp_path, env=env)
    assert typo.returncode == 2
    assert typo.stderr.decode().splitlines() == [
        f"error: no invalidation group 'prcies' in {tmp_path / 'cachectl.toml'} "
        "(it has: prices, catalog)"
    ]
    seed(redis_target)
    # The server refuses writes from here on: the first action fails (exit 3), and
    # nothing after it runs.
    redis_target.client.config_set("min-replicas-to-write", 1)
    try:
        failed = run_console("invalidate", "catalog", cwd=tmp_path, env=env)
    finally:
        redis_target.client.config_set("min-replicas-to-write", 0)
    err = failed.stderr.decode()
    assert failed.returncode == 3, err
    assert "action 1 (group catalog) failed with exit 3: delete-view /pricing" in err
    assert "not run after it: action 2" in err
    assert failed.stdout.decode().splitlines() == ["action 1 (group catalog): delete-view /pricing"]
    assert redis_target.client.exists("shop_view//catalog")

    done = run_console("invalidate", "catalog", cwd=tmp_path, env=env)
    assert done.returncode == 0 and not redis_target.client.exists("shop_view//catalog")


def test_groups_need_a_config_file(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CACHECTL_", "FLASK_"))}
    listed = run_console("groups", cwd=tmp_path, env=env)
    assert listed.returncode == 2 and b"no config file to read invalidation groups" in listed.stderr


@pytest.mark.parametrize(
    "second",
    [
        'memoized = ["shop.pricing.price_list", "shop.nowhere.get_thing 42"]',
        'memoized = ["shop.pricing.price_list"]\nviews = ["--endpoint shop.catalog"]',
        'memoized = ["shop.pricing.price_list"]\nviews = ["/feed --view-prefix v/%d"]',
    ],
    ids=["unknown-signature", "endpoint-without-app", "view-prefix"],
)
def test_invalidate_checks_every_action_before_the_first_runs(
    redis_target: RedisTarget, tmp_path: Path, second: str
) -> None:
    """The first action (a new version for price_list) must not run when a later one
    would fail its own checks."""
    path = tmp_path / "cachectl.toml"
    path.write_text(
        f'CACHE_TYPE = "RedisCache"\nCACHE_REDIS_URL = "{redis_target.url}"\n'
        f'CACHE_KEY_PREFIX = "{PREFIX}"\n[groups.release]\n{second}\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CACHECTL_", "FLASK_"))}
    seed(redis_target)
    before = snapshot(redis_target)
    failed = run_console("invalidate", "release", "--yes", "--keep-going", cwd=tmp_path, env=env)
    err = failed.stderr.decode()
    assert failed.returncode == 2, err
    assert "action 2 (group release)" in err and "nothing was run" in err
    assert failed.stdout == b""
    assert redis_target.client.get("shop_shop.pricing.price_list_memver") is not None
    assert b"AbCdEf" in redis_target.client.get("shop_shop.pricing.price_list_memver")
    assert snapshot(redis_target) == before


def test_a_group_entry_splits_as_a_shell_would(redis_target: RedisTarget, tmp_path: Path) -> None:
    path = tmp_path / "cachectl.toml"
    path.write_text(
        f'CACHE_TYPE = "RedisCache"\nCACHE_REDIS_URL = "{redis_target.url}"\n'
        f'CACHE_KEY_PREFIX = "{PREFIX}"\n[groups.tags]\n'
        'views = ["/tag/c#", "/tag/go # the Go tag", "\'/tag/a b\'"]\n'
    )
    listed = run("--config", str(path), "--json", "groups")
    assert json.loads(listed.stdout)["groups"][0]["commands"] == [
        "delete-view '/tag/c#'",
        "delete-view /tag/go",
        "delete-view '/tag/a b'",
    ]
    for name in ("view//tag/c#", "view//tag/go", "view//tag/a b", "view//tag/c"):
        redis_target.client.set(PREFIX + name, b"1")
    done = run("--config", str(path), "invalidate", "tags")
    assert done.exit_code == 0, done.stderr
    assert redis_target.client.keys() == [f"{PREFIX}view//tag/c".encode()]
    only_comment = tmp_path / "comment.toml"
    only_comment.write_text(
        f'CACHE_REDIS_URL = "{redis_target.url}"\n[groups.tags]\nviews = ["# nothing"]\n'
    )
    refused = run("--config", str(only_comment), "groups")
    assert refused.exit_code == 2 and "is only a comment" in refused.stderr
