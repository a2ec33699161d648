"""One call of a memoized function written on a line, as its arguments are written on
the command line (``42 'EUR' --kw region=eu``): the line format of ``--each FILE``.

The words are split as bash would (``cachectl.runtime.command_line``) and each read by the
same parser as a single call's ARGs and ``--kw`` values (``cachectl.app.functions``), so a
line means what the same words typed after the function's name mean.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from cachectl.app.functions import parse_argument, parse_keyword, place_repr_arguments
from cachectl.errors import UsageError
from cachectl.runtime.command_line import LineSyntaxError, split_line

#: The options a line may hold, each followed by its value (``--kw=NAME=VALUE`` too).
_VALUED = ("--kw", "--repr")


def parse_call_line(line: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` of the call a line writes. ``--repr TEXT`` stands among the
    args where it is written; ``--`` ends the options (``-- -5``). Anything else that
    looks like an option is refused: a line names a call, not how to find the function."""
    try:
        words = split_line(line)
    except LineSyntaxError as exc:
        raise UsageError(f"cannot split it as a shell would ({exc})") from None
    args: list[Any] = []
    reprs: list[tuple[int, str]] = []
    kwargs: dict[str, Any] = {}
    index, options_done = 0, False
    while index < len(words):
        word = words[index]
        index += 1
        if options_done or not word.startswith("-") or word == "-" or _is_number(word):
            args.append(parse_argument(word))
            continue
        if word == "--":
            options_done = True
            continue
        name, sep, value = word.partition("=")
        if name not in _VALUED:
            raise UsageError(f"{word!r} is not an option of a call line (--kw, --repr, --)")
        if not sep:
            if index >= len(words):
                raise UsageError(f"{name} needs a value")
            value, index = words[index], index + 1
        if name == "--kw":
            keyword, parsed = parse_keyword(value)
            if keyword in kwargs:
                raise UsageError(f"--kw {keyword} is given twice")
            kwargs[keyword] = parsed
        else:
            reprs.append((len(args), value))
    return place_repr_arguments(args, reprs), kwargs


def _is_number(word: str) -> bool:
    """``-5`` and ``-1.5`` read as numbers, as Click reads them among ARGs."""
    try:
        float(word)
    except ValueError:
        return False
    return True


def call_lines(
    lines: Iterable[str], source: str
) -> Iterator[tuple[int, tuple[Any, ...], dict[str, Any]]]:
    """The calls of an ``--each`` file, streamed: ``(line number, args, kwargs)`` for each
    line that is not blank or a comment; a line that does not parse is a usage error
    naming the file and the line."""
    for number, line in enumerate(lines, start=1):
        text = line.rstrip("\n").removesuffix("\r")
        try:
            if not split_line(text):
                continue
            args, kwargs = parse_call_line(text)
        except (UsageError, LineSyntaxError) as exc:
            message = exc.message if isinstance(exc, UsageError) else str(exc)
            raise UsageError(f"{source}, line {number}: {message}", done={"line": number}) from None
        yield number, args, kwargs
