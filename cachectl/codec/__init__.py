"""Stored cache values made safe to show, and operator input made into values to store.

Cached values are pickles, and loading a pickle can run any code its author chose. An
operator reading a cache on a production host must not hand that power to whoever managed
to write into the cache, so cachectl loads pickles with an unpickler that only builds plain
data (``unpickler``): every other class becomes an ``OpaqueObject`` (``placeholders``) that
names the class and keeps its captured state, without the class ever being imported or
called. ``--unsafe-unpickle`` is the operator's explicit way out. Decoding and showing
(``rendering``) run within ``DecodeLimits`` (``limits``); ``stored`` reads each backend's
format; ``operator_input`` parses what ``set`` is given.
"""

from __future__ import annotations

from cachectl.codec.limits import DecodeLimits, current_limits, using_limits
from cachectl.codec.operator_input import VALUE_TYPES, parse_input_value
from cachectl.codec.placeholders import ClassRef, Marker, OpaqueObject
from cachectl.codec.rendering import format_value, to_jsonable
from cachectl.codec.stored import (
    StoredValue,
    decode_custom,
    decode_pickle,
    decode_redis_value,
    encode_redis_value,
)
from cachectl.codec.unpickler import (
    SAFE_CLASSES,
    RestrictedUnpickler,
    Undecodable,
    loads_or_undecodable,
    restricted_loads,
)

__all__ = [
    "SAFE_CLASSES",
    "VALUE_TYPES",
    "ClassRef",
    "DecodeLimits",
    "Marker",
    "OpaqueObject",
    "RestrictedUnpickler",
    "StoredValue",
    "Undecodable",
    "current_limits",
    "decode_custom",
    "decode_pickle",
    "decode_redis_value",
    "encode_redis_value",
    "format_value",
    "loads_or_undecodable",
    "parse_input_value",
    "restricted_loads",
    "to_jsonable",
    "using_limits",
]
