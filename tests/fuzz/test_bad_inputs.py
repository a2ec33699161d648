"""Every corpus case through the installed console script, as an operator's shell runs it.

Each case runs twice: plain (exit code, one ``error:`` line, no traceback, no secret)
and with ``--json`` right after ``cachectl`` (one JSON document whose ``exit_code`` is
the exit status). A sample also runs with ``--json`` after the subcommand, where
operators type it. The runs are started together by one session fixture, against one
private Redis and one private memcached, because a server per case (or one process at
a time) would make the file too slow to run on every change; each test then only
judges its own outcome, so a failure names its case.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import RedisTarget
from tests.forked_runs import forkable
from tests.fuzz.corpus import (
    BACKENDS,
    CASES,
    CASES_BY_ID,
    CONSOLE_SCRIPT,
    VALID,
    Case,
    Mode,
    Outcome,
    Targets,
    clean_env,
    run_many,
    shown,
    violations,
)
from tests.servers import ServerProcess, free_port

#: One worker of pytest-xdist runs the whole file: its session fixture starts every
#: selected run at once, which split over workers would run twice.
pytestmark = pytest.mark.xdist_group("corpus")

#: Spare database of the private server: the corpus's Redis cases share it.
FUZZ_DB = 15
#: Case-id prefixes whose fault is found after the subcommand's own options are parsed,
#: so ``--json`` written after the subcommand must still give one JSON document.
JSON_AFTER_PREFIXES = (
    "cfgfile-",
    "url-dead-",
    "dash-key-",
    "not-utf8-",
    "set-",
    "memo-",
    "keys-",
    "clear-no-yes",
    "view-",
    "fragment",
    "config-write-",
    "completion-",
    "memcached-key-",
    "from-file-",
)
JSON_AFTER_PER_COMMAND = 3


def _json_after_ids() -> list[str]:
    """Up to three cases per command whose fault lies in or after the subcommand."""
    chosen: dict[str, list[str]] = {}
    for case in CASES:
        if case.sub_index is None or not case.is_error:
            continue
        if not case.id.startswith(JSON_AFTER_PREFIXES):
            continue
        picked = chosen.setdefault(case.command, [])
        if len(picked) < JSON_AFTER_PER_COMMAND:
            picked.append(case.id)
    return [case_id for ids in chosen.values() for case_id in ids]


JSON_AFTER_IDS = _json_after_ids()


@pytest.fixture(scope="session")
def fuzz_targets(redis_server: ServerProcess, memcached_server: ServerProcess) -> Targets:
    """The private servers, emptied once for the corpus, and a port nothing listens on."""
    import memcache

    redis.Redis(port=redis_server.port, db=FUZZ_DB).flushdb()
    client = memcache.Client([f"127.0.0.1:{memcached_server.port}"])
    client.flush_all()
    client.disconnect_all()
    return Targets(redis_server.port, FUZZ_DB, memcached_server.port, free_port())


@pytest.fixture(scope="session")
def outcomes(
    request: pytest.FixtureRequest, fuzz_targets: Targets
) -> Iterator[dict[tuple[str, str], Outcome]]:
    """Run, concurrently, exactly the (case, mode) pairs this session selected."""
    wanted: list[tuple[Case, Mode]] = []
    for item in request.session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "case_id" in params and "mode" in params:
            wanted.append((CASES_BY_ID[params["case_id"]], params["mode"]))
    with tempfile.TemporaryDirectory(prefix="cachectl-fuzz-") as base:
        yield {
            (outcome.case.id, outcome.mode): outcome
            for outcome in run_many(wanted, fuzz_targets, Path(base))
        }


def _judge(outcomes: dict[tuple[str, str], Outcome], case_id: str, mode: Mode) -> None:
    outcome = outcomes[(case_id, mode)]
    problems = violations(outcome)
    case = outcome.case
    assert not problems, (
        f"{case_id} [{mode}] ({case.reason}): {'; '.join(problems)}\n"
        f"  argv: {outcome.argv!r}\n  {shown(outcome)}"
    )


@pytest.mark.parametrize("mode", ["plain", "json"])
@pytest.mark.parametrize("case_id", [case.id for case in CASES])
def test_corpus_case(outcomes: dict[tuple[str, str], Outcome], case_id: str, mode: Mode) -> None:
    _judge(outcomes, case_id, mode)


@pytest.mark.parametrize("mode", ["json-after"])
@pytest.mark.parametrize("case_id", JSON_AFTER_IDS)
def test_json_after_the_subcommand(
    outcomes: dict[tuple[str, str], Outcome], case_id: str, mode: Mode
) -> None:
    _judge(outcomes, case_id, mode)


#: Cases that also run through the real console script, started afresh: every eighth
#: case, and every case that adds a variable or loads code of its own (an app, a Python
#: config file), where start-up matters most. Their outcome must be the forked run's.
SCRIPT_SAMPLE_IDS = [
    case.id
    for index, case in enumerate(CASES)
    if index % 8 == 0 or case.env or any(name.endswith(".py") for name in case.files)
]


@pytest.fixture(scope="session")
def script_outcomes(fuzz_targets: Targets) -> Iterator[dict[str, Outcome]]:
    with tempfile.TemporaryDirectory(prefix="cachectl-fuzz-script-") as base:
        jobs = [(CASES_BY_ID[case_id], "plain") for case_id in SCRIPT_SAMPLE_IDS]
        yield {
            outcome.case.id: outcome
            for outcome in run_many(jobs, fuzz_targets, Path(base), forked=False)  # type: ignore[arg-type]
        }


def _as_run_anywhere(outcome: Outcome, stream: bytes) -> bytes:
    """The output with what differs from run to run of the same process image written
    out: the run's own directory (its name is random), and objects' addresses."""
    return re.sub(
        rb"0x[0-9a-f]{6,}", b"0x...", stream.replace(outcome.directory.encode(), b"{tmp}")
    )


@pytest.mark.parametrize("mode", ["plain"])
@pytest.mark.parametrize("case_id", SCRIPT_SAMPLE_IDS)
def test_a_forked_run_ends_as_the_console_script_does(
    outcomes: dict[tuple[str, str], Outcome],
    script_outcomes: dict[str, Outcome],
    case_id: str,
    mode: Mode,
) -> None:
    """The fork server saves the corpus the interpreter's start-up; it must change nothing
    an operator would see: same exit status, same output, same contract."""
    forked, script = outcomes[(case_id, mode)], script_outcomes[case_id]
    assert not script.forked
    _judge({(case_id, mode): script}, case_id, mode)
    assert (script.returncode, script.guarded) == (forked.returncode, forked.guarded)
    assert _as_run_anywhere(script, script.stderr) == _as_run_anywhere(forked, forked.stderr)
    assert _as_run_anywhere(script, script.stdout) == _as_run_anywhere(forked, forked.stdout)


def test_the_corpus_runs_forked_and_samples_the_console_script() -> None:
    """Most runs are forked (the time the corpus takes), and the sample is broad."""
    assert sum(forkable(case.env) for case in CASES) >= 0.95 * len(CASES)
    assert len(SCRIPT_SAMPLE_IDS) >= 100
    assert {CASES_BY_ID[case_id].backend for case_id in SCRIPT_SAMPLE_IDS} == set(BACKENDS) | {
        "none"
    }


def test_the_corpus_is_one_group_for_pytest_xdist(request: pytest.FixtureRequest) -> None:
    """Under ``--dist loadgroup`` every test of this file carries the group's suffix, which
    is what keeps them on one worker: without it the session fixture above runs the whole
    corpus again on every worker that is dealt one of its tests (tests/conftest.py)."""
    config = request.config
    if not (getattr(config.option, "loadgroup", False) and hasattr(config, "workerinput")):
        pytest.skip("only under pytest-xdist with --dist loadgroup, as the main lane runs")
    assert request.node.nodeid.endswith("@corpus"), request.node.nodeid


def test_the_corpus_covers_every_command_and_backend() -> None:
    """The corpus is the suite's reach: it must stay broad as cases come and go."""
    assert len(CASES) >= 300
    assert len({case.id for case in CASES}) == len(CASES)
    commands = {case.command for case in CASES}
    assert set(VALID) | {"completion", "(usage)"} <= commands
    for backend in BACKENDS:
        assert sum(case.backend == backend for case in CASES) >= 50, backend
    assert any(not case.is_error for case in CASES), "no control case that must succeed"
    assert len(JSON_AFTER_IDS) >= 20


# --- side effects the per-case checks cannot see -------------------------------------------


def _console(args: list[str], cwd: Path, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CONSOLE_SCRIPT), *args],
        input=stdin,
        capture_output=True,
        cwd=cwd,
        env=clean_env({}),
        timeout=60,
    )


def _one_error_line(stderr: bytes) -> bool:
    text = stderr.decode(errors="replace")
    lines = [line for line in text.splitlines() if not line.startswith("warning: ")]
    return bool(lines) and lines[0].startswith("error: ") and len(lines) <= 2


def test_clear_without_yes_and_terminal_removes_nothing_on_redis(
    redis_target: RedisTarget, tmp_path: Path
) -> None:
    redis_target.client.set("flask_cache_keep", b"1")
    for args in (["clear"], ["delete", "--pattern", "*"], ["clear", "--pattern", "*"]):
        result = _console(["--url", redis_target.url, *args], tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        assert _one_error_line(result.stderr), result.stderr
        assert redis_target.client.exists("flask_cache_keep"), args


def test_clear_without_yes_and_terminal_removes_nothing_on_the_filesystem(
    tmp_path: Path,
) -> None:
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    assert _console(["--dir", str(cache_dir), "set", "keep", "v"], tmp_path).returncode == 0
    before = sorted(p.name for p in cache_dir.iterdir())
    result = _console(["--dir", str(cache_dir), "clear"], tmp_path)
    assert result.returncode == 2
    assert _one_error_line(result.stderr), result.stderr
    assert sorted(p.name for p in cache_dir.iterdir()) == before


def test_clear_without_yes_and_terminal_removes_nothing_on_memcached(
    memcached_address: str, tmp_path: Path
) -> None:
    import memcache

    client = memcache.Client([memcached_address])
    client.set("flask_cache_keep", "1")
    servers = f'CACHE_MEMCACHED_SERVERS=["{memcached_address}"]'
    result = _console(["--type", "MemcachedCache", "-o", servers, "clear"], tmp_path)
    assert result.returncode == 2
    assert _one_error_line(result.stderr), result.stderr
    assert client.get("flask_cache_keep") == "1"
    client.disconnect_all()


@pytest.mark.parametrize("flag", ["-q", "--quiet", "--debug", "--json"])
def test_global_flags_are_accepted_after_the_subcommand(flag: str, tmp_path: Path) -> None:
    """``cachectl get -q k`` is how people type it; the flag must not be a usage error."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    result = _console(["--url", url, "get", flag, "k"], tmp_path)
    assert result.returncode == 3, result.stderr
    if flag == "--json":
        document = json.loads(result.stdout)
        assert document["ok"] is False and document["exit_code"] == 3
    elif flag != "--debug":
        assert _one_error_line(result.stderr), result.stderr


def test_broken_pipe_ends_quietly_with_141(redis_target: RedisTarget, tmp_path: Path) -> None:
    """``cachectl keys | head -1``: the reader going away is not an error to report."""
    pipe = redis_target.client.pipeline(transaction=False)
    for n in range(5000):
        pipe.set(f"flask_cache_key:{n:05d}", pickle.dumps(n))
    pipe.execute()
    stderr_path = tmp_path / "stderr"
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(
            [str(CONSOLE_SCRIPT), "--url", redis_target.url, "keys"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=tmp_path,
            env=clean_env({}),
        )
        assert process.stdout is not None
        first = process.stdout.readline()
        process.stdout.close()
        code = process.wait(timeout=60)
    assert first.startswith(b"key:")
    assert code == 141, stderr_path.read_bytes()
    assert stderr_path.read_bytes() == b""


def test_broken_pipe_in_a_shell_pipeline(redis_target: RedisTarget, tmp_path: Path) -> None:
    """The same through ``sh``'s own pipe into ``head``, as operators meet it."""
    pipe = redis_target.client.pipeline(transaction=False)
    for n in range(5000):
        pipe.set(f"flask_cache_key:{n:05d}", pickle.dumps(n))
    pipe.execute()
    script = (
        f"'{CONSOLE_SCRIPT}' --url {redis_target.url} keys 2>'{tmp_path}/err' | head -n 1;"
        ' echo "status=${PIPESTATUS[0]}"'
    )
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, env=clean_env({}), timeout=60
    )
    assert b"status=141" in result.stdout, result.stdout
    assert (tmp_path / "err").read_bytes() == b""


def test_no_stray_directory_in_the_working_tree() -> None:
    """Cases run in their own directories: nothing lands in the repository."""
    root = Path(__file__).resolve().parents[2]
    assert not (root / "nonexistent").exists()
    assert not any(root.glob("PWNED*"))
    assert os.path.isdir(root / "tests" / "fuzz")
