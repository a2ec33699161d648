"""cachectl's modules import one another without cycles, and only downwards through the
layers docs/development.md draws (cli -> operations -> the rest).

The graph is read from the source with ``ast``, so it holds every dependency the code can
take at run time, not only those one command happens to load:

- every ``import`` and ``from ... import`` anywhere in a module: at the top, and inside a
  function too. A lazy import (for start-up cost) still makes the two modules depend on
  each other; it only postpones the moment one needs the other;
- except under ``if TYPE_CHECKING:``, which the interpreter never runs: a name used in
  annotations only is no run-time dependency (its ``else:`` branch counts);
- ``lazy_module("cachectl.x")``, ``importlib.import_module("cachectl.x")`` and
  ``__import__`` with a literal name count as ``import cachectl.x``. A name computed at
  run time is not seen: the group importing the module of the command that runs, from
  the table in ``cli/command_index.py`` (a registry, looked up by name), and the app's
  own code, named by the operator;
- relative imports are resolved; ``from cachectl.x import y`` is an edge to
  ``cachectl.x.y`` when ``y`` is a submodule, else to ``cachectl.x``; a package's
  ``__init__`` is a module of its own (``cachectl.backends``), and the parent packages
  Python initializes on the way to a submodule are not counted as its imports.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cachectl"

Graph = Mapping[str, set[str]]

#: Calls that import the module their literal first argument names.
_IMPORTING_CALLS = frozenset({"lazy_module", "import_module", "__import__"})

#: The modules that hand the command line to ``python -m cachectl`` and to Flask's own
#: CLI: above ``cachectl.cli``, which they wrap.
ENTRY_POINTS = frozenset({"cachectl.__main__", "cachectl.flask_command", "cachectl.flask_group"})


def module_names(package: Path) -> dict[str, Path]:
    """Every module of the package under ``package`` by its dotted name (a package's
    ``__init__.py`` by the package's name)."""
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    """``TYPE_CHECKING`` or ``typing.TYPE_CHECKING``."""
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def imports_of(name: str, path: Path, known: Iterable[str]) -> set[str]:
    """The package's own modules that module ``name`` (the source at ``path``) imports
    at run time (the rules are the module's docstring)."""
    known = set(known)
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def imported_from(node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = name.split(".") if is_package else name.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        return ".".join([*base, *([node.module] if node.module else [])])

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for branch in node.orelse:  # only the else branch runs
                visit(branch)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            source = imported_from(node)
            for alias in node.names:
                if f"{source}.{alias.name}" in known:  # a submodule
                    found.add(f"{source}.{alias.name}")
                elif source in known:
                    found.add(source)
        elif isinstance(node, ast.Call) and _called_name(node) in _IMPORTING_CALLS:
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and first.value in known:
                found.add(first.value)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    found.discard(name)
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Each module of the package, with the package's modules it imports."""
    names = module_names(package)
    return {name: imports_of(name, path, names) for name, path in names.items()}


def strongly_connected(graph: Graph) -> list[list[str]]:
    """The components of more than one module (Tarjan's algorithm, iterative so that a
    deep chain of imports cannot exhaust the stack): each is a set of modules that all
    reach one another, so every one of them lies on a cycle."""
    index: dict[str, int] = {}
    lowest: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = lowest[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = lowest[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph.get(successor, ())))))
                    break
                if successor in on_stack:
                    lowest[node] = min(lowest[node], index[successor])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    lowest[parent] = min(lowest[parent], lowest[node])
                if lowest[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
    return components


def _shortest_cycle_through(start: str, graph: Graph, within: set[str]) -> list[str]:
    """The shortest path from ``start`` back to itself inside one component."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in sorted(graph[node] & within):
                if successor == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if successor not in came_from:
                    came_from[successor] = node
                    following.append(successor)
        frontier = following
    raise AssertionError(f"{start} is on no cycle of its component")


def cycles(graph: Graph) -> list[str]:
    """Each cycle of the graph as ``a -> b -> a``: for each module of each component,
    the shortest cycle through it, each cycle once (from its first module by name)."""
    shown: dict[tuple[str, ...], str] = {}
    for component in strongly_connected(graph):
        for module in component:
            cycle = _shortest_cycle_through(module, graph, set(component))[:-1]
            first = cycle.index(min(cycle))
            turned = (*cycle[first:], *cycle[:first])
            shown.setdefault(turned, " -> ".join([*turned, turned[0]]))
    return sorted(shown.values())


def layer(module: str) -> int:
    """Where a module stands in the layers of docs/development.md, the top highest: the entry points
    over the command line (``cli``) over the operations over everything they use
    (``config``, ``release``, ``app``, ``backends``, ``codec``, ``keys``, ``runtime``,
    ``errors``)."""
    if module in ENTRY_POINTS:
        return 3
    if module == "cachectl.cli" or module.startswith("cachectl.cli."):
        return 2
    if module == "cachectl.operations" or module.startswith("cachectl.operations."):
        return 1
    return 0


def upward_imports(graph: Graph) -> list[str]:
    """Every import of a module from a higher layer than the importer's."""
    return sorted(
        f"{module} imports {imported}"
        for module, imported_modules in graph.items()
        for imported in imported_modules
        if layer(imported) > layer(module)
    )


# The reader and the checks, on small packages written for them: each must see what it
# is meant to see, or the tests of cachectl below would pass whatever its code does.


def _package(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / "pkg" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_every_kind_of_import_is_read(tmp_path: Path) -> None:
    package = _package(
        tmp_path,
        {
            "__init__.py": "",
            "top.py": "import pkg.sub.deep\nfrom pkg import plain\n",
            "plain.py": "from .sub import deep\nfrom . import lazy\n",
            "lazy.py": "def later():\n    from pkg.sub.deep import thing\n",
            "typed.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from pkg import top\nelse:\n    from pkg import plain\n"
                "import typing\nif typing.TYPE_CHECKING:\n    import pkg.lazy\n"
            ),
            "named.py": (
                "import importlib\nfrom pkg.sub import lazy_module\n"
                "a = lazy_module('pkg.top')\nb = importlib.import_module('pkg.plain')\n"
                "c = importlib.import_module('os')\nd = lazy_module(computed)\n"
            ),
            "sub/__init__.py": "from .deep import thing\n\ndef lazy_module(name): ...\n",
            "sub/deep.py": "import os\nfrom .. import top\nfrom ..sub import lazy_module\n",
        },
    )
    assert import_graph(package) == {
        "pkg": set(),
        "pkg.top": {"pkg.sub.deep", "pkg.plain"},
        "pkg.plain": {"pkg.sub.deep", "pkg.lazy"},
        "pkg.lazy": {"pkg.sub.deep"},
        "pkg.typed": {"pkg.plain"},
        "pkg.named": {"pkg.sub", "pkg.top", "pkg.plain"},
        "pkg.sub": {"pkg.sub.deep"},
        "pkg.sub.deep": {"pkg.top", "pkg.sub"},
    }


def test_every_cycle_is_found_and_shown_as_a_path() -> None:
    graph = {
        "a": {"b"},
        "b": {"a", "c"},
        "c": {"d"},
        "d": {"e", "f"},
        "e": {"c"},
        "f": {"c", "g"},
        "g": set(),
        "h": {"h"},  # a module importing itself is no cycle between modules
    }
    assert strongly_connected(graph) == [["c", "d", "e", "f"], ["a", "b"]]
    assert cycles(graph) == ["a -> b -> a", "c -> d -> e -> c", "c -> d -> f -> c"]
    assert cycles({name: set() for name in graph}) == []


def test_an_import_up_through_the_layers_is_found() -> None:
    graph = {
        "cachectl.__main__": {"cachectl.cli"},
        "cachectl.cli": {"cachectl.cli.group"},
        "cachectl.cli.group": {"cachectl.operations.batch", "cachectl.runtime.output"},
        "cachectl.operations.batch": {"cachectl.keys", "cachectl.cli.render"},
        "cachectl.backends.redis": {"cachectl.codec.stored", "cachectl.operations"},
        "cachectl.keys": {"cachectl.flask_group"},
    }
    assert upward_imports(graph) == [
        "cachectl.backends.redis imports cachectl.operations",
        "cachectl.keys imports cachectl.flask_group",
        "cachectl.operations.batch imports cachectl.cli.render",
    ]


# cachectl itself.


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_the_graph_holds_the_imports_that_matter(graph: dict[str, set[str]]) -> None:
    """A graph read wrong would be acyclic for nothing: it holds a top-level import, a
    lazy one inside a function, a ``lazy_module`` and one made by ``backends``' lazy
    ``__getattr__``, and leaves out a type-only one."""
    assert "cachectl.cli.session" in graph["cachectl.cli.group"]
    assert "cachectl.cli.every_cache" in graph["cachectl.cli.group"]
    assert "cachectl.operations.clearing" in graph["cachectl.cli.sweeps"]
    assert "cachectl.backends.factory" in graph["cachectl.backends"]
    assert "cachectl.cli.session" not in graph["cachectl.cli.audit_record"]
    assert len(graph) > 100


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    found = cycles(graph)
    assert not found, "import cycles between cachectl's modules:\n" + "\n".join(found)


def test_imports_go_only_down_through_the_layers(graph: dict[str, set[str]]) -> None:
    """docs/development.md: cli -> operations -> config, release, app, backends, codec,
    keys, runtime; a layer calls only the ones below it (and the entry points, above them
    all, only wrap the command line)."""
    found = upward_imports(graph)
    assert not found, "imports against the layering:\n" + "\n".join(found)
