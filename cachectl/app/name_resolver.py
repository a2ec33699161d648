"""Whether the names cached pickles refer to still lead somewhere in the app's code.

``check-pickles`` asks this about each ``module.qualname`` its values name, either in
its own process (``--app``: the app is imported already) or in the app's interpreter
(``--python PATH``), where this file runs as a script: the names, a JSON list, on
standard input; the verdicts, a JSON object, on standard output. So it imports nothing
but the standard library, and keeps to syntax every Python 3 the app may run reads.

A name is resolved the way pickle resolves it, minus the code pickle would run: the
module is imported (its import-time code runs, as it does in the app itself), then each
part of the qualified name is looked up with ``inspect.getattr_static``, which reads
what is stored and never calls a property, a descriptor or a module's ``__getattr__``.

The names come from the cache, which whoever can write to it controls: a module of the
standard library that is not imported yet is not imported here (``antigravity`` opens a
browser, ``idlelib.idle`` a window), only found; a release of the app does not move the
standard library's classes. The app's own modules and its libraries are imported, as the
app imports them.
"""

import importlib
import importlib.util
import inspect
import json
import os
import sys
import sysconfig

_STDLIB = tuple(
    os.path.normcase(os.path.realpath(sysconfig.get_paths()[name])) + os.sep
    for name in ("stdlib", "platstdlib")
)


class _NotImported(Exception):
    """A standard library module found but not imported (see above)."""


def _refuse_stdlib(name: "str", spec: "object") -> "None":
    """ModuleNotFoundError where there is no module ``name`` (``spec`` None), or
    ``_NotImported`` where it is the standard library's."""
    if spec is None:
        raise ModuleNotFoundError("No module named " + repr(name), name=name)
    found = getattr(spec, "origin", None) or ""
    origin = os.path.normcase(os.path.realpath(found))
    in_stdlib = name.partition(".")[0] in getattr(sys, "stdlib_module_names", ()) or (
        origin.startswith(_STDLIB) and "site-packages" not in origin
    )
    if in_stdlib or found in ("built-in", "frozen"):
        raise _NotImported(name)


def _import(name: "str") -> "object":
    """The module ``name``: imported already, or now unless it is of the standard library
    (``_NotImported``); ImportError when there is none."""
    if name in sys.modules:
        return sys.modules[name]
    top = name.partition(".")[0]
    if top not in sys.modules:  # a top-level module is found without importing anything
        _refuse_stdlib(top, importlib.util.find_spec(top))
    spec = importlib.util.find_spec(name)  # imports the parent packages, not the module
    _refuse_stdlib(name, spec)
    return importlib.import_module(name)


def _verdict(found: "bool", why: "str | None", kind: "str | None") -> "dict[str, object]":
    return {"found": found, "why": why, "kind": kind}


def _kind(target: "object") -> "str":
    """class, function (anything else callable) or other; ``callable`` reads the type's
    call slot, running nothing of the object's."""
    if isinstance(target, type):
        return "class"
    return "function" if callable(target) else "other"


def resolve_one(path: "str") -> "dict[str, object]":
    """The verdict on one ``module.qualname``: found or not, why not, what it is now."""
    if path.startswith("("):  # an extension code, or a name built on the stack
        return _verdict(False, "not a name that can be looked up", None)
    parts = path.split(".")
    # The longest importable module prefix: "pkg.mod.Class.Inner" imports pkg.mod.
    module, at, failed_at = None, 0, 0
    failure = None  # type: str | None
    for at in range(len(parts) - 1, 0, -1):
        name = ".".join(parts[:at])
        try:
            module = _import(name)
            break
        except _NotImported:
            return _verdict(True, "the standard library's, not imported here: not checked", None)
        except ImportError as exc:
            if failure is None:  # the longest: what pickle would have imported
                failed_at = at
                failure = f"module {name} is missing"
                if getattr(exc, "name", name) != name:
                    failure = f"importing {name} fails: {type(exc).__name__}: {exc}"
        except Exception as exc:  # the module exists but its code fails on import
            return _verdict(False, f"importing {name} fails: {type(exc).__name__}: {exc}", None)
    if module is None:
        return _verdict(False, failure or f"module {parts[0]} is missing", None)
    target = module
    for index in range(at, len(parts)):
        try:
            target = inspect.getattr_static(target, parts[index])
        except AttributeError:
            if failure is not None and index < failed_at:
                return _verdict(False, failure, None)
            where = ".".join(parts[:index])
            return _verdict(False, f"{where} has no attribute {parts[index]}", None)
        except Exception as exc:  # an object built to defeat introspection
            return _verdict(False, f"{type(exc).__name__}: {exc}", None)
    if isinstance(target, (staticmethod, classmethod)):
        target = target.__func__
    return _verdict(True, None, _kind(target))


def resolve(paths: "list[str]") -> "dict[str, dict[str, object]]":
    """Verdicts by name, each name once."""
    return {path: resolve_one(path) for path in paths}


def main() -> "None":
    names = json.load(sys.stdin)
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # what the app's modules print on import is not the answer
    try:
        verdicts = resolve(names)
    finally:
        sys.stdout = real_stdout
    json.dump(verdicts, real_stdout)


if __name__ == "__main__":
    main()
