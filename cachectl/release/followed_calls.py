"""``plan --follow-calls``: cached functions whose own code is the same but that call
code the release changed.

A memoized function that calls a changed helper returns what the old helper
made; its own tree is unchanged, so the plan proper does not see it. This
module follows calls backwards from every function the release changed, in the
older revision (whose code stored the entries), through the repository's own
functions. Calls are resolved by name only, from the syntax tree: a plain name
in the module or imported (``from shop.pricing import base``), ``module.name``
through an imported module, ``self.name``/``cls.name`` within a class. Calls made
any other way (through a variable, a callback, a method of an object of another
class) are not followed, which is why every action it adds says it is approximate.
"""

from __future__ import annotations

import ast

from cachectl.release.git_revisions import FileChange
from cachectl.release.plan_actions import Plan
from cachectl.release.python_changes import AppRules, plan_cached_function
from cachectl.release.revision_sources import PythonSources
from cachectl.release.source_scan import function_nodes, module_name, without_docstrings

#: How many calls deep a chain is followed (a helper of a helper of ...).
MAX_DEPTH = 4
Name = tuple[str, str]  # (module, qualname)


def _imports(tree: ast.Module, module: str, is_package: bool) -> dict[str, str]:
    """Local names bound by imports, to the dotted name they stand for."""
    package = module if is_package else module.rpartition(".")[0]
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                local = alias.asname or alias.name.partition(".")[0]
                names[local] = alias.name if alias.asname else local
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}".strip(".") if base else parent
            for alias in node.names:
                names[alias.asname or alias.name] = f"{base}.{alias.name}"
    return names


def _callees(
    function: ast.AST, qualname: str, module: str, imports: dict[str, str], local: set[str]
) -> set[Name]:
    """The repository functions ``function`` may call, as (module, qualname) candidates."""
    owner = qualname.rpartition(".")[0]
    found: set[Name] = set()
    for call in ast.walk(function):
        if not isinstance(call, ast.Call):
            continue
        target = call.func
        if isinstance(target, ast.Name):
            if target.id in local:
                found.add((module, target.id))
            elif target.id in imports:
                dotted = imports[target.id]
                found.add((dotted.rpartition(".")[0], dotted.rpartition(".")[2]))
        elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
            base = target.value.id
            if base in ("self", "cls") and owner:
                found.add((module, f"{owner}.{target.attr}"))
            elif base in imports:  # a module, or a class imported from one
                dotted = imports[base]
                found.add((dotted, target.attr))
                head, _, tail = dotted.rpartition(".")
                found.add((head, f"{tail}.{target.attr}"))
            elif base in local:  # a class of this module
                found.add((module, f"{base}.{target.attr}"))
    return found


def _trees(plan: Plan, sources: PythonSources, commit: str, path: str) -> ast.Module | None:
    """The module's tree (None when it is not there, or cannot be read: listed to look
    at, since the calls in it are not known)."""
    try:
        return sources.tree(commit, path)
    except SyntaxError as exc:
        reason = f"its calls are not followed (--follow-calls): it does not parse: {exc.msg}"
        plan.look(path, reason, f"{path}:{exc.lineno}")
        return None


def _dump(node: ast.FunctionDef | ast.AsyncFunctionDef) -> object:
    """The function's tree without docstrings, to compare; one too deeply nested to
    dump compares unequal to everything (counted as changed: its callers are planned)."""
    try:
        return ast.dump(without_docstrings(node))
    except (RecursionError, MemoryError):
        return object()


def changed_functions(
    plan: Plan, sources: PythonSources, changes: list[FileChange]
) -> dict[Name, str]:
    """Every function of the older revision whose code the release changed or removed."""
    changed: dict[Name, str] = {}
    files = sources.checkout.files(plan.since)
    for change in changes:
        if change.old_path is None or change.status in "AC" or not change.old_path.endswith(".py"):
            continue
        module = module_name(change.old_path, files)
        old = _trees(plan, sources, plan.since, change.old_path)
        if module is None or old is None:
            continue
        new = _trees(plan, sources, plan.until, change.new_path) if change.new_path else None
        new_dumps = {}
        if new is not None:
            new_dumps = {name: _dump(n) for name, n in function_nodes(new)}
        for name, node in function_nodes(old):
            if new_dumps.get(name) != _dump(node):
                changed[module, name] = f"{module}.{name}"
    return changed


def plan_callers(
    plan: Plan, sources: PythonSources, changes: list[FileChange], app_rules: AppRules | None
) -> None:
    """Add the cached functions that call, within the repository and at most
    ``MAX_DEPTH`` calls deep, a function the release changed."""
    reached = changed_functions(plan, sources, changes)  # name -> chain that led to it
    frontier = dict(reached)
    files = sources.checkout.files(plan.since)
    for _ in range(MAX_DEPTH):
        if not frontier:
            return
        words = sorted({qualname.rpartition(".")[2] for _, qualname in frontier})
        found: dict[Name, str] = {}
        for path in sources.checkout.files_naming(plan.since, words):
            module = module_name(path, files)
            tree = _trees(plan, sources, plan.since, path)
            if module is None or tree is None:
                continue
            imports = _imports(tree, module, path.endswith("__init__.py"))
            local = {name for name, _ in function_nodes(tree) if "." not in name}
            local |= {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
            for qualname, node in function_nodes(tree):
                if (module, qualname) in reached:
                    continue
                callees = _callees(node, qualname, module, imports, local)
                hit = next((name for name in sorted(callees) if name in frontier), None)
                if hit is None:
                    continue
                found[module, qualname] = f"{module}.{qualname} → {frontier[hit]}"
                via = frontier[hit]
                plan_cached_function(plan, sources, path, (module, qualname), via, app_rules)
        reached.update(found)
        frontier = found
