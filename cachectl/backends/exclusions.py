"""Keys a clear leaves in place: ``--exclude`` globs, matched as Redis matches them.

A glob applies to the key after the app's prefix, exactly as ``keys GLOB`` and
``delete --pattern GLOB`` read theirs: Redis glob syntax (``*``, ``?``, ``[abc]``,
``[^abc]``, ``[a-z]``, ``\\`` before a character to take it literally), compared
byte by byte as ``SCAN MATCH`` compares. The sweep tells a key to keep from one to
remove in two places, which must agree: inside the server (the Lua step of
``redis_sweep``) and in cachectl (the client-side step, for servers without
scripting and for Redis Cluster). So a glob is parsed once, here, and both places
run the same algorithm on what the parse gives.

The parse: the glob split at its stars into segments, each a run of one-byte
items (a byte, ``?``, a class), so each has a fixed length. A key matches when the
first segment matches at its start, the last at its end, and the others in
order in between, each at the first place it fits after the one before (with
fixed-length segments, the first place is never worse than a later one). Each
segment is found by the language's own pattern matcher (a Lua pattern in the
server, a regular expression here), in C, with no backtracking across stars: an
operator's glob never holds the server for long.

Where Redis's own reading of a glob is odd or depends on the machine, the glob is
refused instead, with the reason: a ``[`` never closed (Redis would run the class
to the end of the pattern) and a range between non-ASCII bytes (whose order
depends on whether the server's C compiler signs ``char``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: Every byte, and the bytes a Lua pattern takes as they are (others are escaped).
_ALL_BYTES = frozenset(range(256))
_PLAIN = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


class GlobError(ValueError):
    """A glob cachectl refuses to apply (the reason is the message)."""


def _lua_byte(byte: int) -> bytes:
    """One byte as a Lua 5.1 pattern item: ``%z`` for NUL (a 5.1 pattern ends at
    NUL), ``%`` before anything but a letter or digit."""
    if byte == 0:
        return b"%z"
    return bytes([byte]) if byte in _PLAIN else b"%" + bytes([byte])


@dataclass(frozen=True)
class Segment:
    """A run of one-byte items between two stars, ready for both matchers."""

    length: int
    #: The Lua pattern (unanchored) the server's step finds it with.
    lua: bytes
    #: The same as a regular expression, for the client-side step.
    regex: re.Pattern[bytes]


def _segment(items: list[frozenset[int]]) -> Segment:
    lua, regex = [], []
    for members in items:
        if members == _ALL_BYTES:
            lua.append(b".")
            regex.append(b".")
        elif len(members) == 1:
            (byte,) = members
            lua.append(_lua_byte(byte))
            regex.append(re.escape(bytes([byte])))
        else:
            negate = len(members) > 128  # the shorter list
            listed = sorted(_ALL_BYTES - members if negate else members)
            caret = b"^" if negate else b""
            lua.append(b"[" + caret + b"".join(_lua_byte(b) for b in listed) + b"]")
            escaped = b"".join(re.escape(bytes([b])) for b in listed)
            regex.append(b"[" + caret + escaped + b"]")
    return Segment(len(items), b"".join(lua), re.compile(b"".join(regex), re.DOTALL))


@dataclass(frozen=True)
class Glob:
    """One ``--exclude`` glob, parsed: the segments between its stars (one when it
    has no star; none when it can match nothing, having an empty class such as
    Redis reads ``[]``)."""

    text: str
    segments: tuple[Segment, ...]

    def matches(self, rest: bytes) -> bool:
        """Whether ``rest`` (a key without the prefix) matches this glob."""
        segments = self.segments
        if not segments:
            return False
        first, last = segments[0], segments[-1]
        if len(segments) == 1:
            return len(rest) == first.length and first.regex.match(rest) is not None
        at = 0
        if first.length:
            if first.regex.match(rest) is None:
                return False
            at = first.length
        for middle in segments[1:-1]:
            if middle.length:
                found = middle.regex.search(rest, at)
                if found is None:
                    return False
                at = found.end()
        if last.length:
            start = len(rest) - last.length
            return start >= at and last.regex.match(rest, start) is not None
        return True

    def script_args(self) -> list[bytes]:
        """How the Lua step takes this glob: the number of segments, then each
        segment's length and Lua pattern."""
        args = [str(len(self.segments)).encode()]
        for segment in self.segments:
            args += [str(segment.length).encode(), segment.lua]
        return args


def _class(glob: bytes, start: int, text: str, name: str) -> tuple[frozenset[int], int]:
    """The class opened by ``[`` at ``start - 1``, read as Redis reads it: the bytes it
    accepts and the index of its closing ``]``."""
    i, n = start, len(glob)
    negate = i < n and glob[i : i + 1] == b"^"
    if negate:
        i += 1
    members: set[int] = set()
    while True:
        if i < n and glob[i] == ord("\\") and n - i >= 2:
            i += 1
            members.add(glob[i])
        elif i < n and glob[i] == ord("]"):
            break
        elif i >= n:
            raise GlobError(
                f"{name} {text!r}: '[' opens a character class that is never closed "
                "(write '\\[' for a literal '[')"
            )
        elif n - i >= 3 and glob[i + 1] == ord("-"):
            low, high = sorted((glob[i], glob[i + 2]))
            if high > 0x7F:
                raise GlobError(
                    f"{name} {text!r}: a range in '[...]' must run between ASCII "
                    "characters (servers order other bytes differently)"
                )
            members.update(range(low, high + 1))
            i += 2
        else:
            members.add(glob[i])
        i += 1
    return frozenset(_ALL_BYTES - members if negate else members), i


def parse_glob(text: str, name: str = "--exclude") -> Glob:
    """``text`` parsed as ``SCAN MATCH`` reads a glob; GlobError for one refused,
    naming the glob as ``name`` (the option or argument it came from)."""
    if not text:
        raise GlobError(
            "--exclude '' is empty (an unset shell variable?): give the glob of the keys "
            "to keep, such as 'session:*'"
        )
    glob = text.encode("utf-8", "surrogateescape")
    segments: list[list[frozenset[int]]] = [[]]
    i, n = 0, len(glob)
    while i < n:
        char = glob[i : i + 1]
        if char == b"*":
            segments.append([])  # a run of stars leaves empty segments: no matter
        elif char == b"?":
            segments[-1].append(_ALL_BYTES)
        elif char == b"[":
            members, i = _class(glob, i + 1, text, name)
            segments[-1].append(members)
        elif char == b"\\" and n - i >= 2:
            i += 1
            segments[-1].append(frozenset(glob[i : i + 1]))
        else:
            segments[-1].append(frozenset(char))
        i += 1
    if any(not members for items in segments for members in items):
        return Glob(text, ())  # an empty class: nothing can match
    return Glob(text, tuple(_segment(items) for items in segments))


class Exclusions:
    """The ``--exclude`` globs of one clear, and how many keys each matched.

    A key matching several globs counts once in ``excluded`` and once for each
    glob it matches, so a glob that matched nothing is told apart from one that
    only matched what another glob already kept. Cluster sweeps count from one
    thread per primary.

    A kept key counts once however often a walk meets it: Redis's ``SCAN`` returns a
    key twice when the table shrinks mid-walk, which a clear's own deletions cause
    (a clear that kept 300 keys once reported 301). So the names kept are held (as
    long as the clear runs: about a hundred bytes each) to count each once.

    ``nested`` globs are those cachectl adds itself for the caches nested under
    this one (``operations/nesting.py``: the sibling prefix ``pkg_data_`` under
    ``pkg_`` is ``data_*``): the same matching keeps their keys, but they are
    reported apart from the operator's ``--exclude`` globs, so ``excluded`` and
    the warnings about a glob that keeps nothing speak of the operator's globs only.
    """

    def __init__(self, texts: Iterable[str], nested: Sequence[str] = ()) -> None:
        unique = list(dict.fromkeys(texts))
        self.globs: list[Glob] = [parse_glob(text) for text in unique]
        #: How many of ``globs`` are the operator's (the rest are ``nested``).
        self.own = len(self.globs)
        self.globs += [parse_glob(text) for text in nested]
        #: Keys left in place that match an operator's glob (each once).
        self.excluded = 0
        #: Keys left in place, for any glob, nested ones included (each once).
        self.kept = 0
        #: Keys each glob matched, in the order given.
        self.matched = [0] * len(self.globs)
        self._counted: set[bytes] = set()  # the kept keys counted so far (without prefix)
        self._lock = threading.Lock()

    def fresh(self) -> Exclusions:
        """The same globs with nothing counted yet (a second walk counts apart)."""
        copy = Exclusions(())
        copy.globs, copy.own = self.globs, self.own
        copy.matched = [0] * len(self.globs)
        return copy

    def _kept_by_any(self, rest: bytes) -> bool:
        return any(glob.matches(rest) for glob in self.globs)

    def _match(self, rest: bytes, hits: list[int]) -> tuple[bool, bool]:
        """Whether ``rest`` is kept, and kept by an operator's glob; counts into ``hits``."""
        found = own = False
        for index, glob in enumerate(self.globs):
            if glob.matches(rest):
                hits[index] += 1
                found = True
                own = own or index < self.own
        return found, own

    def split(self, names: Sequence[bytes], cut: int) -> list[bytes]:
        """The ``names`` (full keys) to remove, counting those kept; ``cut`` is the
        length of the prefix in bytes."""
        doomed: list[bytes] = []
        kept: list[bytes] = []
        for name in names:
            if self._kept_by_any(name[cut:]):
                kept.append(name[cut:])
            else:
                doomed.append(name)
        self.count_kept(kept)
        return doomed

    def keeps(self, rest: bytes) -> bool:
        """Whether one key (without the prefix) stays out, counted: for the names
        ``keys`` and ``stats`` walk, which must leave out what a clear keeps."""
        if not self._kept_by_any(rest):
            return False
        self.count_kept([rest])
        return True

    def count_kept(self, rests: Iterable[bytes]) -> None:
        """Count the kept keys ``rests`` (without the prefix), each key once (see the
        class): a sweep that decided in the server (the Lua step) hands them over here."""
        with self._lock:
            fresh = [rest for rest in dict.fromkeys(rests) if rest not in self._counted]
            self._counted.update(fresh)
        hits = [0] * len(self.globs)
        own_kept = 0
        for rest in fresh:
            own_kept += self._match(rest, hits)[1]
        self.add(len(fresh), hits, own_kept)

    def add(self, kept: int, hits: Sequence[int], own_kept: int | None = None) -> None:
        with self._lock:
            self.kept += kept
            self.excluded += kept if own_kept is None else own_kept
            self.matched = [total + more for total, more in zip(self.matched, hits)]

    def absorb(self, other: Exclusions) -> None:
        """Take the counts of ``other`` (a ``fresh`` copy that walked instead)."""
        self.add(other.kept, other.matched, other.excluded)

    def script_args(self) -> list[bytes]:
        """The globs as the Lua step takes them: how many are the operator's, then
        each glob, one after the other."""
        return [str(self.own).encode()] + [arg for glob in self.globs for arg in glob.script_args()]

    def own_globs(self) -> list[tuple[Glob, int]]:
        """The operator's globs, each with how many keys it matched."""
        return list(zip(self.globs[: self.own], self.matched[: self.own]))

    def nested_hits(self) -> list[int]:
        """How many keys each ``nested`` glob matched, in the order given."""
        return self.matched[self.own :]

    def unmatched(self) -> list[str]:
        """The operator's globs that matched no key."""
        return [glob.text for glob, hits in self.own_globs() if not hits]
