"""Paths someone else may have planted: cachectl never writes or reads through them.

cachectl is often run as root on paths another user can write to: CACHE_DIR belongs to the
app's user, a config file is found by walking up from the current directory (``/tmp``).
Each test plants what that user could plant (a symbolic link to a file root must never
write, a FIFO, a file of another owner) and runs the installed command, as cron would: the
outside file is unchanged, the command finishes (a FIFO must not block it) and refuses in
one ``error:`` line with the documented exit status.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CONSOLE_SCRIPT, forked_or_started

#: What a root-only file looks like; it must keep every byte.
PRECIOUS = b"root:x:0:0:root:/root:/bin/bash\n"
#: Long enough for a FIFO to block a command forever, short enough for a test.
NO_HANG = 30
NOBODY = 65534


def cachectl(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """The installed command, with no inherited cachectl or Flask settings; a hang fails.
    Forked from the tests' fork server (tests/forked_runs.py: its own process, argv,
    environment, directory, umask and descriptors; nothing here is about start-up) unless
    the environment rules that out, or ``CACHECTL_TESTS_NO_FORK`` is set."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("CACHECTL_", "FLASK_"))}
    environ.update(env or {})
    return forked_or_started(
        [str(CONSOLE_SCRIPT), *args],
        script=CONSOLE_SCRIPT,
        env=environ,
        cwd=cwd,
        timeout=NO_HANG,
        text=True,
    )


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    """The stderr lines that are not warnings; a refusal is exactly one ``error:`` line."""
    assert "Traceback" not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if not line.startswith("warning: ")]


def entry_name(key: str) -> str:
    """The file FileSystemCache (Flask-Caching 2.5, ``--compat 2.5``) keeps ``key`` in."""
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture
def precious(tmp_path: Path) -> Path:
    """A file outside CACHE_DIR that no command may change."""
    path = tmp_path / "passwd"
    path.write_bytes(PRECIOUS)
    return path


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    """A FileSystemCache directory holding one real entry, ``real``."""
    directory = tmp_path / "cache"
    directory.mkdir()
    result = cachectl("--compat", "2.5", "--dir", str(directory), "set", "real", "v", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (directory / entry_name("real")).is_file()
    return directory


def fs(cache_dir: Path) -> tuple[str, ...]:
    return ("--compat", "2.5", "--dir", str(cache_dir))


# --- CACHE_DIR: a link or a FIFO named like an entry -----------------------------------

KEY_COMMANDS = [
    ("expire", "k", "60"),
    ("persist", "k"),
    ("get", "--raw", "k"),
    ("ttl", "k"),
    ("get", "k"),
    ("set", "k", "w"),
]


@pytest.mark.parametrize("command", KEY_COMMANDS, ids=" ".join)
def test_a_link_in_cache_dir_is_never_followed(
    cache_dir: Path, precious: Path, command: tuple[str, ...]
) -> None:
    link = cache_dir / entry_name("k")
    link.symlink_to(precious)

    result = cachectl(*fs(cache_dir), *command, cwd=cache_dir.parent)

    assert precious.read_bytes() == PRECIOUS
    assert link.is_symlink()
    assert result.returncode == 2, result.stderr
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "symbolic link" in lines[0] and entry_name("k") in lines[0]
    assert "root:x" not in result.stdout


@pytest.mark.parametrize("command", KEY_COMMANDS, ids=" ".join)
def test_a_fifo_in_cache_dir_does_not_block_and_is_refused(
    cache_dir: Path, command: tuple[str, ...]
) -> None:
    fifo = cache_dir / entry_name("k")
    os.mkfifo(fifo)

    result = cachectl(*fs(cache_dir), *command, cwd=cache_dir.parent)  # a hang fails here

    assert result.returncode == 2, result.stderr
    lines = error_lines(result)
    assert len(lines) == 1 and "FIFO" in lines[0], result.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_show_memoized_does_not_read_through_a_link(cache_dir: Path, precious: Path) -> None:
    """show-memoized reads the function's version key (and a call's entry) as get does."""
    (cache_dir / entry_name("shop.get_user_memver")).symlink_to(precious)

    result = cachectl(
        *fs(cache_dir), "show-memoized", "shop.get_user", "1", "--signature", "(user_id)",
        cwd=cache_dir.parent,
    )  # fmt: skip

    assert result.returncode == 2, result.stderr
    lines = error_lines(result)
    assert len(lines) == 1 and "symbolic link" in lines[0], result.stderr
    assert "root:x" not in result.stdout
    assert precious.read_bytes() == PRECIOUS


def test_a_hard_link_in_cache_dir_is_refused(cache_dir: Path, precious: Path) -> None:
    """Where the kernel allows linking another user's file (protected_hardlinks off), a
    second name of a file is not an entry the app wrote: cachelib renames every file in."""
    os.link(precious, cache_dir / entry_name("k"))

    expire = cachectl(*fs(cache_dir), "expire", "k", "60", cwd=cache_dir.parent)
    raw = cachectl(*fs(cache_dir), "get", "--raw", "k", cwd=cache_dir.parent)

    assert precious.read_bytes() == PRECIOUS
    assert (expire.returncode, raw.returncode) == (2, 2), expire.stderr + raw.stderr
    assert "hard links" in expire.stderr and "root:x" not in raw.stdout


def test_directory_wide_commands_pass_over_links_and_fifos(cache_dir: Path, precious: Path) -> None:
    """stats, prune, clear and the format sample read only regular files: a planted link
    or FIFO is neither read, nor waited on, nor removed, and the real entry still counts."""
    (cache_dir / entry_name("linked")).symlink_to(precious)
    os.mkfifo(cache_dir / entry_name("piped"))

    for command in (("stats",), ("prune",), ("keys", "--count"), ("set", "new", "x")):
        result = cachectl(*fs(cache_dir), command[0], *command[1:], cwd=cache_dir.parent)
        assert result.returncode == 0, (command, result.stderr)
        assert not error_lines(result), result.stderr
    counted = cachectl(*fs(cache_dir), "--json", "keys", "--count", cwd=cache_dir.parent)
    assert json.loads(counted.stdout)["count"] == 2  # "real" and "new", not the planted two
    cleared = cachectl(*fs(cache_dir), "clear", "--yes", cwd=cache_dir.parent)

    assert cleared.returncode == 0, cleared.stderr
    assert precious.read_bytes() == PRECIOUS
    assert (cache_dir / entry_name("linked")).is_symlink()
    assert stat.S_ISFIFO(os.lstat(cache_dir / entry_name("piped")).st_mode)
    assert not (cache_dir / entry_name("real")).exists()


def test_a_linked_item_count_is_left_alone(cache_dir: Path, precious: Path) -> None:
    """The item count cachelib keeps for CACHE_THRESHOLD is rewritten by set and delete:
    a link in its place is not followed; the entry is still written, with a warning."""
    (cache_dir / entry_name("__wz_cache_count")).symlink_to(precious)

    result = cachectl(
        *fs(cache_dir), "-o", "CACHE_THRESHOLD=100", "set", "fresh", "v", cwd=cache_dir.parent
    )
    deleted = cachectl(
        *fs(cache_dir), "-o", "CACHE_THRESHOLD=100", "delete", "fresh", cwd=cache_dir.parent
    )

    assert precious.read_bytes() == PRECIOUS
    assert (result.returncode, deleted.returncode) == (0, 0), result.stderr + deleted.stderr
    assert "item count" in result.stderr and "symbolic link" in result.stderr


def test_set_writes_its_file_mode_on_the_new_file_only(cache_dir: Path, precious: Path) -> None:
    """The mode of a written entry is set before it is renamed in, never on the path
    afterwards (where a link could stand by then): an outside file keeps its mode."""
    os.chmod(precious, 0o644)
    result = cachectl(
        *fs(cache_dir), "-o", 'CACHE_OPTIONS={"mode": 384}', "set", "k2", "v", cwd=cache_dir.parent
    )

    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(os.stat(cache_dir / entry_name("k2")).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(precious).st_mode) == 0o644


# --- the audit log -----------------------------------------------------------------------


@pytest.mark.parametrize("required", [False, True], ids=["optional", "required"])
def test_an_audit_log_that_is_a_fifo_does_not_block(cache_dir: Path, required: bool) -> None:
    log = cache_dir.parent / "audit.jsonl"
    os.mkfifo(log)
    flags = ("--audit-required",) if required else ()

    result = cachectl(
        *fs(cache_dir), "--audit-log", str(log), *flags, "delete", "real", cwd=cache_dir.parent
    )

    assert "FIFO" in result.stderr, result.stderr
    if required:  # refused before anything was done
        assert result.returncode == 2
        assert len(error_lines(result)) == 1
        assert (cache_dir / entry_name("real")).exists()
    else:  # the command's own status stands, the log's failure is a warning
        assert result.returncode == 0, result.stderr
        assert not (cache_dir / entry_name("real")).exists()


@pytest.mark.parametrize("required", [False, True], ids=["optional", "required"])
def test_an_audit_log_that_is_a_link_is_not_followed(
    cache_dir: Path, precious: Path, required: bool
) -> None:
    log = cache_dir.parent / "audit.jsonl"
    log.symlink_to(precious)
    flags = ("--audit-required",) if required else ()

    result = cachectl(
        *fs(cache_dir), "--audit-log", str(log), *flags, "delete", "real", cwd=cache_dir.parent
    )

    assert precious.read_bytes() == PRECIOUS
    assert "symbolic link" in result.stderr, result.stderr
    assert result.returncode == (2 if required else 0)
    assert (cache_dir / entry_name("real")).exists() == required


def test_a_dangling_audit_log_link_creates_nothing(cache_dir: Path) -> None:
    target = cache_dir.parent / "created-through-the-link"
    log = cache_dir.parent / "audit.jsonl"
    log.symlink_to(target)

    result = cachectl(
        *fs(cache_dir), "--audit-log", str(log), "--audit-required", "delete", "real",
        cwd=cache_dir.parent,
    )  # fmt: skip

    assert result.returncode == 2, result.stderr
    assert not target.exists()


def test_a_new_audit_log_is_private(cache_dir: Path) -> None:
    log = cache_dir.parent / "audit.jsonl"
    result = cachectl(
        *fs(cache_dir), "--audit-log", str(log), "delete", "real", cwd=cache_dir.parent
    )

    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o600
    assert b'"command":"delete"' in log.read_bytes()


# --- config --write ----------------------------------------------------------------------


def write_config(cache_dir: Path, target: Path, *extra: str) -> subprocess.CompletedProcess:
    return cachectl(*fs(cache_dir), "config", "--write", str(target), *extra, cwd=cache_dir.parent)


def test_config_write_force_does_not_write_through_a_link(cache_dir: Path, precious: Path) -> None:
    link = cache_dir.parent / "cachectl.toml"
    link.symlink_to(precious)

    result = write_config(cache_dir, link, "--force")

    assert precious.read_bytes() == PRECIOUS
    assert link.is_symlink()
    assert result.returncode == 2
    lines = error_lines(result)
    assert len(lines) == 1 and "symbolic link" in lines[0], result.stderr


def test_config_write_force_replaces_atomically_with_a_private_file(cache_dir: Path) -> None:
    target = cache_dir.parent / "cachectl.toml"
    target.write_text("# the old file\n")
    os.chmod(target, 0o644)
    other_name = cache_dir.parent / "old-name.toml"
    os.link(target, other_name)  # another name of the old file keeps the old content
    before = os.stat(target)

    result = write_config(cache_dir, target, "--force")

    assert result.returncode == 0, result.stderr
    after = os.stat(target)
    assert after.st_ino != before.st_ino
    assert stat.S_IMODE(after.st_mode) == 0o600
    assert str(cache_dir) in target.read_text()
    assert other_name.read_text() == "# the old file\n"
    assert [p.name for p in cache_dir.parent.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
def test_config_write_to_a_fifo_does_not_block(cache_dir: Path, force: bool) -> None:
    fifo = cache_dir.parent / "cachectl.toml"
    os.mkfifo(fifo)

    result = write_config(cache_dir, fifo, *(("--force",) if force else ()))

    assert result.returncode == 2
    assert len(error_lines(result)) == 1 and "FIFO" in result.stderr, result.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_config_write_to_a_missing_directory_says_so(cache_dir: Path) -> None:
    result = write_config(cache_dir, cache_dir.parent / "no" / "such" / "cachectl.toml")

    assert result.returncode == 2
    lines = error_lines(result)
    assert len(lines) == 1 and "no directory" in lines[0], result.stderr


def test_config_write_new_file_is_private_and_not_replaced_without_force(cache_dir: Path) -> None:
    target = cache_dir.parent / "new.toml"
    first = write_config(cache_dir, target)
    target.write_text("# edited by hand\n")
    second = write_config(cache_dir, target)

    assert first.returncode == 0, first.stderr
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert second.returncode == 2 and "--force" in second.stderr
    assert target.read_text() == "# edited by hand\n"


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, filled to the last byte: a full disk, for real."""
    mount_point = tmp_path / "full"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip("mounting a tmpfs needs root (and a kernel that allows it here)")
    try:
        filler = os.open(mount_point / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while os.write(filler, b"\0" * 4096):
                pass
        except OSError:  # ENOSPC: full
            pass
        finally:
            os.close(filler)
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_a_full_disk_is_one_line_and_leaves_nothing_behind(
    cache_dir: Path, tiny_disk: Path
) -> None:
    result = write_config(cache_dir, tiny_disk / "cachectl.toml")
    log = tiny_disk / "audit.jsonl"
    audited = cachectl(
        *fs(cache_dir), "--audit-log", str(log), "--audit-required", "set", "x", "1",
        cwd=cache_dir.parent,
    )  # fmt: skip

    assert result.returncode == 2
    lines = error_lines(result)
    assert len(lines) == 1 and "No space left" in lines[0], result.stderr
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["audit.jsonl", "filler"]
    assert audited.returncode == 2 and "No space left" in audited.stderr, audited.stderr


# --- config files found by walking up ----------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory with a subdirectory to run from: a config file goes in the first."""
    (tmp_path / "proj" / "sub").mkdir(parents=True)
    return tmp_path / "proj"


def test_a_found_config_file_of_another_owner_is_skipped(project: Path, tmp_path: Path) -> None:
    (tmp_path / "cache").mkdir()
    planted = project / "cachectl.toml"
    planted.write_text(f'CACHE_TYPE = "FileSystemCache"\nCACHE_DIR = "{tmp_path / "cache"}"\n')
    os.chown(planted, NOBODY, NOBODY)

    result = cachectl("config", cwd=project / "sub")

    assert result.returncode == 2
    notes = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(notes) == 1, result.stderr
    assert str(planted) in notes[0] and f"uid {NOBODY}" in notes[0]
    assert "no cache configuration found" in result.stderr


def test_a_found_config_file_others_may_write_is_skipped_for_a_trusted_one(
    project: Path, tmp_path: Path
) -> None:
    """The walk goes on past a skipped file: the next trusted one up is used."""
    (tmp_path / "cachectl.toml").write_text('CACHE_TYPE = "RedisCache"\nCACHE_KEY_PREFIX = "up_"\n')
    planted = project / "cachectl.toml"
    planted.write_text('CACHE_TYPE = "RedisCache"\nCACHE_KEY_PREFIX = "planted_"\n')
    os.chmod(planted, 0o666)

    result = cachectl("--json", "config", cwd=project / "sub")

    assert result.returncode == 0, result.stderr
    assert "up_" in result.stdout and "planted_" not in result.stdout
    assert "may be written by users other than its owner (mode 666)" in result.stderr


@pytest.mark.parametrize("name", ["cachectl.toml", "pyproject.toml"])
def test_a_found_link_or_fifo_is_skipped(project: Path, tmp_path: Path, name: str) -> None:
    """Neither is followed or waited on. A link to a config file is explained; a FIFO
    named pyproject.toml is skipped in silence (it cannot be read to see if it holds our
    table, and most pyproject.toml files do not)."""
    real = tmp_path / "real.toml"
    real.write_text('[tool.cachectl]\nCACHE_TYPE = "RedisCache"\n')
    (project / name).symlink_to(real)
    os.mkfifo(project / "sub" / name)

    result = cachectl("config", cwd=project / "sub")  # a hang fails here

    assert result.returncode == 2
    assert f"skipped {project / name}" in result.stderr, result.stderr
    assert "symbolic link" in result.stderr
    assert ("FIFO" in result.stderr) == (name == "cachectl.toml")


def test_a_pyproject_without_our_table_goes_unmentioned(project: Path) -> None:
    """A project's pyproject.toml owned by its developer, read by root: not ours, no note."""
    pyproject = project / "pyproject.toml"
    pyproject.write_text('[project]\nname = "shop"\n')
    os.chown(pyproject, NOBODY, NOBODY)

    result = cachectl("config", cwd=project / "sub")

    assert result.returncode == 2
    assert "skipped" not in result.stderr, result.stderr


def test_an_untrusted_pyproject_table_is_skipped(project: Path) -> None:
    pyproject = project / "pyproject.toml"
    pyproject.write_text('[tool.cachectl]\nCACHE_TYPE = "RedisCache"\n')
    os.chown(pyproject, NOBODY, NOBODY)

    result = cachectl("config", cwd=project / "sub")

    assert result.returncode == 2
    assert f"skipped {pyproject}" in result.stderr, result.stderr


EVIL_MODULE = """\
import pathlib
pathlib.Path({marker!r}).write_text("imported")


class Evil:
    @staticmethod
    def factory(app, config, args, kwargs):
        import cachelib

        return cachelib.FileSystemCache({cache!r}, threshold=0)
"""


@pytest.fixture
def evil(project: Path, tmp_path: Path) -> Path:
    """A trusted cachectl.toml naming ``evilmod.Evil``, and evilmod.py planted in the
    directory the operator runs from; returns the marker the module writes on import."""
    marker = tmp_path / "imported"
    (tmp_path / "cache").mkdir()
    (project / "sub" / "evilmod.py").write_text(
        EVIL_MODULE.format(marker=str(marker), cache=str(tmp_path / "cache"))
    )
    (project / "cachectl.toml").write_text('CACHE_TYPE = "evilmod.Evil"\n')
    return marker


@pytest.mark.parametrize(
    "command", [("get", "k"), ("keys",), ("clear", "--dry-run"), ("config",)], ids=" ".join
)
def test_a_found_config_file_may_not_name_code(
    project: Path, evil: Path, command: tuple[str, ...]
) -> None:
    result = cachectl(*command, cwd=project / "sub")

    assert not evil.exists(), "the planted module ran"
    assert result.returncode == 2
    lines = error_lines(result)
    assert len(lines) == 1 and "--config" in lines[0] and "evilmod.Evil" in lines[0], lines


def test_a_found_config_file_may_not_name_a_serializer_either(project: Path, evil: Path) -> None:
    (project / "cachectl.toml").write_text(
        'CACHE_TYPE = "RedisCache"\nCACHE_SERIALIZER = "evilmod.Evil"\n'
    )

    result = cachectl("get", "k", cwd=project / "sub")

    assert not evil.exists()
    assert result.returncode == 2 and "CACHE_SERIALIZER" in result.stderr, result.stderr


def test_a_named_config_file_imports_its_backend_class_as_documented(
    project: Path, evil: Path
) -> None:
    """--config names the file: its CACHE_TYPE is imported as Flask-Caching would, the
    current directory first on sys.path (the operator answers for both)."""
    result = cachectl("--config", str(project / "cachectl.toml"), "get", "k", cwd=project / "sub")

    assert evil.exists()
    assert result.returncode == 1, result.stderr  # the class's cache is empty: not found


def test_a_named_config_file_that_is_a_fifo_does_not_block(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "cache.toml")

    result = cachectl("--config", "cache.toml", "config", cwd=tmp_path)

    assert result.returncode == 2
    assert len(error_lines(result)) == 1 and "FIFO" in result.stderr, result.stderr
