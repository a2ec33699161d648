"""A release's invalidation plan (``plan``), and running it (``plan --apply``).

The plan is read from git alone (``release_python``, ``release_templates``);
with the app loaded, its URL map gives a view's routes exactly and its template
folders say which files are templates. Applying runs each action through the
same operations as the single commands (``delete_memoized``, ``delete_view``,
deletes of keys and by pattern), so ``plan --apply`` does what the printed
commands would do one by one, with one configuration and one connection.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from cachectl import keys
from cachectl import static_lookup as static
from cachectl.backends.base import CacheBackend, ProgressCallback
from cachectl.errors import CachectlError, UsageError
from cachectl.functions import MemoizedFunction
from cachectl.git_revisions import Checkout
from cachectl.operations import memoized as memoized_ops
from cachectl.operations import views as view_ops
from cachectl.operations.reports import Report, delete_keys
from cachectl.plan_actions import (
    FRAGMENT,
    FRAGMENT_PATTERN,
    GROUPS,
    KEY,
    MEMOIZED,
    NEEDS_KEY_LISTING,
    VIEW,
    VIEW_PATTERN,
    VIEW_QUERIES,
    Action,
    Plan,
)
from cachectl.release_python import (
    AppRules,
    PythonSources,
    plan_python_change,
    plan_rendering_views,
)
from cachectl.release_templates import Folders, changed_templates, plan_template_change
from cachectl.settings import CacheSettings


def app_view_rules(app: Any) -> AppRules:
    """Each view function's GET rules in the app's URL map, found by the module and
    qualname of every function on its ``__wrapped__`` chain (under other decorators)."""
    by_function: dict[tuple[str, str], list[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.methods is not None and "GET" not in rule.methods:
            continue
        function = app.view_functions.get(rule.endpoint)
        view_class = static.read(function, "view_class")
        if view_class is not None:  # a class-based view: its GET handlers
            for method in ("get", "dispatch_request"):
                name = (
                    str(static.read(view_class, "__module__", "")),
                    f"{static.read(view_class, '__qualname__', '')}.{method}",
                )
                by_function.setdefault(name, []).append(rule.rule)
        # Read as stored (static_lookup): a view may be any callable of a library's.
        for layer in static.unwrap_static(function):
            name = (
                str(static.read(layer, "__module__", "")),
                str(static.read(layer, "__qualname__", "")),
            )
            rules = by_function.setdefault(name, [])
            if rule.rule not in rules:
                rules.append(rule.rule)
    return lambda module, qualname: by_function.get((module, qualname))


def _app_template_folders(app: Any, top: str) -> Folders:
    """The app's template folders inside the checkout: each relative to its top, and
    as the app's loader names it (a deploy's symbolic link stays in the name)."""
    from cachectl.templates import app_template_directories

    top = os.path.realpath(top)
    folders = {}
    for directory in app_template_directories(app):
        relative = os.path.relpath(os.path.realpath(directory), top)
        if not relative.startswith(".."):
            folders["" if relative == "." else relative] = directory
    return folders


def make_plan(
    since: str, until: str, cwd: str = ".", app: Any = None, follow_calls: bool = False
) -> Plan:
    """What the release from ``since`` to ``until`` of the checkout at ``cwd`` made stale;
    with ``follow_calls``, also the cached functions calling code that changed."""
    checkout = Checkout.open(cwd)
    plan = Plan(checkout.resolve(since), checkout.resolve(until))
    sources = PythonSources(checkout)
    app_rules = app_view_rules(app) if app is not None else None
    folders = _app_template_folders(app, checkout.top) if app is not None else None
    changes = checkout.changes(plan.since, plan.until)
    for change in changes:
        path = change.old_path or change.new_path or ""
        if path.endswith(".py"):
            plan_python_change(plan, sources, change, app_rules)
        else:
            plan_template_change(plan, checkout, change, folders, app)
    templates = changed_templates(plan, checkout, changes, folders, app)
    plan_rendering_views(plan, sources, templates, app_rules)
    if follow_calls:
        from cachectl.release_calls import plan_callers

        plan_callers(plan, sources, changes, app_rules)
    # Applied in the order shown: functions, views, fragments.
    group_of = {what: index for index, (_, group) in enumerate(GROUPS) for what in group}
    plan.actions.sort(key=lambda action: group_of[action.what])
    return plan


@dataclass
class PlanRun:
    """A plan, and what applying it did (or, with ``dry_run``, would do)."""

    plan: Plan
    applied: bool
    dry_run: bool
    generation: str
    results: list[tuple[Action, Report]] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        document = self.plan.document(self.generation)
        document["applied"] = None
        if self.applied:
            document["dry_run"] = self.dry_run
            document["applied"] = [
                {"command": action.command(self.generation), **report.document()}
                for action, report in self.results
            ]
        return document


def apply_plan(
    backend: CacheBackend,
    settings: CacheSettings,
    plan: Plan,
    *,
    app: Any = None,
    dry_run: bool = False,
    on_progress: ProgressCallback | None = None,
) -> PlanRun:
    """Run every action of ``plan`` on ``backend``; what needs a look is not run.
    What a backend or the generation cannot do is refused before anything changes."""
    run = PlanRun(plan, True, dry_run, settings.generation.name)
    by_pattern = [a.command(run.generation) for a in plan.actions if a.what in NEEDS_KEY_LISTING]
    if by_pattern:
        try:
            backend.require_key_listing()
        except UsageError as exc:
            raise UsageError(
                f"the plan finds keys by pattern ({'; '.join(by_pattern)}), but {exc.message}; "
                "nothing was changed"
            ) from None
    if any(action.query_string for action in plan.actions):
        settings.generation.require_decided("the key of a view with a query string")
    for action in plan.actions:
        try:
            report = _apply(backend, settings, action, app, dry_run, on_progress)
        except CachectlError as exc:
            # Say how far the plan got: running it again finishes the job.
            done = [a.command(run.generation) for a, _ in run.results]
            exc.message += f" (during: {action.command(run.generation)}; done before it: "
            exc.message += f"{len(done)} of {len(plan.actions)} actions)"
            exc.done = {**exc.done, "applied": done, "failed": action.command(run.generation)}
            raise
        run.results.append((action, report))
    return run


def _apply(
    backend: CacheBackend,
    settings: CacheSettings,
    action: Action,
    app: Any,
    dry_run: bool,
    on_progress: ProgressCallback | None,
) -> Report:
    if action.what == MEMOIZED:
        qualname = action.target[len(action.module) + 1 :]
        call = memoized_ops.MemoizedCall(MemoizedFunction(action.module, qualname, None))
        return memoized_ops.delete_memoized(backend, settings, call, app=app, dry_run=dry_run)
    if action.what in (VIEW, VIEW_QUERIES):
        return view_ops.delete_view(
            backend,
            settings,
            path=action.target,
            all_queries=action.what == VIEW_QUERIES,
            view_prefix=action.view_prefix,
            dry_run=dry_run,
            on_progress=on_progress,
        )
    if action.what in (VIEW_PATTERN, FRAGMENT_PATTERN):
        report = Report("delete-pattern", dry_run)
        glob = action.glob(settings.generation.name) or ""
        report.purged = backend.delete_matching(glob, dry_run, on_progress)
        return report
    if action.what == KEY:
        return delete_keys(backend, [action.target], "delete-key", dry_run)
    assert action.what == FRAGMENT, action.what
    key = keys.fragment_key(action.target, list(action.vary_on))
    return delete_keys(backend, [key], "delete-fragment", dry_run)
