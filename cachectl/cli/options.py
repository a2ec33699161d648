"""Options several commands share, declared once so they read and behave alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from cachectl.codec.limits import DecodeLimits

from cachectl.config.constants import HASH_METHOD_NAMES

F = TypeVar("F", bound=Callable[..., Any])

#: ``--compat``'s help: what decides the generation when it is not given, and that nothing
#: guesses it (``cachectl.config.generations.resolve_generation`` is the order).
COMPAT_HELP = (
    "The Flask-Caching the app runs, whose defaults apply: 2.5 (and later), legacy "
    "(1.9-2.4), or its release (2.4, 1.10, ...: FileSystemCache's file format differs "
    "before 1.11; 2.5.0 keys a view by a route argument named path or query_args, 2.5.1 "
    "and 2.5 do not). Default: compat in the config file, else the Flask-Caching installed "
    "here (the app's, with --app), else what the settings or the cache show "
    "(CACHE_FILE_HASH_METHOD, FileSystemCache file names). Never guessed: with none of "
    "these, what differs between generations exits 2. Env: CACHECTL_COMPAT."
)


def json_option(function: F) -> F:
    """``--json``: one JSON document on standard output, errors too."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON document (for scripts)."
    )(function)


def dry_run_option(help: str) -> Callable[[F], F]:
    """``--dry-run``: say what would change, change nothing."""
    return click.option("--dry-run", is_flag=True, help=help)


def keep_going_option(function: F) -> F:
    """``--keep-going`` (batch, invalidate): run every line, even after one fails."""
    return click.option(
        "--keep-going",
        is_flag=True,
        help="Run the lines after a failing one too (the exit status is still the first "
        "failure's).",
    )(function)


def yes_option(help: str) -> Callable[[F], F]:
    """``-y/--yes``: go ahead without asking (required where no terminal can ask)."""
    return click.option("-y", "--yes", is_flag=True, help=help)


def pattern_option(help: str) -> Callable[[F], F]:
    """``--pattern GLOB``: the app's keys matching a glob, after the prefix."""
    return click.option("--pattern", metavar="GLOB", help=help)


def include_nested_option(function: F) -> F:
    """``--include-nested``: take the keys of the app's caches nested under this one."""
    return click.option(
        "--include-nested",
        is_flag=True,
        help="Redis: also take the keys of the app's other caches whose prefixes begin with "
        "this cache's prefix on the same server and database (left out by default).",
    )(function)


def hash_method_option(help: str) -> Callable[[F], F]:
    """``--hash-method``: a decorator's hash_method, by hashlib name."""
    return click.option("--hash-method", type=click.Choice(HASH_METHOD_NAMES), help=help)


def renamed_option(old: str, new: str, dest: str, **attrs: Any) -> Callable[[F], F]:
    """A hidden ``old`` spelling of option ``new``, so scripts written for it keep
    working; the command merges the two with ``merge_renamed``."""
    return click.option(
        old, f"{dest}_old_spelling", hidden=True, help=f"Old name of {new}.", **attrs
    )


def merge_renamed(new_value: Any, old_value: Any, old: str, new: str) -> Any:
    """The value given by either spelling; both at once is a usage error."""
    if old_value is not None and new_value is not None:
        raise click.UsageError(f"{old} is the old name of {new}: give one of them")
    return new_value if new_value is not None else old_value


def decode_limit_options(function: F) -> F:
    """``--max-bytes`` and its kin: raise the bounds on decoding one value (``DecodeLimits``)
    for the rare legitimate value past them; the defaults keep a hostile one harmless."""
    from cachectl.codec.limits import DecodeLimits

    defaults = DecodeLimits()
    size = click.IntRange(min=1)
    options = [
        ("--max-bytes", "max_bytes", size, "BYTES", "bytes of pickle"),
        ("--max-depth", "max_depth", click.IntRange(1, 1000), "LEVELS", "levels of nesting"),
        ("--max-elements", "max_elements", size, "COUNT", "elements"),
        ("--max-seconds", "max_seconds", click.FloatRange(0, min_open=True), "SECONDS", None),
        ("--max-output", "max_output", size, "CHARS", "characters of output"),
    ]
    for flag, name, kind, metavar, what in reversed(options):
        text = what or "seconds to decode (and again to show)"
        function = click.option(
            flag,
            name,
            type=kind,
            metavar=metavar,
            default=getattr(defaults, name),
            show_default=True,
            help=f"Decoding limit: {text} per value.",
        )(function)
    return function


def decode_limits_from(values: dict[str, Any]) -> DecodeLimits:
    """The ``DecodeLimits`` the ``decode_limit_options`` of a command were given."""
    from cachectl.codec.limits import DecodeLimits

    return DecodeLimits(**values).checked()


def _checked_once_id(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from cachectl.operations.once import id_problem

    problem = id_problem(value) if value is not None else None
    if problem is not None:
        raise click.BadParameter(problem, param_hint="--once-per")
    return value


def once_options(function: F) -> F:
    """``--once-per ID`` and ``--once-ttl``: a change a fleet runs, done once (cli/once.py)."""
    from cachectl.operations.once import DEFAULT_TTL, MAX_ID_LENGTH, MAX_TTL

    function = click.option(
        "--once-ttl",
        type=click.IntRange(1, MAX_TTL),
        default=DEFAULT_TTL,
        show_default=True,
        metavar="SECONDS",
        help=f"How long a --once-per claim lives (at most {MAX_TTL} s, 30 days).",
    )(function)
    return click.option(
        "--once-per",
        metavar="ID",
        envvar="CACHECTL_ONCE_PER",
        callback=_checked_once_id,
        help="Run a command that changes the cache once per ID across every host: the first "
        "run claims ID on the cache's server and does the work; every other run exits 0, "
        "changing nothing, and names the run that claimed it. A failed run gives the claim "
        f"back. ID: printable, at most {MAX_ID_LENGTH} characters. Env: CACHECTL_ONCE_PER.",
    )(function)
