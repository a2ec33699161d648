"""How delete-memoized and show-memoized read one call of a memoized function: FUNCTION,
its ARGs and the options that name the call (``call_options``), what a line of ``--each``
may hold (``line_options``, the same Click options), and the arguments they make
(``call_arguments``). Apart from the commands, so that ``cli.memoized`` and
``cli.memoized_each`` share them without importing each other."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from cachectl.cli.options import hash_method_option
from cachectl.runtime.importing import lazy_module

if TYPE_CHECKING:
    from cachectl.app import functions
else:
    functions = lazy_module("cachectl.app.functions")

F = TypeVar("F", bound=Callable[..., Any])


class ReprPositionsCommand(click.Command):
    """Remembers where each ``--repr`` stood among the positional ARGs, which Click
    alone does not keep: ``f 1 --repr "Locale('en')" 3`` is ``f(1, Locale('en'), 3)``."""

    #: Positional words before the first ARG (FUNCTION; none in a line of ``--each``).
    leading_positionals = 1

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
                positions.append(max(positionals - self.leading_positionals, 0))
            if token.startswith("-") and len(token) > 1:
                index += 2 if name in takes_value and "=" not in token else 1
                continue
            positionals += 1
            index += 1
        ctx.meta["repr_positions"] = positions
        return super().parse_args(ctx, args)


def call_options(function: F) -> F:
    """FUNCTION, its ARGs and what names one call of it: shared by delete-memoized and
    show-memoized, which read a call the same way."""
    for option in reversed(_CALL_OPTIONS):
        function = option(function)
    return function


def line_options(function: F) -> F:
    """What a line of ``--each`` may hold: the options that name one call (its ARGs,
    --repr, --kw, --instance), read by the same Click options as on the command line."""
    for option in reversed(_LINE_OPTIONS):
        function = option(function)
    return function


_LINE_OPTIONS: list[Callable[[Any], Any]] = [
    click.argument("args", nargs=-1),
    click.option(
        "--repr",
        "reprs",
        multiple=True,
        metavar="TEXT",
        help="An argument given by its repr() text, verbatim, for an object that is not a "
        "literal (\"Locale('en')\"); it takes its place among the ARGs. Repeatable.",
    ),
    click.option(
        "--kw",
        "keywords",
        multiple=True,
        metavar="NAME=VALUE",
        help="A keyword argument of the call. Repeatable.",
    ),
    click.option(
        "--instance",
        metavar="ID",
        help="For a method: the instance's repr() or __caching_id__(), verbatim.",
    ),
]
_CALL_OPTIONS: list[Callable[[Any], Any]] = [
    click.argument("function"),
    *_LINE_OPTIONS,
    click.option(
        "--signature",
        metavar="SIGNATURE",
        help="The function's parameters, when it cannot be imported here: "
        "\"(user_id, role='member', *args, **kw)\".",
    ),
    click.option(
        "--make-name",
        metavar="NAME",
        help="What the decorator's make_name returns for the function (without --app).",
    ),
    click.option(
        "--ignore",
        multiple=True,
        metavar="ARG",
        help="A name in the decorator's args_to_ignore (without --app). Repeatable.",
    ),
    hash_method_option("The decorator's hash_method. Default: CACHE_HASH_METHOD."),
    click.option(
        "--source-check/--no-source-check",
        default=None,
        help="Whether the decorator uses source_check. Default: CACHE_SOURCE_CHECK.",
    ),
]


def call_arguments(
    args: tuple[str, ...], reprs: tuple[str, ...], positions: list[int], keywords: tuple[str, ...]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments of one call, from its ARGs, its --repr values and where each stood
    among the ARGs (``ReprPositionsCommand``), and its --kw values: the command line's,
    and each line's of ``--each``."""
    if len(positions) != len(reprs):  # zip(strict=True), which Python 3.9 lacks
        raise ValueError(f"{len(reprs)} --repr values but {len(positions)} positions found")
    call_args = functions.place_repr_arguments(
        [functions.parse_argument(arg) for arg in args], list(zip(positions, reprs))
    )
    return call_args, dict(functions.parse_keyword(text) for text in keywords)


def each_options(function: F) -> F:
    """--each FILE and --each-format: many calls of the function, one a line."""
    function = click.option(
        "--each-format",
        type=click.Choice(["shell", "json"]),
        help="How --each lines are written: shell (the default) is the ARGs and "
        "--kw/--repr/--instance of one call as on the command line, split as bash "
        'splits words; json is a JSON array (positional) or object (keyword; "*" holds '
        'positional ones beside them: {"*": [3], "currency": "EUR"}).',
    )(function)
    return click.option(
        "--each",
        type=click.File("rb"),
        metavar="FILE",
        help="The calls, one a line, from FILE ('-': standard input); blank lines and "
        "lines starting with # are skipped. Every line is read before anything changes.",
    )(function)
