"""What ``show-memoized`` reports: a memoized function's version keys, how many results
its current version holds, and, for one call, that call's stored result.

Read only: nothing is written, not even the version key a missing one would need (the
library creates it on the first call; here its absence means nothing is cached). The
keys come from the same rules as ``delete-memoized`` (``operations.memoized``).

The counts come from one census of the app's keys (``operations.function_stats``, as
``stats --by-function`` takes it): the results under the current version(s), their
memory and TTLs, and a method's results under a former instance version. Results under
a version the *function* no longer has cannot be told apart from other functions' by
their key (a hash of the name and the arguments, then the version), so they are not
counted per function; ``delete-memoized --purge`` removes the ones under the version it
replaces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cachectl import keys
from cachectl.backends.base import CacheBackend
from cachectl.backends.statistics import GroupTally
from cachectl.codec.rendering import to_jsonable
from cachectl.codec.stored import StoredValue
from cachectl.config.settings import CacheSettings
from cachectl.errors import UsageError
from cachectl.operations.function_stats import by_function
from cachectl.operations.memoized import MemoizedCall, MemoizedInvalidator


@dataclass
class VersionKey:
    """A version key (``<namespace>_memver``) as it stands on the server."""

    key: str
    #: The version stored there, or None when there is none (nothing cached).
    version: str | None
    #: Seconds left, None for no expiry; "unknown" where the backend cannot say.
    ttl: int | str | None = "unknown"

    def document(self) -> dict[str, Any]:
        return {"key": self.key, "version": self.version, "ttl": self.ttl}


@dataclass
class MemoizedShown:
    """A memoized function as the cache holds it, and optionally one call of it."""

    function: str
    versions: list[VersionKey]
    #: Results stored under the current version(s); None where they cannot be counted.
    current_entries: int | None = None
    #: Their memory (bytes, sampled and extrapolated on a large Redis) and TTL buckets.
    current_memory: int | None = None
    current_ttl: dict[str, int] = field(default_factory=dict)
    #: A method's results under a former instance version (0 for a function without
    #: self; None for one instance, whose former versions no key names).
    old_entries: int | None = None
    old_memory: int | None = None
    #: Why ``current_entries`` is None (a backend that cannot list its keys).
    not_counted: str | None = None
    #: For one call: its entry key, and what is stored there (None: not there).
    call_key: str | None = None
    call_stored: StoredValue | None = None
    call_ttl: int | str | None = None
    #: Whether one call was asked about (ARGs given), not only the function.
    has_call: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def cached(self) -> bool:
        """Whether what was asked about is in the cache: the call's result, or (for the
        whole function) a version, without which nothing can be stored."""
        if self.has_call:
            return self.call_stored is not None
        return all(version.version is not None for version in self.versions)

    def document(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "ok": self.cached,
            "function": self.function,
            "version_keys": [version.document() for version in self.versions],
            "current_entries": self.current_entries,
            "current_memory_bytes": self.current_memory,
            "current_ttl": self.current_ttl,
            "old_entries": self.old_entries,
            "old_memory_bytes": self.old_memory,
            "not_counted": self.not_counted,
            "notes": self.notes,
        }
        if self.has_call:
            stored = self.call_stored
            document["call"] = {
                "key": self.call_key,
                "found": stored is not None,
                "ttl": self.call_ttl,
                "value": to_jsonable(stored.value) if stored is not None else None,
                "encoding": stored.encoding if stored is not None else None,
                "error": stored.error if stored is not None else None,
            }
        return document


def _ttl(backend: CacheBackend, key: str) -> int | str | None:
    if not backend.can_read_lifetimes:
        return "unknown"
    try:
        backend.require_lifetimes(change=False)
    except UsageError:  # a memcached set-up whose expiries cannot be read
        return "unknown"
    left = backend.lifetimes([key])[0]
    return left.seconds if left.found else "missing"


def show_memoized(
    backend: CacheBackend,
    settings: CacheSettings,
    call: MemoizedCall,
    *,
    app: Any = None,
    unsafe: bool = False,
) -> MemoizedShown:
    """The version key(s) of ``call``'s function (and instance), how many results the
    current version holds where the backend can list keys, and with arguments the
    stored result of that call, decoded safely unless ``unsafe``."""
    invalidator = MemoizedInvalidator(backend, settings, app)
    fname, instance = invalidator.namespaces(call)
    shown = MemoizedShown(call.function.dotted, [], has_call=call.has_call)
    for namespace in (fname, instance):
        if namespace is None:
            continue
        key = keys.version_key(namespace)
        version = invalidator.read_version(key)
        ttl = _ttl(backend, key) if version is not None else "missing"
        shown.versions.append(VersionKey(key, version, ttl))
    if any(version.version is None for version in shown.versions):
        missing = next(v.key for v in shown.versions if v.version is None)
        shown.notes.append(f"nothing is cached: no version under {missing}")
    elif backend.can_list_keys:
        _count_entries(shown, backend, call, fname, instance)
    else:
        shown.not_counted = f"{backend.kind} cannot list its keys, so they are not counted"
    if call.has_call:
        call.function.check_call(call.args, call.kwargs)
        shown.call_key = invalidator.entry_key(call)
        if shown.call_key is not None:
            shown.call_stored = backend.get(shown.call_key, unsafe=unsafe)
            if shown.call_stored is not None:
                shown.call_ttl = _ttl(backend, shown.call_key)
    return shown


def _count_entries(
    shown: MemoizedShown,
    backend: CacheBackend,
    call: MemoizedCall,
    fname: str,
    instance: str | None,
) -> None:
    """The results under the current version(s), their memory and TTLs. For one instance,
    or a function that takes no ``self``, a census of the keys ending with those versions
    (the server matches them, as ``--purge`` does); for a method as a whole, the
    function's row of ``stats --by-function`` (its former instance versions need every
    version key)."""
    versions = "".join(version.version or "" for version in shown.versions)
    function = call.function
    narrow = instance is not None or (function.signature is not None and not function.is_method)
    if narrow:
        hash_part = "?" * keys.ENTRY_HASH_LENGTH
        census = backend.census(hash_part + backend.literal_pattern(versions) + "*")
    else:
        census = backend.census()
    found = by_function(census)
    current, old = GroupTally(), None
    if narrow:
        current = census.groups.get(b"e" + versions.encode(), current)
        if instance is None:
            old = GroupTally()  # a function without self has no instance versions
    else:
        row = next((row for row in found.functions if row.function == fname), None)
        if row is not None:
            current, old = row.current, row.old
    shown.current_entries = current.count
    shown.current_memory = found.memory(current)
    shown.current_ttl = current.lifetime_document()
    if old is not None:
        shown.old_entries = old.count
        shown.old_memory = found.memory(old) if old.count else 0
