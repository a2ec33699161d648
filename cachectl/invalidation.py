"""Invalidate what the app memoized, cached for a view, or stored for a template fragment.

Each operation does what the matching Flask-Caching call does inside the app
(``delete_memoized``, ``delete_memoized_verhash``, ``delete_cached``, a fragment
delete), with keys from ``cachectl.keys`` and the backend's reads and writes.
Two deliberate differences, both in the operator's favour: a missing version
key is never created just to compute a key (no entry can exist without it), and
``--dry-run`` writes nothing at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cachectl import keys
from cachectl.backends.base import CacheBackend, ProgressCallback, Tally, batched, partial_work
from cachectl.config import CacheSettings
from cachectl.errors import UsageError
from cachectl.functions import MemoizedFunction, ReprArgument
from cachectl.generations import LEGACY


@dataclass
class Report:
    """What an invalidation did (or, with ``dry_run``, would do)."""

    action: str
    dry_run: bool
    #: Keys written, with the value written.
    written: dict[str, str] = field(default_factory=dict)
    #: Keys deleted (or that would be).
    deleted: list[str] = field(default_factory=list)
    #: How many of ``deleted`` existed (None when the server cannot tell, or with dry_run).
    removed: int | None = None
    #: Old entries removed by --purge / --all-queries.
    purged: int | None = None
    notes: list[str] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "dry_run": self.dry_run,
            "written": self.written,
            "deleted": self.deleted,
            "removed": self.removed,
            "purged": self.purged,
            "notes": self.notes,
        }


@dataclass
class MemoizedCall:
    """A memoized function and, optionally, one call of it, as the operator named them."""

    function: MemoizedFunction
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: The instance's ``repr()`` or ``__caching_id__()``, for a method.
    instance_id: str | None = None
    #: What the decorator's ``make_name`` returns for the function's name.
    make_name: str | None = None
    ignore: tuple[str, ...] = ()
    hash_method: Callable[..., Any] | None = None
    source_check: bool = False

    @property
    def has_call(self) -> bool:
        return bool(self.args or self.kwargs)


class Invalidator:
    """Invalidation against one backend, with the app's settings (and app, if loaded)."""

    def __init__(self, backend: CacheBackend, settings: CacheSettings) -> None:
        self.backend = backend
        self.settings = settings
        self.generation = settings.generation.name

    # --- memoize namespaces and versions ---------------------------------------------

    def namespaces(self, call: MemoizedCall) -> tuple[str, str | None]:
        """``(function namespace, instance namespace or None)``."""
        function = call.function
        fname = keys.function_namespace(function.module, function.qualname, self.generation)
        if call.instance_id is None or "self" in call.ignore:
            return fname, None
        if not function.is_method and function.signature is not None:
            raise UsageError(f"--instance applies to methods; {function.dotted} takes no self")
        instance = keys.instance_namespace(
            function.module, function.qualname, call.instance_id, self.generation
        )
        return fname, instance

    def read_version(self, key: str) -> str | None:
        stored = self.backend.get(key)
        return stored.value if stored is not None and isinstance(stored.value, str) else None

    def _version_timeout(self) -> int | None:
        # 2.5 writes a reset version with no expiry; legacy with the default timeout.
        return None if self.generation == LEGACY else 0

    def invalidate_all(
        self, call: MemoizedCall, purge: bool, dry_run: bool, on_progress: ProgressCallback | None
    ) -> Report:
        """Like ``delete_memoized(f)`` (or ``(obj.method)`` with an instance): a fresh
        version makes every stored result unreachable; ``purge`` also removes them."""
        if purge:
            self.backend.require_key_listing()
        fname, instance = self.namespaces(call)
        target = keys.version_key(instance or fname)
        report = Report("new-version", dry_run)
        if purge:
            # Purge first, the new version after: an interrupted purge leaves the
            # version as it was, so running the command again finishes the job.
            old = self.read_version(target)
            if old is None:
                report.notes.append("no version was stored, so there is nothing to purge")
                report.purged = 0
            else:
                report.purged = self._purge(call, fname, instance, old, dry_run, on_progress)
        version = keys.new_version()
        report.written[target] = version
        if not dry_run:
            self.backend.set(target, version, self._version_timeout())
        return report

    def _purge(
        self,
        call: MemoizedCall,
        fname: str,
        instance: str | None,
        old: str,
        dry_run: bool,
        on_progress: ProgressCallback | None,
    ) -> int:
        """Remove the entries stored under the old version, found by their shape."""
        hash_part = "?" * keys.ENTRY_HASH_LENGTH
        if instance is None:
            # Entries of the function: HASH + old function version (+ an instance version).
            pattern = f"{hash_part}{old}*"
            counts: tuple[int, ...] = (1, 2)
        else:
            function_version = self.read_version(keys.version_key(fname))
            if function_version is None:
                return 0
            pattern = f"{hash_part}{function_version}{old}"
            counts = (2,)
        matches = (
            key
            for key in self.backend.scan_keys(pattern)
            if keys.looks_like_memoize_entry(key, counts)
        )
        return self._remove_streamed(matches, dry_run, on_progress)

    def _remove_streamed(
        self, names: Iterator[str], dry_run: bool, on_progress: ProgressCallback | None
    ) -> int:
        if dry_run:
            tally = Tally(on_progress)
            with partial_work(tally, "found"):
                for batch in batched(names):
                    tally.add(len(batch))
            return tally.count
        return self.backend.delete(names, on_progress) or 0

    def delete_version_key(self, call: MemoizedCall, dry_run: bool) -> Report:
        """Like ``delete_memoized_verhash``: the version key itself goes."""
        fname, instance = self.namespaces(call)
        report = Report(
            "delete-version-key", dry_run, deleted=[keys.version_key(instance or fname)]
        )
        if not dry_run:
            report.removed = self.backend.delete(report.deleted)
        return report

    # --- one memoized call ------------------------------------------------------------

    def entry_key(self, call: MemoizedCall) -> str | None:
        """The key of one call's stored result, or None when no version is stored
        (then no result can be stored either)."""
        function = call.function
        if function.is_method and call.instance_id is None:
            raise UsageError(
                f"{function.dotted} is a method: name the instance with --instance ID "
                "(its repr() or __caching_id__())"
            )
        fname, instance = self.namespaces(call)
        versions = [self.read_version(keys.version_key(fname))]
        if instance is not None:
            versions.append(self.read_version(keys.version_key(instance)))
        if any(version is None for version in versions):
            return None
        if self.settings.app is not None and function.decorated is not None:
            return self._entry_key_from_the_app(call)
        if function.signature is None:
            raise UsageError(
                f"cannot import {function.dotted} here, so its signature is unknown: "
                "pass --signature '(arg, other=default, ...)'"
            )
        first_id = function.class_id() if function.is_classmethod else call.instance_id
        arguments = keys.memoize_key_arguments(
            function.signature, call.args, call.kwargs, self.generation, call.ignore, first_id
        )
        return keys.memoize_entry_key(
            call.make_name or fname,
            arguments,
            "".join(v for v in versions if v is not None),
            call.hash_method or self.settings["CACHE_HASH_METHOD"],
            function.source() if call.source_check else None,
        )

    def _entry_key_from_the_app(self, call: MemoizedCall) -> str:
        """The decorator's own make_cache_key: it knows the function's make_name,
        args_to_ignore, hash_method and source_check exactly."""
        function = call.function
        args: tuple[Any, ...] = call.args
        if function.is_method:
            # The instance stands in by its id: the library's get_id() is its repr().
            args = (ReprArgument(call.instance_id or ""), *args)
        elif function.is_classmethod:
            args = (function.owner, *args)
        with self.settings.app.app_context():
            return function.decorated.make_cache_key(function.undecorated, *args, **call.kwargs)

    def delete_entry(self, call: MemoizedCall, dry_run: bool) -> Report:
        """Like ``delete_memoized(f, *args, **kwargs)``: exactly one stored result."""
        key = self.entry_key(call)
        report = Report("delete-entry", dry_run)
        if key is None:
            report.notes.append("no version is stored for this function: nothing is cached")
            report.removed = 0
            return report
        report.deleted.append(key)
        if not dry_run:
            report.removed = self.backend.delete([key])
        return report

    # --- views and fragments ----------------------------------------------------------

    def delete_keys(self, names: list[str], action: str, dry_run: bool) -> Report:
        report = Report(action, dry_run, deleted=names)
        if not dry_run:
            report.removed = self.backend.delete(names)
        return report

    def delete_query_variants(
        self,
        path: str,
        key_prefix: str,
        hash_method: Callable[..., Any],
        dry_run: bool,
        on_progress: ProgressCallback | None,
    ) -> Report:
        """Every cached query-string variant of a view: base key + a hex digest."""
        from cachectl.backends.redis import escape_glob

        self.backend.require_key_listing()
        base = keys.query_variant_base(path, key_prefix, self.generation)
        length = len(hash_method().hexdigest())
        hex_digits = set("0123456789abcdef")
        matches = (
            key
            for key in self.backend.scan_keys(escape_glob(base) + "?" * length)
            if set(key[len(base) :]) <= hex_digits
        )
        report = Report("delete-query-variants", dry_run)
        report.purged = self._remove_streamed(matches, dry_run, on_progress)
        return report

    def view_key_from_the_app(
        self, endpoint: str, values: dict[str, Any], query: str | None
    ) -> str:
        """The key the app's own view forms for ``url_for(endpoint, **values)``.

        The key is asked of the decorator itself, called as it calls itself when
        the app serves GET for that URL: that is the only way a callable
        key_prefix, a make_cache_key function or source_check give the same key.
        """
        app = self.settings.app
        view = app.view_functions.get(endpoint)
        if view is None:
            raise UsageError(f"the app has no endpoint {endpoint!r}")
        cached, leading = _cached_get_handler(endpoint, view)
        from flask import request, url_for

        with app.test_request_context():
            url = url_for(endpoint, **values)
        # Values the rule does not take become url_for's query string.
        path, _, url_query = url.partition("?")
        query_string = "&".join(part for part in (url_query, query or "") if part)
        with app.test_request_context(path, query_string=query_string):
            # The decorator is handed the URL's variables as keyword arguments.
            view_args = dict(request.view_args or {})
            given = _key_function_given_to_the_decorator(cached)
            try:
                if given is not None:
                    return given(*leading, **view_args)
                return cached.make_cache_key(*leading, use_request=True, **view_args)
            except Exception as exc:
                raise UsageError(
                    f"the cache key function of {endpoint!r} failed outside a real "
                    f"request: {type(exc).__name__}: {exc}"
                ) from exc


def _cached_get_handler(endpoint: str, view: Callable[..., Any]) -> tuple[Any, tuple[Any, ...]]:
    """The @cache.cached function a GET of ``endpoint`` goes through, and the
    positional arguments it is called with (the view instance, for a method).

    The view function comes first: a class's ``decorators`` (and flask-restx's
    Api and Namespace decorators) wrap it, so they are what a request meets
    first. Failing that, the class's handler for GET: ``dispatch_request``, which
    a plain View overrides, then the ``get`` that MethodView (and flask-restx and
    flask-smorest resources) dispatches GET to.
    """
    cached = _carrying_key_maker(view)
    if cached is not None:
        return cached, ()
    view_class = getattr(view, "view_class", None)
    if view_class is None:
        raise UsageError(f"the view of {endpoint!r} is not decorated with @cache.cached")
    for name in ("dispatch_request", "get"):
        cached = _carrying_key_maker(getattr(view_class, name, None))
        if cached is not None:
            # The method is called bound; an instance made without __init__
            # stands for the one Flask makes per request, with no side effects.
            return cached, (object.__new__(view_class),)
    from flask.views import MethodView

    where = f"the view of {endpoint!r} (class {view_class.__name__}"
    if callable(getattr(view_class, "get", None)):
        raise UsageError(f"{where}, method get) is not decorated with @cache.cached")
    if issubclass(view_class, MethodView):
        raise UsageError(f"{where}) has no get method: it serves no GET to cache")
    raise UsageError(
        f"{where}, method dispatch_request; it has no get) is not decorated with @cache.cached"
    )


def _carrying_key_maker(function: Any) -> Any:
    """The function @cache.cached returned, found under other decorators.

    functools.wraps copies ``make_cache_key`` onto every wrapper above it, so the
    first function that has one may only be a copy-holder; the decorator's own
    function is the one whose ``uncached`` is what it wraps. Falls back to the
    outermost holder for a library version that does not keep ``uncached``.
    """
    first = None
    seen: set[int] = set()
    while function is not None and id(function) not in seen:
        seen.add(id(function))
        if hasattr(function, "make_cache_key"):
            wrapped = getattr(function, "__wrapped__", None)
            if wrapped is not None and getattr(function, "uncached", None) is wrapped:
                return function
            first = first or function
        function = getattr(function, "__wrapped__", None)
    return first


def _key_function_given_to_the_decorator(cached: Any) -> Callable[..., str] | None:
    """``@cache.cached(make_cache_key=f)``: the decorator calls ``f`` instead of its
    ``make_cache_key`` attribute (which stays the default one), and keeps ``f``
    nowhere but in the closure of the function it returned, so it is read there."""
    code = getattr(cached, "__code__", None)
    cells = getattr(cached, "__closure__", None) or ()
    if code is None:
        return None
    for name, cell in zip(code.co_freevars, cells, strict=False):
        if name == "make_cache_key":
            try:
                given = cell.cell_contents
            except ValueError:  # an empty cell
                return None
            return given if callable(given) else None
    return None
