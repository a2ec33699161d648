"""What the step-bound and no-scripting tests share: a keyspace of the app's keys, keys an
``--exclude`` glob keeps and other apps' keys, with SLOWLOG set to log what took longer
than the bound; and each scripted command with the counts it must report."""

from __future__ import annotations

from typing import Any

import redis

from tests.conftest import fill_keys
from tests.servers import ServerProcess


def fresh_keyspace(
    server: ServerProcess, app_keys: int, kept_keys: int, other_keys: int, bound_ms: int
) -> redis.Redis:
    """The keys, then SLOWLOG and the command statistics emptied (filling is not ours)."""
    client = redis.Redis(port=server.port)
    client.flushall()
    fill_keys(client, "app_{}", app_keys)
    fill_keys(client, "app_keep:{}", kept_keys)
    fill_keys(client, "other_{}", other_keys)
    client.config_set("slowlog-log-slower-than", bound_ms * 1000)
    client.config_set("slowlog-max-len", 1000)
    client.slowlog_reset()
    client.config_resetstat()
    return client


def scripted_commands(app_keys: int, kept_keys: int) -> dict[str, tuple[list[str], dict[str, Any]]]:
    """Every scripted path (clear, --exclude, dry runs, both censuses), by name: its
    arguments and what its --json document must count."""
    return {
        "clear": (["clear", "--yes"], {"removed": app_keys + kept_keys}),
        "clear-exclude": (
            ["clear", "--exclude", "keep:*", "--yes"],
            {"removed": app_keys, "excluded": kept_keys},
        ),
        "clear-dry-run": (["clear", "--dry-run"], {"removed": app_keys + kept_keys}),
        "stats": (["stats"], {"total": app_keys + kept_keys}),
        "clear-dry-run-exclude": (
            ["clear", "--dry-run", "--exclude", "keep:*"],
            {"removed": app_keys, "excluded": kept_keys},
        ),
        "stats-by-function": (["stats", "--by-function"], {}),
    }
