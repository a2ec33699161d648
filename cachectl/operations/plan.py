"""A release's invalidation plan (``plan``), and running it (``plan --apply``).

The plan is read from git alone (``cachectl.release``); with the app loaded, its URL
map gives a view's routes exactly and its template folders say which files are
templates. Applying runs each action through the same operations as the single
commands (``delete_memoized``, ``delete_view``, deletes of keys and by pattern), so
``plan --apply`` does what the printed commands would do one by one, with one
configuration and one connection per cache; each action runs on the cache its decorator
stores in (``release.plan_caches``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from cachectl import keys
from cachectl.app import static_lookup as static
from cachectl.app.functions import MemoizedFunction
from cachectl.backends.base import CacheBackend, ProgressCallback
from cachectl.config.generations import CURRENT
from cachectl.config.settings import CacheSettings
from cachectl.errors import CachectlError, UsageError
from cachectl.operations import memoized as memoized_ops
from cachectl.operations import pickle_check
from cachectl.operations import views as view_ops
from cachectl.operations.entries import checked_key
from cachectl.operations.fragments import checked_fragment_key
from cachectl.operations.reports import Report, delete_keys
from cachectl.release.class_changes import plan_class_changes
from cachectl.release.git_revisions import Checkout
from cachectl.release.plan_actions import (
    FRAGMENT,
    FRAGMENT_PATTERN,
    GROUPS,
    KEY,
    MEMOIZED,
    NEEDS_KEY_LISTING,
    PICKLED,
    VIEW,
    VIEW_PATTERN,
    VIEW_QUERIES,
    Action,
    Plan,
)
from cachectl.release.plan_caches import KnownCaches, assign_caches, repository_caches
from cachectl.release.python_changes import AppRules, plan_python_change, plan_rendering_views
from cachectl.release.revision_sources import PythonSources
from cachectl.release.template_changes import Folders, changed_templates, plan_template_change


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
    from cachectl.app.templates import app_template_directories

    top = os.path.realpath(top)
    folders = {}
    for directory in app_template_directories(app):
        relative = os.path.relpath(os.path.realpath(directory), top)
        if not relative.startswith(".."):
            folders["" if relative == "." else relative] = directory
    return folders


def make_plan(
    since: str,
    until: str,
    cwd: str = ".",
    app: Any = None,
    follow_calls: bool = False,
    caches: KnownCaches | None = None,
) -> Plan:
    """What the release from ``since`` to ``until`` of the checkout at ``cwd`` made stale;
    with ``follow_calls``, also the cached functions calling code that changed. Each
    action names its cache among ``caches`` (the invocation's; None: the repository's
    own ``Cache(...)`` objects), or is listed to look at (``plan_caches``)."""
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
            plan_class_changes(plan, sources, change)
        else:
            plan_template_change(plan, checkout, change, folders, app)
    templates = changed_templates(plan, checkout, changes, folders, app)
    plan_rendering_views(plan, sources, templates, app_rules)
    if follow_calls:
        from cachectl.release.followed_calls import plan_callers

        plan_callers(plan, sources, changes, app_rules)
    if caches is None:
        caches = repository_caches(sources.caches(plan.since) | sources.caches(plan.until))
    assign_caches(plan, caches)
    # Applied in the order shown: functions, views, fragments.
    group_of = {what: index for index, (_, group) in enumerate(GROUPS) for what in group}
    plan.actions.sort(key=lambda action: group_of[action.what])
    return plan


class Target(NamedTuple):
    """A cache the plan runs on: its backend and settings, and its name (None: the only one)."""

    backend: CacheBackend
    settings: CacheSettings
    label: str | None


class Applied(NamedTuple):
    """One action run, on which cache, and what it did."""

    action: Action
    report: Report
    target: Target


@dataclass
class PlanRun:
    """A plan, and what applying it did (or, with ``dry_run``, would do)."""

    plan: Plan
    applied: bool
    dry_run: bool
    generation: str
    results: list[Applied] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        document = self.plan.document(self.generation)
        document["applied"] = None
        if self.applied:
            document["dry_run"] = self.dry_run
            document["applied"] = [
                {
                    "command": done.action.command(done.target.settings.generation.key_form),
                    "cache": done.target.label,
                    **done.report.document(),
                }
                for done in self.results
            ]
        return document


def check_targets(plan: Plan, targets: Mapping[str | None, Target], generation: str) -> None:
    """What a cache's backend or generation cannot do, refused before anything changes."""
    for selector, target in targets.items():
        mine = [a for a in plan.actions if a.cache_selector == selector]
        by_pattern = [a.command(generation) for a in mine if a.what in NEEDS_KEY_LISTING]
        if by_pattern:
            try:
                target.backend.require_key_listing()
            except UsageError as exc:
                raise UsageError(
                    f"the plan finds keys by pattern ({'; '.join(by_pattern)}), but "
                    f"{exc.message}; nothing was changed"
                ) from None
        if any(action.query_string for action in mine):
            target.settings.generation.require_decided("the key of a view with a query string")


def apply_plan(
    targets: Mapping[str | None, Target],
    plan: Plan,
    *,
    app: Any = None,
    dry_run: bool = False,
    on_progress: ProgressCallback | None = None,
) -> PlanRun:
    """Run every action of ``plan`` on its own cache (``targets``, by the action's
    ``cache_selector``); what needs a look is not run. What a backend or the
    generation cannot do is refused before anything changes."""
    first = next(iter(targets.values()), None)
    generation = first.settings.generation.key_form if first is not None else CURRENT
    run = PlanRun(plan, True, dry_run, generation)
    check_targets(plan, targets, generation)
    for action in plan.actions:  # every action's own checks, before the first runs
        checked = targets[action.cache_selector]
        _check(checked.backend, checked.settings, action, app)
    for action in plan.actions:
        target = targets[action.cache_selector]
        try:
            report = _apply(target.backend, target.settings, action, app, dry_run, on_progress)
        except CachectlError as exc:
            # Say how far the plan got: running it again finishes the job.
            done = [applied.action.command(run.generation) for applied in run.results]
            exc.message += f" (during: {action.command(run.generation)}; done before it: "
            exc.message += f"{len(done)} of {len(plan.actions)} actions)"
            exc.done = {**exc.done, "applied": done, "failed": action.command(run.generation)}
            raise
        run.results.append(Applied(action, report, target))
    return run


def found_nothing(report: Report) -> bool:
    """Whether an action found nothing to invalidate (a name never cached, or an entry
    in another cache than the one it ran on)."""
    if report.version_key_existed is False:
        return True
    if report.dry_run:
        return report.purged == 0 and not report.deleted and not report.written
    removed = (report.removed or 0) + (report.purged or 0)
    return removed == 0 and not report.written


def _check(backend: CacheBackend, settings: CacheSettings, action: Action, app: Any) -> None:
    """The checks that need no server, the same the single commands make before they
    connect (and a batch before its first line runs: ``cachectl.runtime.checking``): a usage
    error here stops the plan with nothing changed."""
    try:
        if action.what == MEMOIZED:
            qualname = action.target[len(action.module) + 1 :]
            function = MemoizedFunction(action.module, qualname, None)
            memoized_ops.check_call(memoized_ops.MemoizedCall(function), settings, app)
        elif action.what in (VIEW, VIEW_QUERIES):
            view_ops.view_target(
                settings,
                path=action.target,
                all_queries=action.what == VIEW_QUERIES,
                view_prefix=action.view_prefix,
            )
        elif action.what == KEY:
            backend.check_key(checked_key(action.target))
        elif action.what == FRAGMENT:
            backend.check_key(checked_fragment_key(action.target, list(action.vary_on)))
        elif action.what == PICKLED and not pickle_check.reads_entries(backend):
            raise UsageError(f"{backend.kind} cannot read its entries in turn")
    except CachectlError as exc:
        exc.message += f" (in: {action.command(settings.generation.key_form)}; nothing was changed)"
        raise


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
        glob = action.glob(settings.generation.key_form) or ""
        report.purged = backend.delete_matching(glob, dry_run, on_progress)
        return report
    if action.what == KEY:
        return delete_keys(backend, [action.target], "delete-key", dry_run)
    if action.what == PICKLED:
        report = Report("delete-pickles", dry_run)
        report.purged = pickle_check.delete_naming(backend, {action.target}, dry_run, on_progress)
        return report
    assert action.what == FRAGMENT, action.what
    key = keys.fragment_key(action.target, list(action.vary_on))
    return delete_keys(backend, [key], "delete-fragment", dry_run)
