"""Template fragments: the key of a ``{% cache %}`` block, and the blocks of templates."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from cachectl import keys
from cachectl.app.templates import FragmentBlock, app_template_directories, find_fragments
from cachectl.backends.base import CacheBackend
from cachectl.errors import UsageError
from cachectl.operations.entries import checked_key
from cachectl.operations.reports import delete_keys


@dataclass
class FragmentKey:
    key: str
    #: Where the key lives: with the backend's prefix, or the file (FileSystemCache).
    stored_as: str
    #: With a delete: how many keys went (None when the server cannot tell).
    removed: int | None = None
    deleted: bool = False
    #: A delete asked for with --dry-run: ``deleted`` says it would go, nothing was sent.
    dry_run: bool = False

    def document(self) -> dict[str, Any]:
        document = {
            "ok": True,
            "key": self.key,
            "stored_as": self.stored_as,
            "removed": self.removed,
        }
        if self.dry_run:
            document["dry_run"] = True
        return document


def fragment_key(
    backend: CacheBackend,
    name: str,
    vary_on: list[str],
    delete: bool = False,
    dry_run: bool = False,
) -> FragmentKey:
    """The key ``make_template_fragment_key(name, vary_on)`` gives; deleted if asked
    (with ``dry_run``, only marked as one that would be)."""
    key = checked_fragment_key(name, vary_on)
    backend.check_key(key)
    found = FragmentKey(key, backend.storage_name(key), dry_run=dry_run)
    if delete:
        found.removed = delete_keys(backend, [key], "delete-fragment", dry_run=dry_run).removed
        found.deleted = True
    return found


def checked_fragment_key(name: str, vary_on: list[str]) -> str:
    """The fragment's key, refused when no cache client could send it: checked before
    any connection (and before the first command of a batch runs)."""
    return checked_key(keys.fragment_key(name, vary_on))


def template_directories(given: list[str], app: Any = None, cwd: str = ".") -> list[str]:
    """The directories to search: those given, else the app's template folders,
    else ./templates."""
    if given:
        return [os.path.abspath(directory) for directory in given]
    if app is not None:
        return app_template_directories(app)
    local = os.path.join(cwd, "templates")
    if os.path.isdir(local):
        return [os.path.abspath(local)]
    raise UsageError("give the template directories, or --app to use the app's")


@dataclass
class FragmentListing:
    directories: list[str]
    blocks: list[FragmentBlock]
    #: Templates Jinja2 could not parse, with the reason.
    unreadable: list[str] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        return {"ok": True, "fragments": [b.document() for b in self.blocks]}


def list_fragments(directories: list[str], app: Any = None) -> FragmentListing:
    """Every ``{% cache %}`` block in the templates, parsed with Jinja2 itself."""
    blocks, unreadable = find_fragments(directories, app)
    return FragmentListing(directories, blocks, unreadable)
