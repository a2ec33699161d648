"""Invalidate what the app memoized, as ``delete_memoized`` and its kin do inside the app.

Keys come from ``cachectl.keys`` (or, with the app loaded, from the decorator's
own ``make_cache_key``); reads and writes go through the backend. Two deliberate
differences from the library, both in the operator's favour: a missing version
key is never created just to compute a key (no entry can exist without it), and
``--dry-run`` writes nothing at all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cachectl import keys
from cachectl.app.functions import MemoizedFunction, ReprArgument
from cachectl.backends.base import CacheBackend, ProgressCallback
from cachectl.config.generations import LEGACY
from cachectl.config.settings import CacheSettings
from cachectl.errors import UsageError
from cachectl.operations.reports import Report, remove_streamed


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

    def called_with(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], instance_id: str | None
    ) -> MemoizedCall:
        """The same function, decorator options and instance (unless ``instance_id``
        names another) called with ``args`` and ``kwargs``: a line of ``--each``."""
        return MemoizedCall(
            self.function,
            args,
            kwargs,
            self.instance_id if instance_id is None else instance_id,
            self.make_name,
            self.ignore,
            self.hash_method,
            self.source_check,
        )


class KeyForm:
    """What the keys of one function's (and instance's) calls share, formed once:
    ``key`` adds a call's arguments, checked as ``check_call`` checks them. A single
    call forms one; ``delete-memoized --each`` one per function and instance."""

    def __init__(
        self,
        invalidator: MemoizedInvalidator,
        call: MemoizedCall,
        *,
        from_the_app: bool = False,
        name: str = "",
        versions: str = "",
        first_id: str | None = None,
        hash_method: Callable[..., Any] | None = None,
        source: str | None = None,
    ) -> None:
        self.invalidator = invalidator
        self.from_the_app = from_the_app
        self.name, self.versions, self.first_id = name, versions, first_id
        self.hash_method, self.source = hash_method, source
        self.ignore = call.ignore
        generation = invalidator.settings.generation
        self.keeps = generation.keeps_ignored_keywords
        self.generation = generation.name
        #: The keys of calls without keyword arguments, what they share formed once.
        self.positional: keys.PositionalKeys | None = None
        signature = call.function.signature
        if not from_the_app and signature is not None and hash_method is not None:
            # Without the instance's id there is none: ``key`` says so, as it always has.
            with contextlib.suppress(ValueError):
                self.positional = keys.PositionalKeys(
                    signature,
                    self.generation,
                    name,
                    versions,
                    hash_method,
                    source=source,
                    ignore=self.ignore,
                    first_id=first_id,
                )

    def key(self, call: MemoizedCall) -> str:
        """The key of ``call``, a call of the function (and instance) this form is of."""
        function = call.function
        check_arguments(call, self.keeps)
        if self.from_the_app:
            return self.invalidator._entry_key_from_the_app(call)
        if self.positional is not None and not call.kwargs:
            return self.positional.key(call.args)
        assert function.signature is not None and self.hash_method is not None
        arguments = keys.memoize_key_arguments(
            function.signature,
            call.args,
            call.kwargs,
            self.generation,
            self.ignore,
            self.first_id,
            keep_ignored_keywords=bool(self.keeps),
        )
        return keys.memoize_entry_key(
            self.name, arguments, self.versions, self.hash_method, self.source
        )


class MemoizedInvalidator:
    """Invalidation of memoized results on one backend, with the app's settings
    (and the app itself when it is loaded, whose decorators form keys exactly)."""

    def __init__(self, backend: CacheBackend, settings: CacheSettings, app: Any = None) -> None:
        self.backend = backend
        self.settings = settings
        self.app = app
        self.generation = settings.generation.name

    def namespaces(self, call: MemoizedCall) -> tuple[str, str | None]:
        """``(function namespace, instance namespace or None)``."""
        function = call.function
        fname = keys.function_namespace(function.module, function.qualname, self.generation)
        if call.instance_id is None or "self" in call.ignore:
            return fname, None
        _check_instance(call)
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
        old = self.read_version(target)
        report.version_key_existed = old is not None
        report.nothing_matched = old is None
        if old is None:
            # Nothing can be stored without a version: writing one would only
            # leave a key behind for a name that may well be misspelled.
            report.notes.append(
                f"nothing is cached under {target} (misspelled, or nothing cached yet): "
                "no new version written"
            )
            if purge:
                report.purged = 0
            return report
        if purge:
            self._check_purgeable(target, old)
            # Purge first, the new version after: an interrupted purge leaves the
            # version as it was, so running the command again finishes the job.
            report.purged = self._purge(fname, instance, old, dry_run, on_progress)
        version = keys.new_version()
        report.written[target] = version
        if not dry_run:
            self.backend.set(target, version, self._version_timeout())
        return report

    @staticmethod
    def _check_purgeable(version_key: str, version: str) -> None:
        """Entries are found by the version their keys end with: a version Flask-Caching
        did not write (glob characters, another length) would match other keys."""
        if not keys.is_flask_caching_version(version):
            raise UsageError(
                f"{version_key} holds {version!r}, not a version Flask-Caching writes "
                f"({keys.VERSION_LENGTH} characters of base64): refusing to purge by it; "
                "without --purge a new version is written and nothing else is removed"
            )

    def _purge(
        self,
        fname: str,
        instance: str | None,
        old: str,
        dry_run: bool,
        on_progress: ProgressCallback | None,
    ) -> int:
        """Remove the entries stored under the old version, found by their shape."""
        if instance is not None:
            function_version = self.read_version(keys.version_key(fname))
            if function_version is None:
                return 0
            self._check_purgeable(keys.version_key(fname), function_version)
        matches = self.entries_under(fname, instance, old)
        return remove_streamed(self.backend, matches, dry_run, on_progress)

    def entries_under(self, fname: str, instance: str | None, version: str) -> Iterator[str]:
        """The stored results under ``version`` (of the function, or with ``instance`` of
        that instance), found by their shape: HASH + function version (+ instance
        version). Streamed; needs a backend that lists keys."""
        hash_part = "?" * keys.ENTRY_HASH_LENGTH
        if instance is None:
            pattern = f"{hash_part}{self.backend.literal_pattern(version)}*"
            counts: tuple[int, ...] = (1, 2)
        else:
            function_version = self.read_version(keys.version_key(fname))
            if function_version is None:
                return iter(())
            pattern = f"{hash_part}{self.backend.literal_pattern(function_version + version)}"
            counts = (2,)
        return (
            key
            for key in self.backend.scan_keys(pattern)
            if keys.looks_like_memoize_entry(key, counts)
        )

    def delete_version_key(self, call: MemoizedCall, dry_run: bool) -> Report:
        """Like ``delete_memoized_verhash``: the version key itself goes."""
        fname, instance = self.namespaces(call)
        report = Report(
            "delete-version-key", dry_run, deleted=[keys.version_key(instance or fname)]
        )
        if not dry_run:
            report.removed = self.backend.delete(report.deleted)
        return report

    def entry_key(self, call: MemoizedCall) -> str | None:
        """The key of one call's stored result, or None when no version is stored
        (then no result can be stored either)."""
        form = self.key_form(call)
        return None if form is None else form.key(call)

    def key_form(
        self, call: MemoizedCall, read_version: Callable[[str], str | None] | None = None
    ) -> KeyForm | None:
        """What the key of every call of ``call``'s function (and instance) shares, after
        every check of ``call``; None when no version is stored. ``read_version`` reads a
        version key in place of ``self.read_version``."""
        function = call.function
        check_call(call, self.settings, self.app)
        fname, instance = self.namespaces(call)
        read = read_version or self.read_version
        versions = [read(keys.version_key(fname))]
        if instance is not None:
            versions.append(read(keys.version_key(instance)))
        if any(version is None for version in versions):
            return None
        if self.app is not None and function.decorated is not None:
            return KeyForm(self, call, from_the_app=True)
        assert function.signature is not None
        return KeyForm(
            self,
            call,
            name=call.make_name or fname,
            versions="".join(v for v in versions if v is not None),
            first_id=function.class_id() if function.is_classmethod else call.instance_id,
            hash_method=call.hash_method or self.settings.hash_method,
            source=function.source() if call.source_check else None,
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
        with self.app.app_context():
            key = function.decorated.make_cache_key(function.undecorated, *args, **call.kwargs)
        return str(key)

    def delete_entry(self, call: MemoizedCall, dry_run: bool) -> Report:
        """Like ``delete_memoized(f, *args, **kwargs)``: exactly one stored result."""
        call.function.check_call(call.args, call.kwargs)
        key = self.entry_key(call)
        report = Report("delete-entry", dry_run)
        if key is None:
            report.nothing_matched = True
            report.notes.append("no version is stored for this function: nothing is cached")
            report.removed = 0
            return report
        report.deleted.append(key)
        if not dry_run:
            report.removed = self.backend.delete([key])
        return report


def _check_instance(call: MemoizedCall) -> None:
    if call.instance_id is None or "self" in call.ignore:
        return
    function = call.function
    if not function.is_method and function.signature is not None:
        raise UsageError(f"--instance applies to methods; {function.dotted} takes no self")


def check_call(call: MemoizedCall, settings: CacheSettings, app: Any = None) -> None:
    """Every check of a memoized call that needs no server, made before the first
    command of a batch runs (``cachectl.runtime.checking``) and again where a key is formed:
    --instance only for a method; for one call, the instance of a method, a known
    signature the arguments bind to, and a generation that decides the key."""
    _check_instance(call)
    if not call.has_call:
        return
    function = call.function
    if function.is_method and call.instance_id is None:
        raise UsageError(
            f"{function.dotted} is a method: name the instance with --instance ID "
            "(its repr() or __caching_id__())"
        )
    function.check_call(call.args, call.kwargs)  # the arguments bind to its signature
    if app is not None and function.decorated is not None:
        return  # the app's own decorator forms the key
    if function.signature is None:
        # Without a signature no key can be formed, whatever is cached.
        why = f" ({function.import_problem})" if function.import_problem else ""
        raise UsageError(
            f"cannot import {function.dotted} here{why}, so its signature is unknown: "
            "pass --signature '(arg, other=default, ...)'"
        )
    settings.generation.require_decided("the key of one call (its hash, and how defaults enter it)")
    _check_ignored_keywords(call, settings.generation.keeps_ignored_keywords)


def check_arguments(call: MemoizedCall, keeps: bool | None) -> None:
    """The checks of one call's arguments (``check_call`` makes them with the function's):
    they bind to its signature, and an ignored one given by keyword has a decided key
    (``keeps``: the generation's ``keeps_ignored_keywords``)."""
    call.function.check_call(call.args, call.kwargs)
    _check_ignored_keywords(call, keeps)


def _check_ignored_keywords(call: MemoizedCall, keeps: bool | None) -> None:
    if keeps is None and call.ignore and set(call.kwargs) & set(call.ignore):
        raise UsageError(
            "an ignored argument given by keyword stays in the key in Flask-Caching "
            "1.9-2.1, not in 2.2-2.4: name the app's release with --compat (2.1, 2.4, ...)"
        )


def check_options(has_call: bool, purge: bool, verhash: bool) -> None:
    """Refuse combinations that mean nothing, before anything is loaded or sent."""
    if has_call and (purge or verhash):
        raise UsageError(
            "--purge and --verhash invalidate the whole function: give no ARGs with them"
        )
    if purge and verhash:
        raise UsageError("choose --purge or --verhash")


def delete_memoized(
    backend: CacheBackend,
    settings: CacheSettings,
    call: MemoizedCall,
    *,
    app: Any = None,
    purge: bool = False,
    verhash: bool = False,
    dry_run: bool = False,
    on_progress: ProgressCallback | None = None,
) -> Report:
    """What ``cache.delete_memoized(f, *args, **kwargs)`` does (one call's result, or a
    new version for all of them), or with ``verhash`` ``delete_memoized_verhash(f)``."""
    check_options(call.has_call, purge, verhash)
    invalidator = MemoizedInvalidator(backend, settings, app)
    if verhash:
        return invalidator.delete_version_key(call, dry_run)
    if call.has_call:
        return invalidator.delete_entry(call, dry_run)
    return invalidator.invalidate_all(call, purge, dry_run, on_progress)
