"""Warm the cache through the app's own code: a memoized call made through its decorator,
a view requested through the app's test client, so what is stored is exactly what the
app would store (its key, its value, its timeout), never a value cachectl made up.

Only what the operator named runs (``warm`` names a function or a path; ``invalidate
--warm`` and ``plan --apply --warm`` warm what they themselves invalidated). Whether a
target was already cached, and whether the app stored it, is read from the key the
app's decorator forms, on cachectl's own connection.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cachectl.app.functions import ReprArgument
from cachectl.app.loader import stdout_to_stderr
from cachectl.backends.base import CacheBackend
from cachectl.config.settings import CacheSettings
from cachectl.errors import UsageError
from cachectl.operations.memoized import MemoizedCall, MemoizedInvalidator, check_call

STORED = "stored"
ALREADY_CACHED = "already cached"
NOT_STORED = "not stored"
FAILED = "failed"
#: A dry run's (``plan --apply --warm --dry-run``): what would be requested.
WOULD_WARM = "would warm"

#: The most targets --jobs runs at once: the app's code runs in this process's threads.
MAX_JOBS = 64


class AppFailure(Exception):
    """The app's own code failed while warming a target: one line, its exception's."""


@dataclass
class WarmTarget:
    """One thing to warm: how it is named, the key the app stores it under (None when
    no key can be formed before the call: the function has no version yet), and the
    call into the app that stores it."""

    kind: str
    label: str
    key: Callable[[CacheBackend], str | None]
    run: Callable[[], None]


@dataclass
class WarmResult:
    kind: str
    target: str
    status: str
    key: str | None = None
    error: str | None = None
    #: The app's exception behind ``error`` (its traceback is shown with --debug).
    cause: BaseException | None = field(default=None, repr=False, compare=False)

    def document(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "target": self.target,
            "status": self.status,
            "key": self.key,
            "error": self.error,
        }


@dataclass
class WarmReport:
    """Every target's outcome, in the order given, and what could not be warmed."""

    results: list[WarmResult] = field(default_factory=list)
    #: ``(what, why)`` for each invalidation that names nothing concrete to warm.
    not_warmable: list[tuple[str, str]] = field(default_factory=list)

    @property
    def failed(self) -> list[WarmResult]:
        return [result for result in self.results if result.status == FAILED]

    def counts(self) -> dict[str, int]:
        statuses = (STORED, ALREADY_CACHED, NOT_STORED, FAILED, WOULD_WARM)
        return {s: sum(1 for r in self.results if r.status == s) for s in statuses}

    def document(self) -> dict[str, Any]:
        return {
            "ok": not self.failed,
            "counts": self.counts(),
            "results": [result.document() for result in self.results],
            "not_warmable": [{"what": what, "why": why} for what, why in self.not_warmable],
        }


def one_line(exc: BaseException) -> str:
    """An exception of the app's as one line (its type and its first line)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def check_jobs(jobs: int) -> int:
    if not 1 <= jobs <= MAX_JOBS:
        raise UsageError(f"--jobs takes 1 to {MAX_JOBS}, not {jobs}")
    return jobs


# -- memoized calls -----------------------------------------------------------------------


def memoized_target(settings: CacheSettings, app: Any, call: MemoizedCall) -> WarmTarget:
    """A call of a memoized function, made through the app's own decorator inside an
    application context. Refused (exit 2) when no such call can be made here: the
    function must be imported and decorated, with real arguments (not a --repr text,
    not a method, whose instance cannot be rebuilt)."""
    function = call.function
    label = call_label(call)
    if function.decorated is None:
        why = function.import_problem or "it is not decorated with @cache.memoize here"
        raise UsageError(f"cannot warm {function.dotted}: {why}")
    if function.is_method:
        raise UsageError(
            f"cannot warm {function.dotted}: a method needs its instance, which cachectl "
            "cannot rebuild from its repr()"
        )
    if any(isinstance(arg, ReprArgument) for arg in (*call.args, *call.kwargs.values())):
        raise UsageError(
            f"cannot warm {label}: an argument given by --repr is only text, not the object "
            "the function needs"
        )
    check_call(call, settings, app)
    function.check_call(call.args, call.kwargs)
    leading: tuple[Any, ...] = (function.owner,) if function.is_classmethod else ()

    def run() -> None:
        with app.app_context():
            try:
                function.decorated(*leading, *call.args, **call.kwargs)
            except Exception as exc:
                raise AppFailure(one_line(exc)) from exc

    def key(backend: CacheBackend) -> str | None:
        return MemoizedInvalidator(backend, settings, app).entry_key(call)

    return WarmTarget("memoized", label, key, run)


def call_label(call: MemoizedCall) -> str:
    """``shop.get_product(1042, currency='EUR')``."""
    shown = [repr(arg) for arg in call.args]
    shown += [f"{name}={value!r}" for name, value in call.kwargs.items()]
    return f"{call.function.dotted}({', '.join(shown)})"


# -- views --------------------------------------------------------------------------------


def parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip() or any(c in text for c in "\r\n"):
        raise UsageError(f"--header takes NAME:VALUE, not {text!r}")
    return name.strip(), value.strip()


def view_label(path: str, query: str | None) -> str:
    return f"GET {path}" + (f"?{query}" if query else "")


def view_key(
    settings: CacheSettings, app: Any, path: str, query: str | None, headers: dict[str, str]
) -> str | None:
    """The key the view at ``path`` stores its response under: its own decorator's
    (as ``delete-view --endpoint`` forms it), else the key ``delete-view PATH`` deletes."""
    from flask import request

    from cachectl.operations import view_routes, views

    with app.test_request_context(path, query_string=query or "", headers=headers):
        rule = request.url_rule
        endpoint = rule.endpoint if rule is not None else None
        view_args = dict(request.view_args or {})
    if endpoint is not None and endpoint in app.view_functions:
        try:
            cached, leading = views._cached_get_handler(endpoint, app.view_functions[endpoint])
        except UsageError:
            cached = None
        if cached is not None:
            with app.test_request_context(path, query_string=query or "", headers=headers):
                given = views._key_function_given_to_the_decorator(cached)
                if given is not None:
                    return str(given(*leading, **view_args))
                return str(cached.make_cache_key(*leading, use_request=True, **view_args))
    arguments = view_routes.app_route_arguments(app, path).values
    return views.view_target(settings, path=path, query=query, view_args=arguments)


def view_target(
    settings: CacheSettings,
    app: Any,
    path: str,
    query: str | None = None,
    headers: tuple[str, ...] = (),
) -> WarmTarget:
    """A GET of ``path`` through the app's test client: its @cache.cached stores the
    response as it would for a visitor. An exception the app does not handle is the
    target's failure (one line); so is an answer that is not a success."""
    if not path.startswith("/"):
        raise UsageError(f"PATH is a request path starting with '/', not {path!r}")
    given = dict(parse_header(text) for text in headers)
    label = view_label(path, query)
    # An exception the app does not handle reaches cachectl (one line) instead of being
    # logged with its traceback and turned into a 500: in this process only, where
    # nothing but warming runs (the app's handlers of its own exceptions still run).
    app.config["PROPAGATE_EXCEPTIONS"] = True

    def run() -> None:
        client = app.test_client()
        try:
            response = client.get(path, query_string=query or "", headers=given)
        except Exception as exc:
            raise AppFailure(one_line(exc)) from exc
        try:
            if response.status_code >= 400:
                raise AppFailure(f"the app answered {response.status}")
        finally:
            response.close()

    def key(backend: CacheBackend) -> str | None:
        try:
            return view_key(settings, app, path, query, given)
        except UsageError:
            raise
        except Exception as exc:
            raise AppFailure(f"the view's key cannot be formed: {one_line(exc)}") from exc

    return WarmTarget("view", label, key, run)


# -- running ------------------------------------------------------------------------------


class _Checker:
    """cachectl's own connection, used by one thread at a time (not every client is
    safe to share between threads; the app's calls, the slow part, run in parallel)."""

    def __init__(self, backend: CacheBackend) -> None:
        self.backend = backend
        self.lock = threading.Lock()

    def key_and_presence(self, target: WarmTarget) -> tuple[str | None, bool]:
        with self.lock:
            key = target.key(self.backend)
            return key, key is not None and self.backend.get(key) is not None


def warm_one(checker: _Checker, target: WarmTarget) -> WarmResult:
    """Warm one target: already cached, stored, not stored (the app's decorator chose
    not to: ``unless``, a None result, a response filter), or failed."""
    result = WarmResult(target.kind, target.label, FAILED)
    try:
        key, present = checker.key_and_presence(target)
        if present:
            result.status, result.key = ALREADY_CACHED, key
            return result
        target.run()
        key, present = checker.key_and_presence(target)
        result.key = key
        result.status = STORED if present else NOT_STORED
    except AppFailure as exc:
        result.error, result.cause = str(exc), exc.__cause__
    return result


def warm(backend: CacheBackend, targets: Iterable[WarmTarget], jobs: int = 1) -> WarmReport:
    """Warm every target, ``jobs`` at a time; the results in the targets' order. Targets
    are taken from ``targets`` as the pool frees (a long ``--each`` file is not read
    ahead of the work by more than the pool's width)."""
    report = WarmReport()
    report.results.extend(warm_stream(backend, targets, check_jobs(jobs)))
    return report


def warm_stream(
    backend: CacheBackend, targets: Iterable[WarmTarget], jobs: int
) -> Iterator[WarmResult]:
    # What the app's code prints goes to standard error: standard output is cachectl's
    # (one JSON document with --json), as while the app starts.
    with stdout_to_stderr():
        yield from _warm_each(backend, targets, jobs)


def _warm_each(
    backend: CacheBackend, targets: Iterable[WarmTarget], jobs: int
) -> Iterator[WarmResult]:
    checker = _Checker(backend)
    given = iter(targets)
    # The first alone: a function's first call writes its version key, and calls racing
    # to write it would each write their own, leaving all but the last one's results
    # unreachable (the app's own race, on a cold function).
    for target in given:
        yield warm_one(checker, target)
        break
    if jobs == 1:
        for target in given:
            yield warm_one(checker, target)
        return
    pending: deque[Future[WarmResult]] = deque()
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="cachectl-warm")
    try:
        for target in given:
            pending.append(pool.submit(warm_one, checker, target))
            while len(pending) >= 2 * jobs:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True)


#: Why a plan's action names nothing concrete to warm, by its kind.
_PLAN_NOT_CONCRETE = {
    "delete-memoized": "a whole function cannot be warmed: only a call with its arguments",
    "delete-view-all-queries": "every query of a view cannot be warmed: only one path and query",
    "delete-view-pattern": "a route with variables is every path it matches, not one path",
}


def warm_applied(applied: Iterable[Any], app: Any, dry_run: bool, generation: str) -> WarmReport:
    """``plan --apply --warm``: each view path the plan invalidated (``Applied`` records,
    ``cachectl.operations.plan``), requested again, its key checked on its own cache; the
    other actions listed as not warmable. With ``dry_run`` nothing is requested."""
    from cachectl.release.plan_actions import VIEW

    report = WarmReport()
    for done in applied:
        action = done.action
        if action.what != VIEW:
            why = _PLAN_NOT_CONCRETE.get(action.what, "it names no call of the app's code")
            report.not_warmable.append((action.command(generation), why))
            continue
        target = view_target(done.target.settings, app, action.target)
        if dry_run:
            report.results.append(WarmResult(target.kind, target.label, WOULD_WARM))
        else:
            report.results.extend(warm_stream(done.target.backend, [target], 1))
    return report
