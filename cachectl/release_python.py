"""The Python side of a release plan: memoized functions and cached views whose code changed.

Both revisions are read from git and parsed with ``ast`` (``source_scan``); the
app is never imported here. A function is stale when its tree differs between
the revisions; its keys are those of the *older* revision (that code stored
them): its old dotted name, and the routes it was served at. Where that cannot
be read from the source (a computed ``key_prefix``, a rule built at run time, a
decorator reached by a name no ``Cache(...)`` is bound to), the plan says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from cachectl import keys
from cachectl.git_revisions import Checkout, FileChange
from cachectl.plan_actions import (
    KEY,
    MEMOIZED,
    VIEW,
    VIEW_PATTERN,
    VIEW_QUERIES,
    Action,
    Plan,
    is_dynamic,
)
from cachectl.source_scan import (
    UNKNOWN,
    Blueprint,
    CachedFunction,
    ModuleScan,
    Registration,
    join_rule,
    module_name,
    scan_module,
)

#: The app's GET rules of a view, by the view's module and qualname (``--app``);
#: None when no app is loaded or the view is not in its URL map.
AppRules = Callable[[str, str], "list[str] | None"]


@dataclass
class Revision:
    """What ``plan`` reads once from a whole revision: the names ``Cache(...)`` is
    bound to, the blueprints and how they are registered."""

    commit: str
    cache_names: set[str] = field(default_factory=set)
    app_names: set[str] = field(default_factory=set)
    blueprints: dict[str, list[Blueprint]] = field(default_factory=dict)
    registrations: list[Registration] = field(default_factory=list)


class PythonSources:
    """Parsed modules of the checkout, each parsed once per revision."""

    def __init__(self, checkout: Checkout) -> None:
        self.checkout = checkout
        self._scans: dict[tuple[str, str], ModuleScan | None] = {}
        self._revisions: dict[str, Revision] = {}

    def scan(self, commit: str, path: str) -> ModuleScan | None:
        """The module at ``path`` (None when it is not there); SyntaxError when it
        does not parse."""
        if (commit, path) not in self._scans:
            source = self.checkout.read(commit, path)
            self._scans[commit, path] = None if source is None else scan_module(source, path)
        return self._scans[commit, path]

    def revision(self, commit: str) -> Revision:
        if commit not in self._revisions:
            found = Revision(commit)
            for word in ("Cache", "Flask", "Blueprint", "register_blueprint"):
                for path in self.checkout.files_containing(commit, word):
                    try:
                        scan = self.scan(commit, path)
                    except SyntaxError:
                        continue  # said where it matters, when the file itself changed
                    if scan is None:
                        continue
                    if word == "Cache":
                        found.cache_names |= scan.cache_names
                    elif word == "Flask":
                        found.app_names |= scan.app_names
                    elif word == "Blueprint":
                        for name, blueprint in scan.blueprints.items():
                            found.blueprints.setdefault(name, []).append(blueprint)
                    else:
                        found.registrations += scan.registrations
            self._revisions[commit] = found
        return self._revisions[commit]


def _reason(old: CachedFunction, new: CachedFunction) -> str:
    """Which parts of the function differ (decorator arguments, signature, code)."""
    changed = [part for part, tree in old.parts.items() if new.parts.get(part) != tree]
    if old.decorator != new.decorator:
        changed.insert(0, f"decorator (@{old.decorator} to @{new.decorator})")
    return " and ".join(changed or ["code"]) + " changed"


def _is_cache(function: CachedFunction, scan: ModuleScan, names: set[str]) -> bool:
    """Whether the decorator is reached through a name a ``Cache(...)`` is bound to."""
    last = function.cache_name.rsplit(".", 1)[-1]
    return last in names or scan.aliases.get(last) in names


def plan_python_change(
    plan: Plan,
    sources: PythonSources,
    change: FileChange,
    app_rules: AppRules | None,
) -> None:
    """Add to ``plan`` what one changed ``.py`` file makes stale."""
    if change.old_path is None or change.status in "AC":
        return  # a new file: nothing of it can be in the cache yet
    since, until = plan.since, plan.until
    try:
        old_scan = sources.scan(since, change.old_path)
    except SyntaxError as exc:
        plan.look(change.old_path, f"does not parse at {since[:12]}: {exc.msg}", change.old_path)
        return
    if old_scan is None or not old_scan.functions:
        return
    try:
        new_scan = sources.scan(until, change.new_path) if change.new_path else None
    except SyntaxError as exc:
        where = f"{change.new_path}:{exc.lineno}"
        plan.look(change.new_path or "", f"does not parse at {until[:12]}: {exc.msg}", where)
        return
    old_module = module_name(change.old_path, sources.checkout.files(since))
    new_path = change.new_path
    new_module = module_name(new_path, sources.checkout.files(until)) if new_path else None
    names = sources.revision(since).cache_names | sources.revision(until).cache_names
    for qualname, old in old_scan.functions.items():
        where = f"{change.old_path}:{old.line}"
        new = new_scan.functions.get(qualname) if new_scan and new_module == old_module else None
        if new is not None and new.dump == old.dump:
            continue
        if new is not None:
            reason = _reason(old, new)
        else:
            reason = _gone(old, old_module, new_scan, new_module)
        if old_module is None:
            unimportable = f"{change.old_path} is not an importable module"
            plan.look(qualname, f"{reason}, but {unimportable}", where)
        elif not _is_cache(old, old_scan, names):
            plan.look(
                f"{old_module}.{qualname}",
                f"{reason}; @{old.cache_name}.{old.decorator} is not bound to Cache(...) "
                "anywhere in the repository, so whether it is a cache is not known",
                where,
            )
        elif old.decorator == "memoize":
            dotted = f"{old_module}.{qualname}"
            plan.add(Action(MEMOIZED, dotted, reason, where, module=old_module))
        else:
            scans = (old_scan, new_scan)
            _plan_view(plan, sources, (old, new), scans, old_module, reason, where, app_rules)


def plan_rendering_views(
    plan: Plan, sources: PythonSources, templates: dict[str, str], app_rules: AppRules | None
) -> None:
    """Cached views of the old revision that render a changed template by its literal
    name: their stored pages hold what the old template made."""
    if not templates:
        return
    names = sources.revision(plan.since).cache_names
    for path in sources.checkout.files_containing(plan.since, "render_template"):
        try:
            scan = sources.scan(plan.since, path)
        except SyntaxError:
            continue  # said where the file itself changed
        module = module_name(path, sources.checkout.files(plan.since))
        if scan is None or module is None:
            continue
        for function in scan.functions.values():
            used = [templates[name] for name in function.renders if name in templates]
            if function.decorator != "cached" or not used or not _is_cache(function, scan, names):
                continue
            reason = f"renders {', '.join(used)}, changed by the release"
            where = f"{path}:{function.line}"
            versions = (function, None)
            _plan_view(plan, sources, versions, (scan, None), module, reason, where, app_rules)


def plan_cached_function(
    plan: Plan,
    sources: PythonSources,
    path: str,
    name: tuple[str, str],
    via: str,
    app_rules: AppRules | None,
) -> None:
    """A function of the older revision that calls changed code (``via``, the chain of
    calls): planned when it is cached, as if its own code had changed."""
    module, qualname = name
    try:
        scan = sources.scan(plan.since, path)
    except SyntaxError:
        return
    function = scan.functions.get(qualname) if scan is not None else None
    if scan is None or function is None:
        return
    names = sources.revision(plan.since).cache_names
    reason = f"calls {via}, which changed (followed with --follow-calls: approximate)"
    where = f"{path}:{function.line}"
    if not _is_cache(function, scan, names):
        return  # said when its own code changes; a guess on a guess is not listed
    if function.decorator == "memoize":
        plan.add(Action(MEMOIZED, f"{module}.{qualname}", reason, where, module=module))
    else:
        _plan_view(plan, sources, (function, None), (scan, None), module, reason, where, app_rules)


def _gone(
    old: CachedFunction, old_module: str | None, new_scan: ModuleScan | None, new_module: str | None
) -> str:
    """Why a cached function of the old revision is not at its name any more."""
    if new_scan is not None:
        for name, candidate in new_scan.functions.items():
            if candidate.body_dump == old.body_dump and name != old.qualname:
                return f"renamed to {new_module}.{name}"
        if old.qualname in new_scan.functions:
            return f"moved from {old_module} to {new_module}"
        if new_module != old_module:
            return f"module renamed to {new_module}; {old.qualname} is no longer cached there"
    return "removed, or no longer cached, in the release"


def _plan_view(
    plan: Plan,
    sources: PythonSources,
    versions: tuple[CachedFunction, CachedFunction | None],
    scans: tuple[ModuleScan, ModuleScan | None],
    module: str,
    reason: str,
    where: str,
    app_rules: AppRules | None,
) -> None:
    """The deletions of a changed ``@cache.cached`` view, at each of its routes (those
    of the old revision, where the stale entries were stored, and of the new one)."""
    old, new = versions
    dotted = f"{module}.{old.qualname}"
    options = old.options
    for name, why in (
        ("**", "its decorator takes **options"),
        ("make_cache_key", "its decorator forms keys with make_cache_key"),
        ("key_prefix", "its key_prefix is computed (a callable or a variable)"),
        ("query_string", "its query_string is not a literal"),
    ):
        value = options.get(name)
        if value is UNKNOWN or (name == "make_cache_key" and value is not None):
            # Only the view's own decorator can form such a key: delete-view
            # --endpoint lets it, with the app loaded.
            hint = "the view forms its key itself (cachectl --app ... delete-view --endpoint)"
            plan.look(dotted, f"view {reason}; {why}: {hint}", where)
            return
    if options.get("source_check") is True:
        plan.look(
            dotted,
            f"view {reason}; source_check=True keys its entries by the code, "
            "so the release stores new keys and the old ones expire unread",
            where,
        )
        return
    view_prefix = options.get("key_prefix") or keys.DEFAULT_VIEW_PREFIX
    query_string = bool(options.get("query_string"))
    if not isinstance(view_prefix, str):
        plan.look(dotted, f"view {reason}; its key_prefix is not a string", where)
        return
    why = f"view {dotted}: {reason}"
    if "%s" not in view_prefix and not query_string:
        # One key whatever the request: also for a function that is not a view
        # (@cache.cached(key_prefix="all_comments") on a helper, as the docs show).
        plan.add(Action(KEY, view_prefix, f"{why} (its constant key_prefix)", where))
        return
    rules = app_rules(module, old.qualname) if app_rules is not None else None
    if rules is None:
        rules, problems = static_rules(old, scans[0], sources.revision(plan.since))
        if new is not None and scans[1] is not None:
            more, _ = static_rules(new, scans[1], sources.revision(plan.until))
            rules += [rule for rule in more if rule not in rules]
        for problem in problems:
            plan.look(dotted, f"view {reason}; {problem}", where)
        if not rules and not problems:
            plan.look(
                dotted,
                f"view {reason}; no route decorator found on it: "
                "run with --app to read the app's URL map",
                where,
            )
    for rule in rules:
        if is_dynamic(rule):
            plan.add(
                Action(
                    VIEW_PATTERN,
                    rule,
                    f"{why} (every value of {rule})",
                    where,
                    view_prefix,
                    query_string,
                )
            )
        elif query_string:
            plan.add(
                Action(
                    VIEW_QUERIES,
                    rule,
                    f"{why} (query_string=True: every query)",
                    where,
                    view_prefix,
                    True,
                )
            )
        else:
            plan.add(Action(VIEW, rule, why, where, view_prefix))


def static_rules(
    function: CachedFunction, scan: ModuleScan, revision: Revision
) -> tuple[list[str], list[str]]:
    """The rules of a view's route decorators, with its blueprint's prefix, and what
    could not be read (as sentences)."""
    rules: list[str] = []
    problems: list[str] = []
    for route in function.routes:
        if route.rule is None:
            decorator = f"@{route.owner}.route (line {route.line})"
            problems.append(f"the rule of {decorator} is not a literal")
            continue
        owner = route.owner.rsplit(".", 1)[-1]
        owner = scan.aliases.get(owner, owner)  # from .views import bp as shop_bp
        local = scan.blueprints.get(owner)
        blueprints = [local] if local is not None else revision.blueprints.get(owner, [])
        if not blueprints:
            if owner in scan.app_names | revision.app_names:
                rules.append(route.rule)  # the app's own route
            else:
                problems.append(
                    f"{route.owner} (line {route.line}) is bound to neither Flask(...) nor "
                    "Blueprint(...) in the repository, so its URL prefix is not known"
                )
            continue
        prefixes = set()
        for blueprint in blueprints:
            registered = [r for r in revision.registrations if r.variable == owner]
            for registration in registered or [Registration(owner, None, False)]:
                given = registration.given and registration.url_prefix is not None
                prefixes.add(registration.url_prefix if given else blueprint.url_prefix)
        if UNKNOWN in prefixes or not all(p is None or isinstance(p, str) for p in prefixes):
            problems.append(f"the url_prefix of blueprint {owner} is not a literal")
            continue
        rules += [join_rule(prefix, route.rule) for prefix in sorted(prefixes, key=str)]
    return rules, problems
