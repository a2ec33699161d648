"""Caches whose prefixes nest: what ``clear``, ``keys``, ``stats`` and ``delete
--pattern`` of one cache leave out by default.

An app may keep its main cache under ``pkg_`` and others under ``pkg_data_`` or
``pkg_thumbnail_`` on the same Redis database: every key of the others is also
under ``pkg_``, so a sweep of the main cache would take them (Flask-Caching's own
``clear()`` does). When cachectl knows the app's other caches (named caches of the
config file, or the app's ``Cache`` objects with ``--app``), a sibling in the same
keyspace (``backends/targets.py``) whose prefix begins with this cache's prefix is
left out: its prefix, less this one's, is one more glob of the ``--exclude``
machinery (``pkg_data_`` under ``pkg_`` is ``data_*``, escaped), so the sweep keeps
its keys on the server's Lua step and on the client-side path alike, and counts
them per sibling. ``keys`` and ``stats`` filter the names they walk with the same
globs. A sibling that is only *possibly* in the same keyspace is left out too, and
said to be: keeping keys by mistake is the cheaper error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cachectl.backends.base import CacheBackend, escape_glob
from cachectl.backends.exclusions import Exclusions
from cachectl.backends.targets import DIFFERENT, POSSIBLY, compare, location_of
from cachectl.runtime.wording import counted


@dataclass(frozen=True)
class Sibling:
    """Another cache of the app nested under this one, in the same keyspace."""

    #: The cache's name (or names, when several share its prefix).
    name: str
    prefix: str
    #: Its prefix after this cache's, as a glob of the keys it owns here.
    glob: str
    #: Only possibly in the same keyspace (kept all the same).
    uncertain: bool
    reason: str


def find_siblings(
    backend: CacheBackend, others: Sequence[tuple[str, CacheBackend]]
) -> list[Sibling]:
    """The caches of ``others`` (name, backend) nested under ``backend``'s prefix in
    its keyspace, longest prefix last; one entry per prefix."""
    own = backend.key_prefix
    here = location_of(backend)
    if here is None:
        return []
    found: dict[str, Sibling] = {}
    for name, other in others:
        prefix = other.key_prefix
        if len(prefix) <= len(own) or not prefix.startswith(own):
            continue
        verdict = compare(here, location_of(other))
        if verdict.outcome == DIFFERENT:
            continue
        if prefix in found:
            earlier = found[prefix]
            found[prefix] = Sibling(
                f"{earlier.name}, {name}", prefix, earlier.glob, earlier.uncertain, earlier.reason
            )
            continue
        glob = escape_glob(prefix[len(own) :]) + "*"
        found[prefix] = Sibling(name, prefix, glob, verdict.outcome == POSSIBLY, verdict.reason)
    return sorted(found.values(), key=lambda sibling: sibling.prefix)


def exclusions_for(excludes: Sequence[str], siblings: Sequence[Sibling]) -> Exclusions | None:
    """The operator's ``--exclude`` globs and the siblings' globs, in one parse (None
    when there is neither). Raises GlobError for an operator's glob refused."""
    if not excludes and not siblings:
        return None
    return Exclusions(excludes, [sibling.glob for sibling in siblings])


def naming(siblings: Sequence[Sibling]) -> str:
    """The words a question or a dry run adds: each sibling by name and prefix."""
    if not siblings:
        return ""
    listed = ", ".join(
        f"{s.name} ({s.prefix!r}{', possibly the same server' if s.uncertain else ''})"
        for s in siblings
    )
    return f", leaving out the nested caches {listed} (--include-nested takes them too)"


@dataclass
class NestedKept:
    """What the siblings' globs left out of one command, per sibling."""

    siblings: Sequence[Sibling]
    exclusions: Exclusions | None
    dry_run: bool = False

    def counts(self) -> list[int]:
        if self.exclusions is None:
            return [0] * len(self.siblings)
        return self.exclusions.nested_hits()

    def summary(self, verb: str = "left out") -> str:
        """'; left out 12 keys of nested caches (data 'pkg_data_' 10, ...)', or ''."""
        if not self.siblings:
            return ""
        per = ", ".join(
            f"{s.name} {s.prefix!r} {n}" + (" (possibly the same server)" if s.uncertain else "")
            for s, n in zip(self.siblings, self.counts())
        )
        return f"; {verb} {counted(sum(self.counts()), 'key')} of nested caches ({per})"

    def document(self) -> dict[str, Any]:
        """``"nested"``: each sibling, its prefix and how many of its keys stayed out."""
        if not self.siblings:
            return {}
        return {
            "nested": [
                {
                    "cache": s.name,
                    "prefix": s.prefix,
                    "left_out": n,
                    "same_server": "possibly" if s.uncertain else "yes",
                    "reason": s.reason,
                }
                for s, n in zip(self.siblings, self.counts())
            ]
        }
