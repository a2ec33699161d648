"""Which module defines each command, so that the group imports only the module of the
command that runs: a short command does not pay for the others (``--help`` imports them
all for their summaries). tests/test_cli_layout.py checks that every command is here."""

from __future__ import annotations

import importlib

COMMAND_MODULES: dict[str, str] = {
    "get": "cachectl.cli.entries",
    "set": "cachectl.cli.entries",
    "delete": "cachectl.cli.entries",
    "clear": "cachectl.cli.sweeps",
    "keys": "cachectl.cli.sweeps",
    "stats": "cachectl.cli.sweeps",
    "delete-memoized": "cachectl.cli.memoized",
    "show-memoized": "cachectl.cli.memoized",
    "delete-view": "cachectl.cli.views",
    "make-fragment-key": "cachectl.cli.views",
    "fragments": "cachectl.cli.views",
    "config": "cachectl.cli.configuration",
    "completion": "cachectl.cli.configuration",
    "ttl": "cachectl.cli.lifetimes",
    "expire": "cachectl.cli.lifetimes",
    "persist": "cachectl.cli.lifetimes",
    "prune": "cachectl.cli.lifetimes",
    "batch": "cachectl.cli.batch",
    "invalidate": "cachectl.cli.groups",
    "groups": "cachectl.cli.groups",
    "plan": "cachectl.cli.plan",
    "restore": "cachectl.cli.restore",
    "warm": "cachectl.cli.warming",
    "check-pickles": "cachectl.cli.pickles",
}


def load_all_commands() -> None:
    """Import every command module (for a group that needs them all at once)."""
    for module in sorted(set(COMMAND_MODULES.values())):
        importlib.import_module(module)
