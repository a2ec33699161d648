"""Read a module's source for what its caches hold, with Python's own ``ast``; nothing runs.

``plan`` must know, at two revisions, which functions are memoized or cached
views, and whether their own code changed. The syntax tree answers both
without importing the app: a function's tree dumped without line and column
attributes differs only where its code does (decorator arguments and signature
included), never for formatting, comments or docstrings. Routes and blueprint prefixes are
read where they are literals; anything else is reported as not known
(``UNKNOWN``), so the plan can list it for a person rather than guess.
"""

from __future__ import annotations

import ast
import copy as copy_module
from dataclasses import dataclass, field
from typing import Any

#: The value of a decorator or constructor argument that is not a literal.
UNKNOWN: Any = type("Unknown", (), {"__repr__": lambda self: "UNKNOWN"})()
#: The decorator methods of a Flask-Caching ``Cache`` that ``plan`` acts on.
CACHE_DECORATORS = frozenset({"memoize", "cached"})
#: Route decorators whose rule serves GET (the only requests ``@cache.cached`` stores).
_ROUTE_DECORATORS = frozenset({"route", "get"})


def module_name(path: str, files: frozenset[str]) -> str | None:
    """The import name of the module at ``path`` (``src/shop/models.py`` is
    ``shop.models`` when ``src`` holds no ``__init__.py``): the package directories
    above the file, as Python finds them from the directory on ``sys.path``."""
    if not path.endswith(".py"):
        return None
    parts = path[: -len(".py")].split("/")
    if parts[-1] == "__init__":
        parts.pop()
    name = [parts.pop()] if parts else []
    while parts and "/".join([*parts, "__init__.py"]) in files:
        name.insert(0, parts.pop())
    if not name or not all(part.isidentifier() for part in name):
        return None
    return ".".join(name)


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


@dataclass
class Route:
    """One route decorator: on what (``app``, ``bp``), and its rule when a literal."""

    owner: str
    rule: str | None
    line: int


@dataclass
class CachedFunction:
    """A function decorated with ``@<something>.memoize`` or ``@<something>.cached``."""

    qualname: str
    line: int
    #: ``memoize`` or ``cached``.
    decorator: str
    #: The name the decorator is reached by (``cache``), as written.
    cache_name: str
    #: The function's tree without positions: equal exactly when its code is.
    dump: str
    #: The same with the function's name left out, to recognise a renamed function.
    body_dump: str
    #: The decorators', parameters' and body's trees apart, to say which part changed.
    parts: dict[str, str]
    #: The decorator's keyword arguments (``UNKNOWN`` where not a literal).
    options: dict[str, Any] = field(default_factory=dict)
    routes: list[Route] = field(default_factory=list)
    #: The templates it renders by a literal name (``render_template("page.html")``).
    renders: list[str] = field(default_factory=list)


@dataclass
class Blueprint:
    """``bp = Blueprint("shop", __name__, url_prefix="/shop")`` (in a factory too)."""

    variable: str
    url_prefix: Any
    line: int


@dataclass
class Registration:
    """``app.register_blueprint(bp, url_prefix=...)``: the prefix it overrides with."""

    #: The blueprint's variable name as passed (``bp`` for ``views.bp``).
    variable: str | None
    url_prefix: Any
    #: Whether ``url_prefix=`` was passed at all (else the blueprint's own applies).
    given: bool


@dataclass
class ModuleScan:
    """What ``plan`` needs from one module's source at one revision."""

    functions: dict[str, CachedFunction] = field(default_factory=dict)
    #: Names bound to ``Cache(...)`` here, and to ``Flask(...)``.
    cache_names: set[str] = field(default_factory=set)
    app_names: set[str] = field(default_factory=set)
    #: ``from x import cache as c``: local name to the imported one.
    aliases: dict[str, str] = field(default_factory=dict)
    blueprints: dict[str, Blueprint] = field(default_factory=dict)
    registrations: list[Registration] = field(default_factory=list)


def _called(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Call) and last_name(node.func) == name


def _cache_decorator(decorator: ast.expr) -> tuple[str, ast.expr, list[ast.keyword]] | None:
    """``(memoize|cached, the object it is called on, keywords)`` for a cache decorator."""
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    keywords = decorator.keywords if isinstance(decorator, ast.Call) else []
    if isinstance(target, ast.Attribute) and target.attr in CACHE_DECORATORS:
        return target.attr, target.value, keywords
    return None


def _routes(decorators: list[ast.expr]) -> list[Route]:
    routes = []
    for decorator in decorators:
        if not (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute)):
            continue
        if decorator.func.attr not in _ROUTE_DECORATORS:
            continue
        methods = next((k.value for k in decorator.keywords if k.arg == "methods"), None)
        served = literal(methods)
        serves = served if isinstance(served, (list, tuple, set)) else ("GET",)
        if "GET" not in {str(method).upper() for method in serves}:
            continue
        rule = literal(decorator.args[0]) if decorator.args else None
        owner = ast.unparse(decorator.func.value)
        routes.append(Route(owner, rule if isinstance(rule, str) else None, decorator.lineno))
    return routes


def without_docstrings(node: ast.FunctionDef | ast.AsyncFunctionDef) -> Any:
    """A copy of the function without the docstrings in it (its own and those of what
    it defines): like comments, they document the code and change nothing it returns."""
    copy = copy_module.deepcopy(node)
    for inner in ast.walk(copy):
        if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            first = inner.body[0] if inner.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                inner.body = inner.body[1:] or [ast.Pass()]
    return copy


def _function_dumps(node: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[str, str]:
    """The dump of the function, and the same without its name."""
    full = ast.dump(node, include_attributes=False)
    original = node.name
    node.name = ""
    try:
        return full, ast.dump(node, include_attributes=False)
    finally:
        node.name = original


def _rendered(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    """The literal template names the function passes to ``render_template``."""
    names = []
    for call in ast.walk(node):
        if not (isinstance(call, ast.Call) and _called(call, "render_template") and call.args):
            continue
        given = literal(call.args[0])
        # render_template(["a.html", "b.html"]) renders the first that exists: any of them.
        for name in given if isinstance(given, (list, tuple)) else [given]:
            if isinstance(name, str) and name not in names:
                names.append(name)
    return names


def _parts(node: ast.FunctionDef | ast.AsyncFunctionDef) -> dict[str, str]:
    def dump(nodes: list[Any]) -> str:
        return str([ast.dump(n, include_attributes=False) for n in nodes if n is not None])

    return {
        "decorator arguments": dump(node.decorator_list),
        "signature": dump([node.args, node.returns]),
        "code": dump(node.body),
    }


class _Scanner(ast.NodeVisitor):
    def __init__(self) -> None:
        self.scan = ModuleScan()
        self._scope: list[str] = []

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        qualname = ".".join([*self._scope, node.name])
        for decorator in node.decorator_list:
            found = _cache_decorator(decorator)
            if found is None:
                continue
            kind, target, keywords = found
            code = without_docstrings(node)
            full, body = _function_dumps(code)
            self.scan.functions[qualname] = CachedFunction(
                qualname=qualname,
                line=node.lineno,
                decorator=kind,
                cache_name=ast.unparse(target),
                dump=full,
                body_dump=body,
                parts=_parts(code),
                options={k.arg: literal(k.value) for k in keywords if k.arg is not None},
                routes=_routes(node.decorator_list),
                renders=_rendered(node),
            )
            if any(k.arg is None for k in keywords):  # **options: not readable
                self.scan.functions[qualname].options["**"] = UNKNOWN
            break
        self._scope += [node.name, "<locals>"]
        self.generic_visit(node)
        del self._scope[-2:]

    visit_FunctionDef = _visit_function
    visit_AsyncFunctionDef = _visit_function

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._scope.append(node.name)
        self.generic_visit(node)
        self._scope.pop()

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.asname:
                self.scan.aliases[alias.asname] = alias.name

    def _assigned(self, targets: list[ast.expr], value: ast.expr | None, line: int) -> None:
        if value is None:
            return
        names = [name for name in (last_name(target) for target in targets) if name]
        if _called(value, "Cache"):
            self.scan.cache_names.update(names)
        elif _called(value, "Flask"):
            self.scan.app_names.update(names)
        elif _called(value, "Blueprint"):
            assert isinstance(value, ast.Call)
            prefix = next((k.value for k in value.keywords if k.arg == "url_prefix"), None)
            for name in names:
                self.scan.blueprints[name] = Blueprint(name, literal(prefix), line)

    def visit_Assign(self, node: ast.Assign) -> None:
        self._assigned(node.targets, node.value, node.lineno)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._assigned([node.target], node.value, node.lineno)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Attribute) and node.func.attr == "register_blueprint":
            prefix = next((k for k in node.keywords if k.arg == "url_prefix"), None)
            self.scan.registrations.append(
                Registration(
                    last_name(node.args[0]) if node.args else None,
                    literal(prefix.value) if prefix is not None else None,
                    prefix is not None,
                )
            )
        self.generic_visit(node)


def scan_module(source: str, filename: str) -> ModuleScan:
    """The cached functions, cache names, blueprints and registrations in ``source``.
    A module that does not parse raises SyntaxError (the caller says so)."""
    scanner = _Scanner()
    scanner.visit(ast.parse(source, filename=filename))
    return scanner.scan


def join_rule(url_prefix: str | None, rule: str) -> str:
    """The rule a blueprint route gets, joined as Flask's ``BlueprintSetupState`` joins it."""
    if url_prefix is None:
        return rule
    return "/".join((url_prefix.rstrip("/"), rule.lstrip("/"))) if rule else url_prefix
