"""The GET rules of an app's routes, read from its source on disk; nothing of it runs.

Flask-Caching 2.5.0 keyed a view whose route has an argument named ``path`` or
``query_args`` by that argument (``keys.with_explicit_view_arguments``), so without the
app loaded, ``delete-view`` needs the route a request path reaches. ``plan`` reads routes
from git; here the same readers (``source_scan``, ``python_changes.route_rules``) read
the working tree: the route decorators with their blueprints' prefixes where literals.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from cachectl.release.python_changes import route_rules
from cachectl.release.python_source import UNKNOWN, SourceProblem, parse_source, unclassified
from cachectl.release.revision_sources import Revision
from cachectl.release.source_scan import ModuleScan, Route, route_decorators, scan_module

#: The view arguments Flask-Caching 2.5.0 formed a key from (``keys.EXPLICIT_VIEW_ARGUMENTS``).
_EXPLICIT = frozenset({"path", "query_args"})

#: Directories that hold no app source: virtual environments (``pyvenv.cfg``) are skipped too.
_SKIPPED = frozenset({"__pycache__", "node_modules", "site-packages", "dist-packages", "build"})
#: Files read at most, and the largest read: a source tree, not a whole disk.
MAX_FILES = 3000
MAX_BYTES = 2_000_000


class RouteRule(NamedTuple):
    """A GET rule read from the source, with its blueprint's prefix, and its ``defaults``."""

    rule: str
    defaults: dict[str, Any] | None = None


class Unreadable(NamedTuple):
    """A route whose rule, prefix or defaults the source does not say, as a sentence
    naming its file and line; and which of the arguments ``path`` and ``query_args`` its
    view could take (such a parameter, or ``**kwargs``): a view is never keyed by an
    argument it cannot take, whatever its rule."""

    where: str
    takes: frozenset[str]


@dataclass
class SourceRoutes:
    """The GET rules found under some directories, and what could not be read."""

    rules: list[RouteRule] = field(default_factory=list)
    problems: list[Unreadable] = field(default_factory=list)
    #: Whether the search stopped at ``MAX_FILES``.
    truncated: bool = False


def _python_files(roots: list[str]) -> Iterator[str]:
    seen: set[str] = set()
    for root in roots:
        for directory, subdirectories, files in os.walk(root):
            real = os.path.realpath(directory)
            if real in seen or "pyvenv.cfg" in files:
                subdirectories[:] = []
                continue
            seen.add(real)
            subdirectories[:] = sorted(
                d for d in subdirectories if not d.startswith(".") and d not in _SKIPPED
            )
            for name in sorted(files):
                if name.endswith(".py"):
                    yield os.path.join(directory, name)


def _takes(node: ast.FunctionDef | ast.AsyncFunctionDef) -> frozenset[str]:
    """Which of ``path`` and ``query_args`` Flask could hand the view as arguments."""
    arguments = node.args
    if arguments.kwarg is not None:
        return _EXPLICIT
    return _EXPLICIT & {a.arg for a in (*arguments.args, *arguments.kwonlyargs)}


def _routes(tree: ast.Module) -> list[tuple[Route, frozenset[str]]]:
    return [
        (route, _takes(node))
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        for route in route_decorators(node.decorator_list)
    ]


def _added_rules(tree: ast.Module, path: str) -> list[Unreadable]:
    """``app.add_url_rule(...)`` (or a blueprint's): a route whose view is some callable
    this reading does not follow, so the arguments it takes are not known."""
    return [
        Unreadable(f"{path}: the route added by add_url_rule (line {node.lineno})", _EXPLICIT)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "add_url_rule"
    ]


def source_routes(roots: list[str]) -> SourceRoutes:
    """Every GET route decorator's rule in the Python files under ``roots``, joined with
    its blueprint's ``url_prefix`` (from ``Blueprint(...)`` or ``register_blueprint``)."""
    found = SourceRoutes()
    modules: list[tuple[str, ModuleScan, list[tuple[Route, frozenset[str]]]]] = []
    revision = Revision("")
    for count, path in enumerate(_python_files(roots)):
        if count >= MAX_FILES:
            found.truncated = True
            break
        try:
            if os.path.getsize(path) > MAX_BYTES:
                continue
            with open(path, "rb") as handle:
                tree = parse_source(handle.read(), path)
            scan = scan_module(tree, path, unclassified)
        except (OSError, SourceProblem):
            continue
        revision.app_names |= scan.app_names
        for name, blueprint in scan.blueprints.items():
            revision.blueprints.setdefault(name, []).append(blueprint)
        revision.registrations += scan.registrations
        found.problems += _added_rules(tree, path)
        routes = _routes(tree)
        if routes:
            modules.append((path, scan, routes))
    for path, scan, routes in modules:
        for route, takes in routes:
            rules, problems = route_rules([route], scan, revision)
            if route.defaults is UNKNOWN:
                decorator = f"@{route.owner}.route (line {route.line})"
                problems.append(f"the defaults of {decorator} are not a literal")
            if problems:
                found.problems += [Unreadable(f"{path}: {p}", takes) for p in problems]
                continue
            found.rules += [RouteRule(rule, route.defaults) for rule in rules]
    return found
