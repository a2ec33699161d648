"""plan: what a release changed that the cache may hold stale, from its git diff."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from cachectl.cli import render
from cachectl.cli.group import Session, cli, pass_session
from cachectl.cli.options import dry_run_option
from cachectl.generations import CURRENT
from cachectl.importing import lazy_module

if TYPE_CHECKING:
    from cachectl import plan_actions
    from cachectl.operations import plan as plan_ops
else:
    plan_actions = lazy_module("cachectl.plan_actions")
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
@pass_session
def plan(
    session: Session,
    since: str,
    until: str,
    follow_calls: bool,
    apply_plan: bool,
    dry_run: bool,
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
    reason, and not applied. Pattern deletions need Redis.

    \b
      cachectl plan --since v1.4.0
      cachectl --json plan --since "$PREVIOUS_RELEASE" --until HEAD
      cachectl --config cache.toml plan --since v1.4.0 --apply --dry-run
      cachectl --app 'shop:create_app()' plan --since v1.4.0 --apply
    """
    # The app's code runs only when named with --app (or CACHECTL_APP), never
    # because FLASK_APP happens to be exported: the plan itself reads git alone.
    app = session.app if session.request.app_import is not None else None
    made = plan_ops.make_plan(since, until, app=app, follow_calls=follow_calls)
    if not apply_plan:
        # Shown with the current generation's key forms (they differ only for a
        # dynamic query_string view's pattern, which --apply forms as the app's).
        run = plan_ops.PlanRun(made, applied=False, dry_run=dry_run, generation=CURRENT)
    else:
        settings = session.settings
        backend = session.backend()
        with session.output.progress("deleting") as on_progress:
            run = plan_ops.apply_plan(
                backend, settings, made, app=app, dry_run=dry_run, on_progress=on_progress
            )
    if session.output.as_json:
        session.audit.record_done(run.document())
        session.output.document(run.document())
        return
    _show(session, run)
    if apply_plan:
        for action, report in run.results:
            session.output.result(f"» {action.command(run.generation)}")
            render.report(session, report, backend, {})
    session.audit.record_done(run.document())


def _show(session: Session, run: plan_ops.PlanRun) -> None:
    """The plan, grouped, each action with its reason and source; then what needs a look."""
    output, made = session.output, run.plan
    output.result(
        f"plan for {made.since[:12]}..{made.until[:12]}: {len(made.actions)} actions, "
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
