"""Run the lines of a batch (``batch``, ``invalidate``) in one process, each as it would
run on its own: the same command, parsed by Click, in the invocation's Session (one
configuration, one app load, one connection per cache), its failure reported and
mapped to its exit code exactly as the group does, without ending the process.

Every line is parsed before the first runs, so a mistyped line or one a batch refuses
stops the batch with nothing done. What a batch refuses, and why:

- global options in a line (``--app``, ``--cache``, ``--url``, ``--json``...): a batch
  runs every line against the one target and in the one output mode given before
  ``batch``; a line that changed them would no longer share them;
- ``batch`` and ``invalidate`` in a line (no nesting), ``--help``, and ``get --raw``
  (bytes that one batch output cannot frame);
- a line that reads standard input when the batch itself is read from it;
- under ``--dry-run``, a line that would write and has no dry run (``set``, ``expire``,
  ``persist``, ``delete`` of listed keys, ``config --write``): it is refused rather
  than run.

A line never asks: a command that would ask on a terminal (``clear`` or
``delete --pattern`` without ``--yes``) behaves as it does without a terminal.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from typing import Any

import click

from cachectl.cli.group import (
    EXIT_INTERRUPTED,
    GLOBAL_FLAGS,
    failure_of,
    report_failure,
    report_usage_error,
)
from cachectl.cli.session import Session
from cachectl.errors import UsageError
from cachectl.operations.batch import BatchLine, BatchReport, LineResult
from cachectl.output import Output

#: Commands that change nothing, run as they are under --dry-run.
_READ_ONLY = frozenset({"get", "keys", "stats", "ttl", "fragments", "completion", "groups"})
#: Commands a batch line may not be (a batch inside a batch).
_NESTED = frozenset({"batch", "invalidate"})


class LineOutput(Output):
    """A line's output: never interactive (a line never asks), and with --json its
    document is kept for the batch's one document instead of printed; kept as printed
    (through JSON), so it is the document the line alone would print."""

    def __init__(self, as_json: bool, quiet: bool) -> None:
        super().__init__(as_json=as_json, quiet=quiet)
        self.documents: list[Any] = []

    @property
    def interactive(self) -> bool:
        return False

    def document(self, payload: dict[str, Any]) -> None:
        from cachectl.codec.rendering import stack_room

        with stack_room(2 * 1000 + 10):
            self.documents.append(json.loads(json.dumps(payload, default=str)))


def _refuse(line: BatchLine, reason: str) -> UsageError:
    return UsageError(
        f"{line.label} ({line.shown}): {reason}; nothing was run",
        done={"line": line.number, "command": line.shown},
    )


def _options_part(args: tuple[str, ...]) -> tuple[str, ...]:
    """The arguments before ``--``, where options can stand."""
    return args[: args.index("--")] if "--" in args else args


def _dry_run_kind(name: str, params: dict[str, Any]) -> str:
    """``reads`` (changes nothing), ``dry-run`` (has one) or ``writes`` (has none).
    A command not known to change nothing and without a --dry-run counts as writing."""
    if name == "config":
        return "reads" if params.get("target") is None else "writes"
    if name == "make-fragment-key" and not params.get("delete"):
        return "reads"
    if name == "delete" and params.get("pattern") is None:
        return "writes"
    if name in _READ_ONLY:
        return "reads"
    return "dry-run" if "dry_run" in params else "writes"


def _command(group_ctx: click.Context, line: BatchLine) -> click.Command:
    name = line.argv[0]
    if name.startswith("-"):
        raise _refuse(
            line,
            f"{name} is a global option: a batch runs every line with the options given "
            "before 'batch' (cachectl --app ... batch FILE)",
        )
    if name in _NESTED:
        raise _refuse(line, f"{name} cannot run inside a batch")
    group = group_ctx.command
    assert isinstance(group, click.Group)
    command = group.get_command(group_ctx, name)
    if command is None:
        close = difflib.get_close_matches(name, group.list_commands(group_ctx), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise _refuse(line, f"no command {name!r}{hint}")
    return command


def check_line(group_ctx: click.Context, line: BatchLine, dry_run: bool, stdin_taken: bool) -> None:
    """Refuse (UsageError) a line the batch cannot run as it would run on its own."""
    command = _command(group_ctx, line)
    name, args = line.argv[0], line.argv[1:]
    for token in _options_part(args):
        if token in GLOBAL_FLAGS:
            raise _refuse(line, f"{token} applies to the whole batch: give it before 'batch'")
        if token in ("--help", "-h"):
            raise _refuse(line, f"run 'cachectl {name} --help' on its own")
    try:
        with command.make_context(name, list(args), parent=group_ctx) as ctx:
            params = dict(ctx.params)
    except click.ClickException as exc:
        raise _refuse(line, " ".join(exc.format_message().split()).rstrip(".")) from None
    session = group_ctx.find_object(Session)
    if session is not None and session.request.cache_name == "all":
        from cachectl.cli.every_cache import refusal

        reason = refusal(name, params)
        if reason is not None:
            raise _refuse(line, reason)
    if name == "get" and params.get("raw"):
        raise _refuse(line, "get --raw writes bytes a batch's output cannot frame")
    options = _options_part(args)
    reads_stdin = (name == "set" and params.get("value") == "-") or any(
        token == "--from-file=-" or (token == "--from-file" and following == "-")
        for token, following in zip(options, (*options[1:], ""))
    )
    if stdin_taken and reads_stdin:
        raise _refuse(line, "it reads standard input, which holds the batch itself")
    if dry_run and _dry_run_kind(name, params) == "writes":
        raise _refuse(line, f"{name} has no dry run, so batch --dry-run does not run it")


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
    except click.Abort:  # end of input at a prompt
        report_failure(report_ctx, "interrupted", EXIT_INTERRUPTED, {})
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        raise
    except (Exception, KeyboardInterrupt) as exc:
        message, code, done = failure_of(exc)
        report_failure(report_ctx, message, code, done)
        return code


def _run_line(group_ctx: click.Context, line: BatchLine, dry_run: bool) -> int:
    """The exit status the line's command ends with, reported as the group reports it."""
    name, args = line.argv[0], list(line.argv[1:])
    command = _command(group_ctx, line)
    session = group_ctx.find_object(Session)
    assert session is not None

    def run() -> None:
        with command.make_context(name, args, parent=group_ctx) as ctx:
            if dry_run and _dry_run_kind(name, ctx.params) == "dry-run":
                ctx.params["dry_run"] = True
            command.invoke(ctx)

    return exit_status_of(run, group_ctx, session.output)


def run_batch(
    group_ctx: click.Context,
    lines: list[BatchLine],
    *,
    dry_run: bool,
    keep_going: bool,
    stdin_taken: bool = False,
) -> BatchReport:
    """Check every line, then run them in order in the group's Session: by default up to
    the first that fails, with ``keep_going`` all of them; an interrupted line (Ctrl-C)
    always ends the batch. Each line's output is printed as it runs (text), or kept for
    the batch's one document (--json)."""
    session = group_ctx.find_object(Session)
    assert session is not None
    for line in lines:
        check_line(group_ctx, line, dry_run, stdin_taken)
    report = BatchReport(dry_run=dry_run, keep_going=keep_going)
    batch_output = session.output
    stopped = False
    for line in lines:
        result = LineResult(line)
        report.results.append(result)
        if stopped:
            continue
        batch_output.result(f"{line.label}: {line.shown}")
        line_output = LineOutput(batch_output.as_json, batch_output.quiet)
        session.output = line_output
        try:
            result.exit_code = _run_line(group_ctx, line, dry_run)
        finally:
            session.output = batch_output
        if line_output.documents:
            result.document = line_output.documents[-1]
        if result.exit_code == EXIT_INTERRUPTED or (result.exit_code and not keep_going):
            stopped = True
    return report


def summarize(output: Output, report: BatchReport) -> None:
    """The batch's last words on standard error: which line failed first, and which
    were not run because of it."""
    failures, not_run = report.failures, report.not_run
    if not failures:
        output.notice(
            f"{len(report.results)} lines done" + (" (dry run)" if report.dry_run else "")
        )
        return
    first = failures[0]
    said = f"{first.line.label} failed with exit {first.exit_code}: {first.line.shown}"
    if not_run:
        word = "action" if first.line.group is not None else "line"
        numbers = ", ".join(str(result.line.number) for result in not_run)
        output.error(f"{said}; not run after it: {word}(s) {numbers}")
    else:
        output.error(f"{said} ({len(failures)} of {len(report.results)} failed)")


def finish(session: Session, report: BatchReport, extra: dict[str, Any] | None = None) -> None:
    """Print the batch's document (--json) and its summary, and end with its exit status:
    the first failing line's, 0 when every line succeeded."""
    session.audit.record_done({**report.document(), **(extra or {})})
    if session.output.as_json:
        session.output.document({**report.document(), **(extra or {})})
    summarize(session.output, report)
    click.get_current_context().exit(report.exit_code)
