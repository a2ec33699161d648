"""Documentation that cannot drift from the commands: the command reference and the man
page are generated from the Click commands (scripts/docs_reference.py) and must equal the
committed files; every option must have help and be named in docs/."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import click
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CACHECTL = Path(sys.executable).with_name("cachectl")


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "docs_reference", ROOT / "scripts" / "docs_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generator = _generator()


@pytest.mark.parametrize("path", sorted(generator.outputs()), ids=lambda path: path.name)
def test_the_committed_file_is_what_the_commands_generate(path: Path) -> None:
    committed = path.read_text(encoding="utf-8") if path.exists() else ""
    assert committed == generator.outputs()[path], (
        f"{path.relative_to(ROOT)} differs from the commands' help: "
        "run `python scripts/docs_reference.py` and commit the result"
    )


@pytest.mark.parametrize("command", [None, "clear", "delete-memoized", "batch"])
def test_the_reference_shows_what_the_installed_command_prints(command: str | None) -> None:
    """The generator's help is the console script's own at COLUMNS=100, not a lookalike."""
    args = [command, "--help"] if command else ["--help"]
    printed = subprocess.run(
        [str(CACHECTL), *args],
        env={**os.environ, "COLUMNS": str(generator.WIDTH)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"```text\n{printed}```" in (DOCS / "reference.md").read_text(encoding="utf-8")


def _options() -> list[tuple[str, click.Option]]:
    from cachectl.cli import cli

    found = [("cachectl", param) for param in cli.params if isinstance(param, click.Option)]
    for name, command in generator.commands():
        found += [
            (f"cachectl {name}", param)
            for param in command.params
            if isinstance(param, click.Option)
        ]
    return [(where, option) for where, option in found if not option.hidden]


OPTIONS = _options()


def test_every_command_and_option_is_found() -> None:
    """The parametrised checks below would pass on an empty list."""
    from cachectl.cli.command_index import COMMAND_MODULES

    assert {name for name, _ in generator.commands()} == set(COMMAND_MODULES)
    assert len(OPTIONS) > 60


@pytest.mark.parametrize(
    ("where", "option"), OPTIONS, ids=[f"{where} {option.opts[-1]}" for where, option in OPTIONS]
)
def test_every_option_has_help_and_is_named_in_the_docs(where: str, option: click.Option) -> None:
    """The reference counts: what --help shows of an option with help is documentation."""
    assert option.help and option.help.strip(), f"{where} {option.opts[-1]} has no help text"
    docs = "\n".join(page.read_text(encoding="utf-8") for page in sorted(DOCS.glob("*.md")))
    for name in _long_names(option):
        assert _names(docs, name), f"{where} {name} is named nowhere in docs/"


@pytest.mark.parametrize(
    ("where", "option"), OPTIONS, ids=[f"{where} {option.opts[-1]}" for where, option in OPTIONS]
)
def test_every_option_is_explained_in_a_guide(where: str, option: click.Option) -> None:
    """Beyond its help line, each option has its place in the prose of a guide (a page of
    docs/ other than the generated reference), where it is explained with its command."""
    guides = "\n".join(
        page.read_text(encoding="utf-8")
        for page in sorted(DOCS.glob("*.md"))
        if page.name != "reference.md"
    )
    for name in _long_names(option):
        assert _names(guides, name), f"{where} {name} is explained in no guide of docs/"


def _long_names(option: click.Option) -> list[str]:
    return [name for name in option.opts + option.secondary_opts if name.startswith("--")]


def _names(text: str, option_name: str) -> bool:
    """Whether text names the option as a whole word (--max is not --max-bytes)."""
    return re.search(rf"(?<![\w-]){re.escape(option_name)}(?![\w-])", text) is not None


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_the_man_page_renders_without_warnings() -> None:
    rendered = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-z", str(generator.MAN_PAGE)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert rendered.stderr == ""
    text = subprocess.run(
        ["groff", "-man", "-Tascii", "-P", "-cbou", str(generator.MAN_PAGE)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "COMMANDS", "EXIT STATUS"):
        assert re.search(rf"^{heading}$", text, re.MULTILINE), heading
    assert "cachectl delete-memoized" in text
    assert "141  standard output closed" in text


README = ROOT / "README.md"
#: A Markdown link or image: [text](target) or ![alt](target).
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def test_the_readme_is_short() -> None:
    """The README says what cachectl is and how to start; the reference lives in docs/."""
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 250


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def test_the_pages_are_found() -> None:
    assert len(_pages()) >= 10


def _without_code(text: str) -> str:
    """Markdown outside fenced and inline code, where a bracket is not a link."""
    text = re.sub(r"^```.*?^```$", "", text, flags=re.DOTALL | re.MULTILINE)
    return re.sub(r"`[^`\n]*`", "", text)


@pytest.mark.parametrize("page", _pages(), ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_relative_link_points_to_an_existing_file(page: Path) -> None:
    broken = []
    for target in LINK.findall(_without_code(page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL, or a heading of the same page
        path = target.split("#", 1)[0]
        if not (page.parent / path).exists():
            broken.append(target)
    assert broken == [], f"{page.relative_to(ROOT)} links to files that do not exist"
