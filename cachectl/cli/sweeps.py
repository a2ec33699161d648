"""Commands over the whole cache: clear, keys, stats."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from cachectl.cli.entries import confirm_excluding, sweep
from cachectl.cli.group import Session, cli, pass_session
from cachectl.cli.options import (
    dry_run_option,
    include_nested_option,
    pattern_option,
    yes_option,
)
from cachectl.errors import UsageError
from cachectl.runtime.importing import lazy_module
from cachectl.runtime.wording import counted, counted_phrase, number, size_text

if TYPE_CHECKING:
    from cachectl.backends import CacheBackend
    from cachectl.cli import every_cache, render
    from cachectl.codec import key_names
    from cachectl.operations import clearing, inspection, nesting
else:
    key_names = lazy_module("cachectl.codec.key_names")
    every_cache = lazy_module("cachectl.cli.every_cache")
    render = lazy_module("cachectl.cli.render")
    clearing = lazy_module("cachectl.operations.clearing")
    inspection = lazy_module("cachectl.operations.inspection")
    nesting = lazy_module("cachectl.operations.nesting")


@cli.command()
@dry_run_option("Count what would be removed; remove nothing.")
@yes_option("Do not ask for confirmation (needed without a terminal).")
@click.option(
    "--flush-db",
    is_flag=True,
    help="Redis without a key prefix only: empty the whole database (FLUSHDB).",
)
@click.option(
    "--flush-all",
    is_flag=True,
    help="memcached only: empty every server, every app's keys (flush_all); needs --yes.",
)
@pattern_option("Only the app's keys matching GLOB (after the prefix); same as delete --pattern.")
@click.option(
    "--exclude",
    "excludes",
    multiple=True,
    metavar="GLOB",
    help="Redis, memcached: keep the app's keys matching GLOB (after the prefix, as keys "
    "GLOB reads it), such as sessions kept under the same prefix. Repeatable.",
)
@click.option(
    "--allow-unmatched-exclude",
    "allow_unmatched",
    is_flag=True,
    help="Clear even when an --exclude GLOB matches no key right now (a store that may be "
    "empty); without it that stops the clear, since a misspelt GLOB would keep nothing.",
)
@include_nested_option
@pass_session
def clear(
    session: Session,
    dry_run: bool,
    yes: bool,
    flush_db: bool,
    flush_all: bool,
    pattern: str | None,
    excludes: tuple[str, ...],
    include_nested: bool,
    allow_unmatched: bool,
) -> None:
    """Remove every entry of the app's cache, and nothing else.

    \b
    Redis: the keys under the app's key prefix, found with SCAN and removed with
      UNLINK in batches, so the server never blocks and memory stays flat however
      many keys there are. Without a prefix, clear refuses unless --flush-db.
    FileSystemCache: the cache files in CACHE_DIR; other files stay.
    memcached: the keys under the prefix, listed on every server by its LRU
      crawler (lru_crawler metadump) and deleted in batches. A server that cannot
      list keys (SASL, crawler disabled, before 1.4.31) is refused (exit 2), as is
      a cache without prefix; --flush-all --yes empties the whole server instead.

    --exclude GLOB (Redis, memcached) keeps the keys whose name after the prefix
    matches GLOB, read as keys GLOB and delete --pattern read theirs: sessions or
    rate limits an app keeps under its cache's prefix survive. How many were kept
    is reported, per GLOB. A GLOB that matches no key when the clear starts stops
    it (exit 2, nothing removed: a misspelt GLOB would keep nothing), unless
    --allow-unmatched-exclude; --dry-run warns. FileSystemCache cannot apply it,
    and --flush-db and --flush-all take none: all are refused (exit 2).

    The app's other caches nested under this one (named caches of the config
    file, or the app's caches with --app, whose prefixes begin with this one's on
    the same server and database) are left out, each named with how many of its
    keys stayed; --include-nested takes them too.

    On a terminal it asks first; without one it needs --yes. Ctrl-C stops after
    the batch in flight and reports how many keys went (exit 130). --cache all
    clears every cache of the app in turn, after one question listing them.

    \b
      cachectl clear --dry-run
      cachectl clear --yes          # in cron or a deploy script
      cachectl clear --pattern 'view//*' --yes
      cachectl clear --exclude 'session:*' --exclude 'LIMITER*' --yes
      cachectl --cache all clear --dry-run
    """
    output = session.output
    if every_cache.is_every_cache(session):
        every_cache.run(session, destructive=True)
        return
    if pattern is not None:
        if flush_db or flush_all:
            option, whole = ("--flush-db", "database") if flush_db else ("--flush-all", "server")
            raise UsageError(f"{option} empties the whole {whole}; it takes no --pattern")
        sweep(session, pattern, dry_run, yes, excludes, include_nested, allow_unmatched)
        return
    backend = session.backend()
    siblings = every_cache.siblings_of(session, include_nested)
    exclusions = clearing.check_exclusions(backend, excludes, flush_db=flush_db, siblings=siblings)
    plan = clearing.check_clear(
        backend,
        flush_db=flush_db,
        dry_run=dry_run,
        yes=yes,
        warn=output.warn,
        excluding=exclusions is not None,
        flush_all=flush_all,
    )
    if plan.caution is not None:
        output.warn(plan.caution)
    if not dry_run:
        question = f"Remove {plan.scope} from {plan.target}" + nesting.naming(siblings)
        confirm_excluding(session, backend, question, exclusions, yes, allow_unmatched)
    with output.progress("counting" if dry_run else "removing") as on_progress:
        done = clearing.clear(
            backend, plan, dry_run, on_progress, exclusions, siblings, flush_all=flush_all
        )
    for warning in done.kept.warnings:
        output.warn(warning)
    session.audit.record_done(done.document())
    if output.as_json:
        output.document(done.document())
    verb = "would remove" if dry_run else "removed"
    if done.removed is None:
        counted = " (the server cannot count them)" if dry_run else ""
        output.result(f"{verb} {plan.scope} from {plan.target}{counted}")
    else:
        counted_scope = counted_phrase(done.removed, plan.scope)
        output.result(f"{verb} {counted_scope} from {plan.target}{done.kept.summary()}")


@cli.command("keys")
@click.argument("pattern", default="*", metavar="[GLOB]")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Stop after N keys.")
@click.option("--count", "count_only", is_flag=True, help="Print only how many keys match.")
@click.option(
    "-0",
    "--null",
    "null",
    is_flag=True,
    help="End each name with a NUL byte instead of a newline, its bytes as stored, "
    "nothing escaped (for delete --from-file - --null, as find -print0 | xargs -0).",
)
@include_nested_option
@pass_session
def keys_command(
    session: Session,
    pattern: str,
    limit: int | None,
    count_only: bool,
    null: bool,
    include_nested: bool,
) -> None:
    """List the app's keys matching GLOB (default: all), without the prefix, as SCAN finds them.

    Keys stream out as they are found, so the first lines come at once even with
    millions of keys; SCAN never blocks the server. memcached lists them with its
    LRU crawler (lru_crawler metadump, memcached 1.4.31+, not over SASL), a
    snapshot taken while it keeps serving. FileSystemCache cannot list key names
    (a file is named by a hash of its key), but --count works there.

    The keys of the app's caches nested under this one are left out (standard
    error says how many, per cache); --include-nested lists them too.

    One name a line, so that a name holding a line break cannot pass for two: a
    backslash is printed \\\\, a control character \\n, \\t, \\r or \\xHH (each of
    its bytes), a byte that is not UTF-8 \\xHH; other names print as they are.
    delete --from-file reads this form back. -0/--null prints the names as
    stored, each ended by a NUL byte (a name holding a NUL is left out, with a
    warning); on a terminal the names stay escaped.

    \b
      cachectl keys 'view//*' --limit 20
      cachectl keys --count
      cachectl keys 'report:*' | cachectl delete --from-file -
      cachectl keys -0 'report:*' | cachectl delete --null --from-file -
      cachectl --cache all keys --count
    """
    output = session.output
    if every_cache.is_every_cache(session):
        if null:  # one stream of names, and each cache's under its own prefix
            raise UsageError("--null lists the keys of one cache: pick it with --cache NAME")
        every_cache.run(session)
        return
    backend = session.backend()
    siblings = every_cache.siblings_of(session, include_nested)
    exclusions = nesting.exclusions_for((), siblings)
    nested = nesting.NestedKept(siblings, exclusions)
    if count_only:
        with output.progress("counting") as on_progress:
            count = inspection.count_keys(backend, pattern, on_progress, exclusions)
        if output.as_json:
            output.document({"ok": True, "pattern": pattern, "count": count, **nested.document()})
        else:
            output.result(str(count))
        _say_left_out(session, nested)
        return
    # Raw bytes are for a pipe: a terminal gets the escaped lines, as ls shows names.
    null_ended = null and not sys.stdout.isatty()
    found: list[str] = []
    for name in inspection.list_keys(backend, pattern, limit, exclusions):
        if output.as_json:
            found.append(name)
        elif null_ended and "\0" in name:
            output.warn(f"left out: {key_names.escape_key(name)} holds a NUL byte (--null)")
        elif null_ended:
            output.raw(key_names.key_bytes(name) + b"\0")
        else:
            output.result(key_names.escape_key(name))
    if output.as_json:
        output.document({"ok": True, "pattern": pattern, "keys": found, **nested.document()})
    _say_left_out(session, nested)


def _say_left_out(session: Session, nested: nesting.NestedKept) -> None:
    """On standard error, what the listing or count left out of nested caches."""
    if nested.siblings:
        session.output.notice(nested.summary().lstrip("; ") + "; --include-nested shows them")


@cli.command()
@click.option(
    "--sample", type=click.IntRange(min=1), metavar="N", help="Examine only N keys and extrapolate."
)
@click.option(
    "--by-function",
    is_flag=True,
    help="Redis, memcached: entries, memory and TTLs per memoized function (current and "
    "old versions), per view path and per fragment name.",
)
@click.option(
    "--top",
    type=click.IntRange(min=0),
    metavar="N",
    help="With --by-function: list the N largest of each (default 20; 0 lists all).",
)
@include_nested_option
@pass_session
def stats(
    session: Session, sample: int | None, by_function: bool, top: int | None, include_nested: bool
) -> None:
    """What is in the cache: entries by kind, by time to live, and memory.

    \b
    Redis: every key under the prefix (or --sample N of them), recognised by the
      shapes Flask-Caching gives its keys: memoized results, memoize version keys,
      cached views (view/...), template fragments and other keys; their TTLs; memory
      with MEMORY USAGE (every key of a cache up to 20,000 keys, an even sample of a
      larger one, extrapolated). Counted inside the server, a few milliseconds at a time.
    memcached: the same, from the LRU crawler's dump of every server; memory is
      each item's size there, for every key examined.
    FileSystemCache: the cache files, their expiry and size on disk.

    \b
    --by-function, one pass over the same keys (Redis and memcached):
      each memoized function with its current version and the TTL of its version
      key (when it expires, every result goes at once); the results under that
      version, their memory and TTLs; a method's results under a former instance
      version (old). Results under a version no version key names any more (after
      delete-memoized) cannot be told apart by key: they are counted together as
      "unknown function", and go when they expire or with clear. Views are grouped
      by the first segment of their path, fragments by name (the text before the
      first "_" followed by a digit, where vary_on values usually begin). Largest
      memory first; --top N of each.

    \b
      cachectl stats
      cachectl stats --sample 10000 --json
      cachectl stats --by-function --top 10
      cachectl --cache all stats

    The keys of the app's caches nested under this one are left out and counted
    per cache; --include-nested counts them in.
    """
    if top is not None and not by_function:
        raise UsageError("--top applies to --by-function")
    if sample is not None and by_function:
        raise UsageError("--by-function counts every key: --sample applies to plain stats")
    if every_cache.is_every_cache(session):
        every_cache.run(session)
        return
    backend = session.backend()
    siblings = every_cache.siblings_of(session, include_nested)
    exclusions = nesting.exclusions_for((), siblings)
    if by_function:
        _stats_by_function(session, backend, 20 if top is None else top or None, siblings)
        return
    with session.output.progress("examining") as on_progress:
        found = inspection.statistics(backend, sample, on_progress, exclusions)
    document = {**found.document(), **nesting.NestedKept(siblings, exclusions).document()}
    if session.output.as_json:
        session.output.document({"ok": True, "target": backend.describe(), **document})
        return
    estimated = " (estimated from a sample)" if found.estimated else ""
    left_out = nesting.NestedKept(siblings, exclusions).summary()
    session.output.result(
        f"{counted(found.total, 'key')} under the prefix {backend.key_prefix!r} in "
        f"{backend.describe()}" + left_out
    )
    rows = [(kind, number(n)) for kind, n in document["kinds"].items()]
    rows += [("", "")] + [(f"TTL {bucket}", number(n)) for bucket, n in document["ttl"].items()]
    memory = document["memory"]
    if memory["unavailable"]:
        rows += [("", ""), ("memory", f"unavailable: {memory['unavailable']}")]
    if memory["estimated_total_bytes"] is not None:
        rows += [
            ("", ""),
            (
                f"memory of {counted(memory['sampled_keys'], 'key')}",
                size_text(memory["sampled_bytes"]),
            ),
            ("memory, all keys (estimate)", size_text(memory["estimated_total_bytes"])),
        ]
    session.output.table(("entries" + estimated, "count"), rows)


def _stats_by_function(
    session: Session, backend: CacheBackend, top: int | None, siblings: list[Any]
) -> None:
    exclusions = nesting.exclusions_for((), siblings)
    with session.output.progress("examining") as on_progress:
        found = inspection.statistics_by_function(backend, on_progress, exclusions)
    nested = nesting.NestedKept(siblings, exclusions)
    document = found.document(top)
    if session.output.as_json:
        session.output.document(
            {"ok": True, "target": backend.describe(), **document, **nested.document()}
        )
        return
    session.output.result(
        f"{counted(found.examined, 'key')} under the prefix {backend.key_prefix!r} in "
        f"{backend.describe()}{nested.summary()}"
    )
    render.function_statistics(session.output, document)
