"""FileSystemCache entries kept before they go (``--backup``), and put back (``restore``).

An entry is its file: kept byte for byte (the expiry head included, so the bytes carry
their own absolute expiry), with the file's name in CACHE_DIR and, where the command
names it (``delete KEY``, ``set``, ``expire``), the key; ``clear`` and ``prune`` find
files by their names, which are hashes, so their entries have no key.

Files are read through ``safe_files`` (no link followed, one name only) and kept in
chunks of up to ``KEEP_FILES`` files or ``KEEP_BYTES`` bytes; a file is removed only once
its chunk is on disk (``Keeper.keep`` returns after ``fsync``), and only if it is still
the file that was read: one the app wrote anew meanwhile is a fresh entry, and stays.

``restore`` writes each file back under its own name, never under a name the cache
would not make (a plain hex name of the cache's hash length, never a path, never the
item count), never through a link: each file is written beside and renamed (or linked,
which never replaces) into place. A file whose own head says it has expired is skipped;
a live entry that exists now stays unless ``--replace``.
"""

from __future__ import annotations

import errno
import os
import tempfile
import time
from contextlib import suppress
from typing import TYPE_CHECKING

from cachectl.backends.filesystem_format import HEAD_SIZE, FileHead, read_head
from cachectl.backup.file_format import NO_EXPIRY, Entry
from cachectl.backup.reader import RestoreCounts
from cachectl.backup.writer import now_ms
from cachectl.errors import BackendError, UsageError
from cachectl.runtime.safe_files import (
    UnsafeFile,
    create_new,
    existing_regular,
    fsync_directory,
    open_regular,
    read_regular,
)

if TYPE_CHECKING:
    from cachectl.backends.filesystem import FileSystemBackend
    from cachectl.backup.writer import Keeper

#: A chunk of kept files is written once it holds this many files, or this many bytes.
KEEP_FILES = 1000
KEEP_BYTES = 4 * 1024 * 1024
#: The largest file a backup keeps: a chunk (up to ``KEEP_BYTES`` plus one file) must fit
#: in one backup record (``MAX_BODY``, 64 MiB), however badly its bytes compress.
KEEP_FILE_LIMIT = 56 * 1024 * 1024
#: Suffix of the temporary file a write goes through (cachelib and the app skip it).
IN_FLIGHT = ".__wz_cache"


def read_whole(path: str) -> tuple[bytes, os.stat_result] | None:
    """The bytes of a cache file and what it was when read; None when it is gone."""
    try:
        with os.fdopen(open_regular(path, single_link=True), "rb") as handle:
            return handle.read(), os.fstat(handle.fileno())
    except FileNotFoundError:
        return None


def entry_of(name: bytes, path: str, raw: bytes, taken_ms: int) -> Entry:
    """A cache file as a backup entry; its lifetime from its head (0 once expired).
    Refused (exit 2) for a file too large for a backup record: it is not removed."""
    if len(raw) > KEEP_FILE_LIMIT:
        raise UsageError(
            f"--backup: {path} holds {len(raw):,} bytes, more than a backup keeps in one "
            f"piece ({KEEP_FILE_LIMIT:,}); it was not removed or changed, nor anything after it"
        )
    head = read_head(raw[:HEAD_SIZE])
    ttl_ms = NO_EXPIRY
    if head is not None and head.expires != 0:
        ttl_ms = max(0, head.expires * 1000 - taken_ms)
    return Entry(name, raw, ttl_ms, 0, os.path.basename(path).encode("ascii"))


def _unchanged(path: str, read: os.stat_result) -> bool:
    """Whether ``path`` is still the file that was read (cachelib writes by renaming a
    new file into place, cachectl's in-place expiry patch changes the mtime)."""
    try:
        now = os.lstat(path)
    except FileNotFoundError:
        return False
    return (now.st_dev, now.st_ino, now.st_mtime_ns, now.st_size) == (
        read.st_dev,
        read.st_ino,
        read.st_mtime_ns,
        read.st_size,
    )


def _remove(path: str) -> int:
    try:
        os.remove(path)
    except FileNotFoundError:
        return 0  # expired and pruned by the app meanwhile
    return 1


class Remover:
    """Removes cache files; with ``--backup``, only once each is kept (in chunks).

    ``remove`` and ``flush`` return how many files went, so a caller's ``Tally`` counts
    exactly what is gone; a file read but not yet kept when a run stops is neither kept
    nor removed."""

    def __init__(self, backend: FileSystemBackend, sweeping: bool) -> None:
        self._backend = backend
        #: A sweep (clear, prune) leaves alone a name turned into a link meanwhile; a
        #: named key's file refuses it (the refusal is reported).
        self._sweeping = sweeping
        self.keeping = backend.backup is not None
        #: False: only keep (the files ``restore --replace`` is about to replace).
        self.removing = True
        self._keeper: Keeper | None = None
        self._entries: list[Entry] = []
        self._files: list[tuple[str, os.stat_result]] = []
        self._bytes = 0
        self._taken_ms = 0

    def remove(
        self, path: str, name: bytes = b"", read: tuple[bytes, os.stat_result] | None = None
    ) -> int:
        """Remove ``path`` (kept first with ``--backup``; ``read``: its bytes already read,
        then removed only if unchanged since); how many files went by now."""
        if not self.keeping:
            if read is not None and not _unchanged(path, read[1]):
                return 0  # written anew since it was read: a fresh entry
            return _remove(path)
        if read is None:
            try:
                read = read_whole(path)
            except UnsafeFile:
                if not self._sweeping:
                    raise
                return 0  # replaced by a link or a FIFO since the listing: not an entry
            if read is None:
                return 0
        if not self._entries:
            self._taken_ms = now_ms()
        raw, info = read
        self._entries.append(entry_of(name, path, raw, self._taken_ms))
        self._files.append((path, info))
        self._bytes += len(raw)
        if len(self._entries) >= KEEP_FILES or self._bytes >= KEEP_BYTES:
            return self.flush()
        return 0

    def flush(self) -> int:
        """Keep the files read so far (on disk when ``keep`` returns), then remove those
        still as they were read; how many went."""
        if not self._entries:
            return 0
        if self._keeper is None:
            self._keeper = self._backend.keeper()  # the file is created only now
        assert self._keeper is not None
        entries, files = self._entries, self._files
        self._entries, self._files, self._bytes = [], [], 0
        self._keeper.keep(entries, self._taken_ms)
        if not self.removing:
            return 0
        return sum(_remove(path) for path, info in files if _unchanged(path, info))


def is_live(head: FileHead | None, now: float) -> bool:
    """Whether a file with this head holds an entry the app reads: whole, not expired."""
    return head is not None and (head.expires == 0 or head.expires >= now)


def prune_one(path: str, now: float, dry_run: bool, remover: Remover) -> int:
    """1 when the cache file at ``path`` has expired (and is removed, or kept to be
    removed with its chunk); a file the app wrote anew since it was read stays."""
    try:
        with os.fdopen(open_regular(path, single_link=True), "rb") as handle:
            head = read_head(handle.read(HEAD_SIZE))
            if head is None or is_live(head, now):
                return 0  # alive, or truncated (left as the app's own prune leaves it)
            if dry_run:
                return 1
            handle.seek(0)
            raw = handle.read() if remover.keeping else b""
            read = os.fstat(handle.fileno())
        return remover.remove(path, b"", (raw, read))
    except FileNotFoundError:
        return 0  # removed meanwhile (the app pruned it)
    except UnsafeFile:
        return 0  # replaced by a link or a FIFO since the listing: not an entry


def keep_before_change(backend: FileSystemBackend, key: str, path: str, raw: bytes) -> None:
    """With ``--backup``: the file of ``key`` (its bytes ``raw``) kept before it is
    overwritten or its expiry rewritten."""
    if backend.backup is not None:
        taken = now_ms()
        entry = entry_of(key.encode("utf-8", "surrogateescape"), path, raw, taken)
        keeper = backend.keeper()  # the file is created only once there is an entry for it
        assert keeper is not None
        keeper.keep([entry], taken)


def keep_existing(backend: FileSystemBackend, key: str, path: str) -> None:
    """``keep_before_change`` for a file that may not be there (``set``)."""
    if backend.backup is not None:
        read = read_whole(path)
        if read is not None:
            keep_before_change(backend, key, path, read[0])


# --- restore -------------------------------------------------------------------------


def restorable_name(backend: FileSystemBackend, extra: bytes) -> str | None:
    """The file name an entry names, if it is one this cache could hold: a plain name
    (no directory, no ``..``) of the cache's hash shape, not the item count; else None."""
    try:
        name = extra.decode("ascii")
    except UnicodeDecodeError:
        return None
    if not name or name != os.path.basename(name) or name in (".", "..") or "\0" in name:
        return None
    return name if backend.is_cache_file(name) else None


def _holds_live_entry(path: str, now: float) -> bool:
    """Whether the file at ``path`` holds an entry the app reads (not expired, whole)."""
    try:
        return is_live(read_head(read_regular(path, HEAD_SIZE, single_link=True)), now)
    except FileNotFoundError:
        return False


def _place(directory: str, path: str, data: bytes, mode: int, replace: bool) -> bool:
    """``data`` as the file at ``path``, whole or not at all: written beside, then
    renamed over it (``replace``) or linked to its name, which fails rather than
    replaces; False when something took the name meanwhile."""
    handle, temporary = tempfile.mkstemp(suffix=IN_FLIGHT, dir=directory)
    try:
        with os.fdopen(handle, "wb") as stream:
            os.fchmod(stream.fileno(), mode)
            stream.write(data)
        if replace:
            os.replace(temporary, path)
            return True
        try:
            os.link(temporary, path, follow_symlinks=False)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
                raise
            try:  # no hard links here: created under its own name, never over a file
                descriptor = create_new(path, mode)
            except FileExistsError:
                return False
            with os.fdopen(descriptor, "wb") as stream:
                stream.write(data)
        return True
    finally:
        with suppress(FileNotFoundError):
            os.remove(temporary)


def _keep_replaced(backend: FileSystemBackend, paths: list[str]) -> None:
    """With ``--backup`` on ``restore``: the files about to be replaced, kept first."""
    if backend.backup is None:
        return
    remover = Remover(backend, sweeping=True)  # its chunks, without the removing
    remover.removing = False
    for path in paths:
        remover.remove(path)
    remover.flush()


def restore_files(
    backend: FileSystemBackend, entries: list[Entry], mode: int, replace: bool, dry_run: bool
) -> tuple[RestoreCounts, int]:
    """``entries`` written back into CACHE_DIR (see the module's docstring); the counts,
    and how many files are new (the item count grows by that many)."""
    counts, now = RestoreCounts(), time.time()
    planned: list[tuple[Entry, str, bool]] = []
    for entry in entries:
        name = restorable_name(backend, entry.extra)
        if name is None:
            shown = entry.extra.decode("ascii", "backslashreplace")[:80]
            counts.refused(f"{shown!r} is not the name of a cache file here: not written")
            continue
        head = read_head(entry.value[:HEAD_SIZE])
        if head is not None and not is_live(head, now):  # its own head: an absolute expiry
            counts.expired += 1
            continue
        path = os.path.join(backend.directory, name)
        try:
            exists = existing_regular(path, single_link=True)
            live = exists and _holds_live_entry(path, now)
        except UnsafeFile as exc:
            counts.refused(f"{path} {exc.strerror}: not written")
            continue
        if live and not replace:
            counts.present += 1
        elif dry_run:
            counts.restored += 1
        else:
            planned.append((entry, path, exists))
    _keep_replaced(backend, [path for _, path, exists in planned if exists])
    added = 0
    for entry, path, exists in planned:
        if not _place(backend.directory, path, entry.value, mode, replace or exists):
            counts.present += 1  # written by the app meanwhile
            continue
        counts.restored += 1
        added += 0 if exists else 1
    if planned:
        fsync_directory(backend.directory)
    return counts, added


def rewrite(
    directory: str, path: str, before: os.stat_result, new_head: bytes, raw: bytes, head: FileHead
) -> None:
    """A new head before the value's bytes (``expire``, ``persist``), through a temporary
    file renamed into place with the old file's mode; refused if the app rewrote the file
    since it was read (``before``)."""
    handle, temporary = tempfile.mkstemp(suffix=IN_FLIGHT, dir=directory)
    try:
        with os.fdopen(handle, "wb") as stream:
            os.fchmod(stream.fileno(), before.st_mode & 0o7777)
            stream.write(new_head)
            stream.write(memoryview(raw)[head.payload_offset :])
        now = os.lstat(path)
        if (now.st_ino, now.st_mtime_ns, now.st_size) != (
            before.st_ino,
            before.st_mtime_ns,
            before.st_size,
        ):
            raise BackendError(
                f"{path} was rewritten (by the app?) while its expiry was being changed; "
                "nothing was changed: run the command again"
            )
        os.replace(temporary, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.remove(temporary)
        raise
