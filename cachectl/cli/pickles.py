"""check-pickles: the classes cached values name, and those a release broke."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from cachectl.cli.entries import confirm
from cachectl.cli.group import Session, cli, pass_session
from cachectl.cli.options import dry_run_option, yes_option
from cachectl.errors import UsageError
from cachectl.runtime.importing import lazy_module
from cachectl.runtime.wording import counted, number, size_text

if TYPE_CHECKING:
    from cachectl.operations import pickle_check
else:
    pickle_check = lazy_module("cachectl.operations.pickle_check")


@cli.command("check-pickles")
@click.option(
    "--python",
    "python",
    metavar="PATH",
    help="The app's interpreter (its virtualenv's bin/python): resolve the names there, "
    "run from this directory, instead of in this process with --app.",
)
@click.option(
    "--delete",
    "delete",
    is_flag=True,
    help="Remove the entries that name a class that no longer resolves (needs --app or --python).",
)
@click.option(
    "--class",
    "classes",
    multiple=True,
    metavar="NAME",
    help="With --delete: remove the entries that name NAME (module.qualname), without "
    "resolving anything. Repeatable.",
)
@dry_run_option("With --delete: count what would be removed; remove nothing.")
@yes_option("With --delete: do not ask for confirmation (needed without a terminal).")
@pass_session
def check_pickles(
    session: Session,
    python: str | None,
    delete: bool,
    classes: tuple[str, ...],
    dry_run: bool,
    yes: bool,
) -> None:
    """Report the classes the cached values name; with --app or --python, those the app lost.

    Every entry under the prefix is read once, streamed (Redis: SCAN and a batch of
    values per round trip; FileSystemCache: each cache file). Nothing in the cache
    runs: the names a pickle refers to (module.qualname) are read with no name imported
    or called (each answered by an inert stand-in), within the decode limits. For each
    name: the entries that name it and their stored bytes; for each memoized function (by
    its version key), view path, fragment name or other key: its entries that name
    anything.

    With --app (names resolved in this process, where the app is loaded) or --python
    PATH (the app's interpreter, run from this directory), each name is resolved by
    importing its module and reading each attribute statically (nothing of a class
    runs, no property, no module __getattr__). A name is reported when its module or
    attribute is missing, or when it is now a function where the pickle builds an
    instance of it: the values naming it fail to load in the new code.

    --delete removes exactly the entries that name such a class, judged again as each
    is read; it asks first on a terminal, needs --yes without one; --dry-run counts.
    --delete --class NAME removes the entries that name NAME, resolving nothing (what
    plan --since applies for a class the release renamed or removed).
    Exit 1 when any name does not resolve (and nothing was removed).

    \b
      cachectl check-pickles
      cachectl --app 'shop:create_app()' check-pickles
      cachectl check-pickles --python /srv/shop/venv/bin/python --json
      cachectl --app 'shop:create_app()' check-pickles --delete --yes
    """
    if (dry_run or yes or classes) and not delete:
        raise UsageError("--dry-run, --yes and --class apply to --delete")
    if classes:
        _delete_classes(session, set(classes), dry_run, yes)
        return
    if delete and python is None and session.app_import is None:
        raise UsageError("--delete needs the app's code to resolve names: --app or --python")
    output = session.output
    backend = session.backend()
    with output.progress("reading") as on_progress:
        found = pickle_check.take_census(backend, on_progress)
    if python is not None:
        pickle_check.resolve(found, pickle_check.in_interpreter(python), f"--python {python}")
    elif session.app_import is not None:
        session.loaded_app()
        pickle_check.resolve(found, pickle_check.in_process, f"--app {session.app_import}")
    broken = found.broken()
    document = found.document()
    if delete and broken:
        would = document["unresolvable"]["entries_at_most"]
        if dry_run:
            document["would_remove"] = would
        else:
            confirm(
                session,
                f"Remove {counted(would, 'entry', 'entries')} from {backend.describe()}",
                yes,
            )
            with output.progress("removing") as on_progress:
                pickle_check.delete_unresolvable(backend, found, on_progress)
            document["removed"] = found.removed
            session.audit.record_done({"removed": found.removed, "classes": sorted(broken)})
    if output.as_json:
        output.document(document)
    else:
        _render(session, document, broken)
    if broken and not (delete and not dry_run):
        click.get_current_context().exit(1)


def _delete_classes(session: Session, classes: set[str], dry_run: bool, yes: bool) -> None:
    """``--delete --class NAME``: one walk, the entries naming a NAME removed."""
    output, backend = session.output, session.backend()
    if not dry_run:
        named = ", ".join(sorted(classes))
        confirm(session, f"Remove the entries naming {named} from {backend.describe()}", yes)
    with output.progress("counting" if dry_run else "removing") as on_progress:
        count = pickle_check.delete_naming(backend, classes, dry_run, on_progress)
    done = {"ok": True, "target": backend.describe(), "classes": sorted(classes)}
    done["would_remove" if dry_run else "removed"] = count
    session.audit.record_done(done)
    if output.as_json:
        output.document(done)
        return
    verb = "would remove" if dry_run else "removed"
    output.result(f"{verb} {counted(count, 'entry', 'entries')} from {backend.describe()}")


def _render(session: Session, document: dict[str, Any], broken: dict[str, str]) -> None:
    output = session.output
    output.result(
        f"{counted(document['entries'], 'entry', 'entries')} under the prefix in "
        f"{document['target']}: {number(document['pickles'])} pickles, "
        f"{size_text(document['bytes'])}"
    )
    if document["cut_short"]:
        output.warn(
            f"{counted(document['cut_short'], 'pickle')} read in part (malformed, or "
            "a limit): the names before kept"
        )
    rows = [
        (
            c["name"],
            number(c["entries"]),
            size_text(c["bytes"]),
            "?" if c["resolves"] is None else c["problem"] or "resolves",
        )
        for c in document["classes"]
    ]
    if rows:
        output.table(("class", "entries", "bytes", "in the app's code"), rows)
        groups = [
            (g["group"], number(g["entries"]), size_text(g["bytes"]), ", ".join(g["classes"]))
            for g in document["groups"]
        ]
        output.table(("entries of", "entries", "bytes", "classes"), groups)
    else:
        output.result("no value names a class")
    if broken:
        at_most = document["unresolvable"]["entries_at_most"]
        output.result(
            f"{counted(len(broken), 'class', 'classes')} "
            f"{'no longer resolves' if len(broken) == 1 else 'no longer resolve'} in "
            f"{document['resolved_in']}, named by up to {counted(at_most, 'entry', 'entries')}"
        )
    if document.get("would_remove") is not None:
        output.result(f"would remove {counted(document['would_remove'], 'entry', 'entries')}")
    if document.get("removed") is not None:
        output.result(f"removed {counted(document['removed'], 'entry', 'entries')}")
