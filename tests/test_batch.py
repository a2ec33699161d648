"""cachectl batch: many commands in one process, each line as it would run on its own."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CONSOLE_SCRIPT, RedisTarget, oracle_app, run, run_console


def test_make_fragment_key_delete_has_a_dry_run(redis_target: RedisTarget) -> None:
    """Fragment lines of a batch or a group have a dry run like the other invalidations."""
    target = ["--url", redis_target.url, "--key-prefix", "app_"]
    key = json.loads(run(*target, "--json", "make-fragment-key", "footer").stdout)["key"]
    redis_target.client.set("app_" + key, b"1")
    dry = run(*target, "--json", "make-fragment-key", "footer", "--delete", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert json.loads(dry.stdout) == {
        "ok": True, "key": key, "stored_as": "app_" + key, "removed": None, "dry_run": True
    }  # fmt: skip
    assert redis_target.client.exists("app_" + key)
    assert run(*target, "make-fragment-key", "footer", "--dry-run").exit_code == 2
    gone = run(*target, "make-fragment-key", "footer", "--delete")
    assert gone.exit_code == 0 and not redis_target.client.exists("app_" + key)


PREFIX = "app_"

#: Every command that makes sense in a batch, with failing lines in the middle
#: (a missing key: exit 1) so that failures are compared too.
LINES = [
    'set greeting "hello world"',
    "set answer 42 --as int",
    "get greeting answer",
    "get missing  # exit 1",
    "ttl greeting",
    "expire greeting 500",
    "persist answer",
    "ttl greeting answer",
    "delete-memoized shop.pricing.price_list",
    "delete-memoized shop.catalog.get_product 1042 --signature '(product_id)'",
    "delete-view /pricing",
    "delete-view /search --all-queries",
    "make-fragment-key footer",
    "make-fragment-key product_card 1042 --delete",
    "keys 'view//*'",
    "keys --count",
    "stats",
    "config",
    "delete greeting nothing-here",
    "delete --pattern 'report:*' --yes",
    "expire missing 10",
    "clear --dry-run",
    "clear --yes",
    "keys",
]


def seed(target: RedisTarget) -> None:
    """The same state before each run, written by a real Flask-Caching app."""
    target.client.flushdb()
    _, cache = oracle_app(
        {"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": target.url, "CACHE_KEY_PREFIX": PREFIX}
    )
    cache.set("shop.pricing.price_list_memver", "AbCdEf", timeout=0)
    cache.set("shop.catalog.get_product_memver", "XyZ123", timeout=0)
    cache.set("view//pricing", "<html>prices</html>")
    cache.set("view//search", "<html>search</html>")
    cache.set("report:1", 1)
    cache.set("report:2", {"rows": [1, 2]})
    cache.set("user:1", {"id": 1})
    fragment = json.loads(
        run(*_target(target), "--json", "make-fragment-key", "product_card", "1042").stdout
    )
    cache.set(fragment["key"], "<div>card</div>")


def _target(target: RedisTarget) -> list[str]:
    return ["--url", target.url, "--key-prefix", PREFIX]


def normalized(document: Any) -> Any:
    """A document with what differs from run to run by design made equal: the random
    version a memoize invalidation writes, and TTLs that tick between runs."""
    if isinstance(document, dict):
        out = {}
        for name, value in document.items():
            if name == "written" and isinstance(value, dict):
                out[name] = {key: "<version>" for key in value}
            elif (name in ("ttl", "state") and isinstance(value, int)) or (
                name == "state" and isinstance(value, str) and value.isdigit()
            ):
                out[name] = "<seconds>"
            else:
                out[name] = normalized(value)
        return out
    if isinstance(document, list):
        return [normalized(item) for item in document]
    return document


def snapshot(target: RedisTarget) -> dict[bytes, tuple[Any, bool]]:
    """Every key with its value (a version key's random value left out) and whether
    it expires."""
    state = {}
    for key in target.client.scan_iter():
        value = None if key.endswith(b"_memver") else target.client.get(key)
        state[key] = (value, target.client.ttl(key) > 0)
    return state


def test_a_batch_is_its_lines_run_one_by_one(redis_target: RedisTarget, tmp_path: Path) -> None:
    seed(redis_target)
    alone = []
    for line in LINES:
        result = run(*_target(redis_target), "--json", *shlex.split(line, comments=True))
        alone.append((result.exit_code, normalized(json.loads(result.stdout))))
    after_alone = snapshot(redis_target)
    assert [code for code, _ in alone].count(1) == 2, alone  # the two failing lines

    seed(redis_target)
    batch_file = tmp_path / "deploy.txt"
    batch_file.write_text("# every command\n\n" + "\n".join(LINES) + "\n")
    result = run(*_target(redis_target), "--json", "batch", "--keep-going", str(batch_file))
    document = json.loads(result.stdout)
    in_batch = [(line["exit_code"], normalized(line["document"])) for line in document["lines"]]
    assert in_batch == alone
    assert snapshot(redis_target) == after_alone
    assert [line["line"] for line in document["lines"]] == list(range(3, 3 + len(LINES)))
    assert result.exit_code == 1 and document["exit_code"] == 1
    assert document["failed_line"] == 6 and document["ok"] is False


def test_a_batch_stops_at_the_first_failing_line(redis_target: RedisTarget, tmp_path: Path) -> None:
    batch_file = tmp_path / "b.txt"
    batch_file.write_text("set a 1\nexpire missing 10\nset b 2\n")
    result = run(*_target(redis_target), "batch", str(batch_file))
    assert result.exit_code == 1
    assert redis_target.client.exists("app_a") and not redis_target.client.exists("app_b")
    assert "line 2 failed with exit 1: expire missing 10; not run after it: line 3" in (
        result.stderr
    )
    assert result.stdout.splitlines()[0] == "line 1: set a 1"


def test_one_connection_for_the_whole_batch(redis_target: RedisTarget, tmp_path: Path) -> None:
    def connections() -> int:
        return int(redis_target.client.info("stats")["total_connections_received"])

    batch_file = tmp_path / "b.txt"
    batch_file.write_text("set a 1\nget a\nttl a\ndelete-view /x\nstats\nkeys --count\n")
    before = connections()
    assert run(*_target(redis_target), "batch", str(batch_file)).exit_code == 0
    assert connections() - before == 1


def test_dry_run_runs_every_line_as_its_dry_run(redis_target: RedisTarget, tmp_path: Path) -> None:
    seed(redis_target)
    before = snapshot(redis_target)
    batch_file = tmp_path / "b.txt"
    batch_file.write_text(
        "delete-memoized shop.pricing.price_list\n"
        "delete-view /pricing\n"
        "make-fragment-key product_card 1042 --delete\n"
        "delete --pattern 'report:*' --yes\n"
        "clear --yes\n"
        "get user:1\n"
        "stats\n"
    )
    result = run(*_target(redis_target), "--json", "batch", "--dry-run", str(batch_file))
    assert result.exit_code == 0, result.stderr
    documents = [line["document"] for line in json.loads(result.stdout)["lines"]]
    assert all(document["dry_run"] for document in documents[:5])
    assert documents[3]["removed"] == 2 and documents[2]["stored_as"].endswith("card_1042")
    assert snapshot(redis_target) == before


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("--cache other get k", "--cache is a global option"),
        ("get k --json", "--json applies to the whole batch"),
        ("batch more.txt", "batch cannot run inside a batch"),
        ("gte k", "no command 'gte' (did you mean get?)"),
        ("get 'k", "line 2: cannot split it as a shell would"),
        ("get --raw k", "get --raw writes bytes"),
        ("get --help", "run 'cachectl get --help' on its own"),
        ("set k v --bogus", "--bogus"),
        ("expire k 0", "0 means 'never expires'"),
    ],
)
def test_a_line_the_batch_refuses_stops_it_before_anything_runs(
    redis_target: RedisTarget, tmp_path: Path, line: str, says: str
) -> None:
    batch_file = tmp_path / "b.txt"
    batch_file.write_text(f"set first 1\n{line}\n")
    result = run(*_target(redis_target), "batch", "--keep-going", str(batch_file))
    assert result.exit_code == 2
    assert says in result.stderr and "nothing was run" in result.stderr, result.stderr
    assert not redis_target.client.exists("app_first")


def test_a_dry_run_reviews_every_line_and_changes_nothing(
    redis_target: RedisTarget, tmp_path: Path
) -> None:
    """A dry run of a deploy file is how an operator reviews it: lines that write without
    a dry run of their own say what they would do."""
    seed(redis_target)
    before = snapshot(redis_target)
    (tmp_path / "stale.txt").write_text("user:1\n")
    batch_file = tmp_path / "deploy.txt"
    batch_file.write_text(
        "set banner 'back at 10' --ttl 60\n"
        "expire user:1 500\n"
        "persist report:1\n"
        "delete user:1 'odd#key'\n"
        f"delete --from-file {tmp_path / 'stale.txt'}\n"
        "delete-view /pricing\n"
        "clear --yes\n"
        f"config --write {tmp_path / 'written.toml'}\n"
    )
    text = run_console(*_target(redis_target), "batch", "--dry-run", str(batch_file))
    assert text.returncode == 0, text.stderr
    said = text.stdout.decode().splitlines()
    for would in [
        "would set banner (str, ttl 60 s)",
        "would expire user:1 in 500 s",
        "would persist report:1 (no expiry)",
        "would delete user:1, odd#key",
        f"would delete the keys listed in {tmp_path / 'stale.txt'}",
        "would delete view//pricing (stored as app_view//pricing)",
        f"would write {tmp_path / 'written.toml'}",
    ]:
        assert would in said, said
    assert any(line.startswith("would remove ") for line in said)
    assert snapshot(redis_target) == before
    assert not (tmp_path / "written.toml").exists()
    as_json = run(*_target(redis_target), "--json", "batch", "--dry-run", str(batch_file))
    document = json.loads(as_json.stdout)
    assert as_json.exit_code == 0 and document["ok"] is True
    assert document["lines"][0]["document"] == {
        "ok": True, "dry_run": True, "would": "would set banner (str, ttl 60 s)"
    }  # fmt: skip
    assert snapshot(redis_target) == before


def test_a_dry_run_still_checks_the_lines_that_only_say_what_they_would_do(
    redis_target: RedisTarget, tmp_path: Path
) -> None:
    batch_file = tmp_path / "b.txt"
    batch_file.write_text("delete-view /pricing\nset answer forty-two --as int\n")
    result = run(*_target(redis_target), "batch", "--dry-run", str(batch_file))
    assert result.exit_code == 2
    assert "line 2 (set answer forty-two --as int)" in result.stderr
    assert "nothing was run" in result.stderr and result.stdout == ""


def test_a_hash_inside_a_word_is_part_of_the_key(redis_target: RedisTarget, tmp_path: Path) -> None:
    for name in (b"app_user", b"app_user#42", b"app_LIMITER#1"):
        redis_target.client.set(name, b"1")
    (tmp_path / "b.txt").write_text(
        "delete user#42   # user stays\nclear --exclude LIMITER#* --exclude user --yes\n"
    )
    done = run_console(*_target(redis_target), "batch", "b.txt", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(redis_target.client.keys()) == [b"app_LIMITER#1", b"app_user"]
    assert done.stdout.decode().splitlines()[0] == "line 1: delete 'user#42'"


@pytest.mark.parametrize(
    "failing",
    [
        "delete-memoized shop.nowhere.get_thing 42",
        "delete-memoized shop.pricing.price_list 1 --purge",
        "delete-memoized shop.catalog.get_product 1 2 --signature '(product_id)'",
        "delete-view --endpoint shop.pricing",
        "delete-view /search --query a=1 --all-queries",
        "delete-view /x --view-prefix 'v/%d'",
        "make-fragment-key footer --dry-run",
        "set n forty-two --as int",
        "delete a; clear --yes",
    ],
)
def test_every_line_is_checked_before_the_first_runs(
    redis_target: RedisTarget, tmp_path: Path, failing: str
) -> None:
    """A line that would fail its own checks (not only its parsing) stops the batch before
    the first line has deleted anything."""
    seed(redis_target)
    before = snapshot(redis_target)
    batch_file = tmp_path / "b.txt"
    batch_file.write_text(f"delete-view /pricing\ndelete user:1\n{failing}\nclear --yes\n")
    result = run_console(*_target(redis_target), "batch", "--keep-going", str(batch_file))
    assert result.returncode == 2, result.stderr
    assert b"line 3" in result.stderr and b"nothing was run" in result.stderr
    assert snapshot(redis_target) == before
    assert redis_target.client.exists("app_view//pricing", "app_user:1") == 2


def test_a_batch_cut_by_a_closed_pipe_logs_the_lines_it_completed(
    redis_target: RedisTarget, tmp_path: Path
) -> None:
    batch_file = tmp_path / "many.txt"
    batch_file.write_text("".join(f"set k{n} v\n" for n in range(1, 3001)))
    log = tmp_path / "audit.log"
    cachectl = shlex.join(
        [str(CONSOLE_SCRIPT), *_target(redis_target), "--audit-log", str(log), "batch"]
    )
    line = f"{cachectl} {shlex.quote(str(batch_file))} | head -n 1; exit ${{PIPESTATUS[0]}}"
    done = subprocess.run(["bash", "-c", line], capture_output=True, timeout=120)
    assert done.returncode == 141, done.stderr
    entry = json.loads(log.read_text())
    assert entry["exit_code"] == 141
    cut = entry["done"]
    assert cut["cut_short"] == "standard output closed" and cut["ok"] is False
    in_flight = cut["line_in_flight"]
    assert cut["completed_lines"] == list(range(1, in_flight)) and in_flight < 3000
    ran = [line["line"] for line in cut["lines"] if line["exit_code"] is not None]
    assert ran == cut["completed_lines"]
    for n in range(1, in_flight):
        assert redis_target.client.exists(f"app_k{n}")
    for n in range(in_flight + 1, 3001):
        assert not redis_target.client.exists(f"app_k{n}")


def test_lines_never_ask_and_never_read_the_batch_as_input(redis_target: RedisTarget) -> None:
    asked = run(*_target(redis_target), "batch", "-", input="set a 1\nclear\nset b 2\n")
    assert asked.exit_code == 2 and "pass --yes" in asked.stderr
    assert not redis_target.client.exists("app_b")
    stdin = run(*_target(redis_target), "batch", "-", input="set a -\n")
    assert stdin.exit_code == 2 and "reads standard input" in stdin.stderr


TINY_APP = """
import os
import re
from flask import Flask
from flask_caching import Cache

cache = Cache()


def create_app():
    # Start-up work, counted: a batch must do it once.
    with open(os.environ["TINY_STARTS"], "a") as log:
        log.write("started\\n")
    app = Flask(__name__)
    app.config.update(
        CACHE_TYPE="RedisCache", CACHE_REDIS_URL=os.environ["TINY_URL"], CACHE_KEY_PREFIX="tiny_"
    )
    cache.init_app(app)
    return app
"""


def test_console_batch_with_app_loads_it_once_and_names_the_failing_line(
    redis_target: RedisTarget, tmp_path: Path
) -> None:
    (tmp_path / "tinyapp.py").write_text(TINY_APP)
    starts = tmp_path / "starts.log"
    env = {**os.environ, "TINY_STARTS": str(starts), "TINY_URL": redis_target.url}
    env = {k: v for k, v in env.items() if not k.startswith(("CACHECTL_", "FLASK_"))}
    (tmp_path / "deploy.txt").write_text(
        "set banner 'back at 10'\n"
        "delete-view /pricing   # the pricing page\n"
        "get banner\n"
        "expire gone 60\n"
        "delete banner\n"
    )
    app = ["--app", "tinyapp:create_app()"]
    done = run_console(*app, "batch", "deploy.txt", cwd=tmp_path, env=env)
    assert done.returncode == 1
    assert starts.read_text() == "started\n"
    out, err = done.stdout.decode(), done.stderr.decode()
    assert out.splitlines()[:2] == [
        "line 1: set banner 'back at 10'",
        "set banner (str, expires in 300 s)",
    ]
    assert "line 4 failed with exit 1: expire gone 60; not run after it: line 5" in err
    assert redis_target.client.exists("tiny_banner")

    kept = run_console(*app, "--json", "batch", "--keep-going", "-", cwd=tmp_path, env=env,
                       input=(tmp_path / "deploy.txt").read_bytes())  # fmt: skip
    document = json.loads(kept.stdout)
    assert kept.returncode == 1 and [line["exit_code"] for line in document["lines"]] == [
        0,
        0,
        0,
        1,
        0,
    ]
    assert starts.read_text() == "started\n" * 2
    assert not redis_target.client.exists("tiny_banner")


def test_a_batch_prints_each_line_as_it_alone_prints_it(
    redis_target: RedisTarget, tmp_path: Path
) -> None:
    seed(redis_target)
    alone = []
    for line in LINES:
        result = run(*_target(redis_target), *shlex.split(line, comments=True))
        alone.append(result.stdout)
    seed(redis_target)
    batch_file = tmp_path / "deploy.txt"
    batch_file.write_text("\n".join(LINES) + "\n")
    result = run(*_target(redis_target), "batch", "--keep-going", str(batch_file))
    chunks: list[str] = []
    for text in result.stdout.splitlines(keepends=True):
        header = f"line {len(chunks) + 1}: "
        if len(chunks) < len(LINES) and text.startswith(header):
            chunks.append("")
        else:
            chunks[-1] += text
    assert [_masked(chunk) for chunk in chunks] == [_masked(text) for text in alone]


def _masked(text: str) -> str:
    """Text output with the random memoize version and ticking TTLs made equal."""
    text = re.sub(r"write version '[^']*'", "write version <v>", text)
    return re.sub(r"\b\d{3}\b", "<n>", text)


def test_plan_apply_checks_every_action_before_the_first_runs(
    redis_target: RedisTarget, tmp_path: Path
) -> None:
    """plan --apply makes each action's server-free checks (the same the single commands
    make) for every action before the first runs."""
    from cachectl.backends.redis import RedisBackend
    from cachectl.config.resolve import ConfigRequest, resolve_config
    from cachectl.errors import UsageError
    from cachectl.operations.plan import Target, apply_plan
    from cachectl.release.plan_actions import KEY, VIEW, Action, Plan

    seed(redis_target)
    before = snapshot(redis_target)
    request = ConfigRequest(
        config_file=None,
        overrides=[
            ("CACHE_TYPE", "RedisCache", "--type"),
            ("CACHE_REDIS_URL", redis_target.url, "--url"),
            ("CACHE_KEY_PREFIX", PREFIX, "--key-prefix"),
        ],
        cwd=tmp_path,
        environ={},
    )
    settings = resolve_config(request).settings()
    backend = RedisBackend.for_client(redis_target.client, PREFIX, 300)
    targets = {None: Target(backend, settings, None)}
    plan = Plan("a" * 40, "b" * 40)
    plan.add(Action(VIEW, "/pricing", "changed", "shop/views.py:1"))
    plan.add(Action(VIEW, "/feed", "changed", "shop/views.py:9", view_prefix="feed/%d"))
    with pytest.raises(UsageError) as refused:
        apply_plan(targets, plan)
    assert "feed/%d" in refused.value.message and "nothing was changed" in refused.value.message
    assert snapshot(redis_target) == before
    plan.actions[1] = Action(KEY, "report:\udcff", "changed", "shop/views.py:9")
    with pytest.raises(UsageError, match="not valid UTF-8"):
        apply_plan(targets, plan)
    assert snapshot(redis_target) == before
