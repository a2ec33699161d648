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
    """share/ holds links in the repository, so a regenerated completions/ script ships as it
    is; a link that became a copy there (or a checkout without symbolic links) would ship a
    stale or a broken file. An unpacked sdist holds copies (a tarball made by setuptools
    follows links): there each must be the completion's bytes."""
    link = ROOT / installed
    if (ROOT / ".git").exists():
        assert link.is_symlink(), f"{installed} must be a link to {committed}"
        assert link.resolve() == (ROOT / committed).resolve()
    assert link.read_bytes() == (ROOT / committed).read_bytes()
    data_files = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "setuptools"
    ]["data-files"]
    assert data_files[str(Path(installed).parent)] == [installed]


# --- the release workflow -----------------------------------------------------------------

WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"


def _workflow() -> dict:
    yaml = pytest.importorskip("yaml", reason="PyYAML is in the test dependency group")
    document = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as True.
    document["on"] = document.pop(True, document.get("on"))
    return document


def _runs(job: dict) -> str:
    return "\n".join(step["run"] for step in job["steps"] if "run" in step)


def _uses(job: dict) -> list[str]:
    return [step["uses"].split("@")[0] for step in job["steps"] if "uses" in step]


def test_a_version_tag_builds_once_and_publishes_what_was_checked() -> None:
    workflow = _workflow()
    assert workflow["on"] == {"push": {"tags": ["v*"]}}
    assert workflow["permissions"] == {"contents": "read"}
    build, publish = workflow["jobs"]["build"], workflow["jobs"]["publish"]
    assert "python -m build" in _runs(build)
    assert "twine check --strict dist/*" in _runs(build)
    assert "actions/upload-artifact" in _uses(build)
    # The publish job builds nothing: it uploads the build job's artifact.
    assert publish["needs"] == "build"
    assert _runs(publish) == ""
    assert _uses(publish) == ["actions/download-artifact", "pypa/gh-action-pypi-publish"]


def test_publishing_is_trusted_publishing_with_no_stored_token() -> None:
    workflow = _workflow()
    publish = workflow["jobs"]["publish"]
    assert publish["permissions"] == {"id-token": "write"}
    assert publish["environment"]["name"] == "pypi"
    assert "secrets." not in WORKFLOW.read_text(encoding="utf-8")
    assert "id-token" not in workflow["jobs"]["build"].get("permissions", {})


def test_the_workflows_version_check_reads_the_package_version() -> None:
    """The step that refuses a tag naming another version reads __version__ as written."""
    import subprocess

    step = _runs(_workflow()["jobs"]["build"])
    (program,) = re.findall(r"python -c '([^']+)'", step)
    printed = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert printed.stdout.strip() == cachectl.__version__
