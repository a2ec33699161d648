"""A batch: cachectl commands read one a line, and the record of how each one ended.

A deploy script that runs twenty invalidations pays twenty start-ups (and, with --app,
twenty app start-ups); a batch pays one. The lines are read here, without Click: what
a line means is the command line layer's business (``cachectl.cli.batch_runner``).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from cachectl.errors import UsageError


@dataclass(frozen=True)
class BatchLine:
    """One command of a batch: its arguments, as a shell would split them."""

    #: The line in the file (or the action's position, for a group's actions).
    number: int
    argv: tuple[str, ...]
    #: The invalidation group the line comes from (``invalidate``), else None.
    group: str | None = None

    @property
    def shown(self) -> str:
        """The command as the operator would type it (without ``cachectl``)."""
        return shlex.join(self.argv)

    @property
    def label(self) -> str:
        """How messages name the line: ``line 3``, or ``action 3 (group prices)`` for the
        third action an ``invalidate`` runs."""
        if self.group is None:
            return f"line {self.number}"
        return f"action {self.number} (group {self.group})"


def parse_batch(text: str, source: str) -> list[BatchLine]:
    """The commands of a batch file: one a line, split into words as bash would
    (``cachectl.runtime.command_line``: a ``#`` starts a comment only at the start of a word);
    blank lines and comments are skipped. A line that cannot be split (an unclosed
    quote, an unquoted ``;``) stops the whole batch before anything runs."""
    from cachectl.runtime.command_line import LineSyntaxError, split_line

    lines = []
    # Lines end at a line feed only, as for a shell (str.splitlines would also cut at a
    # form feed or U+2028 in a quoted word); a CRLF file's carriage returns go.
    for number, line in enumerate(text.split("\n"), start=1):
        try:
            argv = split_line(line.removesuffix("\r"))
        except LineSyntaxError as exc:
            raise UsageError(
                f"{source}, line {number}: cannot split it as a shell would ({exc}); "
                "nothing was run",
                done={"line": number},
            ) from None
        if argv:
            lines.append(BatchLine(number, tuple(argv)))
    return lines


@dataclass
class LineResult:
    """How one line ended; ``exit_code`` None when it was not run."""

    line: BatchLine
    exit_code: int | None = None
    #: The JSON document the command printed (with --json), as it alone prints it.
    document: Any = None

    def as_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"line": self.line.number, "command": self.line.shown}
        if self.line.group is not None:
            entry["group"] = self.line.group
        entry["run"] = self.exit_code is not None
        entry["exit_code"] = self.exit_code
        entry["document"] = self.document
        return entry


@dataclass
class BatchReport:
    """Every line of a batch, run or not, and the exit status the batch ends with:
    the first failing line's, so ``$?`` says what went wrong first."""

    dry_run: bool
    keep_going: bool
    results: list[LineResult] = field(default_factory=list)

    @property
    def failures(self) -> list[LineResult]:
        return [result for result in self.results if result.exit_code]

    @property
    def exit_code(self) -> int:
        failures = self.failures
        return (failures[0].exit_code or 0) if failures else 0

    @property
    def not_run(self) -> list[LineResult]:
        return [result for result in self.results if result.exit_code is None]

    def document(self) -> dict[str, Any]:
        failures = self.failures
        return {
            "ok": not failures and not self.not_run,
            "exit_code": self.exit_code,
            "dry_run": self.dry_run,
            "keep_going": self.keep_going,
            "failed_line": failures[0].line.number if failures else None,
            "lines": [result.as_dict() for result in self.results],
        }
