"""The one interface every cache backend offers to the commands.

Each backend wraps the cachelib object the app itself would use, so values are
written in exactly the app's format (a Redis cache without CACHE_SERIALIZER needs none:
cachectl writes cachelib's format itself, and saves loading cachelib); the backend adds
what an administrator needs and cachelib lacks (safe reads, counted deletes, a clear that
touches only the app's keys and streams instead of loading every key name at once).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

from cachectl.codec.stored import StoredValue
from cachectl.errors import BackendError, CachectlError, UsageError
from cachectl.runtime.wording import counted

if TYPE_CHECKING:
    from cachectl.backends.exclusions import Exclusions
    from cachectl.backends.statistics import CacheStats, Census
    from cachectl.backup.file_format import Entry
    from cachectl.backup.reader import RestoreCounts
    from cachectl.backup.writer import BackupWriter, Keeper
    from cachectl.codec.pickle_refs import Refs

#: Called with the running total of keys handled, so the CLI can show progress.
ProgressCallback = Callable[[int], None]

#: Keys sent to the server in one round trip by deletes and clears.
BATCH_SIZE = 1000


#: What a backslash must precede in a Redis-style glob (SCAN MATCH) to stand for itself.
_GLOB_SPECIALS = "\\*?[]"


def escape_glob(text: str) -> str:
    """Make ``text`` match only itself in a SCAN MATCH pattern (a prefix like
    ``app[1]_`` must not turn into a character class)."""
    return "".join("\\" + ch if ch in _GLOB_SPECIALS else ch for ch in text)


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
    #: Why this clear must not run, not even as a dry run, unless the operator
    #: explicitly asks to empty the whole database (``--flush-db``); None when no
    #: such consent is needed. Set when nothing tells the app's keys from others
    #: (a Redis cache without key prefix).
    needs_flush_db: str | None = None
    #: Whether ``--flush-db`` means anything here; asking for it anywhere else is
    #: a mistake to refuse, not to ignore.
    accepts_flush_db: bool = False
    #: Why a real clear (not a dry run) must not run without ``--yes``, even when a
    #: terminal could ask: removing other apps' data too deserves a deliberate
    #: flag rather than a reflexive "y". None when a confirmation is enough.
    needs_yes: str | None = None
    #: Why this clear cannot run at all as asked, not even as a dry run (memcached
    #: servers that cannot list their keys, or no key prefix): the refusal, naming
    #: what the operator can ask for instead (``--flush-all``). None when it can run.
    refused: str | None = None
    #: Something the operator should weigh before going ahead (shown with the
    #: confirmation and with ``--dry-run``), such as a directory mostly of other files.
    caution: str | None = None


class Lifetime(NamedTuple):
    """What is left of an entry's life, as ``lifetimes`` reads it."""

    #: False for a key that is not there (an expired entry is not there either: the
    #: app reads it as missing).
    found: bool
    #: Whole seconds left; None when the entry never expires (or is not there).
    seconds: int | None = None


MISSING = Lifetime(found=False)
NO_EXPIRY = Lifetime(found=True)


class StoredEntry(NamedTuple):
    """One entry as ``stored_entries`` reads it, for ``check-pickles``."""

    #: Its name on the server, prefix removed (a FileSystemCache file's name).
    name: bytes
    #: Its pickle, or None where the value is none (a number, plain bytes, another
    #: serializer's format) or was not read (``note`` says why).
    payload: bytes | None
    #: Its stored length in bytes.
    size: int
    note: str | None = None
    #: The names the pickle refers to, where the backend read them where the value lies
    #: (Redis: ``redis_pickles``); ``payload`` is then empty.
    refs: Refs | None = None
    #: How many entries this stands for: more than one where the backend only counted
    #: alike entries (``name`` empty, ``size`` their total): that name nothing, or, by
    #: ``stored_entries(totals=True)``, the same names under one census ``label``.
    entries: int = 1
    label: bytes | None = None


class CacheBackend:
    """What the commands can ask of a cache, whatever the server behind it."""

    #: Short backend name for messages and JSON ("redis", "filesystem", ...). For
    #: display only: what a backend can do is told by its capabilities and methods.
    kind = "cache"

    #: Whether ``get`` returns the bytes as stored (``StoredValue.raw``), so they
    #: can be written out unchanged (``get --raw``). Off unless a backend opts in:
    #: memcached clients hand back decoded values only.
    can_show_raw_bytes = False
    #: Whether ``delete`` takes a key that is not UTF-8 (bytes kept as surrogates, as
    #: ``scan_keys`` lists them), so ``keys | delete --from-file -`` removes it too.
    deletes_any_key_bytes = False

    def __init__(self, cache: Any) -> None:
        #: The cachelib object the app would use; writes go through it (None for a
        #: Redis cache that cachectl reads and writes with its own client).
        self.cache = cache

    def describe(self) -> str:
        """Where the cache lives, credentials masked."""
        raise NotImplementedError

    @property
    def key_prefix(self) -> str:
        return ""

    def check(self) -> None:
        """Fail with BackendError (exit 3) when the server cannot be reached."""

    def check_key(self, key: str) -> None:
        """Refuse (UsageError) a key this server cannot store, before it is sent:
        otherwise a get would report such a key as merely not found."""

    def storage_name(self, key: str) -> str:
        """Where ``key`` lives on the server: the prefixed key (a file, for FileSystemCache)."""
        return self.key_prefix + key

    def get(self, key: str, unsafe: bool = False) -> StoredValue | None:
        """The stored value of ``key`` (prefix applied), or None when absent."""
        raise NotImplementedError

    def raw_chunks(self, key: str, stored: StoredValue) -> Iterator[bytes]:
        """The stored bytes of ``key`` as ``get`` found them (``stored``), in pieces:
        a backend that read only the head of a long value (``stored.size``) streams the
        rest, never holding it whole (``get --raw``)."""
        if stored.raw is not None:
            yield stored.raw

    def set(self, key: str, value: Any, timeout: int | None) -> None:
        """Store as the app's ``cache.set`` would; ``None`` means the default timeout."""
        raise NotImplementedError

    def delete(
        self, keys: Iterable[str], on_progress: ProgressCallback | None = None
    ) -> int | None:
        """Delete ``keys``; how many existed, or None when the server cannot tell."""
        raise NotImplementedError

    def clear_plan(self) -> ClearPlan:
        """What ``clear`` would remove, and the consent it needs first
        (``needs_flush_db``, ``needs_yes``): callers check the plan, then clear."""
        raise NotImplementedError

    #: Whether ``scan_keys`` works (servers that can list keys: Redis; memcached
    #: through its LRU crawler, which ``require_key_listing`` asks each server about).
    can_list_keys = False

    def require_key_listing(self) -> None:
        """Refuse, before anything changes, an operation that must find keys by shape."""
        if not self.can_list_keys:
            raise UsageError(
                f"{self.kind} cannot list its keys, so entries can only be named one by one here"
            )

    def count(self, pattern: str = "*", on_progress: ProgressCallback | None = None) -> int:
        """How many of the app's keys match ``pattern`` (after the prefix): a dry run of
        ``delete_matching``, which refuses where keys cannot be listed."""
        return self.delete_matching(pattern, dry_run=True, on_progress=on_progress)

    def scan_keys(self, pattern: str) -> Iterator[str]:
        """Keys under the prefix whose rest matches the glob ``pattern`` (prefix
        removed), streamed. Only servers that can list keys (Redis) offer this."""
        self.require_key_listing()
        return iter(())

    def literal_pattern(self, text: str) -> str:
        """``text`` escaped to match only itself inside a glob given to ``scan_keys``,
        ``count`` or ``delete_matching``, so patterns can be built from literal
        parts (a key base that may hold ``*`` or ``[``) plus wildcards."""
        return escape_glob(text)

    def delete_matching(
        self,
        pattern: str,
        dry_run: bool,
        on_progress: ProgressCallback | None = None,
        exclusions: Exclusions | None = None,
    ) -> int:
        """Remove (or with ``dry_run`` count) the app's keys whose rest matches the
        glob ``pattern``, streamed, whatever their number; how many. Keys that match
        a glob of ``exclusions`` stay, counted there. Ctrl-C and server errors report
        the count reached (``partial_work``). Only servers that can list keys offer
        this; the others refuse before anything changes."""
        self.require_key_listing()
        raise NotImplementedError

    #: Why ``clear --exclude GLOB`` cannot be applied to this cache (None where it
    #: can): the globs match key names, so the backend must find its keys by name.
    cannot_exclude: str | None = (
        "this cache cannot list its keys by name, so --exclude GLOB cannot be applied"
    )

    def clear_except(
        self, exclusions: Exclusions, dry_run: bool, on_progress: ProgressCallback | None = None
    ) -> int:
        """``clear``, but the keys matching a glob of ``exclusions`` stay (counted
        there); how many went. Backends with ``cannot_exclude`` refuse."""
        raise UsageError(self.cannot_exclude or f"{self.kind} cannot apply --exclude")

    def stats(self, sample: int | None, on_progress: ProgressCallback | None = None) -> CacheStats:
        """What the cache holds, by kind of entry, by remaining lifetime and in
        memory; with ``sample``, only that many entries are examined and the rest
        extrapolated. Needs a backend that can walk its entries."""
        raise UsageError(f"{self.kind} cannot list its keys, so it has no statistics by key")

    def census(
        self,
        pattern: str = "*",
        sample: int | None = None,
        on_progress: ProgressCallback | None = None,
        exclusions: Exclusions | None = None,
        detail: bool = True,
    ) -> Census:
        """Totals by label (``statistics.census_label``) of the keys under the prefix
        matching ``pattern``, and the version keys' values: what ``stats
        --by-function`` and ``show-memoized`` read (plain ``stats``, by kind only,
        passes ``detail=False``). Needs the key names, which a
        backend that stores a hash of each key (FileSystemCache) does not have."""
        raise UsageError(
            f"{self.kind} cannot list its keys, so it cannot tell which function, view "
            "or fragment an entry belongs to"
        )

    def stats_except(
        self,
        exclusions: Exclusions,
        sample: int | None,
        on_progress: ProgressCallback | None = None,
    ) -> CacheStats:
        """``stats``, leaving out (and counting in ``exclusions``) the keys its globs keep:
        only a backend that lists key names can tell them apart."""
        raise UsageError(self.cannot_exclude or f"{self.kind} cannot tell its keys apart")

    def clear(self, dry_run: bool, on_progress: ProgressCallback | None = None) -> int | None:
        """Remove every key of the app's cache (or count them with ``dry_run``);
        how many, or None when the server cannot tell. Does what ``clear_plan``
        describes, without asking: the caller must have honoured the plan's
        ``needs_flush_db`` and ``needs_yes`` first."""
        raise NotImplementedError

    #: Whether ``clear --flush-all`` (empty the whole server, every app's keys) is
    #: offered: memcached, whose ``flush_all`` is the only whole-server clear.
    can_flush_all = False

    def flush_all_plan(self) -> ClearPlan:
        """What ``clear --flush-all`` would remove (offered where ``can_flush_all``)."""
        raise UsageError(
            f"--flush-all applies to memcached only (its flush_all); {self.kind} clears "
            "with clear alone"
        )

    def flush_all(self, dry_run: bool) -> int | None:
        """Empty the whole server, every app's keys (after ``flush_all_plan``)."""
        raise NotImplementedError

    def stored_entries(self, limit: int, totals: bool = False) -> Iterator[StoredEntry]:
        """Every entry under the prefix with its pickle (none read past ``limit`` bytes),
        streamed: what ``check-pickles`` reads. Needs a backend that can walk them.
        ``totals``: alike entries may come summed (``StoredEntry.label``), for a census."""
        raise UsageError(f"{self.kind} cannot list its entries, so they cannot be read in turn")

    def delete_entries(self, names: list[bytes]) -> int:
        """Remove the entries ``stored_entries`` named ``names``; how many went."""
        return self.delete([n.decode("utf-8", "surrogateescape") for n in names]) or 0

    # --- lifetimes: ttl, expire, persist, prune ----------------------------------------

    #: Whether ``lifetimes`` can read how long entries have left.
    can_read_lifetimes = False
    #: Whether ``set_lifetime`` can change an entry's expiry, its value untouched.
    can_set_lifetimes = False
    #: Whether ``prune`` is needed and offered: a cache whose expired entries stay
    #: until something removes them (FileSystemCache); servers expire entries themselves.
    can_prune = False

    def refuse(self, message: str) -> NoReturn:
        """A capability this backend lacks: exit 2, before anything changes."""
        raise UsageError(message)

    def claim_once(self, once_id: str, value: str, ttl: int) -> str | None:
        """``--once-per``: claim ``once_id`` on this cache's server for ``ttl`` seconds
        with ``value`` (``backends.once_markers``): None when claimed now, else the value
        of the claim that holds it. Refused where no server outside this process holds it."""
        self.refuse(
            f"--once-per needs a cache server every host shares (Redis, Valkey, memcached, "
            f"FileSystemCache); {self.describe()} cannot hold its claim"
        )

    def release_once(self, once_id: str, value: str) -> bool:
        """Give up this run's claim of ``once_id`` if ``value`` still holds it."""
        return False

    def require_lifetimes(self, change: bool) -> None:
        """Refuse reading (or, with ``change``, setting) lifetimes where it cannot be done."""
        if change and not self.can_set_lifetimes:
            self.refuse(
                f"{self.describe()} offers no way to change an entry's expiry without "
                "rewriting its value"
            )
        if not change and not self.can_read_lifetimes:
            self.refuse(f"{self.describe()} offers no way to read an entry's remaining lifetime")

    def require_prune(self) -> None:
        if not self.can_prune:
            self.refuse(
                f"prune is for FileSystemCache, whose expired files stay on disk until the "
                f"app prunes them; {self.describe()} removes expired entries itself"
            )

    def lifetimes(self, keys: list[str]) -> list[Lifetime]:
        """How long each key (prefix applied) has left, in the order given."""
        self.require_lifetimes(change=False)
        raise NotImplementedError

    def set_lifetime(self, key: str, seconds: int | None) -> bool:
        """Make ``key`` expire ``seconds`` from now (None: never), leaving its value as
        it is; False, with nothing changed, when the key is not there."""
        self.require_lifetimes(change=True)
        raise NotImplementedError

    def prune(self, dry_run: bool, on_progress: ProgressCallback | None = None) -> int:
        """Remove (or with ``dry_run`` count) the expired entries; how many."""
        self.require_prune()
        raise NotImplementedError

    # --- backups: --backup FILE, restore -------------------------------------------------

    #: Why this backend cannot keep what it removes (None where it can): a backup must
    #: hold the bytes as stored, which only the backends that read them raw can give.
    cannot_back_up: str | None = (
        "this cache hands back decoded values only, so --backup cannot keep the entries "
        "it removes byte for byte"
    )
    #: The family a backup file names, and the only one its entries restore into.
    backup_family = "cache"
    #: Where removed and overwritten entries go first (``--backup``); None: nowhere.
    backup: BackupWriter | None = None
    _backup_labels: dict[str, Any] | None = None

    def attach_backup(self, writer: BackupWriter, labels: dict[str, Any]) -> None:
        """Keep every entry this backend removes or overwrites in ``writer``'s file;
        ``labels`` (the cache's name, its Flask-Caching generation) go in its header.
        Refused, before anything changes, where the backend cannot keep entries."""
        if self.cannot_back_up is not None:
            raise UsageError(f"--backup: {self.cannot_back_up}")
        self.backup = writer
        self._backup_labels = dict(labels)

    def backup_section(self) -> dict[str, Any]:
        """How a backup file names this cache: family, server (no credentials), prefix."""
        return {"family": self.backup_family, "server": self.describe(), "prefix": self.key_prefix}

    def keeper(self) -> Keeper | None:
        """Where to put entries before removing them; None without ``--backup``. The file
        is created with the first entries kept: asking alone writes nothing."""
        if self.backup is None:
            return None
        return self.backup.keeper({**self.backup_section(), **(self._backup_labels or {})})

    def restore(
        self, entries: list[Entry], taken_ms: int, replace: bool, dry_run: bool
    ) -> RestoreCounts:
        """Put ``entries`` (taken at ``taken_ms``) back with the lifetime they had left
        minus the time since; a key that exists now stays unless ``replace``."""
        if self.restores_laid_out:
            from cachectl.backup.file_format import entry_bytes

            laid_out = b"".join(entry_bytes(entry) for entry in entries)
            return self.restore_laid_out(len(entries), laid_out, taken_ms, replace, dry_run)
        raise UsageError(f"--backup files cannot be restored into {self.kind}")

    #: Whether ``restore_laid_out`` takes a chunk's entries as the file lays them out
    #: (no Python object per entry: a whole-file restore's cost is then the server's).
    restores_laid_out = False

    def restore_laid_out(
        self, count: int, laid_out: bytes, taken_ms: int, replace: bool, dry_run: bool
    ) -> RestoreCounts:
        """As ``restore``, for ``count`` entries in the file's layout."""
        raise UsageError(f"--backup files cannot be restored into {self.kind}")

    def finish_restore(self) -> RestoreCounts:
        """What the entries handed over last did, where a backend sends them ahead of
        their replies; called once a restore ends, however it ends."""
        from cachectl.backup.reader import RestoreCounts

        return RestoreCounts()


class Tally:
    """A running count that reports progress and stops cleanly on a signal.

    Inside ``partial_work`` the first signal (Ctrl-C, SIGTERM, SIGHUP) only raises a
    flag; the operation stops after the batch in flight, so the count it reports is
    exact and the connection is left in a clean state. A second one stops at once.
    """

    def __init__(self, on_progress: ProgressCallback | None = None) -> None:
        self.count = 0
        self.stop_requested = False
        self._on_progress = on_progress
        self._lock = threading.Lock()  # cluster sweeps count from one thread per primary

    def add(self, amount: int, stop: bool = True) -> None:
        """Count ``amount`` more; with ``stop``, honour a requested stop here. A caller
        with work still in flight (a Redis sweep's other lane) passes False and stops
        once the replies it waits for are counted, so the count stays exact."""
        with self._lock:
            self.count += amount
            count = self.count
        if self._on_progress is not None and threading.current_thread() is threading.main_thread():
            self._on_progress(count)
        if stop and self.stop_requested:
            raise KeyboardInterrupt


@contextmanager
def partial_work(tally: Tally, done_as: str) -> Iterator[None]:
    """Attach how far a long operation got to whatever stops it, so a signal (Ctrl-C,
    SIGTERM, SIGHUP: ``cachectl.runtime.interrupts``) or a lost connection still reports the
    count (and a second run can finish). The first signal stops it after the batch in
    flight (an exact count); a second stops it at once (a lower bound)."""
    from cachectl.runtime import interrupts

    def request_stop() -> None:
        tally.stop_requested = True

    try:
        with interrupts.stop_at_safe_points(request_stop):
            yield
    except KeyboardInterrupt as exc:
        if interrupts.stopped_at_once(exc):
            raise interrupts.as_error(
                exc,
                f"at least {counted(tally.count, 'key')} {done_as} before the stop; "
                "run the command again to finish",
                done={f"{done_as}_at_least": tally.count},
            ) from None
        raise interrupts.as_error(
            exc,
            f"{counted(tally.count, 'key')} {done_as} before the stop; "
            "run the command again to finish",
            done={done_as: tally.count},
        ) from None
    except BackendError as exc:
        # The server may have run the step whose reply was lost: a lower bound.
        exc.done.setdefault(f"{done_as}_at_least", tally.count)
        exc.message = (
            f"{exc.message} (at least {counted(tally.count, 'key')} {done_as} before the failure)"
        )
        raise
    except CachectlError as exc:
        exc.done.setdefault(done_as, tally.count)
        exc.message = f"{exc.message} ({counted(tally.count, 'key')} {done_as} before the failure)"
        raise
