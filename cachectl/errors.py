"""The failures cachectl expects, each tied to the exit code scripts rely on.

Every layer raises these instead of printing, so the CLI can turn any of them
into one clear line (or one JSON document) and the documented exit code,
without a traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_BACKEND = 3
#: A bug in cachectl itself (anything not foreseen).
EXIT_INTERNAL = 4
#: A run a signal stopped exits 128 + its number, as a shell reports a process killed by
#: it (cachectl.runtime.interrupts): SIGHUP, SIGINT (Ctrl-C), SIGTERM.
EXIT_HANGUP = 129
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
EXIT_STOPPED = frozenset({EXIT_HANGUP, EXIT_INTERRUPTED, EXIT_TERMINATED})

#: The contract scripts rely on, as ``--help`` prints it (README's table says the same).
EXIT_CODES_HELP = """\b
Exit codes:
  0    done
  1    not found (get, ttl, expire, persist, show-memoized; delete-memoized of a
       name not imported here with nothing cached under it), a clear
       declined at the prompt, or a restore that left entries out
  2    usage or configuration error
  3    cache server unreachable, timed out or refused
  4    internal error (a bug: --debug shows the traceback)
  130  interrupted by Ctrl-C (SIGINT); 143 by SIGTERM, 129 by SIGHUP (what was
       done so far is reported, and written to the audit log)
  141  standard output closed by its reader (| head)
  batch, invalidate: the code of their first failing line"""


class CachectlError(Exception):
    """Base class: a message meant for the operator and the exit code it maps to."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, done: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: What had been done before the failure (for example keys removed),
        #: so a partial run can be reported honestly.
        self.done = done or {}


class ConfigError(CachectlError):
    """The cache configuration is missing, unreadable or invalid (exit 2)."""

    exit_code = EXIT_USAGE


class UsageError(CachectlError):
    """The command line asks for something that cannot be done (exit 2)."""

    exit_code = EXIT_USAGE


class BackendError(CachectlError):
    """The cache server is unreachable, timed out or refused the command (exit 3)."""

    exit_code = EXIT_BACKEND


class Interrupted(CachectlError):
    """A signal stopped the run (Ctrl-C, SIGTERM, SIGHUP: ``cachectl.runtime.interrupts``);
    ``done`` says how far the work got; exit 128 + the signal's number."""

    exit_code = EXIT_INTERRUPTED

    def __init__(
        self,
        message: str,
        *,
        done: dict[str, object] | None = None,
        exit_code: int = EXIT_INTERRUPTED,
    ) -> None:
        super().__init__(message, done=done)
        self.exit_code = exit_code
