"""batch: many cachectl commands in one process (a deploy script's invalidations)."""

from __future__ import annotations

import click

from cachectl.cli.group import Session, cli, pass_session
from cachectl.cli.options import dry_run_option, keep_going_option
from cachectl.errors import UsageError


def _read(source: str) -> str:
    try:
        with click.open_file(source, "rb") as stream:  # '-': standard input
            data: bytes = stream.read()
    except OSError as exc:
        raise UsageError(f"cannot read batch file {source}: {exc.strerror}") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"batch file {source} is not UTF-8 text (byte {exc.start})") from exc


@cli.command()
@click.argument("file", metavar="FILE")
@dry_run_option(
    "Run every line that has a dry run as one; lines that change nothing run as they are; "
    "a line that would write without a dry run (set, expire, persist, delete KEY...) says "
    "what it would do. Nothing is changed."
)
@keep_going_option
@pass_session
def batch(session: Session, file: str, dry_run: bool, keep_going: bool) -> None:
    """Run the cachectl commands in FILE ('-': standard input), one a line, in one process.

    Each line is a command without the leading 'cachectl', split into words as
    bash would split it: quotes and backslashes as in bash, and '#' starts a
    comment only at the start of a word (delete user#42 deletes user#42). Nothing
    is expanded (no $VARIABLES, no globbing), and what a shell would not read as
    words (an unquoted ; & | < > ( ), a $ or a backtick outside single quotes) is
    refused. Blank lines are skipped. Every line runs with
    the global options given before 'batch' (one configuration, one app load, one
    connection per cache), exactly as it would run on its own; a line carries no
    global options of its own (--app, --cache, --json, ...), and never asks: a
    line that would ask on a terminal behaves as without one (clear needs --yes).

    Every line is checked before the first runs: parsed, then run as far as it
    can go without the server (its options, the function it names and how its
    arguments bind, a view's endpoint, a fragment's arguments, the configuration).
    A line that fails its checks stops the batch with nothing done (exit 2, or
    the line's own status). Then the lines run in order, each one's
    output after a 'line N: COMMAND' header (with --json: one document, a result
    per line with its own document and exit code). The batch stops at the first
    failing line and names it; --keep-going runs the rest. Exit status: the first
    failing line's, 0 when all succeeded.

    \b
      cachectl --config cachectl.toml batch deploy.txt
      cachectl --app 'shop:create_app()' batch --dry-run deploy.txt
      cachectl --json batch --keep-going - < deploy.txt
    """
    from cachectl.cli.batch_runner import finish, run_batch  # loaded when a batch runs
    from cachectl.operations.batch import parse_batch

    lines = parse_batch(_read(file), "standard input" if file == "-" else file)
    if not lines:
        session.output.warn(f"no command in {'standard input' if file == '-' else file}")
    group_ctx = click.get_current_context().parent
    assert group_ctx is not None
    report = run_batch(
        group_ctx, lines, dry_run=dry_run, keep_going=keep_going, stdin_taken=file == "-"
    )
    finish(session, report)
