"""The ``cachectl`` group: global options, the Session they make (cli/session.py), and
where every failure is caught and turned, by cli/failures.py, into a line (or a JSON
document) and an exit code. Commands live in the modules beside this one, grouped by
what they act on."""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from cachectl import __version__
from cachectl.cli.command_index import COMMAND_MODULES
from cachectl.cli.failures import failure_of, report, report_failure, report_usage_error
from cachectl.cli.once import guarded, once_request
from cachectl.cli.options import COMPAT_HELP, json_option, once_options
from cachectl.cli.session import Session
from cachectl.cli.usage import UsageHints
from cachectl.errors import EXIT_CODES_HELP, EXIT_USAGE, ConfigError, UsageError
from cachectl.runtime.output import Output

F = TypeVar("F", bound=Callable[..., Any])

#: Flags that belong to the group but read naturally after the command too
#: (``cachectl get --json k``): they are moved in front before Click parses.
GLOBAL_FLAGS = frozenset({"--json", "-q", "--quiet", "--debug"})
#: Exit status when the reader of standard output went away (``| head``), as a
#: process killed by SIGPIPE reports it in a shell.
EXIT_BROKEN_PIPE = 141


class CachectlGroup(UsageHints):
    """Turns every failure, Click's usage errors included, into one ``error:`` line
    (or one JSON document) and its documented exit code (``UsageHints``: which ones)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(COMMAND_MODULES))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMAND_MODULES.get(cmd_name)
        if module is not None and cmd_name not in self.commands:
            importlib.import_module(module)
        return super().get_command(ctx, cmd_name)

    def _hoist_global_flags(self, args: list[str]) -> list[str]:
        takes_value = {
            name
            for param in self.params
            if isinstance(param, click.Option) and not param.is_flag
            for name in param.opts
        }
        index = 0
        names = set(self.commands) | set(COMMAND_MODULES)
        while index < len(args) and args[index] not in names:
            if args[index] == "--":
                return args
            index += 2 if args[index] in takes_value else 1
        head, tail = args[: index + 1], args[index + 1 :]
        moved = []
        for position, token in enumerate(tail):
            if token == "--":
                break
            if token in GLOBAL_FLAGS:
                moved.append(position)
        flags = [tail[position] for position in moved]
        rest = [token for position, token in enumerate(tail) if position not in moved]
        return flags + head + rest

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, self._hoist_global_flags(list(args)))

    def main(  # type: ignore[override]  # always exits, whatever standalone_mode says
        self, args: Any = None, prog_name: str | None = None, **extra: Any
    ) -> Any:
        arguments = list(sys.argv[1:] if args is None else args)
        self.invoked_with = arguments  # the command line, for the audit log
        as_json = "--json" in arguments[: arguments.index("--") if "--" in arguments else None]
        extra["standalone_mode"] = False
        # SIGINT, SIGTERM, SIGHUP: one way for every command.
        from cachectl.runtime import interrupts

        try:
            with interrupts.handled():
                status = super().main(arguments, prog_name, **extra)
        except click.exceptions.Exit as exc:
            status = exc.exit_code
        except click.ClickException as exc:
            report_usage_error(exc, Output(as_json=as_json))
            status = exc.exit_code
        except click.Abort as exc:  # a signal outside a command, or at a prompt; end of input
            stopped = interrupts.as_error(exc.__context__)
            report(Output(as_json=as_json), stopped.message, stopped.exit_code, {})
            status = stopped.exit_code
        except BrokenPipeError:
            _silence_stdout()
            status = EXIT_BROKEN_PIPE
        sys.exit(status if isinstance(status, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        status = 0
        try:
            return self._invoke_reporting(ctx)
        except click.exceptions.Exit as exc:
            status = exc.exit_code
            raise
        except click.ClickException as exc:
            status = exc.exit_code
            raise
        except (click.Abort, KeyboardInterrupt) as exc:  # a signal (cachectl.runtime.interrupts)
            from cachectl.runtime import interrupts

            cause = exc if isinstance(exc, KeyboardInterrupt) else exc.__context__
            status = interrupts.as_error(cause).exit_code
            raise
        finally:
            _finish_backup(ctx)
            _write_audit(ctx, status)

    def _invoke_reporting(self, ctx: click.Context) -> Any:
        try:
            result = super().invoke(ctx)
            sys.stdout.flush()  # a reader that went away shows here, not at exit
            return result
        except BrokenPipeError:
            # Click would turn it into exit 1; a closed pipe is 141, and quiet.
            _silence_stdout()
            raise click.exceptions.Exit(EXIT_BROKEN_PIPE) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except (Exception, KeyboardInterrupt) as exc:
            message, code, done = failure_of(exc)
            _fail(ctx, message, code, done)


def _finish_backup(ctx: click.Context) -> None:
    """Close the run's backup file (``--backup``), whatever the run's outcome."""
    session = ctx.find_object(Session)
    if session is not None and session.current_backup is not None:
        from cachectl.cli.backups import finish

        finish(session)


def _write_audit(ctx: click.Context, status: int) -> None:
    """The run's audit line (``cachectl.runtime.audit``), whatever its status. A line that cannot
    be written is a warning; with --audit-required an error, and exit 2 if the command
    had succeeded."""
    session = ctx.find_object(Session)
    if session is None:
        return
    problem = session.audit.write(session, status)
    if problem is None:
        return
    if not session.audit.required:
        session.output.warn(f"audit log not written: {problem}")
        return
    session.output.error(f"the command ran, but its audit line was not written: {problem}")
    if status == 0:
        raise click.exceptions.Exit(EXIT_USAGE)


def _silence_stdout() -> None:
    """After a closed pipe, point stdout at /dev/null so the interpreter's final
    flush cannot fail again and print a traceback."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real stream (tests)
        pass


def _fail(ctx: click.Context, message: str, code: int, done: dict[str, object]) -> NoReturn:
    report_failure(ctx, message, code, done)
    ctx.exit(code)


def _checked_compat(value: str | None) -> str | None:
    """A usage error for a release that is not one, before anything is read."""
    if value is not None:
        from cachectl.config.generations import resolve_generation

        try:
            resolve_generation(value)
        except ConfigError as exc:
            raise click.BadParameter(str(exc)) from None
    return value


def _finite(value: float) -> float:
    if value != value:  # NaN passes every range check
        raise click.BadParameter("must be a number of seconds, not nan", param_hint="--timeout")
    return value


def _warn_about_passwords(output: Output, overrides: list[tuple[str, Any, str]]) -> None:
    """A password in argv is visible to every user of the host (ps, /proc); say so
    once, as redis-cli -a does, and where it belongs instead."""
    from cachectl.runtime.secrets import is_secret, mask_url, scrub

    for name, value, label in overrides:
        shown_in_argv = is_secret(name) or (
            isinstance(value, str) and (scrub(value) != value or mask_url(value) != value)
        )
        if shown_in_argv and value:
            output.warn(
                f"a password given with {label} is visible to other users (ps); prefer a "
                "config file (--config, CACHECTL_CONFIG) or --env with "
                "FLASK_CACHE_REDIS_PASSWORD"
            )
            return


def _parse_option(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise click.BadParameter(f"expected NAME=VALUE, got {text!r}", param_hint="-o/--option")
    from cachectl.config.sources import parse_setting_value

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
    "'all': every cache in turn (clear, stats, keys, config, delete --pattern, batch). "
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
    help="Override CACHE_REDIS_URL: redis://, rediss:// (TLS), valkey://, valkeys:// or "
    "unix:// (implies RedisCache when no type is set).",
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
    metavar="RELEASE",
    envvar="CACHECTL_COMPAT",
    callback=lambda ctx, param, value: _checked_compat(value),
    help=COMPAT_HELP,
)
@click.option(
    "--timeout",
    "connect_timeout",
    type=click.FloatRange(min=0.1, max=3600),
    callback=lambda ctx, param, value: _finite(value),
    default=5.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for the cache server: to connect, and for each whole reply (a "
    "server that sends its answer a byte at a time fails too, exit 3). A command of many "
    "replies, such as a long clear, is not bounded as a whole; pylibmc bounds each wait "
    "on the socket only.",
)
@click.option(
    "--audit-log",
    metavar="FILE",
    envvar="CACHECTL_AUDIT_LOG",
    help="Append one JSON line to FILE for each run that changes a cache (set, delete, "
    "clear, delete-memoized, delete-view, make-fragment-key --delete, expire, persist, warm, "
    "prune, batch, invalidate, plan --apply): who, where, what was done, the exit status; "
    "never a value. Env: CACHECTL_AUDIT_LOG; or audit_log in the config file.",
)
@click.option(
    "--audit-required",
    is_flag=True,
    envvar="CACHECTL_AUDIT_REQUIRED",
    help="Refuse (exit 2, nothing done) to change a cache when the audit log cannot be "
    "written. Without it, a log that cannot be written is a warning.",
)
@click.option(
    "--backup",
    "backup_path",
    metavar="FILE",
    help="Keep every entry the command removes or overwrites in FILE (created 0600, never "
    "over an existing file), each on disk before it goes; 'cachectl restore FILE' puts them "
    "back. Or backup_dir in the config file: a new file there for every such run.",
)
@once_options
@json_option
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
    audit_log: str | None,
    audit_required: bool,
    backup_path: str | None,
    once_per: str | None,
    once_ttl: int,
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
    # Resolved when a command runs, not for --help.
    from cachectl.config.resolve import ConfigRequest

    request = ConfigRequest(
        config_file=config_file,
        app_import=app_import,
        cache_name=cache_name,
        use_env=use_env,
        overrides=overrides,
        compat=compat,
    )
    output = Output(as_json=as_json, quiet=quiet)
    session = ctx.obj = Session(request, connect_timeout, output, debug)
    session.audit.argv = list(getattr(ctx.command, "invoked_with", []))
    session.audit.log_path = audit_log
    session.audit.required = audit_required
    session.backup_path = backup_path
    session.once = once_request(ctx, once_per, once_ttl)
    given_flags = (("--url", url), ("--type", cache_type), ("--dir", cache_dir))
    for flag, given in (*given_flags, ("--audit-log", audit_log), ("--backup", backup_path)):
        if given is not None and not given.strip():
            raise UsageError(f"{flag} is empty: give a value or leave the option out")
    _warn_about_passwords(output, overrides)
    if cache_name == "all":  # --cache all: only the commands that take it
        from cachectl.cli.every_cache import check_command

        check_command(ctx.invoked_subcommand)


def pass_session(function: F) -> F:
    """Passes the invocation's Session to a command, and tells the audit log which
    command runs with which options (the first: a batch's lines run inside it)."""

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        session = ctx.find_object(Session)
        if session is None:
            raise RuntimeError("a cachectl command runs inside the cachectl group")
        first = session.audit.command is None
        session.audit.starting(ctx.info_name or "", ctx.params, session)
        if first:
            from cachectl.cli.backups import check_request

            check_request(session)
        try:
            return guarded(ctx, session, lambda: ctx.invoke(function, session, *args, **kwargs))
        finally:
            session.audit.finished()

    return run  # type: ignore[return-value]


def main() -> None:
    """Console entry point (the process ends when it returns or raises)."""
    from cachectl.runtime import interrupts

    interrupts.own_the_process()
    try:
        cli(prog_name="cachectl")
    finally:
        # The interpreter's last garbage collection walks every object still alive (redis-py
        # alone brings asyncio and its kin): tens of milliseconds, a quarter of a short
        # command. Frozen objects are skipped by it; atexit handlers, the flushing of output
        # and the closing of files still happen. Only here, where the process ends: a
        # program that calls ``cli`` itself (tests, ``flask cachectl``) keeps its collector.
        import gc

        gc.freeze()


if __name__ == "__main__":  # pragma: no cover
    main()
