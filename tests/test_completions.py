"""The shell completion scripts in completions/ stay in step with the CLI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import run, run_console

COMPLETIONS = Path(__file__).resolve().parent.parent / "completions"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_committed_script_is_what_the_cli_generates(shell: str) -> None:
    generated = run("completion", shell)
    assert generated.exit_code == 0
    committed = (COMPLETIONS / f"cachectl.{shell}").read_text()
    assert committed == generated.stdout, (
        f"completions/cachectl.{shell} is stale: regenerate it with "
        f"'cachectl completion {shell} > completions/cachectl.{shell}'"
    )


def test_bash_completion_offers_commands_and_options() -> None:
    env = {**os.environ, "_CACHECTL_COMPLETE": "bash_complete", "COMP_CWORD": "1"}
    commands = run_console(env={**env, "COMP_WORDS": "cachectl cl"})
    assert commands.stdout.decode().split() == ["plain,clear"]

    options = run_console(env={**env, "COMP_WORDS": "cachectl clear --", "COMP_CWORD": "2"})
    offered = options.stdout.decode()
    assert "--dry-run" in offered and "--yes" in offered
