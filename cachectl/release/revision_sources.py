"""The Python modules of two revisions, each read and parsed once, and the names that
lead from one module to another: which object a decorator is called on.

``plan`` must know that ``@memo(300)`` (``memo = cache.memoize`` above), or
``@store.memoize`` (``from .ext import cache as store``), is the memoize of the
``Cache`` bound at module level as ``cache`` in ``shop.ext``: the cache the
entries are in, which an app with several caches needs named. The module-level
bindings of each module (``python_source.module_bindings``) are followed from
name to name, through imports, aliases and submodules, as Python would resolve
them at run time, but from the source alone: nothing is imported.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from cachectl.release.git_revisions import Checkout
from cachectl.release.python_source import (
    ALIAS,
    CACHE,
    CACHE_DECORATORS,
    DEFINED,
    IMPORT,
    MODULE,
    Binding,
    CacheUse,
    Classify,
    SourceProblem,
    module_bindings,
    parse_source,
)
from cachectl.release.source_scan import (
    Blueprint,
    ModuleScan,
    Registration,
    Wrap,
    function_nodes,
    module_name,
    scan_module,
)

#: How many names a chain of imports and aliases is followed through.
_MAX_HOPS = 16


class Followed(NamedTuple):
    """Where a dotted name leads: the module and the names left in it, and the binding
    of the first of them (None when the source does not say)."""

    module: str
    parts: tuple[str, ...]
    binding: Binding | None
    #: Every ``module:dotted.name`` passed through, the first as written.
    names: tuple[str, ...]
    #: Whether an alias on the way was made by a call (``memo = cache.memoize(60)``).
    called: bool = False

    @property
    def cache(self) -> str | None:
        """``module:name`` when the name leads to a module-level ``Cache(...)``."""
        if self.binding is not None and self.binding.role == CACHE and len(self.parts) == 1:
            return f"{self.module}:{self.parts[0]}"
        return None


class CacheRef(NamedTuple):
    """The cache a decorator stores in, as far as the source says."""

    #: ``module:name`` of the module-level ``Cache(...)`` (None when not found).
    canonical: str | None
    #: Every name it is known by (the canonical one first): ``shop.models:store``,
    #: ``shop:cache`` (a package that imports it), an attribute path.
    names: tuple[str, ...]


@dataclass
class Revision:
    """What ``plan`` reads once from a whole revision: the names ``Cache(...)`` is
    bound to, the blueprints and how they are registered."""

    commit: str
    cache_names: set[str] = field(default_factory=set)
    app_names: set[str] = field(default_factory=set)
    blueprints: dict[str, list[Blueprint]] = field(default_factory=dict)
    registrations: list[Registration] = field(default_factory=list)


class PythonSources:
    """Parsed modules of the checkout, each parsed once per revision."""

    def __init__(self, checkout: Checkout) -> None:
        self.checkout = checkout
        self._trees: dict[tuple[str, str], ast.Module | SourceProblem | None] = {}
        self._base: dict[tuple[str, str], ModuleScan | None] = {}
        self._scans: dict[tuple[str, str], ModuleScan | None] = {}
        self._modules: dict[str, dict[str, str]] = {}
        self._revisions: dict[str, Revision] = {}
        self._equivalents: dict[tuple[str, str], set[str]] = {}
        self._module_bindings: dict[tuple[str, str], dict[str, Binding] | None] = {}

    def tree(self, commit: str, path: str) -> ast.Module | None:
        """The module at ``path`` (None when it is not there); ``SourceProblem`` (a
        SyntaxError) when it cannot be read or parsed."""
        if (commit, path) not in self._trees:
            data = self.checkout.read_bytes(commit, path)
            try:
                self._trees[commit, path] = None if data is None else parse_source(data, path)
            except SourceProblem as exc:
                self._trees[commit, path] = exc
        found = self._trees[commit, path]
        if isinstance(found, SourceProblem):
            raise found
        return found

    def modules(self, commit: str) -> dict[str, str]:
        """Every importable module of the revision, by name, to its path."""
        if commit not in self._modules:
            files = self.checkout.files(commit)
            found: dict[str, str] = {}
            for path in sorted(files, key=lambda p: (p.count("/"), p)):
                name = module_name(path, files)
                if name is not None:
                    found.setdefault(name, path)
            self._modules[commit] = found
        return self._modules[commit]

    def module_of(self, commit: str, path: str) -> str | None:
        return module_name(path, self.checkout.files(commit))

    def _bindings(self, commit: str, module: str) -> dict[str, Binding] | None:
        """The module's top-level bindings (None when it is not in the revision)."""
        if (commit, module) not in self._module_bindings:
            path = self.modules(commit).get(module)
            try:
                tree = self.tree(commit, path) if path is not None else None
            except SourceProblem:
                tree = None  # said where the file itself changed
            found = module_bindings(tree) if tree is not None else None
            self._module_bindings[commit, module] = found
        return self._module_bindings[commit, module]

    def _absolute(self, commit: str, module: str, binding: Binding) -> str:
        """The module a ``from ... import`` names, relative imports resolved."""
        if not binding.level:
            return binding.value
        path = self.modules(commit).get(module, "")
        package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
        parts = package.split(".")
        parent = ".".join(parts[: max(len(parts) - binding.level + 1, 0)])
        return f"{parent}.{binding.value}".strip(".") if binding.value else parent

    def follow(self, commit: str, module: str, parts: tuple[str, ...], hops: int = 0) -> Followed:
        """Where ``parts`` (a dotted name read in ``module``) leads."""
        here = f"{module}:{'.'.join(parts)}"
        bindings = self._bindings(commit, module) if parts else None
        if bindings is None or hops > _MAX_HOPS:
            return Followed(module, parts, None, (here,))
        binding, rest = bindings.get(parts[0]), parts[1:]
        after: tuple[str, tuple[str, ...]] | None = None
        if binding is None:
            if rest and f"{module}.{parts[0]}" in self.modules(commit):
                after = (f"{module}.{parts[0]}", rest)  # a submodule of a package
        elif binding.role == IMPORT:
            after = (self._absolute(commit, module, binding), (binding.name, *rest))
        elif binding.role == MODULE and rest:
            after = (binding.value, rest)
        elif binding.role == ALIAS:
            after = (module, (*binding.value.split("."), *rest))
        if after is None:
            return Followed(module, parts, binding, (here,))
        followed = self.follow(commit, *after, hops + 1)
        called = followed.called or (binding is not None and binding.called)
        return followed._replace(names=(here, *followed.names), called=called)

    def classify(self, commit: str, module: str | None) -> Classify:
        """What a dotted decorator name in ``module`` stands for: a cache decorator made
        by an alias here or in another module of the revision, or None."""

        def classify(name: str) -> CacheUse | None:
            if module is None:
                return None
            followed = self.follow(commit, module, tuple(name.split(".")))
            parts = followed.parts
            if followed.module == module and parts == tuple(name.split(".")):
                return None  # not an alias of anything: not a cache decorator
            if len(parts) > 1 and parts[-1] in CACHE_DECORATORS:
                return CacheUse(parts[-1], ".".join(parts[:-1]), followed.module, followed.called)
            return None

        return classify

    def defines(self, commit: str, dotted: str) -> bool:
        """Whether the revision defines the function ``module.qualname`` (as a def of
        its module, where importing the module finds it)."""
        for module, path in self.modules(commit).items():
            if not dotted.startswith(f"{module}."):
                continue
            try:
                tree = self.tree(commit, path)
            except SourceProblem:
                continue
            qualname = dotted[len(module) + 1 :]
            if tree is not None and any(q == qualname for q, _ in function_nodes(tree)):
                return True
        return False

    def _base_scan(self, commit: str, path: str) -> ModuleScan | None:
        if (commit, path) not in self._base:
            tree = self.tree(commit, path)
            module = self.module_of(commit, path)
            classify = self.classify(commit, module)
            self._base[commit, path] = None if tree is None else scan_module(tree, path, classify)
        return self._base[commit, path]

    def scan(self, commit: str, path: str) -> ModuleScan | None:
        """The module at ``path`` (None when it is not there), its functions cached by
        another module's call included; SyntaxError when it cannot be read."""
        if (commit, path) not in self._scans:
            base = self._base_scan(commit, path)
            scan = None if base is None else replace(base, functions=dict(base.functions))
            module = self.module_of(commit, path)
            if scan is not None and module is not None:
                for name, wrap in self.wrapped_elsewhere(commit, module, path, scan).items():
                    scan.add_wrapped(name, wrap)
            self._scans[commit, path] = scan
        return self._scans[commit, path]

    def wrapped_elsewhere(
        self, commit: str, module: str, path: str, scan: ModuleScan
    ) -> dict[str, Wrap]:
        """The module's functions that another module caches by a call
        (``cache.memoize(60)(helpers.compute)``), each with that call."""
        names = sorted(scan.defs)
        if not names:
            return {}
        makers = set(self.checkout.files_naming(commit, sorted(CACHE_DECORATORS)))
        found: dict[str, Wrap] = {}
        for other in self.checkout.files_naming(commit, names):
            other_module = self.module_of(commit, other)
            if other == path or other not in makers or other_module is None:
                continue
            try:
                other_scan = self._base_scan(commit, other)
            except SyntaxError:
                continue  # said where that file itself changed
            for wrap in other_scan.foreign_wraps if other_scan is not None else []:
                if wrap.target is None:
                    continue
                followed = self.follow(commit, other_module, tuple(wrap.target.split(".")))
                binding = followed.binding
                if followed.module == module and binding is not None and binding.role == DEFINED:
                    use = wrap.use._replace(module=wrap.use.module or other_module)
                    found.setdefault(followed.parts[0], replace(wrap, use=use))
        return found

    def cache_of(self, commit: str, module: str, use: CacheUse) -> CacheRef:
        """The cache a decorator on ``use.expr`` (read in ``module``) stores in."""
        followed = self.follow(commit, use.module or module, tuple(use.expr.split(".")))
        canonical = followed.cache
        names = set(followed.names)
        if canonical is not None:
            names |= self.equivalents(commit, canonical)
            return CacheRef(canonical, (canonical, *sorted(names - {canonical})))
        return CacheRef(None, tuple(sorted(names)))

    def equivalents(self, commit: str, canonical: str) -> set[str]:
        """Every module-level name of the revision bound to the cache ``canonical``
        (``shop:cache`` for ``from .ext import cache`` in ``shop/__init__.py``)."""
        if (commit, canonical) not in self._equivalents:
            variable = canonical.partition(":")[2]
            found = {canonical}
            for path in self.checkout.files_containing(commit, variable):
                module = self.module_of(commit, path)
                bindings = self._bindings(commit, module) if module is not None else None
                for name, binding in (bindings or {}).items():
                    leads_here = self.follow(commit, module or "", (name,)).cache == canonical
                    if binding.role in (IMPORT, ALIAS) and leads_here:
                        found.add(f"{module}:{name}")
            self._equivalents[commit, canonical] = found
        return self._equivalents[commit, canonical]

    def caches(self, commit: str) -> set[str]:
        """The module-level ``Cache(...)`` objects of the revision, as ``module:name``."""
        found = set()
        for path in self.checkout.files_containing(commit, "Cache"):
            module = self.module_of(commit, path)
            bindings = self._bindings(commit, module) if module is not None else None
            found |= {f"{module}:{n}" for n, b in (bindings or {}).items() if b.role == CACHE}
        return found

    def revision(self, commit: str) -> Revision:
        if commit not in self._revisions:
            found = Revision(commit)
            for word in ("Cache", "Flask", "Blueprint", "register_blueprint"):
                for path in self.checkout.files_containing(commit, word):
                    try:
                        scan = self.scan(commit, path)
                    except SyntaxError:
                        continue  # said where it matters, when the file itself changed
                    if scan is None:
                        continue
                    if word == "Cache":
                        found.cache_names |= scan.cache_names
                    elif word == "Flask":
                        found.app_names |= scan.app_names
                    elif word == "Blueprint":
                        for name, blueprint in scan.blueprints.items():
                            found.blueprints.setdefault(name, []).append(blueprint)
                    else:
                        found.registrations += scan.registrations
            self._revisions[commit] = found
        return self._revisions[commit]
