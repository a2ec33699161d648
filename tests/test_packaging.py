"""The release as PyPI and an installer see it: the sdist and wheel a clone builds.

Both are built with ``python -m build`` (the wheel from the sdist, so a file the sdist
forgets is missing from the wheel too) from a copy of the checkout's files, checked with
``twine check --strict`` as the upload would be, and the wheel's contents are checked
against the source tree. Then the wheel is installed into a new environment, where the
``cachectl`` command must run and report the package's version, and the completions must
land where the shells look. The build fetches setuptools and the install fetches
cachectl's dependencies from the package index (or a cache), so this is marked
``packaging``: its own step of ``scripts/test.sh``, not the main lane.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import cachectl
from tests.test_demo import _copy_checkout

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parent.parent
VERSION = cachectl.__version__
DIST_INFO = f"flask_cachectl-{VERSION}.dist-info"
DATA = f"flask_cachectl-{VERSION}.data/data"
#: Where each shell loads a completion from, under an environment's prefix, and its source.
COMPLETIONS = {
    "share/bash-completion/completions/cachectl": "completions/cachectl.bash",
    "share/zsh/site-functions/_cachectl": "completions/cachectl.zsh",
    "share/fish/vendor_completions.d/cachectl.fish": "completions/cachectl.fish",
}
#: Where man finds the page under an environment's prefix, and the committed page.
MAN_PAGE = {"share/man/man1/cachectl.1": "share/man/man1/cachectl.1"}
#: Builds and installs fetch from the package index; a cold cache takes longer than this.
STEP_TIMEOUT = 600


def _uv() -> str | None:
    beside = Path(sys.executable).with_name("uv")
    return str(beside) if beside.exists() else shutil.which("uv")


def _run(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a step with no variable that would point it back at the checkout's environment."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"}
    }
    done = subprocess.run(
        [str(arg) for arg in argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environment,
        timeout=STEP_TIMEOUT,
    )
    assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and wheel a clone of this checkout builds, in a directory of their own."""
    clone = tmp_path_factory.mktemp("clone")
    _copy_checkout(clone)
    out = tmp_path_factory.mktemp("dist")
    installer = ["--installer", "uv"] if _uv() else []
    _run(sys.executable, "-m", "build", *installer, "--outdir", out, clone)
    return out


@pytest.fixture(scope="module")
def wheel_names(dist: Path) -> set[str]:
    with zipfile.ZipFile(_only(dist, "*.whl")) as wheel:
        return set(wheel.namelist())


def _only(directory: Path, pattern: str) -> Path:
    (found,) = directory.glob(pattern)
    return found


def _source_modules() -> Iterator[str]:
    """The package's modules as the checkout has them (bytecode caches left out)."""
    for path in sorted((ROOT / "cachectl").rglob("*.py")):
        if "__pycache__" not in path.parts:
            yield path.relative_to(ROOT).as_posix()


def test_twine_accepts_the_sdist_and_the_wheel(dist: Path) -> None:
    built = sorted(dist.iterdir())
    assert [path.name for path in built] == [
        f"flask_cachectl-{VERSION}-py3-none-any.whl",
        f"flask_cachectl-{VERSION}.tar.gz",
    ]
    _run(sys.executable, "-m", "twine", "check", "--strict", *built)


def test_the_wheel_holds_the_package_and_nothing_of_the_checkout_besides(
    wheel_names: set[str],
) -> None:
    package = {name for name in wheel_names if name.startswith("cachectl/")}
    assert package == {*_source_modules(), "cachectl/py.typed"}
    top_level = {name.split("/", 1)[0] for name in wheel_names}
    assert top_level == {"cachectl", DIST_INFO, DATA.split("/", 1)[0]}
    assert not [name for name in wheel_names if "__pycache__" in name or name.endswith(".pyc")]


def test_the_wheel_carries_the_license_and_its_metadata_names_it(dist: Path) -> None:
    with zipfile.ZipFile(_only(dist, "*.whl")) as wheel:
        shipped = wheel.read(f"{DIST_INFO}/licenses/LICENSE")
        metadata = wheel.read(f"{DIST_INFO}/METADATA").decode()
    assert shipped == (ROOT / "LICENSE").read_bytes()
    assert f"\nVersion: {VERSION}\n" in metadata
    assert "\nLicense-Expression: BSD-3-Clause\n" in metadata
    assert "\nLicense-File: LICENSE\n" in metadata


def test_the_sdist_carries_the_license(dist: Path) -> None:
    with tarfile.open(_only(dist, "*.tar.gz")) as sdist:
        member = sdist.extractfile(f"flask_cachectl-{VERSION}/LICENSE")
        assert member is not None
        assert member.read() == (ROOT / "LICENSE").read_bytes()


def test_the_wheel_installs_the_completions_under_the_names_shells_load(dist: Path) -> None:
    with zipfile.ZipFile(_only(dist, "*.whl")) as wheel:
        for installed, committed in COMPLETIONS.items():
            assert wheel.read(f"{DATA}/{installed}") == (ROOT / committed).read_bytes()


def test_the_wheel_installs_the_man_page_where_man_looks(dist: Path) -> None:
    with zipfile.ZipFile(_only(dist, "*.whl")) as wheel:
        for installed, committed in MAN_PAGE.items():
            assert wheel.read(f"{DATA}/{installed}") == (ROOT / committed).read_bytes()


def test_the_sdist_holds_every_tracked_file(dist: Path) -> None:
    """What the sdist's own tests read (completions, docs, changelog, workflow) is in it."""
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    with tarfile.open(_only(dist, "*.tar.gz")) as sdist:
        top = f"flask_cachectl-{VERSION}/"
        held = {name[len(top) :] for name in sdist.getnames() if name.startswith(top)}
    missing = sorted(set(tracked) - held - {".gitignore"})
    assert not missing, f"tracked files the sdist leaves out: {missing}"
    assert not [name for name in held if "__pycache__" in name or name.endswith(".pyc")]


def test_the_sdists_own_tests_pass_from_it(dist: Path, tmp_path: Path) -> None:
    """Unpacked, the sdist runs the tests that read the tree's files, with its own code."""
    with tarfile.open(_only(dist, "*.tar.gz")) as sdist:
        sdist.extractall(tmp_path, filter="data")
    unpacked = tmp_path / f"flask_cachectl-{VERSION}"
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("CACHECTL_")
    }
    environment["PYTHONPATH"] = str(unpacked)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_completions.py", "tests/test_release_files.py", "tests/test_docs.py",
         "tests/test_cli_layout.py", "tests/test_import_graph.py"],
        cwd=unpacked, capture_output=True, text=True, env=environment, timeout=STEP_TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout


def test_the_installed_wheel_runs_and_reports_its_version(dist: Path, tmp_path: Path) -> None:
    environment = tmp_path / "env"
    uv = _uv()
    if uv:
        _run(uv, "venv", "--quiet", "--python", sys.executable, environment)
        _run(
            uv,
            "pip",
            "install",
            "--quiet",
            "--python",
            environment / "bin" / "python",
            _only(dist, "*.whl"),
        )
    else:
        _run(sys.executable, "-m", "venv", environment)
        _run(
            environment / "bin" / "python", "-m", "pip", "install", "--quiet", _only(dist, "*.whl")
        )
    command = environment / "bin" / "cachectl"
    version = _run(command, "--version", cwd=tmp_path)
    assert version.stdout == f"cachectl, version {VERSION}\n"
    help_text = _run(command, "--help", cwd=tmp_path)
    assert "Usage: cachectl" in help_text.stdout
    # What an editor's type checker reads, and the files bash-completion, zsh and fish load.
    (typed,) = environment.glob("lib/python*/site-packages/cachectl/py.typed")
    assert typed.is_file()
    for installed, committed in COMPLETIONS.items():
        assert (environment / installed).read_bytes() == (ROOT / committed).read_bytes()
