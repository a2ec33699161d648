"""Counts and sizes read alike in every command's text (cachectl/runtime/wording.py): "1 key",
"1,200 keys", "80 bytes", "4.9 KiB"; never "1 keys", "cache(s)", "544 B" beside "2,552
bytes", or lines of spaces. ``--json`` keeps the plain numbers."""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path

import pytest

from cachectl.runtime.wording import counted, counted_phrase, removal_text, size_text
from tests.conftest import RedisTarget, fill_keys, run


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (None, "?"),
        (0, "0 bytes"),
        (1, "1 byte"),
        (544, "544 bytes"),
        (1023, "1,023 bytes"),
        (1024, "1.0 KiB"),
        (2552, "2.5 KiB"),
        (5 * 1024 * 1024 + 1, "5.0 MiB"),
        (3 * 1024**3, "3.0 GiB"),
        (2 * 1024**5, "2,048.0 TiB"),
    ],
)
def test_one_spelling_of_sizes(size: int | None, text: str) -> None:
    assert size_text(size) == text


def test_counts_agree_with_their_noun() -> None:
    assert [counted(n, "key") for n in (0, 1, 2, 12345)] == [
        "0 keys",
        "1 key",
        "2 keys",
        "12,345 keys",
    ]
    assert counted(1, "stored entry", "stored entries") == "1 stored entry"
    assert counted(3, "stored entry", "stored entries") == "3 stored entries"
    assert counted_phrase(1, "cache files (other files stay)") == "1 cache file (other files stay)"
    assert counted_phrase(1, "every key in the database") == "1 key, every key in the database,"
    assert removal_text("deleted", 2, 2) == "deleted 2 keys"
    assert removal_text("deleted", 0, 1) == "deleted 0 of 1 key (1 did not exist)"


def redis_args(target: RedisTarget) -> list[str]:
    return ["--url", target.url, "--key-prefix", "w_"]


def test_one_key_is_one_key_in_every_command(redis_target: RedisTarget) -> None:
    args = redis_args(redis_target)
    assert run(*args, "set", "a", "1").exit_code == 0
    assert run(*args, "clear", "--dry-run").stdout == (
        f"would remove 1 key under the prefix 'w_' from {redis_target.url}\n"
    )
    assert run(*args, "delete", "--pattern", "a*", "--dry-run").stdout == (
        f"would remove 1 key under the prefix 'w_' matching 'a*' from {redis_target.url}\n"
    )
    assert run(*args, "delete", "a").stdout == "deleted 1 key\n"
    assert run(*args, "delete", "a", "b").stdout == "deleted 0 of 2 keys (2 did not exist)\n"


def test_large_counts_have_thousands_separators(redis_target: RedisTarget) -> None:
    fill_keys(redis_target.client, "w_k{}", 1200)
    done = run(*redis_args(redis_target), "clear", "--yes")
    assert done.stdout == f"removed 1,200 keys under the prefix 'w_' from {redis_target.url}\n"
    document = json.loads(run(*redis_args(redis_target), "--json", "clear", "--yes").stdout)
    assert document["removed"] == 0  # --json: numbers, not text


def test_stats_spells_counts_and_sizes_and_prints_no_line_of_spaces(
    redis_target: RedisTarget,
) -> None:
    args = redis_args(redis_target)
    run(*args, "set", "small", "1")
    run(*args, "set", "big", "x" * 5000)
    lines = run(*args, "stats").stdout.splitlines()
    assert lines[0] == f"2 keys under the prefix 'w_' in {redis_target.url}"
    assert all(line == "" or line.strip() for line in lines), lines  # blank, never spaces
    assert all(line == line.rstrip() for line in lines), lines
    assert "" in lines  # the sections are still apart
    memory = [line for line in lines if line.startswith("memory of 2 keys")]
    assert len(memory) == 1 and memory[0].endswith(" KiB"), lines

    run(*args, "delete", "big")
    one = run(*args, "stats").stdout.splitlines()
    assert one[0].startswith("1 key under the prefix")
    (sampled,) = [line for line in one if line.startswith("memory of")]
    assert sampled.startswith("memory of 1 key ") and sampled.endswith(" bytes"), one

    by_function = run(*args, "stats", "--by-function").stdout.splitlines()
    assert by_function[0].startswith("1 key under the prefix")
    assert by_function[-1].startswith("version keys: 0; other keys: 1 (")
    assert by_function[-1].endswith(" bytes)"), by_function  # as stats says it, not "80 B"


def test_filesystem_counts(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    directory.mkdir()
    args = ["--compat", "2.5", "--dir", str(directory)]
    assert run(*args, "set", "k", "v").exit_code == 0
    assert run(*args, "clear", "--yes").stdout == (
        f"removed 1 cache file (other files stay) from directory {directory}\n"
    )
    run(*args, "set", "old", "v", "--ttl", "1")
    (name,) = [path for path in directory.iterdir() if path.name != "__wz_cache_count"]
    stale = int(time.time()) - 10
    name.write_bytes(stale.to_bytes(4, "little") + pickle.dumps("v"))
    assert run(*args, "prune").stdout == (
        f"removed 1 expired cache file from directory {directory}\n"
    )


def test_config_says_what_happens_when_the_generation_is_not_known(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As on an ops host without Flask-Caching: config does not print "generation 2.5"
    for a generation nothing named, and --write does not record that guess."""
    monkeypatch.setattr("cachectl.config.generations._installed_flask_caching", lambda: None)
    monkeypatch.delenv("CACHECTL_COMPAT", raising=False)
    args = ["--url", "redis://127.0.0.1:1/0"]
    first = run(*args, "config").stdout.splitlines()[0]
    assert first.startswith("cache default; Flask-Caching generation not known (no --compat")
    assert "generation 2.5" not in first
    assert "exits 2 until --compat 2.5, --compat legacy or compat in cachectl.toml" in first
    assert json.loads(run(*args, "--json", "config").stdout)["generation"] is None

    written = run(*args, "config", "--write", str(tmp_path / "out.toml"))
    assert written.exit_code == 2 and not (tmp_path / "out.toml").exists()
    assert "pass --compat 2.5, --compat legacy (1.9-2.4) or the app's release" in written.stderr

    named = run(*args, "--compat", "legacy", "config").stdout.splitlines()[0]
    assert named == "cache default; Flask-Caching generation legacy (--compat)"


def test_compat_help_says_it_is_never_guessed() -> None:
    text = " ".join(run("--help").stdout.split())
    assert "else 2.5" not in text
    assert "Never guessed: with none of these, what differs between generations exits 2" in text
