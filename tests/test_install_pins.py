"""Installing cachectl into an application's pinned environment moves none of its pins.

For ``--app``, cachectl is installed into the app's own environment, next to whatever the
app pins. This builds such an environment, pinned as a real app on Flask 2.1, Flask-Caching
2.3, cachelib 0.9 and redis-py 4.5 pins it (its ``pip freeze``), installs cachectl with the
``app`` and ``memcached`` extras with pip as an operator would, and checks that ``pip
freeze`` lists every package of the app at the same version afterwards, that ``pip check``
finds nothing broken, and that cachectl then works there: ``--app`` sets a value that the
app's own ``cache`` reads back.

cachectl itself is installed with pip, from a wheel built beforehand (so that pip does not
fetch a build backend). uv, where it is installed beside the test's Python, builds that
wheel and lays the app's pins, only because it is much faster at it than pip; pip does
both when there is no uv. It downloads from the package index (or a cache), so it is
marked ``install``: the compatibility lane of ``scripts/test.sh`` runs it, the main lane
does not.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.install

ROOT = Path(__file__).resolve().parent.parent

#: ``pip freeze`` of an app on Flask 2.1 with Flask-Caching 2.3 and redis-py 4.5.
APP_PINS = [
    "Flask==2.1.3",
    "Werkzeug==2.2.3",
    "Jinja2==3.1.2",
    "MarkupSafe==2.1.2",
    "itsdangerous==2.1.2",
    "click==8.1.3",
    "Flask-Caching==2.3.1",
    "cachelib==0.9.0",
    "redis==4.5.5",
    "async-timeout==4.0.2",
]


READ_BACK = "from shop import app, cache\nwith app.app_context(): print(cache.get('greeting'))"


def _pip(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", "--no-input", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def _freeze(python: Path) -> dict[str, str]:
    """``pip freeze`` as {normalized name: version, or the file it was installed from}."""
    done = _pip(python, "freeze", "--all")
    assert done.returncode == 0, done.stderr
    versions = {}
    for line in done.stdout.splitlines():
        name, sep, version = line.partition("==")
        if not sep:  # installed from a file: "name @ file:///..."
            name, sep, version = line.partition(" @ ")
        if sep:
            versions[name.lower().replace("_", "-")] = version
    return versions


def _uv() -> str | None:
    beside = Path(sys.executable).with_name("uv")
    return str(beside) if beside.exists() else shutil.which("uv")


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{argv}: {done.stderr}"


def _wheel(into: Path, python: Path) -> Path:
    """cachectl built as the wheel an operator would install from the index."""
    uv = _uv()
    if uv:
        _run(uv, "build", "--quiet", "--wheel", "--out-dir", str(into), str(ROOT))
    else:
        _run(str(python), "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(into), str(ROOT))
    (wheel,) = into.glob("flask_cachectl-*.whl")
    return wheel


def test_installing_cachectl_keeps_every_pin_of_the_app(tmp_path: Path) -> None:
    venv.create(tmp_path / "env", with_pip=True)
    python = tmp_path / "env" / "bin" / "python"
    wheel = _wheel(tmp_path / "dist", python)
    uv = _uv()
    if uv:
        _run(uv, "pip", "install", "--quiet", "--python", str(python), *APP_PINS)
    else:
        pinned = _pip(python, "install", "--quiet", *APP_PINS)
        assert pinned.returncode == 0, pinned.stderr
    before = _freeze(python)
    for pin in APP_PINS:
        name, _, version = pin.partition("==")
        assert before[name.lower()] == version, (pin, before)

    installed = _pip(python, "install", "--quiet", f"{wheel}[app,memcached]")
    assert installed.returncode == 0, installed.stderr
    after = _freeze(python)
    moved = {name: (v, after.get(name)) for name, v in before.items() if after.get(name) != v}
    assert not moved, f"installing cachectl moved the app's pins: {moved}"
    assert "flask-cachectl" in after
    checked = _pip(python, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # And cachectl works there, as the app's cache sees it.
    (tmp_path / "shop.py").write_text(
        textwrap.dedent(
            f"""
            from flask import Flask
            from flask_caching import Cache

            app = Flask(__name__)
            cache = Cache(app, config={{
                "CACHE_TYPE": "FileSystemCache",
                "CACHE_DIR": {str(tmp_path / "cache")!r},
                "CACHE_KEY_PREFIX": "shop_",
            }})
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CACHECTL_", "FLASK_"))}
    cachectl = tmp_path / "env" / "bin" / "cachectl"
    for argv in (["set", "greeting", "hello"], ["get", "greeting"]):
        done = subprocess.run(
            [str(cachectl), "--app", "shop:app", *argv],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "hello"
    read = subprocess.run(
        [str(python), "-c", READ_BACK],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert read.returncode == 0, read.stderr
    assert read.stdout.strip() == "hello"
