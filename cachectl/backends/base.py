"""The one interface every cache backend offers to the commands.

Each backend wraps the cachelib object the app itself would use, so values are
written in exactly the app's format; the backend adds what an administrator
needs and cachelib lacks (safe reads, counted deletes, a clear that touches only
the app's keys and streams instead of loading every key name at once).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from typing import Any

from cachectl.codec import StoredValue
from cachectl.errors import CachectlError, Interrupted, UsageError

#: Called with the running total of keys handled, so the CLI can show progress.
ProgressCallback = Callable[[int], None]

#: Keys sent to the server in one round trip by deletes and clears.
BATCH_SIZE = 1000


def batched(items: Iterable[Any], size: int = BATCH_SIZE) -> Iterator[list[Any]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


@dataclass
class ClearPlan:
    """What a clear would do, shown to the operator before asking to go ahead."""

    #: One line naming the server and database, credentials masked.
    target: str
    #: Which keys go ("keys under prefix 'flask_cache_'", "every key on the server").
    scope: str
    #: True when the clear cannot be limited to the app's keys (memcached's flush_all).
    whole_server: bool = False


class CacheBackend:
    """What the commands can ask of a cache, whatever the server behind it."""

    #: Short backend name for messages and JSON ("redis", "filesystem", ...).
    kind = "cache"

    def __init__(self, cache: Any) -> None:
        #: The cachelib object the app would use; writes go through it.
        self.cache = cache

    def describe(self) -> str:
        """Where the cache lives, credentials masked."""
        raise NotImplementedError

    @property
    def key_prefix(self) -> str:
        return ""

    def check(self) -> None:
        """Fail with BackendError (exit 3) when the server cannot be reached."""

    def storage_name(self, key: str) -> str:
        """Where ``key`` lives on the server: the prefixed key (a file, for FileSystemCache)."""
        return self.key_prefix + key

    def get(self, key: str, unsafe: bool = False) -> StoredValue | None:
        """The stored value of ``key`` (prefix applied), or None when absent."""
        raise NotImplementedError

    def set(self, key: str, value: Any, timeout: int | None) -> None:
        """Store as the app's ``cache.set`` would; ``None`` means the default timeout."""
        raise NotImplementedError

    def delete(
        self, keys: Iterable[str], on_progress: ProgressCallback | None = None
    ) -> int | None:
        """Delete ``keys``; how many existed, or None when the server cannot tell."""
        raise NotImplementedError

    def clear_plan(self) -> ClearPlan:
        raise NotImplementedError

    #: Whether ``scan_keys`` works (servers that can list keys: Redis).
    can_list_keys = False

    def require_key_listing(self) -> None:
        """Refuse, before anything changes, an operation that must find keys by shape."""
        if not self.can_list_keys:
            raise UsageError(
                f"{self.kind} cannot list its keys, so entries can only be named one by one here"
            )

    def count(self, pattern: str = "*", on_progress: ProgressCallback | None = None) -> int:
        """How many of the app's keys match ``pattern`` (after the prefix)."""
        self.require_key_listing()
        return 0

    def scan_keys(self, pattern: str) -> Iterator[str]:
        """Keys under the prefix whose rest matches the glob ``pattern`` (prefix
        removed), streamed. Only servers that can list keys (Redis) offer this."""
        self.require_key_listing()
        return iter(())

    def clear(self, dry_run: bool, on_progress: ProgressCallback | None = None) -> int | None:
        """Remove every key of the app's cache (or count them with ``dry_run``);
        how many, or None when the server cannot tell."""
        raise NotImplementedError


class Tally:
    """A running count that reports progress and stops cleanly on Ctrl-C.

    Inside ``partial_work`` the first Ctrl-C only raises a flag; the operation
    stops after the batch in flight, so the count it reports is exact and the
    connection is left in a clean state. A second Ctrl-C stops at once.
    """

    def __init__(self, on_progress: ProgressCallback | None = None) -> None:
        self.count = 0
        self.stop_requested = False
        self._on_progress = on_progress
        self._lock = threading.Lock()  # cluster sweeps count from one thread per primary

    def add(self, amount: int) -> None:
        with self._lock:
            self.count += amount
            count = self.count
        if self._on_progress is not None and threading.current_thread() is threading.main_thread():
            self._on_progress(count)
        if self.stop_requested:
            raise KeyboardInterrupt


@contextmanager
def partial_work(tally: Tally, done_as: str) -> Iterator[None]:
    """Attach how far a long operation got to whatever stops it, so Ctrl-C or a
    lost connection still reports the count (and a second run can finish)."""

    def request_stop(signum: int, frame: object) -> None:
        if tally.stop_requested:
            raise KeyboardInterrupt
        tally.stop_requested = True

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, request_stop)
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted: {tally.count} keys {done_as} before the stop; "
            "run the command again to finish",
            done={done_as: tally.count},
        ) from None
    except CachectlError as exc:
        exc.done.setdefault(done_as, tally.count)
        exc.message = f"{exc.message} ({tally.count} keys {done_as} before the failure)"
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
