"""The restricted unpickler: builds plain data from a pickle and nothing else.

Loading a pickle can run any code its author chose. Here every opcode that imports,
calls or allocates is replaced: a global becomes a ``ClassRef``, a call of an allowed
value type is checked and made, any other call becomes an ``OpaqueObject`` that records
how the pickle wanted to build it. Work is counted against ``DecodeLimits``, so a value
planted to exhaust the reader stops early, marked.
"""

from __future__ import annotations

import _compat_pickle
import collections
import copyreg
import datetime
import io
import pickle
import struct
import time
import uuid
from collections.abc import Callable, Iterable
from typing import IO, Any, ClassVar

from cachectl.codec.limits import DecodeLimits, current_limits
from cachectl.codec.placeholders import ClassRef, Marker, OpaqueObject

# --- the restricted unpickler: classes it may build, value types whose construction runs
# no code chosen by the pickle's author (from arguments pickle itself writes for them).
_SAFE: tuple[type, ...] = (bool, int, float, complex, str, bytes, bytearray, list, tuple, dict)
_SAFE += (set, frozenset, object, datetime.datetime, datetime.date, datetime.time)
_SAFE += (datetime.timedelta, datetime.timezone, uuid.UUID, uuid.SafeUUID)
SAFE_CLASSES = {(c.__module__, c.__name__): c for c in (*_SAFE, collections.OrderedDict)}


def safe_class(module: str, name: str) -> type | None:
    """The allowed class a pickle names, or None. ``decimal.Decimal`` is allowed too, and
    imported only when a pickle names it (its C module costs every start a millisecond)."""
    if (module, name) == ("decimal", "Decimal"):
        import decimal

        return decimal.Decimal
    return SAFE_CLASSES.get((module, name))


_CONTAINERS = (list, tuple, set, frozenset, dict, collections.OrderedDict)
_ARGUMENTS: tuple[type, ...] = (int, float, bool, complex, str, bytes, type(None), tuple)
_ARGUMENTS += (datetime.timezone, datetime.timedelta, uuid.SafeUUID)
_BINARY_SOURCES = (bytes, bytearray, list, tuple)
_OWN_KIND: dict[type, tuple[type, ...]] = {
    str: (str,),
    bytes: _BINARY_SOURCES,
    bytearray: _BINARY_SOURCES,
}
_CODECS = {"latin1": "latin-1", "latin-1": "latin-1", "utf-8": "utf-8", "ascii": "ascii"}
#: Longer text is not parsed into numbers (decimal int() of it is quadratic); wider
#: integers are not built (comparing one with a Decimal key of its hash takes minutes).
MAX_NUMBER_TEXT, _MAX_INT_BYTES = 5000, 8192
#: pickle's own pure-Python unpickler, private but stable (the C one cannot be bounded).
_UNPICKLER: Any = pickle._Unpickler
_UNFRAMER: Any = pickle._Unframer  # type: ignore[attr-defined]
_STOP: Any = pickle._Stop  # type: ignore[attr-defined]
_UNWRITTEN = "not called with arguments of the kinds pickle writes for it"


class _Refused(Exception): ...  # a call to an allowed class with arguments pickle never writes


class _Limit(Exception): ...  # a limit reached while decoding: what was built is returned


class _Decoder(_UNPICKLER):
    """pickle's unpickler, every opcode that imports, calls or allocates replaced (a global
    is a ``ClassRef``, a call a checked build or an ``OpaqueObject``), work counted."""

    dispatch: ClassVar[dict[int, Any]] = dict(_UNPICKLER.dispatch)

    def __init__(self, data: bytes, limits: DecodeLimits) -> None:
        super().__init__(io.BytesIO(data))
        self.limits, self.count, self.data_left = limits, 0, limits.max_bytes
        self.deadline = time.monotonic() + limits.max_seconds
        self.depths: dict[int, int] = {}  # nesting of tuples and frozensets, by id, if > 1
        self.stopped: str | None = None
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []

    def load(self) -> Any:
        self._unframer = _UNFRAMER(self._file_read, self._file_readline)
        self.read, self.readinto = self._unframer.read, self._unframer.readinto
        self.readline, self.append, self.proto = self._unframer.readline, self.stack.append, 0
        read, dispatch, limit, ops = self.read, self.dispatch, self.limits.max_elements, 0
        try:
            while key := read(1):
                dispatch[key[0]](self)
                self.count, ops = self.count + 1, ops + 1
                if self.count > limit:
                    raise _Limit(f"{limit:,} elements")
                if not ops & 255 and time.monotonic() > self.deadline:  # see insert
                    raise _Limit(f"{self.limits.max_seconds:g} s")
            raise EOFError
        except _STOP as stop:
            return stop.value
        except _Limit as reached:
            return self.partial(str(reached))
        except IndexError:  # an opcode took more than the stack holds
            raise pickle.UnpicklingError("unpickling stack underflow") from None

    def charge(self, elements: int = 0, data: int = 0) -> None:
        """Count what a call is about to build from its arguments, before it does."""
        self.count, self.data_left = self.count + elements, self.data_left - data
        if self.count > self.limits.max_elements:
            raise _Limit(f"{self.limits.max_elements:,} elements")
        if self.data_left < 0:
            raise _Refused(f"calls in the pickle would build over {self.limits.max_bytes:,} bytes")

    def partial(self, what: str) -> Any:
        """What was built at a limit, pending items put where APPENDS would, marked."""
        self.stopped, marker = what, Marker("truncated", f"<… truncated while decoding: {what}>")
        levels = [*self.metastack, self.stack]
        for below, pending in reversed(list(zip(levels, levels[1:]))):
            if below and isinstance(below[-1], (list, OpaqueObject)):
                below[-1].extend(pending)
        root = levels[0][-1] if levels[0] else list(levels[1]) if len(levels) > 1 else []
        if isinstance(root, dict):
            root[marker] = marker
        elif isinstance(root, (list, set, OpaqueObject)):
            (root.add if isinstance(root, set) else root.append)(marker)
        return root if isinstance(root, (list, set, dict, OpaqueObject)) else [root, marker]

    def weigh(self, value: Any) -> Any:
        self.count += 3 if type(value) in (OpaqueObject, set, frozenset) else 0  # their memory
        return value

    def insert(self, target: Any, items: Iterable[Any], pairs: bool = True) -> Any:
        """Into a dict or set, in time: each key made to collide scans all the others."""
        for n, item in enumerate(items):
            target.__setitem__(*item) if pairs else target.add(item)
            if not n & 63 and time.monotonic() > self.deadline:
                raise _Limit(f"{self.limits.max_seconds:g} s")
        return target

    def nested(self, value: Any, items: Iterable[Any]) -> Any:
        """A tuple or frozenset unless deeper than ``max_depth`` (hashing one recurses in C)."""
        nesting = (self.depths.get(id(i), 1) for i in items if type(i) in (tuple, frozenset))
        depth = 1 + max(nesting, default=0)
        if depth > self.limits.max_depth:
            return Marker("truncated", f"<… truncated: nested over {depth - 1} levels>")
        if depth > 1 or id(value) in self.depths:  # the id of a freed one may recur
            self.depths[id(value)] = depth
        return value

    def frozen(self, items: list[Any] | Any) -> Any:  # hashed in time first, then as pickle does
        members = self.insert(set(), items, pairs=False)
        return self.weigh(self.nested(frozenset(items), members))

    def find_class(self, module: str, name: str) -> ClassRef:
        if self.proto < 3:  # Python 2 names, mapped as pickle maps them
            module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        return ClassRef(module, name, safe_class(module, name))

    def persistent_load(self, pid: Any) -> Any:
        return OpaqueObject("", "(persistent id)", (pid,))

    def get_extension(self, code: int) -> None:  # pickle's caches what it finds process-wide
        key = getattr(copyreg, "_inverted_registry", {}).get(code)
        self.append(self.find_class(*key) if key else ClassRef("", f"(extension code {code})"))

    def _instantiate(self, cls: Any, args: list[Any]) -> None:  # INST and OBJ
        self.append(self.call(cls, tuple(args), {}, new=not args))

    def call(self, func: Any, args: Any, kwargs: Any, new: bool = False) -> Any:
        """``func(*args, **kwargs)`` (``__new__`` if ``new``), if allowed; else recorded."""
        if type(args) is not tuple or type(kwargs) is not dict:  # pickle would fail
            args, kwargs = (args, kwargs), {}
        if not isinstance(func, ClassRef):
            return self.weigh(OpaqueObject("", "", args, kwargs=kwargs, function=func))
        helper = func.path if not new and func.target is None else ""
        try:
            if func.target is not None:
                return self.weigh(self.build(func.target, args, kwargs, new))
            if helper == "_codecs.encode":  # how protocols 0-2 write bytes
                return self.text(bytes, args if len(args) > 1 else (*args, "utf-8"), kwargs)
            if helper == "copyreg._reconstructor":  # how protocols 0-1 write objects
                return self.reconstruct(*args)
            if helper == "copyreg.__newobj__":
                return self.call(args[0], args[1:], kwargs, new=True)
            if helper == "copyreg.__newobj_ex__":
                return self.call(args[0], args[1], args[2], new=True)
        except (_Limit, _STOP):
            raise
        except Exception as exc:
            why = str(exc) if isinstance(exc, _Refused) else f"{type(exc).__name__}: {exc}"
            shown = OpaqueObject(func.module, func.name, args, kwargs=kwargs, refused=why[:300])
            return self.weigh(shown)
        return self.weigh(OpaqueObject(func.module, func.name, args, kwargs=kwargs))

    def build(self, cls: Any, args: tuple[Any, ...], kwargs: dict[str, Any], new: bool) -> Any:
        if new and cls in (list, dict, set, bytearray, collections.OrderedDict):  # items follow
            return cls()
        if new and cls is uuid.UUID and not args and not kwargs:  # BUILD gives the number
            return object.__new__(uuid.UUID)
        if cls in _CONTAINERS:
            return self.container(cls, args, kwargs)
        if cls in (bytes, bytearray, str):
            return self.text(cls, args, kwargs)
        values = (*args, *kwargs.values())  # short scalars: numbers, dates, a UUID's hex
        if (cls is object and values) or not all(type(v) in _ARGUMENTS for v in values):
            raise _Refused(_UNWRITTEN)
        if any(type(v) in (str, bytes) and len(v) > MAX_NUMBER_TEXT for v in values):
            raise _Refused(_UNWRITTEN)
        return cls(*args, **kwargs)  # the class checks the values itself

    def text(self, cls: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """str, bytes, bytearray from their own kind, or text and a codec; never from an
        integer (``bytes(10**10)``), nor ``str()`` of anything else (a repr, of a bomb)."""
        source = args[0] if args else cls()
        if cls is not str and type(source) in (int, bool):
            raise _Refused("the size would come from an integer in the pickle")
        named = args[1] if len(args) == 2 and type(args[1]) is str and cls is not str else ""
        codec = _CODECS.get(named.lower().replace("_", "-"))
        if kwargs or not (codec if len(args) == 2 else len(args) < 2):
            raise _Refused(_UNWRITTEN)
        if type(source) not in ((str,) if codec else _OWN_KIND[cls]):
            raise _Refused(_UNWRITTEN)
        self.charge(elements=1, data=len(source) * (4 if codec else type(source) is not cls))
        return cls(source, codec) if codec else cls(source)

    def container(self, cls: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        source = args[0] if args else ()
        keywords = not kwargs or cls in (dict, collections.OrderedDict)
        if len(args) > 1 or not keywords or type(source) not in (*_CONTAINERS, str, bytes):
            raise _Refused(_UNWRITTEN)
        self.charge(elements=len(source) + len(kwargs))
        if cls in (list, tuple):
            return list(source) if cls is list else self.nested(tuple(source), source)
        if cls in (set, frozenset):
            return self.insert(set(), source, pairs=False) if cls is set else self.frozen(source)
        pairs = source.items() if isinstance(source, dict) else source
        return self.insert(self.insert(cls(), pairs), kwargs.items())

    def reconstruct(self, cls: Any, base: Any, state: Any) -> Any:
        """``copyreg._reconstructor``: ``base.__new__(cls, state)``, then ``base.__init__``."""
        if not isinstance(cls, ClassRef) or not isinstance(base, ClassRef):
            raise _Refused(_UNWRITTEN)
        if cls.target is None:  # an app class: nothing to import, its state recorded
            return OpaqueObject(cls.module, cls.name, () if state is None else (state,))
        if base.target is object and state is None:
            return self.call(cls, (), {}, new=True)
        if cls.target is not base.target:
            raise _Refused(_UNWRITTEN)
        return self.call(cls, () if state is None else (state,), {})

    def built(self, inst: Any, state: Any) -> Any:
        """BUILD: state for placeholders, and a UUID's number; never set on anything else."""
        if isinstance(inst, OpaqueObject):
            inst.state = state
        elif type(inst) is uuid.UUID and not hasattr(inst, "int") and _uuid_state(state):
            uuid.UUID.__setstate__(inst, state)  # type: ignore[attr-defined]
        elif state is not None and not (type(state) is dict and not state):
            cls = type(inst)
            path = inst.path if cls is ClassRef else f"{cls.__module__}.{cls.__qualname__}"
            why = f"state is not set on {'a class' if cls is ClassRef else path}"
            module, _, name = path.rpartition(".")
            return self.weigh(OpaqueObject(module, name, (inst,), state=state, refused=why))
        return inst

    def tupled(self, size: int) -> None:  # TUPLE (size 0: back to the mark), TUPLE1-3
        if len(self.stack) < size:
            raise IndexError
        items = self.stack[-size:] if size else self.pop_mark()
        del self.stack[len(self.stack) - size :]
        self.append(self.nested(tuple(items), items))

    def number(self, long4: bool) -> None:
        """INT, LONG (text), LONG4: too long a number is not built (see _MAX_INT_BYTES)."""
        data = self.read(max(struct.unpack("<i", self.read(4))[0], 0)) if long4 else self.readline()
        if len(data) > (_MAX_INT_BYTES if long4 else MAX_NUMBER_TEXT):
            self.append(Marker("truncated", f"<… integer of {len(data):,} bytes not decoded>"))
        elif long4:
            self.append(int.from_bytes(data, "little", signed=True))
        else:
            digits = data[:-1].removesuffix(b"L")
            self.append(data == b"01\n" if data in (b"00\n", b"01\n") else int(digits, 0))

    def into_top(self, pairs: bool) -> None:  # SETITEMS, ADDITEMS
        items = self.pop_mark()
        self.insert(self.stack[-1], _pairs(items) if pairs else items, pairs)

    def pushed(self, value: Any) -> None:  # after a pop_mark in the argument switched stacks
        self.append(value)


def _pairs(items: list[Any]) -> Iterable[tuple[Any, Any]]:
    if len(items) % 2:
        raise pickle.UnpicklingError("an odd number of items for a dict")
    return zip(items[::2], items[1::2])  # an even count: zip stops at neither end early


def _reduced(d: _Decoder, new: bool, ex: bool = False) -> None:  # REDUCE, NEWOBJ(_EX)
    kwargs = d.stack.pop() if ex else {}
    args = d.stack.pop()
    d.stack[-1] = d.call(d.stack[-1], args, kwargs, new)


#: The opcodes that call, build state, nest, insert or allocate, replaced.
_OPCODES: dict[bytes, Callable[[_Decoder], None]] = {
    pickle.REDUCE: lambda d: _reduced(d, new=False),
    pickle.NEWOBJ: lambda d: _reduced(d, new=True),
    pickle.NEWOBJ_EX: lambda d: _reduced(d, new=True, ex=True),
    pickle.BUILD: lambda d: d.stack.__setitem__(-1, d.built(d.stack[-2], d.stack.pop())),
    pickle.TUPLE: lambda d: d.tupled(0),
    pickle.TUPLE1: lambda d: d.tupled(1),
    pickle.TUPLE2: lambda d: d.tupled(2),
    pickle.TUPLE3: lambda d: d.tupled(3),
    pickle.FROZENSET: lambda d: d.pushed(d.frozen(d.pop_mark())),
    pickle.EMPTY_SET: lambda d: d.append(d.weigh(set())),
    pickle.DICT: lambda d: d.pushed(d.insert({}, _pairs(d.pop_mark()))),
    pickle.SETITEMS: lambda d: d.into_top(pairs=True),
    pickle.ADDITEMS: lambda d: d.into_top(pairs=False),
    pickle.BYTEARRAY8: lambda d: d.append(bytearray(d.read(*struct.unpack("<Q", d.read(8))))),
    pickle.LONG4: lambda d: d.number(long4=True),
    pickle.INT: lambda d: d.number(long4=False),
    pickle.LONG: lambda d: d.number(long4=False),
}
_Decoder.dispatch.update({opcode[0]: load for opcode, load in _OPCODES.items()})


def _uuid_state(state: Any) -> bool:
    """The state ``UUID.__getstate__`` writes: a 128-bit number, maybe is_safe."""
    if type(state) is not dict or not {"int"} <= set(state) <= {"int", "is_safe"}:
        return False
    number, safe = state["int"], state.get("is_safe", -1)
    return type(number) is int and 0 <= number < 1 << 128 and safe in (0, -1, None)


def load_restricted(data: bytes | memoryview, limits: DecodeLimits) -> tuple[Any, str | None]:
    decoder = _Decoder(bytes(data), limits)
    return decoder.load(), decoder.stopped


class Undecodable:
    """What a client library hands back for a value it could not unpickle (memcached
    clients decode values themselves): the reason, for the operator, instead of an
    exception out of the library or a value that looks missing."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def loads_or_undecodable(data: bytes | memoryview) -> Any:
    """``restricted_loads``, a corrupt pickle being an ``Undecodable``, never raised."""
    try:
        return restricted_loads(data)
    except Exception as exc:
        return Undecodable(f"cannot unpickle: {type(exc).__name__}: {exc}")


class RestrictedUnpickler:
    """``pickle.Unpickler(file).load()``, restricted: python-memcached makes one a value."""

    def __init__(self, file: IO[bytes], *args: Any, **kwargs: Any) -> None:
        self.file = file

    def load(self) -> Any:
        return loads_or_undecodable(self.file.read())


def restricted_loads(data: bytes | memoryview, limits: DecodeLimits | None = None) -> Any:
    """The value of a pickle, built restrictedly; a marker for one over ``max_bytes``."""
    limits = limits or current_limits()
    if len(data) > limits.max_bytes:
        return Marker("truncated", f"<… not decoded: {len(data):,} bytes of pickle>")
    return load_restricted(data, limits)[0]
