"""FileSystemCache entries read and removed in turn, by file name (``check-pickles``).

A cache file is named by a hash of its key, so the key is not known: entries are read
and removed by file name, and only names of this cache's files (``is_cache_file``) are
ever removed. Every file is opened through ``safe_files`` (no link followed, no FIFO
waited on), and read no further than the limit past its head.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import suppress
from typing import TYPE_CHECKING

from cachectl.backends.base import StoredEntry
from cachectl.backends.filesystem_format import HEAD_SIZE, read_head
from cachectl.config.generations import HEADER
from cachectl.runtime.safe_files import UnsafeFile, read_regular

if TYPE_CHECKING:
    from cachectl.backends.filesystem import FileSystemBackend


def stored_entries(backend: FileSystemBackend, limit: int) -> Iterator[StoredEntry]:
    """Each cache file with its pickle; expired ones too (still on disk, the app's next
    read loads them before it finds them expired)."""
    for path in backend.cache_files():
        with suppress(FileNotFoundError, UnsafeFile):
            raw = read_regular(path, HEAD_SIZE + limit + 1, single_link=True)
            head, name = read_head(raw), os.path.basename(path).encode()
            if head is None or len(raw) > head.payload_offset + limit:
                yield StoredEntry(name, None, len(raw), "truncated, or over the limit")
            elif backend.serializer is None or head.file_format != HEADER:
                yield StoredEntry(name, raw[head.payload_offset :], len(raw))
            else:
                yield StoredEntry(name, None, len(raw), "written by CACHE_SERIALIZER")


def delete_entries(backend: FileSystemBackend, names: list[bytes]) -> int:
    """Remove the cache files named ``names`` (with ``--backup``, each kept first, as
    every removal of this backend is: ``filesystem_keep.Remover``); how many went."""
    from cachectl.backends.filesystem_keep import Remover

    remover = Remover(backend, sweeping=True)
    removed = 0
    for name in (n.decode("utf-8", "replace") for n in names):
        if backend.is_cache_file(name):
            removed += remover.remove(os.path.join(backend.directory, name))
    return removed + remover.flush()
