"""check-pickles: which classes the cached values name, and which the app's code lost.

A release that renames or removes a class leaves pickles in the cache that the new
code cannot load; the app finds out in production, as errors. Here every entry under
the prefix is read (``CacheBackend.stored_entries``, streamed), the names each pickle
refers to are read without running anything (``codec.pickle_refs``, the opcodes walked;
on Redis mostly ``codec.pickle_names``, pickle's C unpickler with inert stand-ins in a
worker process), and the totals are kept per name and per group of entries (``census_label``: a
memoized function's version, a view path, a fragment name): memory stays flat in the
number of entries. The names are then resolved in the app's code (``app.name_resolver``,
in this process after ``--app``, or in the app's own interpreter), and ``--delete``
walks the entries again, removing each one that names something that no longer
resolves as the pickle uses it: what is removed is checked at the moment it goes.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cachectl.backends.base import (
    BATCH_SIZE,
    CacheBackend,
    ProgressCallback,
    StoredEntry,
    Tally,
    partial_work,
)
from cachectl.backends.statistics import census_label
from cachectl.codec import pickle_refs
from cachectl.codec.limits import current_limits
from cachectl.errors import ConfigError
from cachectl.keys import VERSION_SUFFIX

#: A function that takes names (``module.qualname``) and gives each one's verdict:
#: ``{"found": bool, "why": str | None, "kind": "class" | "function" | "other" | None}``.
Resolver = Callable[[list[str]], dict[str, dict[str, Any]]]
#: How long the app's interpreter may take to import its modules and answer.
RESOLVER_SECONDS = 300
#: Past this many names (or groups), further ones are counted together, so a cache of
#: values planted to name a class each cannot make the census grow with its entries.
MAX_NAMES = 10_000
OTHER_NAMES = "(other names, past 10,000)"
_GROUP_WORDS = {ord("e"): "memoized", ord("w"): "view", ord("f"): "fragment", ord("o"): "other"}


@dataclass
class NameTally:
    """The entries naming one ``module.qualname``: how many, their stored bytes, and
    how they use it (``pickle_refs`` role bits, over all of them)."""

    entries: int = 0
    stored_bytes: int = 0
    roles: int = 0
    verdict: dict[str, Any] | None = None

    @property
    def problem(self) -> str | None:
        """Why a pickle naming this would fail to load now (None: it loads, or unknown)."""
        return problem(self.verdict, self.roles)


def problem(verdict: dict[str, Any] | None, roles: int) -> str | None:
    """Why a name used as ``roles`` says fails to load by ``verdict`` (None: it loads)."""
    if verdict is None:
        return None
    if not verdict["found"]:
        return str(verdict["why"])
    if verdict["kind"] is None:  # found, not looked at (the standard library's)
        return None
    if roles & pickle_refs.INSTANTIATED and verdict["kind"] != "class":
        return f"now a {verdict['kind']}, not a class"
    if roles & pickle_refs.CALLED and verdict["kind"] == "other":
        return "now not callable"
    return None


@dataclass
class GroupTally:
    """The entries of one census group that name anything."""

    entries: int = 0
    stored_bytes: int = 0
    names: set[str] = field(default_factory=set)


@dataclass
class PickleCensus:
    """One pass over the entries: what they name, in totals."""

    target: str
    entries: int = 0
    stored_bytes: int = 0
    pickles: int = 0
    #: Entries holding no pickle (a number, plain bytes), or not read (over the limit).
    not_pickles: int = 0
    not_read: int = 0
    #: Pickles whose walk stopped early (malformed, a limit): names before kept.
    cut_short: int = 0
    names: dict[str, NameTally] = field(default_factory=dict)
    groups: dict[bytes, GroupTally] = field(default_factory=dict)
    #: Memoize version keys seen: version -> the function's name.
    versions: dict[str, str] = field(default_factory=dict)
    resolved_in: str | None = None
    removed: int | None = None

    def add(self, entry: StoredEntry, refs: pickle_refs.Refs, label: bytes) -> None:
        self.entries += entry.entries
        self.stored_bytes += entry.size
        if entry.payload is None:
            if entry.note is None:
                self.not_pickles += entry.entries
            else:
                self.not_read += entry.entries
            return
        self.pickles += entry.entries
        if refs.stopped is not None:
            self.cut_short += entry.entries
        if not refs.names:
            return
        for name, roles in refs.names.items():
            tally = self.names.get(name)
            if tally is None:
                if len(self.names) >= MAX_NAMES:  # planted names cannot grow the census
                    name = OTHER_NAMES
                tally = self.names.setdefault(name, NameTally())
            tally.entries += entry.entries
            tally.stored_bytes += entry.size
            tally.roles |= roles
        group = self.groups.get(label)
        if group is None:
            if len(self.groups) >= MAX_NAMES:
                label = label[:1] + b"*"  # counted together from here on
            group = self.groups.setdefault(label, GroupTally())
        group.entries += entry.entries
        group.stored_bytes += entry.size
        if len(group.names) < MAX_NAMES:
            group.names.update(refs.names)

    def broken(self) -> dict[str, str]:
        """Each name that no longer resolves as the pickles use it, and why."""
        found = {name: tally.problem for name, tally in self.names.items()}
        return {name: why for name, why in found.items() if why is not None}

    def group_name(self, label: bytes) -> str:
        word = _GROUP_WORDS.get(label[0], "other")
        rest = label[1:].decode("utf-8", "backslashreplace")
        if word == "memoized":
            function = self.versions.get(rest[:6]) or self.versions.get(rest[-6:])
            return f"memoized {function or '(unknown function)'}"
        return f"{word} {rest}".strip()

    def document(self) -> dict[str, Any]:
        broken = self.broken()
        names = sorted(self.names.items(), key=lambda item: (-item[1].stored_bytes, item[0]))
        groups = sorted(self.groups.items(), key=lambda item: -item[1].stored_bytes)
        affected = [t for n, t in self.names.items() if n in broken]
        return {
            "ok": True,
            "target": self.target,
            "entries": self.entries,
            "bytes": self.stored_bytes,
            "pickles": self.pickles,
            "not_pickles": self.not_pickles,
            "not_read": self.not_read,
            "cut_short": self.cut_short,
            "resolved_in": self.resolved_in,
            "classes": [
                {
                    "name": name,
                    "entries": tally.entries,
                    "bytes": tally.stored_bytes,
                    "uses": [w for bit, w in pickle_refs.ROLE_WORDS.items() if tally.roles & bit],
                    "resolves": None if tally.verdict is None else name not in broken,
                    "problem": broken.get(name),
                }
                for name, tally in names
            ],
            "groups": [
                {
                    "group": self.group_name(label),
                    "entries": group.entries,
                    "bytes": group.stored_bytes,
                    "classes": sorted(group.names),
                }
                for label, group in groups
            ],
            "unresolvable": {
                "classes": len(broken),
                "entries_at_most": sum(t.entries for t in affected),
            },
            "removed": self.removed,
        }


def _entries(backend: CacheBackend, tally: Tally, totals: bool = False) -> Iterator[StoredEntry]:
    """The backend's entries, counted a batch at a time (progress, a stop between);
    with ``totals``, alike ones may come summed (a census needs no names of keys)."""
    limit = current_limits().max_bytes + 1  # a Redis pickle's "!", then the pickle
    pending = 0
    for entry in backend.stored_entries(limit, totals):
        yield entry
        pending += entry.entries
        if pending >= BATCH_SIZE:
            tally.add(pending)
            pending = 0
    tally.add(pending)


def take_census(backend: CacheBackend, on_progress: ProgressCallback | None = None) -> PickleCensus:
    """Every entry under the prefix read once, the names its pickle holds totalled."""
    found = PickleCensus(backend.describe())
    suffix = VERSION_SUFFIX.encode()
    tally = Tally(on_progress)
    with partial_work(tally, "examined"):
        for entry in _entries(backend, tally, True):
            version = entry.payload is not None and entry.name.endswith(suffix)
            if version and census_label(entry.name) == b"v":
                _note_version(found, entry, suffix)
                continue
            refs = _refs(entry)
            # The label only where the entry names anything (most name nothing), and
            # where the backend summed alike entries, as it labelled them.
            label = entry.label
            if label is None:
                label = census_label(entry.name) if refs.names else b""
            found.add(entry, refs, label)
    return found


def _refs(entry: StoredEntry) -> pickle_refs.Refs:
    """The names an entry's pickle refers to: as the backend read them, or walked here."""
    if entry.refs is not None:
        return entry.refs
    return pickle_refs.references(entry.payload) if entry.payload else pickle_refs.NONE


def _note_version(found: PickleCensus, entry: StoredEntry, suffix: bytes) -> None:
    """A memoize version key: which function its version stands for (a short string)."""
    from cachectl.codec.unpickler import restricted_loads

    found.entries += 1
    found.stored_bytes += entry.size
    payload = entry.payload or b""  # empty where the server walked it: too long for one
    version = restricted_loads(payload) if 0 < len(payload) < 256 else None
    if isinstance(version, str):
        name = entry.name[: -len(suffix)].decode("utf-8", "backslashreplace")
        found.versions[version[-6:]] = name


def resolve(found: PickleCensus, resolver: Resolver, where: str) -> None:
    """Each name's verdict from ``resolver`` (the app's code, ``where``)."""
    verdicts = resolver(sorted(n for n in found.names if n != OTHER_NAMES))
    missing = {"found": False, "why": "no answer", "kind": None}
    for name, tally in found.names.items():
        tally.verdict = None if name == OTHER_NAMES else verdicts.get(name) or missing
    found.resolved_in = where


def in_process(names: list[str]) -> dict[str, dict[str, Any]]:
    """Verdicts in this process (``--app``: the app's modules are importable here)."""
    from cachectl.app.name_resolver import resolve as resolve_names

    return dict(resolve_names(names))


def in_interpreter(python: str) -> Resolver:
    """Verdicts from the app's interpreter ``python``: the resolver runs there as a
    script (standard library only), from this directory, the names on its stdin."""

    def ask(names: list[str]) -> dict[str, dict[str, Any]]:
        from cachectl.app import name_resolver

        source = open(name_resolver.__file__, encoding="utf-8").read()  # noqa: SIM115
        try:
            done = subprocess.run(
                [python, "-c", source],
                input=json.dumps(names),
                capture_output=True,
                text=True,
                timeout=RESOLVER_SECONDS,
                cwd=os.getcwd(),
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ConfigError(f"--python {python}: cannot run it: {exc}") from exc
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise ConfigError(f"--python {python}: exited {done.returncode}: {last}")
        try:
            answer = json.loads(done.stdout)
        except ValueError as exc:
            raise ConfigError(f"--python {python}: its answer is not JSON: {exc}") from exc
        if not isinstance(answer, dict):
            raise ConfigError(f"--python {python}: its answer is not a JSON object")
        return answer

    return ask


def reads_entries(backend: CacheBackend) -> bool:
    """Whether ``backend`` can read its entries in turn (Redis, FileSystemCache)."""
    return type(backend).stored_entries is not CacheBackend.stored_entries


def delete_unresolvable(
    backend: CacheBackend, found: PickleCensus, on_progress: ProgressCallback | None = None
) -> int:
    """Walk the entries again and remove each one naming something that no longer
    resolves as that pickle uses it (by the verdicts ``found`` holds): an entry the
    app rewrote since the census is judged as it is now. How many went."""
    verdicts = {name: tally.verdict for name, tally in found.names.items()}

    def doomed(names: dict[str, int]) -> bool:
        return any(problem(verdicts.get(n), roles) for n, roles in names.items())

    found.removed = _delete_where(backend, doomed, False, on_progress)
    return found.removed


def delete_naming(
    backend: CacheBackend,
    classes: set[str],
    dry_run: bool,
    on_progress: ProgressCallback | None = None,
) -> int:
    """Remove (or count) the entries whose pickles name any of ``classes``
    (``check-pickles --class``, and ``plan``'s classes a release lost)."""
    return _delete_where(backend, lambda names: not classes.isdisjoint(names), dry_run, on_progress)


def _delete_where(
    backend: CacheBackend,
    doomed: Callable[[dict[str, int]], bool],
    dry_run: bool,
    on_progress: ProgressCallback | None,
) -> int:
    """One walk over the entries, removing (or counting) those whose names ``doomed``
    picks, a batch at a time."""
    tally = Tally(on_progress)
    batch: list[bytes] = []
    removed = 0
    with partial_work(tally, "counted" if dry_run else "removed"):
        for entry in _entries(backend, Tally()):
            if entry.payload is not None and doomed(_refs(entry).names):
                batch.append(entry.name)
            if len(batch) >= BATCH_SIZE:
                removed += len(batch) if dry_run else backend.delete_entries(batch)
                tally.add(len(batch))
                batch = []
        if batch:
            removed += len(batch) if dry_run else backend.delete_entries(batch)
            tally.add(len(batch))
    return removed
