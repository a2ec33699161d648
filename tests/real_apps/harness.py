"""What the real-app tests share: the app's environment, its driver, keyspace snapshots.

The proof of an invalidation: fill the cache through the app's own code, snapshot the
database (DUMP of every key, with its TTL), run the app's own invalidation and take the
difference; restore the snapshot exactly, run the equivalent cachectl command (with
``--app``, then config-only from an ops host's cachectl) and take the difference again.
The two must have the same shape: the same keys deleted, the same keys written, the same
values written, but for the memoized-version keys Flask-Caching fills with a fresh random
value (for those, only which keys were written is compared).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import CONSOLE_SCRIPT

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
#: Flask-Caching's memoized-version keys (``<prefix><function>_memver``, and the
#: per-argument ones of 1.x-2.x); their value is random on every version bump.
VERSION_KEY = re.compile(rb"_memver(_|$)")


def app_environment(name: str) -> Path:
    """The app's environment built by scripts/real_apps.sh; a missing one fails the lane."""
    venv = REPO / f".venv-realapp-{name}"
    if not (venv / ".pins-sha256").exists():
        pytest.fail(f"{venv.name} is not built: run `bash scripts/real_apps.sh` first")
    return venv


def clean_environment(**extra: str) -> dict[str, str]:
    """The caller's environment without cachectl's and Flask's own variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CACHECTL_", "FLASK_"))}
    env.pop("PYTHONPATH", None)
    env.update(extra)
    return env


class AppDriver:
    """The app's driver script, running under the app's Python (see driver_protocol)."""

    def __init__(self, venv: Path, script: Path, cwd: Path, env: dict[str, str]) -> None:
        # Lives as long as the driver: close() closes it.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self.process = subprocess.Popen(
            [str(venv / "bin" / "python"), str(script)],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self._read()  # "ready": the app has started

    def _read(self) -> Any:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"the app's driver ended: {self.stderr()[-4000:]}")
        reply = json.loads(line)
        if not reply["ok"]:
            raise AssertionError(f"the app's driver failed:\n{reply['error']}")
        return reply["result"]

    def call(self, action: str, *args: Any) -> Any:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"do": action, "args": list(args)}) + "\n")
        self.process.stdin.flush()
        return self._read()

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.close()


Snapshot = dict[bytes, tuple[bytes, int]]


def snapshot(client: redis.Redis) -> Snapshot:
    """Every key of the database: its DUMP and its remaining time to live (0: none)."""
    taken: Snapshot = {}
    for key in client.scan_iter(count=1000):
        dumped = client.dump(key)
        if dumped is not None:
            taken[key] = (dumped, max(client.pttl(key), 0))
    return taken


def restore(client: redis.Redis, taken: Snapshot) -> None:
    client.flushdb()
    for key, (dumped, ttl) in taken.items():
        client.restore(key, ttl, dumped)


@dataclass(frozen=True)
class KeyspaceChange:
    deleted: frozenset[bytes]
    written: frozenset[bytes]
    #: The new DUMP of each written key that is not a memoized-version key.
    written_values: tuple[tuple[bytes, bytes], ...]

    def describe(self) -> str:
        return f"deleted {sorted(self.deleted)}, written {sorted(self.written)}"


def change(before: Snapshot, after: Snapshot) -> KeyspaceChange:
    written = {key for key, entry in after.items() if before.get(key, (None,))[0] != entry[0]}
    return KeyspaceChange(
        deleted=frozenset(set(before) - set(after)),
        written=frozenset(written),
        written_values=tuple(
            sorted((key, after[key][0]) for key in written if not VERSION_KEY.search(key))
        ),
    )


def run_app_cachectl(
    venv: Path, cwd: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    """The cachectl installed in the app's environment, as its operator runs it."""
    return subprocess.run(
        [str(venv / "bin" / "cachectl"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_ops_cachectl(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """cachectl on an ops host (the project's .venv): no app installed, config only."""
    return subprocess.run(
        [str(CONSOLE_SCRIPT), *args],
        cwd=cwd,
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def without_timestamps(stderr: str) -> list[str]:
    """Log lines with their leading timestamp cut, for comparing two start-ups."""
    return [
        re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}:", "", line) for line in stderr.splitlines()
    ]


def assert_same_change(
    expected: KeyspaceChange, got: KeyspaceChange, done: subprocess.CompletedProcess[str] | None
) -> None:
    context = f"\ncachectl said: {done.stdout}{done.stderr}" if done is not None else ""
    assert got.deleted == expected.deleted, f"{got.describe()} != {expected.describe()}{context}"
    assert got.written == expected.written, f"{got.describe()} != {expected.describe()}{context}"
    assert got.written_values == expected.written_values, context


def values(taken: Snapshot) -> dict[bytes, bytes]:
    """The keys and their values, without the TTLs that tick down between snapshots."""
    return {key: dumped for key, (dumped, _) in taken.items()}
