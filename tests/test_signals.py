"""Signals that end a run, as a deploy's ``timeout`` (SIGTERM), a closed SSH session (SIGHUP)
and Ctrl-C (SIGINT) send them: the installed ``cachectl`` against a real Redis, each run a
child process signalled mid-way. Every one stops at a safe point, says what it had done,
writes its audit line, and exits 128 + the signal's number; a second run finishes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import CONSOLE_SCRIPT, fill_keys, run_console
from tests.servers import ServerProcess, start_redis

#: Enough keys that a clear is still running when the signal lands (about a second of
#: work on a quiet machine), filled by the server itself (DEBUG POPULATE) in a blink.
TOTAL = 400_000
PREFIX = "big_"
STOPS = {
    signal.SIGTERM: (143, "stopped by SIGTERM"),
    signal.SIGHUP: (129, "stopped by SIGHUP"),
    signal.SIGINT: (130, "interrupted"),
}


@pytest.fixture(scope="module")
def debug_redis() -> Iterator[ServerProcess]:
    server = start_redis("--enable-debug-command", "yes")
    yield server
    server.stop()


@pytest.fixture
def full(debug_redis: ServerProcess) -> redis.Redis:
    """Database 0 of the module's server holding TOTAL keys under PREFIX."""
    client = redis.Redis(port=debug_redis.port)
    client.flushdb()
    try:
        client.execute_command("DEBUG", "POPULATE", TOTAL, PREFIX, 1)  # big_:0, big_:1, ...
    except redis.ResponseError:  # a server that refuses DEBUG: a pipeline is slower
        fill_keys(client, PREFIX + ":{}", TOTAL)
    assert client.dbsize() == TOTAL
    return client


def _target(client: redis.Redis, log: Path) -> list[str]:
    port = client.connection_pool.connection_kwargs["port"]
    return ["--url", f"redis://127.0.0.1:{port}/0", "--key-prefix", PREFIX, "--audit-log", str(log)]


def _signal_mid_run(
    args: list[str], client: redis.Redis, signals: list[int], cwd: Path | None = None
) -> tuple[int, str]:
    """Run cachectl, send ``signals`` once it has started removing keys; its exit status and
    standard error."""
    process = subprocess.Popen(
        [str(CONSOLE_SCRIPT), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd
    )
    deadline = time.monotonic() + 60
    while client.dbsize() >= TOTAL and time.monotonic() < deadline:
        time.sleep(0.005)
    assert process.poll() is None, "the run ended before the signal: more keys are needed"
    for signum in signals:
        process.send_signal(signum)
        time.sleep(0.002)
    sent = time.monotonic()
    _, stderr = process.communicate(timeout=60)
    assert time.monotonic() - sent < 10, "the run did not stop at its next safe point"
    return process.returncode, stderr.decode()


def _lines(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.mark.parametrize(
    ("signum", "required"),
    [(signal.SIGTERM, True), (signal.SIGHUP, False), (signal.SIGINT, True)],
    ids=["SIGTERM-audit-required", "SIGHUP", "SIGINT-audit-required"],
)
def test_a_signal_stops_a_clear_which_logs_what_it_removed(
    full: redis.Redis, tmp_path: Path, signum: int, required: bool
) -> None:
    log = tmp_path / "audit.jsonl"
    args = [*_target(full, log), *(["--audit-required"] if required else []), "clear", "--yes"]
    code, stderr = _signal_mid_run(args, full, [signum])

    status, reason = STOPS[signum]
    assert code == status, stderr
    assert "Traceback" not in stderr
    (error,) = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert error.startswith(f"error: {reason}: ") and "keys removed before the stop" in error
    removed = TOTAL - full.dbsize()
    assert 0 < removed < TOTAL
    (line,) = _lines(log)
    assert line["command"] == "clear" and line["exit_code"] == status
    # The first signal stops after the step in flight: the count is exact.
    assert line["done"] == {"removed": removed}
    assert line["error"] == error.removeprefix("error: ")
    assert f"{removed:,} keys removed" in error

    again = run_console(*args)
    assert again.returncode == 0, again.stderr
    assert full.dbsize() == 0
    assert [entry["exit_code"] for entry in _lines(log)] == [status, 0]


def test_a_second_signal_stops_at_once_and_the_count_is_a_lower_bound(
    full: redis.Redis, tmp_path: Path
) -> None:
    log = tmp_path / "audit.jsonl"
    code, stderr = _signal_mid_run(
        [*_target(full, log), "clear", "--yes"], full, [signal.SIGTERM, signal.SIGTERM]
    )
    assert code == 143, stderr
    (line,) = _lines(log)
    removed = TOTAL - full.dbsize()
    done = line["done"]
    if "removed_at_least" in done:  # the second signal caught a step in flight
        assert done["removed_at_least"] <= removed
        assert f"at least {done['removed_at_least']:,} keys removed" in stderr
    else:  # the first had already stopped it: exact
        assert done == {"removed": removed}
    assert line["exit_code"] == 143


def test_a_signal_ends_a_batch_even_with_keep_going_and_logs_the_line(
    full: redis.Redis, tmp_path: Path
) -> None:
    log = tmp_path / "audit.jsonl"
    (tmp_path / "deploy.txt").write_text("clear --yes\nset after-the-stop 1\n")
    args = [*_target(full, log), "batch", "--keep-going", "deploy.txt"]
    code, stderr = _signal_mid_run(args, full, [signal.SIGTERM], cwd=tmp_path)

    assert code == 143, stderr
    assert "Traceback" not in stderr
    removed = TOTAL - full.dbsize()
    assert not full.exists(PREFIX + "after-the-stop")  # the line after the stop never ran
    (line,) = _lines(log)
    assert line["command"] == "batch" and line["exit_code"] == 143
    first, second = line["done"]["lines"]
    assert first["exit_code"] == 143 and first["done"] == {"removed": removed}
    assert second["exit_code"] is None
    assert line["error"].startswith(f"stopped by SIGTERM: {removed:,} keys removed")

    again = run_console(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert full.keys(PREFIX + ":*") == []


@pytest.fixture
def silent_server() -> Iterator[tuple[int, threading.Event]]:
    """A port that accepts connections and never answers a byte; the event is set once a
    client has connected."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    connected = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        try:
            while True:
                held.append(listener.accept()[0])
                connected.set()
        except OSError:  # closed at the end of the test
            pass

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1], connected
    listener.close()
    for connection in held:
        connection.close()


@pytest.mark.parametrize("signum", sorted(STOPS), ids=lambda s: signal.Signals(s).name)
def test_a_signal_while_the_server_never_answers_still_logs_the_run(
    silent_server: tuple[int, threading.Event], tmp_path: Path, signum: int
) -> None:
    port, connected = silent_server
    log = tmp_path / "audit.jsonl"
    process = subprocess.Popen(
        [str(CONSOLE_SCRIPT), "--url", f"redis://127.0.0.1:{port}/0", "--timeout", "120",
         "--audit-log", str(log), "--audit-required", "delete", "k"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    assert connected.wait(60), "cachectl never connected"
    time.sleep(0.2)  # it now waits for the reply that never comes
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=30)  # well before the 120 s timeout

    status, reason = STOPS[signum]
    assert process.returncode == status, stderr
    assert stderr.decode().splitlines()[-1] == f"error: {reason}"
    (line,) = _lines(log)
    assert line["command"] == "delete" and line["exit_code"] == status
    assert line["error"] == reason and line["done"] is None


def test_sighup_ignored_by_nohup_stays_ignored(full: redis.Redis, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    process = subprocess.Popen(
        [str(CONSOLE_SCRIPT), *_target(full, log), "clear", "--yes"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),  # as nohup does
    )
    deadline = time.monotonic() + 60
    while full.dbsize() >= TOTAL and time.monotonic() < deadline:
        time.sleep(0.005)
    assert process.poll() is None
    process.send_signal(signal.SIGHUP)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert full.dbsize() == 0
    (line,) = _lines(log)
    assert line["exit_code"] == 0 and line["done"]["removed"] == TOTAL


def test_a_closed_standard_output_is_141_like_sigpipe_and_logged(
    full: redis.Redis, tmp_path: Path
) -> None:
    """A reader that went away is the other way a run ends from outside: the same
    convention (128 + SIGPIPE), quiet, and its audit line says so."""
    full.flushdb()
    fill_keys(full, PREFIX + "{}", 10)
    log = tmp_path / "audit.jsonl"
    reader, writer = os.pipe()
    os.close(reader)
    try:
        done = subprocess.run(
            [str(CONSOLE_SCRIPT), *_target(full, log), "clear", "--yes"],
            stdout=writer,
            stderr=subprocess.PIPE,
            timeout=60,
        )
    finally:
        os.close(writer)
    assert done.returncode == 141, done.stderr
    assert done.stderr == b""
    (line,) = _lines(log)
    assert line["exit_code"] == 141 and line["done"]["removed"] == 10


PROBE = """
import os, signal, sys
from cachectl.runtime import interrupts
if sys.argv[1] == "console":
    interrupts.own_the_process()
try:
    with interrupts.handled():
        os.kill(os.getpid(), signal.SIGTERM)  # its handler raises Stop here: no long run
        for _ in range(1000):
            pass
except interrupts.Stop:
    pass
print(signal.getsignal(signal.SIGTERM) == signal.SIG_IGN)
"""


@pytest.mark.parametrize(("caller", "ignored"), [("console", True), ("in-process", False)])
def test_after_a_stop_the_console_script_ignores_further_stop_signals(
    caller: str, ignored: bool
) -> None:
    """A second TERM arriving between the end of the run and the end of the process (a
    supervisor's second signal, a moment later) killed the console script by the default
    action after its report: exit -15 instead of 143. Its process ignores stop signals once
    a stop has ended its run; a program running the group in-process gets its own back."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, caller], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(ignored)
