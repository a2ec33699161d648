"""The command line: parse options, call one operation, render its result.

``group`` holds the ``cachectl`` group, the session and the error handling;
``options`` the options several commands share; ``render`` the text output
helpers; each other module a theme of commands. No backend or key logic lives
here: that is ``cachectl.operations`` and below.
"""

from cachectl.cli import configuration, entries, lifetimes, memoized, sweeps, views  # noqa: F401
from cachectl.cli.group import cli, main

__all__ = ["cli", "main"]
