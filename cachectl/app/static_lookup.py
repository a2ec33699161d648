"""Look at an application's objects without running any of their code.

In app mode cachectl shares the process with the app: its modules, its managers,
its third-party libraries. Reading an attribute the ordinary way can run anything:
a ``property`` that renders a schema or opens a connection, a lazy descriptor that
imports a module (``six.moves``), a ``__getattr__`` that raises or logs. So every
look at an object cachectl did not create goes through this module, which reads
only what is stored: module and instance dictionaries, class dictionaries along
the MRO (``inspect.getattr_static``), and the slots and built-in attributes whose
getters are C code of the interpreter itself (``__code__``, ``__closure__``,
``__func__``, a ``__slots__`` member). A property, a descriptor of a library or
an app, and ``__getattr__`` are never called here; the one place that may call
them is :func:`evaluate_named_path`, for an attribute path the operator typed.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types
from collections.abc import Iterator
from typing import Any

#: What the interpreter's own attribute getters look like: reading through them runs
#: C code only (a slot, a frame-free getter), never a function of the app's.
_INTERPRETER_DESCRIPTORS = (types.GetSetDescriptorType, types.MemberDescriptorType)

#: Returned when an attribute is not stored where a static read can see it.
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()

#: Values compared by content when settings dictionaries are matched; anything else
#: is compared by identity (a foreign ``__eq__`` could be slow, raise or log).
_PLAIN_TYPES = (str, bytes, int, float, bool, type(None))


def read(holder: Any, name: str, default: Any = None) -> Any:
    """``holder.name`` as stored: the raw object from an instance, module or class
    dictionary (a function stays unbound, a ``property`` stays the property object),
    or the value of an interpreter-level slot. ``default`` when nothing is stored
    there or when reading it would run code that is not the interpreter's."""
    try:
        found = inspect.getattr_static(holder, name)
    except AttributeError:
        return default
    except Exception:  # an object built to defeat introspection: not readable
        return default
    if type(found) in _INTERPRETER_DESCRIPTORS:
        try:
            return found.__get__(holder, type(holder))
        except Exception:  # an empty slot, or a getter refusing this holder
            return default
    return found


def is_descriptor(value: Any) -> bool:
    """A stored object that the ordinary attribute read would call (a property, a
    lazy attribute, any object whose class defines ``__get__``), other than a plain
    function, a classmethod or staticmethod wrapper, or the interpreter's own."""
    kind = type(value)
    if kind in (types.FunctionType, types.BuiltinFunctionType, classmethod, staticmethod):
        return False
    return read(kind, "__get__", None) is not None


def namespace(holder: Any) -> dict[str, Any]:
    """The dictionary an object stores its own attributes in (a module's globals, an
    instance's ``__dict__``), read through the interpreter's own getter; empty when
    the object keeps none or its class replaced that getter with code of its own."""
    stored = read(holder, "__dict__", None)
    return stored if type(stored) is dict else {}


def is_module(value: Any) -> bool:
    """A module object (lazy-module subclasses included), decided by type alone:
    ``isinstance`` may ask the object's ``__class__``, which a proxy computes."""
    return issubclass(type(value), types.ModuleType)


def is_class(value: Any) -> bool:
    return issubclass(type(value), type)


def unwrap_static(function: Any, limit: int = 100) -> Iterator[Any]:
    """``function`` and each function it wraps (``__wrapped__``, as ``functools.wraps``
    records it), outermost first, read statically and cycle-safe."""
    seen: set[int] = set()
    while function is not None and id(function) not in seen and len(seen) < limit:
        seen.add(id(function))
        yield function
        function = read(function, "__wrapped__")


def class_attribute_names(holder: Any) -> list[str]:
    """The names an object offers, from its stored dictionaries only (for a "did you
    mean" hint, where ``dir()`` would call the object's ``__dir__``)."""
    names = set(namespace(holder))
    kinds = [holder] if is_class(holder) else []
    kinds.append(type(holder))
    for kind in kinds:
        try:
            mro = type.__dict__["__mro__"].__get__(kind)
        except Exception:
            continue
        for klass in mro:
            names.update(type.__dict__["__dict__"].__get__(klass))
    return sorted(name for name in names if isinstance(name, str))


def property_alias(holder: Any, name: str) -> str | None:
    """For a property whose getter only returns another attribute of ``self``
    (``return self._data_cache``), the name of that attribute, read from the
    getter's bytecode without calling it: such a property can be named statically."""
    import dis  # only app mode names caches this way

    found = read(type(holder), name)
    getter = found.fget if type(found) is property else None
    code = read(getter, "__code__")
    if type(code) is not types.CodeType or code.co_argcount != 1:
        return None
    steps = [
        step
        for step in dis.get_instructions(code)
        if step.opname not in ("RESUME", "NOP", "CACHE", "COPY_FREE_VARS", "EXTENDED_ARG")
    ]
    if len(steps) != 3:
        return None
    load_self, load_attribute, give_back = steps
    if (
        load_self.opname.startswith("LOAD_FAST")
        and load_self.argval == code.co_varnames[0]
        and load_attribute.opname == "LOAD_ATTR"
        and give_back.opname == "RETURN_VALUE"
        and isinstance(load_attribute.argval, str)
    ):
        return load_attribute.argval
    return None


def same_plain_content(left: Any, right: Any, depth: int = 0) -> bool:
    """Equal settings dictionaries, comparing only plain values by content (strings,
    numbers, and lists, tuples and dicts of them) and anything else by identity, so
    no foreign ``__eq__`` runs."""
    if left is right:
        return True
    if depth > 20:
        return False
    kind = type(left)
    if kind is not type(right):
        return False
    if kind in _PLAIN_TYPES:
        return bool(left == right)
    if kind in (list, tuple):
        return len(left) == len(right) and all(
            same_plain_content(a, b, depth + 1) for a, b in zip(left, right)
        )
    if kind is dict or issubclass(kind, dict):
        if len(left) != len(right) or not all(type(key) in _PLAIN_TYPES for key in left):
            return False
        return all(
            key in right and same_plain_content(value, dict.__getitem__(right, key), depth + 1)
            for key, value in dict.items(left)
        )
    return False


class NamedPathError(Exception):
    """An attribute path the operator named could not be evaluated."""


def evaluate_named_path(path: str) -> Any:
    """The object ``module:attribute.attribute`` names, evaluated the ordinary way
    (properties run): only ever called with a path the operator typed. Modules the
    app already imported are taken as they are; importing one is the operator's
    choice too, as with ``flask --app``."""
    module_name, _, attributes = path.partition(":")
    try:
        target: Any = sys.modules.get(module_name) or importlib.import_module(module_name)
    except Exception as exc:
        raise NamedPathError(f"{module_name} does not import: {type(exc).__name__}: {exc}") from exc
    walked = module_name
    for attribute in attributes.split(".") if attributes else ():
        walked = f"{walked}{':' if walked == module_name else '.'}{attribute}"
        try:
            target = getattr(target, attribute)
        except Exception as exc:
            message = str(exc).splitlines()[0] if str(exc) else ""
            raise NamedPathError(
                f"{walked} failed: {type(exc).__name__}{': ' + message if message else ''}"
            ) from exc
    return target
