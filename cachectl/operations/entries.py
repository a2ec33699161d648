"""Read, write and delete the app's entries, one by one or by pattern.

The results are NamedTuples: immutable, and cheaper to define than dataclasses on the
path every short command takes (bench/startup_bench.py)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from cachectl.backends.base import CacheBackend, ProgressCallback
from cachectl.codec.rendering import to_jsonable
from cachectl.codec.stored import StoredValue
from cachectl.config.settings import CacheSettings
from cachectl.errors import UsageError

if TYPE_CHECKING:
    from cachectl.backends.exclusions import Exclusions
    from cachectl.operations.clearing import Kept
    from cachectl.operations.nesting import Sibling


class EntriesRead(NamedTuple):
    """Each key asked for, and what is stored under it (None when absent)."""

    found: list[tuple[str, StoredValue | None]]

    @property
    def missing(self) -> list[str]:
        return [key for key, stored in self.found if stored is None]

    def document(self) -> dict[str, Any]:
        return {"ok": not self.missing, "results": [_value_document(k, s) for k, s in self.found]}


def _value_document(key: str, stored: StoredValue | None) -> dict[str, Any]:
    if stored is None:
        return {"key": key, "found": False}
    return {
        "key": key,
        "found": True,
        "type": type(stored.value).__name__ if stored.error is None else None,
        "encoding": stored.encoding,
        "value": to_jsonable(stored.value),
        "error": stored.error,
        #: The limit that stopped decoding early (the value then holds a marker).
        "truncated": stored.truncated,
    }


def checked_key(key: str) -> str:
    """A key as the app could have written it: text that encodes as UTF-8 (a name
    from a shell can hold any bytes; no cache client can send those as a key)."""
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"the key {key!r} is not valid UTF-8") from None
    return key


def read_entries(backend: CacheBackend, keys: Iterable[str], unsafe: bool = False) -> EntriesRead:
    """What the app's ``cache.get(key)`` would find, decoded without running code
    unless ``unsafe``."""
    found = []
    for key in keys:
        backend.check_key(checked_key(key))
        found.append((key, backend.get(key, unsafe=unsafe)))
    return EntriesRead(found)


def raw_chunks(backend: CacheBackend, key: str, stored: StoredValue) -> Iterator[bytes]:
    """The bytes stored for an entry, where the backend's client shows them, in pieces
    (a long Redis value streams: ``get --raw`` never holds it whole)."""
    if not backend.can_show_raw_bytes or stored.raw is None:
        raise UsageError(
            f"{backend.kind} clients do not expose the stored bytes; --raw is not available"
        )
    return backend.raw_chunks(key, stored)


class EntryStored(NamedTuple):
    key: str
    value_type: str
    #: The lifetime in seconds (0: never expires).
    timeout: int

    def document(self) -> dict[str, Any]:
        return {"ok": True, "key": self.key, "type": self.value_type, "timeout": self.timeout}


def store_entry(
    backend: CacheBackend, settings: CacheSettings, key: str, value: Any, ttl: int | None
) -> EntryStored:
    """Store as the app's ``cache.set(key, value, timeout=ttl)`` would."""
    backend.check_key(checked_key(key))
    backend.set(key, value, ttl)
    lifetime = ttl if ttl is not None else settings.default_timeout
    return EntryStored(key, type(value).__name__, lifetime)


class _Counted:
    """Counts the keys as the backend consumes them, so huge lists stay streamed."""

    def __init__(self, keys: Iterable[str], backend: CacheBackend) -> None:
        self.keys = keys
        self.backend = backend
        self.count = 0

    def __iter__(self) -> Iterator[str]:
        any_bytes = self.backend.deletes_any_key_bytes
        for key in self.keys:
            self.backend.check_key(key if any_bytes else checked_key(key))
            self.count += 1
            yield key


class KeysDeleted(NamedTuple):
    requested: int
    #: How many existed, or None when the server cannot tell (memcached).
    removed: int | None

    def document(self) -> dict[str, Any]:
        return {"ok": True, "requested": self.requested, "removed": self.removed}


def delete_listed(
    backend: CacheBackend, keys: Iterable[str], on_progress: ProgressCallback | None = None
) -> KeysDeleted:
    """Delete the keys as they stream in (tens of thousands from a deploy script)."""
    counted = _Counted(keys, backend)
    removed = backend.delete(counted, on_progress)
    return KeysDeleted(counted.count, removed)


class SweepPlan(NamedTuple):
    """What a delete by pattern will remove, for the question asked before it."""

    pattern: str
    target: str
    scope: str

    @property
    def question(self) -> str:
        return f"Remove {self.scope} from {self.target}"


class SweepDone(NamedTuple):
    plan: SweepPlan
    dry_run: bool
    removed: int
    #: What the ``--exclude`` globs of ``clear --pattern`` kept.
    kept: Kept

    def document(self) -> dict[str, Any]:
        return {
            "ok": True,
            "dry_run": self.dry_run,
            "pattern": self.plan.pattern,
            "target": self.plan.target,
            "removed": self.removed,
            **self.kept.document(),
        }


def plan_sweep(backend: CacheBackend, pattern: str) -> SweepPlan:
    """Refuse a backend that cannot find keys by pattern before anything is asked."""
    backend.require_key_listing()
    scope = f"keys under the prefix {backend.key_prefix!r} matching {pattern!r}"
    return SweepPlan(pattern, backend.describe(), scope)


def sweep(
    backend: CacheBackend,
    plan: SweepPlan,
    dry_run: bool,
    on_progress: ProgressCallback | None = None,
    exclusions: Exclusions | None = None,
    siblings: Sequence[Sibling] = (),
) -> SweepDone:
    """Remove (or count) the app's keys matching the plan's pattern, streaming, but
    those ``exclusions`` keep (``clear --pattern --exclude``, nested ``siblings``)."""
    from cachectl.operations.clearing import Kept

    removed = backend.delete_matching(plan.pattern, dry_run, on_progress, exclusions)
    kept = Kept(exclusions, backend.key_prefix, dry_run, plan.pattern, siblings)
    return SweepDone(plan, dry_run, removed, kept)
