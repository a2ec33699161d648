"""Commands on entries named one by one: get, set, delete (and delete by pattern)."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain
from typing import IO, TYPE_CHECKING, Any

import click

from cachectl.cli.group import Session, cli, pass_session
from cachectl.cli.options import (
    decode_limit_options,
    decode_limits_from,
    dry_run_option,
    include_nested_option,
    merge_renamed,
    pattern_option,
    renamed_option,
    yes_option,
)
from cachectl.codec.limits import using_limits
from cachectl.codec.operator_input import VALUE_TYPES, parse_input_value
from cachectl.config.constants import MAX_TIMEOUT
from cachectl.errors import EXIT_NOT_FOUND, UsageError
from cachectl.runtime.importing import lazy_module
from cachectl.runtime.wording import counted, counted_phrase, removal_text

if TYPE_CHECKING:
    from cachectl.backends.base import CacheBackend
    from cachectl.backends.exclusions import Exclusions
    from cachectl.cli import every_cache
    from cachectl.operations import clearing, entries
else:
    clearing = lazy_module("cachectl.operations.clearing")
    entries = lazy_module("cachectl.operations.entries")
    every_cache = lazy_module("cachectl.cli.every_cache")


@cli.command()
@click.argument("keys", nargs=-1, required=True)
@click.option("--raw", is_flag=True, help="Write the stored bytes unchanged (one key only).")
@click.option(
    "--unsafe-unpickle",
    is_flag=True,
    help="Load pickles fully, running whatever code they name. Only for a cache you trust.",
)
@decode_limit_options
@pass_session
def get(
    session: Session, keys: tuple[str, ...], raw: bool, unsafe_unpickle: bool, **limits: Any
) -> None:
    """Show the value stored under each KEY, as the app's cache.get(KEY) would find it.

    The key prefix is added for you. Pickled values are loaded safely: plain data
    (str, numbers, lists, dicts, sets, datetimes, Decimal, UUID, ...) is shown as
    it is; an object of any other class is shown as <not loaded: module.Class ...>
    with its captured state, without importing or running anything.

    Decoding and showing one value stays within the --max-* limits, so a value
    planted to exhaust the reader cannot hang the shell: past one, what could be
    decoded is shown with a <… truncated: …> marker (a warning names the limit)
    and get exits 0 as for any value it shows. --raw writes the stored bytes whole.

    Exits 1 when a key is missing.

    \b
      cachectl get view//about
      cachectl get --json user:1 user:2
      cachectl get --raw report > report.bin
      cachectl get big-report --max-elements 5000000 --max-seconds 5
    """
    with using_limits(decode_limits_from(limits)):
        _get(session, keys, raw, unsafe_unpickle)


def _get(session: Session, keys: tuple[str, ...], raw: bool, unsafe_unpickle: bool) -> None:
    output = session.output
    if raw and len(keys) != 1:
        raise UsageError("--raw takes exactly one key")
    backend = session.backend()
    read = entries.read_entries(backend, keys, unsafe=unsafe_unpickle)
    for key, stored in read.found:
        if stored is not None and stored.truncated is not None and not raw:
            output.warn(
                f"{key}: shown in part: decoding stopped at its limit ({stored.truncated}); "
                "the --max-* options raise the limits"
            )
    if raw:
        stored = read.found[0][1]
        if stored is not None:
            for chunk in entries.raw_chunks(backend, keys[0], stored):
                output.raw(chunk)
    elif output.as_json:
        output.document(read.document())
    else:
        for key, stored in read.found:
            if stored is None:
                continue
            if stored.error is not None:
                output.warn(f"{key}: {stored.error}")
            else:
                output.value(stored.value, label=key if len(keys) > 1 else None)
    for key in read.missing:
        output.notice(f"not found: {key}")
    if read.missing:
        click.get_current_context().exit(EXIT_NOT_FOUND)


@cli.command("set")
@click.argument("key")
@click.argument("value")
@click.option(
    "--ttl",
    type=click.IntRange(min=0, max=MAX_TIMEOUT),
    metavar="SECONDS",
    help="Lifetime of the entry; 0 never expires. Default: the config's CACHE_DEFAULT_TIMEOUT.",
)
@renamed_option(
    "--timeout", "--ttl", "ttl", type=click.IntRange(min=0, max=MAX_TIMEOUT), metavar="SECONDS"
)
@click.option(
    "--as",
    "as_type",
    type=click.Choice(VALUE_TYPES),
    default="str",
    show_default=True,
    help="The Python type the app will read back.",
)
@click.option(
    "--create-dir",
    is_flag=True,
    help="FileSystemCache: create CACHE_DIR if it is missing (the app creates it on start; "
    "without this a mistyped --dir is an error).",
)
@pass_session
def set_(
    session: Session,
    key: str,
    value: str,
    ttl: int | None,
    ttl_old_spelling: int | None,
    as_type: str,
    create_dir: bool,
) -> None:
    """Store VALUE under KEY, exactly as the app's cache.set(KEY, value) would.

    VALUE - reads standard input (one trailing newline is dropped for --as str).

    \b
      cachectl set maintenance-banner "Back at 10:00" --ttl 3600
      cachectl set feature-flags '{"beta": true}' --as json
      echo 42 | cachectl set answer - --as int
    """
    ttl = merge_renamed(ttl, ttl_old_spelling, "--timeout", "--ttl")
    if value == "-":
        with click.open_file("-", "rb") as stdin:
            data = stdin.read()
        parsed = parse_input_value(data, as_type, from_stdin=True)
    else:
        parsed = parse_input_value(value.encode("utf-8", "surrogateescape"), as_type)
    backend = session.backend(create_dir=create_dir)
    stored = entries.store_entry(backend, session.settings, key, parsed, ttl)
    session.audit.record_done(stored.document())
    if session.output.as_json:
        session.output.document(stored.document())
    expiry = "never expires" if stored.timeout == 0 else f"expires in {stored.timeout} s"
    session.output.result(f"set {key} ({stored.value_type}, {expiry})")


def _listed_keys(stream: IO[bytes], null: bool) -> Iterator[str]:
    """The keys of ``delete --from-file``: one a line as ``keys`` prints them (escapes
    undone by the one function that reads them, ``key_names.unescape_key``), or with
    ``null`` raw names each ended by a NUL byte. Empty entries are skipped."""
    from cachectl.codec.key_names import key_from_bytes, unescape_key

    if null:
        for entry in _null_ended(stream):
            if entry:
                yield key_from_bytes(entry)
        return
    for number, line in enumerate(stream, start=1):
        text = key_from_bytes(line.rstrip(b"\r\n"))
        if not text:
            continue
        try:
            yield unescape_key(text)
        except ValueError as exc:
            raise UsageError(f"--from-file, line {number}: {exc}") from None


def _null_ended(stream: IO[bytes], chunk_size: int = 1 << 16) -> Iterator[bytes]:
    """The NUL-ended entries of ``stream``, read a chunk at a time (the last entry may
    lack its NUL)."""
    pending = b""
    while True:
        chunk = stream.read(chunk_size)
        if not chunk:
            break
        *entries, pending = (pending + chunk).split(b"\0")
        yield from entries
    if pending:
        yield pending


def confirm(session: Session, what: str, yes: bool) -> None:
    """Ask on a terminal; without one, require --yes (exit 2 having changed nothing)."""
    if yes:
        return
    if not session.output.interactive:
        raise UsageError("no terminal to confirm on: pass --yes to go ahead without asking")
    if not click.confirm(f"{what}?", err=True):
        session.output.notice("nothing removed")
        click.get_current_context().exit(EXIT_NOT_FOUND)


def confirm_excluding(
    session: Session,
    backend: CacheBackend,
    what: str,
    exclusions: Exclusions | None,
    yes: bool,
    allow_unmatched: bool = False,
) -> None:
    """``confirm``, naming the ``--exclude`` globs in the question; first, a glob that
    keeps nothing right now stops the command (exit 2, nothing removed): a misspelt
    glob (``sesion:*``) would otherwise let the keys it meant to keep go, with ``--yes``
    in a script too. ``allow_unmatched`` (a store that may well be empty) only warns."""
    if exclusions is not None:
        unmatched = clearing.unmatched_now(backend, exclusions)
        for glob in unmatched:
            warning = clearing.unmatched_warning(glob, backend.key_prefix, "before")
            if not allow_unmatched:
                raise UsageError(
                    f"{warning}; nothing was removed. A store that may be empty "
                    "now (short-lived counters): add --allow-unmatched-exclude"
                )
            session.output.warn(warning)
    confirm(session, what + clearing.excepting(exclusions), yes)


def sweep(
    session: Session,
    pattern: str,
    dry_run: bool,
    yes: bool,
    excludes: tuple[str, ...] = (),
    include_nested: bool = False,
    allow_unmatched: bool = False,
) -> None:
    """Remove the app's keys matching a glob, asking first (delete/clear --pattern), but
    those matching an ``--exclude`` glob (clear) and those of nested caches."""
    from cachectl.operations.nesting import naming

    backend = session.backend()
    plan = entries.plan_sweep(backend, pattern)
    siblings = every_cache.siblings_of(session, include_nested)
    exclusions = clearing.check_exclusions(backend, excludes, flush_db=False, siblings=siblings)
    if not dry_run:
        question = plan.question + naming(siblings)
        confirm_excluding(session, backend, question, exclusions, yes, allow_unmatched)
    with session.output.progress("counting" if dry_run else "removing") as on_progress:
        done = entries.sweep(backend, plan, dry_run, on_progress, exclusions, siblings)
    for warning in done.kept.warnings:
        session.output.warn(warning)
    session.audit.record_done(done.document())
    if session.output.as_json:
        session.output.document(done.document())
    verb = "would remove" if dry_run else "removed"
    summary = done.kept.summary()
    removed = counted_phrase(done.removed, plan.scope)
    session.output.result(f"{verb} {removed} from {plan.target}{summary}")


@cli.command()
@click.argument("keys", nargs=-1)
@click.option(
    "--from-file",
    type=click.File("rb"),
    metavar="FILE",
    help="Also delete the keys listed in FILE ('-' for standard input), one a line as "
    "keys prints them (a backslash written \\\\, control characters and bytes that are "
    "not UTF-8 as \\n, \\t, \\r, \\xHH).",
)
@click.option(
    "-0",
    "--null",
    "null",
    is_flag=True,
    help="With --from-file: names as raw bytes, each ended by a NUL byte, nothing "
    "escaped (keys -0 prints them so).",
)
@pattern_option(
    "Redis, memcached: delete every key of the app matching GLOB (after the prefix), as clear does."
)
@dry_run_option("With --pattern: count what would go; remove nothing.")
@yes_option("With --pattern: do not ask (needed without a terminal).")
@include_nested_option
@pass_session
def delete(
    session: Session,
    keys: tuple[str, ...],
    from_file: IO[bytes] | None,
    null: bool,
    pattern: str | None,
    dry_run: bool,
    yes: bool,
    include_nested: bool,
) -> None:
    """Delete each KEY (the key prefix is added for you), or the keys matching --pattern.

    Keys are sent in batches of 1000 per round trip, so a deploy script can pass
    tens of thousands. Deleting a key that does not exist is not an error: the
    command reports how many existed and exits 0 either way.

    --pattern GLOB matches the app's keys after the prefix (the prefix's own glob
    characters are escaped): Redis finds them with SCAN and removes them as clear
    does, streaming and non-blocking, asking first on a terminal.

    \b
      cachectl delete view//about view//pricing
      cachectl delete --from-file stale-keys.txt
      cachectl keys 'report:*' | cachectl delete --from-file -
      cachectl keys -0 'report:*' | cachectl delete --null --from-file -
      cachectl delete --pattern 'view//products/*' --dry-run
      cachectl delete --pattern 'report:*' --yes
      cachectl --cache all delete --pattern 'report:*' --yes

    --pattern leaves out the keys of the app's other caches nested under this one
    (their prefixes begin with its prefix, on the same server and database), and
    says how many; --include-nested takes them too. --cache all runs it on every
    cache of the app (one question, or --yes).
    """
    if null and from_file is None:
        raise UsageError("--null applies to --from-file")
    if pattern is not None:
        if keys or from_file is not None:
            raise UsageError("give keys or --pattern, not both")
        if every_cache.is_every_cache(session):
            every_cache.run(session, destructive=True)
            return
        sweep(session, pattern, dry_run, yes, include_nested=include_nested)
        return
    if include_nested:
        raise UsageError("--include-nested applies to --pattern")
    if every_cache.is_every_cache(session):
        raise UsageError(every_cache.refusal("delete", {"pattern": None}) or "")
    if dry_run:
        raise UsageError(
            "--dry-run applies to --pattern (a listed key is simply deleted or not there)"
        )
    if not keys and from_file is None:
        raise UsageError("give the keys to delete, --from-file FILE or --pattern GLOB")
    listed = chain(keys, _listed_keys(from_file, null) if from_file is not None else ())
    backend = session.backend()
    with session.output.progress("deleting") as on_progress:
        done = entries.delete_listed(backend, listed, on_progress)
    session.audit.record_done(done.document())
    if session.output.as_json:
        session.output.document(done.document())
    if done.removed is None:
        session.output.result(
            f"deleted {counted(done.requested, 'key')} ({backend.kind} does not say which existed)"
        )
    elif done.removed != done.requested:
        session.output.result(removal_text("deleted", done.removed, done.requested))
    else:
        session.output.result(removal_text("deleted", done.removed, done.requested))
