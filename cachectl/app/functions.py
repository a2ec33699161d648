"""Find a memoized function by name, and read the operator's arguments for it.

Flask-Caching needs the function object to form its keys; an operator has a
dotted name. This module turns the name into what key derivation needs: the
module and qualified name, the signature of the undecorated function, and
whether it is a method or classmethod. When the function cannot be imported
(a host with only the config), the operator gives the signature as text.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import inspect
import keyword
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from cachectl.app import static_lookup as static
from cachectl.errors import UsageError
from cachectl.keys import CallSignature, class_id
from cachectl.runtime.importing import on_sys_path


@dataclass
class MemoizedFunction:
    """A memoized function as cachectl knows it."""

    module: str
    qualname: str
    signature: CallSignature | None
    #: The decorated function (with ``make_cache_key``), when it could be imported.
    decorated: Any = None
    #: The undecorated function, when it could be imported (for source_check).
    undecorated: Any = None
    #: What the function was found on (its class, for a classmethod's ``cls``).
    owner: Any = None
    #: Whether it was imported here (else it is known by its name alone).
    imported: bool = False
    #: Why it could not be imported (``ModuleNotFoundError: No module named 'x'``).
    import_problem: str | None = None
    #: The signature ``check_call`` binds to, built once (``delete-memoized --each``
    #: checks every line's call against it).
    _binding: tuple[inspect.Signature, tuple[None, ...], int] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def memoized(self) -> bool:
        """Whether an imported function carries @cache.memoize's marks."""
        return self.decorated is not None and static.read(self.decorated, "uncached") is not None

    def _bound(self, signature: CallSignature) -> tuple[inspect.Signature, tuple[None, ...], int]:
        """The signature ``check_call`` binds to, the instance's or class's stand-in before
        the arguments, and how many positional parameters have no default: built once."""
        if self._binding is None:
            leading: tuple[None, ...] = (None,) if self.is_method or self.is_classmethod else ()
            binding = self._binding_signature(signature)
            required = sum(
                parameter.default is inspect.Parameter.empty
                and parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
                for parameter in binding.parameters.values()
            )
            self._binding = (binding, leading, required)
        return self._binding

    def positional_arity(self) -> tuple[int, int]:
        """The fewest and the most positional arguments (without the instance or class) a
        call given no keyword argument may have: between them ``check_call`` passes such
        a call without binding it (``delete-memoized --each`` checks 100,000 lines so)."""
        if self.signature is None:
            return 0, sys.maxsize
        _, leading, required = self._bound(self.signature)
        most = sys.maxsize if self.signature.has_var_positional else len(self.signature.positional)
        return max(required - len(leading), 0), most - len(leading)

    def check_call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Refuse arguments that cannot be a call of the function (too many, an
        unknown keyword, a missing required one): no key could match them."""
        if self.signature is None:
            return
        # Without keywords, what bind() checks is only how many: enough for every
        # parameter without a default, and not too many (unless *args).
        if not kwargs:
            fewest, most = self.positional_arity()
            if fewest <= len(args) <= most:
                return
        binding, leading, _ = self._bound(self.signature)
        try:
            binding.bind(*leading, *args, **kwargs)
        except TypeError as exc:
            raise UsageError(f"the arguments do not fit {self.dotted}: {exc}") from None

    @staticmethod
    def _binding_signature(signature: CallSignature) -> inspect.Signature:
        parameters = [
            inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default)
            for name, default in signature.positional
        ]
        if signature.has_var_positional:
            parameters.append(inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL))
        parameters += [
            # Keyword-only defaults are not known from every source: never required.
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None)
            for name in signature.keyword_only
        ]
        if signature.has_var_keyword:
            parameters.append(inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD))
        return inspect.Signature(parameters)

    @property
    def dotted(self) -> str:
        return f"{self.module}.{self.qualname}"

    @property
    def first_parameter(self) -> str | None:
        return self.signature.first if self.signature else None

    @property
    def is_method(self) -> bool:
        return self.first_parameter == "self"

    @property
    def is_classmethod(self) -> bool:
        return self.first_parameter == "cls"

    def class_id(self) -> str:
        """``repr()`` of the class a classmethod belongs to, derived from the path."""
        owner, _, _ = self.qualname.rpartition(".")
        if not owner:
            raise UsageError(f"{self.dotted} takes cls but is not inside a class")
        return class_id(self.module, owner)

    def source(self) -> str:
        """The function's source, as ``source_check`` hashes it."""
        if self.undecorated is None:
            raise UsageError(
                f"source_check needs the source of {self.dotted}: it must be importable here"
            )
        return inspect.getsource(self.undecorated)


def split_path(path: str) -> tuple[str | None, str]:
    """``module:qualname`` is explicit; in ``a.b.c`` the module part is found by importing.
    A name that cannot be a function's (empty parts, not UTF-8) is refused (exit 2)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{path!r} is not valid UTF-8, so it cannot name a function") from None
    module, sep, qualname = path.partition(":")
    parts = [*module.split("."), *qualname.split(".")] if sep else path.split(".")
    if (not sep and len(parts) < 2) or not all(
        part.isidentifier() or part == "<locals>" for part in parts
    ):
        raise UsageError(
            f"{path!r} is not a function name: give it as module.qualname or module:qualname"
        )
    return (module, qualname) if sep else (None, path)


def _missing(owner: Any, name: str, where: str) -> UsageError:
    """The error for a name that is not there, with the close matches as a hint
    (from what the object stores: ``dir()`` would run its ``__dir__``)."""
    offered = [n for n in static.class_attribute_names(owner) if not n.startswith("__")]
    close = difflib.get_close_matches(name, offered)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return UsageError(f"{where} has no attribute {name!r}{hint}")


def _import_longest_prefix(dotted: str) -> tuple[Any, str, str]:
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            return importlib.import_module(module_name), module_name, ".".join(parts[cut:])
        except ModuleNotFoundError as exc:
            if exc.name is not None and not module_name.startswith(exc.name):
                raise  # the module exists but one of its own imports is missing
    raise ModuleNotFoundError(f"no importable module in {dotted!r}", name=parts[0])


def _resolve(owner: Any, qualname: str) -> tuple[Any, Any]:
    """The attribute at ``qualname`` and the object it was found on. Each step is
    read as stored (``static_lookup``): a class attribute stays raw, so classmethod
    and staticmethod wrappers stay visible. Only where the stored object is a
    descriptor of the app's or a library's own (a property on a path the operator
    typed) is it evaluated, since the operator named exactly that attribute."""
    parent = None
    current = owner
    where = static.read(owner, "__name__") or "the module"
    for part in qualname.split("."):
        parent = current
        found = static.read(current, part, static.MISSING)
        if found is static.MISSING:
            raise _missing(current, part, f"module {where}" if parent is owner else where)
        if static.is_descriptor(found) and not static.is_module(current):
            try:
                found = getattr(current, part)
            except Exception as exc:
                raise UsageError(
                    f"{where}.{part} failed when read: {type(exc).__name__}: {exc}"
                ) from None
        current = found
        where = f"{where}.{part}"
    return current, parent


def _undecorated(decorated: Any) -> Any:
    """What the memoize decorator wrapped (its ``uncached``), else the innermost
    function of the ``__wrapped__`` chain, read statically."""
    uncached = static.read(decorated, "uncached")
    if uncached is not None:
        return uncached
    innermost = decorated
    for innermost in static.unwrap_static(decorated):  # noqa: B007
        pass
    return innermost


def locate_function(path: str, search_paths: tuple[str, ...] = ()) -> MemoizedFunction:
    """Import the function at ``path`` (``pkg.mod.func``, ``pkg.mod:Class.method``)
    with the current directory first on sys.path, as ``flask --app`` has it."""
    module_name, qualname = split_path(path)
    try:
        with on_sys_path(os.getcwd(), *search_paths):
            if module_name is None:
                module, module_name, qualname = _import_longest_prefix(qualname)
            else:
                module = importlib.import_module(module_name)
    except ImportError as exc:
        raise LookupError(f"{type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # the module's own import-time code failed
        raise LookupError(f"importing it failed: {type(exc).__name__}: {exc}") from exc
    # The module imports: the function must be in it (a typo must not pass as a
    # function that is merely not importable here).
    found, owner = _resolve(module, qualname)
    wrapper = issubclass(type(found), (classmethod, staticmethod))
    decorated = static.read(found, "__func__") if wrapper else found
    if not callable(decorated):
        raise UsageError(f"{path} is not a function")
    undecorated = _undecorated(decorated)
    module_of, qualname_of = (
        static.read(undecorated, "__module__"),
        static.read(undecorated, "__qualname__"),
    )
    if not isinstance(module_of, str) or not isinstance(qualname_of, str):
        raise UsageError(f"{path} is not a function (it has no module and qualified name)")
    try:
        signature = inspect.signature(undecorated)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"the signature of {path} cannot be read: {exc}") from None
    return MemoizedFunction(
        module=module_of,
        qualname=qualname_of,
        signature=CallSignature.from_signature(signature),
        decorated=decorated if static.read(decorated, "make_cache_key") is not None else None,
        undecorated=undecorated,
        owner=owner,
        imported=True,
    )


def function_from_path(path: str, signature_text: str | None) -> MemoizedFunction:
    """A function known only by its path (and optionally a signature given as text)."""
    module_name, qualname = split_path(path)
    if module_name is None:
        module_name, _, qualname = qualname.rpartition(".")
    signature = parse_signature(signature_text) if signature_text else None
    return MemoizedFunction(module_name, qualname, signature)


def parse_signature(text: str) -> CallSignature:
    """``"(user_id, role='member', *args, **kw)"`` as a signature; defaults must be
    literals, so nothing the operator typed is executed."""
    source = text.strip()
    if not source.startswith("("):
        source = f"({source})"
    try:
        tree = ast.parse(f"def _{source}: pass")
    except SyntaxError as exc:
        raise UsageError(f"--signature {text!r} is not a Python parameter list: {exc.msg}") from exc
    arguments = tree.body[0].args  # type: ignore[attr-defined]
    if arguments.posonlyargs:
        raise UsageError("--signature: positional-only parameters (/) are not supported")

    def literal(node: ast.expr | None) -> Any:
        if node is None:
            return inspect.Parameter.empty
        try:
            return ast.literal_eval(node)
        except ValueError as exc:
            raise UsageError(
                f"--signature: the default {ast.unparse(node)!r} is not a literal"
            ) from exc

    names = [arg.arg for arg in (*arguments.args, *arguments.kwonlyargs)]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise UsageError(f"--signature {text!r} names {', '.join(duplicates)} twice")
    defaults = [None] * (len(arguments.args) - len(arguments.defaults)) + arguments.defaults
    return CallSignature(
        positional=tuple(
            (arg.arg, literal(default))
            for arg, default in zip(arguments.args, defaults)  # the same length, by construction
        ),
        keyword_only=tuple(arg.arg for arg in arguments.kwonlyargs),
        has_var_positional=arguments.vararg is not None,
        has_var_keyword=arguments.kwarg is not None,
    )


#: A bare word stands for itself as a string (``admin``, ``alice@example.com``).
#: Anything else that is not a literal is most likely a literal mistyped (``[1, 2``,
#: ``'abc``), which as a string would name a call that was never made.
_BARE_WORD = re.compile(r"[A-Za-z_][\w./@:+-]*")
#: A decimal integer without leading zeros, which ``parse_argument`` reads as an int.
DECIMAL = r"0|[1-9][0-9]{0,30}"
_DECIMAL = re.compile(DECIMAL)


def parse_argument(text: str) -> Any:
    """A call argument from the command line: a Python literal (``42``, ``'42'``,
    ``None``, ``[1, 2]``), or else a bare word as a string (``admin``)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"the argument {text!r} is not valid UTF-8") from None
    # Two shortcuts that give what literal_eval gives, without parsing (a file of
    # 100,000 calls for delete-memoized --each is mostly ids and names): a decimal
    # integer without leading zeros, and a name that is no keyword (literal_eval
    # refuses a name, so it is taken as the bare word it is).
    if _DECIMAL.fullmatch(text):
        return int(text)
    if _BARE_WORD.fullmatch(text) and text.isidentifier() and not keyword.iskeyword(text):
        return text
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        if _BARE_WORD.fullmatch(text):
            return text
    raise UsageError(
        f"the argument {text[:60]!r} is neither a Python literal nor a bare word: "
        "quote a string ('...'), or give an object by its repr() with --repr"
    )


class ReprArgument:
    """An argument known only by its ``repr()`` text (``Locale('en')``): Flask-Caching
    puts the repr of every argument into a memoize key, so an object that cannot be
    rebuilt here is still targeted exactly."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def place_repr_arguments(arguments: list[Any], reprs: list[tuple[int, str]]) -> tuple[Any, ...]:
    """``arguments`` with each ``(position, text)`` of ``reprs`` inserted as a
    ReprArgument before the argument that stood at ``position`` on the command line."""
    if not reprs:
        return tuple(arguments)
    placed: list[Any] = []
    pending = sorted(reprs, key=lambda item: item[0])
    for index, argument in enumerate(arguments):
        while pending and pending[0][0] <= index:
            placed.append(ReprArgument(pending.pop(0)[1]))
        placed.append(argument)
    placed += [ReprArgument(text) for _, text in pending]
    return tuple(placed)


def parse_keyword(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip().isidentifier():
        raise UsageError(f"--kw takes NAME=VALUE, not {text!r}")
    return name.strip(), parse_argument(value)


def _missing_module_hint(path: str, missing: str) -> str:
    """The "(did you mean shop.price?)" hint for a path whose module ``missing`` does
    not exist, from the modules the loaded app has."""
    depth = missing.count(".")
    loaded = [name for name in sys.modules if name.count(".") == depth]
    close = difflib.get_close_matches(missing, loaded, n=3)
    if not close:
        return ""
    return f" (did you mean {', '.join(path.replace(missing, name, 1) for name in close)}?)"


def find_memoized(
    path: str, signature_text: str | None, app_loaded: bool = False
) -> tuple[MemoizedFunction, str | None]:
    """The function at ``path``: imported when possible, else known by its path and
    the ``--signature`` text. Returns it with the reason it could not be imported.

    With the app loaded, a module of the path that does not exist is a misspelling
    (exit 2 with the closest modules the app has), never a name to use alone."""
    if signature_text:
        return function_from_path(path, signature_text), None
    try:
        return locate_function(path), None
    except LookupError as exc:
        cause = exc.__cause__
        missing = cause.name if isinstance(cause, ModuleNotFoundError) else None
        module_part = path.partition(":")[0] if ":" in path else path
        if app_loaded and missing and f"{module_part}.".startswith(f"{missing}."):
            raise UsageError(
                f"{path}: the app has no module {missing!r}"
                + _missing_module_hint(module_part, missing)
            ) from None
        found = function_from_path(path, None)
        found.import_problem = str(exc)
        return found, f"cannot import {path}: {exc}"
