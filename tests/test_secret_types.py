"""Credentials of every type an operator's config can give them, through the installed
``cachectl`` against a real Redis that requires a password: a TOML number, bytes in a
``.py`` file, a list, a float, a dict, ``-o`` digits read as JSON. A usable one works
(a number is its digits, bytes their UTF-8 text); an unusable one is exit 2 naming the
setting. Either way the value appears nowhere: not on standard output or error, not in
``--json`` or ``--debug`` output, not in the audit log (its ``argv`` or ``error``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_console
from tests.servers import ServerProcess, start_redis

PASSWORD = "80417723"


@pytest.fixture(scope="module")
def guarded_redis() -> Iterator[ServerProcess]:
    """A Redis that requires PASSWORD (digits, as a TOML number holds them)."""
    server = start_redis("--requirepass", PASSWORD)
    yield server
    server.stop()


def _where(server: ServerProcess) -> str:
    """The server as TOML settings: host and port, since CACHE_REDIS_PASSWORD is not read
    with a CACHE_REDIS_URL (Flask-Caching's rule), whose own userinfo would be."""
    return f'CACHE_REDIS_HOST = "127.0.0.1"\nCACHE_REDIS_PORT = {server.port}\n'


def _runs_hide(
    secret: str,
    args: list[str],
    log: Path,
    expect: int,
    cwd: Path | None = None,
    stdin: bytes | None = None,
) -> list[str]:
    """Run ``args`` plainly, with --json and with --debug; each exits ``expect`` and shows
    ``secret`` nowhere, nor does the audit log. The plain run's stderr lines."""
    stderr_lines: list[str] = []
    for mode in ([], ["--json"], ["--debug"]):
        done = run_console("--audit-log", str(log), *mode, *args, cwd=cwd, input=stdin)
        shown = done.stdout.decode() + done.stderr.decode()
        assert done.returncode == expect, shown
        assert secret not in shown, f"{mode}: {shown}"
        if mode == ["--json"]:
            assert secret not in json.loads(done.stdout)["error"]
        if not mode:
            stderr_lines = done.stderr.decode().splitlines()
    if log.exists():
        assert secret not in log.read_text()
    return stderr_lines


def _audit_lines(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_a_toml_number_is_the_password_it_spells_and_is_never_shown(
    guarded_redis: ServerProcess, tmp_path: Path
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        f'CACHE_TYPE = "RedisCache"\n{_where(guarded_redis)}'
        f"CACHE_REDIS_PASSWORD = {PASSWORD}\n"  # unquoted: TOML reads an integer
    )
    log = tmp_path / "audit.jsonl"
    target = ["--config", str(config), "--audit-log", str(log)]
    assert run_console(*target, "set", "k", "v").returncode == 0
    got = run_console(*target, "get", "k")
    assert got.returncode == 0 and got.stdout == b"v\n"
    for mode in ([], ["--json"]):
        shown = run_console(*target, *mode, "config")
        assert shown.returncode == 0
        assert PASSWORD not in (shown.stdout + shown.stderr).decode()
        assert b"****" in shown.stdout
    assert PASSWORD not in log.read_text()

    config.write_text(config.read_text().replace(PASSWORD, "80417724"))  # wrong, still a number
    lines = _runs_hide("80417724", ["--config", str(config), "delete", "k"], log, 3)
    assert lines[-1].startswith("error: ")
    assert _audit_lines(log)[-1]["exit_code"] == 3


def test_bytes_in_a_py_config_are_their_text_and_never_shown(
    guarded_redis: ServerProcess, tmp_path: Path
) -> None:
    config = tmp_path / "settings.py"
    config.write_text(
        f"CACHE_TYPE = 'RedisCache'\n{_where(guarded_redis)}CACHE_REDIS_PASSWORD = b'{PASSWORD}'\n"
    )
    done = run_console("--config", str(config), "set", "k", "v")
    assert done.returncode == 0, done.stderr

    config.write_text(config.read_text().replace(f"b'{PASSWORD}'", "b'S3CRETbytes'"))
    _runs_hide("S3CRETbytes", ["--config", str(config), "delete", "k"], tmp_path / "a.jsonl", 3)

    config.write_text(config.read_text().replace("b'S3CRETbytes'", "b'S3CRET\\xff\\xfe'"))
    lines = _runs_hide("S3CRET", ["--config", str(config), "delete", "k"], tmp_path / "b.jsonl", 2)
    assert lines == [
        f"error: CACHE_REDIS_PASSWORD (from file {config}) must be a string "
        "(got bytes that are not UTF-8 text)"
    ]


@pytest.mark.parametrize(
    ("written", "secret", "kind"),
    [
        ('["S3CRETlist", 80417723]', "S3CRETlist", "got a list"),
        ("80417723.5", "80417723", "got a float; quote it"),
        ('{ pw = "S3CRETdict" }', "S3CRETdict", "got a dict"),
    ],
    ids=["list", "float", "dict"],
)
def test_a_password_of_another_type_is_exit_2_naming_the_setting_only(
    guarded_redis: ServerProcess, tmp_path: Path, written: str, secret: str, kind: str
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        f'CACHE_TYPE = "RedisCache"\n{_where(guarded_redis)}CACHE_REDIS_PASSWORD = {written}\n'
    )
    log = tmp_path / "audit.jsonl"
    lines = _runs_hide(secret, ["--config", str(config), "delete", "k"], log, 2)
    assert lines[0].startswith(
        f"error: CACHE_REDIS_PASSWORD (from file {config}) must be a string ({kind}"
    )
    entries = _audit_lines(log)
    assert len(entries) == 3 and all(entry["exit_code"] == 2 for entry in entries)
    assert all("must be a string" in entry["error"] for entry in entries)


def test_option_digits_read_as_json_are_the_password(
    guarded_redis: ServerProcess, tmp_path: Path
) -> None:
    log = tmp_path / "audit.jsonl"
    where = ["--type", "RedisCache", "-o", f"CACHE_REDIS_PORT={guarded_redis.port}"]
    args = [*where, "--audit-log", str(log)]
    done = run_console(*args, "-o", f"CACHE_REDIS_PASSWORD={PASSWORD}", "set", "k", "v")
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in (done.stdout + done.stderr).decode()
    (line,) = _audit_lines(log)
    assert "CACHE_REDIS_PASSWORD=****" in line["argv"]
    assert PASSWORD not in log.read_text()

    _runs_hide("12345678", [*args, "-o", "CACHE_REDIS_PASSWORD=12345678", "delete", "k"], log, 3)


def test_a_failing_configuration_masks_its_command_line_in_the_audit_log(
    tmp_path: Path,
) -> None:
    """Nothing is known but the command line: the setting's name and the URLs' userinfo
    are enough to mask it."""
    log = tmp_path / "audit.jsonl"
    args = [
        "--url", "redis://ops:S3CRETurl@127.0.0.1:1/0",
        "-o", "CACHE_REDIS_PASSWORD=S3CRETopt",
        "--option=CACHE_REDIS_SENTINEL_PASSWORD=S3CRETeq",
        "-o", 'CACHE_REDIS_SENTINELS=["redis://:S3CRETsentinel@10.0.0.1:26379"]',
        "-o", "CACHE_TYPE=NoSuchCache",
        "delete", "k",
    ]  # fmt: skip
    _runs_hide("S3CRET", args, log, 2)
    first = _audit_lines(log)[0]
    assert first["exit_code"] == 2 and "unknown CACHE_TYPE" in first["error"]
    assert first["argv"][:8] == [
        "--audit-log", str(log),
        "--url", "redis://ops:****@127.0.0.1:1/0",
        "-o", "CACHE_REDIS_PASSWORD=****",
        "--option=CACHE_REDIS_SENTINEL_PASSWORD=****",
        "-o",
    ]  # fmt: skip
    assert first["argv"][8] == 'CACHE_REDIS_SENTINELS=["redis://:****@10.0.0.1:26379"]'


def test_the_value_of_set_never_reaches_the_audit_log_through_its_error(
    guarded_redis: ServerProcess, tmp_path: Path
) -> None:
    log = tmp_path / "audit.jsonl"
    target = ["--type", "RedisCache", "-o", f"CACHE_REDIS_PORT={guarded_redis.port}",
              "-o", f"CACHE_REDIS_PASSWORD={PASSWORD}"]  # fmt: skip
    _runs_hide(
        "sk_live_S3CRETint", [*target, "set", "k", "sk_live_S3CRETint", "--as", "int"], log, 2
    )
    _runs_hide("sk_live_S3CRETpipe", [*target, "set", "k", "-", "--as", "float"], log, 2,
               stdin=b"sk_live_S3CRETpipe\n")  # fmt: skip
    # A batch names its refused line on standard error, as the operator wrote it in the
    # file; its audit line shows it as logged, the value left out.
    (tmp_path / "deploy.txt").write_text("set k sk_live_S3CRETline --as int\n")
    refused = run_console("--audit-log", str(log), *target, "batch", "deploy.txt", cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    entries = _audit_lines(log)
    assert [entry["command"] for entry in entries] == ["set"] * 6 + ["batch"]
    assert all(entry["exit_code"] == 2 and entry["error"] for entry in entries)
    assert all("<value>" in " ".join(entry["argv"]) for entry in entries[:3])
    assert entries[-1]["error"].startswith("line 1 (set k '<value>' --as int): ")
    assert entries[-1]["done"]["command"] == "set k '<value>' --as int"
    assert "S3CRET" not in log.read_text()
