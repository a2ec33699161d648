"""How long entries live: read a key's remaining lifetime, change it without touching
the value, and remove the expired files a FileSystemCache leaves behind.

Each operation first asks the backend whether it can (``require_lifetimes``,
``require_prune``), so a backend that cannot is refused (exit 2) before anything
changes and before any server is reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cachectl.backends.base import CacheBackend, Lifetime, ProgressCallback
from cachectl.operations.entries import checked_key


@dataclass
class LifetimesRead:
    """Each key asked for, and what is left of its life."""

    found: list[tuple[str, Lifetime]]

    @property
    def missing(self) -> list[str]:
        return [key for key, lifetime in self.found if not lifetime.found]

    def document(self) -> dict[str, Any]:
        return {
            "ok": not self.missing,
            "results": [
                {
                    "key": key,
                    "found": lifetime.found,
                    # found and ttl null: the entry never expires.
                    "ttl": lifetime.seconds,
                    "state": shown(lifetime),
                }
                for key, lifetime in self.found
            ],
        }


def shown(lifetime: Lifetime) -> str:
    """Seconds left, ``none`` (never expires) or ``missing``, as ``ttl`` prints it."""
    if not lifetime.found:
        return "missing"
    return "none" if lifetime.seconds is None else str(lifetime.seconds)


def read_lifetimes(backend: CacheBackend, keys: list[str]) -> LifetimesRead:
    """The remaining lifetime of each key (prefix applied), as the app's cache sees it:
    an expired entry is missing."""
    backend.require_lifetimes(change=False)
    for key in keys:
        backend.check_key(checked_key(key))
    backend.check()
    return LifetimesRead(list(zip(keys, backend.lifetimes(keys))))


@dataclass
class LifetimeSet:
    key: str
    #: The new lifetime in seconds; None: the entry never expires now.
    seconds: int | None
    #: False when the key was not there (or had expired): nothing was changed.
    found: bool = True

    def document(self) -> dict[str, Any]:
        ttl = self.seconds if self.found else None
        return {"ok": self.found, "key": self.key, "found": self.found, "ttl": ttl}


def set_lifetime(backend: CacheBackend, key: str, seconds: int | None) -> LifetimeSet:
    """Make an existing entry expire ``seconds`` from now (None: never), its value
    unchanged; a key that is not there (or has expired) is reported not found (exit 1, as
    get has it), nothing changed."""
    backend.require_lifetimes(change=True)
    backend.check_key(checked_key(key))
    backend.check()
    return LifetimeSet(key, seconds, found=backend.set_lifetime(key, seconds))


@dataclass
class Pruned:
    target: str
    dry_run: bool
    #: Expired entries removed (or, with dry_run, that would be).
    removed: int

    def document(self) -> dict[str, Any]:
        return {"ok": True, "dry_run": self.dry_run, "target": self.target, "removed": self.removed}


def prune(
    backend: CacheBackend, dry_run: bool, on_progress: ProgressCallback | None = None
) -> Pruned:
    """Remove (or count) the expired entries of a cache that keeps them until removed."""
    backend.require_prune()
    backend.check()
    return Pruned(backend.describe(), dry_run, backend.prune(dry_run, on_progress))
