"""The two on-disk formats of a FileSystemCache file, told apart by their first bytes.

- ``HEADER`` (cachelib, so Flask-Caching 2.x and 1.11 on a recent cachelib): the expiry as
  a 4-byte native unsigned int (0: never), then the value as the serializer writes it.
- ``PICKLED`` (Flask-Caching's own FileSystemCache up to 1.10, and cachelib before 0.7,
  which 1.11 may run on): the expiry as a pickle, then the value's pickle. Flask-Caching
  wrote the expiry with protocol 1 (``pickle.dump(expiry, f, 1)``), cachelib 0.5-0.6 with
  its highest (``\x80\x05K\x00.``, or framed: ``\x80\x05\x95`` + 8 bytes of length).
  Both read any protocol, so cachectl writes protocol 1.

A protocol-1 pickle of an int is ``K`` + 1 byte, ``M`` + 2 bytes or ``J`` + 4 bytes, then
``.``; the value pickle that follows starts with ``\\x80`` and its protocol. Read as a
cachelib header, those bytes give an expiry cachelib never writes (a date in 1973-1994, or
after 2038), so the two cannot be confused in a file either one wrote.
"""

from __future__ import annotations

import math
import pickle
import struct
from dataclasses import dataclass

from cachectl.backends.base import MISSING, NO_EXPIRY, Lifetime
from cachectl.config.generations import HEADER, PICKLED

#: cachelib's expiry header.
_EXPIRY = struct.Struct("I")
#: The opcode of a protocol-1 int pickle, and how many bytes of number follow it.
_PICKLED_INTS = {ord("K"): 1, ord("M"): 2, ord("J"): 4}
_STOP = ord(".")
_PROTO = 0x80
_FRAME = 0x95
_LONG1 = 0x8A
#: What an app that reads the pickled format may run on: protocol 4 is read by every
#: Python 3.4 and later; 5 only by 3.8 and later.
PICKLED_FORMAT_PROTOCOL = 4


@dataclass(frozen=True)
class FileHead:
    """What the first bytes of a cache file say."""

    file_format: str
    #: Unix time of expiry; 0 never expires.
    expires: int
    #: Where the value's bytes begin.
    payload_offset: int
    #: Where the expiry's number sits, as a binary integer of ``expiry_width`` bytes that
    #: can be rewritten in place; None for the one form that holds it as text (a
    #: protocol-1 LONG, past 2038).
    expiry_offset: int | None = None
    expiry_width: int = 0
    #: Whether that integer is signed (pickle's 4-byte BININT and LONG1 are).
    expiry_signed: bool = False


def _read_highest_protocol_expiry(data: bytes) -> FileHead | None:
    """An int pickled with protocol 2-5 (cachelib 0.5-0.6): PROTO, maybe a FRAME, the int,
    STOP. Read as a cachelib header, such bytes would need the value's pickle to start
    with a STOP, or a frame of fewer than 16 bytes, which no cachelib file has."""
    if len(data) < 5 or data[0] != _PROTO or not 2 <= data[1] <= 5:
        return None
    at = 2
    if data[at] == _FRAME:
        if int.from_bytes(data[3:11], "little") > 16:
            return None
        at = 11
    opcode = data[at] if at < len(data) else None
    if opcode == _LONG1 and at + 1 < len(data):
        width, start = data[at + 1], at + 2
    elif opcode in _PICKLED_INTS:
        width, start = _PICKLED_INTS[opcode], at + 1
    else:
        return None
    end = start + width
    if end >= len(data) or data[end] != _STOP:
        return None
    signed = opcode in (_LONG1, ord("J"))
    number = int.from_bytes(data[start:end], "little", signed=signed)
    return FileHead(PICKLED, number, end + 1, start, width, signed)


def read_head(data: bytes) -> FileHead | None:
    """The format and expiry of a cache file from its first ``HEAD_SIZE`` bytes (or all
    the file has); None when it is too short to hold either format."""
    highest = _read_highest_protocol_expiry(data)
    if highest is not None:
        return highest
    if data[:1] == b"L" and b"L\n." in data[:24]:  # protocol 1 past 2038: LONG, as text
        digits = data[1 : data.index(b"L\n.")]
        if digits.isdigit():
            return FileHead(PICKLED, int(digits), len(digits) + 4)
    width = _PICKLED_INTS.get(data[0]) if data else None
    if width is not None and len(data) > width + 2 and data[width + 1] == _STOP:
        follows = data[width + 2]
        # A cachelib header with these bytes would be an expiry before 1995 or after
        # 2038; after a pickled expiry comes the value's pickle.
        if follows == _PROTO or width == 4:
            number = int.from_bytes(data[1 : width + 1], "little", signed=width == 4)
            return FileHead(PICKLED, number, width + 2, 1, width, width == 4)
    if len(data) < _EXPIRY.size:
        return None
    return FileHead(HEADER, _EXPIRY.unpack_from(data)[0], _EXPIRY.size, 0, _EXPIRY.size)


def head_bytes(file_format: str, expires: int) -> bytes:
    """The bytes a file of ``file_format`` starts with, for an expiry."""
    if file_format == PICKLED:
        return pickle.dumps(expires, 1)
    return _EXPIRY.pack(expires)


def expiry_in_place(head: FileHead, expires: int) -> bytes | None:
    """The bytes that replace the expiry's number at ``head.expiry_offset`` so the file
    says ``expires``, as long as it was (the value's bytes stay where they are); None
    when ``expires`` does not fit there (a pickled 0 is one byte wide)."""
    if head.expiry_offset is None:
        return None
    if head.file_format == HEADER:
        return _EXPIRY.pack(expires) if 0 <= expires <= 0xFFFFFFFF else None
    try:  # pickle reads BININT, BININT1/2 and LONG1 of any of these widths
        return expires.to_bytes(head.expiry_width, "little", signed=head.expiry_signed)
    except OverflowError:
        return None


#: How many bytes of a file ``read_head`` needs to decide.
HEAD_SIZE = 32


def lifetime_of(head: FileHead | None, now: float) -> Lifetime:
    """What a file's head says of its entry, as the app reads it: a file that is
    truncated or expired holds no entry."""
    if head is None:
        return MISSING
    if head.expires == 0:
        return NO_EXPIRY
    left = head.expires - now
    return Lifetime(True, math.ceil(left)) if left >= 0 else MISSING
