"""delete-memoized and show-memoized: what cache.delete_memoized() does inside the app, by
name, and what the cache holds for a memoized function."""

from __future__ import annotations

from typing import IO, TYPE_CHECKING, Any

import click

from cachectl.cli import render
from cachectl.cli.call_options import (
    ReprPositionsCommand,
    call_arguments,
    call_options,
    each_options,
)
from cachectl.cli.group import Session, cli, pass_session
from cachectl.cli.options import dry_run_option
from cachectl.errors import EXIT_NOT_FOUND, UsageError
from cachectl.runtime.importing import lazy_module

if TYPE_CHECKING:
    from cachectl.app import functions
    from cachectl.operations import memoized as memoized_ops
    from cachectl.operations import memoized_view
else:
    functions = lazy_module("cachectl.app.functions")
    memoized_ops = lazy_module("cachectl.operations.memoized")
    memoized_view = lazy_module("cachectl.operations.memoized_view")


def _with_each(each: IO[bytes] | None, each_format: str | None, given: dict[str, Any]) -> bool:
    """Whether --each is given, with what it refuses beside it refused (exit 2)."""
    if each is None:
        if each_format is not None:
            raise UsageError("--each-format applies to --each")
        return False
    from cachectl.cli.memoized_each import check_each_options

    check_each_options(**given)
    return True


def _hash_method(name: str | None) -> Any:
    """The hashlib constructor --hash-method names, or None for the settings' own."""
    from cachectl.config.settings import resolve_hash_method

    return resolve_hash_method("--hash-method", name) if name else None


def build_call(
    session: Session,
    function: str,
    args: tuple[str, ...],
    reprs: tuple[str, ...],
    keywords: tuple[str, ...],
    instance: str | None,
    signature: str | None,
    make_name: str | None,
    ignore: tuple[str, ...],
    hash_method: str | None,
    source_check: bool | None,
) -> tuple[memoized_ops.MemoizedCall, str | None]:
    """The call the options name (the function found here, or by its name alone), and
    why it could not be imported, if it could not."""
    if signature is not None and not signature.strip():
        raise UsageError("--signature is empty: give the parameter list, such as '(user_id)'")
    positions = click.get_current_context().meta.get("repr_positions", [])
    call_args, call_kwargs = call_arguments(args, reprs, positions, keywords)
    settings = session.settings
    found, import_problem = functions.find_memoized(
        function, signature, app_loaded=session.request.app_import is not None
    )
    if import_problem and session.output.interactive:
        session.output.notice(f"note: {import_problem}; using the name alone")
    call = memoized_ops.MemoizedCall(
        function=found,
        args=call_args,
        kwargs=call_kwargs,
        instance_id=instance,
        make_name=make_name,
        ignore=ignore,
        hash_method=_hash_method(hash_method),
        source_check=settings.source_check if source_check is None else source_check,
    )
    # Every check that needs no server, before any connection (and before the first
    # line of a batch runs: cachectl.runtime.checking).
    memoized_ops.check_call(call, settings, session.app)
    return call, import_problem


@cli.command("delete-memoized", cls=ReprPositionsCommand)
@call_options
@click.option(
    "--purge", is_flag=True, help="Redis: also remove the entries stored under the old version."
)
@click.option(
    "--verhash",
    is_flag=True,
    help="Delete the version key itself, as delete_memoized_verhash does.",
)
@dry_run_option("Print the keys it would write or delete; change nothing.")
@each_options
@pass_session
def delete_memoized(
    session: Session,
    function: str,
    args: tuple[str, ...],
    reprs: tuple[str, ...],
    keywords: tuple[str, ...],
    instance: str | None,
    signature: str | None,
    make_name: str | None,
    ignore: tuple[str, ...],
    hash_method: str | None,
    source_check: bool | None,
    purge: bool,
    verhash: bool,
    dry_run: bool,
    each: IO[bytes] | None,
    each_format: str | None,
) -> None:
    """Invalidate what @cache.memoize stored for FUNCTION, as cache.delete_memoized() does.

    FUNCTION is module.qualname or module:qualname (myapp.models.get_user,
    myapp.models:Person.has_membership).

    \b
    Without ARGs: every stored result of the function becomes unreachable (a new
      version is written to its version key), or of one instance's method with
      --instance. The old entries stay until they expire; --purge (Redis) removes them.
      Nothing is written where no version key exists; if the function was not
      imported here either, that is how a misspelled name looks: exit 1.
    With ARGs: exactly the stored result of that call is deleted. ARGs and --kw
      values are Python literals (42, '42', None, [1, 2]); a bare word is a string;
      an object argument is given by its repr() with --repr, where it stands.

    The signature comes from the function itself when it imports here (the current
    directory and the app's path on sys.path), or from --signature. With --app the
    decorator's own make_cache_key forms the key (its make_name, args_to_ignore,
    hash_method and source_check included); without it, give those with
    --make-name, --ignore, --hash-method and --source-check.

    \b
      cachectl delete-memoized myapp.models.get_user
      cachectl delete-memoized myapp.models.get_user 42
      cachectl delete-memoized myapp.models.Person.has_membership 3 --instance 'Person(7)'
      cachectl delete-memoized myapp.models.get_user --purge --dry-run
      cachectl delete-memoized reports.total -- -5 --kw currency=EUR
      cachectl delete-memoized i18n.greeting 1 --repr "Locale('en')"
      cachectl delete-memoized shop.get_product --each product-ids.txt
      psql -Atc 'select id from fixed' | cachectl delete-memoized shop.get_product --each -

    \b
    --each FILE: one call a line, its ARGs (and --kw, --repr, --instance) written as
      on the command line (42; 42 --kw currency=EUR; 'x y'), or with --each-format
      json a JSON array or object ([42]; {"product_id": 42}). Each call's key is
      formed as for a single call; every line is read and its key formed before
      anything is deleted (a line that cannot be read: exit 2 naming it, nothing
      deleted), then the keys go in batches of 1000. The report counts the results
      deleted and the calls not cached.
    """
    with_each = _with_each(
        each, each_format,
        {"ARGs": args, "--repr": reprs, "--kw": keywords, "--purge": purge,
         "--verhash": verhash, "--dry-run": dry_run},
    )  # fmt: skip
    memoized_ops.check_options(bool(args or reprs or keywords), purge, verhash)
    call, import_problem = build_call(
        session, function, args, reprs, keywords, instance, signature, make_name, ignore,
        hash_method, source_check,
    )  # fmt: skip
    found = call.function
    if found.imported and not found.memoized:
        session.output.warn(
            f"{found.dotted} is not decorated with @cache.memoize here; "
            "invalidating it as Flask-Caching would all the same"
        )
    if with_each:
        from cachectl.cli.memoized_each import run_delete

        assert each is not None
        run_delete(session, call, each, each_format or "shell")
        return
    settings = session.settings
    backend = session.backend()
    with session.output.progress("purging") as on_progress:
        done = memoized_ops.delete_memoized(
            backend,
            settings,
            call,
            app=session.app,
            purge=purge,
            verhash=verhash,
            dry_run=dry_run,
            on_progress=on_progress,
        )
    extra = {"function": found.dotted, "instance": instance, "import_problem": import_problem}
    # A name not confirmed by importing it, with nothing stored under it, is how a
    # misspelling looks: exit 1, which a deploy script notices.
    unconfirmed = done.nothing_matched and not found.imported
    if unconfirmed:
        done.notes = [
            f"nothing matched {found.dotted}: no version key, so nothing is cached under that "
            "name (misspelled, or nothing cached yet); nothing was written"
        ]
    render.report(session, done, backend, extra)
    if unconfirmed:
        click.get_current_context().exit(EXIT_NOT_FOUND)


@cli.command("show-memoized", cls=ReprPositionsCommand)
@call_options
@click.option(
    "--unsafe-unpickle",
    "unsafe",
    is_flag=True,
    help="Load the call's stored value with pickle itself, which runs whatever code the "
    "value names: only for values you trust.",
)
@each_options
@pass_session
def show_memoized(
    session: Session,
    function: str,
    args: tuple[str, ...],
    reprs: tuple[str, ...],
    keywords: tuple[str, ...],
    instance: str | None,
    signature: str | None,
    make_name: str | None,
    ignore: tuple[str, ...],
    hash_method: str | None,
    source_check: bool | None,
    unsafe: bool,
    each: IO[bytes] | None,
    each_format: str | None,
) -> None:
    """Show what @cache.memoize holds for FUNCTION: its version key, that key's value and
    TTL, and (Redis, memcached) how many results the current version holds, their
    memory and TTLs, and a method's results under former instance versions; with ARGs,
    the key of that call, whether a result is stored, its TTL and its value (decoded
    safely).

    FUNCTION, ARGs and the options naming a call read as in delete-memoized. Exits 1
    when nothing is cached (no version key; with ARGs, no result for that call), as
    get does. Results stored under a former version of the function cannot be told
    from other functions' by their key, so they are not counted here (stats
    --by-function counts them together as "unknown function").

    \b
      cachectl show-memoized myapp.models.get_user
      cachectl show-memoized myapp.models.get_user 42
      cachectl show-memoized myapp.models.Person.has_membership 3 --instance 'Person(7)'
      cachectl show-memoized shop.get_product --each product-ids.txt

    With --each FILE (lines as in delete-memoized --each), a line per call as the
    lines are read: "line N: cached KEY" or "line N: not cached KEY" (with --json, a JSON
    object a line, then a summary object); exit 1 when any call is not cached.
    """
    with_each = _with_each(
        each, each_format,
        {"ARGs": args, "--repr": reprs, "--kw": keywords, "--unsafe-unpickle": unsafe},
    )  # fmt: skip
    call, import_problem = build_call(
        session, function, args, reprs, keywords, instance, signature, make_name, ignore,
        hash_method, source_check,
    )  # fmt: skip
    if with_each:
        from cachectl.cli.memoized_each import run_show

        assert each is not None
        run_show(session, call, each, each_format or "shell")
        return
    shown = memoized_view.show_memoized(
        session.backend(), session.settings, call, app=session.app, unsafe=unsafe
    )
    render.memoized_shown(session.output, shown, import_problem)
    if not shown.cached:
        click.get_current_context().exit(EXIT_NOT_FOUND)
