"""FileSystemCache: one file per key in CACHE_DIR, named by the hash of the key."""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from cachectl.backends import cachelib_access as access
from cachectl.backends.base import CacheBackend, ClearPlan, ProgressCallback, Tally, partial_work
from cachectl.backends.statistics import CacheStats, ttl_bucket
from cachectl.codec import StoredValue, decode_custom, decode_pickle
from cachectl.errors import BackendError, ConfigError, UsageError

#: Each cache file starts with the expiry time as a native unsigned int (0: never).
_EXPIRY = struct.Struct("I")


class FileSystemBackend(CacheBackend):
    """A cachelib FileSystemCache; only files named like this cache's keys are touched."""

    kind = "filesystem"
    can_show_raw_bytes = True

    def __init__(self, cache: Any, serializer: Any = None) -> None:
        super().__init__(cache)
        self.directory: str = access.filesystem_directory(cache)
        self.serializer = serializer
        self._name_length = len(access.filesystem_hash_method(cache)(b"").hexdigest())
        # The item counter cachelib keeps for CACHE_THRESHOLD is itself a file
        # named like a key; it is bookkeeping, never the app's data.
        self._count_file = access.filesystem_count_file_name(cache)

    def describe(self) -> str:
        return f"directory {self.directory}"

    def storage_name(self, key: str) -> str:
        return access.filesystem_file_name(self.cache, key)

    def check(self) -> None:
        if not os.path.isdir(self.directory):
            raise ConfigError(f"CACHE_DIR {self.directory} does not exist or is not a directory")

    @contextmanager
    def _os_errors(self) -> Iterator[None]:
        try:
            yield
        except PermissionError as exc:
            raise BackendError(f"{self.describe()}: permission denied: {exc.filename}") from exc
        except OSError as exc:
            raise BackendError(f"{self.describe()}: {exc.strerror}: {exc.filename}") from exc

    def is_cache_file(self, name: str) -> bool:
        if len(name) != self._name_length or name == self._count_file:
            return False
        return all(ch in "0123456789abcdef" for ch in name)

    def get(self, key: str, unsafe: bool = False) -> StoredValue | None:
        path = access.filesystem_file_name(self.cache, key)
        try:
            with self._os_errors(), open(path, "rb") as handle:
                raw = handle.read()
        except BackendError as exc:
            if isinstance(exc.__cause__, FileNotFoundError):
                return None
            raise
        if len(raw) < _EXPIRY.size:
            return StoredValue(raw, None, "undecodable", "the cache file is truncated")
        (expires,) = _EXPIRY.unpack_from(raw)
        if expires != 0 and expires < time.time():
            return None  # expired: the app treats it as missing too
        payload = raw[_EXPIRY.size :]
        if self.serializer is not None:
            return decode_custom(raw, payload, self.serializer, unsafe)
        return decode_pickle(raw, payload, unsafe)

    def set(self, key: str, value: Any, timeout: int | None) -> None:
        with self._os_errors():
            if not self.cache.set(key, value, timeout=timeout):
                raise BackendError(f"{self.describe()}: the value could not be written")

    def delete(self, keys: Iterable[str], on_progress: ProgressCallback | None = None) -> int:
        tally = Tally(on_progress)
        try:
            with partial_work(tally, "removed"), self._os_errors():
                for key in keys:
                    try:
                        os.remove(access.filesystem_file_name(self.cache, key))
                    except FileNotFoundError:
                        continue
                    tally.add(1)
        finally:
            # The item count the app prunes by, updated once rather than per file.
            access.adjust_filesystem_count(self.cache, -tally.count)
        return tally.count

    def clear_plan(self) -> ClearPlan:
        return ClearPlan(self.describe(), "cache files (other files stay)")

    def cache_files(self) -> Iterator[str]:
        with os.scandir(self.directory) as entries:
            for entry in entries:
                if self.is_cache_file(entry.name) and entry.is_file(follow_symlinks=False):
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
        with partial_work(tally, "removed"), self._os_errors():
            for path in self.cache_files():
                if not dry_run:
                    try:
                        os.remove(path)
                    except FileNotFoundError:
                        continue  # expired and pruned by the app meanwhile
                tally.add(1)
            if not dry_run:
                access.reset_filesystem_count(self.cache)
        return tally.count

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
                    with open(path, "rb") as handle:
                        (expires,) = _EXPIRY.unpack(handle.read(_EXPIRY.size))
                    size = os.path.getsize(path)
                except (OSError, struct.error):
                    continue  # expired and pruned by the app meanwhile, or truncated
                stats.examined += 1
                stats.kinds["other"] += 1
                stats.ttls[ttl_bucket(None if expires == 0 else expires - now)] += 1
                stats.memory_sampled += 1
                stats.memory_bytes += size
        return stats
