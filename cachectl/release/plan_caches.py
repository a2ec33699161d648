"""Which cache each action of a release plan runs on.

An app may keep several ``Cache`` objects; an entry is in the one whose decorator
stored it, so ``plan --apply`` must not run every action on one chosen cache. The
source says which object a decorator is called on (``revision_sources``: the
module-level ``Cache(...)`` it leads to, and every name that object is known by);
the invocation says which caches exist and what ``--cache`` calls them: the
loaded app's (``--app``: names such as ``shop.ext:cache``), the config file's
named caches (``config --write`` names them as the app does), else, for a plan
that is only printed, the repository's own module-level ``Cache(...)`` objects.

Rules (the README's, under "plan"):

- one cache: every action runs on it, and the printed commands name none; but when
  the decorators store in several of the repository's caches and the invocation
  knows one, the actions whose cache is not that one are listed to look at;
- several: each action names its cache (``--cache NAME``, the name the invocation
  knows it by); one whose cache the source does not settle, or that is none of
  them, is listed to look at, never run on an arbitrary cache;
- ``{% cache %}`` fragments are stored in the cache the app's Jinja environment
  holds, which the source does not say: with several caches they are listed too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cachectl.release.plan_actions import FRAGMENT, FRAGMENT_PATTERN, Action, Plan


@dataclass(frozen=True)
class KnownCache:
    """One cache of the invocation."""

    #: What ``--cache`` takes for it (the app's index, the file's name); None for the
    #: one cache the command line describes.
    selector: str | None
    #: The name shown, and printed with ``--cache``.
    label: str
    #: Every name it is known by (import name, attribute path, file name).
    names: frozenset[str] = field(default_factory=frozenset)


@dataclass
class KnownCaches:
    """The caches an invocation knows, and where from (for the reasons shown)."""

    caches: list[KnownCache]
    origin: str


def repository_caches(canonical: set[str]) -> KnownCaches:
    """The repository's own module-level caches, for a plan that is only printed."""
    found = [KnownCache(name, name, frozenset({name})) for name in sorted(canonical)]
    return KnownCaches(found, "the repository")


def _labels(caches: list[KnownCache]) -> str:
    return ", ".join(cache.label for cache in caches)


def _choose(action: Action, known: KnownCaches, stored_in: set[str]) -> KnownCache | str | None:
    """The cache ``action`` runs on, None for the only one, or why it is not known."""
    caches = known.caches
    if action.what in (FRAGMENT, FRAGMENT_PATTERN):
        if len(caches) <= 1:
            return caches[0] if caches else None
        return (
            "{% cache %} stores in the cache the app's Jinja environment holds (the last "
            "Cache initialised with it), which the source does not say: run the command "
            f"with --cache NAME, one of {_labels(caches)}"
        )
    matching = [cache for cache in caches if cache.names & set(action.cache_names)]
    if len(matching) == 1:
        return matching[0]
    if len(caches) <= 1 and len(stored_in) <= 1:
        return caches[0] if caches else None  # the only cache, and the decorators use one
    hint = "name the caches as the app does (cachectl --app ... config --write) or use --app"
    if len(caches) <= 1:
        return (
            f"the decorators store in several caches ({', '.join(sorted(stored_in))}) and "
            f"{known.origin} describes one, which may not hold this one's entries: {hint}"
        )
    if action.cache_canonical is None:
        return (
            f"which cache its decorator stores in is not known from the source (not a "
            f"module-level Cache(...)), and {known.origin} has several: {_labels(caches)}"
        )
    return (
        f"it is stored in {action.cache_canonical}, which is none of the caches "
        f"{known.origin} names ({_labels(caches)}): {hint}"
    )


def assign_caches(plan: Plan, known: KnownCaches) -> None:
    """Give each action of ``plan`` its cache; list those whose cache is not known."""
    stored_in = {action.cache_canonical or "" for action in plan.actions} - {""}
    several = len(known.caches) > 1
    kept = []
    for action in plan.actions:
        chosen = _choose(action, known, stored_in)
        if isinstance(chosen, str):
            plan.look(action.command(), chosen, action.source)
            continue
        if chosen is not None:
            label = chosen.label if several else None
            action = action._replace(cache=label, cache_selector=chosen.selector)
        kept.append(action)
    plan.actions[:] = kept


def only_cache(plan: Plan, label: str) -> list[Action]:
    """Keep the actions of the cache ``label`` (``--cache NAME``); the others left out."""
    left_out = [a for a in plan.actions if a.cache is not None and a.cache != label]
    plan.actions[:] = [a for a in plan.actions if a not in left_out]
    return left_out
