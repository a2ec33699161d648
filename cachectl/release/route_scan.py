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

from cachectl.release.python_changes import route_rules
from cachectl.release.python_source import SourceProblem, parse_source, unclassified
from cachectl.release.revision_sources import Revision
from cachectl.release.source_scan import ModuleScan, Route, route_decorators, scan_module

#: Directories that hold no app source: virtual environments (``pyvenv.cfg``) are skipped too.
_SKIPPED = frozenset({"__pycache__", "node_modules", "site-packages", "dist-packages", "build"})
#: Files read at most, and the largest read: a source tree, not a whole disk.
MAX_FILES = 3000
MAX_BYTES = 2_000_000


@dataclass
class SourceRoutes:
    """The GET rules found under some directories, and what could not be read."""

    rules: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
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


def _routes(tree: ast.Module) -> list[Route]:
    return [
        route
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        for route in route_decorators(node.decorator_list)
    ]


def source_routes(roots: list[str]) -> SourceRoutes:
    """Every GET route decorator's rule in the Python files under ``roots``, joined with
    its blueprint's ``url_prefix`` (from ``Blueprint(...)`` or ``register_blueprint``)."""
    found = SourceRoutes()
    modules: list[tuple[str, ModuleScan, list[Route]]] = []
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
        routes = _routes(tree)
        if routes:
            modules.append((path, scan, routes))
    for path, scan, routes in modules:
        rules, problems = route_rules(routes, scan, revision)
        found.rules += rules
        found.problems += [f"{path}: {problem}" for problem in problems]
    return found
