"""The one way cachectl splits a line of text into the words of a command, as bash would.

Batch files, invalidation groups in the config file and the audit log all hold cachectl
commands written as an operator would type them in a shell, so a line means what bash
would make of it: quotes and backslashes as bash reads them, and ``#`` starting a
comment only at the start of a word (``delete user#42`` deletes ``user#42``;
``delete user # the old one`` deletes ``user``). ``shlex.split(comments=True)`` is not
that: it takes every ``#`` for a comment, and reads backslashes in double quotes
differently.

No shell runs, so nothing is expanded: ``*``, ``?``, ``[``, ``~`` and braces stay as they
are (as a shell leaves a glob that matches no file). What a shell would read as
something other than a word is refused rather than taken literally, since the line
would not mean what it says: an unquoted operator (``; & | < > ( )``), a ``$`` or a
backtick outside single quotes (expansions), an unquoted line break, and a backslash
ending the line (a shell would join the next line to it).

Words are joined back with ``shlex.join``, whose quoting bash and this parser read alike.
"""

from __future__ import annotations

import re

#: What separates words (bash's blanks; a form feed is part of a word, as in bash).
_BLANKS = " \t"
#: Unquoted, these make a shell end the command or redirect it.
_OPERATORS = frozenset(";&|<>()")
#: In double quotes a backslash escapes only these (and a line break); before any
#: other character it stays, as in bash.
_ESCAPED_IN_DOUBLE_QUOTES = frozenset('$`"\\')


#: A line with none of the characters a shell reads specially (quotes, backslashes, ``#``,
#: expansions, operators, line breaks) is only words between blanks: ``delete-memoized
#: --each`` splits 100,000 such lines, and the character walk below costs ten times more.
_PLAIN_LINE = re.compile(r"[^'\"\\#$`;&|<>()\n]*")
_PLAIN_WORD = re.compile(r"[^ \t]+")


class LineSyntaxError(ValueError):
    """A line that cannot be split as bash would, or that bash would not read as words."""


def _refuse_expansion(char: str) -> None:
    if char == "$":
        raise LineSyntaxError(
            "a '$' outside single quotes, which a shell would expand: write \\$ or quote it "
            "with single quotes"
        )
    raise LineSyntaxError(
        "a backtick outside single quotes, which a shell would run as a command: write \\` "
        "or quote it with single quotes"
    )


def split_line(line: str) -> list[str]:
    """The words of ``line`` as bash would split them (see the module's rules); no
    words for a blank line or a comment. LineSyntaxError says why a line is refused."""
    if _PLAIN_LINE.fullmatch(line):
        return _PLAIN_WORD.findall(line)  # what _walk gives for such a line, sooner
    return _walk(line)


def _walk(line: str) -> list[str]:
    """``split_line``, a character at a time."""
    words: list[str] = []
    word: list[str] = []
    in_word = False  # a word has begun, even one that is so far only quotes ('')
    at, end = 0, len(line)
    while at < end:
        char = line[at]
        if char in _BLANKS:
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
            at += 1
            continue
        if char == "#" and not in_word:
            break  # a comment, to the end of the line
        if char == "\n":
            raise LineSyntaxError("a line break outside quotes")
        if char in _OPERATORS:
            raise LineSyntaxError(
                f"an unquoted {char!r}, which a shell would read as an operator: quote it"
            )
        if char in "$`":
            _refuse_expansion(char)
        in_word = True
        if char == "\\":
            if at + 1 == end:
                raise LineSyntaxError(
                    "the line ends with a backslash, which a shell would join to the next "
                    "line: lines are not continued"
                )
            word.append(line[at + 1])
            at += 2
        elif char == "'":
            close = line.find("'", at + 1)
            if close < 0:
                raise LineSyntaxError("no closing single quote")
            word.append(line[at + 1 : close])
            at = close + 1
        elif char == '"':
            at = _double_quoted(line, at + 1, word)
        else:
            word.append(char)
            at += 1
    if in_word:
        words.append("".join(word))
    return words


def _double_quoted(line: str, at: int, word: list[str]) -> int:
    """Read a double-quoted part from ``at`` (after the opening quote) into ``word``;
    where the line goes on after the closing quote."""
    end = len(line)
    while at < end:
        char = line[at]
        if char == '"':
            return at + 1
        if char == "\\" and at + 1 < end and line[at + 1] in _ESCAPED_IN_DOUBLE_QUOTES:
            word.append(line[at + 1])
            at += 2
            continue
        if char == "\\" and at + 1 < end and line[at + 1] == "\n":
            at += 2  # a line break escaped in double quotes disappears, as in bash
            continue
        if char in "$`":
            _refuse_expansion(char)
        word.append(char)
        at += 1
    raise LineSyntaxError("no closing double quote")
