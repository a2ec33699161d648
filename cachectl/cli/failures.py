"""How a command's failure reaches the operator: one ``error:`` line (and the document,
with --json), the traceback with --debug, the audit record, and the exit code.

One mapping for the group (``group.py``) and for a command run inside another (a batch's
line, one cache of ``--cache all``: ``exit_status_of``), which reports a failure the same
way without ending the process. A module below the group, so that the commands that run
others need not import the group that runs them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from cachectl.cli.session import Session
from cachectl.errors import EXIT_INTERNAL, CachectlError
from cachectl.runtime.output import Output


def failure_of(exc: BaseException) -> tuple[str, int, dict[str, object]]:
    """The line, exit code and work done that a command's exception is reported with:
    one mapping for the group and for each line of a batch, which must not exit."""
    if isinstance(exc, KeyboardInterrupt):  # a signal (cachectl.runtime.interrupts)
        from cachectl.runtime import interrupts

        exc = interrupts.as_error(exc)
    if isinstance(exc, CachectlError):
        return exc.message, exc.exit_code, exc.done
    return (
        f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
        EXIT_INTERNAL,
        {},
    )


def report_usage_error(exc: click.ClickException, output: Output) -> None:
    """Click's own usage errors, in cachectl's form: one line, a hint, the document."""
    message = " ".join(exc.format_message().split())  # Click lists choices over lines
    if type(exc).__name__ == "NoArgsIsHelpError" or message.startswith("Usage:"):
        message = "no command given"
    if isinstance(exc, click.NoSuchOption) and not exc.option_name.startswith("--"):
        message = message.rstrip(".") + (
            "; a key or argument that starts with '-' goes after '--' "
            "(cachectl get -- -KEY), or use --from-file"
        )
    context = getattr(exc, "ctx", None)
    hint = f"Try '{context.command_path} --help' for help." if context is not None else None
    report(output, message, exc.exit_code, {}, hint)


def report(
    output: Output,
    message: str,
    code: int,
    done: dict[str, object],
    hint: str | None = None,
    secrets: frozenset[str] = frozenset(),
) -> None:
    """Every failure's form: one ``error:`` line with ``secrets`` scrubbed, the hint (not
    with --quiet), and with --json the document that says it failed."""
    from cachectl.runtime.secrets import scrub  # with the settings, not for --help

    message = scrub(message, secrets)
    output.error(message)
    if hint is not None and not output.quiet:
        output.notice(hint)
    if output.as_json:
        output.document({"ok": False, "error": message, "exit_code": code, **done})


def report_failure(ctx: click.Context, message: str, code: int, done: dict[str, object]) -> None:
    """One ``error:`` line (and the document, with --json) for a failed command; the
    traceback too with --debug, when called while the exception is handled."""
    session = ctx.find_object(Session)
    output = session.output if session else Output()
    known = session.known_secrets() if session is not None else frozenset()
    if session is not None and session.debug:
        import traceback

        from cachectl.runtime.secrets import scrub

        sys.stderr.write(scrub(traceback.format_exc(), known))
    if session is not None:
        session.audit.failed(message, done)
    report(output, message, code, done, secrets=known)


def exit_status_of(run: Callable[[], object], report_ctx: click.Context, output: Output) -> int:
    """The exit status of a command run inside another (a batch's line, one cache of
    --cache all), its failure reported as the group reports one, without ending the
    process: the one mapping from how a command ends to its exit code."""
    try:
        run()
        return 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        report_usage_error(exc, output)
        return exc.exit_code
    except click.Abort:  # a signal, or end of input, at a prompt
        message, code, done = failure_of(KeyboardInterrupt())
        report_failure(report_ctx, message, code, done)
        return code
    except BrokenPipeError:
        raise
    except (Exception, KeyboardInterrupt) as exc:
        message, code, done = failure_of(exc)
        report_failure(report_ctx, message, code, done)
        return code
