"""Many calls of one memoized function, one a line (``delete-memoized --each``,
``show-memoized --each``): a data fix that touched 40,000 products invalidates each
product's memoized result in one run.

Each call's key is formed by the very code that forms a single call's
(``MemoizedInvalidator.key_form`` and ``KeyForm.key``: the same checks, the same key,
the app's own decorator with ``--app``); only what every call of a function (and
instance) shares, its checks and version keys, is done once here instead of once a
call, and a line of positional arguments alone goes straight to the hash
(``keys.PositionalKeys``). Memory stays flat in the number of lines: the lines are read
a chunk at a time, and the keys wait in a private scratch file
(``safe_files.private_spool``) until every line has been read, because a line that
cannot be read stops the run before anything is deleted. Then they are deleted in
pipelined batches, as ``delete --from-file`` deletes listed keys.

What a line means (shell words, or JSON) is the command line's business
(``cachectl.cli.memoized_each``); this module reads the lines and refuses the ones no
command could mean, and holds the JSON form, which has no options to parse.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, NamedTuple, Optional

from cachectl import keys
from cachectl.backends.base import BATCH_SIZE, CacheBackend, ProgressCallback, batched
from cachectl.errors import UsageError
from cachectl.operations.memoized import (
    KeyForm,
    MemoizedCall,
    MemoizedInvalidator,
    check_arguments,
)
from cachectl.runtime.safe_files import private_spool

#: The longest line read (bytes, its line feed included): an argument of 70,000 bytes
#: fits many times over; a file without line breaks is refused, not read whole.
MAX_LINE_BYTES = 1 << 20
#: Instance versions kept in memory at once (a method called on many instances): past
#: it the least recently used is read again when needed, so memory stays bounded.
VERSIONS_KEPT = 10_000
#: In the JSON form, the key of an object that holds the positional arguments: never a
#: Python parameter name, so an object is otherwise its keyword arguments, whatever
#: the function's parameters are called.
POSITIONAL_KEY = "*"


#: Bytes read at a time: the lines of a chunk are checked and decoded together.
CHUNK_BYTES = 1 << 16
#: A call as a line gives it: the line's number (from 1), its positional and keyword
#: arguments, and the instance it names (None: the command's own ``--instance``).
LineCall = tuple[int, tuple[Any, ...], dict[str, Any], Optional[str]]
#: ``EachKeys.plain`` before the first line of the command's own instance is formed.
NOT_YET: Any = object()


def refusal(source: str, number: int, reason: str, stopped: str) -> UsageError:
    """The one message for a line that stops the run (exit 2): where, why, and what was
    not done (``stopped``: "nothing was deleted")."""
    return UsageError(f"{source}, line {number}: {reason}; {stopped}", done={"line": number})


def read_lines(stream: IO[bytes], source: str, stopped: str) -> Iterator[tuple[int, str]]:
    """The lines of ``stream`` that name a call, one at a time, with their numbers (from
    1). Blank lines and lines whose first character past blanks is ``#`` are skipped (a
    comment; a call never begins with ``#``). A line too long, holding a NUL byte (no
    shell word can), or not UTF-8 text (no argument can be) stops the run. A carriage
    return before the line feed goes (a file written on Windows).

    Read a chunk at a time, not a line: a chunk of whole lines with none of those faults
    is decoded and split at once (a file of 100,000 ids is a few chunks); one with a
    fault is read line by line (``_checked``), which names the line and the byte."""
    number = 0
    read = getattr(stream, "read1", stream.read)  # what is there: a pipe's lines stream
    pending = b""
    while True:
        chunk = read(CHUNK_BYTES)
        if not chunk:
            break
        if pending:
            chunk = pending + chunk
        cut = chunk.rfind(b"\n") + 1
        pending = chunk[cut:]
        if cut:
            whole = chunk[:cut] if pending else chunk
            lines: Iterable[str] | None = _decoded(whole)
            if lines is None:  # a fault somewhere: line by line, each checked once reached
                start = number
                lines = (
                    _checked(raw + b"\n", start + count, source, stopped)
                    for count, raw in enumerate(whole.split(b"\n")[:-1], start=1)
                )
            for text in lines:
                number += 1
                if (text and text[0] not in " \t#") or _names_a_call(text):
                    yield number, text
        if len(pending) > MAX_LINE_BYTES:  # already too long, its end not even read
            raise refusal(source, number + 1, f"longer than {MAX_LINE_BYTES:,} bytes", stopped)
    if pending:  # the last line, without a line feed
        number += 1
        text = _checked(pending, number, source, stopped)
        if _names_a_call(text):
            yield number, text


def _names_a_call(text: str) -> bool:
    """Whether a line names a call: neither blank nor a comment."""
    stripped = text.lstrip(" \t")
    return bool(stripped) and not stripped.startswith("#")


def _decoded(whole: bytes) -> list[str] | None:
    """The lines of ``whole`` (whole lines, each ended by a line feed) as text, carriage
    returns before the line feeds gone; None when any line is too long, holds a NUL or is
    not UTF-8 (then each line is checked by itself, to say which and where)."""
    if len(whole) > MAX_LINE_BYTES or b"\0" in whole:
        return None  # (no line of a shorter chunk can be too long)
    try:
        text = whole.decode("utf-8")  # UTF-8 never splits a character at a line feed
    except UnicodeDecodeError:
        return None
    lines = text.split("\n")
    lines.pop()  # after the last line feed
    if "\r" in text:
        lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    return lines


def _checked(raw: bytes, number: int, source: str, stopped: str) -> str:
    """One line as read (its line feed included, when it has one) as text, or the
    refusal that names it: too long, a NUL byte, not UTF-8."""
    if len(raw) > MAX_LINE_BYTES:
        raise refusal(source, number, f"longer than {MAX_LINE_BYTES:,} bytes", stopped)
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    nul = raw.find(b"\0")
    if nul >= 0:
        raise refusal(source, number, f"a NUL byte (byte {nul + 1})", stopped)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise refusal(source, number, f"not UTF-8 text (byte {exc.start + 1})", stopped) from None


def json_arguments(text: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A call written as JSON: an array is its positional arguments, an object its keyword
    arguments, and an object's ``"*"`` holds positional arguments beside them
    (``{"*": [3], "currency": "EUR"}`` is ``f(3, currency="EUR")``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:  # says where, never quotes the line
        raise UsageError(f"not JSON: {exc}") from None
    except RecursionError:
        raise UsageError("JSON nested too deeply") from None
    if isinstance(value, list):
        return tuple(value), {}
    if not isinstance(value, dict):
        raise UsageError(
            "a call is a JSON array (positional arguments) or object (keyword arguments), "
            f"not {type(value).__name__}"
        )
    positional = value.pop(POSITIONAL_KEY, [])
    if not isinstance(positional, list):
        raise UsageError(f'"{POSITIONAL_KEY}" holds the positional arguments: an array')
    for name in value:
        if not name.isidentifier():
            raise UsageError(f"{name[:60]!r} is not a parameter name")
    return tuple(positional), value


class Kept(OrderedDict):
    """The last ``VERSIONS_KEPT`` things read by key (version keys, key forms), so that a
    method called on many instances reads each instance's version once yet memory stays
    bounded: past the limit the least recently used is read again when needed."""

    def get_or_read(self, key: Any, read: Callable[[], Any]) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = self[key] = read()
        if len(self) > VERSIONS_KEPT:
            self.popitem(last=False)
        return value


class EachKeys:
    """The entry key of each call, formed as a single call's (``KeyForm``: a function's
    checks and versions once per instance, each call's arguments checked and hashed);
    a call that fails its checks stops the run, naming its line.

    Once a line of the command's own instance has been formed, a line of positional
    arguments alone, as many as the function takes (the one check such a call needs:
    ``MemoizedFunction.positional_arity``), goes straight to the form's
    ``PositionalKeys``: no call object, no further look-up."""

    def __init__(
        self, invalidator: MemoizedInvalidator, base: MemoizedCall, source: str, stopped: str
    ) -> None:
        self.invalidator = invalidator
        self.base = base
        self.source = source
        self.stopped = stopped
        self.versions = Kept()
        self.forms = Kept()
        self.keeps = invalidator.settings.generation.keeps_ignored_keywords
        #: The instance of the last call and its form (a sentinel before the first).
        self.last: tuple[Any, KeyForm | None] = (object(), None)
        self.fewest, self.most = base.function.positional_arity()
        #: How a plain line's key is formed, once known: None (nothing is cached) or a
        #: ``PositionalKeys.key``; ``NOT_YET`` until then.
        self.plain: Any = NOT_YET

    def read_version(self, key: str) -> str | None:
        version: str | None = self.versions.get_or_read(
            key, lambda: self.invalidator.read_version(key)
        )
        return version

    def key(
        self, number: int, args: tuple[Any, ...], kwargs: dict[str, Any], instance: str | None
    ) -> str | None:
        """The key of a line's call (``instance``: the one it names, None for the
        command's own); None when nothing of it can be cached."""
        plain = self.plain
        if (
            plain is not NOT_YET
            and instance is None
            and not kwargs
            and self.fewest <= len(args) <= self.most
        ):
            return None if plain is None else plain(args)
        return self.call_key(number, self.base.called_with(args, kwargs, instance))

    def call_key(self, number: int, call: MemoizedCall) -> str | None:
        """The key of one call of the function, every check made."""
        try:
            if call.instance_id == self.last[0]:  # the usual case: the same as the line before
                form = self.last[1]
            else:
                form = self.forms.get_or_read(
                    call.instance_id, lambda: self.invalidator.key_form(call, self.read_version)
                )
                self.last = (call.instance_id, form)
            if form is None:  # nothing cached: the call is still checked, as a single one is
                check_arguments(call, self.keeps)
                key = None
            else:
                key = form.key(call)
        except UsageError as exc:
            raise refusal(self.source, number, exc.message, self.stopped) from None
        if self.plain is NOT_YET and call.instance_id == self.base.instance_id:
            if form is None:
                self.plain = None
            elif form.positional is not None:
                self.plain = form.positional.key
        return key

    def function_version(self) -> str | None:
        """The function's version (None: nothing of it is cached), read once."""
        function = self.base.function
        fname = keys.function_namespace(
            function.module, function.qualname, self.invalidator.generation
        )
        return self.read_version(keys.version_key(fname))


class EachDeleted(NamedTuple):
    """What ``delete-memoized --each`` did."""

    #: Lines naming a call.
    calls: int
    #: Keys sent for deletion: the calls whose function (and instance) has a version.
    requested: int
    #: Entries that existed and were deleted; None where the server cannot tell
    #: (memcached).
    removed: int | None
    #: Whether the function has no version at all (nothing of it can be cached).
    no_version: bool

    @property
    def not_cached(self) -> int | None:
        return None if self.removed is None else self.calls - self.removed

    def document(self) -> dict[str, Any]:
        return {
            "ok": True,
            "calls": self.calls,
            "requested": self.requested,
            "deleted": self.removed,
            "not_cached": self.not_cached,
        }


def delete_each(
    invalidator: MemoizedInvalidator,
    base: MemoizedCall,
    calls: Iterable[LineCall],
    source: str,
    on_progress: ProgressCallback | None = None,
) -> EachDeleted:
    """Delete the stored result of each call of ``base``'s function: every line read and
    its key formed first (kept in a private scratch file), so a line that stops the run
    stops it before anything is deleted; then the keys deleted in batches, one round
    trip each."""
    each = EachKeys(invalidator, base, source, "nothing was deleted")
    count = requested = 0
    pending: list[str] = []
    with private_spool() as spool:
        for number, args, kwargs, instance in calls:
            key = each.key(number, args, kwargs, instance)
            count += 1
            if key is None:
                continue
            if "\n" in key or "\r" in key:  # an app's own make_cache_key could return one
                raise refusal(source, number, f"the key {key!r} holds a line break", each.stopped)
            pending.append(key)
            if len(pending) == BATCH_SIZE:
                spool.write("\n".join(pending) + "\n")
                requested += len(pending)
                pending = []
        if pending:
            spool.write("\n".join(pending) + "\n")
            requested += len(pending)
        no_version = count > 0 and each.function_version() is None
        spool.seek(0)
        listed = (line[:-1] for line in spool)
        removed = invalidator.backend.delete(listed, on_progress) if requested else 0
    return EachDeleted(count, requested, removed, no_version)


class EachShown(NamedTuple):
    """One call as ``show-memoized --each`` reports it."""

    line: int
    #: Its entry key; None when no version is stored (nothing of it can be cached).
    key: str | None
    cached: bool

    def document(self) -> dict[str, Any]:
        return {"line": self.line, "key": self.key, "cached": self.cached}


def present(backend: CacheBackend, names: list[str]) -> list[bool]:
    """Whether each key is stored: a pipelined TTL read where the backend reads lifetimes
    (Redis, FileSystemCache; an expired entry is not there), else a read of each."""
    if names and backend.can_read_lifetimes:
        try:
            backend.require_lifetimes(change=False)
        except UsageError:  # a memcached set-up whose expiries cannot be read
            pass
        else:
            return [lifetime.found for lifetime in backend.lifetimes(names)]
    return [backend.get(name) is not None for name in names]


def show_each(
    invalidator: MemoizedInvalidator, base: MemoizedCall, calls: Iterable[LineCall], source: str
) -> Iterator[EachShown]:
    """Whether each call of ``base``'s function is stored, streamed: the calls a batch
    at a time, each batch's keys looked up in one round trip. A line that stops the run
    stops it there (what came before it has been reported)."""
    each = EachKeys(invalidator, base, source, "the lines before it were reported")
    for batch in batched(calls):
        formed = [
            (number, each.key(number, args, kwargs, instance))
            for number, args, kwargs, instance in batch
        ]
        names = [key for _, key in formed if key is not None]
        found = iter(present(invalidator.backend, names))
        for number, key in formed:
            yield EachShown(number, key, key is not None and next(found))
