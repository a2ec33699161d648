"""delete-memoized and show-memoized with ``--each FILE``: one call of the function a line.

A line is read exactly as the command line's ARGs and call options are (the same Click
options through ``ReprPositionsCommand``, the same ``call_arguments``), after
``cachectl.runtime.command_line.split_line`` has split it into words as bash would; with
``--each-format json`` it is a JSON array or object
(``operations.memoized_each.json_arguments``). A line of only plain words (no option, no
``--``) skips Click's parser, which would take every such word as an ARG anyway, and a
line of one such word (an id: the usual line) skips the splitting too: a file of 100,000
ids is parsed in a tenth of a second, not in ten.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import IO, Any

import click

from cachectl.app.functions import DECIMAL, parse_argument
from cachectl.cli.call_options import ReprPositionsCommand, call_arguments, line_options
from cachectl.cli.group import Session
from cachectl.errors import EXIT_NOT_FOUND, UsageError
from cachectl.operations import memoized_each as each_ops
from cachectl.operations.memoized import MemoizedCall, MemoizedInvalidator
from cachectl.runtime.command_line import LineSyntaxError, split_line
from cachectl.runtime.wording import counted, number


class _LineCommand(ReprPositionsCommand):
    """A line of ``--each``: ARGs and the options naming one call, without FUNCTION."""

    leading_positionals = 0


@click.command("line", cls=_LineCommand, add_help_option=False)
@line_options
def _line_command(**_: Any) -> None:
    """Never run: only its parser reads the lines."""


def check_each_options(**given: Any) -> None:
    """Refuse, before anything is loaded or sent, what --each cannot take: ARGs, --repr
    and --kw (a line holds them), and the options that act on the whole function or
    show one value."""
    for option, value in given.items():
        if value:
            raise UsageError(f"{option} does not go with --each: the calls are the lines of FILE")


def _words_call(text: str) -> tuple[tuple[Any, ...], dict[str, Any], str | None]:
    """A line of shell words: its call's arguments, and the --instance it names."""
    try:
        words = split_line(text)
    except LineSyntaxError as exc:
        raise UsageError(f"cannot split it as a shell would ({exc})") from None
    if "-" not in text or not any(word.startswith("-") for word in words):
        return tuple(map(parse_argument, words)), {}, None  # what call_arguments gives
    try:
        with _line_command.make_context("line", words) as ctx:
            params, positions = dict(ctx.params), ctx.meta["repr_positions"]
    except click.ClickException as exc:
        raise UsageError(" ".join(exc.format_message().split()).rstrip(".")) from None
    args, kwargs = call_arguments(params["args"], params["reprs"], positions, params["keywords"])
    return args, kwargs, params["instance"]


#: A line that is one plain word, not an option: what ``_words_call`` would split into
#: that word alone and read as an ARG (the characters ``split_line`` reads plainly). The
#: first group is a decimal integer, which ``parse_argument`` would read as an int.
_ONE_WORD = re.compile(
    rf"[ \t]*(?:({DECIMAL})|([^- \t'\"\\#$`;&|<>()\n][^ \t'\"\\#$`;&|<>()\n]*))[ \t]*"
)


_DECIMAL_WORD = re.compile(DECIMAL).fullmatch


def numbered_arguments(
    stream: IO[bytes], each_format: str, source: str, stopped: str
) -> Iterator[each_ops.LineCall]:
    """Each line's call: its number, arguments and the --instance it names; a line that
    does not read as a call stops the run (exit 2, naming the line)."""
    one_word = _ONE_WORD.fullmatch
    for line_number, text in each_ops.read_lines(stream, source, stopped):
        try:
            instance = None
            if each_format == "json":
                args, kwargs = each_ops.json_arguments(text)
            elif text.isdigit() and text.isascii() and _DECIMAL_WORD(text):  # an id
                args, kwargs = (int(text),), {}
            else:
                word = one_word(text)
                if word is None:
                    args, kwargs, instance = _words_call(text)
                elif word[1] is not None:  # an id between blanks
                    args, kwargs = (int(word[1]),), {}
                else:
                    args, kwargs = (parse_argument(word[2]),), {}
            if not args and not kwargs:
                raise UsageError(
                    "no arguments: a call without any is the whole function "
                    "(delete-memoized FUNCTION, without --each)"
                )
        except UsageError as exc:
            raise each_ops.refusal(source, line_number, exc.message, stopped) from None
        yield line_number, args, kwargs, instance


def numbered_calls(
    base: MemoizedCall, stream: IO[bytes], each_format: str, source: str, stopped: str
) -> Iterator[tuple[int, MemoizedCall]]:
    """Each line's call of ``base``'s function, with the line's number; a line that does
    not read as a call stops the run (exit 2, naming the line)."""
    lines = numbered_arguments(stream, each_format, source, stopped)
    for line_number, args, kwargs, instance in lines:
        yield line_number, base.called_with(args, kwargs, instance)


def _source(stream: IO[bytes]) -> str:
    name = getattr(stream, "name", "-")
    return "standard input" if name in ("-", "<stdin>") else str(name)


def run_delete(session: Session, base: MemoizedCall, stream: IO[bytes], each_format: str) -> None:
    """delete-memoized --each: every line read and its key formed, then the keys
    deleted in batches; the report counts deleted and not cached."""
    source = _source(stream)
    backend = session.backend()
    invalidator = MemoizedInvalidator(backend, session.settings, session.app)
    calls = numbered_arguments(stream, each_format, source, "nothing was deleted")
    with session.output.progress("deleting") as on_progress:
        done = each_ops.delete_each(invalidator, base, calls, source, on_progress)
    found = base.function
    document = {
        **done.document(),
        "function": found.dotted,
        "source": source,
        "key_prefix": backend.key_prefix,
    }
    session.audit.record_done(document)
    output = session.output
    # As a single call's: a name not confirmed by importing it, with no version under
    # it, is how a misspelling looks (exit 1).
    unconfirmed = done.calls > 0 and done.no_version and not found.imported
    note = (
        f"nothing matched {found.dotted}: no version key, so nothing is cached under that "
        "name (misspelled, or nothing cached yet)"
    )
    if output.as_json:
        output.document({**document, "ok": not unconfirmed})
    elif done.calls == 0:
        output.warn(f"no call in {source}: nothing was deleted")
    elif done.removed is None:
        output.result(
            f"deleted up to {counted(done.requested, 'key')} for {counted(done.calls, 'call')} "
            f"({backend.kind} does not say which existed)"
        )
    else:
        output.result(
            f"deleted {counted(done.removed, 'cached result')}; "
            f"{number(done.not_cached or 0)} of {counted(done.calls, 'call')} not cached"
        )
    if unconfirmed:
        output.notice(note)
        click.get_current_context().exit(EXIT_NOT_FOUND)


def run_show(session: Session, base: MemoizedCall, stream: IO[bytes], each_format: str) -> None:
    """show-memoized --each: a line per call, cached or not, as the calls are read; exit
    1 when any is not cached (as get of several keys)."""
    source = _source(stream)
    invalidator = MemoizedInvalidator(session.backend(), session.settings, session.app)
    calls = numbered_arguments(stream, each_format, source, "the lines before it were reported")
    output = session.output
    total = cached = 0
    for shown in each_ops.show_each(invalidator, base, calls, source):
        total += 1
        cached += shown.cached
        if output.as_json:
            output.record(shown.document())
        elif shown.cached:
            output.result(f"line {shown.line}: cached {shown.key}")
        else:
            why = shown.key if shown.key is not None else "(no version stored)"
            output.result(f"line {shown.line}: not cached {why}")
    summary = {
        "ok": cached == total,
        "summary": True,
        "function": base.function.dotted,
        "calls": total,
        "cached": cached,
        "not_cached": total - cached,
    }
    if output.as_json:
        output.record(summary, last=True)
    elif total == 0:
        output.warn(f"no call in {source}")
    else:
        output.notice(f"{number(cached)} of {counted(total, 'call')} cached")
    if cached != total:
        click.get_current_context().exit(EXIT_NOT_FOUND)
