"""Delete what ``@cache.cached`` stored for a view, as ``cache.delete_cached`` does.

From a request path, the key is formed by ``cachectl.keys`` with the defaults
resolved here once (the decorator's key prefix, the generation's hash). From an
endpoint of a loaded app, the view's own decorator forms it, called as it is
when the app serves that GET, which is the only way a callable key_prefix, a
``make_cache_key`` function or ``source_check`` give the same key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cachectl import keys
from cachectl.app import static_lookup as static
from cachectl.backends.base import CacheBackend, ProgressCallback
from cachectl.config.settings import CacheSettings
from cachectl.errors import UsageError
from cachectl.operations.entries import checked_key
from cachectl.operations.reports import Report, delete_keys, remove_streamed


def check_request(
    path: str | None, endpoint: str | None, query: str | None, all_queries: bool
) -> None:
    """Refuse what names no view, before anything is loaded or sent."""
    if (path is None) == (endpoint is None):
        raise UsageError("give either PATH or --endpoint NAME")
    if all_queries and query is not None:
        raise UsageError("choose --query or --all-queries")


def checked_view_prefix(view_prefix: str) -> str:
    """The decorator's key_prefix, refused when ``%`` formatting cannot use it
    (``'%s%s'``, ``'%d'``): the app itself would fail with it."""
    if "%" in view_prefix:
        try:
            view_prefix % "/"
        except (TypeError, ValueError) as exc:
            raise UsageError(f"--view-prefix {view_prefix!r} is not a %s template: {exc}") from None
    return view_prefix


def delete_view(
    backend: CacheBackend,
    settings: CacheSettings,
    *,
    path: str | None = None,
    endpoint: str | None = None,
    url_values: dict[str, str] | None = None,
    query: str | None = None,
    all_queries: bool = False,
    view_prefix: str = keys.DEFAULT_VIEW_PREFIX,
    hash_method: Callable[..., Any] | None = None,
    app: Any = None,
    view_args: Mapping[str, Any] | None = None,
    dry_run: bool = False,
    on_progress: ProgressCallback | None = None,
) -> Report:
    """The entry of one view for ``path`` (or ``endpoint``), or all its query variants.
    ``view_args``: the arguments of the route ``path`` reaches (``view_routes``), which
    Flask-Caching 2.5.0 forms some keys from."""
    method = hash_method or settings.hash_method
    key = view_target(
        settings,
        path=path,
        endpoint=endpoint,
        url_values=url_values,
        query=query,
        all_queries=all_queries,
        view_prefix=view_prefix,
        hash_method=method,
        app=app,
        view_args=view_args,
    )
    if key is not None:
        return delete_keys(backend, [key], "delete-view", dry_run)
    assert path is not None
    base = _explicit(settings, keys.ViewKeyRequest(path, view_prefix), view_args).path
    return delete_query_variants(backend, settings, base, view_prefix, method, dry_run, on_progress)


def _explicit(
    settings: CacheSettings, request: keys.ViewKeyRequest, view_args: Mapping[str, Any] | None
) -> keys.ViewKeyRequest:
    """The request as the generation keys it: under 2.5.0, with the route's arguments named
    ``path`` and ``query_args`` in place of the request's own."""
    if not view_args or settings.generation.view_arguments_in_key is not True:
        return request
    try:
        return keys.with_explicit_view_arguments(request, view_args)
    except ValueError as exc:
        raise UsageError(
            f"Flask-Caching 2.5.0 cannot form the key of the view at {request.path}: {exc}, "
            "so it stores nothing there"
        ) from None


def view_target(
    settings: CacheSettings,
    *,
    path: str | None = None,
    endpoint: str | None = None,
    url_values: dict[str, str] | None = None,
    query: str | None = None,
    all_queries: bool = False,
    view_prefix: str = keys.DEFAULT_VIEW_PREFIX,
    hash_method: Callable[..., Any] | None = None,
    app: Any = None,
    view_args: Mapping[str, Any] | None = None,
) -> str | None:
    """Every check of a view's invalidation that needs no server (the request, the
    endpoint and its view's own key function, the key prefix, the generation), made
    before the first command of a batch runs (``cachectl.runtime.checking``) and again by
    ``delete_view``: the view's key, or None for all its query variants."""
    check_request(path, endpoint, query, all_queries)
    for text in (path, endpoint, query):
        if text is not None:
            checked_key(text)
    if endpoint is not None:
        if app is None:
            raise UsageError("--endpoint needs the app: add --app IMPORT")
        return view_key_from_the_app(app, endpoint, url_values or {}, query)
    assert path is not None
    if all_queries or query is not None:
        settings.generation.require_decided("the key of a view with a query string")
    checked_view_prefix(view_prefix)
    if all_queries:
        in_key = settings.generation.view_arguments_in_key is True
        if not in_key or (view_args or {}).get("query_args") is None:
            return None
        # 2.5.0 hashes the route's query_args, not the query string: one key for every query.
        query = ""
    request = _explicit(settings, keys.ViewKeyRequest(path, view_prefix, query), view_args)
    return keys.view_key(request, settings.generation.name, hash_method or settings.hash_method)


def delete_query_variants(
    backend: CacheBackend,
    settings: CacheSettings,
    path: str,
    key_prefix: str,
    hash_method: Callable[..., Any],
    dry_run: bool,
    on_progress: ProgressCallback | None,
) -> Report:
    """Every cached query-string variant of a view: base key + a hex digest."""
    backend.require_key_listing()
    base = keys.query_variant_base(path, checked_view_prefix(key_prefix), settings.generation.name)
    length = len(hash_method().hexdigest())
    hex_digits = set("0123456789abcdef")
    matches = (
        key
        for key in backend.scan_keys(backend.literal_pattern(base) + "?" * length)
        if set(key[len(base) :]) <= hex_digits
    )
    report = Report("delete-query-variants", dry_run)
    report.purged = remove_streamed(backend, matches, dry_run, on_progress)
    return report


def view_key_from_the_app(
    app: Any, endpoint: str, values: dict[str, Any], query: str | None
) -> str:
    """The key the app's own view forms for ``url_for(endpoint, **values)``."""
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
                return str(given(*leading, **view_args))
            return str(cached.make_cache_key(*leading, use_request=True, **view_args))
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
    view_class = static.read(view, "view_class")
    if view_class is None:
        raise UsageError(f"the view of {endpoint!r} is not decorated with @cache.cached")
    for name in ("dispatch_request", "get"):
        cached = _carrying_key_maker(static.read(view_class, name))
        if cached is not None:
            # The method is called bound; an instance made without __init__
            # stands for the one Flask makes per request, with no side effects.
            return cached, (object.__new__(view_class),)
    from flask.views import MethodView

    where = f"the view of {endpoint!r} (class {view_class.__name__}"
    if callable(static.read(view_class, "get")):
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
    for layer in static.unwrap_static(function):
        if static.read(layer, "make_cache_key") is not None:
            wrapped = static.read(layer, "__wrapped__")
            if wrapped is not None and static.read(layer, "uncached") is wrapped:
                return layer
            first = first or layer
    return first


def _key_function_given_to_the_decorator(cached: Any) -> Callable[..., str] | None:
    """``@cache.cached(make_cache_key=f)``: the decorator calls ``f`` instead of its
    ``make_cache_key`` attribute (which stays the default one), and keeps ``f``
    nowhere but in the closure of the function it returned, so it is read there."""
    code = static.read(cached, "__code__")
    cells = static.read(cached, "__closure__") or ()
    if code is None:
        return None
    for name, cell in zip(code.co_freevars, cells):
        if name == "make_cache_key":
            try:
                given = cell.cell_contents
            except ValueError:  # an empty cell
                return None
            return given if callable(given) else None
    return None
