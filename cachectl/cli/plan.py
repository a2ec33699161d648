"""plan: what a release changed that the cache may hold stale, from its git diff."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from cachectl.cli import render
from cachectl.cli.group import Session, cli, pass_session
from cachectl.cli.options import dry_run_option
from cachectl.config.generations import CURRENT
from cachectl.runtime.importing import lazy_module
from cachectl.runtime.wording import counted

if TYPE_CHECKING:
    from cachectl.operations import plan as plan_ops
    from cachectl.release import plan_actions, plan_caches
else:
    plan_actions = lazy_module("cachectl.release.plan_actions")
    plan_caches = lazy_module("cachectl.release.plan_caches")
    plan_ops = lazy_module("cachectl.operations.plan")


@cli.command("plan")
@click.option("--since", required=True, metavar="REV", help="The release before (tag, commit).")
@click.option(
    "--until", default="HEAD", show_default=True, metavar="REV", help="The release to deploy."
)
@click.option(
    "--follow-calls",
    is_flag=True,
    help="Also cached functions and views that call (by name, within the repository, "
    "up to 4 calls deep) a function that changed. Approximate.",
)
@click.option("--apply", "apply_plan", is_flag=True, help="Run the plan on the cache.")
@dry_run_option("With --apply: print what each action would write or delete; change nothing.")
@click.option(
    "--warm",
    "warm_after",
    is_flag=True,
    help="With --apply and --app: then request each view path the plan invalidated through "
    "the app's test client, as 'cachectl warm view' does; the other actions (a whole "
    "function, a pattern) are listed as not warmable.",
)
@pass_session
def plan(
    session: Session,
    since: str,
    until: str,
    follow_calls: bool,
    apply_plan: bool,
    dry_run: bool,
    warm_after: bool,
) -> None:
    """Print what the release SINCE..UNTIL may have left stale in the cache; --apply runs it.

    Run in the app's git checkout. Python files are compared on their syntax
    tree, so formatting and comments do not count (a signature or a decorator's
    arguments do); nothing of the app runs unless --app names it.

    \b
    @cache.memoize functions and methods whose code changed, renamed or removed:
      delete-memoized module.qualname (the old name).
    @cache.cached views whose code changed: delete-view at each GET route (from
      @app.route / @bp.route and blueprint url_prefix, or the app's URL map with
      --app); a rule with <variables> by pattern; query_string=True every query;
      a constant key_prefix that key.
    {% cache %} blocks whose content changed: the fragment's key (or, for
      vary_on known only at render time, every key of the fragment by pattern).
    Cached views that render_template() a changed template (or one that extends,
      includes or imports it): delete-view at their routes.
    With --follow-calls, cached functions and views whose own code is the same
      but that call a changed function (by name, within the repository), each
      with the chain of calls: approximate, and marked so.

    What cannot be read from the source is listed under "needs a look" with the
    reason, and not applied (the plan still exits 0). Pattern deletions need Redis.

    With several caches, each action names its own (--cache NAME, as --app or the
    config file names it) and --apply runs it there; --cache NAME keeps that
    cache's actions alone, --cache all (or none) all of them. An action whose
    cache the source does not settle needs a look.

    \b
      cachectl plan --since v1.4.0
      cachectl --json plan --since "$PREVIOUS_RELEASE" --until HEAD
      cachectl --config cache.toml plan --since v1.4.0 --apply --dry-run
      cachectl --app 'shop:create_app()' plan --since v1.4.0 --apply
    """
    if warm_after and (not apply_plan or session.request.app_import is None):
        from cachectl.errors import UsageError

        raise UsageError("--warm runs the app's own code after --apply: give --apply and --app")
    # The app's code runs only when named with --app (or CACHECTL_APP), never
    # because FLASK_APP happens to be exported: the plan itself reads git alone.
    app = session.app if session.request.app_import is not None else None
    known = _known_caches(session, apply_plan)
    made = plan_ops.make_plan(since, until, app=app, follow_calls=follow_calls, caches=known)
    _only_the_chosen_cache(session, made, known)
    if not apply_plan:
        # Shown with the key forms --apply would use, so each printed command does what
        # applying does (they differ for a dynamic query_string view's pattern, and under
        # Flask-Caching 2.5.0 for a route with a path argument).
        generation = _printed_generation(session, made)
        run = plan_ops.PlanRun(made, applied=False, dry_run=dry_run, generation=generation)
    else:
        targets = _targets(session, made)  # every cache resolved before the first runs
        with session.output.progress("deleting") as on_progress:
            run = plan_ops.apply_plan(
                targets, made, app=app, dry_run=dry_run, on_progress=on_progress
            )
    for done in run.results:
        if plan_ops.found_nothing(done.report):
            where = f" in cache {done.target.label}" if done.target.label else ""
            session.output.warn(
                f"{done.action.command(run.generation)} found nothing{where}: never cached "
                "or expired, or the entries are in another cache"
            )
    document = run.document()
    warmed = None
    if warm_after:
        from cachectl.operations.warming import warm_applied

        warmed = warm_applied(run.results, app, dry_run, run.generation)
        document["warm"] = warmed.document()
    if session.output.as_json:
        session.audit.record_done(document)
        session.output.document(document)
    else:
        _show(session, run)
        for done in run.results:
            session.output.result(f"» {done.action.command(run.generation)}")
            render.report(session, done.report, done.target.backend, {})
        session.audit.record_done(document)
        if warmed is not None:
            from cachectl.cli.warming import render_results

            render_results(session, warmed)
    if warmed is not None and warmed.failed:
        click.get_current_context().exit(1)


def _printed_generation(session: Session, made: plan_actions.Plan) -> str:
    """The key form a printed plan's commands use: as ``apply_plan`` picks it, the
    generation of the first action's cache. A plan is printed without any configuration
    too: then the one --compat, CACHECTL_COMPAT or the installed Flask-Caching names
    (the release read exactly), else the current generation's."""
    from cachectl.config.generations import resolve_generation
    from cachectl.errors import CachectlError

    selector = made.actions[0].cache_selector if made.actions else None
    try:
        sub = session if selector is None else session.for_cache(selector)
        return sub.settings.generation.key_form
    except CachectlError:
        pass
    try:
        return resolve_generation(session.request.requested_compat()).key_form
    except CachectlError:
        return CURRENT


def _known_caches(session: Session, applying: bool) -> plan_caches.KnownCaches | None:
    """The caches the invocation knows, by every name (the app's with --app, else the
    config file's); one unnamed cache for --apply without either; None for a plan
    only printed without either (the repository's own caches are named then)."""
    from cachectl.config.sources import read_config_file
    from cachectl.errors import CachectlError

    request = session.request
    if request.app_import is not None:
        loaded = session.loaded_app()
        assert loaded is not None
        found = [
            plan_caches.KnownCache(str(c.index), c.label, frozenset([*c.names, c.label]))
            for c in loaded.caches
        ]
        return plan_caches.KnownCaches(found, f"the app {loaded.import_path}")
    config_file = request.sources()[1]
    if config_file is not None:
        path = Path(config_file)
        path = path if path.is_absolute() else request.cwd / path
        try:
            names = list(read_config_file(path).caches)
        except CachectlError as exc:
            if applying:
                raise
            session.output.warn(f"{exc.message}: the caches are named from the source")
            names = []
        if names:
            found = [plan_caches.KnownCache(name, name, frozenset({name})) for name in names]
            return plan_caches.KnownCaches(found, str(path))
    if applying:
        return plan_caches.KnownCaches([plan_caches.KnownCache(None, "")], "the command line")
    return None


def _only_the_chosen_cache(
    session: Session, made: plan_actions.Plan, known: plan_caches.KnownCaches | None
) -> None:
    """``--cache NAME``: the actions of that cache alone, the others said to be left
    out; ``--cache all`` (or none) keeps every action, each on its own cache."""
    from cachectl.config.sources import select_named_cache
    from cachectl.errors import UsageError

    wanted = session.request.cache_name
    named = [cache for cache in (known.caches if known else []) if cache.label]
    if wanted in (None, "all") or len(named) < 2:
        return
    if session.request.app_import is not None:
        chosen = session.app_cache(wanted)
        label = chosen.label if chosen is not None else str(wanted)
    elif known is not None and known.origin != "the repository":
        label = select_named_cache({c.label: {} for c in named}, wanted, known.origin)[0]
    else:
        label = next((c.label for c in named if wanted in (c.label, *c.names)), "")
        if not label:
            raise UsageError(
                f"--cache {wanted}: the caches are {', '.join(c.label for c in named)}"
            )
    left_out = plan_caches.only_cache(made, label)
    if left_out:
        session.output.warn(
            f"{counted(len(left_out), 'action')} of other caches left out (--cache {label}); "
            "without --cache, or with --cache all, each runs on its own cache"
        )


def _targets(session: Session, made: plan_actions.Plan) -> dict[str | None, plan_ops.Target]:
    """The backend and settings of each cache the plan's actions run on."""
    targets = {}
    for action in made.actions:
        selector = action.cache_selector
        if selector not in targets:
            sub = session if selector is None else session.for_cache(selector)
            targets[selector] = plan_ops.Target(sub.backend(), sub.settings, action.cache)
    if not targets:  # nothing to run: the configuration is still checked, as before
        targets[None] = plan_ops.Target(session.backend(), session.settings, None)
    return targets


def _show(session: Session, run: plan_ops.PlanRun) -> None:
    """The plan, grouped, each action with its reason and source; then what needs a look."""
    output, made = session.output, run.plan
    output.result(
        f"plan for {made.since[:12]}..{made.until[:12]}: {counted(len(made.actions), 'action')}, "
        f"{len(made.needs_look)} to look at"
    )
    for title, kinds in plan_actions.GROUPS:
        actions = [action for action in made.actions if action.what in kinds]
        if actions:
            output.result(f"{title}:")
        for action in actions:
            output.result(f"  {action.command(run.generation)}")
            output.result(f"      {action.reason} ({action.source})")
    if made.needs_look:
        output.result("needs a look (not applied):")
        for item in made.needs_look:
            output.result(f"  {item.subject}: {item.reason} ({item.source})")
        count = len(made.needs_look)
        what = "1 change needs" if count == 1 else f"{count} changes need"
        output.warn(f"{what} a look: the plan cannot settle it alone (not applied)")
    if not made.actions and not made.needs_look:
        output.result("nothing to invalidate")
