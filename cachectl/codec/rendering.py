"""Cached values shown within limits, as text (pprint's layout) or as JSON.

A hostile value (shared references, cycles, any nesting) is walked first, within
``DecodeLimits``, into what pprint or json then show: a container inside itself is
``<cycle>``, a big one met again ``<same as PATH>``, and past a limit the rest is marked.
"""

from __future__ import annotations

import base64
import datetime
import io
import operator
import pprint
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from cachectl.codec.limits import DecodeLimits, current_limits
from cachectl.codec.placeholders import ClassRef, Marker, OpaqueObject
from cachectl.codec.terminal_text import visible

_NOTHING = object()  # what a walk returns once a limit is reached
_SHOWN_AGAIN = 1000  # a bigger shared container (or text) is shown once, then <same as …>
_SEQS = (list, tuple, set, frozenset)
_REPRS = {c.__repr__ for c in (*_SEQS, dict, OrderedDict)}  # what pprint lays out itself
_LEAVES = frozenset({int, float, bool, complex, str, bytes, bytearray, type(None), Marker})
_TEXT = frozenset({str, bytes, bytearray})
_KEYS = _LEAVES | {ClassRef, datetime.datetime, datetime.date, datetime.timedelta}


def _reprs_itself(value: Any) -> bool:
    """Whether ``repr`` of ``value`` is shown as it is (a dict key, a leaf): a Decimal too,
    known by name so that ``decimal`` is imported only by a value that holds one."""
    kind = type(value)
    return kind in _KEYS or (kind.__name__ == "Decimal" and kind.__module__ == "decimal")


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
        if self.json and not isinstance(value, (list, tuple)):  # a set: in a stable order
            shown.sort(key=repr)
        if len(shown) < len(values):
            cut = self.cut(len(values) - len(shown))
            shown.append(self.tag(cut) if self.json else cut)
        if not self.json:  # unchanged (all shown as they are): itself, in its own order
            if len(shown) == len(values) and all(map(operator.is_, shown, values)):
                return value
            return type(value)(shown) if type(value) in _SEQS[1:] else shown
        if isinstance(value, (list, tuple)):
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
        same = map(lambda p, q: p[0] is q[0] and p[1] is q[1] and _reprs_itself(q[0]), shown, pairs)
        if not marks and len(shown) == len(value) and all(same):
            return value  # unchanged: itself
        result: dict[Any, Any] = OrderedDict() if type(value) is OrderedDict else {}
        for key, node in shown:  # pprint writes a dict's keys by their repr: never a blank
            as_is = _reprs_itself(key) or type(result) is OrderedDict  # (it lays those out)
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
            shown = value if _reprs_itself(value) else Marker("text", _safe(repr, value))
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
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, int):
            return value if value.bit_length() <= 14_000 else {"$int": hex(value)}  # not quadratic
        if isinstance(value, float):
            return value if value == value and abs(value) != float("inf") else repr(value)
        if isinstance(value, (bytes, bytearray)):
            with suppress(UnicodeDecodeError):
                return {"$bytes": bytes(value).decode("utf-8")}
            return {"$bytes_base64": base64.b64encode(value).decode("ascii")}
        if type(value) is Marker:
            return {"$" + value.kind: value.text}
        if type(value) is ClassRef:
            return {"$class": value.path}
        if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
            return {"$" + type(value).__name__: value.isoformat()}
        if isinstance(value, (list, dict)):  # empty ones
            return value
        if isinstance(value, (tuple, set, frozenset)):  # empty ones
            return {"$tuple" if isinstance(value, tuple) else "$" + type(value).__name__: []}
        return {"$" + type(value).__name__: _safe(str, value)}


@contextmanager
def stack_room(levels: int) -> Iterator[None]:
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
    walk = _Walk(limits := limits or current_limits(), for_json=False)
    page = _Page(limits, walk.started + limits.max_seconds)
    with stack_room(limits.max_depth):
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
    with stack_room(limits.max_depth):
        shown = walk.walk(value, 0, None, ("", None))
    return {"$truncated": f"<… truncated: {walk.stop}>"} if shown is _NOTHING else shown


def to_jsonable(value: Any, limits: DecodeLimits | None = None) -> Any:
    """A JSON-ready form of a decoded value that loses nothing silently: types JSON lacks
    are tagged (``{"$bytes": ...}``, ``{"$class": ...}``), what limits cut is marked."""
    return jsonable(value, limits or current_limits())
