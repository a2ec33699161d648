"""Clear the app's cache, and only the app's: the rules first, then the sweep.

The rules are the backend's data (``ClearPlan``): whether it can stay within the
app's prefix, whether it needs ``--flush-db`` or ``--yes`` even on a terminal.
They are checked before anything is asked or removed.

``--exclude GLOB`` keeps the app's keys whose name after the prefix matches the
glob (as ``keys GLOB`` and ``delete --pattern`` read a glob): sessions or rate
limits an app keeps under its cache's prefix survive the clear. A glob that keeps
nothing is not an error (there may be no session right now), but it is said, in
text and in JSON, since a misspelt glob would otherwise let the clear take what
it was meant to keep.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cachectl.backends.base import CacheBackend, ClearPlan, ProgressCallback
from cachectl.backends.exclusions import Exclusions, GlobError
from cachectl.errors import UsageError
from cachectl.operations.nesting import NestedKept, Sibling, exclusions_for


def check_exclusions(
    backend: CacheBackend,
    globs: Sequence[str],
    *,
    flush_db: bool,
    siblings: Sequence[Sibling] = (),
) -> Exclusions | None:
    """The ``--exclude`` globs parsed, with those of the nested ``siblings`` (None
    without any), once the backend can apply them and nothing else in the command
    would ignore them (else UsageError, exit 2)."""
    if not globs and not siblings:
        return None
    if flush_db and not globs:
        raise UsageError(
            "--flush-db empties the whole database, the nested caches "
            + ", ".join(f"{s.name} ({s.prefix!r})" for s in siblings)
            + " too: add --include-nested to empty it all the same"
        )
    if flush_db:
        raise UsageError(
            "--flush-db empties the whole database, keys matching --exclude too: "
            "it takes no --exclude"
        )
    if backend.cannot_exclude is not None:
        raise UsageError(backend.cannot_exclude)
    try:
        return exclusions_for(globs, siblings)
    except GlobError as exc:
        raise UsageError(str(exc)) from None


def excepting(exclusions: Exclusions | None) -> str:
    """The words a question or a summary adds for the exclusions ('' without any)."""
    if exclusions is None or not exclusions.own:
        return ""
    own = exclusions.globs[: exclusions.own]
    return ", except keys matching " + " or ".join(repr(g.text) for g in own)


def unmatched_now(backend: CacheBackend, exclusions: Exclusions) -> list[str]:
    """The globs no key matches right now, asked before a clear on a terminal so a
    misspelt glob can be caught before the keys it meant to keep are gone. Each
    stops at the first key it finds; one that finds none walks the whole keyspace
    with SCAN, as a dry run does."""
    missing = []
    for glob in exclusions.globs[: exclusions.own]:
        found = backend.scan_keys(glob.text)
        try:
            if next(found, None) is None:
                missing.append(glob.text)
        finally:
            close = getattr(found, "close", None)
            if close is not None:  # a cluster's scanning threads stop
                close()
    return missing


def unmatched_warning(glob: str, prefix: str, when: str, pattern: str = "*") -> str:
    """What the operator is told about a glob that keeps nothing: ``when`` is
    "before" (the question), "dry run" or "done"; ``pattern`` that of clear --pattern."""
    where = f"under the prefix {prefix!r}" + (f" matching {pattern!r}" if pattern != "*" else "")
    said = {
        "before": f"matches no key {where} right now: it would keep nothing",
        "dry run": f"matches no key {where}: it would keep nothing",
        "done": f"matched no key {where}: it kept nothing",
    }[when]
    hint = ""
    if prefix and glob.startswith(prefix):
        hint = (
            f" (the glob applies after the prefix: leave {prefix!r} out, as in "
            f"{glob[len(prefix) :]!r})"
        )
    return f"--exclude {glob!r} {said}{hint}"


@dataclass
class Kept:
    """What the exclusions of a finished clear (or clear --pattern) kept: the
    operator's ``--exclude`` globs, and the caches nested under this one."""

    exclusions: Exclusions | None
    prefix: str
    dry_run: bool
    pattern: str = "*"
    siblings: Sequence[Sibling] = ()
    warnings: list[str] = field(init=False)

    def __post_init__(self) -> None:
        unmatched = self.exclusions.unmatched() if self.exclusions is not None else []
        when = "dry run" if self.dry_run else "done"
        self.warnings = [unmatched_warning(g, self.prefix, when, self.pattern) for g in unmatched]

    @property
    def nested(self) -> NestedKept:
        return NestedKept(self.siblings, self.exclusions, self.dry_run)

    def _own(self) -> bool:
        return self.exclusions is not None and self.exclusions.own > 0

    def summary(self) -> str:
        """'; kept 12 matching --exclude ('session:*' 12)', then what nested caches
        kept; '' without either."""
        verb = "would keep" if self.dry_run else "kept"
        nested = self.nested.summary("would leave out" if self.dry_run else "left out")
        if self.exclusions is None or not self._own():
            return nested
        per_glob = ", ".join(f"{glob.text!r} {hits}" for glob, hits in self.exclusions.own_globs())
        return f"; {verb} {self.exclusions.excluded} matching --exclude ({per_glob}){nested}"

    def document(self) -> dict[str, Any]:
        """The fields a clear's JSON document has when ``--exclude`` was given, and
        ``"nested"`` when caches nested under this one stayed out."""
        exclusions = self.exclusions
        nested = self.nested.document()
        if exclusions is None or not self._own():
            return nested
        return {
            "excluded": exclusions.excluded,
            "exclude": [
                {"glob": glob.text, "matched": hits} for glob, hits in exclusions.own_globs()
            ],
            "warnings": self.warnings,
            **nested,
        }


def check_clear(
    backend: CacheBackend,
    *,
    flush_db: bool,
    dry_run: bool,
    yes: bool,
    warn: Callable[[str], None],
    excluding: bool = False,
    flush_all: bool = False,
) -> ClearPlan:
    """The backend's plan, once every rule it states is met (else UsageError, exit 2).
    ``flush_all``: the whole server, every app's keys (memcached's ``flush_all``), which
    takes no ``--flush-db`` and no ``--exclude``."""
    if flush_all:
        if flush_db or excluding:
            other = "--flush-db" if flush_db else "--exclude"
            raise UsageError(f"--flush-all empties the whole server; it takes no {other}")
        plan = backend.flush_all_plan()
    else:
        plan = backend.clear_plan()
    if plan.refused is not None:
        raise UsageError(plan.refused)
    if plan.needs_flush_db and excluding:  # --flush-db would take the excluded keys too
        raise UsageError(f"{plan.needs_flush_db}, which takes no --exclude")
    if flush_db and not plan.accepts_flush_db:
        raise UsageError(
            "--flush-db only applies to a Redis cache without a key prefix; "
            f"this clear already removes only {plan.scope}"
        )
    if plan.needs_flush_db and not flush_db:
        raise UsageError(plan.needs_flush_db)
    if plan.needs_yes and not dry_run:
        warn(f"clearing {plan.target} removes {plan.scope}")
        if not yes:
            raise UsageError(plan.needs_yes)
    return plan


@dataclass
class Cleared:
    plan: ClearPlan
    dry_run: bool
    #: How many keys went (or would), None when the server cannot count them.
    removed: int | None
    kept: Kept

    def document(self) -> dict[str, Any]:
        return {
            "ok": True,
            "dry_run": self.dry_run,
            "target": self.plan.target,
            "scope": self.plan.scope,
            "caution": self.plan.caution,
            "removed": self.removed,
            **self.kept.document(),
        }


def clear(
    backend: CacheBackend,
    plan: ClearPlan,
    dry_run: bool,
    on_progress: ProgressCallback | None = None,
    exclusions: Exclusions | None = None,
    siblings: Sequence[Sibling] = (),
    flush_all: bool = False,
) -> Cleared:
    """Remove every entry of the app's cache (or count them, with ``dry_run``), but
    the keys ``exclusions`` keep (the operator's globs and the nested ``siblings``');
    with ``flush_all``, the whole server."""
    if flush_all:
        removed = backend.flush_all(dry_run)
    elif exclusions is None:
        removed = backend.clear(dry_run, on_progress)
    else:
        removed = backend.clear_except(exclusions, dry_run, on_progress)
    kept = Kept(exclusions, backend.key_prefix, dry_run, siblings=siblings)
    return Cleared(plan, dry_run, removed, kept)
