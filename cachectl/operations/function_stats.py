"""``stats --by-function``: which memoized function, view and fragment fills the cache.

A memoized result's key ends with the version(s) it was stored under: its
function's (six characters), then for a method called on an instance that
instance's. Each version is the value of a version key ``<namespace>_memver``, so
one census (``CacheBackend.census``: totals by key label, and every version key's
value) is enough to say, per function, how many results its current version
holds, their memory and lifetimes.

What keys cannot say: a version replaced by ``delete-memoized`` is named by no key
any more, so the results stored under it belong to no function that can be told;
they are counted together as "unknown function" (they stay until they expire, or
until a ``clear``). A method's results stored under a former *instance* version
still carry their function's current version, and are counted as that function's
old entries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from cachectl import keys
from cachectl.backends.statistics import LIFETIME_BUCKET_LIMITS, Census, GroupTally

_SUFFIX = keys.VERSION_SUFFIX.encode()
#: The shortest remaining lifetime in each TTL bucket (no expiry first).
_BUCKET_FLOORS = (math.inf, 0, *LIFETIME_BUCKET_LIMITS)


@dataclass
class FunctionRow:
    """One memoized function (its namespace) as the census found it."""

    function: str
    #: Its current version, None when its version key holds something else.
    version: str | None
    #: Seconds left on its version key (None: no expiry). When it expires, every
    #: result becomes unreachable at once.
    version_ttl: float | None
    #: Instance version keys found for it (a method's per-instance versions).
    instances: int = 0
    current: GroupTally = field(default_factory=GroupTally)
    old: GroupTally = field(default_factory=GroupTally)

    @property
    def outliving_version(self) -> int:
        """How many current results surely live longer than the version key: when it
        expires (Flask-Caching before 2.5 gives it the default timeout), they become
        unreachable at once and stay stored until they expire themselves."""
        if self.version_ttl is None:
            return 0
        return sum(
            count
            for count, shortest in zip(self.current.lifetimes, _BUCKET_FLOORS)
            if shortest >= self.version_ttl
        )


@dataclass
class NamedGroup:
    """Entries under one view path segment or one fragment name."""

    name: str
    tally: GroupTally


@dataclass
class FunctionStatistics:
    """The census arranged by function, view path and fragment name."""

    examined: int
    functions: list[FunctionRow]
    unknown_function: GroupTally
    views: list[NamedGroup]
    fragments: list[NamedGroup]
    version_keys: int
    other: GroupTally
    #: Average bytes of a measured key, for groups none of whose keys were measured.
    bytes_per_key: float | None
    memory_sampled: int
    memory_unavailable: str | None

    def memory(self, tally: GroupTally) -> int | None:
        return tally.memory_estimate(self.bytes_per_key)

    def sort_key(self, tally: GroupTally) -> tuple[int, int]:
        return (self.memory(tally) or 0, tally.count)

    def _tally_document(self, tally: GroupTally) -> dict[str, Any]:
        return {
            "entries": tally.count,
            "memory_bytes": self.memory(tally),
            "memory_sampled_keys": tally.memory_sampled,
            "ttl": tally.lifetime_document(),
        }

    def document(self, top: int | None) -> dict[str, Any]:
        """As ``--json`` prints it, each list sorted by memory and cut to ``top``."""
        rows = sorted(
            self.functions, key=lambda r: self.sort_key(_sum(r.current, r.old)), reverse=True
        )

        def named(groups: list[NamedGroup], what: str) -> list[dict[str, Any]]:
            ordered = sorted(groups, key=lambda g: self.sort_key(g.tally), reverse=True)
            return [{what: g.name, **self._tally_document(g.tally)} for g in ordered[:top]]

        return {
            "examined": self.examined,
            "functions": [
                {
                    "function": row.function,
                    "version": row.version,
                    "version_ttl": _seconds(row.version_ttl),
                    "instances": row.instances,
                    **self._tally_document(row.current),
                    "old_entries": row.old.count,
                    "old_memory_bytes": self.memory(row.old) if row.old.count else 0,
                    "outliving_version_key": row.outliving_version,
                }
                for row in rows[:top]
            ],
            "functions_listed": min(len(rows), top if top is not None else len(rows)),
            "functions_found": len(rows),
            # every function, listed or not: a risk is worth saying whatever the size
            "versions_expiring_first": [
                {
                    "function": row.function,
                    "version_ttl": _seconds(row.version_ttl),
                    "outliving_version_key": row.outliving_version,
                }
                for row in rows
                if row.outliving_version
            ],
            "unknown_function": self._tally_document(self.unknown_function),
            "views": named(self.views, "path"),
            "fragments": named(self.fragments, "name"),
            "version_keys": self.version_keys,
            "other": self._tally_document(self.other),
            "memory": {
                "sampled_keys": self.memory_sampled,
                "unavailable": self.memory_unavailable,
            },
        }


def _seconds(value: float | None) -> int | None:
    return None if value is None else int(value)


def _sum(*tallies: GroupTally) -> GroupTally:
    total = GroupTally()
    for tally in tallies:
        total.add(tally)
    return total


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _instance_owner(namespace: str, functions: set[str]) -> str | None:
    """The function whose instance namespace ``namespace`` is (``function.<id>``), if
    one of ``functions`` is such a prefix; the longest one wins."""
    at = len(namespace)
    while (at := namespace.rfind(".", 0, at)) > 0:
        if namespace[:at] in functions:
            return namespace[:at]
    return None


def by_function(census: Census) -> FunctionStatistics:
    """Arrange ``census`` by function (see the module's docstring), view and fragment."""
    namespaces = {
        _text(name[: -len(_SUFFIX)]): seen
        for name, seen in census.versions.items()
        if name.endswith(_SUFFIX)
    }
    owner_of: dict[str, str] = {}  # version -> the namespace whose version key holds it
    for namespace, seen in namespaces.items():
        if isinstance(seen.value, str) and keys.is_flask_caching_version(seen.value):
            owner_of.setdefault(seen.value, namespace)

    # Which namespaces are an instance's: shown by a result stored under a function's
    # version then theirs, else by the name (function namespace, a dot, the id).
    instance_of: dict[str, str] = {}
    for label in census.groups:
        if label[:1] == b"e" and len(label) == 1 + 2 * keys.VERSION_LENGTH:
            function = owner_of.get(_text(label[1:7]))
            instance = owner_of.get(_text(label[7:13]))
            if function is not None and instance is not None and instance != function:
                instance_of[instance] = function
    candidates = set(namespaces) - set(instance_of)
    for namespace in list(candidates):
        owner = _instance_owner(namespace, candidates)
        if owner is not None:
            instance_of[namespace] = owner
    rows = {
        namespace: FunctionRow(
            namespace,
            seen.value if isinstance(seen.value, str) else None,
            seen.ttl,
        )
        for namespace, seen in namespaces.items()
        if namespace not in instance_of
    }
    for function in instance_of.values():
        if function in rows:
            rows[function].instances += 1

    unknown, other = GroupTally(), GroupTally()
    views: list[NamedGroup] = []
    fragments: list[NamedGroup] = []
    version_keys = 0
    for label, tally in census.groups.items():
        kind = label[:1]
        if kind == b"e":
            _attribute(label[1:], tally, owner_of, instance_of, rows, unknown)
        elif kind == b"w":
            views.append(NamedGroup(_text(label[1:]), tally))
        elif kind == b"f":
            fragments.append(NamedGroup(_text(label[1:]), tally))
        elif kind == b"v":
            version_keys += tally.count
        else:
            other.add(tally)
    measured = _sum(*census.groups.values())
    return FunctionStatistics(
        examined=census.examined,
        functions=list(rows.values()),
        unknown_function=unknown,
        views=views,
        fragments=fragments,
        version_keys=version_keys,
        other=other,
        bytes_per_key=(
            measured.memory_bytes / measured.memory_sampled if measured.memory_sampled else None
        ),
        memory_sampled=measured.memory_sampled,
        memory_unavailable=census.memory_unavailable,
    )


def _attribute(
    suffix: bytes,
    tally: GroupTally,
    owner_of: dict[str, str],
    instance_of: dict[str, str],
    rows: dict[str, FunctionRow],
    unknown: GroupTally,
) -> None:
    """Count results stored under the version(s) ``suffix`` to their function: current
    when every version in it is current, old when the instance's is not (or the
    function's is not, the instance's being current)."""
    function = owner_of.get(_text(suffix[: keys.VERSION_LENGTH]))
    if function is not None and function in instance_of:
        function = None  # an instance's version standing first: no function's
    if len(suffix) == keys.VERSION_LENGTH:
        if function is not None and function in rows:
            rows[function].current.add(tally)
        else:
            unknown.add(tally)
        return
    instance = owner_of.get(_text(suffix[keys.VERSION_LENGTH :]))
    instance_function = instance_of.get(instance) if instance is not None else None
    if function is not None and function in rows:
        current = instance_function == function
        (rows[function].current if current else rows[function].old).add(tally)
    elif instance_function is not None and instance_function in rows:
        rows[instance_function].old.add(tally)  # the function's version was replaced
    else:
        unknown.add(tally)
