"""Classes a release renamed or removed: pickles of them in the cache will not load.

A memoized function that returns a model instance stores it pickled, by the name of its
class (``shop.models.Product``). When the release renames the class, moves its module or
turns the name into a function, every such entry fails to load in the new code. Here the
top-level classes of each Python file the release changed are compared: a class of the
older revision whose module, at the newer one, binds its name to nothing, or defines a
function by that name, becomes an action that removes the entries naming it
(``check-pickles --class NAME --delete``, which finds them by reading every value's
opcodes; nothing is loaded).
"""

from __future__ import annotations

import ast

from cachectl.release.git_revisions import FileChange
from cachectl.release.plan_actions import PICKLED, Action, Plan
from cachectl.release.python_source import SourceProblem
from cachectl.release.revision_sources import PythonSources


def _classes(tree: ast.Module) -> dict[str, int]:
    """Top-level classes (and the classes nested in them) by qualified name: line."""
    found: dict[str, int] = {}

    def visit(statements: list[ast.stmt], outer: str) -> None:
        for node in statements:
            if isinstance(node, ast.ClassDef):
                found[outer + node.name] = node.lineno
                visit(node.body, f"{outer}{node.name}.")
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body, outer)
                visit(node.orelse, outer)

    visit(tree.body, "")
    return found


def _bound(tree: ast.Module | None, qualname: str) -> str | None:
    """What the newer module binds ``qualname``'s first part to: "class", "function",
    "other" (an import, an assignment: followed no further), or None."""
    if tree is None:
        return None
    if qualname in _classes(tree):
        return "class"
    first = qualname.partition(".")[0]
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == first:
            found = "function"
        elif (
            isinstance(node, (ast.Import, ast.ImportFrom))
            and any((a.asname or a.name.partition(".")[0]) == first for a in node.names)
        ) or (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == first for t in node.targets)
        ):
            found = "other"
        else:
            continue
        return found if "." not in qualname else "other"
    return None


def plan_class_changes(plan: Plan, sources: PythonSources, change: FileChange) -> None:
    """The actions for the classes of one changed Python file the release lost."""
    if change.old_path is None:
        return
    try:
        old = sources.tree(plan.since, change.old_path)
        new = sources.tree(plan.until, change.new_path) if change.new_path else None
    except SourceProblem:
        return  # the plan says so where the file itself changed
    old_module = sources.module_of(plan.since, change.old_path)
    new_module = sources.module_of(plan.until, change.new_path) if change.new_path else None
    if old is None or old_module is None:
        return
    for qualname, line in _classes(old).items():
        bound = _bound(new, qualname) if new_module == old_module else None
        if bound in ("class", "other"):
            continue
        name = f"{old_module}.{qualname}"
        if bound == "function":
            why = f"class {name} is a function now: cached pickles of it will not load"
        elif new_module is None:
            why = f"class {name} is gone with its module: cached pickles of it will not load"
        elif new_module != old_module:
            why = f"class {name} moved to module {new_module}: cached pickles of it will not load"
        else:
            why = f"class {name} was renamed or removed: cached pickles of it will not load"
        plan.add(Action(PICKLED, name, why, f"{change.old_path}:{line}"))
