"""The route a request path reaches, and its arguments, for Flask-Caching 2.5.0's view keys.

2.5.0 (that release alone) took a view argument named ``path`` or ``query_args`` for
``make_cache_key``'s own argument of that name, so such a view's key is formed from the
argument's value, not from the request (``keys.with_explicit_view_arguments``). Which
route a path reaches is the app's URL map's answer with ``--app``; without it, the rules
read from the app's source at hand (``release.route_scan``), matched by Werkzeug as Flask
matches them, so a path reaching another route than the one with such an argument keeps
its usual key.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from cachectl import keys
from cachectl.release.route_scan import RouteRule, source_routes

#: A rule's ``<converter:name>`` or ``<name>``: the names, to find the rules that matter.
_VARIABLE = re.compile(r"<(?:[^<>]*:)?\s*([A-Za-z_][A-Za-z0-9_]*)\s*>")


class RouteArguments(NamedTuple):
    """The arguments of the route a path reaches (empty: none, or no route), or None
    with the reason (one sentence) when they are not known."""

    values: dict[str, Any] | None
    unknown: str | None = None


def app_route_arguments(app: Any, path: str) -> RouteArguments:
    """The view arguments Flask hands the view for a GET of ``path`` (the rule's
    defaults included), from the app's own URL map."""
    from flask import request

    with app.test_request_context(path):
        if request.routing_exception is not None or request.view_args is None:
            return RouteArguments({})
        return RouteArguments(dict(request.view_args))


def _names(rule: RouteRule) -> set[str]:
    """The arguments Flask hands the view of ``rule``: its variables and its defaults."""
    return set(_VARIABLE.findall(rule.rule)) | set(rule.defaults or ())


def source_route_arguments(path: str, roots: list[str], with_query: bool = False) -> RouteArguments:
    """The arguments of the route ``path`` reaches among the GET rules in the source under
    ``roots``; None when no route is found there, or when a route the source does not
    spell out could decide the key: one whose view could take ``path`` (or, ``with_query``,
    for a query-string view, ``query_args``: only those form its key) and might be the one
    reached; or any, when the route reached has such an argument (another might take the
    path first)."""
    found = source_routes(roots)
    where = " and ".join(roots)
    if not found.rules and not found.problems:
        return RouteArguments(None, f"no route decorator found in the source under {where}")
    if found.truncated:
        return RouteArguments(None, f"the source under {where} has too many files to read")
    explicit = set(keys.EXPLICIT_VIEW_ARGUMENTS) if with_query else {"path"}
    values: dict[str, Any] = {}
    if any(_names(rule) & explicit for rule in found.rules):
        matched = _match(path, found.rules)
        if matched.values is None:
            return matched
        values = matched.values
    reached_explicit = bool(set(values) & explicit)
    for unread in found.problems:
        if reached_explicit or unread.takes & explicit:
            return RouteArguments(None, f"a route in the source is not known: {unread.where}")
    return RouteArguments(values)


def _match(path: str, rules: list[RouteRule]) -> RouteArguments:
    """What Werkzeug, matching as Flask does, hands the view of the rule ``path`` reaches."""
    try:
        from werkzeug.exceptions import HTTPException
        from werkzeug.routing import Map, RoutingException, Rule
    except ImportError:
        return RouteArguments(None, "Werkzeug (Flask's router) is not installed to match routes")
    try:
        adapter = Map(
            [Rule(r.rule, defaults=r.defaults, endpoint=str(n)) for n, r in enumerate(rules)]
        ).bind("localhost")
    except (LookupError, ValueError) as exc:  # a converter of the app's own, a bad rule
        return RouteArguments(None, f"the source's routes cannot be matched here ({exc})")
    try:
        _endpoint, values = adapter.match(path, method="GET")
    except (HTTPException, RoutingException):
        return RouteArguments({})  # no route (or a redirect): no view stores at this path
    return RouteArguments(dict(values))
