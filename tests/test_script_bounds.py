"""Every scripted step stays short on every server, whatever its clock does inside a script.

A step of the sweep or of the census is a Lua script that loops until its time budget is
spent, by the server's ``TIME``. Valkey (9.1 here) returns the same ``TIME`` all through
a script, so a budget by time alone never runs out there: one call swept the whole
keyspace. Each call is also bounded by work (inner SCAN steps), sized per run from what
the first call did in how long. The server's own SLOWLOG is the judge: a clear, a clear
with ``--exclude``, a dry run, both censuses and a clear with ``--backup`` (one SCAN step
a call, each match's ``DUMP`` laid out in the file's format) over 200,000 keys leave no
call of a script logged at the bound or past it, on the session's server
(``CACHECTL_REDIS_SERVER``: run this file on redis-7.0, redis-6.2 and valkey-9.1). Logging
every command of a sweep, it also tells how many SCANs each call ran: a bound by work is
not a SCAN a call.
"""

from __future__ import annotations

import datetime
import json
import pickle
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cachectl.backends.redis_scripts import STEP_BUDGET_US
from tests.conftest import run
from tests.scripted_paths import (
    SLOWLOG_ROOM,
    assert_not_one_scan_a_call,
    fresh_keyspace,
    log_every_command,
    scripted_commands,
    scripted_steps,
)
from tests.servers import ServerProcess, start_redis

APP_KEYS = 150_000
KEPT_KEYS = 500
OTHER_KEYS = 50_000
#: No command of cachectl's may hold the server longer, by the server's own clock
#: (docs/performance.md: a step lasts about its budget, 1 ms for a clear, 4 ms for a
#: census; the rest is room for a machine shared with other work).
BOUND_MS = 25


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    started = start_redis()
    yield started
    started.stop()


def _fresh(server: ServerProcess) -> redis.Redis:
    return fresh_keyspace(server, APP_KEYS, KEPT_KEYS, OTHER_KEYS, BOUND_MS)


COMMANDS = scripted_commands(APP_KEYS, KEPT_KEYS)
#: The sweep's paths, whose every command SLOWLOG can hold, so that their calls are judged
#: one by one; a census's script reads each key it meets, hundreds of thousands of commands.
SWEEPS = ("clear", "clear-exclude", "clear-dry-run", "clear-dry-run-exclude")


@pytest.mark.parametrize("name", list(COMMANDS))
def test_no_scripted_step_holds_the_server_past_the_bound(server: ServerProcess, name: str) -> None:
    client = _fresh(server)
    if name in SWEEPS:
        log_every_command(client)  # each call, and the SCANs its script ran before it
    args, expected = COMMANDS[name]
    done = run("--url", f"redis://127.0.0.1:{server.port}/0", "--key-prefix", "app_",
               "--json", *args)  # fmt: skip
    assert done.exit_code == 0, done.output
    document = json.loads(done.stdout)
    assert {key: document[key] for key in expected} == expected, document

    slow = [
        (entry["duration"] / 1000, entry["command"][:40])
        for entry in client.slowlog_get(SLOWLOG_ROOM)
        if entry["command"].split(b" ")[0].upper() in (b"EVAL", b"EVALSHA")
        and entry["duration"] >= BOUND_MS * 1000
    ]
    assert not slow, f"steps over {BOUND_MS} ms by the server's clock: {slow[:10]}"

    calls = {command: stats["calls"] for command, stats in client.info("commandstats").items()}
    steps = calls.get("cmdstat_eval", 0) + calls.get("cmdstat_evalsha", 0)
    assert steps >= 2, calls  # the scripted path ran, in more than one call
    # Bounded by a work cap sized to the budget, not by steps of a single SCAN: calls
    # carry several of the script's SCANs (fewer on a loaded machine: judged call by call).
    if name in SWEEPS:
        each = scripted_steps(client)
        assert sum(step.scans for step in each) == calls["cmdstat_scan"], calls  # all inside
        assert_not_one_scan_a_call(each, STEP_BUDGET_US)
    else:  # a census's call lasts 4 ms: four to eight SCANs on a loaded machine
        assert calls["cmdstat_scan"] >= 2 * steps, calls
    if name.startswith("clear") and "dry-run" not in name:
        assert client.dbsize() == OTHER_KEYS + (KEPT_KEYS if name == "clear-exclude" else 0)


def _slow_steps(client: redis.Redis) -> list[tuple[float, bytes]]:
    return [
        (entry["duration"] / 1000, entry["command"][:40])
        for entry in client.slowlog_get(1000)
        if entry["command"].split(b" ")[0].upper() in (b"EVAL", b"EVALSHA")
    ]


def test_a_keeping_clear_steps_stay_under_the_bound(server: ServerProcess, tmp_path: Path) -> None:
    """``--backup``: each call unlinks the keys already on disk, then takes one SCAN step's
    matches with DUMP and PTTL; none passes the bound either, and every key is kept."""
    client = _fresh(server)
    backup = tmp_path / "kept.backup"
    done = run("--url", f"redis://127.0.0.1:{server.port}/0", "--key-prefix", "app_",
               "--json", "--backup", str(backup), "clear", "--yes")  # fmt: skip
    assert done.exit_code == 0, done.output
    document = json.loads(done.stdout)
    assert document["removed"] == APP_KEYS + KEPT_KEYS, document
    assert document["backup"]["entries"] == APP_KEYS + KEPT_KEYS, document
    assert client.dbsize() == OTHER_KEYS
    slow = _slow_steps(client)
    assert not slow, f"steps over {BOUND_MS} ms by the server's clock: {slow[:10]}"
    calls = {command: stats["calls"] for command, stats in client.info("commandstats").items()}
    steps = calls.get("cmdstat_eval", 0) + calls.get("cmdstat_evalsha", 0)
    assert steps >= (APP_KEYS + KEPT_KEYS) // 1000, calls  # a step per SCAN step, not one
    assert calls["cmdstat_dump"] == APP_KEYS + KEPT_KEYS, calls


#: Fills keys ``app_<first>`` to ``app_<last>`` inside the server, each with one of ARGV[3..].
_FILL = """
local first, last, kinds = tonumber(ARGV[1]), tonumber(ARGV[2]), #ARGV - 2
for i = first, last do redis.call('SET', 'app_' .. i, ARGV[3 + i % kinds]) end
"""


def test_check_pickles_steps_stay_under_the_bound(server: ServerProcess) -> None:
    """check-pickles walks every value's opcodes inside the server: with every app key
    holding a pickle, half of them naming classes, no call passes the bound either."""
    client = _fresh(server)
    rows = [{"id": n, "at": datetime.datetime(2026, 1, 1 + n)} for n in range(3)]
    values = [b"!" + pickle.dumps(rows, 5), b"!" + pickle.dumps({"a": [1, 2], "b": "x"}, 5)]
    for first in range(0, APP_KEYS, 25_000):
        client.eval(_FILL, 0, first, min(first + 25_000, APP_KEYS) - 1, *values)
    client.slowlog_reset()
    client.config_resetstat()

    done = run("--url", f"redis://127.0.0.1:{server.port}/0", "--key-prefix", "app_",
               "--json", "check-pickles")  # fmt: skip
    assert done.exit_code == 0, done.output
    document = json.loads(done.stdout)
    assert document["entries"] == APP_KEYS + KEPT_KEYS
    classes = {found["name"]: found["entries"] for found in document["classes"]}
    assert classes == {"datetime.datetime": APP_KEYS // 2}

    slow = [
        (entry["duration"] / 1000, entry["command"][:40])
        for entry in client.slowlog_get(1000)
        if entry["command"].split(b" ")[0].upper() in (b"EVAL", b"EVALSHA")
    ]
    assert not slow, f"steps over {BOUND_MS} ms by the server's clock: {slow[:10]}"
    calls = {command: stats["calls"] for command, stats in client.info("commandstats").items()}
    steps = calls.get("cmdstat_eval", 0) + calls.get("cmdstat_evalsha", 0)
    assert steps >= 2, calls
    assert calls["cmdstat_scan"] >= 2 * steps, calls


def test_a_script_cache_flushed_mid_clear_costs_nothing(server: ServerProcess) -> None:
    """SCRIPT FLUSH (or a failover to a server that never saw the script) between two
    steps: the step answered NOSCRIPT goes again with the script's text, the TIME
    behind each call keeps every connection in step, and the count is exact."""
    client = _fresh(server)
    flusher = redis.Redis(port=server.port)
    stop = threading.Event()

    def flush_again_and_again() -> None:
        while not stop.is_set():
            flusher.script_flush()
            time.sleep(0.005)

    thread = threading.Thread(target=flush_again_and_again, daemon=True)
    thread.start()
    try:
        done = run("--url", f"redis://127.0.0.1:{server.port}/0", "--key-prefix", "app_",
                   "--json", "clear", "--yes")  # fmt: skip
    finally:
        stop.set()
        thread.join()
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["removed"] == APP_KEYS + KEPT_KEYS
    assert client.dbsize() == OTHER_KEYS
    calls = {command: stats["calls"] for command, stats in client.info("commandstats").items()}
    assert calls.get("cmdstat_eval", 0) > 1, calls  # the text went again: NOSCRIPT was met
