"""The one way a backup file is read back: ``read_backup``.

A file may have been cut short (the run that wrote it was killed: no trailer) or damaged
on disk (a checksum fails): a damaged record is reported and skipped, the reader looks for
the next record's marker and goes on, so one bad chunk costs its own entries only. The
file is opened as every file cachectl is given (``safe_files``: a regular file, never
through a link) and read a record at a time: memory stays flat in the file's size.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar

from cachectl.backup.file_format import (
    CACHE,
    ENTRIES,
    FRAME_SIZE,
    HEAD,
    MARKER,
    TRAILER,
    Chunk,
    DamagedRecord,
    LaidOutChunk,
    read_chunk,
    read_frame_head,
    read_laid_out,
    unframe,
)
from cachectl.errors import UsageError
from cachectl.runtime import safe_files

T = TypeVar("T")


@dataclass
class BackupContents:
    """What a file says about itself, filled in as it is read."""

    path: str
    head: dict[str, Any] = field(default_factory=dict)
    #: Each cache the entries come from, by id.
    caches: dict[int, dict[str, Any]] = field(default_factory=dict)
    trailer: dict[str, Any] | None = None
    #: What could not be read: one line per damaged stretch.
    damaged: list[str] = field(default_factory=list)
    #: Entries in the chunks read whole so far.
    entries: int = 0
    chunks: int = 0

    @property
    def complete(self) -> bool:
        """The run that wrote the file reached its end (its trailer is there)."""
        return self.trailer is not None


class BackupFile:
    """A backup file opened for reading: ``chunks()`` streams its entries while
    ``contents`` learns the head, the caches and the trailer."""

    def __init__(self, path: str) -> None:
        self.contents = BackupContents(path)
        try:
            descriptor = safe_files.open_regular(path)
        except OSError as exc:  # missing, a link, a FIFO: one line, exit 2
            raise UsageError(f"cannot read the backup {path}: {exc.strerror or exc}") from None
        self._stream: IO[bytes] = os.fdopen(descriptor, "rb", buffering=1 << 20)
        first = self._stream.read(len(MARKER))
        if first != MARKER:
            self._stream.close()
            raise UsageError(f"{path} is not a cachectl backup file (it does not start like one)")
        self._stream.seek(0)

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> BackupFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _resync(self, start: int) -> bool:
        """Move to the next marker after ``start``; False at the end of the file."""
        self._stream.seek(start)
        carry = b""
        while True:
            block = self._stream.read(1 << 20)
            if not block:
                return False
            data = carry + block
            found = data.find(MARKER)
            if found >= 0:
                self._stream.seek(self._stream.tell() - len(data) + found)
                return True
            carry = data[-(len(MARKER) - 1) :]

    def records(self) -> Iterator[tuple[bytes, bytes]]:
        """Each whole record as ``(kind, body)``; damaged ones noted and skipped."""
        stream = self._stream
        while True:
            at = stream.tell()
            head = stream.read(FRAME_SIZE)
            if not head:
                return
            if len(head) < FRAME_SIZE:
                self.contents.damaged.append(
                    f"the file ends inside a record at byte {at} (cut short while it was written)"
                )
                return
            framed = read_frame_head(head)
            packed = stream.read(framed[1]) if framed is not None else b""
            if framed is not None and len(packed) < framed[1]:
                self.contents.damaged.append(
                    f"the file ends inside a record at byte {at} (cut short while it was written)"
                )
                return
            try:
                if framed is None:
                    raise DamagedRecord("no record starts here")
                yield framed[0], unframe(framed[0], packed, framed[2])
            except DamagedRecord as exc:
                self.contents.damaged.append(f"byte {at}: {exc}; skipped to the next record")
                if not self._resync(at + 1):
                    return

    def skim(self) -> BackupContents:
        """The head, caches and trailer, without decompressing a chunk (``restore
        --list``, and the checks a restore makes before it writes anything); the stream
        is left at the start for ``chunks``."""
        skimmed = BackupContents(self.contents.path)
        stream = self._stream
        while True:
            at = stream.tell()
            head = stream.read(FRAME_SIZE)
            if len(head) < FRAME_SIZE:
                if head:
                    skimmed.damaged.append(f"the file ends inside a record at byte {at}")
                break
            framed = read_frame_head(head)
            if framed is None:
                skimmed.damaged.append(f"byte {at}: no record starts here")
                if not self._resync(at + 1):
                    break
                continue
            kind, length, checksum = framed
            if kind == ENTRIES:
                stream.seek(length, os.SEEK_CUR)
                skimmed.chunks += 1
                continue
            packed = stream.read(length)
            try:
                document = _document(unframe(kind, packed, checksum))
            except (DamagedRecord, ValueError) as exc:
                skimmed.damaged.append(f"byte {at}: {exc}")
                continue
            if kind == HEAD:
                skimmed.head = document
            elif kind == CACHE:
                skimmed.caches[int(document.get("id", -1))] = document
            elif kind == TRAILER:
                skimmed.trailer = document
        stream.seek(0)
        return skimmed

    def chunks(self) -> Iterator[Chunk]:
        """The chunks of entries, in order; head, caches and trailer land in ``contents``."""
        for chunk in self._chunks(read_chunk):
            assert isinstance(chunk, Chunk)
            yield chunk

    def laid_out_chunks(self) -> Iterator[LaidOutChunk]:
        """As ``chunks``, each chunk's entries left as the file lays them out."""
        for chunk in self._chunks(read_laid_out):
            assert isinstance(chunk, LaidOutChunk)
            yield chunk

    def _chunks(self, read: Callable[[bytes], Chunk | LaidOutChunk]) -> Iterator[Any]:
        contents = self.contents
        for kind, body in self.records():
            try:
                if kind == ENTRIES:
                    chunk = read(body)
                    if chunk.cache_id not in contents.caches:
                        raise DamagedRecord("a chunk names a cache the file does not describe")
                    contents.entries += (
                        chunk.count if isinstance(chunk, LaidOutChunk) else len(chunk.entries)
                    )
                    contents.chunks += 1
                    yield chunk
                elif kind == HEAD:
                    contents.head = _document(body)
                elif kind == CACHE:
                    cache = _document(body)
                    contents.caches[int(cache["id"])] = cache
                elif kind == TRAILER:
                    contents.trailer = _document(body)
            except (DamagedRecord, KeyError, TypeError, ValueError) as exc:
                contents.damaged.append(f"{kind.decode('ascii', 'replace')} record: {exc}")


_DONE = object()


def prefetched(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """``items``, produced ``depth`` ahead in a thread of its own (reading and
    decompressing a file's chunks release the GIL): the caller's work on one chunk, a
    server restoring it, overlaps reading the next. An error in the thread is raised
    here; leaving the loop early (a signal) stops the thread at its next item."""
    slots: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        slots.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put(_DONE)
        except BaseException as exc:  # handed to the consumer
            slots.put(exc)

    thread = threading.Thread(target=produce, name="backup-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def _document(body: bytes) -> dict[str, Any]:
    document = json.loads(body)
    if not isinstance(document, dict):
        raise DamagedRecord("a record that should be a JSON object is not")
    return document


@dataclass
class RestoreCounts:
    """What a restore did with the entries it was given."""

    restored: int = 0
    #: A key that exists now: left as it is (no ``--replace``).
    present: int = 0
    #: Its lifetime ran out since the backup: not written.
    expired: int = 0
    #: The server refused it (a payload of another server version, a full server).
    failed: int = 0
    #: The first few refusals, one line each.
    failures: list[str] = field(default_factory=list)

    def add(self, other: RestoreCounts) -> None:
        self.restored += other.restored
        self.present += other.present
        self.expired += other.expired
        self.failed += other.failed
        for why in other.failures:  # each chunk's first refusal: the same one, often
            if why not in self.failures and len(self.failures) < 5:
                self.failures.append(why)

    def outside(self, name: bytes, prefix: bytes) -> bool:
        """Whether ``name`` lies outside the cache's ``prefix``: then it is refused and
        counted, never written (a file, crafted or from another cache, names only keys of
        this cache's prefix, or nothing is restored for it)."""
        if name.startswith(prefix):
            return False
        self.refused(
            f"{bytes(name)[:80]!r} is not under the prefix {prefix.decode('utf-8', 'replace')!r}: "
            "not written"
        )
        return True

    def refused(self, why: str) -> None:
        self.failed += 1
        if len(self.failures) < 5:
            self.failures.append(why)

    def document(self) -> dict[str, Any]:
        return {
            "restored": self.restored,
            "present": self.present,
            "expired": self.expired,
            "failed": self.failed,
            "failures": list(self.failures),
        }


def lifetime_left(ttl_ms: int, taken_ms: int, now: int) -> int | None:
    """What is left of a lifetime of ``ttl_ms`` taken at ``taken_ms``, at ``now``: None for
    an entry that never expires, 0 or less for one that has expired since."""
    if ttl_ms < 0:
        return None
    return ttl_ms - max(0, now - taken_ms)
