"""What one invocation tells the audit log (``cachectl.runtime.audit``), gathered as it runs: the
command line, the command and its options when it starts, what it reported doing, why it
failed; written as one line when the command ends, whatever its exit status."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cachectl.errors import ConfigError

if TYPE_CHECKING:
    from cachectl.cli.session import Session


class AuditRecord:
    def __init__(self) -> None:
        #: The command line (after ``cachectl``), as given.
        self.argv: list[str] = []
        #: ``--audit-log`` / ``CACHECTL_AUDIT_LOG``; else the config file's ``audit_log``.
        self.log_path: str | None = None
        #: ``--audit-required``: no destructive run without its line.
        self.required = False
        self.command: str | None = None
        self.params: dict[str, Any] = {}
        self.done: dict[str, Any] | None = None
        self.failure: str | None = None
        #: What the batch line a signal stopped had done (its keys removed): the batch's
        #: own document, logged as ``done``, has each line's exit status only.
        self.stopped_line_done: dict[str, Any] | None = None
        #: ``--once-per``: the claim (``operations.once.OnceClaim.document``), if any.
        self.once: dict[str, Any] | None = None
        self._depth = 0
        self._descriptor: int | None = None

    def starting(self, name: str, params: Mapping[str, Any], session: Session) -> None:
        """A command starts: the first is the one logged (a batch's lines run inside it).
        With ``--audit-required`` the log is opened now, so that a log that cannot be
        written stops the command before it changes anything."""
        self._depth += 1
        if self.command is not None:
            return
        self.command, self.params = name, dict(params)
        if not self.required:
            return
        from cachectl.runtime.changing import changes_cache

        if changes_cache(name, params):
            path = self.path(session, resolve=True)
            if path is None:
                self.command = None  # refused before it ran: nothing to log
                raise ConfigError(
                    "--audit-required, but no audit log is set (--audit-log FILE, "
                    "CACHECTL_AUDIT_LOG, or audit_log in the config file): nothing was done"
                )
            try:
                self._descriptor = self._open(path, before=True)
            except ConfigError:
                self.command = None  # refused before it ran: nothing to log
                raise

    def finished(self) -> None:
        self._depth -= 1

    def failed(self, message: str, done: Mapping[str, Any]) -> None:
        """The run failed: its error line, and what it had done (a count reached before a
        signal or a lost connection) when it says. A batch's line fails inside the batch,
        whose own document follows: the line's ``done`` is kept apart."""
        self.failure = message
        if self._depth > 0:  # the last line's failure is the one a stop ends the batch with
            self.stopped_line_done = dict(done) if done else None
        elif done:
            self.done = dict(done)

    def record_done(self, document: Mapping[str, Any]) -> None:
        """What the command reports it did (its JSON document): kept for the logged
        command only, not for each line of a batch."""
        if self._depth <= 1:
            self.done = dict(document)

    def masked_argv(self, session: Session) -> list[str]:
        """The command line as the log shows it (credentials masked, ``set``'s VALUE
        hidden): also what a ``--once-per`` claim records of its run."""
        from cachectl.runtime.audit import masked_argv

        hidden = self.params.get("value") if self.command == "set" else None
        hidden = hidden if isinstance(hidden, str) else None
        return masked_argv(self.argv, session.known_secrets(), hidden)

    def path(self, session: Session, resolve: bool = False) -> str | None:
        if self.log_path:
            return self.log_path
        resolved = session.config if resolve else session.resolved_config
        return resolved.audit_log if resolved is not None else None

    @staticmethod
    def _open(path: str, before: bool) -> int:
        from cachectl.runtime.audit import open_log

        try:
            return open_log(path)
        except OSError as exc:
            why = f"cannot write the audit log {path}: {exc.strerror or exc}"
            raise ConfigError(why + ("; nothing was done" if before else "")) from exc

    def write(self, session: Session, exit_code: int) -> str | None:
        """The run's line, if the run may have changed a cache and a log is set; why it
        could not be written, if it could not. No signal interrupts the writing
        (``interrupts.shielded``): a run stopped by one gets its line whole."""
        from cachectl.runtime import interrupts

        with interrupts.shielded():
            return self._write(session, exit_code)

    def _write(self, session: Session, exit_code: int) -> str | None:
        if self.command is None:
            return None
        try:
            path = self.path(session)
        except Exception:  # the configuration itself failed: only --audit-log can say
            path = self.log_path
        if path is None:
            return None
        from cachectl.runtime import audit  # loaded only where a log is set

        if not audit.changes_cache(self.command, self.params):
            return None
        target = None
        backends = session.built_backends()
        if backends:
            resolved = session.resolved_config
            target = {
                "cache": resolved.cache_name if resolved is not None else None,
                "where": backends[0].describe(),
                "key_prefix": backends[0].key_prefix,
            }
        hidden = self.params.get("value") if self.command == "set" else None
        line = audit.entry(
            command=self.command,
            argv=self.argv,
            secrets=session.known_secrets(),
            hidden=hidden if isinstance(hidden, str) else None,
            target=target,
            done=self.done,
            exit_code=exit_code,
            error=self.failure if exit_code else None,
            stopped_line_done=self.stopped_line_done,
            backup=session.current_backup.summary() if session.current_backup else None,
            once=self.once,
        )
        try:
            descriptor = self._descriptor
            if descriptor is None:
                descriptor = self._open(path, before=False)
            try:
                audit.append(descriptor, line)
            finally:
                os.close(descriptor)
                self._descriptor = None
        except (ConfigError, OSError) as exc:
            return str(exc) if isinstance(exc, ConfigError) else f"{path}: {exc}"
        return None
