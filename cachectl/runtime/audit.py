"""The audit log: one JSON line for each run of a command that changed a cache.

Who removed the sessions at 14:02, and with what command? An operator or a deploy script
turns the log on with ``--audit-log FILE``, ``CACHECTL_AUDIT_LOG``, or ``audit_log`` in the
config file. A line holds the time, user, host, cachectl's version, the command line with
credentials masked and the value of ``set`` left out, the target (server, database, key
prefix), what was done (the command's own result: counts, keys, version keys written) and
the exit status. Never a cached value.

Each line is one ``write`` to a file opened with ``O_APPEND``, so the lines of runs that
end at the same time do not interleave. A log that cannot be written is a warning, and
the command's own exit status stands; with ``--audit-required`` the log is opened before
the command runs (a log that cannot be opened stops it, nothing done), and a line that
cannot be written afterwards is an error.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from cachectl import __version__
from cachectl.errors import EXIT_STOPPED
from cachectl.runtime.changing import DESTRUCTIVE, changes_cache  # noqa: F401  (the log's list)
from cachectl.runtime.secrets import masked_arg, scrub, secret_texts


def masked_argv(
    argv: Sequence[str], secrets: frozenset[str] = frozenset(), hidden: str | None = None
) -> list[str]:
    """The command line as logged: credentials masked from the command line alone (a
    secret setting's ``-o NAME=VALUE``, URL userinfo: ``secrets.masked_arg``), then the
    known passwords, and the ``hidden`` argument (the VALUE of ``set``) replaced by
    ``<value>``."""
    shown = []
    for arg in argv:
        shown.append("<value>" if hidden is not None and arg == hidden else arg)
    return [scrub(masked_arg(arg), secrets) for arg in shown]


def value_forms(value: str) -> set[str]:
    """How an error may quote ``set``'s VALUE (``invalid literal for int(): 'sk_...'``),
    to be masked in the log's ``error``: quoted even when too short to mask bare."""
    return secret_texts(value) | {repr(value)}


#: The options of ``set`` that take a value of their own (``--create-dir`` is a flag).
_SET_VALUED_OPTIONS = frozenset({"--ttl", "--timeout", "--as"})


def masked_line(command: str) -> str:
    """A batch line as logged: credentials masked, and for ``set KEY VALUE`` the VALUE
    replaced by ``<value>`` (found as ``set`` parses its arguments)."""
    import shlex

    from cachectl.runtime.command_line import LineSyntaxError, split_line

    try:
        tokens = split_line(command)
    except LineSyntaxError:
        return "<unreadable line>"
    if tokens[:1] == ["set"]:
        positionals, at, options_end = 0, 1, False
        while at < len(tokens):
            token = tokens[at]
            if not options_end and token == "--":
                options_end = True
            elif not options_end and token in _SET_VALUED_OPTIONS:
                at += 1
            elif options_end or not token.startswith("-") or token == "-":
                positionals += 1
                if positionals == 2:
                    tokens[at] = "<value>"
                    break
            at += 1
    return shlex.join(masked_argv(tokens))


def batch_summary(
    document: Mapping[str, Any], stopped_done: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A batch's (or invalidate's) result without the lines' own documents, which may
    hold values (a ``get`` line): each line's command (masked) and exit status; the line
    a signal stopped also says what it had done (``stopped_done``: keys removed)."""
    summary = {key: value for key, value in document.items() if key != "lines"}
    if isinstance(summary.get("command"), str):  # a line the batch refused before running
        summary["command"] = masked_line(summary["command"])
    summary["lines"] = [
        {
            "line": line.get("line"),
            "command": masked_line(str(line.get("command", ""))),
            "exit_code": line.get("exit_code"),
        }
        for line in document.get("lines", [])
    ]
    stopped = [line for line in summary["lines"] if line["exit_code"] in EXIT_STOPPED]
    if stopped and stopped_done:  # the last line run: a stop ends the batch
        stopped[-1]["done"] = dict(stopped_done)
    return summary


def _lines_masked_in(text: str, document: Mapping[str, Any]) -> str:
    """``text`` (a batch's error, which quotes a line as written) with each of the batch's
    lines as logged (``masked_line``: the VALUE of ``set`` hidden)."""
    lines = document.get("lines")
    written = [document.get("command")]
    if isinstance(lines, list):
        written += [line.get("command") for line in lines if isinstance(line, Mapping)]
    for raw in written:
        if isinstance(raw, str) and raw and raw in text:
            text = text.replace(raw, masked_line(raw))
    return text


def open_log(path: str) -> int:
    """The log opened for appending (created 0600 if new): OSError when it cannot be,
    ``UnsafeFile`` (an OSError) when it is a link, a FIFO (which would block the run
    forever) or anything but a regular file (``cachectl.runtime.safe_files``)."""
    from cachectl.runtime.safe_files import open_append

    return open_append(path)


def append(descriptor: int, entry: Mapping[str, Any]) -> None:
    """One line, in one write (``O_APPEND``: concurrent runs' lines do not interleave)."""
    line = json.dumps(entry, ensure_ascii=False, separators=(",", ":"), default=str) + "\n"
    data = line.encode("utf-8", "surrogateescape")
    written = os.write(descriptor, data)
    if written != len(data):
        raise OSError(f"only {written} of {len(data)} bytes were written")


def who_and_where() -> dict[str, Any]:
    """The user, host and process a line is from (a uid where no user name is known)."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container's uid with no passwd entry
        user = str(os.getuid())
    return {"user": user, "host": socket.gethostname(), "pid": os.getpid()}


def entry(
    *,
    command: str,
    argv: Sequence[str],
    secrets: frozenset[str],
    hidden: str | None,
    target: Mapping[str, Any] | None,
    done: Mapping[str, Any] | None,
    exit_code: int,
    error: str | None,
    stopped_line_done: Mapping[str, Any] | None = None,
    backup: Mapping[str, Any] | None = None,
    once: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The line for one run. Its ``error`` passes the run's secrets filter, with the
    ``hidden`` VALUE of ``set`` among the secrets: the log never holds a value."""
    import datetime

    now = datetime.datetime.now(datetime.timezone.utc)
    if done is not None and command in ("batch", "invalidate"):
        if error is not None:
            error = _lines_masked_in(error, done)
        done = batch_summary(done, stopped_line_done)
    error_secrets = secrets | value_forms(hidden) if hidden is not None else secrets
    line = {
        "time": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        **who_and_where(),
        "cachectl": __version__,
        "command": command,
        "argv": masked_argv(argv, secrets, hidden),
        "target": dict(target) if target is not None else None,
        "done": dict(done) if done is not None else None,
        "exit_code": exit_code,
        "error": scrub(error, error_secrets) if error is not None else None,
        **({"backup": dict(backup)} if backup is not None else {}),
    }
    if once is not None:
        line["once_per"] = dict(once)
    return line
