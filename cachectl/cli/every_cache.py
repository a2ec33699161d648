"""The other caches of an invocation: ``--cache all`` (a command on each cache in turn)
and the caches nested under the chosen one (``--include-nested``).

An app may hold several ``Cache`` objects (named caches in the config file, several
entries in ``app.extensions["cache"]`` with ``--app``). Both features start from the
same list of them, resolved in the invocation's Session (``Session.for_cache``: one
app load, one connection per cache).

``--cache all`` rules, decided here and documented in the README:

- only ``clear``, ``stats``, ``keys``, ``config``, ``delete --pattern`` and batch lines
  of those take it; any other command exits 2 naming them;
- every cache's settings are resolved (and, but for ``config``, its backend built)
  before the first cache runs: a configuration error in any of them exits 2 with
  nothing done; so does a destructive command without ``--yes`` and no terminal,
  or a "no" to its one question, which lists every target;
- a cache in the app's own process (SimpleCache, NullCache), which no outside tool
  reaches, is skipped with a warning (``"skipped"`` with its reason in JSON);
- two caches in the same keyspace (``backends/targets.py``: conclusively the same
  server and database) with the same prefix run once, the second reported as
  skipped, so nothing is cleared (or counted) twice;
- a failure while one cache runs (its server unreachable, a rule of its backend) is
  reported under that cache and the others still run; the exit status is the first
  failing cache's, 0 when all succeeded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cachectl.errors import EXIT_STOPPED, CachectlError, UsageError
from cachectl.runtime.wording import counted

if TYPE_CHECKING:
    from cachectl.backends.base import CacheBackend
    from cachectl.cli.session import Session
    from cachectl.operations.nesting import Sibling

#: The ``--cache`` value that means every cache of the app.
ALL = "all"
#: The commands ``--cache all`` runs, as the refusal names them.
EVERY_CACHE_COMMANDS = ("clear", "stats", "keys", "config", "delete --pattern", "plan", "batch")
#: ``plan`` runs each of its actions on the cache it belongs to (``cli/plan.py``).
_TAKES_ALL = frozenset({"clear", "stats", "keys", "config", "delete", "plan", "batch"})


def is_every_cache(session: Session) -> bool:
    return session.request.cache_name == ALL


def refusal(command: str | None, params: dict[str, Any] | None = None) -> str | None:
    """Why ``command`` (with its ``params``, once parsed; None before) cannot run with
    ``--cache all``, or None when it can."""
    takes = ", ".join(EVERY_CACHE_COMMANDS)
    if command is None or command in ("--help",):
        return None
    if command not in _TAKES_ALL:
        return (
            f"--cache all applies to {takes} (a batch of those commands); "
            f"{command} takes one cache: name it with --cache NAME"
        )
    if params is None:  # the group's check: the command's options are not parsed yet
        return None
    if command == "delete" and params.get("pattern") is None:
        return "--cache all deletes by --pattern only; listed keys belong to one cache"
    if command == "config" and params.get("target") is not None:
        return "config --write already writes every cache of the app: leave --cache all out"
    return None


def check_command(command: str | None) -> None:
    """The group's check, before any command runs (exit 2)."""
    reason = refusal(command)
    if reason is not None:
        raise UsageError(reason)


def known_caches(session: Session) -> list[tuple[str, str]]:
    """Every cache of the invocation as (what --cache takes, the name shown): the app's
    caches with --app, else the config file's named caches; [] without either."""
    loaded = session.loaded_app()
    if loaded is not None:
        return [(str(cache.index), cache.label) for cache in loaded.caches]
    config_file = session.request.sources()[1]
    if config_file is None:
        return []
    from cachectl.config.sources import read_config_file

    path = Path(config_file)
    if not path.is_absolute():
        path = session.request.cwd / path
    return [(name, name) for name in read_config_file(path).caches]


def siblings_of(session: Session, include_nested: bool) -> list[Sibling]:
    """The app's other caches nested under the chosen one in its keyspace, whose keys
    its clear, keys, stats and delete --pattern leave out ([] with ``include_nested``)."""
    backend = session.backend()
    if include_nested or not backend.can_list_keys:
        return []
    caches = known_caches(session)
    if len(caches) < 2:
        return []
    from cachectl.operations.nesting import find_siblings

    own = session.config.cache_name
    others: list[tuple[str, CacheBackend]] = []
    for selector, label in caches:
        if label == own:
            continue
        other = session.for_cache(selector)
        try:
            if other.settings.location is None:  # in the app's process: never on a server
                continue
            others.append((label, other.backend(connect=False)))
        except CachectlError as exc:
            session.output.warn(
                f"cache {label}: {exc.message}; its keys are not told apart from this cache's"
            )
    return find_siblings(backend, others)


def _same_target(a: CacheBackend, b: CacheBackend) -> bool:
    """Conclusively one keyspace and one prefix (so one cache, run once)."""
    from cachectl.backends.targets import SAME, compare, location_of

    if a.key_prefix != b.key_prefix:
        return False
    here, there = location_of(a), location_of(b)
    if here is None or there is None:
        return type(a) is type(b) and a.describe() == b.describe()
    return compare(here, there).outcome == SAME


def _invoke(ctx: click.Context, sub: Session, params: dict[str, Any]) -> int:
    """Run the command of ``ctx`` on one cache; its exit status, failures reported
    under it as the group reports them."""
    from cachectl.cli.failures import exit_status_of

    command = ctx.command
    callback = command.callback
    assert callback is not None
    sub_ctx = click.Context(command, parent=ctx.parent, info_name=ctx.info_name, obj=sub)

    def run() -> None:
        with sub_ctx:
            sub_ctx.invoke(callback, **params)

    return exit_status_of(run, sub_ctx, sub.output)


def run(session: Session, *, destructive: bool = False) -> None:
    """Run the current command on every cache in turn (see the module's rules)."""
    from cachectl.cli.line_output import LineOutput

    ctx = click.get_current_context()
    reason = refusal(ctx.command.name, ctx.params)
    if reason is not None:
        raise UsageError(reason)
    caches = known_caches(session)
    if not caches:
        raise UsageError(
            "--cache all: no config file or app names caches here (named caches come from "
            "--config FILE, a cachectl.toml, or --app)"
        )
    output = session.output
    subs = [(label, session.for_cache(selector)) for selector, label in caches]
    for _, sub in subs:
        sub.config.settings()  # every cache resolves before any runs
    skipped: dict[str, str] = {}
    unreachable: dict[str, str] = {}
    backends: dict[str, CacheBackend] = {}
    if ctx.command.name != "config":
        for label, sub in subs:
            if sub.settings.location is None:  # in the app's process: no one else reaches it
                try:
                    sub.backend(connect=False)
                except CachectlError as exc:
                    unreachable[label] = exc.message
                    continue
            backends[label] = sub.backend(connect=False)
            for earlier in backends:
                if (
                    earlier != label
                    and earlier not in skipped
                    and _same_target(backends[earlier], backends[label])
                ):
                    skipped[label] = earlier
                    break
    params = dict(ctx.params)
    if destructive and not params.get("dry_run") and not params.get("yes"):
        if not output.interactive:
            raise UsageError("no terminal to confirm on: pass --yes to go ahead without asking")
        for label, _ in subs:
            if label in unreachable:
                output.notice(f"  cache {label}: out of reach (in the app's process), skipped")
            elif label in skipped:
                output.notice(f"  cache {label}: the same as cache {skipped[label]}, run once")
            else:
                plan = backends[label].clear_plan()
                pattern = params.get("pattern")
                matching = f" matching {pattern!r}" if pattern is not None else ""
                output.notice(f"  cache {label}: {plan.scope}{matching} in {plan.target}")
        runs = len(subs) - len(skipped) - len(unreachable)
        if not click.confirm(f"Remove these keys from {counted(runs, 'cache')}?", err=True):
            output.notice("nothing removed")
            ctx.exit(1)
        params["yes"] = True
    results: list[dict[str, Any]] = []
    #: What each cache's run reported doing, for the audit log's one line of the run.
    done_per_cache: list[dict[str, Any]] = []
    status = 0
    for label, sub in subs:
        if label in unreachable:
            output.warn(f"cache {label} skipped: {unreachable[label]}")
            results.append({"cache": label, "skipped": True, "reason": unreachable[label]})
            continue
        if label in skipped:
            said = f"the same server, database and prefix as cache {skipped[label]}: not run again"
            output.result(f"cache {label}: {said}")
            results.append({"cache": label, "skipped": True, "same_as": skipped[label]})
            continue
        output.result(f"== cache {label} ==")
        captured = LineOutput(output.as_json, output.quiet)
        sub.output = captured
        code = _invoke(ctx, sub, params)
        documents = captured.documents
        sub.output = output
        results.append(
            {"cache": label, "exit_code": code, "document": documents[-1] if documents else None}
        )
        done_per_cache.append({"cache": label, "exit_code": code, "done": sub.audit.done})
        status = status or code
        if code in EXIT_STOPPED:
            break
    session.audit.record_done({"ok": status == 0, "exit_code": status, "caches": done_per_cache})
    if output.as_json:
        output.document({"ok": status == 0, "exit_code": status, "caches": results})
    if status:
        ctx.exit(status)
