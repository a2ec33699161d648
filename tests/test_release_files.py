"""The files a release is cut from agree with each other: one version, named by the
changelog's latest release, and the tree the wheel installs under share/ is the committed
completions."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

import cachectl
from tests.conftest import run

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the Python 3.9 and 3.10 lanes
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
RELEASE_HEADING = re.compile(r"^## \[(?P<version>[^\]]+)\](?: - (?P<date>.*))?$", re.MULTILINE)


def changelog_headings() -> list[tuple[str, str | None]]:
    """The (version, date) of each `## [...]` heading of CHANGELOG.md, newest first."""
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    return [(match["version"], match["date"]) for match in RELEASE_HEADING.finditer(text)]


def test_the_changelog_names_the_package_version_as_its_latest_release() -> None:
    headings = changelog_headings()
    assert headings, "CHANGELOG.md has no '## [...]' headings"
    assert headings[0] == ("Unreleased", None), "the first heading must be '## [Unreleased]'"
    released = headings[1:]
    assert released, "CHANGELOG.md has no released version after Unreleased"
    latest_version = released[0][0]
    assert latest_version == cachectl.__version__, (
        f"CHANGELOG.md's latest release is {latest_version}, the package is "
        f"{cachectl.__version__}: add a '## [{cachectl.__version__}] - YYYY-MM-DD' entry"
    )
    for version, date in released:
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"not a release version: {version}"
        assert date and re.fullmatch(r"\d{4}-\d{2}-\d{2}", date), f"{version}: date {date!r}"


def test_the_version_is_written_in_one_place() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"], "pyproject.toml must not repeat the version"
    assert "version" in project["project"]["dynamic"]
    dynamic = project["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "cachectl.__version__"}
    assert run("--version").stdout == f"cachectl, version {cachectl.__version__}\n"


def test_the_license_is_bsd_3_clause_and_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == "BSD-3-Clause"
    assert project["license-files"] == ["LICENSE"]
    license_text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert license_text.startswith("BSD 3-Clause License\n")
    assert "Copyright (c) 2026, the cachectl authors" in license_text
    assert "Neither the name of the copyright holder" in license_text


@pytest.mark.parametrize(
    ("installed", "committed"),
    [
        ("share/bash-completion/completions/cachectl", "completions/cachectl.bash"),
        ("share/zsh/site-functions/_cachectl", "completions/cachectl.zsh"),
        ("share/fish/vendor_completions.d/cachectl.fish", "completions/cachectl.fish"),
    ],
)
def test_the_installed_completion_is_the_committed_one(installed: str, committed: str) -> None:
    """share/ holds links, so a regenerated completions/ script ships as it is; a link that
    became a copy (or a checkout without symbolic links) would ship a stale or a broken file."""
    link = ROOT / installed
    assert link.is_symlink(), f"{installed} must be a link to {committed}"
    assert link.resolve() == (ROOT / committed).resolve()
    data_files = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "setuptools"
    ]["data-files"]
    assert data_files[str(Path(installed).parent)] == [installed]
