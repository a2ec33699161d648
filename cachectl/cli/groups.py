"""Invalidation groups from the config file: groups (list them), invalidate (run them)."""

from __future__ import annotations

import shlex
from typing import Any

import click

from cachectl.cli.group import Session, cli, pass_session
from cachectl.cli.options import dry_run_option, keep_going_option, yes_option
from cachectl.errors import UsageError
from cachectl.runtime.wording import counted


@cli.command("groups")
@pass_session
def groups_command(session: Session) -> None:
    """List the invalidation groups of the config file, with the commands each runs.

    Groups are read from --config FILE (or CACHECTL_CONFIG), else from the
    cachectl.toml found from here upward (with --app too), and checked: a
    mistake in any group exits 2 naming the file and the group.

    \b
      cachectl groups
      cachectl --json groups
    """
    from cachectl.config.groups import load_groups

    path, groups = load_groups(session.request)
    output = session.output
    if output.as_json:
        output.document(
            {"ok": True, "file": str(path), "groups": [g.document() for g in groups.values()]}
        )
        return
    if not groups:
        output.notice(f"no invalidation groups in {path}")
        return
    output.notice(f"invalidation groups in {path}:")
    for group in groups.values():
        commands = group.commands()
        output.result(f"{group.name} ({counted(len(commands), 'action')})")
        for command in commands:
            output.result("  " + shlex.join(command))


@cli.command()
@click.argument("names", nargs=-1, required=True, metavar="GROUP...")
@dry_run_option("Run every action as its dry run: say what would go, change nothing.")
@keep_going_option
@yes_option("Delete by the groups' patterns without asking (needed without a terminal).")
@click.option(
    "--warm",
    "warm_after",
    is_flag=True,
    help="With --app: after the invalidations, warm what they removed that names a call or a "
    "path (a memoized call with its arguments, a view path), as 'cachectl warm' does; list "
    "the others (a whole function, a pattern), which cannot be warmed.",
)
@pass_session
def invalidate(
    session: Session,
    names: tuple[str, ...],
    dry_run: bool,
    keep_going: bool,
    yes: bool,
    warm_after: bool,
) -> None:
    """Run the invalidation groups GROUP... of the config file, as one batch.

    A group (a [groups.NAME] table in cachectl.toml) lists memoized functions
    (delete-memoized), view paths (delete-view), template fragments
    (make-fragment-key --delete) and key patterns (delete --pattern), each
    entry the arguments of that command, split as a shell would ('#' starts a
    comment only at the start of a word). Every action is checked before the
    first runs, as far as it can be without the server (its options, the
    function and how its arguments bind, the view's endpoint, the fragment's
    arguments): one that fails stops the run with nothing done (exit 2). The
    actions then run in that order, group after group (an action named twice
    runs once), with the output, --dry-run, --keep-going and exit status of
    'cachectl batch'. Groups with patterns ask first on a terminal and need
    --yes without one. An unknown GROUP exits 2 and lists the groups there are.
    --warm adds a 'warm' action after the invalidations for each memoized call
    and view path they name (checked with the others, before the first runs).

    \b
      cachectl invalidate prices
      cachectl invalidate prices catalog --dry-run
      cachectl --app 'shop:create_app()' invalidate prices --yes
      cachectl --app 'shop:create_app()' invalidate prices --warm
    """
    from cachectl.cli.batch_runner import finish, run_batch
    from cachectl.cli.entries import confirm
    from cachectl.config.groups import load_groups, pick_groups
    from cachectl.operations.batch import BatchLine

    path, groups = load_groups(session.request)
    chosen = pick_groups(groups, names, path)
    lines: list[BatchLine] = []
    seen: set[tuple[str, ...]] = set()
    for group in chosen:
        for command in group.commands():
            if command not in seen:
                seen.add(command)
                lines.append(BatchLine(len(lines) + 1, command, group.name))
    globs = [glob for group in chosen for glob in group.patterns]
    group_ctx = click.get_current_context().parent
    assert group_ctx is not None
    extra: dict[str, Any] = {"groups": [group.name for group in chosen], "file": str(path)}
    if warm_after:
        from cachectl.cli.warming import warm_lines

        if session.request.app_import is None:
            raise UsageError("--warm runs the app's own code: name the app with --app IMPORT")
        warming, not_warmable = warm_lines(group_ctx, lines)
        lines += warming
        extra["not_warmed"] = [{"command": shown, "why": why} for shown, why in not_warmable]
        for shown, why in not_warmable:
            session.output.notice(f"not warmed: {shown}: {why}")

    def ask() -> None:  # once every action has passed its checks, before the first runs
        if globs and not dry_run:
            confirm(
                session,
                f"Run {counted(len(lines), 'invalidation')}, deleting the app's keys matching "
                + ", ".join(repr(glob) for glob in globs),
                yes,
            )

    report = run_batch(group_ctx, lines, dry_run=dry_run, keep_going=keep_going, before_running=ask)
    finish(session, report, extra)
