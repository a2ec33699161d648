"""The invalidation plan of a release: each action, why it is there, and what runs it.

A plan is read by a person before it is applied, so every action carries its
reason and where in the source it comes from, and is shown as the cachectl
command that does the same thing on its own (it can be copied into a shell).
What the plan cannot decide statically is a ``NeedsLook``, never dropped.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from cachectl import keys
from cachectl.backends.base import escape_glob
from cachectl.config.generations import CURRENT, RELEASE_2_5_0

#: What an action does, as the command that does it on its own.
MEMOIZED = "delete-memoized"
VIEW = "delete-view"
VIEW_QUERIES = "delete-view-all-queries"
VIEW_PATTERN = "delete-view-pattern"
KEY = "delete-key"
FRAGMENT = "delete-fragment"
FRAGMENT_PATTERN = "delete-fragment-pattern"
#: The entries whose pickles name a class the release lost (``check-pickles --class``).
PICKLED = "delete-pickles"
#: Actions that find their keys by a glob, which only a cache that lists keys can do.
NEEDS_KEY_LISTING = frozenset({VIEW_QUERIES, VIEW_PATTERN, FRAGMENT_PATTERN})
#: The groups of the text plan, in the order it shows them.
GROUPS = (
    ("memoized functions", (MEMOIZED,)),
    ("cached views", (VIEW, VIEW_QUERIES, VIEW_PATTERN, KEY)),
    ("template fragments", (FRAGMENT, FRAGMENT_PATTERN)),
    ("pickled classes", (PICKLED,)),
)

_RULE_VARIABLE = re.compile(r"<[^>]*>")
#: A rule's variable named ``path`` (``<path>``, ``<path:path>``).
_PATH_ARGUMENT = re.compile(r"<(?:[^<>]*:)?\s*path\s*>")


def is_dynamic(rule: str) -> bool:
    """``/user/<name>`` is; ``/about`` is not."""
    return _RULE_VARIABLE.search(rule) is not None


def view_glob(rule: str, view_prefix: str, query_string: bool, generation: str = CURRENT) -> str:
    """The glob (after the cache's prefix) of every key a view stored for a dynamic
    rule: each ``<variable>`` is any text; query-string views end with their hash, and
    before Flask-Caching 2.5 had no ``key_prefix`` (``keys.query_variant_base``).

    Flask-Caching 2.5.0 keyed a route with an argument named ``path`` by that argument's
    value alone (``keys.with_explicit_view_arguments``), which never starts with ``/``:
    ``[^/]*`` there, so the keys of views keyed by a request path (``view//...``) stay."""
    marker = "\0"
    path = _RULE_VARIABLE.sub(marker, rule)
    wildcard = "*"
    if generation == RELEASE_2_5_0 and _PATH_ARGUMENT.search(rule) and "%s" in view_prefix:
        path, wildcard = marker, "[^/]*"
    if query_string:
        base = keys.query_variant_base(path, view_prefix, generation)
    else:
        base = keys.view_base_key(path, view_prefix)
    glob = wildcard.join(escape_glob(part) for part in base.split(marker))
    return glob if not query_string or glob.endswith("*") else glob + "*"


def fragment_glob(name: str) -> str:
    """Every key of a named ``{% cache %}`` block whose vary_on values vary at run time."""
    return escape_glob(f"{keys.FRAGMENT_PREFIX}{name}_") + "*"


class Action(NamedTuple):
    """One invalidation of the plan."""

    #: What it does (MEMOIZED, VIEW, ...: the command it stands for).
    what: str
    #: The function's dotted name, the request path or rule, the key, or the fragment name.
    target: str
    reason: str
    #: ``path:line`` of what it comes from, at the revision that explains it.
    source: str
    #: A view's key_prefix (``view/%s`` unless the decorator gives another).
    view_prefix: str = keys.DEFAULT_VIEW_PREFIX
    query_string: bool = False
    #: A fragment's constant vary_on values.
    vary_on: tuple[str, ...] = ()
    #: A memoized function's module (the rest of ``target`` is its qualname).
    module: str = ""
    #: For a memoized function no import finds by its name (nested in a function, or
    #: gone from the release): its parameters, so ``delete-memoized --signature``
    #: takes it by the name alone instead of importing the module and missing it.
    signature: str | None = None
    #: The cache the source says the decorator stores in: ``module:name`` of its
    #: ``Cache(...)`` (None when not found), and every name it is known by.
    cache_canonical: str | None = None
    cache_names: tuple[str, ...] = ()
    #: The ``--cache`` name the action runs on (None: the only cache), and what
    #: ``--cache`` takes for it when applied (``plan_caches``).
    cache: str | None = None
    cache_selector: str | None = None

    def identity(self) -> tuple[Any, ...]:
        """What makes two actions the same deletion (reasons and sources aside)."""
        return (self.what, self.target, *self[4:8], self.cache_canonical, self.cache)

    def glob(self, generation: str = CURRENT) -> str | None:
        """The glob of a pattern action (None for the others)."""
        if self.what == VIEW_PATTERN:
            return view_glob(self.target, self.view_prefix, self.query_string, generation)
        if self.what == FRAGMENT_PATTERN:
            return fragment_glob(self.target)
        return None

    def command(self, generation: str = CURRENT) -> str:
        """The cachectl command (after ``cachectl``) that does this action alone."""
        prefix = []
        if self.what in (VIEW, VIEW_QUERIES) and self.view_prefix != keys.DEFAULT_VIEW_PREFIX:
            prefix = ["--view-prefix", self.view_prefix]
        by_name = ["--signature", self.signature] if self.signature is not None else []
        words: list[str] = {
            MEMOIZED: ["delete-memoized", self.target, *by_name],
            VIEW: ["delete-view", self.target, *prefix],
            VIEW_QUERIES: ["delete-view", self.target, "--all-queries", *prefix],
            KEY: ["delete", "--", self.target],
            FRAGMENT: ["make-fragment-key", self.target, *self.vary_on, "--delete"],
            PICKLED: ["check-pickles", "--class", self.target, "--delete", "--yes"],
            # The plan is the confirmation: without --yes, and no terminal, it would not run.
        }.get(self.what, ["delete", "--pattern", str(self.glob(generation)), "--yes"])
        if self.cache is not None:  # --cache is cachectl's own option, before the command
            words = ["--cache", self.cache, *words]
        return " ".join(shlex.quote(word) for word in words)

    def document(self, generation: str = CURRENT) -> dict[str, Any]:
        return {
            "action": self.what,
            "target": self.target,
            "command": self.command(generation),
            "reason": self.reason,
            "source": self.source,
            **({"pattern": self.glob(generation)} if self.what in NEEDS_KEY_LISTING else {}),
            **({"vary_on": list(self.vary_on)} if self.what == FRAGMENT else {}),
            "cache": self.cache,
        }


class NeedsLook(NamedTuple):
    """Something the release changed that may be stale, which the plan cannot settle."""

    subject: str
    reason: str
    source: str

    def document(self) -> dict[str, Any]:
        return {"subject": self.subject, "reason": self.reason, "source": self.source}


@dataclass
class Plan:
    """What a release changed that its caches may hold stale."""

    since: str
    until: str
    actions: list[Action] = field(default_factory=list)
    needs_look: list[NeedsLook] = field(default_factory=list)

    def add(self, action: Action) -> None:
        """Add ``action`` once (two routes or two reasons may name the same keys)."""
        if not any(a.identity() == action.identity() for a in self.actions):
            self.actions.append(action)

    def look(self, subject: str, reason: str, source: str) -> None:
        """List what the plan cannot settle alone (once: two paths may reach it)."""
        item = NeedsLook(subject, reason, source)
        if item not in self.needs_look:
            self.needs_look.append(item)

    def document(self, generation: str = CURRENT) -> dict[str, Any]:
        return {
            "ok": True,
            "since": self.since,
            "until": self.until,
            "actions": [action.document(generation) for action in self.actions],
            "needs_look": [item.document() for item in self.needs_look],
        }
