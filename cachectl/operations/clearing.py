"""Clear the app's cache, and only the app's: the rules first, then the sweep.

The rules are the backend's data (``ClearPlan``): whether it can stay within the
app's prefix, whether it needs ``--flush-db`` or ``--yes`` even on a terminal.
They are checked before anything is asked or removed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cachectl.backends.base import CacheBackend, ClearPlan, ProgressCallback
from cachectl.errors import UsageError


def check_clear(
    backend: CacheBackend,
    *,
    flush_db: bool,
    dry_run: bool,
    yes: bool,
    warn: Callable[[str], None],
) -> ClearPlan:
    """The backend's plan, once every rule it states is met (else UsageError, exit 2)."""
    plan = backend.clear_plan()
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

    def document(self) -> dict[str, Any]:
        return {
            "ok": True,
            "dry_run": self.dry_run,
            "target": self.plan.target,
            "scope": self.plan.scope,
            "caution": self.plan.caution,
            "removed": self.removed,
        }


def clear(
    backend: CacheBackend,
    plan: ClearPlan,
    dry_run: bool,
    on_progress: ProgressCallback | None = None,
) -> Cleared:
    """Remove every entry of the app's cache (or count them, with ``dry_run``)."""
    return Cleared(plan, dry_run, backend.clear(dry_run, on_progress))
