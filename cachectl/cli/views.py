"""Commands for what @cache.cached and {% cache %} stored: delete-view, fragments."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import click

from cachectl.cli import render
from cachectl.cli.group import Session, cli, pass_session
from cachectl.cli.options import (
    dry_run_option,
    hash_method_option,
    merge_renamed,
    renamed_option,
)
from cachectl.config.constants import DEFAULT_VIEW_PREFIX
from cachectl.errors import UsageError
from cachectl.runtime.importing import lazy_module
from cachectl.runtime.wording import counted

if TYPE_CHECKING:
    from cachectl.operations import fragments as fragment_ops
    from cachectl.operations import view_routes, views
else:
    fragment_ops = lazy_module("cachectl.operations.fragments")
    views = lazy_module("cachectl.operations.views")
    view_routes = lazy_module("cachectl.operations.view_routes")


@cli.command("delete-view")
@click.argument("path", required=False)
@click.option(
    "--query",
    metavar="QUERY",
    help="For a query_string=True view: the query string ('page=2&q=x'), in any order.",
)
@click.option(
    "--all-queries", is_flag=True, help="Redis: every cached query-string variant of PATH."
)
@click.option(
    "--view-prefix",
    metavar="TEMPLATE",
    help="The decorator's key_prefix: a template with %s, or a constant key. "
    f"Default: {DEFAULT_VIEW_PREFIX}",
)
@renamed_option("--key-prefix", "--view-prefix", "view_prefix", metavar="TEMPLATE")
@click.option(
    "--endpoint",
    metavar="NAME",
    help="With --app: build the path with url_for(NAME) and let the view form its own key.",
)
@click.option(
    "--arg",
    "url_args",
    multiple=True,
    metavar="NAME=VALUE",
    help="A url_for value for --endpoint. Repeatable.",
)
@hash_method_option("The decorator's hash_method (query_string views). Default: CACHE_HASH_METHOD.")
@dry_run_option("Print the key it would delete.")
@pass_session
def delete_view(
    session: Session,
    path: str | None,
    query: str | None,
    all_queries: bool,
    view_prefix: str | None,
    view_prefix_old_spelling: str | None,
    endpoint: str | None,
    url_args: tuple[str, ...],
    hash_method: str | None,
    dry_run: bool,
) -> None:
    """Delete what @cache.cached stored for a request PATH, as cache.delete_cached() does.

    PATH is the request path as Flask's request.path has it (/user/alice); the
    default key is view//user/alice. Flask-Caching 2.0-2.4 ignored key_prefix for
    query_string views (the key is the path and the hash); --compat decides.

    \b
      cachectl delete-view /about
      cachectl delete-view /search --query 'q=shoes&page=2'
      cachectl delete-view /search --all-queries
      cachectl delete-view /feed --view-prefix 'feeds/%s'
      cachectl --app 'shop:create_app()' delete-view --endpoint user --arg name=alice
    """
    view_prefix = merge_renamed(
        view_prefix, view_prefix_old_spelling, "--key-prefix", "--view-prefix"
    )
    views.check_request(path, endpoint, query, all_queries)
    if path is not None and not path.startswith("/"):
        session.output.warn(
            f"Flask's request paths start with '/': {path!r} is not one (the key is formed "
            "as given; did you mean '/" + path + "'?)"
        )
    app = session.app if endpoint is not None else None
    settings = session.settings
    route_args = None
    if path is not None and settings.generation.view_arguments_in_key:
        route_args = _route_arguments(session, path, query is not None or all_queries)
    target: dict[str, Any] = {
        "path": path,
        "endpoint": endpoint,
        "url_values": dict(text.partition("=")[::2] for text in url_args),
        "query": query,
        "all_queries": all_queries,
        "view_prefix": view_prefix or DEFAULT_VIEW_PREFIX,
        "hash_method": _hash_method(hash_method),
        "app": app,
        "view_args": route_args,
    }
    # Every check that needs no server, before any connection (and before the first
    # line of a batch runs: cachectl.runtime.checking).
    views.view_target(settings, **target)
    backend = session.backend()
    with session.output.progress("deleting") as on_progress:
        done = views.delete_view(
            backend, settings, **target, dry_run=dry_run, on_progress=on_progress
        )
    render.report(session, done, backend, {"path": path, "endpoint": endpoint})


@cli.command("make-fragment-key")
@click.argument("name")
@click.argument("vary_on", nargs=-1)
@click.option("--delete", is_flag=True, help="Delete the fragment from the cache.")
@dry_run_option("With --delete: print the key it would delete; delete nothing.")
@pass_session
def make_fragment_key(
    session: Session, name: str, vary_on: tuple[str, ...], delete: bool, dry_run: bool
) -> None:
    """Print the key of a {% cache timeout, NAME, VARY_ON... %} block; --delete removes it.

    Prints the key as the app passes it to the cache, and where it is stored (with
    the backend's key prefix, or the file for FileSystemCache). --delete --dry-run
    prints it and sends nothing to the server.

    \b
      cachectl make-fragment-key sidebar
      cachectl make-fragment-key user_card alice fr --delete
      cachectl make-fragment-key user_card alice fr --delete --dry-run
    """
    if dry_run and not delete:
        raise UsageError("--dry-run goes with --delete (without it nothing is changed)")
    fragment_ops.checked_fragment_key(name, list(vary_on))  # before any connection
    backend = session.backend(connect=delete and not dry_run)
    found = fragment_ops.fragment_key(backend, name, list(vary_on), delete, dry_run)
    session.audit.record_done(found.document())
    if session.output.as_json:
        session.output.document(found.document())
        return
    session.output.result(found.key)
    session.output.notice(f"stored as {found.stored_as}")
    if found.deleted and dry_run:
        session.output.result("would delete it")
    elif found.deleted:
        removed = found.removed  # None: the server does not say
        session.output.result(
            "deleted it (the server does not say whether it existed)"
            if removed is None
            else f"removed {counted(removed, 'key')}"
        )


@cli.command()
@click.argument("template_dirs", nargs=-1, metavar="[TEMPLATE_DIR]...")
@pass_session
def fragments(session: Session, template_dirs: tuple[str, ...]) -> None:
    """List the {% cache %} blocks in the app's templates, and their keys.

    Templates are parsed with Jinja2 itself. Each block shows its file, line,
    timeout, fragment name (for a block without one, the implicit name
    "<template file><line>" Flask-Caching gives it) and vary_on expressions, with
    the key when every part is a constant. Default directories: the app's template
    folders with --app, else ./templates.

    \b
      cachectl --app 'shop:create_app()' fragments
      cachectl fragments src/shop/templates
    """
    # Listing templates needs no cache configuration, only the app if one is named;
    # but a config file named on purpose and broken is a mistake worth a stop.
    if session.request.config_file is not None:
        session.config.settings()
    app = session.app if not template_dirs else None
    directories = fragment_ops.template_directories(list(template_dirs), app)
    listing = fragment_ops.list_fragments(directories, app)
    for problem in listing.unreadable:
        session.output.warn(f"could not parse {problem}")
    if session.output.as_json:
        session.output.document(listing.document())
        return
    rows = [
        (
            f"{b.template}:{b.line}",
            b.timeout,
            b.name if b.name is not None else f"(implicit) {b.name_value}",
            ", ".join(b.vary_on),
            b.key or "(depends on the values at render time)",
        )
        for b in listing.blocks
    ]
    if not rows:
        session.output.notice("no {% cache %} blocks found in " + ", ".join(directories))
        return
    session.output.table(("template", "timeout", "name", "vary_on", "key"), rows)


def _route_arguments(session: Session, path: str, with_query: bool) -> dict[str, Any] | None:
    """Flask-Caching 2.5.0 keys a view whose route has an argument named ``path`` or
    ``query_args`` by that argument: the arguments of the route PATH reaches, from the
    app's URL map with --app, else from the app's source at hand (the current directory,
    the config file's); when neither says, one warning, and the usual key. ``with_query``:
    a query-string view's (--query, --all-queries), whose key a ``query_args`` forms too."""
    if session.app_import is not None:
        return view_routes.app_route_arguments(session.app, path).values
    roots = [str(session.request.cwd)]
    config_file = session.request.sources()[1]
    if config_file is not None:
        directory = os.path.dirname(os.path.abspath(os.path.join(roots[0], config_file)))
        if directory != os.path.abspath(roots[0]):
            roots.append(directory)
    found = view_routes.source_route_arguments(path, roots, with_query)
    if found.values is None:
        session.output.warn(
            "under Flask-Caching 2.5.0 a view whose route has an argument named path or "
            "query_args is keyed by that argument, and which route PATH reaches is not "
            f"known ({found.unknown}): the key is formed from {path!r}; pass --app, or "
            "run where the app's source is"
        )
    return found.values


def _hash_method(name: str | None) -> Any:
    """The hashlib constructor --hash-method names, or None for the settings' own."""
    from cachectl.config.settings import resolve_hash_method

    return resolve_hash_method("--hash-method", name) if name else None
