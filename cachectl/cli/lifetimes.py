"""Commands on how long entries live: ttl, expire, persist, prune."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from cachectl.cli.group import Session, cli, pass_session
from cachectl.cli.options import dry_run_option
from cachectl.config.constants import MAX_TIMEOUT
from cachectl.errors import EXIT_NOT_FOUND
from cachectl.runtime.importing import lazy_module
from cachectl.runtime.wording import counted

if TYPE_CHECKING:
    from cachectl.operations import lifetimes
else:
    lifetimes = lazy_module("cachectl.operations.lifetimes")


@cli.command()
@click.argument("keys", nargs=-1, required=True)
@pass_session
def ttl(session: Session, keys: tuple[str, ...]) -> None:
    """Show how long each KEY has left: seconds, "none" (never expires) or "missing".

    The key prefix is added for you. An expired entry is "missing", as the app
    sees it. Exits 1 when a key is missing (the others are still shown), as get
    does.

    \b
    Redis and Redis Cluster: TTL on the prefixed key.
    memcached: the meta command mg (memcached 1.6+), with one server only and
      without SASL (else exit 2: which server holds a key is the client's choice;
      the binary protocol of SASL has no such command).
    FileSystemCache: the expiry in the file's head.

    \b
      cachectl ttl view//about
      cachectl ttl --json user:1 user:2
    """
    output = session.output
    read = lifetimes.read_lifetimes(session.backend(connect=False), list(keys))
    if output.as_json:
        output.document(read.document())
    elif len(keys) == 1:
        output.result(lifetimes.shown(read.found[0][1]))
    else:
        output.table(("key", "ttl"), [(key, lifetimes.shown(left)) for key, left in read.found])
    if read.missing:
        click.get_current_context().exit(EXIT_NOT_FOUND)


def _seconds(ctx: click.Context, param: click.Parameter, value: int) -> int:
    if value == 0:
        raise click.BadParameter(
            "0 means 'never expires' to the app but 'delete now' to Redis: use "
            "'cachectl persist KEY' for no expiry, 'cachectl delete KEY' to remove it"
        )
    return value


@cli.command()
@click.argument("key")
@click.argument(
    "seconds", type=click.IntRange(min=0, max=MAX_TIMEOUT), callback=_seconds, metavar="SECONDS"
)
@pass_session
def expire(session: Session, key: str, seconds: int) -> None:
    """Make KEY expire SECONDS from now, its value unchanged.

    \b
    Redis and Redis Cluster: EXPIRE on the prefixed key.
    memcached: touch.
    FileSystemCache: the expiry in the file's head is rewritten; the value's
      bytes stay as they are (both file formats, cachelib's and Flask-Caching
      1.10's).

    A key that is not there (or has expired) exits 1 and changes nothing.

    \b
      cachectl expire maintenance-banner 600
    """
    _report_set(session, lifetimes.set_lifetime(session.backend(connect=False), key, seconds))


@cli.command()
@click.argument("key")
@pass_session
def persist(session: Session, key: str) -> None:
    """Make KEY never expire, its value unchanged.

    Redis: PERSIST; memcached: touch with 0; FileSystemCache: expiry 0 in the
    file's head. A key that is not there (or has expired) exits 1 and changes
    nothing.

    \b
      cachectl persist feature-flags
    """
    _report_set(session, lifetimes.set_lifetime(session.backend(connect=False), key, None))


def _report_set(session: Session, done: lifetimes.LifetimeSet) -> None:
    """The new lifetime; a key that is not there is "not found" and exit 1, as in get."""
    output = session.output
    session.audit.record_done(done.document())
    if output.as_json:
        output.document(done.document())
    if not done.found:
        output.notice(f"not found: {done.key} (nothing changed)")
        click.get_current_context().exit(EXIT_NOT_FOUND)
    output.result(
        f"{done.key} "
        + ("never expires" if done.seconds is None else f"expires in {done.seconds} s")
    )


@cli.command()
@dry_run_option("Count the expired cache files; remove nothing.")
@pass_session
def prune(session: Session, dry_run: bool) -> None:
    """FileSystemCache: remove the expired cache files, and only those.

    The app's own FileSystemCache removes expired files only when it writes past
    CACHE_THRESHOLD; prune does it now. Only files named like this cache's keys
    are read (as clear finds them): any other file in CACHE_DIR stays, and the
    item count the app keeps is updated. Redis and memcached expire entries
    themselves: prune refuses there (exit 2).

    \b
      cachectl prune --dry-run
      cachectl prune            # in cron
    """
    output = session.output
    backend = session.backend(connect=False)
    with output.progress("counting" if dry_run else "pruning") as on_progress:
        done = lifetimes.prune(backend, dry_run, on_progress)
    session.audit.record_done(done.document())
    if output.as_json:
        output.document(done.document())
    verb = "would remove" if dry_run else "removed"
    output.result(f"{verb} {counted(done.removed, 'expired cache file')} from {done.target}")
