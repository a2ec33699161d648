"""``restore``: put back what a ``--backup`` run removed or overwrote."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from cachectl.cli.group import Session, cli, pass_session
from cachectl.cli.options import dry_run_option
from cachectl.errors import EXIT_NOT_FOUND
from cachectl.runtime.importing import lazy_module
from cachectl.runtime.wording import counted, number

if TYPE_CHECKING:
    from cachectl.backup.reader import BackupContents
    from cachectl.operations import restore as restoring
else:
    restoring = lazy_module("cachectl.operations.restore")


@cli.command()
@click.argument("file", metavar="FILE")
@dry_run_option("Count what would be restored, and the keys that exist now; write nothing.")
@click.option(
    "--only",
    metavar="GLOB",
    help="Restore only the keys matching GLOB (after the prefix; Redis glob syntax).",
)
@click.option(
    "--replace",
    is_flag=True,
    help="Overwrite a key that exists now (by default it stays, and is counted).",
)
@click.option(
    "--list",
    "list_only",
    is_flag=True,
    help="Show the file's header, caches and counts, without connecting to any cache.",
)
@pass_session
def restore(
    session: Session,
    file: str,
    dry_run: bool,
    only: str | None,
    replace: bool,
    list_only: bool,
) -> None:
    """Put back the entries a --backup FILE kept, as they were when they went.

    Each entry gets the lifetime it had left at backup time minus the time since;
    one whose lifetime has run out meanwhile is skipped and counted. A key that
    exists now is left as it is and counted, unless --replace. The file must come
    from the same kind of cache (Redis and Valkey, memcached, FileSystemCache)
    under the same key prefix; the server may be another one (--url). A damaged
    part of the file is reported and skipped, the rest restored (exit 1).

    \b
    Redis, Valkey, Sentinel, Cluster: RESTORE of the DUMP each entry was kept as.
    memcached: the value with its client flags.
    FileSystemCache: the cache file, byte for byte.

    \b
      cachectl --backup before.backup clear --yes
      cachectl restore before.backup
      cachectl restore --list before.backup
      cachectl restore --only 'view//*' --dry-run before.backup
    """
    output = session.output
    if list_only:
        contents = restoring.describe_file(file)
        if output.as_json:
            output.document(_listing(contents))
        else:
            _show_listing(session, contents)
        return
    backend = session.backend()
    with output.progress("restoring") as on_progress:
        run = restoring.restore_file(
            backend, file, replace=replace, dry_run=dry_run, only=only, on_progress=on_progress
        )
    session.audit.record_done(run.document())
    if output.as_json:
        output.document(run.document())
    else:
        _show_run(session, run)
    if run.incomplete:
        click.get_current_context().exit(EXIT_NOT_FOUND)


def _listing(contents: BackupContents) -> dict[str, Any]:
    return {
        "file": contents.path,
        "header": contents.head,
        "caches": list(contents.caches.values()),
        "entries": contents.entries,
        "chunks": contents.chunks,
        "complete": contents.complete,
        "trailer": contents.trailer,
        "damaged": list(contents.damaged),
    }


def _show_listing(session: Session, contents: BackupContents) -> None:
    output, head = session.output, contents.head
    output.result(f"file: {contents.path}")
    output.result(f"taken: {head.get('created')} by {head.get('user')} on {head.get('host')}")
    output.result(f"cachectl: {head.get('cachectl')}")
    output.result("command: " + " ".join(str(arg) for arg in head.get("command", [])))
    for cache in contents.caches.values():
        where = cache.get("server")
        database = cache.get("database")
        output.result(
            f"cache: {restoring.describe_cache(cache)} on {where}"
            + (f", database {database}" if database is not None else "")
            + f" (generation {cache.get('generation')})"
        )
    output.result(f"entries: {number(contents.entries)} in {counted(contents.chunks, 'chunk')}")
    if contents.complete:
        output.result("complete: yes (the run that wrote it reached its end)")
    else:
        output.result("complete: no (the run was cut short; every entry listed is whole)")
    for damage in contents.damaged:
        output.warn(f"damaged: {damage}")


def _show_run(session: Session, run: Any) -> None:
    output, counts = session.output, run.counts
    verb = "would restore" if run.dry_run else "restored"
    output.result(f"{verb} {counted(counts.restored, 'entry', 'entries')} from {run.path}")
    if counts.present:
        what = "would be replaced" if run.replace else "left as they are (--replace overwrites)"
        output.result(f"{counted(counts.present, 'key')} exist now: {what}")
    if counts.expired:
        output.result(f"{counted(counts.expired, 'entry', 'entries')} expired since: skipped")
    if run.not_matching:
        output.result(f"{counted(run.not_matching, 'entry', 'entries')} not matching --only")
    if run.other_caches:
        output.result(f"{counted(run.other_caches, 'entry', 'entries')} of other caches: skipped")
    for damage in run.contents.damaged if run.contents is not None else []:
        output.warn(f"damaged part of {run.path} skipped: {damage}")
    if counts.failed:
        output.warn(
            f"{counted(counts.failed, 'entry', 'entries')} refused by the server: "
            + "; ".join(counts.failures)
        )
