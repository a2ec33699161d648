"""A value as the cache holds it, read the way the app's library wrote it."""

from __future__ import annotations

import json
import pickle
import zlib
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import Any

from cachectl.codec.limits import DecodeLimits, current_limits

#: Longer text is not read as a number (int() of it is quadratic; see the unpickler).
_MAX_DIGITS = 5000


@dataclass
class StoredValue:
    """A value as found in the cache: its bytes as stored and what they decode to."""

    #: The bytes as stored, or None where the client library hides them (memcached).
    raw: bytes | None
    value: Any = None
    #: How the bytes were read: "pickle", "int", "raw", "json", "undecodable".
    encoding: str = "pickle"
    error: str | None = None
    #: The limit that stopped decoding early ("500,000 elements"): shown in part, marked.
    truncated: str | None = None
    #: The stored length in bytes where ``raw`` holds only the first of them (a value
    #: over ``max_bytes`` is not read whole: ``get --raw`` streams the rest); else None.
    size: int | None = None


def decode_pickle(
    raw: bytes,
    payload: bytes | memoryview,
    unsafe: bool = False,
    limits: DecodeLimits | None = None,
) -> StoredValue:
    """``payload`` (a pickle inside the stored bytes ``raw``) loaded restrictedly, or
    fully with ``unsafe``; a corrupt or foreign value is reported, not raised, and one
    over ``max_bytes`` is not decoded."""
    limits = limits or current_limits()
    if len(payload) > limits.max_bytes:
        why = f"not decoded: {len(payload):,} bytes, over {limits.max_bytes:,}"
        why += " (see --max-bytes, --raw)"
        return StoredValue(raw, None, "undecodable", why)
    from cachectl.codec.unpickler import load_restricted  # a few ms: only once a value is read

    try:
        load = (lambda p, _: (pickle.loads(p), None)) if unsafe else load_restricted
        value, stopped = load(payload, limits)
    except Exception as exc:
        why = f"cannot unpickle: {type(exc).__name__}: {exc}"
        return StoredValue(raw, None, "undecodable", why)
    return StoredValue(raw, value, "pickle", truncated=stopped)


def decode_custom(
    raw: bytes, payload: bytes, serializer: Any, unsafe: bool, limits: DecodeLimits | None = None
) -> StoredValue:
    """A value written by a non-default ``CACHE_SERIALIZER``: cachelib's JSON one is read
    as JSON; any other is the app's own code, which only runs with ``unsafe``."""
    if type(serializer).__name__ == "JSONSerializer":
        if len(payload) > (limits or current_limits()).max_bytes:
            return StoredValue(raw, None, "undecodable", f"not decoded: {len(payload):,} bytes")
        try:
            return StoredValue(raw, json.loads(payload), "json")
        except (ValueError, RecursionError) as exc:
            return StoredValue(raw, None, "undecodable", f"invalid JSON: {exc}")
    if not unsafe:
        why = f"written by the custom serializer {type(serializer).__name__}; pass "
        return StoredValue(
            raw, None, "undecodable", why + "--unsafe-unpickle to decode it, or --raw"
        )
    return StoredValue(raw, serializer.loads(payload), "custom")


def decode_redis_value(
    raw: bytes, serializer: Any = None, unsafe: bool = False, limits: DecodeLimits | None = None
) -> StoredValue:
    """Read a value the way cachelib's Redis serializer wrote it: integers as ASCII digits
    (so INCR works), anything else as ``!`` + pickle; other bytes predate cachelib 0.8."""
    if serializer is not None:
        return decode_custom(raw, raw, serializer, unsafe, limits)
    if raw.startswith(b"!"):  # a view: a value too big to decode is never copied
        return decode_pickle(raw, memoryview(raw)[1:], unsafe, limits)
    with suppress(ValueError):
        if len(raw) <= _MAX_DIGITS:
            return StoredValue(raw, int(raw), "int")
    return StoredValue(raw, raw, "raw")


def shown_in_part(head: bytes, serializer: Any = None) -> bool:
    """Whether the first bytes of a Redis value too long to decode are worth showing:
    plain bytes are; a pickle (``!``) or a serializer's value is nothing without its end."""
    return serializer is None and not head.startswith(b"!")


def decode_redis_head(
    head: bytes,
    size: int,
    serializer: Any = None,
    unsafe: bool = False,
    limits: DecodeLimits | None = None,
) -> StoredValue:
    """A Redis value of ``size`` bytes of which only ``head`` was read: whole (decoded as
    ``decode_redis_value``) or over ``max_bytes``, which no format decodes: a pickle or a
    serializer's value is reported as not decoded, plain bytes are shown in part, marked."""
    if len(head) >= size:
        return decode_redis_value(head, serializer, unsafe, limits)
    limits = limits or current_limits()
    why = f"not decoded: {size:,} bytes, over {limits.max_bytes:,} (see --max-bytes, --raw)"
    if not shown_in_part(head, serializer):
        return StoredValue(head, None, "undecodable", why, size=size)
    shown = head[: limits.max_bytes]
    cut = f"the first {len(shown):,} of {size:,} bytes"
    return StoredValue(head, shown, "raw", truncated=cut, size=size)


#: The pickle protocol of values cachectl writes: every Python from 3.4 reads 4, while 5
#: (the default from 3.8) would leave an app on 3.7 or older unable to read the value.
WRITE_PROTOCOL = 4


def encode_redis_value(value: Any) -> bytes:
    """A value as the app's library stores it in Redis: an int (not a bool) as ASCII
    digits, so ``cache.inc()`` can INCRBY it (and every cachelib and Flask-Caching 1.x
    reads it), anything else as ``!`` + pickle."""
    if type(value) is int:
        return str(value).encode("ascii")
    return b"!" + pickle.dumps(value, WRITE_PROTOCOL)


#: The flags both memcached client libraries give a value (python-memcached 1.62 and
#: pylibmc 1.6.3 agree, compression included): its type, and 8 for zlib-compressed.
MEMCACHED_PICKLE, MEMCACHED_INT, MEMCACHED_LONG, MEMCACHED_ZLIB, MEMCACHED_TEXT = 1, 2, 4, 8, 16


def inflate_within(data: bytes, limit: int) -> tuple[bytes, bool]:
    """zlib ``data`` inflated to at most ``limit`` bytes, and whether there was more: a
    value of a few hundred kilobytes can inflate to gigabytes, so never all at once."""
    inflated = zlib.decompressobj().decompress(data, limit + 1)
    return inflated[:limit], len(inflated) > limit


def decode_memcached_value(
    data: bytes, flags: int, unsafe: bool = False, limits: DecodeLimits | None = None
) -> StoredValue:
    """A memcached item's bytes read by its ``flags`` as the client libraries write them,
    within ``limits``: inflated to ``max_bytes`` at most (bytes and text past it shown in
    part, marked truncated; a pickle not decoded), a pickle loaded restrictedly unless
    ``unsafe``. The stored bytes are not kept (``raw`` None: the clients hide them)."""
    limits = limits or current_limits()
    cut = None
    if flags & MEMCACHED_ZLIB:
        try:
            data, more = inflate_within(data, limits.max_bytes)
        except zlib.error as exc:
            return StoredValue(None, None, "undecodable", f"cannot decompress: {exc}")
        if more:
            cut = f"the first {limits.max_bytes:,} bytes decompressed"
    kind = flags & ~MEMCACHED_ZLIB
    if kind & MEMCACHED_PICKLE and not kind & (MEMCACHED_TEXT | MEMCACHED_INT | MEMCACHED_LONG):
        if cut is not None:
            why = f"not decoded: over {limits.max_bytes:,} bytes once decompressed"
            return StoredValue(None, None, "undecodable", why + " (see --max-bytes)")
        return replace(decode_pickle(data, data, unsafe, limits), raw=None)
    value: Any = data
    try:
        if kind & MEMCACHED_TEXT:
            value = data.decode("utf-8", "replace" if cut else "strict")
        elif kind & (MEMCACHED_INT | MEMCACHED_LONG):
            if len(data) > _MAX_DIGITS:
                return StoredValue(None, None, "undecodable", f"a number of {len(data):,} digits")
            value = int(data)
        elif kind:
            return StoredValue(None, None, "undecodable", f"unknown memcached flags {flags}")
    except ValueError as exc:
        return StoredValue(None, None, "undecodable", f"cannot read as flags {flags} say: {exc}")
    return StoredValue(None, value, "memcached", truncated=cut)
