"""``flask cachectl …``: every cachectl command inside Flask's own command line.

Registered through the ``flask.commands`` entry point. Flask loads every plugin command
whenever ``flask`` starts (``flask run`` and ``flask db upgrade`` too), so this module
imports only Click: the real group (``flask_group``) is imported when ``flask cachectl``
itself runs, and gets the arguments as they were typed.
"""

from __future__ import annotations

import click


@click.command(
    "cachectl",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
    short_help="Administer the app's Flask-Caching cache (cachectl).",
)
@click.argument("arguments", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def cachectl(ctx: click.Context, arguments: tuple[str, ...]) -> None:
    """Administer the app's Flask-Caching cache (cachectl): 'flask cachectl --help'."""
    from flask.cli import ScriptInfo

    from cachectl.flask_group import cache as group

    info = ctx.find_object(ScriptInfo)
    group.main(list(arguments), prog_name=ctx.command_path, obj=info)
