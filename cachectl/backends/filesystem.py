"""FileSystemCache: one file per key in CACHE_DIR, named by the hash of the key.

CACHE_DIR belongs to the app's user, and cachectl is often run as root: every entry is
opened through ``cachectl.runtime.safe_files`` (no link followed, no FIFO waited on, a regular
file of one name checked on the descriptor), and the mode of a file written is set on
its descriptor before it is renamed into place, never on a path someone could swap.

cachectl writes cache files itself rather than through cachelib's ``set``: cachelib prunes
every file in CACHE_DIR once the item count passes CACHE_THRESHOLD, a ``.bashrc`` or a
``data.csv`` included, and writes only its own format, where an app on Flask-Caching 1.10
or older reads another (``filesystem_format``). Here only files named like cache entries
are ever removed, nothing is pruned (the app prunes on its next write), and a file is
written in the format the directory's files already have.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from itertools import islice
from typing import TYPE_CHECKING, Any

from cachectl.backends import cachelib_access as access
from cachectl.backends import filesystem_entries
from cachectl.backends import filesystem_keep as keeping
from cachectl.backends import once_markers as markers
from cachectl.backends.base import (
    CacheBackend,
    ClearPlan,
    Lifetime,
    ProgressCallback,
    StoredEntry,
    Tally,
    partial_work,
)
from cachectl.backends.filesystem_format import (
    HEAD_SIZE,
    PICKLED_FORMAT_PROTOCOL,
    FileHead,
    expiry_in_place,
    head_bytes,
    lifetime_of,
    read_head,
)
from cachectl.backends.statistics import CacheStats, ttl_bucket
from cachectl.codec.stored import StoredValue, decode_custom, decode_pickle
from cachectl.config.generations import HEADER, PICKLED, Generation
from cachectl.errors import BackendError, ConfigError, UsageError
from cachectl.runtime.safe_files import UnsafeFile, existing_regular, open_regular, read_regular

if TYPE_CHECKING:
    from cachectl.backup.file_format import Entry
    from cachectl.backup.reader import RestoreCounts

log = logging.getLogger("cachectl")
#: How many cache files are read to learn the directory's file format.
_FORMAT_SAMPLE = 16
_IN_FLIGHT = keeping.IN_FLIGHT


class FileSystemBackend(CacheBackend):
    """A cachelib FileSystemCache; only files named like this cache's keys are touched."""

    kind = "filesystem"
    cannot_exclude = (
        "FileSystemCache names each file by a hash of its key, so a glob over key names "
        "cannot be applied: --exclude is not available here"
    )
    can_show_raw_bytes = True
    can_read_lifetimes = True
    can_set_lifetimes = True
    can_prune = True

    def __init__(
        self,
        cache: Any,
        serializer: Any = None,
        file_format: str | None = None,
        generation: Generation | None = None,
    ) -> None:
        super().__init__(cache)
        #: Unknown generation, and no file to show the hash: names are not known, so keys
        #: are refused while clear and stats take files of either hash (md5 or sha256).
        self.generation = generation
        #: The format of the app's release, if the generation tells it (else the files do).
        self.release_format = file_format
        self.directory: str = access.filesystem_directory(cache)
        self.serializer = serializer
        self._name_lengths = {len(access.filesystem_hash_method(cache)(b"").hexdigest())}
        if generation is not None and not generation.decided:
            self._name_lengths = {32, 64}
        # The item counter cachelib keeps for CACHE_THRESHOLD is itself a file
        # named like a key; it is bookkeeping, never the app's data.
        self._count_file = access.filesystem_count_file_name(cache)
        self._count_files = {self._count_file}
        if generation is not None and not generation.decided:  # md5's and sha256's names
            counter = b"__wz_cache_count"
            self._count_files |= {
                hashlib.md5(counter).hexdigest(),
                hashlib.sha256(counter).hexdigest(),
            }

    def describe(self) -> str:
        return f"directory {self.directory}"

    def storage_name(self, key: str) -> str:
        return self._file_name(key)

    def _file_name(self, key: str) -> str:
        if self.generation is not None:
            self.generation.require_decided("the file name of a key (md5 or sha256)")
        return access.filesystem_file_name(self.cache, key)

    def check(self) -> None:
        if not os.path.isdir(self.directory):
            raise ConfigError(f"CACHE_DIR {self.directory} does not exist or is not a directory")

    @contextmanager
    def _os_errors(self) -> Iterator[None]:
        try:
            yield
        except UnsafeFile as exc:  # planted by whoever can write to CACHE_DIR
            raise ConfigError(
                f"{exc.filename} {exc.strerror}: refused, nothing was read or written "
                "(cachectl uses only regular files in CACHE_DIR)"
            ) from exc
        except PermissionError as exc:
            raise BackendError(f"{self.describe()}: permission denied: {exc.filename}") from exc
        except OSError as exc:
            raise BackendError(f"{self.describe()}: {exc.strerror}: {exc.filename}") from exc

    def is_cache_file(self, name: str) -> bool:
        if len(name) not in self._name_lengths or name in self._count_files:
            return False
        return all(ch in "0123456789abcdef" for ch in name)

    def claim_once(self, once_id: str, value: str, ttl: int) -> str | None:
        """A file no clear, prune or keys takes (``is_cache_file``); ``value`` says
        when it expires."""
        with self._os_errors():
            return markers.file_claim(self.directory, markers.marker_file_name(once_id), value)

    def release_once(self, once_id: str, value: str) -> bool:
        with self._os_errors():
            return markers.file_release(self.directory, markers.marker_file_name(once_id), value)

    def get(self, key: str, unsafe: bool = False) -> StoredValue | None:
        path = self._file_name(key)
        try:
            with self._os_errors():
                raw = read_regular(path, single_link=True)
        except BackendError as exc:
            if isinstance(exc.__cause__, FileNotFoundError):
                return None
            raise
        head = read_head(raw)
        if head is None:
            return StoredValue(raw, None, "undecodable", "the cache file is truncated")
        if head.expires != 0 and head.expires < time.time():
            return None  # expired: the app treats it as missing too
        return self._decode(raw, head, unsafe)

    def _decode(self, raw: bytes, head: FileHead, unsafe: bool = False) -> StoredValue:
        payload = memoryview(raw)[head.payload_offset :]
        if self.serializer is not None and head.file_format == HEADER:
            return decode_custom(raw, bytes(payload), self.serializer, unsafe)
        return decode_pickle(raw, payload, unsafe)

    def set(self, key: str, value: Any, timeout: int | None) -> None:
        """Write one file as the app's library would, in the directory's format; the
        item count is kept for CACHE_THRESHOLD, but nothing is pruned."""
        path = self._file_name(key)
        file_format = self.write_format()
        if timeout is None:
            timeout = int(self.cache.default_timeout)
        expires = 0 if timeout == 0 else int(time.time()) + timeout
        with self._os_errors():
            is_new = not existing_regular(path, single_link=True)
            if not is_new:
                keeping.keep_existing(self, key, path)  # --backup: kept before it is replaced
            self._write(path, file_format, expires, value)
            if is_new:
                count = self._adjust_count(1)
                threshold = access.filesystem_threshold(self.cache)
                if count is not None and count > threshold:
                    log.warning(
                        "%s holds %d entries, over CACHE_THRESHOLD %d: cachectl prunes "
                        "nothing (the app prunes on its next write)",
                        self.directory,
                        count,
                        threshold,
                    )

    def _write(self, path: str, file_format: str, expires: int, value: Any) -> None:
        """Through a temporary file renamed into place, so a reader never sees half."""
        handle, temporary = tempfile.mkstemp(suffix=_IN_FLIGHT, dir=self.directory)
        try:
            with os.fdopen(handle, "wb") as stream:
                os.fchmod(stream.fileno(), access.filesystem_mode(self.cache))
                stream.write(head_bytes(file_format, expires))
                if file_format == PICKLED:
                    pickle.dump(value, stream, PICKLED_FORMAT_PROTOCOL)
                else:
                    access.filesystem_serializer(self.cache).dump(value, stream)
            os.replace(temporary, path)
        except BaseException:
            with suppress(FileNotFoundError):
                os.remove(temporary)
            raise

    def write_format(self) -> str:
        """The format of the files already here; the release's when there are none (or
        both); refused when neither tells (exit 2), rather than risk the app's reads."""
        found = set()
        with self._os_errors():
            for path in islice(self._cache_files(with_count=True), _FORMAT_SAMPLE):
                with suppress(OSError):  # gone meanwhile, or not a regular file
                    head = read_head(read_regular(path, HEAD_SIZE, single_link=True))
                    if head is not None:
                        found.add(head.file_format)
        if len(found) == 1:
            return found.pop()
        if self.release_format is not None:
            return self.release_format
        names = "Flask-Caching 1.9-1.10 pickle the expiry, 2.x writes cachelib's header"
        where = "holds files of both formats" if found else "holds no cache file yet"
        raise UsageError(
            f"cannot tell which file format to write: {self.directory} {where} ({names}), "
            "and the app's release is not known: name it with --compat (2.4, 1.10, ...)"
        )

    def _count_path(self) -> str:
        return os.path.join(self.directory, self._count_file)

    def _adjust_count(self, delta: int) -> int | None:
        """Keep the item count the app prunes by (a cache file named like a key, holding
        an int), as the app's library does; None when no count is kept (no threshold).
        A count file is only ever rewritten in place, never created."""
        if not access.filesystem_threshold(self.cache):
            return None
        path = self._count_path()
        count, current_format = self._read_count(path)
        if current_format is None:
            return None  # no count file: the app makes one when it starts
        count = max(count + delta, 0)
        self._write(path, current_format, 0, count)
        return count

    def _read_count(self, path: str) -> tuple[int, str | None]:
        """The item count and its file's format; (0, None) where there is no count file,
        or something other than a regular file has its name (left alone, with a warning:
        the entries a command removed stay removed)."""
        try:
            raw = read_regular(path, 1024, single_link=True)
        except FileNotFoundError:
            return 0, None
        except UnsafeFile as exc:
            log.warning("the item count %s %s: not read or updated", path, exc.strerror)
            return 0, None
        head = read_head(raw)
        if head is None:
            return 0, None
        stored = self._decode(raw, head)
        count = stored.value if type(stored.value) is int else 0
        return count, head.file_format

    def delete(self, keys: Iterable[str], on_progress: ProgressCallback | None = None) -> int:
        if self.generation is not None:  # refused before any file goes, not half-way
            self.generation.require_decided("the file name of a key (md5 or sha256)")
        tally = Tally(on_progress)
        remover = keeping.Remover(self, sweeping=False)  # --backup: kept before removed
        try:
            with partial_work(tally, "removed"), self._os_errors():
                for key in keys:
                    name = key.encode("utf-8", "surrogateescape")
                    tally.add(remover.remove(self._file_name(key), name))
                tally.add(remover.flush())
        finally:
            # The item count the app prunes by, updated once rather than per file.
            if tally.count:
                with self._os_errors():
                    self._adjust_count(-tally.count)
        return tally.count

    def clear_plan(self) -> ClearPlan:
        caution = None
        with self._os_errors():
            others, cache_files = self._census()
        if others > cache_files:
            caution = (
                f"{self.directory} holds {others:,} entries that are not cache files "
                f"(and {cache_files:,} cache files): is CACHE_DIR right? "
                "Only the cache files are removed"
            )
        return ClearPlan(self.describe(), "cache files (other files stay)", caution=caution)

    def _census(self, at_most: int = 100_000) -> tuple[int, int]:
        """How many of the directory's first ``at_most`` entries are not cache files, and
        how many are (a directory mostly of other files is likely not CACHE_DIR)."""
        others = cache_files = 0
        with os.scandir(self.directory) as entries:
            for entry in islice(entries, at_most):
                if entry.name in self._count_files or entry.name.endswith(_IN_FLIGHT):
                    continue
                if self.is_cache_file(entry.name) and entry.is_file(follow_symlinks=False):
                    cache_files += 1
                else:
                    others += 1
        return others, cache_files

    def cache_files(self) -> Iterator[str]:
        return self._cache_files(with_count=False)

    def _cache_files(self, with_count: bool) -> Iterator[str]:
        with os.scandir(self.directory) as entries:
            for entry in entries:
                named = self.is_cache_file(entry.name) or (
                    with_count and entry.name == self._count_file
                )
                if named and entry.is_file(follow_symlinks=False):
                    yield entry.path

    def count(self, pattern: str = "*", on_progress: ProgressCallback | None = None) -> int:
        if pattern != "*":
            raise UsageError(
                "FileSystemCache names its files by a hash of the key, so they cannot be "
                "matched against a pattern; only the whole count is known"
            )
        tally = Tally(on_progress)
        with partial_work(tally, "counted"), self._os_errors():
            for _ in self.cache_files():
                tally.add(1)
        return tally.count

    def clear(self, dry_run: bool, on_progress: ProgressCallback | None = None) -> int:
        tally = Tally(on_progress)
        remover = None if dry_run else keeping.Remover(self, sweeping=True)
        with partial_work(tally, "removed"), self._os_errors():
            for path in self.cache_files():
                tally.add(1 if remover is None else remover.remove(path))
            if remover is not None:
                tally.add(remover.flush())
                # Reset in place; a count file that was not there is not created.
                count, count_format = self._read_count(self._count_path())
                if count_format is not None:
                    self._adjust_count(-count)
        return tally.count

    def stored_entries(self, limit: int, totals: bool = False) -> Iterator[StoredEntry]:
        with self._os_errors():
            yield from filesystem_entries.stored_entries(self, limit)

    def delete_entries(self, names: list[bytes]) -> int:
        with self._os_errors():
            removed = filesystem_entries.delete_entries(self, names)
            if removed:
                self._adjust_count(-removed)  # the item count the app prunes by
        return removed

    def stats(self, sample: int | None, on_progress: ProgressCallback | None = None) -> CacheStats:
        """Cache files: their count, expiry from each file's header, size on disk.
        File names are hashes, so every entry is of kind "other". With ``sample``,
        every file is still counted (a directory listing is cheap) but only that
        many are opened."""
        stats = CacheStats(total=0, examined=0)
        now = time.time()
        tally = Tally(on_progress)
        with partial_work(tally, "examined"), self._os_errors():
            for path in self.cache_files():
                stats.total += 1
                tally.add(1)
                if sample is not None and stats.examined >= sample:
                    continue
                try:
                    with os.fdopen(open_regular(path, single_link=True), "rb") as handle:
                        head = read_head(handle.read(HEAD_SIZE))
                        size = os.fstat(handle.fileno()).st_size
                except OSError:
                    continue  # pruned by the app meanwhile, or replaced by a non-file
                if head is None:
                    continue  # truncated
                stats.examined += 1
                stats.kinds["other"] += 1
                expires = head.expires
                stats.ttls[ttl_bucket(None if expires == 0 else expires - now)] += 1
                stats.memory_sampled += 1
                stats.memory_bytes += size
        return stats

    # --- lifetimes: read and rewrite the expiry in a file's head, prune expired files ---

    def lifetimes(self, keys: list[str]) -> list[Lifetime]:
        now = time.time()
        found = []
        for key in keys:
            path = self._file_name(key)
            try:
                with self._os_errors():
                    head = read_head(read_regular(path, HEAD_SIZE, single_link=True))
            except BackendError as exc:
                if not isinstance(exc.__cause__, FileNotFoundError):
                    raise
                head = None
            found.append(lifetime_of(head, now))
        return found

    def set_lifetime(self, key: str, seconds: int | None) -> bool:
        """Rewrite the expiry in the file's head, never its value: in place where the new
        expiry fits the bytes of the old one (a 4-byte cachelib header always does),
        else the file is written anew, its value's bytes copied as they are."""
        path = self._file_name(key)
        expires = 0 if seconds is None else int(time.time()) + seconds
        with self._os_errors():
            try:
                descriptor = open_regular(path, os.O_RDWR, single_link=True)
                with os.fdopen(descriptor, "r+b") as handle:
                    head = read_head(handle.read(HEAD_SIZE))
                    if head is None or not lifetime_of(head, time.time()).found:
                        return False  # expired (or truncated): the app reads it as missing
                    if self.backup is not None:  # kept as it is before its head changes
                        handle.seek(0)
                        keeping.keep_before_change(self, key, path, handle.read())
                    patch = expiry_in_place(head, expires)
                    if patch is not None and head.expiry_offset is not None:
                        handle.seek(head.expiry_offset)
                        handle.write(patch)
                        return True
                    handle.seek(0)
                    raw = handle.read()
                    before = os.fstat(handle.fileno())
            except FileNotFoundError:
                return False
            keeping.rewrite(
                self.directory, path, before, head_bytes(head.file_format, expires), raw, head
            )
        return True

    # --- backups: --backup keeps each file before it goes, restore writes it back ------

    backup_family = "filesystem"
    cannot_back_up = None

    def backup_section(self) -> dict[str, Any]:
        """CACHE_DIR as the server (any directory may take the file back)."""
        return {"family": self.backup_family, "server": self.directory, "prefix": self.key_prefix}

    def restore(
        self, entries: list[Entry], taken_ms: int, replace: bool, dry_run: bool
    ) -> RestoreCounts:
        """Each file back under its name (``filesystem_keep.restore_files``); the item
        count grows by the files that are new, as ``set`` keeps it."""
        mode = access.filesystem_mode(self.cache)
        with self._os_errors():
            counts, added = keeping.restore_files(self, entries, mode, replace, dry_run)
            if added:
                self._adjust_count(added)
        return counts

    def prune(self, dry_run: bool, on_progress: ProgressCallback | None = None) -> int:
        """Remove the expired cache files (files named like this cache's keys, as clear
        finds them); any other file stays, and so does a file the app rewrote meanwhile."""
        tally = Tally(on_progress)
        remover = keeping.Remover(self, sweeping=True)  # --backup: expired ones kept too
        try:
            with partial_work(tally, "counted" if dry_run else "removed"), self._os_errors():
                for path in self.cache_files():
                    tally.add(keeping.prune_one(path, time.time(), dry_run, remover))
                tally.add(remover.flush())
        finally:
            if tally.count and not dry_run:
                with self._os_errors():
                    self._adjust_count(-tally.count)
        return tally.count
