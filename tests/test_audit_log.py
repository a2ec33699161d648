"""The audit log, as an operator reads it after the fact: one JSON line per run that changed
a cache, through the installed ``cachectl``, against a real Redis."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import CONSOLE_SCRIPT, RedisTarget, run_console


def _lines(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_each_change_is_one_line_and_reads_and_dry_runs_are_none(
    tmp_path: Path, redis_target: RedisTarget
) -> None:
    log = tmp_path / "audit.jsonl"
    target = ["--url", redis_target.url, "--audit-log", str(log)]
    assert run_console(*target, "set", "greeting", "the secret text").returncode == 0
    assert run_console(*target, "get", "greeting").returncode == 0
    assert run_console(*target, "clear", "--dry-run").returncode == 0
    assert run_console(*target, "delete", "greeting", "nothere").returncode == 0

    assert "the secret text" not in log.read_text()
    written, deleted = _lines(log)
    assert written["command"] == "set" and written["argv"][-3:] == ["set", "greeting", "<value>"]
    assert written["done"] == {"ok": True, "key": "greeting", "type": "str", "timeout": 300}
    assert written["target"] == {
        "cache": "default",
        "where": redis_target.url,
        "key_prefix": "flask_cache_",
    }
    assert deleted["done"] == {"ok": True, "requested": 2, "removed": 1}
    assert deleted["exit_code"] == 0 and deleted["error"] is None
    for line in (written, deleted):
        assert line["user"] and line["host"] and line["time"].endswith("Z")


def test_a_failed_run_is_logged_with_its_status_and_no_password(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    done = run_console(
        "--url", "redis://:hunter22@127.0.0.1:1/0", "--audit-log", str(log), "delete", "k",
    )  # fmt: skip
    assert done.returncode == 3
    (line,) = _lines(log)
    assert line["exit_code"] == 3 and "Connection refused" in line["error"]
    assert line["target"]["where"].startswith("redis://")
    assert "hunter22" not in log.read_text()


def test_every_way_of_giving_a_secret_on_the_command_line_is_masked(tmp_path: Path) -> None:
    """By the setting's name and the URL's userinfo, however the option is spelled."""
    log = tmp_path / "audit.jsonl"
    done = run_console(
        "--audit-log", str(log),
        "-oCACHE_REDIS_PASSWORD=hunter23",
        "--option=CACHE_OPTIONS_TOKEN=hunter24",
        "-o", "CACHE_REDIS_URL=redis://ops:hunter25@127.0.0.1:1/0",
        "--option", "CACHE_API_SECRET=[1234567, 7654321]",
        "delete", "k",
    )  # fmt: skip
    assert done.returncode == 3, done.stderr  # port 1: refused
    (line,) = _lines(log)
    assert line["argv"][2:] == [
        "-oCACHE_REDIS_PASSWORD=****",
        "--option=CACHE_OPTIONS_TOKEN=****",
        "-o", "CACHE_REDIS_URL=redis://ops:****@127.0.0.1:1/0",
        "--option", "CACHE_API_SECRET=****",
        "delete", "k",
    ]  # fmt: skip
    for secret in ("hunter23", "hunter24", "hunter25", "1234567", "7654321"):
        assert secret not in log.read_text()
        assert secret not in done.stderr.decode()


def test_the_config_file_names_the_log_and_a_batch_is_one_line(
    tmp_path: Path, redis_target: RedisTarget
) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "cachectl.toml").write_text(
        f'CACHE_TYPE = "RedisCache"\nCACHE_REDIS_URL = "{redis_target.url}"\n'
        'audit_log = "logs/audit.jsonl"\n'
    )
    (tmp_path / "release.txt").write_text("set banner 'Back at ten'\nget banner\ndelete old\n")
    assert run_console("batch", "release.txt", cwd=tmp_path).returncode == 0

    log = tmp_path / "logs" / "audit.jsonl"
    (line,) = _lines(log)
    assert line["command"] == "batch"
    assert [entry["command"] for entry in line["done"]["lines"]] == [
        "set banner '<value>'",
        "get banner",
        "delete old",
    ]
    assert "Back at ten" not in log.read_text()


def test_an_unwritable_log_warns_unless_it_is_required(
    tmp_path: Path, redis_target: RedisTarget
) -> None:
    redis_target.client.set("flask_cache_k", b"!\x80\x04K\x01.")
    missing = str(tmp_path / "no" / "such" / "dir" / "audit.jsonl")
    target = ["--url", redis_target.url, "--audit-log", missing]

    required = run_console(*target, "--audit-required", "delete", "k")
    assert required.returncode == 2
    assert b"nothing was done" in required.stderr
    assert redis_target.client.exists("flask_cache_k") == 1

    warned = run_console(*target, "delete", "k")
    assert warned.returncode == 0
    assert b"warning: audit log not written" in warned.stderr
    assert redis_target.client.exists("flask_cache_k") == 0

    nowhere = run_console("--url", redis_target.url, "--audit-required", "delete", "k")
    assert nowhere.returncode == 2 and b"no audit log is set" in nowhere.stderr


def test_runs_ending_together_write_whole_lines(tmp_path: Path, redis_target: RedisTarget) -> None:
    log = tmp_path / "audit.jsonl"
    env = {**os.environ, "CACHECTL_AUDIT_LOG": str(log)}
    runs = [
        subprocess.Popen(
            [str(CONSOLE_SCRIPT), "--url", redis_target.url, "delete", f"key{n}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for n in range(8)
    ]
    assert [run.wait(timeout=60) for run in runs] == [0] * 8
    lines = _lines(log)
    assert sorted(line["argv"][-1] for line in lines) == [f"key{n}" for n in range(8)]


def test_every_command_that_changes_a_cache_is_logged_and_only_those() -> None:
    """The audit's list, checked against the commands' own options (a renamed option
    would otherwise silently stop a command from being logged)."""
    from cachectl.cli.command_index import COMMAND_MODULES, load_all_commands
    from cachectl.cli.group import cli
    from cachectl.runtime.audit import DESTRUCTIVE, changes_cache

    load_all_commands()
    assert set(COMMAND_MODULES) >= DESTRUCTIVE
    for name in DESTRUCTIVE:
        # As a run without options has them: flags off, the rest unset.
        params = {
            p.name: False if getattr(p, "is_flag", False) else None
            for p in cli.commands[name].params
        }
        switches = {"make-fragment-key": "delete", "plan": "apply_plan", "check-pickles": "delete"}
        switch = switches.get(name)
        if switch is not None:
            assert switch in params, name
            assert not changes_cache(name, params)
            params[switch] = True
        assert changes_cache(name, params), name
        if "dry_run" in params:
            assert not changes_cache(name, {**params, "dry_run": True}), name


def test_every_cache_at_once_is_one_line_with_each_cache(
    tmp_path: Path, redis_target: RedisTarget
) -> None:
    (tmp_path / "cachectl.toml").write_text(
        f'CACHE_TYPE = "RedisCache"\nCACHE_REDIS_URL = "{redis_target.url}"\n'
        'CACHE_KEY_PREFIX = "main_"\n'
        '[caches.reports]\nCACHE_KEY_PREFIX = "reports_"\n'
    )
    for key in ("main_a", "main_b", "reports_x"):
        redis_target.client.set(key, b"!\x80\x04K\x01.")
    log = tmp_path / "audit.jsonl"
    done = run_console("--cache", "all", "--audit-log", str(log), "clear", "--yes", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (line,) = _lines(log)
    assert line["command"] == "clear"
    assert [(c["cache"], c["done"]["removed"]) for c in line["done"]["caches"]] == [
        ("default", 2),
        ("reports", 1),
    ]
