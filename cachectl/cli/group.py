"""The command line: parse options, call the library, report. No backend or key logic here."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any, NoReturn

import click
from click.shell_completion import get_completion_class

from cachectl import __version__, keys
from cachectl.app_loader import AppCache, LoadedApp, load_flask_app
from cachectl.backends import CacheBackend, build_backend
from cachectl.codec import VALUE_TYPES, StoredValue, parse_input_value, to_jsonable
from cachectl.config import (
    HASH_METHOD_NAMES,
    CacheSettings,
    ConfigRequest,
    describe_location,
    display_value,
    parse_setting_value,
    resolve_hash_method,
    resolve_settings,
)
from cachectl.config_export import export_cache, render_toml, write_file
from cachectl.errors import EXIT_INTERRUPTED, EXIT_NOT_FOUND, CachectlError, UsageError
from cachectl.functions import (
    find_memoized,
    parse_argument,
    parse_keyword,
    place_repr_arguments,
)
from cachectl.invalidation import Invalidator, MemoizedCall, Report
from cachectl.output import Output
from cachectl.stats import collect as collect_stats
from cachectl.templates import app_template_directories, find_fragments

#: Exit code for a bug in cachectl itself (anything not foreseen).
EXIT_INTERNAL = 4

EXIT_CODES_HELP = """\b
Exit codes:
  0    done
  1    not found (get), or a clear declined at the prompt
  2    usage or configuration error
  3    cache server unreachable, timed out or refused
  4    internal error (a bug: --debug shows the traceback)
  130  interrupted (what was done so far is reported)"""


class Session:
    """What one invocation knows: the options, and the settings and backend resolved
    from them on first use (``config`` never connects, ``get`` does)."""

    def __init__(self, request: ConfigRequest, timeout: float, output: Output, debug: bool) -> None:
        self.request = request
        self.timeout = timeout
        self.output = output
        self.debug = debug
        self._settings: CacheSettings | None = None
        self._loaded_app: LoadedApp | None = None

    @property
    def app_import(self) -> str | None:
        """The app this invocation loads, if any (``--app``, or ``FLASK_APP`` when no
        config file is named or found)."""
        return self.request.sources()[0]

    def loaded_app(self) -> LoadedApp | None:
        """The app, started once however many of its caches the command needs."""
        if self._loaded_app is None and self.app_import is not None:
            self._loaded_app = load_flask_app(self.app_import)
        return self._loaded_app

    @property
    def settings(self) -> CacheSettings:
        if self._settings is None:
            self._settings = self._resolve(self.request)
        return self._settings

    def _resolve(self, request: ConfigRequest) -> CacheSettings:
        settings = resolve_settings(request, self.loaded_app())
        for warning in settings.warnings:
            self.output.warn(warning)
        return settings

    def every_app_cache(self) -> list[tuple[AppCache, CacheSettings]]:
        """Each cache of the loaded app with its resolved settings (overrides applied)."""
        loaded = self.loaded_app()
        if loaded is None:
            return []
        return [
            (cache, self._resolve(replace(self.request, cache_name=str(cache.index))))
            for cache in loaded.caches
        ]

    def backend(self, create_dir: bool = False) -> CacheBackend:
        backend = build_backend(self.settings, self.timeout, create_dir=create_dir)
        backend.check()
        return backend


class CachectlGroup(click.Group):
    """Turns every expected failure into one line (or one JSON document) and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CachectlError as exc:
            _fail(ctx, exc.message, exc.exit_code, exc.done)
        except KeyboardInterrupt:
            _fail(ctx, "interrupted", EXIT_INTERRUPTED, {})
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            session = ctx.find_object(Session)
            if session is not None and session.debug:
                raise
            _fail(
                ctx,
                f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
                EXIT_INTERNAL,
                {},
            )


def _fail(ctx: click.Context, message: str, code: int, done: dict[str, object]) -> NoReturn:
    session = ctx.find_object(Session)
    output = session.output if session else Output()
    if session is not None and session.debug:
        traceback.print_exc()
    output.error(message)
    if output.as_json:
        output.document({"ok": False, "error": message, "exit_code": code, **done})
    ctx.exit(code)


def _parse_option(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise click.BadParameter(f"expected NAME=VALUE, got {text!r}", param_hint="-o/--option")
    return name.strip(), parse_setting_value(value)


@click.group(
    cls=CachectlGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EXIT_CODES_HELP,
)
@click.option(
    "--app",
    "app_import",
    metavar="IMPORT",
    envvar="CACHECTL_APP",
    help="Load the Flask app as 'flask --app' does (module:app, module:create_app()) and use "
    "the Flask-Caching Cache it registered, connected as its live backend is. Env: "
    "CACHECTL_APP, or FLASK_APP when no config file is named or found.",
)
@click.option(
    "--config",
    "config_file",
    metavar="FILE",
    envvar="CACHECTL_CONFIG",
    help="Read CACHE_* settings from a .py (as Flask's from_pyfile), .toml or .json file; "
    "overrides what --app found. Env: CACHECTL_CONFIG. Default: cachectl.toml or "
    "[tool.cachectl] in pyproject.toml, searched from here upward.",
)
@click.option(
    "--cache",
    "cache_name",
    metavar="NAME",
    envvar="CACHECTL_CACHE",
    help="Which cache, when the app or the file has several: a name from the file, or the "
    "app Cache object's index, import path (myapp.ext:cache), attribute path "
    "(myapp.ext:manager.data_cache) or settings-dict name (DATA_CACHE_CONFIG, or data). "
    "Env: CACHECTL_CACHE.",
)
@click.option(
    "--env",
    "use_env",
    is_flag=True,
    help="Also read FLASK_CACHE_* environment variables, as Flask's config.from_prefixed_env().",
)
@click.option(
    "--url",
    metavar="URL",
    help="Override CACHE_REDIS_URL (implies RedisCache when no type is set).",
)
@click.option("--key-prefix", metavar="PREFIX", help="Override CACHE_KEY_PREFIX.")
@click.option(
    "--type",
    "cache_type",
    metavar="TYPE",
    help="Override CACHE_TYPE (RedisCache, FileSystemCache, ...).",
)
@click.option(
    "--dir",
    "cache_dir",
    metavar="DIR",
    help="Override CACHE_DIR (implies FileSystemCache when no type is set).",
)
@click.option(
    "-o",
    "--option",
    "options",
    metavar="NAME=VALUE",
    multiple=True,
    help="Override any CACHE_* setting; VALUE is read as JSON when it parses "
    "(-o CACHE_DEFAULT_TIMEOUT=60). Repeatable.",
)
@click.option(
    "--compat",
    type=click.Choice(["2.5", "legacy"]),
    envvar="CACHECTL_COMPAT",
    help="Flask-Caching generation whose defaults apply (2.5+, or legacy 2.0-2.4). "
    "Default: that of the Flask-Caching installed here, else 2.5. Env: CACHECTL_COMPAT.",
)
@click.option(
    "--timeout",
    "connect_timeout",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    metavar="SECONDS",
    help="Connection and socket timeout for the cache server.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (for scripts).")
@click.option("-q", "--quiet", is_flag=True, help="Print only errors.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(__version__, prog_name="cachectl")
@click.pass_context
def cli(
    ctx: click.Context,
    app_import: str | None,
    config_file: str | None,
    cache_name: str | None,
    use_env: bool,
    url: str | None,
    key_prefix: str | None,
    cache_type: str | None,
    cache_dir: str | None,
    options: tuple[str, ...],
    compat: str | None,
    connect_timeout: float,
    as_json: bool,
    quiet: bool,
    debug: bool,
) -> None:
    """Administer the cache of a Flask app that uses Flask-Caching, from outside the app.

    cachectl reads the app's own cache configuration, connects to the same Redis,
    memcached or cache directory, and reads, writes and removes entries exactly as
    the app's cache object would, touching only keys under the app's key prefix.

    \b
    Examples:
      cachectl --app 'myapp:create_app()' get view//about
      cachectl --config cache.toml delete user:42 user:43
      cachectl --url redis://cache:6379/0 clear --dry-run
    """
    overrides = [
        (name, value, flag)
        for name, value, flag in (
            ("CACHE_REDIS_URL", url, "--url"),
            ("CACHE_KEY_PREFIX", key_prefix, "--key-prefix"),
            ("CACHE_TYPE", cache_type, "--type"),
            ("CACHE_DIR", cache_dir, "--dir"),
        )
        if value is not None
    ]
    overrides += [(*_parse_option(text), f"-o {text.partition('=')[0]}") for text in options]
    request = ConfigRequest(
        config_file=config_file,
        app_import=app_import,
        cache_name=cache_name,
        use_env=use_env,
        overrides=overrides,
        compat=compat,
    )
    ctx.obj = Session(request, connect_timeout, Output(as_json=as_json, quiet=quiet), debug)


pass_session = click.make_pass_decorator(Session)


# --- get -----------------------------------------------------------------------------------


def _value_document(key: str, stored: StoredValue | None) -> dict[str, Any]:
    if stored is None:
        return {"key": key, "found": False}
    return {
        "key": key,
        "found": True,
        "type": type(stored.value).__name__ if stored.error is None else None,
        "encoding": stored.encoding,
        "value": to_jsonable(stored.value),
        "error": stored.error,
    }


@cli.command()
@click.argument("keys", nargs=-1, required=True)
@click.option("--raw", is_flag=True, help="Write the stored bytes unchanged (one key only).")
@click.option(
    "--unsafe-unpickle",
    is_flag=True,
    help="Load pickles fully, running whatever code they name. Only for a cache you trust.",
)
@pass_session
def get(session: Session, keys: tuple[str, ...], raw: bool, unsafe_unpickle: bool) -> None:
    """Show the value stored under each KEY, as the app's cache.get(KEY) would find it.

    The key prefix is added for you. Pickled values are loaded safely: plain data
    (str, numbers, lists, dicts, sets, datetimes, Decimal, UUID, ...) is shown as
    it is; an object of any other class is shown as <not loaded: module.Class ...>
    with its captured state, without importing or running anything.

    Exits 1 when a key is missing.

    \b
      cachectl get view//about
      cachectl get --json user:1 user:2
      cachectl get --raw report > report.bin
    """
    output = session.output
    if raw and len(keys) != 1:
        raise UsageError("--raw takes exactly one key")
    backend = session.backend()
    found = [(key, backend.get(key, unsafe=unsafe_unpickle)) for key in keys]
    missing = [key for key, stored in found if stored is None]

    if raw:
        stored = found[0][1]
        if stored is not None:
            if stored.raw is None:
                raise UsageError(
                    f"{backend.kind} clients do not expose the stored bytes; --raw is not available"
                )
            output.raw(stored.raw)
    elif output.as_json:
        output.document({"ok": not missing, "results": [_value_document(k, s) for k, s in found]})
    else:
        for key, stored in found:
            if stored is None:
                continue
            if stored.error is not None:
                output.warn(f"{key}: {stored.error}")
            if stored.error is None:
                output.value(stored.value, label=key if len(keys) > 1 else None)
    for key in missing:
        output.notice(f"not found: {key}")
    if missing:
        click.get_current_context().exit(EXIT_NOT_FOUND)


# --- set -----------------------------------------------------------------------------------


@cli.command("set")
@click.argument("key")
@click.argument("value")
@click.option(
    "--timeout",
    type=click.IntRange(min=0),
    metavar="SECONDS",
    help="Lifetime of the entry; 0 never expires. Default: the config's CACHE_DEFAULT_TIMEOUT.",
)
@click.option(
    "--as",
    "as_type",
    type=click.Choice(VALUE_TYPES),
    default="str",
    show_default=True,
    help="The Python type the app will read back.",
)
@pass_session
def set_(session: Session, key: str, value: str, timeout: int | None, as_type: str) -> None:
    """Store VALUE under KEY, exactly as the app's cache.set(KEY, value) would.

    VALUE - reads standard input (one trailing newline is dropped for --as str).

    \b
      cachectl set maintenance-banner "Back at 10:00" --timeout 3600
      cachectl set feature-flags '{"beta": true}' --as json
      echo 42 | cachectl set answer - --as int
    """
    if value == "-":
        with click.open_file("-", "rb") as stdin:
            data = stdin.read()
        parsed = parse_input_value(data, as_type, from_stdin=True)
    else:
        parsed = parse_input_value(value.encode("utf-8", "surrogateescape"), as_type)
    backend = session.backend(create_dir=True)
    backend.set(key, parsed, timeout)
    lifetime = timeout if timeout is not None else session.settings["CACHE_DEFAULT_TIMEOUT"]
    expiry = "never expires" if lifetime == 0 else f"expires in {lifetime} s"
    if session.output.as_json:
        session.output.document(
            {"ok": True, "key": key, "type": type(parsed).__name__, "timeout": lifetime}
        )
    session.output.result(f"set {key} ({type(parsed).__name__}, {expiry})")


# --- delete --------------------------------------------------------------------------------


def _lines(stream: Iterable[str]) -> Iterator[str]:
    for line in stream:
        key = line.rstrip("\r\n")
        if key:
            yield key


class _Counted:
    """Counts the keys as the backend consumes them, so huge lists stay streamed."""

    def __init__(self, keys: Iterable[str]) -> None:
        self.keys = keys
        self.count = 0

    def __iter__(self) -> Iterator[str]:
        for key in self.keys:
            self.count += 1
            yield key


def _confirm(session: Session, what: str, yes: bool) -> None:
    """Ask on a terminal; without one, require --yes (exit 2 having changed nothing)."""
    if yes:
        return
    if not session.output.interactive:
        raise UsageError("no terminal to confirm on: pass --yes to go ahead without asking")
    if not click.confirm(f"{what}?", err=True):
        session.output.notice("nothing removed")
        click.get_current_context().exit(EXIT_NOT_FOUND)


def _sweep(session: Session, backend: CacheBackend, pattern: str, dry_run: bool, yes: bool) -> None:
    """Remove the app's keys matching a glob: clear's streaming path and rules."""
    backend.require_key_listing()
    scope = f"keys under the prefix {backend.key_prefix!r} matching {pattern!r}"
    if not dry_run:
        _confirm(session, f"Remove {scope} from {backend.describe()}", yes)
    with session.output.progress("counting" if dry_run else "removing") as on_progress:
        count = backend.delete_matching(pattern, dry_run, on_progress)
    if session.output.as_json:
        session.output.document(
            {
                "ok": True,
                "dry_run": dry_run,
                "pattern": pattern,
                "target": backend.describe(),
                "removed": count,
            }
        )
    verb = "would remove" if dry_run else "removed"
    session.output.result(f"{verb} {count} {scope} from {backend.describe()}")


@cli.command()
@click.argument("keys", nargs=-1)
@click.option(
    "--from-file",
    type=click.File("r", encoding="utf-8"),
    metavar="FILE",
    help="Also delete the keys listed in FILE, one a line ('-' for standard input).",
)
@click.option(
    "--pattern",
    metavar="GLOB",
    help="Redis: delete every key of the app matching GLOB (after the prefix), as clear does.",
)
@click.option(
    "--dry-run", is_flag=True, help="With --pattern: count what would go; remove nothing."
)
@click.option(
    "-y", "--yes", is_flag=True, help="With --pattern: do not ask (needed without a terminal)."
)
@pass_session
def delete(
    session: Session,
    keys: tuple[str, ...],
    from_file: Any,
    pattern: str | None,
    dry_run: bool,
    yes: bool,
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
      cachectl delete --pattern 'view//products/*' --dry-run
      cachectl delete --pattern 'report:*' --yes
    """
    if pattern is not None:
        if keys or from_file is not None:
            raise UsageError("give keys or --pattern, not both")
        _sweep(session, session.backend(), pattern, dry_run, yes)
        return
    if dry_run:
        raise UsageError(
            "--dry-run applies to --pattern (a listed key is simply deleted or not there)"
        )
    if not keys and from_file is None:
        raise UsageError("give the keys to delete, --from-file FILE or --pattern GLOB")
    requested = _Counted([*keys, *(_lines(from_file) if from_file is not None else [])])
    backend = session.backend()
    with session.output.progress("deleting") as on_progress:
        removed = backend.delete(requested, on_progress)
    if session.output.as_json:
        session.output.document({"ok": True, "requested": requested.count, "removed": removed})
    if removed is None:
        session.output.result(
            f"deleted {requested.count} keys ({backend.kind} does not say which existed)"
        )
    elif removed != requested.count:
        session.output.result(
            f"deleted {removed} of {requested.count} keys (the others did not exist)"
        )
    else:
        session.output.result(f"deleted {removed} keys")


# --- clear ---------------------------------------------------------------------------------


@cli.command()
@click.option("--dry-run", is_flag=True, help="Count what would be removed; remove nothing.")
@click.option(
    "-y", "--yes", is_flag=True, help="Do not ask for confirmation (needed without a terminal)."
)
@click.option(
    "--flush-db",
    is_flag=True,
    help="Redis without a key prefix only: empty the whole database (FLUSHDB).",
)
@click.option(
    "--pattern",
    metavar="GLOB",
    help="Redis: only the app's keys matching GLOB (after the prefix); same as delete --pattern.",
)
@pass_session
def clear(session: Session, dry_run: bool, yes: bool, flush_db: bool, pattern: str | None) -> None:
    """Remove every entry of the app's cache, and nothing else.

    \b
    Redis: the keys under the app's key prefix, found with SCAN and removed with
      UNLINK in batches, so the server never blocks and memory stays flat however
      many keys there are. Without a prefix, clear refuses unless --flush-db.
    FileSystemCache: the cache files in CACHE_DIR; other files stay.
    memcached: cannot remove by prefix, so clearing empties the whole server
      (flush_all), and only with --yes.

    On a terminal it asks first; without one it needs --yes. Ctrl-C stops after
    the batch in flight and reports how many keys went (exit 130).

    \b
      cachectl clear --dry-run
      cachectl clear --yes          # in cron or a deploy script
      cachectl clear --pattern 'view//*' --yes
    """
    output = session.output
    backend = session.backend()
    if pattern is not None:
        if flush_db:
            raise UsageError("--flush-db empties the whole database; it takes no --pattern")
        _sweep(session, backend, pattern, dry_run, yes)
        return
    plan = backend.clear_plan()
    unprefixed_redis = backend.kind == "redis" and not backend.key_prefix
    if flush_db and not unprefixed_redis:
        raise UsageError(
            "--flush-db only applies to a Redis cache without a key prefix; "
            f"this clear already removes only {plan.scope}"
        )
    if unprefixed_redis and not flush_db:
        raise UsageError(
            f"no key prefix is configured, so every key in {plan.target} would look like the "
            "app's; clear refuses. Pass --flush-db to empty that whole database on purpose"
        )
    if plan.whole_server and backend.kind == "memcached" and not dry_run:
        output.warn(f"clearing {plan.target} removes {plan.scope}")
        if not yes:
            raise UsageError("memcached can only be cleared whole: pass --yes to flush it")
    if not dry_run:
        _confirm(session, f"Remove {plan.scope} from {plan.target}", yes)

    with output.progress("counting" if dry_run else "removing") as on_progress:
        count = backend.clear(dry_run, on_progress)
    verb = "would remove" if dry_run else "removed"
    if output.as_json:
        output.document(
            {
                "ok": True,
                "dry_run": dry_run,
                "target": plan.target,
                "scope": plan.scope,
                "removed": count,
            }
        )
    if count is None:
        counted = " (the server cannot count them)" if dry_run else ""
        output.result(f"{verb} {plan.scope} from {plan.target}{counted}")
    else:
        output.result(f"{verb} {count} {plan.scope} from {plan.target}")


# --- keys and stats ------------------------------------------------------------------


@cli.command("keys")
@click.argument("pattern", default="*", metavar="[GLOB]")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Stop after N keys.")
@click.option("--count", "count_only", is_flag=True, help="Print only how many keys match.")
@pass_session
def keys_command(session: Session, pattern: str, limit: int | None, count_only: bool) -> None:
    """List the app's keys matching GLOB (default: all), without the prefix, as SCAN finds them.

    Keys stream out as they are found, so the first lines come at once even with
    millions of keys; SCAN never blocks the server. FileSystemCache and memcached
    cannot list key names (a FileSystemCache file is named by a hash of its key),
    but --count works for the filesystem.

    \b
      cachectl keys 'view//*' --limit 20
      cachectl keys --count
    """
    backend = session.backend()
    output = session.output
    if count_only:
        with output.progress("counting") as on_progress:
            count = backend.count(pattern, on_progress)
        if output.as_json:
            output.document({"ok": True, "pattern": pattern, "count": count})
        elif not output.quiet:
            click.echo(count)
        return
    backend.require_key_listing()
    found: list[str] = []
    for shown, name in enumerate(backend.scan_keys(pattern), start=1):
        if output.as_json:
            found.append(name)
        elif not output.quiet:
            click.echo(name)
        if limit is not None and shown >= limit:
            break
    if output.as_json:
        output.document({"ok": True, "pattern": pattern, "keys": found})


@cli.command()
@click.option(
    "--sample", type=click.IntRange(min=1), metavar="N", help="Examine only N keys and extrapolate."
)
@pass_session
def stats(session: Session, sample: int | None) -> None:
    """What is in the cache: entries by kind, by time to live, and memory.

    \b
    Redis: every key under the prefix (or --sample N of them), recognised by the
      shapes Flask-Caching gives its keys: memoized results, memoize version keys,
      cached views (view/...), template fragments and other keys; their TTLs; the
      memory of a sample (MEMORY USAGE) and an estimate of the total.
    FileSystemCache: the cache files, their expiry and size on disk.

    \b
      cachectl stats
      cachectl stats --sample 10000 --json
    """
    backend = session.backend()
    with session.output.progress("examining") as on_progress:
        found = collect_stats(backend, sample, on_progress)
    document = found.document()
    if session.output.as_json:
        session.output.document({"ok": True, "target": backend.describe(), **document})
        return
    estimated = " (estimated from a sample)" if found.estimated else ""
    session.output.result(
        f"{found.total} keys under the prefix {backend.key_prefix!r} in {backend.describe()}"
    )
    rows = [(kind, str(n)) for kind, n in document["kinds"].items()]
    rows += [("", "")] + [(f"TTL {bucket}", str(n)) for bucket, n in document["ttl"].items()]
    memory = document["memory"]
    if memory["estimated_total_bytes"] is not None:
        rows += [
            ("", ""),
            (f"memory of {memory['sampled_keys']} keys", f"{memory['sampled_bytes']:,} bytes"),
            ("memory, all keys (estimate)", f"{memory['estimated_total_bytes']:,} bytes"),
        ]
    session.output.table(("entries" + estimated, "count"), rows)


# --- memoize, views, fragments ------------------------------------------------------


def _report_output(session: Session, report: Report, backend: CacheBackend, extra: dict) -> None:
    """One JSON document, or a line per key written or deleted."""
    output = session.output
    if output.as_json:
        output.document(
            {"ok": True, **extra, **report.document(), "key_prefix": backend.key_prefix}
        )
        return
    would = "would " if report.dry_run else ""
    for key, value in report.written.items():
        output.result(
            f"{would}write version {value!r} to {key} (stored as {backend.storage_name(key)})"
        )
    for key in report.deleted:
        output.result(f"{would}delete {key} (stored as {backend.storage_name(key)})")
    if report.removed is not None:
        output.result(
            f"removed {report.removed} of {len(report.deleted)} keys (the others did not exist)"
            if report.removed != len(report.deleted)
            else f"removed {report.removed} keys"
        )
    if report.purged is not None:
        verb = "would remove" if report.dry_run else "removed"
        output.result(f"{verb} {report.purged} stored entries")
    for note in report.notes:
        output.notice(note)


class ReprPositionsCommand(click.Command):
    """Remembers where each ``--repr`` stood among the positional ARGs, which Click
    alone does not keep: ``f 1 --repr "Locale('en')" 3`` is ``f(1, Locale('en'), 3)``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value = {
            name
            for param in self.params
            if isinstance(param, click.Option) and not param.is_flag and not param.count
            for name in param.opts
        }
        positions, positionals, index = [], 0, 0
        while index < len(args):
            token = args[index]
            name = token.split("=", 1)[0]
            if token == "--":
                break
            if name == "--repr":
                # positionals counts FUNCTION too: the ARG index is one less.
                positions.append(max(positionals - 1, 0))
            if token.startswith("-") and len(token) > 1:
                index += 2 if name in takes_value and "=" not in token else 1
                continue
            positionals += 1
            index += 1
        ctx.meta["repr_positions"] = positions
        return super().parse_args(ctx, args)


@cli.command("delete-memoized", cls=ReprPositionsCommand)
@click.argument("function")
@click.argument("args", nargs=-1)
@click.option(
    "--repr",
    "reprs",
    multiple=True,
    metavar="TEXT",
    help="An argument given by its repr() text, verbatim, for an object that is not a "
    "literal (\"Locale('en')\"); it takes its place among the ARGs. Repeatable.",
)
@click.option(
    "--kw",
    "keywords",
    multiple=True,
    metavar="NAME=VALUE",
    help="A keyword argument of the call. Repeatable.",
)
@click.option(
    "--instance",
    metavar="ID",
    help="For a method: the instance's repr() or __caching_id__(), verbatim.",
)
@click.option(
    "--signature",
    metavar="SIGNATURE",
    help="The function's parameters, when it cannot be imported here: "
    "\"(user_id, role='member', *args, **kw)\".",
)
@click.option(
    "--make-name",
    metavar="NAME",
    help="What the decorator's make_name returns for the function (without --app).",
)
@click.option(
    "--ignore",
    multiple=True,
    metavar="ARG",
    help="A name in the decorator's args_to_ignore (without --app). Repeatable.",
)
@click.option(
    "--hash-method",
    type=click.Choice(HASH_METHOD_NAMES),
    help="The decorator's hash_method. Default: CACHE_HASH_METHOD.",
)
@click.option(
    "--source-check/--no-source-check",
    default=None,
    help="Whether the decorator uses source_check. Default: CACHE_SOURCE_CHECK.",
)
@click.option(
    "--purge", is_flag=True, help="Redis: also remove the entries stored under the old version."
)
@click.option(
    "--verhash",
    is_flag=True,
    help="Delete the version key itself, as delete_memoized_verhash does.",
)
@click.option(
    "--dry-run", is_flag=True, help="Print the keys it would write or delete; change nothing."
)
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
) -> None:
    """Invalidate what @cache.memoize stored for FUNCTION, as cache.delete_memoized() does.

    FUNCTION is module.qualname or module:qualname (myapp.models.get_user,
    myapp.models:Person.has_membership).

    \b
    Without ARGs: every stored result of the function becomes unreachable (a new
      version is written to its version key), or of one instance's method with
      --instance. The old entries stay until they expire; --purge (Redis) removes them.
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
    """
    positions = click.get_current_context().meta.get("repr_positions", [])
    call_args = place_repr_arguments(
        [parse_argument(arg) for arg in args], list(zip(positions, reprs, strict=True))
    )
    if (call_args or keywords) and (purge or verhash):
        raise UsageError(
            "--purge and --verhash invalidate the whole function: give no ARGs with them"
        )
    if purge and verhash:
        raise UsageError("choose --purge or --verhash")
    settings = session.settings
    found, import_problem = find_memoized(function, signature)
    if import_problem and session.output.interactive:
        session.output.notice(f"note: {import_problem}; using the name alone")
    call = MemoizedCall(
        function=found,
        args=call_args,
        kwargs=dict(parse_keyword(text) for text in keywords),
        instance_id=instance,
        make_name=make_name,
        ignore=ignore,
        hash_method=resolve_hash_method("--hash-method", hash_method) if hash_method else None,
        source_check=settings.get("CACHE_SOURCE_CHECK", False)
        if source_check is None
        else source_check,
    )
    backend = session.backend()
    invalidator = Invalidator(backend, settings)
    if verhash:
        report = invalidator.delete_version_key(call, dry_run)
    elif call.has_call:
        report = invalidator.delete_entry(call, dry_run)
    else:
        with session.output.progress("purging") as on_progress:
            report = invalidator.invalidate_all(call, purge, dry_run, on_progress)
    extra = {"function": found.dotted, "instance": instance, "import_problem": import_problem}
    _report_output(session, report, backend, extra)


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
    "--key-prefix",
    "view_prefix",
    default=keys.DEFAULT_VIEW_PREFIX,
    show_default=True,
    metavar="TEMPLATE",
    help="The decorator's key_prefix: a template with %s, or a constant key.",
)
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
@click.option(
    "--hash-method",
    type=click.Choice(HASH_METHOD_NAMES),
    help="The decorator's hash_method (query_string views). Default: CACHE_HASH_METHOD.",
)
@click.option("--dry-run", is_flag=True, help="Print the key it would delete.")
@pass_session
def delete_view(
    session: Session,
    path: str | None,
    query: str | None,
    all_queries: bool,
    view_prefix: str,
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
      cachectl delete-view /feed --key-prefix 'feeds/%s'
      cachectl --app 'shop:create_app()' delete-view --endpoint user --arg name=alice
    """
    if (path is None) == (endpoint is None):
        raise UsageError("give either PATH or --endpoint NAME")
    if all_queries and query is not None:
        raise UsageError("choose --query or --all-queries")
    settings = session.settings
    method = (
        resolve_hash_method("--hash-method", hash_method)
        if hash_method
        else settings["CACHE_HASH_METHOD"]
    )
    backend = session.backend()
    invalidator = Invalidator(backend, settings)
    if endpoint is not None:
        if settings.app is None:
            raise UsageError("--endpoint needs the app: add --app IMPORT")
        values = dict(text.partition("=")[::2] for text in url_args)
        key = invalidator.view_key_from_the_app(endpoint, values, query)
        report = invalidator.delete_keys([key], "delete-view", dry_run)
    elif all_queries:
        with session.output.progress("deleting") as on_progress:
            report = invalidator.delete_query_variants(
                path, view_prefix, method, dry_run, on_progress
            )
    else:
        request = keys.ViewKeyRequest(path, view_prefix, query)
        key = keys.view_key(request, settings.generation.name, method)
        report = invalidator.delete_keys([key], "delete-view", dry_run)
    _report_output(session, report, backend, {"path": path, "endpoint": endpoint})


@cli.command("make-fragment-key")
@click.argument("name")
@click.argument("vary_on", nargs=-1)
@click.option("--delete", is_flag=True, help="Delete the fragment from the cache.")
@pass_session
def make_fragment_key(session: Session, name: str, vary_on: tuple[str, ...], delete: bool) -> None:
    """Print the key of a {% cache timeout, NAME, VARY_ON... %} block; --delete removes it.

    Prints the key as the app passes it to the cache, and where it is stored (with
    the backend's key prefix, or the file for FileSystemCache).

    \b
      cachectl make-fragment-key sidebar
      cachectl make-fragment-key user_card alice fr --delete
    """
    key = keys.fragment_key(name, list(vary_on))
    backend = session.backend() if delete else build_backend(session.settings, session.timeout)
    report = (
        Invalidator(backend, session.settings).delete_keys([key], "delete-fragment", dry_run=False)
        if delete
        else None
    )
    if session.output.as_json:
        session.output.document(
            {
                "ok": True,
                "key": key,
                "stored_as": backend.storage_name(key),
                "removed": report.removed if report else None,
            }
        )
        return
    session.output.result(key)
    session.output.notice(f"stored as {backend.storage_name(key)}")
    if report is not None:
        session.output.result(f"removed {report.removed} keys")


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
    directories = [os.path.abspath(d) for d in template_dirs]
    app = None
    if not directories:
        # Listing templates needs no cache configuration, only the app if one is named.
        loaded = session.loaded_app()
        if loaded is not None:
            app = loaded.app
        if app is not None:
            directories = app_template_directories(app)
        elif os.path.isdir("templates"):
            directories = [os.path.abspath("templates")]
        else:
            raise UsageError("give the template directories, or --app to use the app's")
    blocks, unreadable = find_fragments(directories, app)
    for problem in unreadable:
        session.output.warn(f"could not parse {problem}")
    if session.output.as_json:
        session.output.document(
            {"ok": True, "fragments": [{**vars(b), "key": b.key} for b in blocks]}
        )
        return
    rows = [
        (
            f"{b.template}:{b.line}",
            b.timeout,
            b.name if b.name is not None else f"(implicit) {b.name_value}",
            ", ".join(b.vary_on),
            b.key or "(depends on the values at render time)",
        )
        for b in blocks
    ]
    if not rows:
        session.output.notice("no {% cache %} blocks found in " + ", ".join(directories))
        return
    session.output.table(("template", "timeout", "name", "vary_on", "key"), rows)


# --- config --------------------------------------------------------------------------------


def _settings_document(settings: CacheSettings) -> dict[str, Any]:
    return {
        name: {"value": value, "source": settings.source(name)}
        for name, value in settings.masked().items()
    }


def _show_cache_list(session: Session, caches: list[tuple[AppCache, CacheSettings]]) -> None:
    """Every cache of the app, by the names --cache takes, for an app with several."""
    if session.output.as_json:
        session.output.document(
            {
                "ok": True,
                "caches": [
                    {
                        "index": cache.index,
                        "name": cache.label,
                        "names": cache.names,
                        "settings": _settings_document(settings),
                    }
                    for cache, settings in caches
                ],
            }
        )
        return
    session.output.result(f"{len(caches)} caches; pick one with --cache (index or any name):")
    rows = [
        (
            str(cache.index),
            ", ".join(cache.names) or "-",
            display_value("CACHE_TYPE", settings.get("CACHE_TYPE")),
            display_value("CACHE_KEY_PREFIX", settings.get("CACHE_KEY_PREFIX")),
            describe_location(settings),
        )
        for cache, settings in caches
    ]
    session.output.table(("index", "names", "type", "prefix", "where"), rows)


def _write_config(session: Session, target: str, force: bool) -> None:
    """Write every cache of the app (or the one resolved) as named caches."""
    caches = session.every_app_cache()
    if caches:
        exported = [export_cache(cache.label, settings) for cache, settings in caches]
        generation = caches[0][1].generation
        origin = f"the app {session.app_import}"
    else:
        settings = session.settings
        exported = [export_cache(settings.cache_name, settings)]
        generation, origin = settings.generation, "the resolved configuration"
    header = [
        f"Written by cachectl {__version__} from {origin}.",
        "Use it config-only (no app start-up): cachectl --config FILE --cache NAME COMMAND",
    ]
    text = render_toml(exported, generation.name, header)
    if target == "-":
        sys.stdout.write(text)
    else:
        write_file(target, text, overwrite=force)
    for cache in exported:
        for note in cache.notes:
            session.output.warn(f"cache {cache.name}: {note}")
    if target == "-":
        return
    if session.output.as_json:
        session.output.document(
            {"ok": True, "written": target, "caches": [cache.name for cache in exported]}
        )
    else:
        session.output.result(
            f"wrote {len(exported)} cache(s) to {target}: "
            + ", ".join(cache.name for cache in exported)
        )


@cli.command()
@click.option(
    "--write",
    "target",
    metavar="FILE",
    help="Write the settings of every cache the app registers to FILE (TOML, - for stdout) "
    "as named caches, secrets left out, for config-only runs without starting the app.",
)
@click.option("--force", is_flag=True, help="With --write: replace FILE if it exists.")
@pass_session
def config(session: Session, target: str | None, force: bool) -> None:
    """Show the cache configuration cachectl resolved, and where each value came from.

    Passwords and URL credentials are masked. Nothing is sent to the cache server.
    With --app, the connection is the one the app's live backend object uses,
    whatever passed the settings to it (app.config, Cache(config=...),
    init_app(app, config)). An app with several caches and no --cache: every
    cache is listed, with the names --cache takes.

    --write FILE loads the app once and writes what cron jobs and other hosts need
    to run config-only from then on (the app's factory, with its side effects, no
    longer runs on each command):

    \b
      cachectl --app 'shop:create_app()' config --write cachectl.toml
      cachectl --config cachectl.toml --cache DATA_CACHE_CONFIG clear --yes
    """
    if force and target is None:
        raise UsageError("--force goes with --write FILE")
    if target is not None:
        _write_config(session, target, force)
        return
    if session.request.cache_name is None:
        loaded = session.loaded_app()
        if loaded is not None and len(loaded.caches) > 1:
            _show_cache_list(session, session.every_app_cache())
            return
    settings = session.settings
    if session.output.as_json:
        session.output.document(
            {
                "ok": True,
                "cache": settings.cache_name,
                "generation": settings.generation.name,
                "generation_source": settings.generation.origin,
                "settings": _settings_document(settings),
            }
        )
        return
    session.output.result(
        f"cache {settings.cache_name}; Flask-Caching generation {settings.generation.name} "
        f"({settings.generation.origin})"
    )
    rows = [
        (name, display_value(name, value), settings.source(name))
        for name, value in settings.masked().items()
    ]
    session.output.table(("setting", "value", "source"), rows)


# --- completion ----------------------------------------------------------------------------


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL (the files in completions/ are its output).

    \b
      cachectl completion bash > ~/.local/share/bash-completion/completions/cachectl
      cachectl completion zsh > "${fpath[1]}/_cachectl"
      cachectl completion fish > ~/.config/fish/completions/cachectl.fish
    """
    completer = get_completion_class(shell)(cli, {}, "cachectl", "_CACHECTL_COMPLETE")
    click.echo(completer.source())


def main() -> None:
    """Console entry point."""
    cli(prog_name="cachectl")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
