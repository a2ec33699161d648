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

from cachectl import keys
from cachectl.release.git_revisions import FileChange
from cachectl.release.plan_actions import (
    KEY,
    MEMOIZED,
    VIEW,
    VIEW_PATTERN,
    VIEW_QUERIES,
    Action,
    Plan,
    is_dynamic,
)
from cachectl.release.python_source import CacheUse
from cachectl.release.revision_sources import CacheRef, PythonSources, Revision
from cachectl.release.source_scan import (
    UNKNOWN,
    CachedFunction,
    ModuleScan,
    Registration,
    Route,
    join_rule,
    module_name,
)

#: The app's GET rules of a view, by the view's module and qualname (``--app``);
#: None when no app is loaded or the view is not in its URL map.
AppRules = Callable[[str, str], "list[str] | None"]


def _reason(old: CachedFunction, new: CachedFunction) -> str:
    """Which parts of the function differ (decorator arguments, signature, code)."""
    changed = [part for part, tree in old.parts.items() if new.parts.get(part) != tree]
    if old.decorator != new.decorator:
        changed.insert(0, f"decorator (@{old.decorator} to @{new.decorator})")
    return " and ".join(changed or ["code"]) + " changed"


def _is_cache(function: CachedFunction, scan: ModuleScan, names: set[str], ref: CacheRef) -> bool:
    """Whether the decorator is reached through a name a ``Cache(...)`` is bound to."""
    last = function.cache_name.rsplit(".", 1)[-1]
    return ref.canonical is not None or last in names or scan.aliases.get(last) in names


def _planned(
    plan: Plan,
    sources: PythonSources,
    at: tuple[str, str],
    versions: tuple[CachedFunction, CachedFunction | None],
    scans: tuple[ModuleScan, ModuleScan | None],
    why: tuple[str, str],
    app_rules: AppRules | None,
    approximate: bool = False,
) -> None:
    """Plan one cached function of the older revision (``at``: its commit and module),
    for ``why`` (the reason and ``path:line``): a memoized function by its name, a
    view at its routes; listed to look at when its decorator is on no known cache."""
    (commit, module), old, (reason, where) = at, versions[0], why
    use = CacheUse(old.decorator, old.cache_name, old.cache_module)
    ref = sources.cache_of(commit, module, use)
    names = sources.revision(plan.since).cache_names | sources.revision(plan.until).cache_names
    if not _is_cache(old, scans[0], names, ref):
        if not approximate:  # a guess on a guess is not listed: said when its code changes
            plan.look(
                f"{module}.{old.qualname}",
                f"{reason}; @{old.cache_name}.{old.decorator} is not bound to Cache(...) "
                "anywhere in the repository, so whether it is a cache is not known",
                where,
            )
        return
    if old.decorator == "memoize":
        dotted = f"{module}.{old.qualname}"
        # A name no import finds (nested, or gone from the release) is given with its
        # parameters, so delete-memoized takes it by name instead of importing it.
        by_name = "<locals>" in old.qualname or not sources.defines(plan.until, dotted)
        signature = old.parameters if by_name else None
        action = Action(MEMOIZED, dotted, reason, where, module=module, signature=signature)
        plan.add(_stored_in(action, ref))
    else:
        _plan_view(plan, sources, versions, scans, module, (reason, where, ref), app_rules)


def _stored_in(action: Action, ref: CacheRef) -> Action:
    """``action`` with the cache its decorator stores in, as the source says it."""
    return action._replace(cache_canonical=ref.canonical, cache_names=ref.names)


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
        where = f"{change.old_path}:{exc.lineno}"
        plan.look(change.old_path, f"does not parse at {since[:12]}: {exc.msg}", where)
        return
    if old_scan is None:
        return
    old_module = module_name(change.old_path, sources.checkout.files(since))
    for wrap in old_scan.foreign_wraps:
        if wrap.target is None:  # a lambda, or a function reached through an object
            subject = f"{old_module or change.old_path}: line {wrap.line}"
            why = f"@{wrap.use.expr}.{wrap.use.kind} wraps a function the source cannot name"
            plan.look(subject, why, f"{change.old_path}:{wrap.line}")
    if not old_scan.functions:
        return
    try:
        new_scan = sources.scan(until, change.new_path) if change.new_path else None
    except SyntaxError as exc:
        where = f"{change.new_path}:{exc.lineno}"
        plan.look(change.new_path or "", f"does not parse at {until[:12]}: {exc.msg}", where)
        return
    new_path = change.new_path
    new_module = module_name(new_path, sources.checkout.files(until)) if new_path else None
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
            continue
        scans = (old_scan, new_scan)
        _planned(plan, sources, (since, old_module), (old, new), scans, (reason, where), app_rules)


def plan_rendering_views(
    plan: Plan, sources: PythonSources, templates: dict[str, str], app_rules: AppRules | None
) -> None:
    """Cached views of the old revision that render a changed template by its literal
    name: their stored pages hold what the old template made."""
    if not templates:
        return
    for path in sources.checkout.files_containing(plan.since, "render_template"):
        module = module_name(path, sources.checkout.files(plan.since))
        try:
            scan = sources.scan(plan.since, path)
        except SyntaxError as exc:
            # Whether it renders a changed template is not known: never dropped.
            reason = f"may render a changed template, but does not parse: {exc.msg}"
            plan.look(path, reason, f"{path}:{exc.lineno}")
            continue
        if scan is None or module is None:
            continue
        for function in scan.functions.values():
            used = [templates[name] for name in function.renders if name in templates]
            if function.decorator != "cached" or not used:
                continue
            reason = f"renders {', '.join(used)}, changed by the release"
            _planned_as_changed(plan, sources, path, module, scan, function, reason, app_rules)


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
        return  # said by the caller, which reads the same file
    function = scan.functions.get(qualname) if scan is not None else None
    if scan is None or function is None:
        return
    reason = f"calls {via}, which changed (followed with --follow-calls: approximate)"
    _planned_as_changed(plan, sources, path, module, scan, function, reason, app_rules)


def _planned_as_changed(
    plan: Plan,
    sources: PythonSources,
    path: str,
    module: str,
    scan: ModuleScan,
    function: CachedFunction,
    reason: str,
    app_rules: AppRules | None,
) -> None:
    """A cached function of the older revision whose own code did not change, planned as
    if it had (it renders a changed template, or calls changed code): approximate."""
    why = (reason, f"{path}:{function.line}")
    at, versions = (plan.since, module), (function, None)
    _planned(plan, sources, at, versions, (scan, None), why, app_rules, approximate=True)


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
    why: tuple[str, str, CacheRef],
    app_rules: AppRules | None,
) -> None:
    """The deletions of a changed ``@cache.cached`` view, at each of its routes (those
    of the old revision, where the stale entries were stored, and of the new one);
    ``why`` is the reason, ``path:line`` and the cache fields of its actions."""
    old, new = versions
    reason, where, ref = why
    dotted = f"{module}.{old.qualname}"
    options = old.options
    for name, why_not in (
        ("**", "its decorator's arguments are not all readable (**options, or made elsewhere)"),
        ("*", "its decorator takes positional arguments past key_prefix"),
        ("make_cache_key", "its decorator forms keys with make_cache_key"),
        ("key_prefix", "its key_prefix is computed (a callable or a variable)"),
        ("query_string", "its query_string is not a literal"),
    ):
        value = options.get(name)
        if value is UNKNOWN or (name == "make_cache_key" and value is not None):
            # Only the view's own decorator can form such a key: delete-view
            # --endpoint lets it, with the app loaded.
            hint = "the view forms its key itself (cachectl --app ... delete-view --endpoint)"
            plan.look(dotted, f"view {reason}; {why_not}: {hint}", where)
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
    said = f"view {dotted}: {reason}"
    if "%s" not in view_prefix and not query_string:
        # One key whatever the request: also for a function that is not a view
        # (@cache.cached(key_prefix="all_comments") on a helper, as the docs show).
        action = Action(KEY, view_prefix, f"{said} (its constant key_prefix)", where)
        plan.add(_stored_in(action, ref))
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
            said_here = f"{said} (every value of {rule})"
            action = Action(VIEW_PATTERN, rule, said_here, where, view_prefix, query_string)
        elif query_string:
            said_here = f"{said} (query_string=True: every query)"
            action = Action(VIEW_QUERIES, rule, said_here, where, view_prefix, True)
        else:
            action = Action(VIEW, rule, said, where, view_prefix)
        plan.add(_stored_in(action, ref))


def static_rules(
    function: CachedFunction, scan: ModuleScan, revision: Revision
) -> tuple[list[str], list[str]]:
    """The rules of a view's route decorators, with its blueprint's prefix, and what
    could not be read (as sentences)."""
    return route_rules(function.routes, scan, revision)


def route_rules(
    routes: list[Route], scan: ModuleScan, revision: Revision
) -> tuple[list[str], list[str]]:
    """The rules of route decorators in one module, each with its blueprint's prefix, and
    what could not be read (as sentences): ``plan``'s views, and the routes whose argument
    names decide a view's key under Flask-Caching 2.5.0 (``route_scan``)."""
    rules: list[str] = []
    problems: list[str] = []
    for route in routes:
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
