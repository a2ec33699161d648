"""How counts and sizes read in human output: one spelling for every command.

"1 key", "2,552 keys"; "1 byte", "544 bytes", "2.5 KiB", "1.2 MiB". Every text line
that counts something or gives a size goes through here, so ``stats`` and ``stats
--by-function``, ``clear`` and ``delete`` cannot drift apart again. ``--json`` keeps raw
numbers: this is for people only. Standard library only, cheap to import.
"""

from __future__ import annotations

#: Binary units past bytes, as ``ls -h`` and most operators' tools print them.
_UNITS = ("KiB", "MiB", "GiB", "TiB")


def number(count: int) -> str:
    """A count with thousands separators: ``2,552``."""
    return f"{count:,}"


def noun(count: int, singular: str, plural: str | None = None) -> str:
    """``singular`` or its plural (``singular + "s"`` unless given) to go with ``count``."""
    if count == 1:
        return singular
    return plural if plural is not None else singular + "s"


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """``1 key``, ``2,552 keys``, ``3 stored entries`` (pass the plural where an s is wrong)."""
    return f"{number(count)} {noun(count, singular, plural)}"


def size_text(size: int | float | None) -> str:
    """A size for people: ``1 byte``, ``544 bytes``, ``2.5 KiB``, ``1.2 MiB``; ``?`` where
    it is not known. Bytes are spelled out below 1 KiB, where a decimal would mislead."""
    if size is None:
        return "?"
    if size < 1024:
        return counted(int(size), "byte")
    amount = size / 1024
    for unit in _UNITS[:-1]:
        if amount < 1024:
            return f"{amount:,.1f} {unit}"
        amount /= 1024
    return f"{amount:,.1f} {_UNITS[-1]}"


#: Plural nouns a phrase may start with, and their singular (``counted_phrase``).
_LEADING_NOUNS = {"keys": "key", "cache files": "cache file", "entries": "entry"}


def counted_phrase(count: int, phrase: str) -> str:
    """A count before a phrase that names what was counted, in the plural (a clear's
    scope, "keys under the prefix 'app_'"): ``1 key under the prefix 'app_'``. A phrase
    that does not start with a plural noun ("every key in the database") becomes an
    aside to the count, for a line that goes on with "from ...": ``3 keys, every key in
    the database,``."""
    for plural, singular in _LEADING_NOUNS.items():
        if phrase.startswith(plural + " ") or phrase == plural:
            return f"{number(count)} {noun(count, singular, plural)}{phrase[len(plural) :]}"
    return f"{counted(count, 'key')}, {phrase},"


def removal_text(verb: str, removed: int, requested: int) -> str:
    """``deleted 2 keys``, or ``deleted 1 of 2 keys (1 did not exist)``: how many of the
    keys asked for were there (delete, delete-memoized, delete-view)."""
    if removed == requested:
        return f"{verb} {counted(removed, 'key')}"
    missing = number(requested - removed)
    return f"{verb} {number(removed)} of {counted(requested, 'key')} ({missing} did not exist)"
