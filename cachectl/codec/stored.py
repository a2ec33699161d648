"""A value as the cache holds it, read the way the app's library wrote it."""

from __future__ import annotations

import json
import pickle
from contextlib import suppress
from dataclasses import dataclass
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
