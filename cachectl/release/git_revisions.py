"""Read two revisions of the app's git checkout, through the ``git`` command itself.

``plan`` compares what a release changed; git already knows (renames included,
with ``-M``), so this module only asks it: which files changed between two
revisions, what a file held at a revision, which files a revision has. Nothing
here parses a diff or touches the working tree, and no app code runs.
"""

from __future__ import annotations

import os
import subprocess
from typing import NamedTuple

from cachectl.errors import UsageError


class FileChange(NamedTuple):
    """One line of ``git diff --name-status -M``: what happened to a file."""

    #: ``A``dded, ``M``odified, ``D``eleted, ``R``enamed, ``C``opied, ``T``ype changed.
    status: str
    #: The path at the older revision (None for a file the release added).
    old_path: str | None
    #: The path at the newer revision (None for a file the release deleted).
    new_path: str | None


def _git(cwd: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False)
    except FileNotFoundError:
        raise UsageError("plan reads the release with git, which is not installed here") from None


class Checkout:
    """A git checkout, known by its top-level directory; revisions are full hashes."""

    def __init__(self, top: str) -> None:
        self.top = top
        self._files: dict[str, frozenset[str]] = {}

    @classmethod
    def open(cls, cwd: str = ".") -> Checkout:
        """The checkout ``cwd`` is in; not being in one is a usage error (exit 2)."""
        done = _git(cwd, "rev-parse", "--show-toplevel")
        if done.returncode != 0:
            where = os.path.abspath(cwd)
            # git's own line tells a missing checkout from one owned by another user.
            said = done.stderr.decode(errors="replace").strip().splitlines()
            why = f" (git: {said[0].removeprefix('fatal: ')})" if said else ""
            raise UsageError(
                f"{where} is not in a git checkout{why}: run plan in the app's checkout"
            )
        return cls(done.stdout.decode().strip())

    def resolve(self, revision: str) -> str:
        """The commit ``revision`` names (a tag, branch, hash, ``HEAD~2``), or exit 2."""
        if not revision.strip() or revision.startswith("-"):
            raise UsageError(f"{revision!r} is not a revision")
        done = _git(self.top, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
        if done.returncode != 0:
            raise UsageError(f"unknown revision {revision!r} in {self.top}")
        return done.stdout.decode().strip()

    def changes(self, since: str, until: str) -> list[FileChange]:
        """What changed from ``since`` to ``until``, renames found by git (``-M``)."""
        # The operator's git settings must not change the listing (colour, diff drivers).
        done = _git(
            self.top,
            "diff",
            "--name-status",
            "-M",
            "-z",
            "--no-color",
            "--no-ext-diff",
            f"{since}..{until}",
        )
        if done.returncode != 0:
            raise UsageError(f"git diff failed: {done.stderr.decode(errors='replace').strip()}")
        fields = done.stdout.decode("utf-8", errors="surrogateescape").split("\0")
        changes, index = [], 0
        while index < len(fields) and fields[index]:
            status = fields[index][0]
            if status in "RC":
                old, new = fields[index + 1], fields[index + 2]
                changes.append(FileChange(status, old, new))
                index += 3
                continue
            path = fields[index + 1]
            changes.append(
                FileChange(status, None if status == "A" else path, None if status == "D" else path)
            )
            index += 2
        return changes

    def read_bytes(self, revision: str, path: str) -> bytes | None:
        """What ``path`` holds at ``revision`` (None where it is not there): Python
        source is decoded by its own coding line (``python_source.decode_source``)."""
        done = _git(self.top, "show", "--no-textconv", "--no-color", f"{revision}:{path}")
        return done.stdout if done.returncode == 0 else None

    def read(self, revision: str, path: str) -> str | None:
        """The UTF-8 text of ``path`` at ``revision`` (a template, as Jinja2 reads it);
        None where it is not there; UnicodeDecodeError where it is not UTF-8."""
        data = self.read_bytes(revision, path)
        return None if data is None else data.decode("utf-8")

    def files(self, revision: str) -> frozenset[str]:
        """Every file path at ``revision`` (read once per revision)."""
        if revision not in self._files:
            done = _git(self.top, "ls-tree", "-r", "-z", "--name-only", revision)
            names = done.stdout.decode("utf-8", errors="surrogateescape").split("\0")
            self._files[revision] = frozenset(name for name in names if name)
        return self._files[revision]

    def files_containing(
        self, revision: str, word: str, paths: tuple[str, ...] = ("*.py",), regex: bool = False
    ) -> list[str]:
        """The files at ``revision`` under ``paths`` (Python files by default) that hold
        ``word`` as a word, or with ``regex`` match that extended regular expression."""
        return self._grep(revision, ("-E", word) if regex else ("-w", "-F", word), paths)

    def files_naming(self, revision: str, words: list[str]) -> list[str]:
        """The Python files at ``revision`` that hold any of ``words`` as a word."""
        patterns = tuple(argument for word in words for argument in ("-e", word))
        return self._grep(revision, ("-w", "-F", *patterns), ("*.py",)) if words else []

    def _grep(self, revision: str, how: tuple[str, ...], paths: tuple[str, ...]) -> list[str]:
        done = _git(self.top, "grep", "--no-color", "-l", *how, revision, "--", *paths)
        lines = done.stdout.decode("utf-8", errors="surrogateescape").splitlines()
        prefix = f"{revision}:"
        return [line[len(prefix) :] if line.startswith(prefix) else line for line in lines]
