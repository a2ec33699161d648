"""Read a module's source for what its caches hold, with Python's own ``ast``; nothing runs.

``plan`` must know, at two revisions, which functions are memoized or cached
views, and whether their own code changed. The syntax tree answers both
without importing the app: a function's tree dumped without line and column
attributes differs only where its code does (decorator arguments and signature
included), never for formatting, comments or docstrings. Routes and blueprint prefixes are
read where they are literals; anything else is reported as not known
(``UNKNOWN``), so the plan can list it for a person rather than guess.

What a decorator is, when it is not written ``@<object>.memoize``/``.cached``
(``@memo(300)`` after ``memo = cache.memoize``, a name imported from another
module), only the whole repository says: the scanner asks a ``Classify``
callback (``revision_sources``). A function cached by a call rather than a
decorator (``price = cache.memoize(60)(price_of)``) is a cached function too.
"""

from __future__ import annotations

import ast
import copy as copy_module
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cachectl.release.python_source import (
    CACHE_DECORATORS,
    UNKNOWN,
    CacheUse,
    Classify,
    SourceProblem,
    dotted,
    last_name,
    literal,
    too_deep,
)

__all__ = ["CACHE_DECORATORS", "UNKNOWN", "SourceProblem", "last_name", "literal"]

#: Route decorators whose rule serves GET (the only requests ``@cache.cached`` stores).
_ROUTE_DECORATORS = frozenset({"route", "get"})
#: The positional parameters of the decorators that are the same in every generation
#: (later ones moved when Flask-Caching 2.5 added ``is_stale``).
_POSITIONAL = {"cached": ("timeout", "key_prefix"), "memoize": ("timeout", "make_name")}


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


@dataclass
class Route:
    """One route decorator: on what (``app``, ``bp``), and its rule when a literal."""

    owner: str
    rule: str | None
    line: int
    #: Its ``defaults=`` (values Flask hands the view as arguments too): the dict when a
    #: literal, ``UNKNOWN`` when computed (or hidden in ``**options``), None when absent.
    defaults: Any = None


@dataclass
class CachedFunction:
    """A function decorated with ``@<something>.memoize`` or ``@<something>.cached``
    (or wrapped by one: ``price = cache.memoize(60)(price_of)``)."""

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
    #: The module ``cache_name`` is read in, when not this one (a decorator made there).
    cache_module: str | None = None
    #: Its parameters, names only (``(x, *args, key)``): what ``delete-memoized
    #: --signature`` takes for a name no import finds.
    parameters: str = "()"


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
class Wrap:
    """``cache.memoize(60)(target)``: a function cached by a call, not a decorator."""

    use: CacheUse
    options: dict[str, Any]
    #: The wrapped function's dotted name here (None for a lambda or a computed one).
    target: str | None
    line: int
    #: The decorator expression's tree (``cache.memoize(60)``) without positions.
    dump: str


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
    #: Functions cached by a call whose target is not a function of this module.
    foreign_wraps: list[Wrap] = field(default_factory=list)
    #: The module-level functions, by name (a function cached by another module's call).
    defs: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = field(default_factory=dict)

    def add_wrapped(self, name: str, wrap: Wrap) -> None:
        """Mark the module-level function ``name`` as cached by ``wrap``."""
        node = self.defs.get(name)
        if node is not None and name not in self.functions:
            self.functions[name] = _cached(name, node, wrap.use, wrap.options, [wrap.dump])


def _called(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Call) and last_name(node.func) == name


def _options(kind: str, call: ast.expr | None) -> dict[str, Any]:
    """The decorator call's arguments by name (positional ones too, where their place
    is the same in every generation); ``**`` or ``*`` as ``UNKNOWN`` when not readable."""
    if not isinstance(call, ast.Call):
        return {}
    options = {k.arg: literal(k.value) for k in call.keywords if k.arg is not None}
    if any(k.arg is None for k in call.keywords):
        options["**"] = UNKNOWN
    names = _POSITIONAL.get(kind, ())
    for index, argument in enumerate(call.args):
        if isinstance(argument, ast.Starred) or index >= len(names):
            options["*"] = UNKNOWN
            break
        options.setdefault(names[index], literal(argument))
    return options


def route_decorators(decorators: list[ast.expr]) -> list[Route]:
    """The GET routes among a function's decorators (``@app.route``, ``@bp.get``)."""
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
        given = [k.value for k in decorator.keywords if k.arg == "defaults"]
        defaults = literal(given[0]) if given else None
        if any(k.arg is None for k in decorator.keywords) or not (
            defaults is None or isinstance(defaults, dict)
        ):
            defaults = UNKNOWN
        text = rule if isinstance(rule, str) else None
        routes.append(Route(owner, text, decorator.lineno, defaults))
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


def _function_dumps(
    node: ast.FunctionDef | ast.AsyncFunctionDef, extra: list[str]
) -> tuple[str, str]:
    """The dump of the function (with ``extra``, the dumps of a wrapping call), and
    the same without its name."""
    full = ast.dump(node, include_attributes=False)
    original = node.name
    node.name = ""
    try:
        return full + "".join(extra), ast.dump(node, include_attributes=False) + "".join(extra)
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


def _parts(node: ast.FunctionDef | ast.AsyncFunctionDef, extra: list[str]) -> dict[str, str]:
    def dump(nodes: list[Any]) -> str:
        return str([ast.dump(n, include_attributes=False) for n in nodes if n is not None])

    return {
        "decorator arguments": dump(node.decorator_list) + "".join(extra),
        "signature": dump([node.args, node.returns]),
        "code": dump(node.body),
    }


def parameter_names(arguments: ast.arguments) -> str:
    """``(a, b, *args, c, **kw)``: the parameters without defaults or annotations."""
    names = [a.arg for a in (*arguments.posonlyargs, *arguments.args)]
    if arguments.vararg is not None:
        names.append(f"*{arguments.vararg.arg}")
    elif arguments.kwonlyargs:
        names.append("*")
    names += [a.arg for a in arguments.kwonlyargs]
    if arguments.kwarg is not None:
        names.append(f"**{arguments.kwarg.arg}")
    return f"({', '.join(names)})"


def _cached(
    qualname: str,
    node: ast.FunctionDef | ast.AsyncFunctionDef,
    use: CacheUse,
    options: dict[str, Any],
    extra: list[str],
) -> CachedFunction:
    code = without_docstrings(node)
    full, body = _function_dumps(code, extra)
    return CachedFunction(
        qualname=qualname,
        line=node.lineno,
        decorator=use.kind,
        cache_name=use.expr,
        dump=full,
        body_dump=body,
        parts=_parts(code, extra),
        options=options,
        routes=route_decorators(node.decorator_list),
        renders=_rendered(node),
        cache_module=use.module,
        parameters=parameter_names(node.args),
    )


class _Scanner(ast.NodeVisitor):
    def __init__(self, classify: Classify) -> None:
        self.scan = ModuleScan()
        self._scope: list[str] = []
        self._classify = classify
        self._wraps: list[Wrap] = []

    def _use(self, decorator: ast.expr) -> CacheUse | None:
        """The cache decorator ``decorator`` is (``@cache.memoize``, ``@memo(300)``)."""
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        name = dotted(target)
        if name is None:
            return None
        head, _, method = name.rpartition(".")
        if head and method in CACHE_DECORATORS:
            return CacheUse(method, head)
        return self._classify(name)

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        qualname = ".".join([*self._scope, node.name])
        if not self._scope:
            self.scan.defs[node.name] = node
        for decorator in node.decorator_list:
            use = self._use(decorator)
            if use is None:
                continue
            options = _options(use.kind, decorator)
            if use.called and not isinstance(decorator, ast.Call):
                options["**"] = UNKNOWN  # its arguments were given where it was made
            self.scan.functions[qualname] = _cached(qualname, node, use, options, [])
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

    def _wrap(self, node: ast.Call) -> None:
        """``cache.memoize(60)(target)`` or ``memo(target)`` (``memo = cache.memoize(60)``)."""
        if len(node.args) != 1 or node.keywords or isinstance(node.args[0], ast.Starred):
            return
        maker = node.func
        if not isinstance(maker, (ast.Call, ast.Name, ast.Attribute)):
            return
        use = self._use(maker)
        # A decorator made by a call takes the function; a bare method takes a timeout.
        if use is None or use.called == isinstance(maker, ast.Call):
            return
        options = _options(use.kind, maker)
        if use.called:
            options["**"] = UNKNOWN
        dump = ast.dump(maker, include_attributes=False)
        self._wraps.append(Wrap(use, options, dotted(node.args[0]), node.lineno, dump))

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
        self._wrap(node)
        self.generic_visit(node)

    def finish(self) -> ModuleScan:
        for wrap in self._wraps:
            if wrap.target is not None and wrap.target in self.scan.defs:
                self.scan.add_wrapped(wrap.target, wrap)
            else:
                self.scan.foreign_wraps.append(wrap)
        return self.scan


def scan_module(tree: ast.Module, filename: str, classify: Classify) -> ModuleScan:
    """The cached functions, cache names, blueprints and registrations in ``tree``;
    ``SourceProblem`` when it is too deeply nested to walk or compare."""
    scanner = _Scanner(classify)
    try:
        scanner.visit(tree)
        return scanner.finish()
    except (RecursionError, MemoryError):
        raise too_deep(filename) from None


def join_rule(url_prefix: str | None, rule: str) -> str:
    """The rule a blueprint route gets, joined as Flask's ``BlueprintSetupState`` joins it."""
    if url_prefix is None:
        return rule
    return "/".join((url_prefix.rstrip("/"), rule.lstrip("/"))) if rule else url_prefix


def function_nodes(
    tree: ast.Module,
) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function and method with its qualname (``<locals>`` for nested ones)."""

    def walk(node: ast.AST, scope: list[str]) -> Iterator[tuple[str, Any]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield ".".join([*scope, child.name]), child
                yield from walk(child, [*scope, child.name, "<locals>"])
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, [*scope, child.name])
            else:
                yield from walk(child, scope)

    yield from walk(tree, [])
