"""The command line's renamed options, its start-up cost, and the layering it rests on."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import RedisTarget, run

PACKAGE = Path(__file__).resolve().parent.parent / "cachectl"


def test_set_ttl_is_the_entry_lifetime_and_timeout_its_old_name(
    redis_target: RedisTarget,
) -> None:
    target = ["--url", redis_target.url, "--key-prefix", "app_"]
    assert run(*target, "set", "k", "v", "--ttl", "40").exit_code == 0
    assert 30 < redis_target.client.ttl("app_k") <= 40
    both = run(*target, "set", "k", "v", "--ttl", "40", "--timeout", "50")
    assert both.exit_code == 2 and "--timeout is the old name of --ttl" in both.stderr
    assert "--timeout" not in run("set", "--help").stdout  # hidden, still accepted


def test_delete_view_prefix_has_its_own_name(redis_target: RedisTarget) -> None:
    target = ["--url", redis_target.url, "--key-prefix", "app_", "--json"]
    for spelling in ("--view-prefix", "--key-prefix"):
        result = run(*target, "delete-view", "/feed", spelling, "feeds/%s", "--dry-run")
        assert json.loads(result.stdout)["deleted"] == ["feeds//feed"], result.stderr


HEAVY = ("cachelib", "redis", "rich", "flask", "jinja2", "importlib.metadata", "traceback")


@pytest.mark.parametrize(
    "args",
    [["--help"], ["completion", "bash"], ["--compat", "2.5", "--config", "c.toml", "config"]],
)
def test_light_commands_load_no_heavy_module(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "c.toml").write_text('CACHE_TYPE = "RedisCache"\n')
    probe = (
        "import sys\nfrom cachectl.cli import cli\n"
        f"try:\n    cli({args!r}, prog_name='cachectl')\nexcept SystemExit:\n    pass\n"
        f"print('LOADED', [m for m in {HEAVY!r} if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert done.stdout.splitlines()[-1] == "LOADED []", done.stdout


def test_help_resolves_no_configuration(tmp_path: Path) -> None:
    """``--help`` lists the commands without loading the settings, the config readers or
    key derivation (start-up: bench/startup_bench.py)."""
    probe = (
        "import sys\nfrom cachectl.cli import cli\n"
        "try:\n    cli(['--help'], prog_name='cachectl')\nexcept SystemExit:\n    pass\n"
        "names = ('cachectl.config.settings', 'cachectl.config.resolve', "
        "'cachectl.config.sources', 'cachectl.keys', 'cachectl.runtime.secrets', "
        "'cachectl.config.export')\n"
        "print('LOADED', [m for m in names if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert done.stdout.splitlines()[-1] == "LOADED []", done.stdout


def test_every_command_is_found_by_its_module() -> None:
    """The group imports a command's module only when the command runs: a command
    missing from COMMAND_MODULES would vanish from ``--help`` and from the shell."""
    import importlib
    import pkgutil

    from cachectl import cli as cli_package
    from cachectl.cli.command_index import COMMAND_MODULES
    from cachectl.cli.group import cli

    for module in pkgutil.iter_modules(cli_package.__path__):
        importlib.import_module(f"cachectl.cli.{module.name}")
    assert sorted(cli.commands) == sorted(COMMAND_MODULES)
    for name, module_name in COMMAND_MODULES.items():
        assert cli.commands[name].callback.__module__ == module_name, name


def test_a_redis_get_loads_only_what_it_needs(tmp_path: Path, redis_target: RedisTarget) -> None:
    """Start-up (bench/startup_bench.py): a get from Redis without CACHE_SERIALIZER loads
    neither cachelib nor other commands' modules nor a TOML parser."""
    redis_target.client.set("flask_cache_k", b"!\x80\x04K\x07.")
    args = ["--url", redis_target.url, "get", "k"]
    unwanted = (
        "cachelib",
        "rich",
        "tomllib",
        "tomli",
        "decimal",
        "cachectl.keys",
        "cachectl.cli.sweeps",
        "cachectl.cli.views",
        "cachectl.cli.memoized",
        "cachectl.cli.configuration",
        "cachectl.backends.statistics",
        "cachectl.runtime.audit",
        "cachectl.cli.batch_runner",
    )
    probe = (
        "import sys\nfrom cachectl.cli import cli\n"
        f"try:\n    cli({args!r}, prog_name='cachectl')\nexcept SystemExit as exc:\n"
        "    print('EXIT', exc.code)\n"
        f"print('LOADED', [m for m in {unwanted!r} if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert done.stdout.splitlines()[0] == "7", done.stdout
    assert done.stdout.splitlines()[-2:] == ["EXIT 0", "LOADED []"], done.stdout


def _sources(outside: str | None = None) -> dict[Path, str]:
    return {
        path: path.read_text()
        for path in PACKAGE.rglob("*.py")
        if outside is None or (PACKAGE / outside) not in path.parents
    }


def test_only_backends_know_backend_kinds_and_cachelib_internals() -> None:
    private = re.compile(
        r"\._(path|get_filename|update_count|write_client|read_client|client|client_context"
        r"|hash_method|threshold|mode|normalize_timeout)\b"
    )
    for path, text in _sources(outside="backends").items():
        assert ".kind ==" not in text, path
        for line in text.splitlines():
            assert not private.search(line.replace("self._", "self.")), (path, line)


def test_no_module_grows_past_500_lines() -> None:
    sizes = {path: len(text.splitlines()) for path, text in _sources().items()}
    assert max(sizes.values()) <= 500, max(sizes, key=lambda path: sizes[path])


def test_the_top_of_the_package_shows_its_layers() -> None:
    """docs/development.md: the top of the package holds the entry points and the two
    modules every layer shares (keys, errors); every other module is in the package of its
    job, so the tree reads as the layers do. The packages import nothing themselves, so
    reaching one module of a package pays for no other."""
    top = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(top) <= 8, top
    for package in ("app", "codec", "config", "operations", "release", "runtime"):
        body = ast.parse((PACKAGE / package / "__init__.py").read_text()).body
        assert len(body) == 1 and isinstance(body[0], ast.Expr), package  # a docstring alone
        assert isinstance(body[0].value, ast.Constant), package
