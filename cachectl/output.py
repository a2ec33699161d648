"""How results reach the operator: rich on a terminal, plain text in a pipe, JSON for scripts.

Results go to standard output, everything else (errors, warnings, progress) to
standard error, so ``cachectl get key > file`` and ``--json`` stay clean.
"""

from __future__ import annotations

import base64
import datetime
import io
import json
import operator
import pprint
import re
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from decimal import Decimal
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from cachectl.codec import DecodeLimits


#: C0 and C1 control characters but newline and tab: on a terminal they can move the
#: cursor, clear the screen or retitle the window, so a cached value shows them escaped.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text: str) -> str:
    """``text`` with control characters shown as escapes (``\\x1b``), for a terminal."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


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
        self._consoles: dict[bool, Console] = {}

    def _console(self, stderr: bool) -> Console:
        if stderr not in self._consoles:
            from rich.console import Console

            self._consoles[stderr] = Console(stderr=stderr, highlight=False, soft_wrap=True)
        return self._consoles[stderr]

    def _line(self, text: str, stderr: bool) -> None:
        """One line, through rich on a terminal, as it is elsewhere."""
        stream = sys.stderr if stderr else sys.stdout
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
        with _stack_room(2 * 1000 + 10):  # values nest up to twice max_depth (<= 1000)
            text = json.dumps(payload, ensure_ascii=False, indent=2, default=str)
        sys.stdout.write(text)  # not text + "\n": it may be megabytes
        sys.stdout.write("\n")
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
            cells = [str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)]
            sys.stdout.write("  ".join([*cells, str(row[-1])]) + "\n")

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


# --- cached values, shown within limits: hostile ones (shared references, cycles, any
# nesting) are walked first, within ``codec.DecodeLimits``, into what pprint or json show.


class Marker:
    """Shown as it is: for what a limit cut, a cycle, a repeat (``kind`` "truncated",
    "cycle", "shared"; JSON has ``{"$" + kind: text}``), or text made beforehand ("text")."""

    def __init__(self, kind: str, text: str) -> None:
        self.kind, self.text = kind, text

    def __repr__(self) -> str:
        return self.text


class ClassRef:
    """A global a pickle names, by the import path it holds (never imported);
    ``target`` is the class when a restricted load may build it."""

    def __init__(self, module: str, name: str, target: Any = None) -> None:
        self.module, self.name, self.target = module, name, target
        self.path = f"{module}.{name}" if module else name

    def __repr__(self) -> str:
        return f"<class {self.path!r}>"


class OpaqueObject:
    """Stand-in for an object of a class cachectl refused to import (or a call it
    refused to make, with the reason): how the pickle wanted to build it."""

    def __init__(self, module: str, name: str, args: tuple[Any, ...] = (), **more: Any) -> None:
        self.module, self.name, self.args, self.refused = module, name, args, more.get("refused")
        self.kwargs: dict[str, Any] = more.get("kwargs") or {}
        self.function, self.state = more.get("function"), more.get("state")
        path = f"{module}.{name}" if module else name
        self.class_path = "(call)" if self.function is not None else path
        self.items: list[Any] = []  # what APPENDS, ADDITEMS add (a list or set subclass)
        self.entries: list[tuple[Any, Any]] = []  # SETITEMS: pairs, unhashable keys too
        self.add = self.append = self.items.append  # so pickle's opcodes for those work
        self.extend = self.items.extend

    def __setitem__(self, key: Any, value: Any) -> None:
        self.entries.append((key, value))

    def captured(self) -> dict[str, Any]:
        parts = {"function": self.function, "args": list(self.args), "kwargs": self.kwargs}
        parts |= {"state": self.state, "items": self.items, "entries": self.entries}
        return {k: v for k, v in parts.items() if v is not None and (k == "state" or v)}


_NOTHING = object()  # what a walk returns once a limit is reached
_SHOWN_AGAIN = 1000  # a bigger shared container (or text) is shown once, then <same as …>
_SEQS = (list, tuple, set, frozenset)
_REPRS = {c.__repr__ for c in (*_SEQS, dict, OrderedDict)}  # what pprint lays out itself
_LEAVES = frozenset({int, float, bool, complex, str, bytes, bytearray, type(None), Marker})
_TEXT = frozenset({str, bytes, bytearray})
_KEYS = _LEAVES | {ClassRef, datetime.datetime, datetime.date, datetime.timedelta, Decimal}
_ESCAPED: dict[int, None] = dict.fromkeys([*range(0x20), *b"\"'\\\x7f"])


def _size(value: Any) -> int:
    """About how many characters a leaf takes (escapes make text up to 6 times longer)."""
    if type(value) is not str:
        return 4 * len(value) + 3 if type(value) in _TEXT else 8
    plain = len(value.translate(_ESCAPED)) if len(value) > 256 else len(value) * value.isprintable()
    return plain + 6 * (len(value) - plain) + 2


def _safe(show: Callable[[Any], str], value: Any) -> str:  # it fails: incomplete UUIDs...
    try:
        return show(value)
    except Exception as exc:
        return f"<{type(value).__name__} that cannot be shown: {type(exc).__name__}>"


class _Walk:
    """One bounded pass over a value, making what is shown (JSON, or views for pprint),
    counting elements (shared ones each time), characters, time: a container in itself is
    ``<cycle>``, a big one met again ``<same as PATH>``; past a limit, the rest is marked."""

    def __init__(self, limits: DecodeLimits, for_json: bool) -> None:
        self.limits, self.json, self.count, self.size = limits, for_json, 0, 0
        self.started, self.stop = time.monotonic(), ""  # text leaves 40% of the time to pprint
        self.deadline = self.started + limits.max_seconds * (1 if for_json else 0.6)
        self.active: set[int] = set()  # containers being walked: met again, a cycle
        self.first: dict[int, list[Any]] = {}  # id: [parent id, step, elements shown]
        self.marks: dict[str, Marker] = {}  # made once, however often shown

    def take(self, size: int, weight: int = 1) -> bool:
        if not self.stop:
            self.count, self.size = self.count + weight, self.size + size
            if self.count > self.limits.max_elements:
                self.stop = f"{self.limits.max_elements:,} elements"
            elif self.size > self.limits.max_output:
                self.stop = f"{self.limits.max_output:,} characters"
            elif not self.count & 511 and time.monotonic() > self.deadline:
                self.stop = f"{self.limits.max_seconds:g} s"
        return not self.stop

    def walk(self, value: Any, depth: int, parent: int | None, step: tuple[str, Any]) -> Any:
        cls, oid = type(value), id(value)
        mapping = isinstance(value, dict)
        if cls is not OpaqueObject and (
            cls in _LEAVES
            or not value
            or not (mapping or isinstance(value, _SEQS))
            or (not self.json and getattr(cls, "__repr__", None) not in _REPRS)
        ):
            return self.leaf(value, depth, parent, step)
        first = self.first.get(oid)
        if (
            oid in self.active
            or (first and first[2] > _SHOWN_AGAIN)
            or depth >= self.limits.max_depth
        ):
            return self.leaf(self.repeat(oid, depth), depth, None, step)
        if not self.take(2 * depth + 12 if self.json else 2):
            return _NOTHING
        first = first or self.first.setdefault(oid, [parent, step, -1])
        self.active.add(oid)
        start = self.count
        try:
            if cls is OpaqueObject:
                shown = self.opaque(value, depth + 1, oid)
            elif mapping:
                shown = self.mapping(value, list(value.items()), depth + 1, oid, "")
            else:
                shown = self.seq(value, list(value), depth + 1, oid, "")
        finally:
            self.active.discard(oid)
        first[2] = max(first[2], self.count - start)
        return shown

    def cut(self, missing: int) -> Marker:
        text = f"<… truncated: {self.stop}; {missing:,} more item{'s' * (missing != 1)}>"
        return Marker("truncated", text)

    def seq(self, value: Any, values: list[Any], depth: int, oid: int, prefix: str) -> Any:
        shown = []
        for index, item in enumerate(values):
            if (node := self.walk(item, depth, oid, (prefix, index))) is _NOTHING:
                break
            shown.append(node)
        if self.json and not isinstance(value, list | tuple):  # a set: in a stable order
            shown.sort(key=repr)
        if len(shown) < len(values):
            cut = self.cut(len(values) - len(shown))
            shown.append(self.tag(cut) if self.json else cut)
        if not self.json:  # unchanged (all shown as they are): itself, in its own order
            if len(shown) == len(values) and all(map(operator.is_, shown, values)):
                return value
            return type(value)(shown) if type(value) in _SEQS[1:] else shown
        if isinstance(value, list | tuple):
            return shown if isinstance(value, list) else {"$tuple": shown}
        return {"$" + type(value).__name__: shown}

    def mapping(self, value: Any, pairs: list[Any], depth: int, oid: int, prefix: str) -> Any:
        marks = [key.text for key, _ in pairs if type(key) is Marker]  # the decoder's, if cut
        pairs, shown = [pair for pair in pairs if type(pair[0]) is not Marker], list[Any]()
        for key, item in pairs:
            shown_key = self.walk(key, depth, oid, (prefix + ".keys()", len(shown)))
            node = _NOTHING if shown_key is _NOTHING else self.walk(item, depth, oid, (prefix, key))
            if node is _NOTHING:
                break
            shown.append((shown_key, node))
        marks += [self.cut(len(pairs) - len(shown)).text] if len(shown) < len(pairs) else []
        if self.json and all(isinstance(key, str) for key, _ in shown):
            return dict(shown) | ({"$truncated": " ".join(marks)} if marks else {})
        if self.json:
            return {"$dict": [list(pair) for pair in shown] + [{"$truncated": m} for m in marks]}
        same = map(lambda p, q: p[0] is q[0] and p[1] is q[1] and type(q[0]) in _KEYS, shown, pairs)
        if not marks and len(shown) == len(value) and all(same):
            return value  # unchanged: itself
        result: dict[Any, Any] = OrderedDict() if type(value) is OrderedDict else {}
        for key, node in shown:  # pprint writes a dict's keys by their repr: never a blank
            as_is = type(key) in _KEYS or type(result) is OrderedDict  # (it lays those out)
            result[key if as_is else Marker("text", repr(key))] = node
        for text in marks:  # pprint writes "key: value": the marker again
            left, _, right = text.partition(": ")
            result[Marker("truncated", left)] = Marker("truncated", right)
        return result

    def opaque(self, value: OpaqueObject, depth: int, oid: int) -> Any:
        parts: dict[str, Any] = {}
        captured = value.captured()
        for label, part in captured.items():
            if label in ("args", "items"):
                node = self.seq(part, part, depth, oid, "." + label)
            elif label in ("kwargs", "entries"):
                pairs = list(part.items()) if label == "kwargs" else part
                node = self.mapping({}, pairs, depth, oid, "." + label)
            elif (node := self.walk(part, depth, oid, ("." + label, None))) is _NOTHING:
                break
            parts[label] = node
        cut = {"$truncated": f"<… truncated: {self.stop}>"} if len(parts) < len(captured) else {}
        if self.json:
            refused = {"refused": value.refused} if value.refused else {}
            return {"$object": value.class_path, **parts, **refused, **cut}
        fields = [f"{k}={v!r}" for k, v in parts.items()] + list(cut.values())
        note = f" (refused: {value.refused})" if value.refused else ""
        shown = " " + ", ".join(fields) if fields else ""
        return Marker("text", f"<not loaded: {visible(value.class_path)}{shown}{note}>")

    def repeat(self, oid: int, depth: int) -> Marker:
        """The marker for a container (or text) not shown here: a cycle, a repeat, too deep."""
        if oid in self.active:
            return self.marks.setdefault("<cycle>", Marker("cycle", "<cycle>"))
        steps, record = [], self.first.get(oid)
        while record is not None and record[0] is not None:
            prefix, key = record[1]
            size = len(key) if type(key) is str else abs(key) if type(key) is int else 1 << 64
            short = size < (40 if type(key) is str else 1 << 64)  # never a huge int's digits
            steps.append(f"{prefix}[{key!r}]" if short else prefix + "[…]" * (key is not None))
            record = self.first.get(record[0])
        if oid not in self.first:
            text, kind = f"<… truncated: deeper than {depth} levels>", "truncated"
        else:
            text, kind = f"<same as value{''.join(reversed(steps))}>", "shared"
        return self.marks.setdefault(text, Marker(kind, text))

    def leaf(self, value: Any, depth: int, parent: int | None, step: tuple[str, Any]) -> Any:
        textual = type(value) in _TEXT
        if textual and len(value) > _SHOWN_AGAIN and id(value) in self.first:
            return self.leaf(self.repeat(id(value), depth), depth, None, step)
        if self.json:
            shown = self.tag(value)
        else:  # pprint calls repr: made here, where it cannot fail (an incomplete UUID)
            shown = value if type(value) in _KEYS else Marker("text", _safe(repr, value))
        text = shown.text if type(shown) is Marker else shown  # the size of what is shown
        size = _size(next(iter(text.values()), "") if type(text) is dict else text)
        weight = 3 if self.json and type(shown) is dict else 1  # json is slow with those
        if not self.take(size + (2 * depth + 12 if self.json else 2), weight):
            return _NOTHING
        if textual and len(value) > _SHOWN_AGAIN:
            self.first[id(value)] = [parent, step, len(value)]
        if textual and not self.json and (len(value) > 50_000 or depth > 40):
            return Marker("text", repr(value))  # pprint would split it word by word, slowly
        return shown

    def tag(self, value: Any) -> Any:
        """A leaf as JSON: itself, or tagged with the type JSON lacks."""
        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, int):
            return value if value.bit_length() <= 14_000 else {"$int": hex(value)}  # not quadratic
        if isinstance(value, float):
            return value if value == value and abs(value) != float("inf") else repr(value)
        if isinstance(value, bytes | bytearray):
            with suppress(UnicodeDecodeError):
                return {"$bytes": bytes(value).decode("utf-8")}
            return {"$bytes_base64": base64.b64encode(value).decode("ascii")}
        if type(value) is Marker:
            return {"$" + value.kind: value.text}
        if type(value) is ClassRef:
            return {"$class": value.path}
        if isinstance(value, datetime.datetime | datetime.date | datetime.time):
            return {"$" + type(value).__name__: value.isoformat()}
        if isinstance(value, list | dict):  # empty ones
            return value
        if isinstance(value, tuple | set | frozenset):  # empty ones
            return {"$tuple" if isinstance(value, tuple) else "$" + type(value).__name__: []}
        return {"$" + type(value).__name__: _safe(str, value)}


@contextmanager
def _stack_room(levels: int) -> Iterator[None]:
    """Room for ``levels`` of nesting: pprint and json recurse some frames a level."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(old + 8 * levels)  # the stack in use is below the old limit
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


class _Full(Exception): ...  # the page is full, or the time is up


class _Page(io.StringIO):  # where pprint writes, up to max_output characters and in time
    def __init__(self, limits: DecodeLimits, deadline: float) -> None:
        super().__init__()
        self.limits, self.deadline, self.writes = limits, deadline, 0

    def write(self, text: str) -> int:
        self.writes += 1
        if self.tell() + len(text) > self.limits.max_output:
            raise _Full(f"{self.limits.max_output:,} characters")
        if not self.writes & 1023 and time.monotonic() > self.deadline:
            raise _Full(f"{self.limits.max_seconds:g} s")
        return super().write(text)


class _Printer(pprint.PrettyPrinter):
    """pprint in linear time: pprint makes each container's repr once per level above it
    (minutes, for a wide value 200 deep). Here once: kept if it fits a line, else a blank
    as long (pprint then only compares its length, and lays the container out itself)."""

    def __init__(self, width: int, stream: _Page) -> None:
        super().__init__(width=width, stream=stream, sort_dicts=False)
        self.known: dict[int, tuple[Any, str, bool, bool]] = {}
        self.width, self.blank = width, ""  # made when first needed: the width may be huge

    def format(self, obj: Any, context: Any, maxlevels: Any, level: int) -> tuple[str, bool, bool]:
        if type(obj) not in (list, tuple, dict, OrderedDict):
            return super().format(obj, context, maxlevels, level)
        if (known := self.known.get(id(obj))) is None:  # the object is kept: ids are reused
            rep, readable, recursive = super().format(obj, context, maxlevels, level)
            if len(rep) > self.width:
                rep = self.blank = self.blank or " " * (self.width + 1)
            known = self.known[id(obj)] = (obj, rep, readable, recursive)
        return known[1:]

    def _repr(self, obj: Any, context: Any, level: int) -> str:  # pprint's copies context
        return self.format(obj, context, 0, level)[0]


def format_value(value: Any, limits: DecodeLimits | None = None, width: int = 80) -> str:
    """``value`` as ``pprint.pformat(value, width=width, sort_dicts=False)`` shows it,
    within ``limits``: with placeholders and markers where it cannot."""
    from cachectl.codec import current_limits

    walk = _Walk(limits := limits or current_limits(), for_json=False)
    page = _Page(limits, walk.started + limits.max_seconds)
    with _stack_room(limits.max_depth):
        if (view := walk.walk(value, 0, None, ("", None))) is _NOTHING:
            return f"<… truncated: {walk.stop}>"
        try:
            _Printer(width, page).pprint(view)
        except _Full as full:
            io.StringIO.write(page, f" <… truncated: {full}>\n")
    return page.getvalue()[:-1]


def jsonable(value: Any, limits: DecodeLimits) -> Any:
    """``value`` JSON-ready within ``limits`` (``codec.to_jsonable``)."""
    walk = _Walk(limits, for_json=True)
    with _stack_room(limits.max_depth):
        shown = walk.walk(value, 0, None, ("", None))
    return {"$truncated": f"<… truncated: {walk.stop}>"} if shown is _NOTHING else shown
