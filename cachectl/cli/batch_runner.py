"""Run the lines of a batch (``batch``, ``invalidate``) in one process, each as it would
run on its own: the same command, parsed by Click, in the invocation's Session (one
configuration, one app load, one connection per cache), its failure reported and
mapped to its exit code exactly as the group does, without ending the process.

Every line is checked before the first runs (``check_lines``), so a mistyped line, or
one that would fail its own checks, stops the batch with nothing done: each line is
parsed, then run as far as its cache (``cachectl.runtime.checking``: options, the function a
line names and how its arguments bind, a view's endpoint, a fragment's arguments, the
configuration and the app), nothing of it shown but its warnings. What a batch refuses,
and why:

- global options in a line (``--app``, ``--cache``, ``--url``, ``--json``...): a batch
  runs every line against the one target and in the one output mode given before
  ``batch``; a line that changed them would no longer share them;
- ``batch`` and ``invalidate`` in a line (no nesting), ``--help``, and ``get --raw``
  (bytes that one batch output cannot frame);
- a line that reads standard input when the batch itself is read from it.

Under ``--dry-run`` a line with a dry run runs as one, a line that changes nothing runs
as it is, and a line that would write without a dry run (``set``, ``expire``,
``persist``, ``delete`` of listed keys, ``config --write``) is checked, then only says
what it would do (``would set KEY``): an operator reviews a deploy file so.

A line never asks: a command that would ask on a terminal (``clear`` or
``delete --pattern`` without ``--yes``) behaves as it does without a terminal.
"""

from __future__ import annotations

import difflib
import io
from collections.abc import Callable
from contextlib import redirect_stdout
from typing import Any

import click

from cachectl.cli.failures import exit_status_of, failure_of
from cachectl.cli.group import GLOBAL_FLAGS
from cachectl.cli.line_output import LineOutput
from cachectl.cli.session import Session
from cachectl.errors import EXIT_STOPPED, UsageError
from cachectl.operations.batch import BatchLine, BatchReport, LineResult
from cachectl.runtime.checking import ServerNeeded, only_checking
from cachectl.runtime.output import Output
from cachectl.runtime.wording import counted, noun

#: Commands that change nothing, run as they are under --dry-run.
_READ_ONLY = frozenset({"get", "keys", "stats", "ttl", "fragments", "completion", "groups"})
#: Commands a batch line may not be (a batch inside a batch).
_NESTED = frozenset({"batch", "invalidate"})


class CheckOutput(LineOutput):
    """A line's output while it is only checked: nothing is shown but its warnings
    (shown once, before any line runs), and its errors are kept for the refusal."""

    def __init__(self, shown: Output) -> None:
        super().__init__(as_json=shown.as_json, quiet=True)
        self.shown = shown
        self.warned: list[str] = []
        self.errors: list[str] = []

    def warn(self, text: str) -> None:
        self.warned.append(text)
        self.shown.warn(text)

    def error(self, text: str) -> None:
        self.errors.append(text)

    def document(self, payload: dict[str, Any]) -> None:
        pass

    def raw(self, data: bytes) -> None:
        pass

    def value(self, value: Any, label: str | None = None, limits: Any = None) -> None:
        pass


def _refuse(line: BatchLine, reason: str, exit_code: int | None = None) -> UsageError:
    refusal = UsageError(
        f"{line.label} ({line.shown}): {reason}; nothing was run",
        done={"line": line.number, "command": line.shown},
    )
    if exit_code is not None:  # a failure of the line's own checks keeps its exit status
        refusal.exit_code = exit_code
    return refusal


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


def check_line(
    group_ctx: click.Context, line: BatchLine, stdin_taken: bool
) -> tuple[dict[str, Any], bool]:
    """Refuse (UsageError) a line the batch cannot run as it would run on its own; its
    options as parsed, and whether it reads standard input."""
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
        token in ("--from-file=-", "--each=-")
        or (token in ("--from-file", "--each") and following == "-")
        for token, following in zip(options, (*options[1:], ""))
    )
    if stdin_taken and reads_stdin:
        raise _refuse(line, "it reads standard input, which holds the batch itself")
    return params, reads_stdin


def _checked_by_running(name: str, params: dict[str, Any], reads_stdin: bool) -> bool:
    """Whether a line is run as far as its cache to check it: a line that changes a cache
    (or would, but for --dry-run) or changes nothing. Not a line that reads standard
    input (its input would be gone), nor one that writes elsewhere before it needs a
    server (``config --write`` writes its file): those are only parsed."""
    from cachectl.runtime.changing import DESTRUCTIVE

    return not reads_stdin and (name in DESTRUCTIVE or _dry_run_kind(name, params) == "reads")


def _run_as_far_as_its_cache(
    group_ctx: click.Context, line: BatchLine, dry_run: bool
) -> frozenset[str]:
    """Run a line within ``only_checking``: every check it makes before it needs its
    cache, nothing sent; a failure refuses it (with the line's own exit status). The
    warnings it gave, shown now."""
    session = group_ctx.find_object(Session)
    assert session is not None
    name, args = line.argv[0], list(line.argv[1:])
    command = _command(group_ctx, line)
    shown = session.output
    checking = CheckOutput(shown)
    session.output = checking
    try:
        # What a command prints itself (click.echo) is its result: not shown either.
        unseen = redirect_stdout(io.StringIO())
        with only_checking(), unseen, command.make_context(name, args, parent=group_ctx) as ctx:
            if dry_run and _dry_run_kind(name, ctx.params) == "dry-run":
                ctx.params["dry_run"] = True
            command.invoke(ctx)
    except ServerNeeded:
        pass  # every check that needs no server has passed
    except click.exceptions.Exit as exc:
        if exc.exit_code:
            said = checking.errors[-1] if checking.errors else "it failed"
            raise _refuse(line, said.removeprefix("error: "), exc.exit_code) from None
    except click.ClickException as exc:
        raise _refuse(line, " ".join(exc.format_message().split()).rstrip(".")) from None
    except Exception as exc:
        message, code, _ = failure_of(exc)
        raise _refuse(line, message, code) from None
    finally:
        session.output = shown
    return frozenset(checking.warned)


def check_lines(
    group_ctx: click.Context, lines: list[BatchLine], dry_run: bool, stdin_taken: bool
) -> list[frozenset[str]]:
    """The batch's one check phase (``batch``, ``invalidate``): every line parsed and
    refused if the batch cannot run it, then each run as far as its cache; the first
    line that fails stops the batch, nothing run. The warnings each line gave."""
    parsed = [check_line(group_ctx, line, stdin_taken) for line in lines]
    return [
        _run_as_far_as_its_cache(group_ctx, line, dry_run)
        if _checked_by_running(line.argv[0], params, reads_stdin)
        else frozenset()
        for line, (params, reads_stdin) in zip(lines, parsed)
    ]


def _would(name: str, params: dict[str, Any], shown: str) -> str:
    """What a line that writes without a dry run would do (``batch --dry-run``)."""
    from cachectl.codec.key_names import escape_key

    key = escape_key(str(params.get("key", "")))
    if name == "set":
        ttl = params.get("ttl", params.get("ttl_old_spelling"))
        lifetime = "" if ttl is None else f", ttl {ttl} s"
        return f"would set {key} ({params.get('as_type', 'str')}{lifetime})"
    if name == "expire":
        return f"would expire {key} in {params.get('seconds')} s"
    if name == "persist":
        return f"would persist {key} (no expiry)"
    if name == "delete":
        listed = [escape_key(str(given)) for given in params.get("keys", ())]
        from_file = params.get("from_file")
        if from_file is not None:
            listed.append(f"the keys listed in {getattr(from_file, 'name', from_file)}")
        return "would delete " + ", ".join(listed)
    if name == "config" and params.get("target"):
        return f"would write {params['target']}"
    return f"would run {shown}"


def _run_line(group_ctx: click.Context, line: BatchLine, dry_run: bool) -> int:
    """The exit status the line's command ends with, reported as the group reports it.
    Under --dry-run a line that writes without a dry run only says what it would do."""
    name, args = line.argv[0], list(line.argv[1:])
    command = _command(group_ctx, line)
    session = group_ctx.find_object(Session)
    assert session is not None

    def run() -> None:
        with command.make_context(name, args, parent=group_ctx) as ctx:
            kind = _dry_run_kind(name, ctx.params) if dry_run else None
            if kind == "writes":
                would = _would(name, ctx.params, line.shown)
                session.output.document({"ok": True, "dry_run": True, "would": would})
                session.output.result(would)
                return
            if kind == "dry-run":
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
    before_running: Callable[[], None] | None = None,
) -> BatchReport:
    """Check every line (``check_lines``), then (after ``before_running``: a question
    asked once every line is known good) run them in order in the group's Session: by
    default up to the first that fails, with ``keep_going`` all of them; an interrupted
    line (Ctrl-C) always ends the batch. Each line's output is printed as it runs
    (text), or kept for the batch's one document (--json). A batch cut short (its
    standard output closed, a signal) tells the audit log which lines had run."""
    session = group_ctx.find_object(Session)
    assert session is not None
    warned = check_lines(group_ctx, lines, dry_run, stdin_taken)
    if before_running is not None:
        before_running()
    report = BatchReport(dry_run=dry_run, keep_going=keep_going)
    report.results = [LineResult(line) for line in lines]
    batch_output = session.output
    stopped = False
    try:
        for result, already_warned in zip(report.results, warned):
            if stopped:
                continue
            line = result.line
            batch_output.result(f"{line.label}: {line.shown}")
            line_output = LineOutput(batch_output.as_json, batch_output.quiet, already_warned)
            session.output = line_output
            try:
                result.exit_code = _run_line(group_ctx, line, dry_run)
            finally:
                session.output = batch_output
            if line_output.documents:
                result.document = line_output.documents[-1]
            if result.exit_code in EXIT_STOPPED or (result.exit_code and not keep_going):
                stopped = True
    except BaseException as exc:
        session.audit.record_done(cut_short(report, exc))
        raise
    return report


def cut_short(report: BatchReport, exc: BaseException) -> dict[str, Any]:
    """What a batch that did not finish had done, for its audit line: the lines that
    ran to their end, and the one in flight."""
    completed = [result.line.number for result in report.results if result.exit_code is not None]
    in_flight = next((r.line.number for r in report.results if r.exit_code is None), None)
    why = "standard output closed" if isinstance(exc, BrokenPipeError) else type(exc).__name__
    return {
        **report.document(),
        "ok": False,
        "cut_short": why,
        "completed_lines": completed,
        "line_in_flight": in_flight,
    }


def summarize(output: Output, report: BatchReport) -> None:
    """The batch's last words on standard error: which line failed first, and which
    were not run because of it."""
    failures, not_run = report.failures, report.not_run
    if not failures:
        output.notice(
            f"{counted(len(report.results), 'line')} done"
            + (" (dry run)" if report.dry_run else "")
        )
        return
    first = failures[0]
    said = f"{first.line.label} failed with exit {first.exit_code}: {first.line.shown}"
    if not_run:
        word = "action" if first.line.group is not None else "line"
        numbers = ", ".join(str(result.line.number) for result in not_run)
        output.error(f"{said}; not run after it: {noun(len(not_run), word)} {numbers}")
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
