"""warm: compute and store what the app caches, through the app's own code."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from cachectl.cli.group import Session, cli, pass_session
from cachectl.errors import UsageError
from cachectl.runtime.importing import lazy_module
from cachectl.runtime.wording import counted

if TYPE_CHECKING:
    from cachectl.app import functions
    from cachectl.operations import memoized as memoized_ops
    from cachectl.operations import warming
else:
    functions = lazy_module("cachectl.app.functions")
    memoized_ops = lazy_module("cachectl.operations.memoized")
    warming = lazy_module("cachectl.operations.warming")


@cli.command("warm")
@click.argument("kind", type=click.Choice(["memoized", "view"]))
@click.argument("target", metavar="FUNCTION|PATH")
@click.argument("args", nargs=-1, metavar="[ARG]...")
@click.option(
    "--kw",
    "keywords",
    multiple=True,
    metavar="NAME=VALUE",
    help="memoized: a keyword argument of the call. Repeatable.",
)
@click.option(
    "--each",
    metavar="FILE",
    help="memoized: one call's arguments a line, written as after FUNCTION on the command "
    "line (shell words, --kw NAME=VALUE); '-': standard input.",
)
@click.option(
    "--query",
    metavar="QUERY",
    help="view: the request's query string ('page=2&q=x').",
)
@click.option(
    "--header",
    "headers",
    multiple=True,
    metavar="NAME:VALUE",
    help="view: a request header. Repeatable.",
)
@click.option(
    "--jobs",
    type=int,
    default=1,
    show_default=True,
    metavar="N",
    help="How many targets to warm at once (threads of this process, 1 to 64).",
)
@pass_session
def warm(
    session: Session,
    kind: str,
    target: str,
    args: tuple[str, ...],
    keywords: tuple[str, ...],
    each: str | None,
    query: str | None,
    headers: tuple[str, ...],
    jobs: int,
) -> None:
    """Compute and store what the app caches, through the app's own code (needs --app).

    \b
    warm memoized FUNCTION [ARG]... [--kw NAME=VALUE]... [--each FILE]
      calls FUNCTION through its own @cache.memoize inside an application
      context, so the result is computed and stored exactly as the app stores
      it. FUNCTION, ARGs and --kw read as in delete-memoized; --each FILE makes
      one call per line (blank lines and '#' comments skipped).
    warm view PATH [--query QUERY] [--header NAME:VALUE]...
      requests GET PATH through the app's test client, so its @cache.cached
      stores the response.

    Only what is named runs. Each target is reported as stored, already cached
    (left as it is, nothing called), not stored (the app's decorator chose not
    to: unless, a None result, a response filter) or failed (the app's
    exception, or an error status, in one line). Exit 1 when any failed.

    \b
      cachectl --app 'shop:create_app()' warm memoized shop.catalog.get_product 1042
      cachectl --app 'shop:create_app()' warm memoized shop.catalog.get_product \\
          --each ids.txt --jobs 4
      cachectl --app 'shop:create_app()' warm view /pricing --query 'page=2'
    """
    if session.request.app_import is None:
        raise UsageError("warm runs the app's own code: name the app with --app IMPORT")
    warming.check_jobs(jobs)
    memoized_only = [("--kw", keywords), ("--each", each)]
    view_only = [("--query", query), ("--header", headers)]
    for flag, value in memoized_only if kind == "view" else view_only:
        if value:
            raise UsageError(f"{flag} applies to warm {'memoized' if kind == 'view' else 'view'}")
    if kind == "view" and args:
        raise UsageError("warm view takes one PATH (and --query for its query string)")
    if each is not None and (args or keywords):
        raise UsageError("--each FILE gives every call's arguments: give no ARGs or --kw with it")
    settings = session.settings
    app = session.app
    if kind == "view":
        targets = [warming.view_target(settings, app, target, query, headers)]
    else:
        function, _ = functions.find_memoized(target, None, app_loaded=True)
        calls = [_call(function, args, keywords)] if each is None else _each_call(function, each)
        # Every call checked (each line parsed, its arguments bound) before the first runs,
        # and before the connection (a batch checks its lines so: cachectl.runtime.checking).
        targets = [warming.memoized_target(settings, app, call) for call in calls]
    backend = session.backend()
    report = warming.warm(backend, targets, jobs)
    _render(session, report)
    if report.failed:
        click.get_current_context().exit(1)


def _call(function: Any, args: tuple[str, ...], keywords: tuple[str, ...]) -> Any:
    return memoized_ops.MemoizedCall(
        function=function,
        args=tuple(functions.parse_argument(arg) for arg in args),
        kwargs=dict(functions.parse_keyword(text) for text in keywords),
    )


def _each_call(function: Any, each: str) -> list[Any]:
    """The calls of an --each file, read as delete-memoized --each reads its lines (one
    reader, ``cli.memoized_each.numbered_calls``), every line before the first call runs:
    a line that does not parse stops the command with nothing warmed (exit 2, its number)."""
    from cachectl.cli.memoized_each import numbered_calls

    source = "standard input" if each == "-" else each
    base = memoized_ops.MemoizedCall(function=function)
    try:
        with click.open_file(each, "rb") as stream:
            found = [
                call
                for _, call in numbered_calls(base, stream, "shell", source, "nothing was warmed")
            ]
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror}") from exc
    if not found:
        raise UsageError(f"no call in {source}")
    return found


def _render(session: Session, report: Any) -> None:
    """The report's JSON document, or its lines (``render_results``)."""
    session.audit.record_done(report.document())
    if session.output.as_json:
        for result in report.results if session.debug else ():
            if result.cause is not None:
                _traceback(result.cause)
        session.output.document(report.document())
        return
    render_results(session, report)


def _traceback(exc: BaseException) -> None:
    import sys
    import traceback

    from cachectl.runtime.secrets import filtered

    sys.stderr.write(
        filtered("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    )


def render_results(session: Session, report: Any) -> None:
    """A line per target (its status, its key, the app's error: through the secrets
    filter, as every message; with --debug its traceback first), what could not be
    warmed, then the counts (on standard error)."""
    from cachectl.runtime.secrets import filtered

    output = session.output
    for result in report.results:
        line = f"{result.status}: {result.target}"
        if result.key is not None:
            line += f" ({result.key})"
        if result.error is not None:
            line += f": {filtered(result.error)}"
            if session.debug and result.cause is not None:
                _traceback(result.cause)
        output.result(line)
    for what, why in report.not_warmable:
        output.result(f"not warmed: {what}: {why}")
    counts = report.counts()
    said = ", ".join(f"{count} {status}" for status, count in counts.items() if count)
    total = counted(len(report.results), "target")
    if report.failed:
        output.error(f"warm: {total}: {said}")
    else:
        output.notice(f"warm: {total}: {said or 'none'}")


#: Why an invalidation names nothing concrete to warm, by command.
_NOT_CONCRETE = {
    "make-fragment-key": "a template fragment is stored when its template renders: warm the "
    "view that renders it",
    "delete": "a key or a pattern names no call of the app's code",
}


def warm_lines(group_ctx: click.Context, lines: list[Any]) -> tuple[list[Any], list[Any]]:
    """For ``invalidate --warm``: a ``warm`` line for each invalidation that names something
    concrete (a memoized call with its arguments, a view path), after every invalidation;
    and ``(command, why)`` for each that does not (a whole function, every query of a view,
    a fragment, a pattern), which is listed instead."""
    from cachectl.cli.batch_runner import check_line
    from cachectl.operations.batch import BatchLine

    warm: list[Any] = []
    not_warmable: list[tuple[str, str]] = []
    for line in lines:
        params, _ = check_line(group_ctx, line, stdin_taken=False)
        argv, why = warm_argv(line.argv[0], params)
        if argv is None:
            not_warmable.append((line.shown, why))
        else:
            warm.append(BatchLine(len(lines) + len(warm) + 1, argv, line.group))
    return warm, not_warmable


def warm_argv(command: str, params: dict[str, Any]) -> tuple[tuple[str, ...] | None, str]:
    """The ``warm`` command that stores again what one invalidation removed, or None and
    why it names nothing that can be warmed."""
    if command == "delete-memoized":
        if params.get("instance") or params.get("reprs"):
            return None, "a method's instance or a --repr argument cannot be rebuilt here"
        if not (params.get("args") or params.get("keywords")):
            return None, "a whole function cannot be warmed: only a call with its arguments"
        keywords = [word for text in params["keywords"] for word in ("--kw", text)]
        return ("warm", "memoized", *keywords, "--", params["function"], *params["args"]), ""
    if command == "delete-view":
        if params.get("endpoint") is not None:
            return None, "a view named by --endpoint: give its path to warm it"
        if params.get("all_queries"):
            return None, "every query of a view cannot be warmed: only one path and query"
        query = ("--query", params["query"]) if params.get("query") is not None else ()
        return ("warm", "view", *query, "--", params["path"]), ""
    return None, _NOT_CONCRETE.get(command, "it names nothing the app computes")
