"""The group behind ``flask cachectl …``: cachectl's commands on the app Flask loads.

It is the same group as ``cachectl`` (same commands, options, output and exit codes)
without ``--app``, since Flask has already been told which app it is; Flask's ScriptInfo
finds the app (``--app``, ``FLASK_APP``, ``wsgi.py``/``app.py`` discovery, ``--env-file``,
a custom ``FlaskGroup``'s ``create_app``). ``flask_command`` loads it only when
``flask cachectl`` runs.
"""

from __future__ import annotations

from typing import Any

import click

from cachectl.cli import cli
from cachectl.cli.command_index import load_all_commands
from cachectl.cli.group import CachectlGroup, Session

load_all_commands()

#: How the app shows in ``config`` when Flask found it without an import string.
FOUND_BY_FLASK = "(the app flask found)"


@click.pass_context
def _start(ctx: click.Context, **options: Any) -> None:
    """Set the session up as ``cachectl --app`` would, with Flask's ScriptInfo loading."""
    from flask.cli import ScriptInfo

    info = ctx.find_object(ScriptInfo)  # the ``obj`` flask_command passes on
    app_import = getattr(info, "app_import_path", None) or FOUND_BY_FLASK
    assert cli.callback is not None
    ctx.invoke(cli.callback, app_import=app_import, **options)
    ctx.ensure_object(Session).script_info = info


cache = CachectlGroup(
    name="cachectl",
    commands=dict(cli.commands),
    params=[param for param in cli.params if param.name != "app_import"],
    callback=_start,
    help=(
        "Administer the app's Flask-Caching cache (cachectl).\n\n"
        "The commands of cachectl, on the app Flask loads: the same options, output and "
        "exit codes. 'flask cachectl COMMAND --help' describes each; the cachectl README has "
        "the rest."
    ),
    short_help="Administer the app's Flask-Caching cache (cachectl).",
)
