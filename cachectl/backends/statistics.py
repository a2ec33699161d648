"""What is in a cache: the shared vocabulary of ``CacheBackend.stats``.

Flask-Caching gives each kind of entry a recognisable key shape (see
``cachectl.keys``), so a walk over the app's keys can tell memoized results
from their version keys, cached views and template fragments. Each backend
walks its own storage; the classifier, the TTL buckets and the report they fill
live here so every backend reports in the same terms.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from cachectl import keys

KINDS = ("memoize entries", "memoize versions", "views", "fragments", "other")
#: "expired": still on disk, missing to the app (FileSystemCache); listed only when seen.
TTL_BUCKETS = ("no expiry", "< 1 minute", "< 1 hour", "< 1 day", ">= 1 day", "expired")
#: Where one TTL bucket ends and the next begins, in seconds.
LIFETIME_BUCKET_LIMITS = (60, 3600, 86400)


def ttl_bucket(seconds: float | None) -> str:
    """The bucket of a remaining lifetime (None: the entry never expires)."""
    if seconds is None:
        return "no expiry"
    if seconds < 0:
        return "expired"
    for limit, name in zip(LIFETIME_BUCKET_LIMITS, TTL_BUCKETS[1:4]):
        if seconds < limit:
            return name
    return ">= 1 day"


@dataclass
class CacheStats:
    """Counts over the examined entries; with a sample, ``document`` extrapolates them."""

    total: int
    examined: int
    kinds: Counter = field(default_factory=Counter)
    ttls: Counter = field(default_factory=Counter)
    memory_sampled: int = 0
    memory_bytes: int = 0
    #: Why memory could not be measured (a user not allowed MEMORY USAGE), if so.
    memory_unavailable: str | None = None

    @property
    def estimated(self) -> bool:
        return self.examined < self.total

    def scaled(self, count: int) -> int:
        """A count over the examined keys, extrapolated to all of them."""
        return round(count * self.total / self.examined) if self.examined else 0

    @property
    def memory_estimate(self) -> int | None:
        if not self.memory_sampled:
            return None
        return round(self.memory_bytes / self.memory_sampled * self.total)

    def document(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "examined": self.examined,
            "estimated": self.estimated,
            "kinds": {kind: self.scaled(self.kinds[kind]) for kind in KINDS},
            "ttl": {
                bucket: self.scaled(self.ttls[bucket])
                for bucket in TTL_BUCKETS
                if bucket != "expired" or self.ttls[bucket]
            },
            "memory": {
                "sampled_keys": self.memory_sampled,
                "sampled_bytes": self.memory_bytes,
                "estimated_total_bytes": self.memory_estimate,
                "unavailable": self.memory_unavailable,
            },
        }


# --- the census: totals by label, as one pass over the keys gathers them ------------------

_FRAGMENT_VARY = re.compile(rb"_[0-9]")
_FIRST_SEGMENT = re.compile(rb"/[^/]*")
_TRAILING_HEX = re.compile(rb"[0-9A-Fa-f]+\Z")
_ENTRY_CHARACTERS = re.compile(rb"[A-Za-z0-9+/=]*\Z")
#: Lengths of the hex digests (md5, sha1, sha256, sha512) that ``query_string=True``
#: appends to a view's path.
_DIGEST_LENGTHS = (32, 40, 64, 128)
_ENTRY_LENGTHS = {keys.ENTRY_HASH_LENGTH + keys.VERSION_LENGTH * n for n in (1, 2)}
#: The kind of entry each label's first byte stands for.
LABEL_KINDS = {
    ord("e"): "memoize entries",
    ord("v"): "memoize versions",
    ord("w"): "views",
    ord("f"): "fragments",
    ord("o"): "other",
}
#: Past this many view paths or fragment names, further ones are counted together
#: (under the label's kind byte and ``*``), so a site whose every page is its own
#: first path segment cannot make the census grow with its keys.
MAX_NAMES_PER_KIND = 10_000
#: A view path or fragment name is cut to this many bytes (a label's length travels
#: in two bytes, and a name this long is already past reading in a table).
MAX_NAME_BYTES = 200


def census_label(rest: bytes) -> bytes:
    """What a key (prefix removed) is counted under: ``v`` a version key; ``e`` and its
    version(s) a memoized result; ``w`` and its first path segment a cached view (a
    query string's digest taken off; before 2.5 such a key is the path and the digest,
    without ``view/``); ``f`` and its name a template fragment (the name ends where
    ``_`` and a digit begin the vary_on values); ``o`` anything else.

    ``redis_census.CENSUS_SCRIPT`` labels keys inside Redis by the same rules; a test
    holds the two to the same labels."""
    if rest.endswith(keys.VERSION_SUFFIX.encode()):
        return b"v"
    if rest.startswith(_FRAGMENT_PREFIX):
        name = rest[len(_FRAGMENT_PREFIX) :]
        vary = _FRAGMENT_VARY.search(name)
        return b"f" + (name[: vary.start()] if vary else name)[:MAX_NAME_BYTES]
    legacy_query = rest.startswith(b"/") and _is_digested(rest)
    if rest.startswith(b"view/") or legacy_query:
        path = rest if legacy_query else rest[5:]
        first = _FIRST_SEGMENT.match(path)
        segment = first.group() if first else path
        if len(segment) == len(path):
            digest = _TRAILING_HEX.search(segment)
            if digest:
                strip = max((n for n in _DIGEST_LENGTHS if len(digest.group()) >= n), default=0)
                segment = segment[: len(segment) - strip]
        return b"w" + segment[:MAX_NAME_BYTES]
    if len(rest) in _ENTRY_LENGTHS and _ENTRY_CHARACTERS.match(rest):
        return b"e" + rest[keys.ENTRY_HASH_LENGTH :]
    return b"o"


_FRAGMENT_PREFIX = keys.FRAGMENT_PREFIX.encode()


def _is_digested(name: bytes) -> bool:
    """Whether ``name`` ends with a hex digest as long as an md5 one or longer."""
    digest = _TRAILING_HEX.search(name)
    return digest is not None and len(digest.group()) >= _DIGEST_LENGTHS[0]


def lifetime_index(seconds: float | None) -> int:
    """The position in ``TTL_BUCKETS`` of a remaining lifetime (None: no expiry)."""
    if seconds is None:
        return 0
    for index, limit in enumerate(LIFETIME_BUCKET_LIMITS, start=1):
        if seconds < limit:
            return index
    return 4


class GroupTally:
    """The keys counted under one label: how many, by TTL bucket, and the memory of
    those sampled."""

    __slots__ = ("count", "lifetimes", "memory_bytes", "memory_sampled")

    def __init__(self) -> None:
        self.count = 0
        #: One count per bucket of ``TTL_BUCKETS`` but "expired".
        self.lifetimes = [0] * 5
        self.memory_sampled = 0
        self.memory_bytes = 0

    def add(self, other: GroupTally) -> None:
        self.count += other.count
        self.lifetimes = [a + b for a, b in zip(self.lifetimes, other.lifetimes)]
        self.memory_sampled += other.memory_sampled
        self.memory_bytes += other.memory_bytes

    def memory_estimate(self, bytes_per_key: float | None = None) -> int | None:
        """The memory of all ``count`` keys, from those sampled here, else from
        ``bytes_per_key`` (an average over more keys), else None."""
        if self.memory_sampled:
            return round(self.memory_bytes / self.memory_sampled * self.count)
        if bytes_per_key is not None:
            return round(bytes_per_key * self.count)
        return None

    def lifetime_document(self) -> dict[str, int]:
        return {bucket: n for bucket, n in zip(TTL_BUCKETS, self.lifetimes) if n}


class VersionSeen(NamedTuple):
    """A version key as the walk found it."""

    #: What it holds: the stored bytes as the walk read them, then the version text
    #: once the backend has decoded them (None when it is not a short string).
    value: Any
    #: Seconds left, None for no expiry.
    ttl: float | None


@dataclass
class Census:
    """What one pass over the app's keys found, totalled by ``census_label``."""

    groups: dict[bytes, GroupTally] = field(default_factory=dict)
    #: Each version key (prefix removed) and what it holds.
    versions: dict[bytes, VersionSeen] = field(default_factory=dict)
    examined: int = 0
    #: Keys found, where only some were examined (``--sample``); None: all were.
    total: int | None = None
    memory_unavailable: str | None = None

    #: How many view paths and fragment names have a group of their own.
    names_per_kind: Counter = field(default_factory=Counter)

    def group(self, label: bytes) -> GroupTally:
        tally = self.groups.get(label)
        if tally is not None:
            return tally
        kind = label[:1]
        if kind in (b"w", b"f"):
            if self.names_per_kind[kind] >= MAX_NAMES_PER_KIND:
                label = kind + b"*"  # counted together from here on
                return self.groups.setdefault(label, GroupTally())
            self.names_per_kind[kind] += 1
        tally = self.groups[label] = GroupTally()
        return tally

    def add_key(
        self, rest: bytes, seconds: float | None, memory: int | None, detail: bool = True
    ) -> bytes:
        """Count one key (under its kind alone without ``detail``); its label."""
        label = census_label(rest)
        if not detail:
            label = label[:1]
        tally = self.group(label)
        tally.count += 1
        tally.lifetimes[lifetime_index(seconds)] += 1
        if memory is not None:
            tally.memory_sampled += 1
            tally.memory_bytes += memory
        self.examined += 1
        return label

    def add_totals(self, label: bytes, totals: tuple[int, ...]) -> None:
        """Count keys the census script already totalled under ``label``: its eight
        numbers (count, the five TTL buckets, keys sampled, bytes sampled). The hot
        path of a large census, written out for speed."""
        tally = self.groups.get(label) or self.group(label)
        count, forever, minute, hour, day, longer, sampled, used = totals
        tally.count += count
        lifetimes = tally.lifetimes
        lifetimes[0] += forever
        lifetimes[1] += minute
        lifetimes[2] += hour
        lifetimes[3] += day
        lifetimes[4] += longer
        tally.memory_sampled += sampled
        tally.memory_bytes += used
        self.examined += count

    def add_version(self, name: bytes, value: Any, ttl: float | None) -> None:
        self.versions[name] = VersionSeen(value, ttl)

    def merge(self, other: Census) -> None:
        for label, tally in other.groups.items():
            self.group(label).add(tally)
        self.versions.update(other.versions)
        self.examined += other.examined
        self.memory_unavailable = self.memory_unavailable or other.memory_unavailable

    def stats(self) -> CacheStats:
        """The totals by kind and lifetime that ``stats`` shows."""
        total = self.examined if self.total is None else self.total
        found = CacheStats(total=total, examined=self.examined)
        found.memory_unavailable = self.memory_unavailable
        for label, tally in self.groups.items():
            found.kinds[LABEL_KINDS[label[0]]] += tally.count
            found.ttls.update(tally.lifetime_document())
            found.memory_sampled += tally.memory_sampled
            found.memory_bytes += tally.memory_bytes
        return found
