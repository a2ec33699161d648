"""How results reach the operator: rich on a terminal, plain text in a pipe, JSON for scripts.

Results go to standard output, everything else (errors, warnings, progress) to
standard error, so ``cachectl get key > file`` and ``--json`` stay clean.
"""

from __future__ import annotations

import json
import pprint
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.pretty import Pretty
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table


class Output:
    """One place that knows the output mode (``--json``, ``--quiet``, terminal or not)."""

    def __init__(self, as_json: bool = False, quiet: bool = False) -> None:
        self.as_json = as_json
        self.quiet = quiet
        self.stdout = Console(highlight=False, soft_wrap=True)
        self.stderr = Console(stderr=True, highlight=False, soft_wrap=True)

    @property
    def interactive(self) -> bool:
        """A person is at a terminal (prompts and progress bars make sense)."""
        return sys.stdin.isatty() and self.stderr.is_terminal

    def document(self, payload: dict[str, Any]) -> None:
        """The one JSON document a command prints with ``--json``."""
        sys.stdout.write(json.dumps(payload, ensure_ascii=False, indent=2, default=str) + "\n")
        sys.stdout.flush()

    def result(self, text: str) -> None:
        """A human-readable result line (suppressed by --quiet and --json)."""
        if not (self.quiet or self.as_json):
            self.stdout.print(text, markup=False)

    def value(self, value: Any, label: str | None = None) -> None:
        """A cached value: strings as they are, anything else pretty-printed;
        ``label`` (the key) goes first when several values are shown."""
        if not isinstance(value, str) and self.stdout.is_terminal:
            if label is not None:
                self.stdout.print(f"{label}:", markup=False, end=" ")
            self.stdout.print(Pretty(value))
            return
        text = value if isinstance(value, str) else pprint.pformat(value, sort_dicts=False)
        if label is not None:
            text = f"{label}:" + ("\n" if "\n" in text else " ") + text
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def raw(self, data: bytes) -> None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()

    def warn(self, text: str) -> None:
        if not self.quiet:
            self.stderr.print(f"warning: {text}", markup=False)

    def notice(self, text: str) -> None:
        """Information for the person at the terminal, never part of the result."""
        if not self.quiet:
            self.stderr.print(text, markup=False)

    def error(self, text: str) -> None:
        self.stderr.print(f"error: {text}", markup=False)

    def table(self, headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
        if self.quiet or self.as_json:
            return
        if self.stdout.is_terminal:
            table = Table(*headers)
            for row in rows:
                table.add_row(*row)
            self.stdout.print(table)
            return
        widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers) - 1)]
        for row in rows:
            cells = [str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)]
            sys.stdout.write("  ".join([*cells, str(row[-1])]) + "\n")

    @contextmanager
    def progress(self, description: str) -> Iterator[Callable[[int], None]]:
        """A live count on standard error while a long operation runs; only on a
        terminal, so logs of cron jobs stay free of control characters."""
        if self.quiet or not self.stderr.is_terminal:
            yield lambda count: None
            return
        columns = (
            SpinnerColumn(),
            TextColumn("{task.description}: {task.completed:,} keys"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.stderr, transient=True) as bar:
            task = bar.add_task(description, total=None)
            yield lambda count: bar.update(task, completed=count)
