"""Key names one a line: ``keys`` writes them, ``delete --from-file`` reads them back.

A key can hold any bytes. A visitor's request to ``/search/x%0Asession:admin`` makes a
view key with a line break in it; printed raw, ``keys 'view//search/*'`` would show two
lines, and ``| cachectl delete --from-file -`` would delete ``session:admin``, which the
glob never matched. So a name is written with the characters that could end or disguise
a line escaped, and read back by the one function that undoes exactly that:

- ``\\`` for a backslash (so that an escape in a name cannot be taken for one);
- ``\\n``, ``\\t``, ``\\r``, and ``\\xHH`` for every other byte of a control character
  (C0, DEL, C1 such as U+0085 NEL, and the line and paragraph separators U+2028 and
  U+2029, which ``str.splitlines`` and some terminals take for line breaks);
- ``\\xHH`` for a byte that is not part of UTF-8 text (a key written by a client that
  stores raw bytes), kept in the name as a surrogate (``surrogateescape``).

A name with none of these prints as it is. ``-0/--null`` is the other way, as ``find
-print0 | xargs -0``: names as raw bytes ended by a NUL byte, nothing escaped.
"""

from __future__ import annotations

import re

_NAMED = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
_UNNAMED = {"\\\\": "\\", "\\n": "\n", "\\t": "\t", "\\r": "\r"}
#: What is escaped: a backslash, control characters, the Unicode line and paragraph
#: separators, and surrogates (bytes that were not UTF-8).
_ESCAPED = re.compile("[\\\\\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|[\\ntr])|\\")


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    try:
        data = char.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no undecodable byte stands for
        data = char.encode("utf-8", "surrogatepass")
    return "".join(f"\\x{byte:02x}" for byte in data)


def escape_key(name: str) -> str:
    """``name`` on one line, unambiguously (see the module's rules); unchanged when it
    holds nothing to escape."""
    return _ESCAPED.sub(_escaped, name)


def unescape_key(text: str) -> str:
    """The name ``escape_key`` wrote as ``text`` (bytes that are not UTF-8 come back as
    surrogates, as the backends' key listings give them). ValueError for a backslash
    that starts no escape (``\\\\``, ``\\n``, ``\\t``, ``\\r``, ``\\xHH``)."""
    if "\\" not in text:
        return text
    data = bytearray()
    at = 0
    for match in _ESCAPE.finditer(text):
        data += text[at : match.start()].encode("utf-8", "surrogateescape")
        escape = match.group()
        if escape == "\\":
            shown = text[match.start() : match.start() + 2]
            raise ValueError(
                f"{shown!r} is no escape: a backslash in a key is written \\\\ "
                "(keys prints it so), others are \\n \\t \\r \\xHH"
            )
        if escape.startswith("\\x"):
            data.append(int(escape[2:], 16))
        else:
            data += _UNNAMED[escape].encode()
        at = match.end()
    data += text[at:].encode("utf-8", "surrogateescape")
    return data.decode("utf-8", "surrogateescape")


def key_bytes(name: str) -> bytes:
    """The bytes of a key name as the server holds them (for ``-0/--null``)."""
    return name.encode("utf-8", "surrogateescape")


def key_from_bytes(data: bytes) -> str:
    """A key name read as raw bytes (``--null``): bytes that are not UTF-8 are kept as
    surrogates, as the backends' key listings give them."""
    return data.decode("utf-8", "surrogateescape")
