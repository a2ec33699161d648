"""How results reach the operator: rich on a terminal, plain text in a pipe, JSON for scripts.

Results go to standard output, everything else (errors, warnings, progress) to
standard error, so ``cachectl get key > file`` and ``--json`` stay clean.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any

from cachectl.codec.terminal_text import visible

if TYPE_CHECKING:
    from rich.console import Console

    from cachectl.codec.limits import DecodeLimits


def _on_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Output:
    """One place that knows the output mode (``--json``, ``--quiet``, terminal or not).

    rich draws tables, pretty values and progress on a terminal; it is imported only
    then, so a cron job or a pipe gets plain text without paying for it at start-up.
    """

    def __init__(self, as_json: bool = False, quiet: bool = False) -> None:
        self.as_json = as_json
        self.quiet = quiet
        #: What a ``--backup`` run kept (``BackupWriter.summary``): every JSON document
        #: the run prints says it under ``backup``, failures included.
        self.backup_summary: Callable[[], dict[str, Any]] | None = None
        self._consoles: dict[bool, Console] = {}

    def _console(self, stderr: bool) -> Console:
        if stderr not in self._consoles:
            from rich.console import Console

            self._consoles[stderr] = Console(stderr=stderr, highlight=False, soft_wrap=True)
        return self._consoles[stderr]

    def _line(self, text: str, stderr: bool) -> None:
        """One line, through rich on a terminal, as it is elsewhere. What goes to standard
        error is a message (an error, a warning, a notice): it passes the secrets filter."""
        stream = sys.stderr if stderr else sys.stdout
        if stderr:
            from cachectl.runtime.secrets import filtered

            text = filtered(text)
        if _on_terminal(stream):
            self._console(stderr).print(visible(text), markup=False)
        else:
            stream.write(text + "\n")
            stream.flush()

    @property
    def interactive(self) -> bool:
        """A person is at a terminal (prompts and progress bars make sense)."""
        return sys.stdin.isatty() and _on_terminal(sys.stderr)

    def document(self, payload: dict[str, Any]) -> None:
        """The one JSON document a command prints with ``--json``."""
        from cachectl.codec.rendering import stack_room

        if self.backup_summary is not None:
            payload = {**payload, "backup": self.backup_summary()}
        payload = _filtered_messages(payload)
        with stack_room(2 * 1000 + 10):  # values nest up to twice max_depth (<= 1000)
            text = json.dumps(payload, ensure_ascii=False, indent=2, default=str)
        sys.stdout.write(text)  # not text + "\n": it may be megabytes
        sys.stdout.write("\n")
        sys.stdout.flush()

    def record(self, payload: dict[str, Any], last: bool = False) -> None:
        """One record of a result streamed with ``--json`` (``show-memoized --each``): a
        JSON object on a line of its own (JSON Lines), the ``last`` one its summary."""
        sys.stdout.write(json.dumps(_filtered_messages(payload), ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def result(self, text: str) -> None:
        """A human-readable result line (suppressed by --quiet and --json)."""
        if not (self.quiet or self.as_json):
            self._line(text, stderr=False)

    def value(
        self, value: Any, label: str | None = None, limits: DecodeLimits | None = None
    ) -> None:
        """A cached value: strings as they are, anything else as pprint shows it (to the
        terminal's width there) within ``limits`` (``format_value``: the value may be
        hostile); ``label`` (the key) goes first when several values are shown."""
        from cachectl.codec.rendering import format_value

        on_terminal = _on_terminal(sys.stdout)
        width = self._console(stderr=False).width if on_terminal else 80
        text = value if isinstance(value, str) else format_value(value, limits, max(width, 20))
        if label is not None:
            text = f"{label}:" + ("\n" if "\n" in text else " ") + text
        if on_terminal and not isinstance(value, str):  # colour what is quick to scan
            highlight = len(text) <= 100_000
            self._console(stderr=False).print(visible(text), markup=False, highlight=highlight)
        else:  # a pipe or a file gets the value byte for byte
            sys.stdout.write(visible(text) if on_terminal else text)
            sys.stdout.write("\n")  # not text + "\n": the text may be megabytes
            sys.stdout.flush()

    def raw(self, data: bytes) -> None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()

    def warn(self, text: str) -> None:
        if not self.quiet:
            self._line(f"warning: {text}", stderr=True)

    def notice(self, text: str) -> None:
        """Information for the person at the terminal, never part of the result."""
        if not self.quiet:
            self._line(text, stderr=True)

    def error(self, text: str) -> None:
        self._line(f"error: {text}", stderr=True)

    def table(self, headers: tuple[str, ...], rows: Sequence[Sequence[Any]]) -> None:
        if self.quiet or self.as_json:
            return
        if _on_terminal(sys.stdout):
            from rich.table import Table

            table = Table(*headers)
            for row in rows:
                table.add_row(*row)
            self._console(stderr=False).print(table)
            return
        widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers) - 1)]
        for row in rows:
            cells = [str(cell).ljust(width) for cell, width in zip(row, widths)]
            line = "  ".join([*cells, str(row[-1])])
            # No padding after an empty last cell: a row of "" is a blank line, not spaces.
            sys.stdout.write((line if str(row[-1]) else line.rstrip(" ")) + "\n")

    @contextmanager
    def progress(self, description: str) -> Iterator[Callable[[int], None]]:
        """A live count on standard error while a long operation runs; only on a
        terminal, so logs of cron jobs stay free of control characters."""
        if self.quiet or not _on_terminal(sys.stderr):
            yield lambda count: None
            return
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        columns = (
            SpinnerColumn(),
            TextColumn("{task.description}: {task.completed:,} keys"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self._console(stderr=True), transient=True) as bar:
            task = bar.add_task(description, total=None)
            yield lambda count: bar.update(task, completed=count)


#: The fields of a document that carry a message rather than a result: they pass the
#: secrets filter as every message does (a result, such as a cached value, is shown as
#: it is). Looked for in the document and the documents it holds (a batch's lines, the
#: caches of --cache all), down to a few levels: never inside a value, nor along a list
#: of key names, which may be millions long.
_MESSAGE_FIELDS = frozenset({"error", "reason", "warning", "warnings", "message", "notes"})
_MESSAGE_DEPTH = 6


def _filtered_messages(payload: Any, depth: int = 0) -> Any:
    """``payload`` with its message fields through the secrets filter."""
    if depth > _MESSAGE_DEPTH:
        return payload
    if isinstance(payload, list):
        if not payload or not isinstance(payload[0], dict):
            return payload
        return [_filtered_messages(item, depth + 1) for item in payload]
    if not isinstance(payload, dict):
        return payload
    from cachectl.runtime.secrets import filtered

    shown = {}
    for name, item in payload.items():
        if name in _MESSAGE_FIELDS and isinstance(item, str):
            item = filtered(item)
        elif name in _MESSAGE_FIELDS and isinstance(item, list):
            item = [filtered(text) if isinstance(text, str) else text for text in item]
        elif name != "value" and isinstance(item, (dict, list)):
            item = _filtered_messages(item, depth + 1)
        shown[name] = item
    return shown


def route_library_logging(output: Output, debug: bool, app_mode: bool = False) -> None:
    """Log records reach the operator as ``warning:`` lines, never as a library's traceback
    (cachelib logs one for every file it fails to read); cachectl's own debug records
    (``logging.getLogger("cachectl")``) are shown with ``--debug``. Set up when a backend
    is first built: ``logging`` is too slow to import for ``--help``.

    In app mode the root logger is the app's: its start-up configures it (a handler
    already there would make ``logging.basicConfig`` and many apps' set-up do nothing),
    and its records, and its libraries', go where the app sends them. Only cachectl's
    own logger is routed then."""
    import logging

    class ToOutput(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                text += f": {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
            if record.levelno >= logging.WARNING:
                output.warn(text)
            else:
                output.notice(f"debug: {text}")

    own = logging.getLogger("cachectl")
    root = logging.getLogger()
    for logger in (root, own):
        for earlier in [h for h in logger.handlers if getattr(h, "for_cachectl", False)]:
            logger.removeHandler(earlier)  # an earlier invocation in this process (tests)
    handler = ToOutput()
    handler.for_cachectl = True  # type: ignore[attr-defined]
    if app_mode:
        own.addHandler(handler)
        own.propagate = False
    else:
        own.propagate = True
        root.addHandler(handler)
    own.setLevel(logging.DEBUG if debug else logging.WARNING)
