"""Turn stored cache values into something safe to show, and operator input into values.

Cached values are pickles, and loading a pickle can run any code its author
chose. An operator reading a cache on a production host must not hand that
power to whoever managed to write into the cache, so cachectl loads pickles with
an unpickler that only builds plain data: every other class becomes an
``OpaqueObject`` that names the class and keeps its captured state, without the
class ever being imported or called. ``--unsafe-unpickle`` is the operator's
explicit way out.
"""

from __future__ import annotations

import _compat_pickle
import base64
import codecs
import collections
import copyreg
import datetime
import decimal
import io
import json
import pickle
import uuid
from dataclasses import dataclass
from typing import Any

from cachectl.errors import UsageError

#: Classes a restricted load may build: value types whose construction runs no
#: code chosen by the pickle's author.
SAFE_CLASSES: dict[tuple[str, str], Any] = {
    **{
        ("builtins", cls.__name__): cls
        for cls in (
            bool,
            int,
            float,
            complex,
            str,
            bytes,
            bytearray,
            list,
            tuple,
            dict,
            set,
            frozenset,
            object,
        )
    },
    ("datetime", "datetime"): datetime.datetime,
    ("datetime", "date"): datetime.date,
    ("datetime", "time"): datetime.time,
    ("datetime", "timedelta"): datetime.timedelta,
    ("datetime", "timezone"): datetime.timezone,
    ("decimal", "Decimal"): decimal.Decimal,
    ("uuid", "UUID"): uuid.UUID,
    ("uuid", "SafeUUID"): uuid.SafeUUID,
    ("collections", "OrderedDict"): collections.OrderedDict,
}


class OpaqueObject:
    """Stand-in for an object of a class cachectl refused to import.

    It records how the pickle wanted to build the object (constructor arguments
    and state) so the operator still sees what is in the cache.
    """

    module = "?"
    name = "?"
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    state: Any
    items: list[Any]
    entries: dict[Any, Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> OpaqueObject:
        # pickle's NEWOBJ calls __new__ without __init__: record the arguments here.
        self = super().__new__(cls)
        self.args, self.kwargs, self.state = args, kwargs, None
        self.items = []
        self.entries = {}
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    # Subclasses of list and dict are rebuilt item by item.
    def append(self, item: Any) -> None:
        self.items.append(item)

    def extend(self, items: Any) -> None:
        self.items.extend(items)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.entries[key] = value

    @property
    def class_path(self) -> str:
        return f"{self.module}.{self.name}"

    def captured(self) -> dict[str, Any]:
        captured: dict[str, Any] = {}
        if self.args:
            captured["args"] = list(self.args)
        if self.kwargs:
            captured["kwargs"] = self.kwargs
        if self.state is not None:
            captured["state"] = self.state
        if self.items:
            captured["items"] = self.items
        if self.entries:
            captured["entries"] = self.entries
        return captured

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}={v!r}" for k, v in self.captured().items())
        return f"<not loaded: {self.class_path}{' ' + parts if parts else ''}>"


def _opaque_class(module: str, name: str) -> type[OpaqueObject]:
    return type(name, (OpaqueObject,), {"module": module, "name": name, "__module__": __name__})


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """How protocols 0-2 rebuild ``bytes`` (``_codecs.encode(text, "latin1")``)."""
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"refused to decode bytes with {encoding!r}")
    return codecs.encode(text, "latin1")


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """How protocols 0-1 rebuild instances (``copyreg._reconstructor``)."""
    if isinstance(cls, type) and issubclass(cls, OpaqueObject):
        return cls() if state is None else cls(state)
    safe = set(SAFE_CLASSES.values())
    if cls in safe and base in safe:
        return copyreg._reconstructor(cls, base, state)  # type: ignore[attr-defined]
    return _opaque_class("copyreg", "_reconstructor")(cls, base, state)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds plain data and nothing that could run code."""

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (protocols 0-2), mapped as the default find_class maps them.
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) == ("_codecs", "encode"):
            return _latin1_bytes
        if (module, name) == ("copyreg", "_reconstructor"):
            return _reconstructor
        return SAFE_CLASSES.get((module, name)) or _opaque_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        return _opaque_class("persistent", str(pid))()


def restricted_loads(data: bytes) -> Any:
    return RestrictedUnpickler(io.BytesIO(data)).load()


@dataclass
class StoredValue:
    """A value as found in the cache: its bytes as stored and what they decode to."""

    #: The bytes as stored, or None where the client library hides them (memcached).
    raw: bytes | None
    value: Any = None
    #: How the bytes were read: "pickle", "int", "raw", "json", "undecodable".
    encoding: str = "pickle"
    error: str | None = None


def decode_pickle(raw: bytes, payload: bytes, unsafe: bool = False) -> StoredValue:
    """``payload`` (a pickle inside the stored bytes ``raw``) loaded restrictedly,
    or fully with ``unsafe``; a corrupt or foreign value is reported, not raised."""
    try:
        value = pickle.loads(payload) if unsafe else restricted_loads(payload)
    except Exception as exc:
        return StoredValue(
            raw, None, "undecodable", f"cannot unpickle: {type(exc).__name__}: {exc}"
        )
    return StoredValue(raw, value, "pickle")


def decode_custom(raw: bytes, payload: bytes, serializer: Any, unsafe: bool) -> StoredValue:
    """A value written by a non-default ``CACHE_SERIALIZER``.

    cachelib's JSON serializer is read as JSON; any other serializer is the
    app's own code, which only runs with ``unsafe``.
    """
    if type(serializer).__name__ == "JSONSerializer":
        try:
            return StoredValue(raw, json.loads(payload), "json")
        except ValueError as exc:
            return StoredValue(raw, None, "undecodable", f"invalid JSON: {exc}")
    if not unsafe:
        return StoredValue(
            raw,
            None,
            "undecodable",
            f"written by the custom serializer {type(serializer).__name__}; "
            "pass --unsafe-unpickle to let it decode the value, or --raw",
        )
    return StoredValue(raw, serializer.loads(payload), "custom")


def decode_redis_value(raw: bytes, serializer: Any = None, unsafe: bool = False) -> StoredValue:
    """Read a value the way cachelib's Redis serializer wrote it.

    Integers are stored as ASCII digits (so INCR works), everything else as
    ``!`` + pickle; bytes with neither shape predate cachelib 0.8 and are shown raw.
    """
    if serializer is not None:
        return decode_custom(raw, raw, serializer, unsafe)
    if raw.startswith(b"!"):
        return decode_pickle(raw, raw[1:], unsafe)
    try:
        return StoredValue(raw, int(raw), "int")
    except ValueError:
        return StoredValue(raw, raw, "raw")


# --- operator input ----------------------------------------------------------------------

VALUE_TYPES = ("str", "int", "float", "json", "bytes")


def parse_input_value(data: bytes, as_type: str, from_stdin: bool = False) -> Any:
    """The Python value an operator means by ``data`` read as ``as_type``.

    From standard input one trailing newline is dropped for ``str``, so that
    ``echo hello | cachectl set greeting -`` stores ``"hello"``; ``bytes`` keeps
    every byte.
    """
    if as_type == "bytes":
        return data
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"the value is not UTF-8 text; use --as bytes ({exc})") from exc
    if as_type == "str":
        return text.removesuffix("\n") if from_stdin else text
    try:
        if as_type == "int":
            return int(text.strip())
        if as_type == "float":
            return float(text.strip())
        if as_type == "json":
            return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"the value is not valid {as_type}: {exc}") from exc
    except RecursionError:
        raise UsageError(f"the value is nested too deeply to be read as {as_type}") from None
    raise UsageError(f"unknown value type {as_type!r} (use one of {', '.join(VALUE_TYPES)})")


# --- presentation --------------------------------------------------------------------------


def to_jsonable(value: Any) -> Any:
    """A JSON-ready form of a decoded value that loses no information silently:
    types JSON lacks are tagged (``{"$bytes": "..."}``, ``{"$datetime": "..."}``)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return (
            value if value == value and value not in (float("inf"), float("-inf")) else repr(value)
        )
    if isinstance(value, bytes | bytearray):
        try:
            return {"$bytes": bytes(value).decode("utf-8")}
        except UnicodeDecodeError:
            return {"$bytes_base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: to_jsonable(v) for k, v in value.items()}
        return {"$dict": [[to_jsonable(k), to_jsonable(v)] for k, v in value.items()]}
    if isinstance(value, list | tuple):
        items = [to_jsonable(v) for v in value]
        return items if isinstance(value, list) else {"$tuple": items}
    if isinstance(value, set | frozenset):
        return {"$" + type(value).__name__: sorted((to_jsonable(v) for v in value), key=repr)}
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return {"$" + type(value).__name__: value.isoformat()}
    if isinstance(value, OpaqueObject):
        return {"$object": value.class_path, **to_jsonable(value.captured())}
    return {"$" + type(value).__name__: str(value)}
