"""The record every invalidation returns, and the deletes they share."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cachectl.backends.base import CacheBackend, ProgressCallback, Tally, batched, partial_work


@dataclass
class Report:
    """What an invalidation did (or, with ``dry_run``, would do)."""

    action: str
    dry_run: bool
    #: Keys written, with the value written.
    written: dict[str, str] = field(default_factory=dict)
    #: Keys deleted (or that would be).
    deleted: list[str] = field(default_factory=list)
    #: How many of ``deleted`` existed (None when the server cannot tell, or with dry_run).
    removed: int | None = None
    #: Old entries removed by --purge / --all-queries.
    purged: int | None = None
    notes: list[str] = field(default_factory=list)
    #: For a new version: whether a version key was there to replace (when not,
    #: nothing can be cached under that name, and none is created).
    version_key_existed: bool | None = None
    #: Nothing at all is stored under the function's name (no version key): the name
    #: may be misspelled, which an unverified name turns into exit 1.
    nothing_matched: bool = False

    def document(self) -> dict[str, Any]:
        return {
            "ok": True,
            "action": self.action,
            "dry_run": self.dry_run,
            "written": self.written,
            "deleted": self.deleted,
            "removed": self.removed,
            "purged": self.purged,
            "notes": self.notes,
            "version_key_existed": self.version_key_existed,
            "nothing_matched": self.nothing_matched,
        }


def delete_keys(backend: CacheBackend, names: list[str], action: str, dry_run: bool) -> Report:
    """Delete exactly ``names`` (or, with ``dry_run``, only say so)."""
    report = Report(action, dry_run, deleted=names)
    if not dry_run:
        report.removed = backend.delete(names)
    return report


def remove_streamed(
    backend: CacheBackend,
    names: Iterator[str],
    dry_run: bool,
    on_progress: ProgressCallback | None,
) -> int:
    """Delete keys as a scan finds them (or count them, with ``dry_run``)."""
    if dry_run:
        tally = Tally(on_progress)
        with partial_work(tally, "found"):
            for batch in batched(names):
                tally.add(len(batch))
        return tally.count
    return backend.delete(names, on_progress) or 0
