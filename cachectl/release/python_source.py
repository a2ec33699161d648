"""Python source as ``plan`` reads it from git: decoded and parsed as Python does, and
the top-level names of a module with what each is bound to.

Source is decoded as Python decodes it (``tokenize.detect_encoding``: a PEP 263
coding line, a BOM, else UTF-8). A module that cannot be read this way (not
decodable, not parsing, or nested too deeply for the parser, ``ast.dump`` or a
copy to recurse through) raises ``SourceProblem``, a ``SyntaxError``, so every
caller that lists a file that does not parse lists these too: never dropped.

``module_bindings`` is what ``revision_sources`` follows from module to module to
tell which object a decorator is called on (``from .ext import cache as c``,
``memo = cache.memoize``), without running anything.
"""

from __future__ import annotations

import ast
import io
import tokenize
from collections.abc import Callable
from typing import Any, NamedTuple

#: The value of a decorator or constructor argument that is not a literal.
UNKNOWN: Any = type("Unknown", (), {"__repr__": lambda self: "UNKNOWN"})()
#: The decorator methods of a Flask-Caching ``Cache`` that ``plan`` acts on.
CACHE_DECORATORS = frozenset({"memoize", "cached"})


class SourceProblem(SyntaxError):
    """A module ``plan`` cannot read: not decodable, not parsing, or too deeply nested."""


def decode_source(data: bytes, filename: str) -> str:
    """``data`` decoded as Python decodes a source file (its coding line, a BOM, UTF-8)."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        return data.decode(encoding)
    except SyntaxError as exc:  # an unknown or contradictory coding line
        raise SourceProblem(
            f"its encoding cannot be read: {exc.msg}", (filename, 1, 0, "")
        ) from None
    except (UnicodeDecodeError, LookupError) as exc:
        raise SourceProblem(
            f"it is not text in its declared encoding ({exc})", (filename, 1, 0, "")
        ) from None


def parse_source(data: bytes, filename: str) -> ast.Module:
    """The syntax tree of a module's bytes; ``SourceProblem`` when it cannot be had."""
    source = decode_source(data, filename)
    try:
        return ast.parse(source, filename=filename)
    except SyntaxError as exc:
        raise SourceProblem(exc.msg, (filename, exc.lineno, exc.offset or 0, "")) from None
    except ValueError as exc:  # a NUL byte, before Python 3.12
        raise SourceProblem(str(exc), (filename, 1, 0, "")) from None
    except (RecursionError, MemoryError):
        raise too_deep(filename) from None


def too_deep(filename: str, line: int | None = None) -> SourceProblem:
    return SourceProblem(
        "nested too deeply to compare (an expression of thousands of terms?)",
        (filename, line or 1, 0, ""),
    )


def literal(node: ast.AST | None) -> Any:
    """A literal argument's value, or ``UNKNOWN`` for anything computed."""
    if node is None:
        return None
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return UNKNOWN


def last_name(node: ast.AST) -> str | None:
    """``cache`` for ``cache``, ``ext.cache`` and ``app.ext.cache``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def dotted(node: ast.AST) -> str | None:
    """``app.ext.cache`` for that chain of names and attributes; None for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        owner = dotted(node.value)
        return f"{owner}.{node.attr}" if owner is not None else None
    return None


#: Roles of a module-level binding (``Binding.role``).
CACHE, ALIAS, MODULE, IMPORT, DEFINED, OTHER = "cache", "alias", "module", "import", "def", "other"


class Binding(NamedTuple):
    """What a module-level name is bound to, as far as the source says."""

    #: CACHE (``Cache(...)``), ALIAS (another dotted name, ``memo = cache.memoize``),
    #: MODULE (``import a.b as m``), IMPORT (``from a import b``), DEFINED (a def or
    #: class), OTHER (anything else).
    role: str
    #: The dotted name it stands for (ALIAS), the module (MODULE, IMPORT).
    value: str = ""
    #: IMPORT: the name imported from ``value``, and the import's level (its dots).
    name: str = ""
    level: int = 0
    #: ALIAS of a call (``memo = cache.memoize(60)``): a decorator, not the method.
    called: bool = False


def _bound(value: ast.expr) -> Binding:
    if isinstance(value, ast.Call) and last_name(value.func) == "Cache":
        return Binding(CACHE)
    if isinstance(value, ast.Call):
        made_by = dotted(value.func)
        if made_by is not None and made_by.rpartition(".")[2] in CACHE_DECORATORS:
            return Binding(ALIAS, made_by, called=True)
        return Binding(OTHER)
    name = dotted(value)
    return Binding(ALIAS, name) if name is not None else Binding(OTHER)


def module_bindings(tree: ast.Module) -> dict[str, Binding]:
    """The module's top-level names (in ``if`` and ``try`` blocks too) and what each is
    bound to: what ``revision_sources`` follows from one module to another."""
    found: dict[str, Binding] = {}

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                found[node.name] = Binding(DEFINED)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    head = alias.name.partition(".")[0]
                    found[alias.asname or head] = Binding(
                        MODULE, alias.name if alias.asname else head
                    )
            elif isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if alias.name != "*":
                        imported = Binding(IMPORT, node.module or "", alias.name, node.level or 0)
                        found[alias.asname or alias.name] = imported
            elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Name):
                        found[target.id] = _bound(node.value)
                    elif isinstance(target, (ast.Tuple, ast.List)):
                        for element in target.elts:
                            if isinstance(element, ast.Name):
                                found[element.id] = Binding(OTHER)
            for block in ("body", "orelse", "finalbody"):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    visit(getattr(node, block, None) or [])
            for handler in getattr(node, "handlers", None) or []:
                visit(handler.body)

    visit(tree.body)
    return found


class CacheUse(NamedTuple):
    """A cache decorator: ``memoize`` or ``cached``, on which object."""

    kind: str
    #: The object's dotted name (``cache``, ``ext.cache``), as written ...
    expr: str
    #: ... in this module (None), or in the module that made the decorator (an alias).
    module: str | None = None
    #: Made by a call already (``memo = cache.memoize(60)``): its arguments are there.
    called: bool = False


#: Says which cache decorator a dotted name (``memo``, ``helpers.memo``) stands for, if any.
Classify = Callable[[str], "CacheUse | None"]


def unclassified(name: str) -> CacheUse | None:
    """No repository to ask: only ``@<object>.memoize`` and ``.cached`` are known."""
    return None
