"""Usage errors that say what to type instead: the command closest to a misspelled one,
and where a global option written after the command belongs.

Click's own messages stop short of that: "No such command 'delte'." (its suggestions
know only the commands already imported, and cachectl imports one), and for
``cachectl get --url redis://... k`` the subcommand's nearest option ("Did you mean
'--raw'?"), never that ``--url`` is the group's. ``UsageHints`` gives the ``cachectl``
group and ``flask cachectl`` the same messages; ``closest`` is the one spelling of a
suggestion.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import click


def closest(name: str, choices: Iterable[str]) -> str:
    """``" (did you mean delete?)"``, or ``""`` when nothing is close to ``name``. Only
    the choices about as close as the closest are named: ``delte`` is ``delete``, not
    also ``delete-view``, which difflib's cut-off alone would admit."""
    import difflib  # only on a usage error: not on every start-up

    close = difflib.get_close_matches(name, sorted(choices), n=3)
    if close:
        best = difflib.SequenceMatcher(None, name, close[0]).ratio()
        close = [c for c in close if difflib.SequenceMatcher(None, name, c).ratio() > best - 0.1]
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def _global_option(group_ctx: click.Context, name: str) -> click.Option | None:
    """The group's option spelled ``name``, if it is one a command line can carry."""
    for param in group_ctx.command.params:
        if not isinstance(param, click.Option) or not param.expose_value:
            continue  # --help and --version act at once, wherever they are
        if name in (*param.opts, *param.secondary_opts):
            return param
    return None


def misplaced_global_option(exc: click.NoSuchOption) -> click.UsageError | None:
    """For an option the command does not know but its group does (``cachectl get --url
    URL k``), the error that says where it goes: ``--url is a global option: put it
    before the command: cachectl --url URL get ...``. None for any other unknown option."""
    ctx = exc.ctx
    if ctx is None or ctx.parent is None:
        return None
    option = _global_option(ctx.parent, exc.option_name)
    if option is None:
        return None
    shown = exc.option_name if option.is_flag else f"{exc.option_name} {option.metavar or 'VALUE'}"
    return click.UsageError(
        f"{exc.option_name} is a global option: put it before the command: "
        f"{ctx.parent.command_path} {shown} {ctx.info_name} ...",
        ctx,
    )


class UsageHints(click.Group):
    """A group whose usage errors suggest the closest command and place global options."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if (
            isinstance(name, str)
            and not name.startswith("-")
            and not ctx.resilient_parsing
            and self.get_command(ctx, name) is None
        ):
            choices = self.list_commands(ctx)
            raise click.UsageError(f"no command {name!r}{closest(name, choices)}", ctx)
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.NoSuchOption as exc:
            better = misplaced_global_option(exc)
            if better is None:
                raise
            raise better from None
