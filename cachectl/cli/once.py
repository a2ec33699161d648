"""``--once-per ID`` around a command: the claim first, the work only for the run that got
it, the claim given back when that run fails (``cachectl.operations.once`` claims and
releases; the options are declared in ``cli/options.py``).

Which runs claim: the command the operator ran (a batch as a whole, not each of its lines)
when it changes the cache as the audit log counts it (``runtime.audit.changes_cache``:
``clear``, ``batch``, ``invalidate``, ``plan --apply``, ...). A dry run never claims. A
command that changes nothing refuses ``--once-per`` given on its command line (exit 2: the
operator asked for something that cannot apply), and ignores ``CACHECTL_ONCE_PER`` from
the environment, which a deploy hook exports for every command it runs, reads included.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from cachectl.errors import UsageError

if TYPE_CHECKING:
    from cachectl.cli.session import Session
    from cachectl.operations.once import OnceClaim


@dataclass
class OnceRequest:
    """What ``--once-per`` and ``--once-ttl`` asked for."""

    once_id: str
    ttl: int
    #: Given on the command line (not by CACHECTL_ONCE_PER): a read refuses it.
    explicit: bool
    #: Set once the outermost command took it (a batch's lines run inside it).
    taken: bool = False


def once_request(ctx: click.Context, once_id: str | None, ttl: int) -> OnceRequest | None:
    if once_id is None:
        return None
    source = ctx.get_parameter_source("once_per")
    return OnceRequest(once_id, ttl, explicit=source == click.core.ParameterSource.COMMANDLINE)


def guarded(ctx: click.Context, session: Session, call: Callable[[], Any]) -> Any:
    """``call`` (the command), under the invocation's ``--once-per`` if it has one."""
    request = session.once
    if request is None or request.taken:
        return call()
    request.taken = True
    from cachectl.runtime.changing import changes_cache

    name, params = ctx.info_name or "", ctx.params
    if not changes_cache(name, {**params, "dry_run": False}):
        if request.explicit:
            raise UsageError(
                f"--once-per guards a command that changes the cache; {name} as given "
                "changes nothing: leave --once-per out"
            )
        return call()
    if params.get("dry_run"):
        return call()  # a dry run never claims
    from cachectl.cli.every_cache import is_every_cache

    if is_every_cache(session):
        raise UsageError(
            "--once-per claims on the server of one cache; with --cache all there is no "
            "one server: name the cache the claim lives on (--cache NAME), once per cache"
        )
    from cachectl.operations import once

    backend = session.backend()
    held: OnceClaim | None = None
    succeeded = False
    try:
        held = once.claim(backend, request.once_id, request.ttl, session.audit.masked_argv(session))
        session.audit.once = held.document()
        if not held.claimed:
            succeeded = True
            _report_skipped(session, name, held)
            return None
        result = call()
        succeeded = not (isinstance(result, int) and result != 0)
        if succeeded:
            _keep(session, backend, held)
        return result
    except click.exceptions.Exit as exc:
        succeeded = exc.exit_code == 0
        if succeeded and held is not None:
            _keep(session, backend, held)
        raise
    finally:
        if not succeeded and held is not None and held.claimed:
            _give_back(session, backend, held)


def _keep(session: Session, backend: Any, held: OnceClaim) -> None:
    """The marker after the work: a command that emptied the whole server (``clear
    --flush-db``, ``--flush-all``) removed it too, so it is written again; a warning if
    it cannot be (the command's own result stands)."""
    from cachectl.operations import once

    try:
        if once.keep(backend, held) is False:
            session.output.warn(
                f"--once-per {held.once_id!r}: the command removed its own claim and another "
                "run claimed the ID before it was written again"
            )
    except Exception as exc:
        session.output.warn(f"--once-per {held.once_id!r}: the claim could not be checked: {exc}")


def _report_skipped(session: Session, name: str, held: OnceClaim) -> None:
    output = session.output
    if output.as_json:
        output.document({"command": name, "done": False, "once_per": held.document()})
    else:
        output.notice(held.skipped_line())


def _give_back(session: Session, backend: Any, held: OnceClaim) -> None:
    """Release a failed run's claim, whatever stopped it; a release that fails is a
    warning (the claim lapses after its TTL), never the run's error."""
    from cachectl.operations import once
    from cachectl.runtime import interrupts

    with interrupts.shielded():
        try:
            once.release(backend, held)
        except Exception as exc:  # the server that failed the command may be gone
            session.output.warn(
                f"--once-per {held.once_id!r}: the claim could not be given back ({exc}); "
                f"it lapses after {held.ttl} s"
            )
        session.audit.once = held.document()
