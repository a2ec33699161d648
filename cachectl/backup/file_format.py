"""The backup file: what it holds, byte by byte.

A backup must survive the run that writes it being killed at any point, and a disk that
damages a few bytes must cost the entries of one chunk, not the file. So the file is a
sequence of records, each self-contained:

    MARKER (8 bytes) | kind (4 bytes) | length (4, big-endian) | CRC-32 of body (4) | body

The body is zlib-compressed (stdlib only). A reader that meets a damaged length or
checksum looks for the next ``MARKER`` and goes on from there. The kinds:

- ``HEAD`` (JSON; first): the format, cachectl's version, the time, host, user and the
  command line masked as in the audit log;
- ``CACH`` (JSON): one cache the entries come from: backend family, server (no
  credentials), database, key prefix, Flask-Caching generation, and the id its chunks use;
- ``ENTS``: a chunk of entries of one cache, taken at one time (below);
- ``TRLR`` (JSON; last): the counts, written when the run ends. A file without one was
  cut short (``SIGKILL``, a lost disk): every chunk before the cut is still whole.

A chunk's body (before compression): cache id (u32), time taken in ms since the epoch
(i64), entry count (u32), then per entry: name (u32 length + bytes), value (u32 length +
bytes), lifetime left in ms (i64; -1: never expires), flags (u32), extra (u32 length +
bytes). What ``name``, ``value`` and ``extra`` hold depends on the family: Redis, the
full key and its ``DUMP`` payload; memcached, the full key, the stored bytes and the
client's flags; FileSystemCache, the key when known, the file's bytes, and the file's name.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any

#: Starts every record; chosen so it does not occur in text and is unlikely in data (a
#: reader that finds it inside a damaged record still checks the record's checksum).
MARKER = b"\x89CCBKUP\x1a"
FORMAT_VERSION = 1
_FRAME = struct.Struct(">4sII")
FRAME_SIZE = len(MARKER) + _FRAME.size

HEAD, CACHE, ENTRIES, TRAILER = b"HEAD", b"CACH", b"ENTS", b"TRLR"
KINDS = frozenset({HEAD, CACHE, ENTRIES, TRAILER})

#: No record body is larger than this, compressed or not: a damaged length cannot make a
#: reader allocate gigabytes, and a chunk is flushed before it grows past it.
MAX_BODY = 64 * 1024 * 1024
#: A lifetime that never ends.
NO_EXPIRY = -1

_CHUNK_HEAD = struct.Struct(">Iq I")
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")


@dataclass(frozen=True)
class Entry:
    """One entry as it was before it was removed or overwritten."""

    #: The name on the server: the full key (prefix included); a file's key when known.
    name: bytes
    #: The stored bytes: Redis's DUMP payload, memcached's value, the cache file's bytes.
    value: bytes
    #: Milliseconds it had left when taken (``NO_EXPIRY`` for none).
    ttl_ms: int = NO_EXPIRY
    #: memcached's client flags (how the client decodes the value); 0 elsewhere.
    flags: int = 0
    #: FileSystemCache: the file's name in CACHE_DIR; empty elsewhere.
    extra: bytes = b""


@dataclass(frozen=True)
class Chunk:
    cache_id: int
    taken_ms: int
    entries: list[Entry]


class DamagedRecord(ValueError):
    """A record whose bytes do not check out: skipped, the rest still read."""


def frame(kind: bytes, body: bytes) -> bytes:
    """One record ready to write: ``body`` compressed, framed and checksummed."""
    packed = zlib.compress(body, 1)
    if len(packed) > MAX_BODY:
        raise ValueError("a backup record may not exceed 64 MiB")
    return MARKER + _FRAME.pack(kind, len(packed), zlib.crc32(packed)) + packed


def json_body(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, sort_keys=True).encode()


def entry_bytes(entry: Entry) -> bytes:
    """One entry as a chunk holds it."""
    return b"".join(
        (
            _U32.pack(len(entry.name)),
            entry.name,
            _U32.pack(len(entry.value)),
            entry.value,
            _I64.pack(entry.ttl_ms),
            _U32.pack(entry.flags),
            _U32.pack(len(entry.extra)),
            entry.extra,
        )
    )


def chunk_body(cache_id: int, taken_ms: int, count: int, entries: bytes) -> bytes:
    """A chunk's body: its head, then ``count`` entries already laid out (``entry_bytes``,
    or the same layout built inside the server)."""
    return _CHUNK_HEAD.pack(cache_id, taken_ms, count) + entries


@dataclass(frozen=True)
class LaidOutChunk:
    """A chunk whose entries are left as the file lays them out: a backend that takes that
    layout itself (Redis's restore script) is handed the bytes without a Python object
    per entry."""

    cache_id: int
    taken_ms: int
    count: int
    laid_out: bytes


def read_laid_out(body: bytes) -> LaidOutChunk:
    """A chunk's head, and its entries as they are; DamagedRecord for a body too short."""
    if len(body) < _CHUNK_HEAD.size:
        raise DamagedRecord("a chunk is shorter than its head")
    cache_id, taken_ms, count = _CHUNK_HEAD.unpack_from(body, 0)
    return LaidOutChunk(cache_id, taken_ms, count, body[_CHUNK_HEAD.size :])


def read_chunk(body: bytes) -> Chunk:
    """The entries of a chunk's (decompressed) body; DamagedRecord when it does not parse."""
    try:
        cache_id, taken_ms, count = _CHUNK_HEAD.unpack_from(body, 0)
        at = _CHUNK_HEAD.size
        entries = []
        view = memoryview(body)
        for _ in range(count):
            (size,) = _U32.unpack_from(body, at)
            name = bytes(view[at + 4 : at + 4 + size])
            at += 4 + size
            (size,) = _U32.unpack_from(body, at)
            value = bytes(view[at + 4 : at + 4 + size])
            at += 4 + size
            (ttl_ms,) = _I64.unpack_from(body, at)
            (flags,) = _U32.unpack_from(body, at + 8)
            (size,) = _U32.unpack_from(body, at + 12)
            extra = bytes(view[at + 16 : at + 16 + size])
            at += 16 + size
            if at > len(body):
                raise DamagedRecord("a chunk's entries run past its end")
            entries.append(Entry(name, value, ttl_ms, flags, extra))
    except struct.error as exc:
        raise DamagedRecord(f"a chunk does not parse ({exc})") from None
    if at != len(body):
        raise DamagedRecord("a chunk holds bytes after its last entry")
    return Chunk(cache_id, taken_ms, entries)


def unframe(kind: bytes, packed: bytes, checksum: int) -> bytes:
    """A record's body, checked and decompressed; DamagedRecord when it is not whole."""
    if zlib.crc32(packed) != checksum:
        raise DamagedRecord(f"a {kind.decode('ascii', 'replace')} record fails its checksum")
    try:
        inflate = zlib.decompressobj()
        body = inflate.decompress(packed, MAX_BODY)
        if inflate.unconsumed_tail or not inflate.eof:
            raise DamagedRecord("a record does not decompress to a whole body within 64 MiB")
    except zlib.error as exc:
        raise DamagedRecord(f"a record does not decompress ({exc})") from None
    return body


def read_frame_head(head: bytes) -> tuple[bytes, int, int] | None:
    """``(kind, length, checksum)`` of a frame head that starts with the marker and names
    a known kind and a possible length; None when it does not."""
    if len(head) != FRAME_SIZE or not head.startswith(MARKER):
        return None
    kind, length, checksum = _FRAME.unpack_from(head, len(MARKER))
    if kind not in KINDS or length > MAX_BODY:
        return None
    return kind, length, checksum
