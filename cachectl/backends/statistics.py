"""What is in a cache: the shared vocabulary of ``CacheBackend.stats``.

Flask-Caching gives each kind of entry a recognisable key shape (see
``cachectl.keys``), so a walk over the app's keys can tell memoized results
from their version keys, cached views and template fragments. Each backend
walks its own storage; the classifier, the TTL buckets and the report they fill
live here so every backend reports in the same terms.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from cachectl import keys

KINDS = ("memoize entries", "memoize versions", "views", "fragments", "other")
#: "expired": still on disk, missing to the app (FileSystemCache); listed only when seen.
TTL_BUCKETS = ("no expiry", "< 1 minute", "< 1 hour", "< 1 day", ">= 1 day", "expired")
#: Keys whose memory is measured (Redis: MEMORY USAGE) when no sample size is given.
DEFAULT_MEMORY_SAMPLE = 1000


def classify(rest: str) -> str:
    """The kind of entry a key (prefix removed) is, by the shape Flask-Caching gives it."""
    if rest.endswith(keys.VERSION_SUFFIX):
        return "memoize versions"
    if rest.startswith(keys.FRAGMENT_PREFIX):
        return "fragments"
    if rest.startswith("view/"):
        return "views"
    if keys.looks_like_memoize_entry(rest):
        return "memoize entries"
    return "other"


def ttl_bucket(seconds: float | None) -> str:
    """The bucket of a remaining lifetime (None: the entry never expires)."""
    if seconds is None:
        return "no expiry"
    if seconds < 0:
        return "expired"
    for limit, name in ((60, "< 1 minute"), (3600, "< 1 hour"), (86400, "< 1 day")):
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
