"""What is in a cache: how many entries of each kind, how long they live, how much memory.

Flask-Caching gives each kind of entry a recognisable key shape (see
``cachectl.keys``), so a walk over the app's keys can tell memoized results
from their version keys, cached views and template fragments. The walk streams
(SCAN, with TTLs fetched a batch per round trip) and can stop after a sample,
extrapolating from it.
"""

from __future__ import annotations

import os
import struct
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cachectl import keys
from cachectl.backends.base import CacheBackend, ProgressCallback, Tally, batched, partial_work
from cachectl.errors import UsageError

KINDS = ("memoize entries", "memoize versions", "views", "fragments", "other")
TTL_BUCKETS = ("no expiry", "< 1 minute", "< 1 hour", "< 1 day", ">= 1 day")
#: Keys whose memory is measured with MEMORY USAGE when no --sample is given.
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
    if seconds is None or seconds < 0:
        return "no expiry"
    for limit, name in ((60, "< 1 minute"), (3600, "< 1 hour"), (86400, "< 1 day")):
        if seconds < limit:
            return name
    return ">= 1 day"


@dataclass
class CacheStats:
    total: int
    examined: int
    kinds: Counter = field(default_factory=Counter)
    ttls: Counter = field(default_factory=Counter)
    memory_sampled: int = 0
    memory_bytes: int = 0

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
            "ttl": {bucket: self.scaled(self.ttls[bucket]) for bucket in TTL_BUCKETS},
            "memory": {
                "sampled_keys": self.memory_sampled,
                "sampled_bytes": self.memory_bytes,
                "estimated_total_bytes": self.memory_estimate,
            },
        }


def redis_stats(
    backend: Any, sample: int | None, on_progress: ProgressCallback | None = None
) -> CacheStats:
    """Walk the keys under the prefix: kinds and TTLs a batch per round trip, memory
    of the first keys with MEMORY USAGE. With ``sample``, only that many keys are
    examined and the total comes from a counting sweep."""
    client = backend.client
    prefix = backend.key_prefix
    memory_budget = sample if sample is not None else DEFAULT_MEMORY_SAMPLE
    tally = Tally(on_progress)
    stats = CacheStats(total=0, examined=0)
    names: Iterator[str] = backend.scan_keys("*")
    with partial_work(tally, "examined"), backend.server_errors():
        for batch in batched(names):
            if sample is not None:
                batch = batch[: max(0, sample - stats.examined)]
                if not batch:
                    break
            pipe = client.pipeline(transaction=False)
            for name in batch:
                pipe.ttl(prefix + name)
            measured = batch[: max(0, memory_budget - stats.memory_sampled)]
            for name in measured:
                pipe.memory_usage(prefix + name, samples=0)
            replies = pipe.execute()
            for name, ttl in zip(batch, replies, strict=False):
                stats.kinds[classify(name)] += 1
                stats.ttls[ttl_bucket(ttl if ttl is not None and ttl >= 0 else None)] += 1
            usage = [value for value in replies[len(batch) :] if value is not None]
            stats.memory_sampled += len(usage)
            stats.memory_bytes += sum(usage)
            stats.examined += len(batch)
            tally.add(len(batch))
    stats.total = stats.examined
    if sample is not None and stats.examined >= sample:
        stats.total = backend.count()
    return stats


def filesystem_stats(backend: Any, sample: int | None) -> CacheStats:
    """Cache files: their count, expiry from each file's header, size on disk.
    File names are hashes, so the kind of entry cannot be told."""
    stats = CacheStats(total=0, examined=0)
    now = time.time()
    for path in backend.cache_files():
        stats.total += 1
        if sample is not None and stats.examined >= sample:
            continue
        try:
            with open(path, "rb") as handle:
                (expires,) = struct.unpack("I", handle.read(4))
            size = os.path.getsize(path)
        except (OSError, struct.error):
            continue
        stats.examined += 1
        stats.kinds["other"] += 1
        stats.ttls[ttl_bucket(None if expires == 0 else expires - now)] += 1
        stats.memory_sampled += 1
        stats.memory_bytes += size
    return stats


def collect(
    backend: CacheBackend, sample: int | None, on_progress: ProgressCallback | None = None
) -> CacheStats:
    if backend.kind == "redis":
        return redis_stats(backend, sample, on_progress)
    if backend.kind == "filesystem":
        return filesystem_stats(backend, sample)
    raise UsageError(
        f"{backend.kind} cannot list its keys; its server statistics are the only view "
        "(memcached: 'stats' on the server)"
    )
