"""``restore``: entries of a backup file (``--backup``) put back into the cache.

The file must come from the same backend family and the same key prefix as the cache it
is restored into (any server of that family: ``--url``); that is checked from the file's
cache records before anything is written. Each chunk's entries go back with the lifetime
they had left minus the time since; a key that exists now stays unless ``replace``; a
damaged chunk is reported and skipped, and the rest restored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cachectl.backends.base import Tally, partial_work
from cachectl.backup.file_format import DamagedRecord
from cachectl.backup.reader import BackupContents, BackupFile, RestoreCounts, prefetched
from cachectl.errors import UsageError

if TYPE_CHECKING:
    from cachectl.backends import CacheBackend
    from cachectl.backends.base import ProgressCallback
    from cachectl.backup.file_format import Entry


@dataclass
class RestoreRun:
    path: str
    dry_run: bool
    replace: bool
    counts: RestoreCounts = field(default_factory=RestoreCounts)
    #: Entries left out by ``--only``.
    not_matching: int = 0
    #: Entries of caches in the file other than this one (``--cache all`` runs).
    other_caches: int = 0
    contents: BackupContents | None = None

    @property
    def incomplete(self) -> bool:
        """Entries the file held that were not restored for a reason to act on."""
        damaged = self.contents is not None and bool(self.contents.damaged)
        return damaged or self.counts.failed > 0

    def document(self) -> dict[str, Any]:
        contents = self.contents
        return {
            "ok": not self.incomplete,
            "file": self.path,
            "dry_run": self.dry_run,
            "replace": self.replace,
            **self.counts.document(),
            "not_matching": self.not_matching,
            "other_caches": self.other_caches,
            "damaged": list(contents.damaged) if contents is not None else [],
            "complete_file": contents.complete if contents is not None else False,
        }


def describe_cache(cache: dict[str, Any]) -> str:
    return f"{cache.get('family')} entries under the prefix {cache.get('prefix', '')!r}"


def matching_caches(contents: BackupContents, backend: CacheBackend) -> set[int]:
    """The caches of the file this backend can take; refuses when there is none."""
    if not contents.caches:
        raise UsageError(f"{contents.path}: it names no cache (cut short before its first entry?)")
    family, prefix = backend.backup_family, backend.key_prefix
    matching = {
        cache_id
        for cache_id, cache in contents.caches.items()
        if cache.get("family") == family and cache.get("prefix", "") == prefix
    }
    if len(matching) > 1:
        # A file of several caches alike (--cache all over two directories with no
        # prefix, two databases): the one on this server, else which is ambiguous.
        server = backend.backup_section().get("server")
        here = {i for i in matching if contents.caches[i].get("server") == server}
        if len(here) != 1:
            servers = ", ".join(sorted(str(contents.caches[i].get("server")) for i in matching))
            raise UsageError(
                f"{contents.path} holds {len(matching)} caches of {family} entries under the "
                f"prefix {prefix!r} ({servers}); restore into one of them (--url, --dir, "
                "--cache), so each goes back where it came from"
            )
        matching = here
    if not matching:
        first = next(iter(contents.caches.values()))
        raise UsageError(
            f"{contents.path} holds {describe_cache(first)}; this cache is {family} under the "
            f"prefix {prefix!r}: nothing restored (--key-prefix or --cache picks another cache)"
        )
    return matching


def _selected(entries: list[Entry], only: Any, prefix: bytes, run: RestoreRun) -> list[Entry]:
    if only is None:
        return entries
    kept = [e for e in entries if e.name.startswith(prefix) and only.matches(e.name[len(prefix) :])]
    run.not_matching += len(entries) - len(kept)
    return kept


def restore_file(
    backend: CacheBackend,
    path: str,
    *,
    replace: bool,
    dry_run: bool,
    only: str | None,
    on_progress: ProgressCallback | None = None,
) -> RestoreRun:
    """Put the entries of the backup at ``path`` back into ``backend``'s cache."""
    from cachectl.backends.exclusions import GlobError, parse_glob

    try:
        glob = parse_glob(only, "--only") if only is not None else None
    except GlobError as exc:  # said in one line, exit 2, before the file is opened
        raise UsageError(str(exc)) from None
    run = RestoreRun(path, dry_run, replace)
    tally = Tally(on_progress)
    with BackupFile(path) as backup:
        skimmed = backup.skim()
        matching = matching_caches(skimmed, backend)
        if glob is not None and backend.backup_family == "filesystem":
            raise UsageError("--only: FileSystemCache files do not hold their keys' names")
        prefix = backend.key_prefix.encode("utf-8", "surrogateescape")
        run.contents = backup.contents
        with partial_work(tally, "processed"):
            if glob is None and backend.restores_laid_out:
                _restore_laid_out(backend, backup, matching, run, tally)
                return run
            for chunk in backup.chunks():
                if chunk.cache_id not in matching:
                    run.other_caches += len(chunk.entries)
                    continue
                entries = _selected(chunk.entries, glob, prefix, run)
                if entries:
                    run.counts.add(backend.restore(entries, chunk.taken_ms, replace, dry_run))
                tally.add(len(chunk.entries))
    return run


def _restore_laid_out(
    backend: CacheBackend, backup: BackupFile, matching: set[int], run: RestoreRun, tally: Tally
) -> None:
    """Every chunk handed over as the file lays it out (no ``--only``): the file is read
    and decompressed in a thread of its own while the server restores the chunk before.
    A chunk whose entries do not parse is reported as damaged, as the other path's
    reader reports it, and the rest restored."""
    try:
        for chunk in prefetched(backup.laid_out_chunks(), depth=2):
            if chunk.cache_id not in matching:
                run.other_caches += chunk.count
                continue
            try:
                run.counts.add(
                    backend.restore_laid_out(
                        chunk.count, chunk.laid_out, chunk.taken_ms, run.replace, run.dry_run
                    )
                )
            except DamagedRecord as exc:  # checksums that fit entries that do not parse
                backup.contents.damaged.append(f"ENTS record: {exc}")
            tally.add(chunk.count)
    finally:
        run.counts.add(backend.finish_restore())


def describe_file(path: str) -> BackupContents:
    """What ``restore --list`` shows: head, caches, counts, without connecting."""
    with BackupFile(path) as backup:
        backup.skim()
        for _ in backup.chunks():
            pass
        return backup.contents
