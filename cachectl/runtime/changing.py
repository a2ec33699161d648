"""Which runs change a cache: the audit log logs them, ``--backup`` keeps what they remove,
``--once-per`` guards them. Small on purpose, so a command that changes nothing decides so
without loading the audit log's machinery."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Commands that change a cache, and so are logged (unless run as a dry run).
DESTRUCTIVE = frozenset(
    {
        "set",
        "delete",
        "clear",
        "delete-memoized",
        "delete-view",
        "make-fragment-key",
        "expire",
        "persist",
        "prune",
        "batch",
        "invalidate",
        "plan",
        "restore",
        "warm",
        "check-pickles",
    }
)


def changes_cache(command: str, params: Mapping[str, Any]) -> bool:
    """Whether this run of ``command`` may change a cache: only then is it logged."""
    if command not in DESTRUCTIVE or params.get("dry_run"):
        return False
    if command == "make-fragment-key":
        return bool(params.get("delete"))
    if command == "plan":
        return bool(params.get("apply_plan"))  # plan --apply
    if command == "check-pickles":
        return bool(params.get("delete"))  # check-pickles --delete
    if command == "restore":
        return not params.get("list_only")
    return True
