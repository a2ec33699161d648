"""The one way entries are kept before they are removed: ``BackupWriter``.

A backend asks for a ``Keeper`` (``CacheBackend.keeper``) before it removes or overwrites
anything, hands it the entries as they were, and removes them only once ``keep`` has
returned: by then the chunk holding them is written and ``fsync``ed, so a run killed at
any point (``SIGKILL`` included) leaves a file from which every entry removed so far can
be restored. The file is created with the first chunk, 0600, never through a
link and never over an existing file (``safe_files.create_new``); the trailer with the
counts is written by ``close`` when the run ends, whatever its outcome.
"""

from __future__ import annotations

import datetime
import json
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from cachectl import __version__
from cachectl.backup.file_format import (
    CACHE,
    ENTRIES,
    FORMAT_VERSION,
    HEAD,
    TRAILER,
    Entry,
    chunk_body,
    entry_bytes,
    frame,
    json_body,
)
from cachectl.runtime import safe_files


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class BackupWriter:
    """One backup file, shared by every cache a run touches (``--cache all``, nested
    caches, a batch's lines): each cache gets a ``CACH`` record and an id of its own."""

    def __init__(self, path: str, command_line: Sequence[str]) -> None:
        #: Where the file goes; nothing is created before the first ``keeper``.
        self.path = path
        self._command_line = list(command_line)
        self._descriptor: int | None = None
        self._caches: dict[str, int] = {}
        #: The caches whose ``CACH`` record is not written yet: a file is created, and a
        #: cache named in it, only once an entry is about to go (a delete of keys that
        #: do not exist leaves no file).
        self._unwritten: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()  # a cluster's primaries are swept from threads
        #: Entries kept so far, and the chunks holding them.
        self.entries = 0
        self.chunks = 0
        self.closed = False
        #: Whether the file exists (made on the first ``keeper`` call).
        self.created = False

    def check_can_create(self) -> None:
        """Refuse, before anything changes, a path already taken (the file is created
        only when the first entry is about to go)."""
        if os.path.lexists(self.path):
            raise FileExistsError(17, "exists already; a backup never replaces a file", self.path)
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise FileNotFoundError(2, "its directory does not exist", self.path)

    def _open(self) -> int:
        if self._descriptor is None:
            if self.closed:
                raise RuntimeError("the backup is closed")
            descriptor = safe_files.create_new(self.path)
            self._descriptor = descriptor
            self.created = True
            import getpass
            import socket

            try:
                user = getpass.getuser()
            except Exception:  # no name for this uid (a container)
                user = str(os.getuid())
            head = {
                "format": FORMAT_VERSION,
                "cachectl": __version__,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                    timespec="milliseconds"
                ),
                "created_ms": now_ms(),
                "host": socket.gethostname(),
                "user": user,
                "command": self._command_line,
            }
            self._write(frame(HEAD, json_body(head)))
            # The file's name is durable too, not only its bytes.
            safe_files.fsync_directory(os.path.dirname(os.path.abspath(self.path)))
        return self._descriptor

    def _write(self, data: bytes, durable: bool = True) -> None:
        descriptor = self._descriptor
        assert descriptor is not None
        view = memoryview(data)
        while view:
            written = os.write(descriptor, view)
            view = view[written:]
        if durable:
            os.fsync(descriptor)

    def keeper(self, cache: dict[str, Any]) -> Keeper:
        """Where one cache's entries go: ``cache`` describes it (``family``, ``server``
        without credentials, ``database``, ``prefix``, ``generation``, ``cache``)."""
        described = json.dumps(cache, sort_keys=True, default=str)
        with self._lock:
            if described not in self._caches:
                cache_id = len(self._caches)
                self._caches[described] = cache_id
                self._unwritten[cache_id] = {**cache, "id": cache_id}
            return Keeper(self, self._caches[described])

    def write_chunk(self, cache_id: int, taken_ms: int, count: int, laid_out: bytes) -> None:
        """A chunk of ``count`` entries already laid out (``entry_bytes``), on disk and
        ``fsync``ed when this returns."""
        self.write_chunks(cache_id, [(taken_ms, count, laid_out)])

    def write_chunks(self, cache_id: int, chunks: Sequence[tuple[int, int, bytes]]) -> None:
        """Chunks of ``(taken_ms, count, laid_out)``, compressed outside the lock, written,
        and ``fsync``ed once for all of them when this returns."""
        records = [
            frame(ENTRIES, chunk_body(cache_id, taken_ms, count, laid_out))
            for taken_ms, count, laid_out in chunks
            if count
        ]
        if not records:
            return
        with self._lock:
            self._open()
            described = self._unwritten.pop(cache_id, None)
            if described is not None:  # the cache's record, before its first chunk
                self._write(frame(CACHE, json_body(described)), durable=False)
            self._write(b"".join(records))
            self.entries += sum(count for _, count, _ in chunks)
            self.chunks += len(records)

    def close(self) -> None:
        """The trailer with the counts, and the file closed (a no-op if it was never
        created): called once the run ends, however it ends."""
        with self._lock:
            if self._descriptor is None:
                self.closed = True
                return
            try:
                trailer = {"entries": self.entries, "chunks": self.chunks, "ended_ms": now_ms()}
                self._write(frame(TRAILER, json_body(trailer)))
            finally:
                os.close(self._descriptor)
                self._descriptor = None
                self.closed = True

    def summary(self) -> dict[str, Any]:
        """What a command's JSON document and the audit line say about the backup."""
        return {"file": self.path, "entries": self.entries, "created": self.created}


class Keeper:
    """The entries of one cache, kept in ``BackupWriter``'s file."""

    def __init__(self, writer: BackupWriter, cache_id: int) -> None:
        self.writer = writer
        self.cache_id = cache_id

    def keep(self, entries: Sequence[Entry], taken_ms: int) -> None:
        """``entries`` (taken at ``taken_ms``) on disk: remove them only after this returns."""
        if entries:
            laid_out = b"".join(entry_bytes(entry) for entry in entries)
            self.writer.write_chunk(self.cache_id, taken_ms, len(entries), laid_out)

    def keep_laid_out(self, count: int, laid_out: bytes, taken_ms: int) -> None:
        """As ``keep``, for entries already laid out by the server (a Lua step)."""
        self.writer.write_chunk(self.cache_id, taken_ms, count, laid_out)

    def keep_laid_out_chunks(self, chunks: Sequence[tuple[int, int, bytes]]) -> None:
        """Chunks of ``(taken_ms, count, laid_out)``, on disk with one ``fsync``."""
        self.writer.write_chunks(self.cache_id, chunks)
