"""``--backup FILE`` and ``backup_dir``: which runs keep what they remove, in which file,
and what the run says about it at its end. The keeping itself is the backends' (each
asks ``CacheBackend.keeper`` before it removes or overwrites anything); this module only
decides the file, refuses what cannot work before anything changes, and closes the file
whatever the run's outcome."""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cachectl.errors import ConfigError, UsageError
from cachectl.runtime.wording import counted

if TYPE_CHECKING:
    from cachectl.backup.writer import BackupWriter
    from cachectl.cli.session import Session


def _changes_cache(session: Session) -> bool:
    from cachectl.runtime.changing import changes_cache

    command = session.audit.command
    return command is not None and changes_cache(command, session.audit.params)


def check_request(session: Session) -> None:
    """``--backup`` on a command that never removes or overwrites anything is a mistake
    to refuse, not to ignore; on a dry run it is said to write nothing."""
    if session.audit.command is None:
        return
    if session.backup_path is None:
        # backup_dir: the writer now, while the output is the run's own (a batch's
        # lines print through outputs of their own; the run's document names the file).
        session.backup_writer()
        return
    if session.audit.params.get("dry_run"):
        session.output.notice(
            f"dry run: nothing is removed, so no backup is written to {session.backup_path}"
        )
        return
    if session.audit.params.get("list_only"):
        raise UsageError("--backup: restore --list changes nothing, so there is nothing to keep")
    if not _changes_cache(session):
        raise UsageError(
            f"--backup applies to commands that remove or overwrite entries; "
            f"{session.audit.command} does neither"
        )
    session.backup_writer()  # the path checked before anything changes, even in a batch


def _configured_dir(session: Session) -> str | None:
    """``backup_dir`` of the config file this run reads (never resolves a cache)."""
    config_file = session.request.sources()[1]
    if config_file is None:
        return None
    from cachectl.config.sources import read_config_file

    path = Path(config_file)
    if not path.is_absolute():
        path = session.request.cwd / path
    return read_config_file(path).backup_dir


def _file_in(directory: str, command: str) -> str:
    """A new file's name in ``backup_dir``: when, what, and the process (never reused)."""
    if not os.path.isdir(directory):
        raise ConfigError(f"backup_dir {directory} is not a directory; nothing was done")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    return os.path.join(directory, f"cachectl-{stamp}-{command}-{os.getpid()}.backup")


def backup_for(session: Session) -> BackupWriter | None:
    """The writer of this run's backup, checked creatable; None when none is wanted."""
    path = session.backup_path
    directory = _configured_dir(session) if path is None else None
    if (path is None and directory is None) or not _changes_cache(session):
        return None  # (a run without either loads nothing more: start-up stays lean)
    if path is None:
        assert directory is not None
        path = _file_in(directory, str(session.audit.command))
    from cachectl.backup.writer import BackupWriter
    from cachectl.runtime.audit import masked_argv

    hidden = session.audit.params.get("value") if session.audit.command == "set" else None
    argv = masked_argv(
        session.audit.argv, session.known_secrets(), hidden if isinstance(hidden, str) else None
    )
    writer = BackupWriter(path, ["cachectl", *argv])
    try:
        writer.check_can_create()
    except OSError as exc:
        raise ConfigError(f"--backup {path}: {exc.strerror or exc}; nothing was done") from None
    session.output.backup_summary = writer.summary
    return writer


def finish(session: Session) -> None:
    """Close the run's backup (its trailer), and say where it is and what it holds."""
    writer = session.current_backup
    if writer is None:
        return
    try:
        writer.close()
    except OSError as exc:
        session.output.error(f"the backup {writer.path} could not be finished: {exc}")
        return
    if not writer.created:
        session.output.notice("no backup written: nothing was removed or overwritten")
        return
    session.output.notice(
        f"kept {counted(writer.entries, 'entry', 'entries')} in {writer.path} "
        f"(cachectl restore {writer.path} puts them back)"
    )


def summary(session: Session) -> dict[str, Any] | None:
    writer = session.current_backup
    return writer.summary() if writer is not None else None
