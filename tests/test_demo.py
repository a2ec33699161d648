"""The README's first command, ``bash scripts/demo.sh``, as a new user runs it.

The demo runs in a copy of the checkout's files (what a fresh clone holds) with an
environment of its own: no virtual environment active, no Flask-Caching, no CACHECTL_* or
FLASK_* variables. It builds its own ``.venv`` there (pip's cache makes that a matter of
seconds), so it cannot pass on something the test command installed: it once failed at
its second step on a fresh clone because only the test command's ``.venv`` held the
Flask-Caching that told cachectl which generation the imagined app runs.

Like the packaging checks it builds an environment from the checkout's files, and it runs
beside them in the docs-and-packaging lane of scripts/test.sh (marked ``packaging``), not
in the main lane.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

REPOSITORY = Path(__file__).resolve().parent.parent
#: Building .venv and installing cachectl's dependencies from pip's cache takes ~10 s; the
#: first run on a machine downloads them.
DEMO_TIMEOUT = 600


def _copy_checkout(target: Path) -> None:
    """The files a clone would hold: tracked ones, and new ones not ignored (so a module
    added but not yet committed is there too); never .venv or caches."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPOSITORY,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = REPOSITORY / os.fsdecode(name)
        if not source.is_file():  # deleted in the working tree, not yet committed
            continue
        destination = target / os.fsdecode(name)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)


def _is_virtual_environment_bin(directory: str) -> bool:
    return (Path(directory).parent / "pyvenv.cfg").exists()


def _new_user_environment() -> dict[str, str]:
    """The caller's environment as a new user's shell would have it: no active virtual
    environment (the test's own .venv holds Flask-Caching), nothing pointing cachectl at
    a config or an app. HOME stays, so pip finds its cache."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")
        and not name.startswith(("CACHECTL_", "FLASK_"))
    }
    path = [
        entry
        for entry in env.get("PATH", os.defpath).split(os.pathsep)
        if entry and not _is_virtual_environment_bin(entry)
    ]
    if shutil.which("python3", path=os.pathsep.join(path)) is None:
        path.insert(0, str(Path(sys.base_prefix) / "bin"))  # the Python the .venv came from
    env["PATH"] = os.pathsep.join(path)
    return env


def _section(stdout: str, command: str) -> str:
    """What the demo printed after ``$ cachectl COMMAND`` up to the next step."""
    start = stdout.index(f"\n$ cachectl {command}\n") + len(f"\n$ cachectl {command}\n")
    end = stdout.find("\n$ cachectl ", start)
    return stdout[start : end if end != -1 else len(stdout)].strip("\n")


def test_the_demo_runs_as_the_readme_says_on_a_fresh_clone(tmp_path: Path) -> None:
    clone = tmp_path / "cachectl"
    _copy_checkout(clone)
    assert "bash scripts/demo.sh" in (clone / "README.md").read_text()
    try:
        done = subprocess.run(
            ["bash", "scripts/demo.sh"],
            cwd=clone,
            env=_new_user_environment(),
            capture_output=True,
            text=True,
            timeout=DEMO_TIMEOUT,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        # The environment was a clean one: the demo's .venv holds cachectl, not the
        # Flask-Caching that would tell it the generation without the demo's config.
        probe = "import importlib.util as u, sys; sys.exit(u.find_spec('flask_caching') is None)"
        assert subprocess.run([str(clone / ".venv/bin/python"), "-c", probe]).returncode == 1
    finally:
        shutil.rmtree(clone / ".venv", ignore_errors=True)

    out = done.stdout
    config = _section(out, "config").splitlines()
    assert re.fullmatch(
        r"cache default; Flask-Caching generation 2\.5 \(recorded in /\S+/cachectl\.toml\)",
        config[0],
    ), config[0]
    assert any(re.match(r"CACHE_TYPE\s+FileSystemCache\s+file ", line) for line in config)
    assert any(re.match(r"CACHE_DEFAULT_TIMEOUT\s+600\s+file ", line) for line in config)

    assert _section(out, "set greeting 'hello from cachectl'") == (
        "set greeting (str, expires in 600 s)"
    )
    assert _section(out, "set visits 41 --as int") == "set visits (int, expires in 600 s)"
    profile = """set profile '{"name": "alice", "roles": ["admin"]}' --as json --ttl 0"""
    assert _section(out, profile) == "set profile (dict, never expires)"
    assert _section(out, "get greeting visits profile").splitlines() == [
        "greeting: hello from cachectl",
        "visits: 41",
        "profile: {'name': 'alice', 'roles': ['admin']}",
    ]
    document = json.loads(_section(out, "--json get visits"))
    assert document["ok"] is True
    assert [(r["key"], r["found"], r["value"]) for r in document["results"]] == [
        ("visits", True, 41)
    ]
    assert _section(out, "delete greeting no-such-key") == "deleted 1 of 2 keys (1 did not exist)"
    assert re.fullmatch(
        r"would remove 2 cache files \(other files stay\) from directory /\S+/cache",
        _section(out, "clear --dry-run"),
    )
    assert re.fullmatch(
        r"removed 2 cache files \(other files stay\) from directory /\S+/cache",
        _section(out, "clear --yes"),
    )
    assert out.rstrip().endswith("$ cachectl get profile   # gone: exit code 1\n(exit code 1)")
    assert "not found: profile" in done.stderr
    assert "error:" not in done.stderr and "Traceback" not in done.stderr
