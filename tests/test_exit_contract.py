"""What a deploy script relies on beyond the corpus: --debug changes no exit status, a
prompt interrupted exits 130, and names that do nothing are refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cachectl.runtime.output import Output
from tests.conftest import RedisTarget, run


def test_debug_keeps_the_exit_status_and_the_json_document() -> None:
    result = run("--debug", "--json", "--url", "redis://:S3CRETpw@127.0.0.1:1/0", "get", "k")
    assert result.exit_code == 3
    assert json.loads(result.stdout)["exit_code"] == 3
    assert "Traceback" in result.stderr  # --debug shows it...
    assert "S3CRETpw" not in result.stderr + result.stdout  # ...with the password masked


def test_an_interrupted_confirmation_exits_130_with_the_document(
    redis_target: RedisTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_target.client.set("app_k", b"1")
    # A terminal that answers with end of input, as Ctrl-D or a closed session does.
    monkeypatch.setattr(Output, "interactive", property(lambda self: True))
    result = run("--url", redis_target.url, "--key-prefix", "app_", "--json", "clear", input="")
    assert result.exit_code == 130
    assert json.loads(result.stdout) == {"ok": False, "error": "interrupted", "exit_code": 130}
    assert redis_target.client.get("app_k") == b"1"


def test_a_mistyped_function_in_a_module_that_imports_is_refused() -> None:
    result = run("--dir", ".", "delete-memoized", "json.dumpz")
    assert result.exit_code == 2
    assert "module json has no attribute 'dumpz' (did you mean " in result.stderr
    assert "dumps" in result.stderr


def test_arguments_must_fit_the_signature(redis_target: RedisTarget) -> None:
    target = ("--url", redis_target.url)
    for extra in (("1", "2", "3"), ("--kw", "nosuch=1"), ()):
        call = ("delete-memoized", "shop.f", "--signature", "(a, b=1)", *extra)
        if not extra:
            call = (*call, "--kw", "b=2")  # a is missing
        result = run(*target, *call)
        assert result.exit_code == 2, (extra, result.stderr)
        assert "the arguments do not fit shop.f" in result.stderr


def test_set_does_not_create_a_mistyped_directory(tmp_path: Path) -> None:
    typo = tmp_path / "cahce"
    refused = run("--dir", str(typo), "set", "k", "v")
    assert refused.exit_code == 2 and not typo.exists()
    created = run("--dir", str(typo), "set", "k", "v", "--create-dir")
    assert created.exit_code == 0 and typo.is_dir()
    assert run("--dir", str(typo), "get", "k").stdout == "v\n"


def test_flags_of_the_group_are_read_after_the_command(redis_target: RedisTarget) -> None:
    redis_target.client.set("app_k", b"!" + __import__("pickle").dumps("v"))
    result = run("--url", redis_target.url, "--key-prefix", "app_", "get", "--json", "k")
    assert json.loads(result.stdout)["results"][0]["value"] == "v"
    key_named_like_a_flag = run("--url", redis_target.url, "get", "--", "--json")
    assert key_named_like_a_flag.exit_code == 1  # a key, not found
