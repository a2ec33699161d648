"""What the step-bound, sweep-budget and no-scripting tests share: a keyspace of the app's
keys, keys an ``--exclude`` glob keeps and other apps' keys, with SLOWLOG set to log what took
longer than the bound; each scripted command with the counts it must report; and each call of
a Lua step as the server's SLOWLOG saw it, with the SCANs it ran."""

from __future__ import annotations

from collections import Counter
from typing import Any, NamedTuple

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


#: Room in SLOWLOG for every command of a sweep of the tests' keyspaces: a scripted clear
#: of 200,000 keys logs about 4,000 (each call, the TIME behind it, and the SCAN, UNLINK
#: and TIME its script ran).
SLOWLOG_ROOM = 100_000


def log_every_command(client: redis.Redis) -> None:
    """SLOWLOG set to log every command, with its duration, and emptied."""
    client.config_set("slowlog-log-slower-than", 0)
    client.config_set("slowlog-max-len", SLOWLOG_ROOM)
    client.slowlog_reset()


class Step(NamedTuple):
    """One call of a Lua step (EVAL or EVALSHA), by the server's own records."""

    #: The SCANs its script ran.
    scans: int
    #: How long it held the server, in microseconds, by the server's clock.
    us: int


def scripted_steps(client: redis.Redis) -> list[Step]:
    """Each call of a Lua step since ``log_every_command``, oldest first. The server logs
    the commands a script runs as each ends, so before the script's own entry (Redis 6.2,
    7.0 and Valkey 9.1 alike), and runs one script at a time: the SCANs logged since the
    previous call's entry are this call's."""
    entries = client.slowlog_get(SLOWLOG_ROOM)
    assert len(entries) < SLOWLOG_ROOM, "SLOWLOG dropped entries: the steps cannot be told"
    steps, scans = [], 0
    for entry in sorted(entries, key=lambda entry: entry["id"]):
        name = entry["command"].split(b" ")[0].upper()
        if name == b"SCAN":
            scans += 1
        elif name in (b"EVAL", b"EVALSHA"):
            steps.append(Step(scans, entry["duration"]))
            scans = 0
    return steps


def assert_not_one_scan_a_call(steps: list[Step], budget_us: int) -> None:
    """The calls of a sweep went on while their budget (``budget_us``) lasted, rather than
    ending after one SCAN each: a round trip per 250 keys looked at would cost a clear most
    of its speed.

    How many SCANs fit in a call depends on the machine: the budget is by the server's
    clock, and on a loaded machine the server waits for a core mid-call, so a SCAN can take
    half the budget or more and the call then carries one. A sweep of one SCAN a call
    carries one at any load. So: the median call ran two SCANs or more; or, where the load
    left most calls one, at most a quarter of the calls ran one within half their budget,
    with time for another (the walk's end does, and a call after one the machine held up,
    where the cap starts again from one SCAN). On 2 cores at load 3 to 15, 121 sweeps on
    the three servers: at most 32 % of calls ran one SCAN, 18 % within half the budget;
    patched to one SCAN a call, 77 sweeps: every call, 46 to 100 % within half of it."""
    single = [step for step in steps if step.scans < 2]
    hasty = [step for step in single if step.us < budget_us / 2]
    scans = sorted(Counter(step.scans for step in steps).items())
    assert len(single) * 2 < len(steps) or len(hasty) * 4 <= len(steps), (
        f"{len(single)} of {len(steps)} calls ran one SCAN, {len(hasty)} of them within half "
        f"their budget; calls by their SCANs: {scans}"
    )
