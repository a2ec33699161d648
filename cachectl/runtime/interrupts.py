"""The signals that end a run, handled one way for every command: SIGINT (Ctrl-C), SIGTERM
(what ``timeout``, systemd and Kubernetes send) and SIGHUP (a closed terminal or SSH
session). Python's default kills the process on the last two, so a clear stopped by a
deploy's ``timeout`` would leave no audit line and no count of what it removed.

- Outside a long operation a signal stops the command at once: ``Stop`` is raised where
  the program is (connecting, waiting for a reply). It is a ``KeyboardInterrupt``, so no
  ``except Exception`` on the way (a client library's) can swallow it. The command fails
  as interrupted, its audit line is written, and the process exits 128 + the signal's
  number (130, 143, 129), as a shell reports a process killed by that signal.
- Inside a long operation (``stop_at_safe_points``: a clear, a pattern delete, a purge)
  the first signal only asks it to stop: it stops after the step in flight, so the count
  it reports is exact and the server is left clean. A second signal stops it at once
  (the count is then a lower bound).
- Once a run is stopping, further signals are noted and ignored, and while the audit
  line is written (``shielded``) none interrupts it: the report and the line come whole.

A signal whose disposition is "ignore" when cachectl starts (``nohup`` ignores SIGHUP, a
shell's background job SIGINT) stays ignored.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from cachectl.errors import Interrupted

#: The signals that end a run, and how its error line names each.
STOP_SIGNALS: dict[int, str] = {
    signal.SIGINT: "interrupted",
    signal.SIGTERM: "stopped by SIGTERM",
    signal.SIGHUP: "stopped by SIGHUP",
}


class Stop(KeyboardInterrupt):
    """A signal stopped the run where it was (not at a safe point of a long operation)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _RunState:
    """What the handler knows about the run in progress (one per process: signals are
    delivered to the process, and handled in its main thread)."""

    def __init__(self) -> None:
        self.depth = 0
        self.previous: dict[int, Any] = {}
        #: The first signal received in this run; the run's exit status follows it.
        self.received: int | None = None
        #: A ``Stop`` has been raised: the run is unwinding, later signals are ignored.
        self.raised = False
        #: The ``request_stop`` of each long operation in progress, innermost last.
        self.stoppers: list[Callable[[], None]] = []
        self.shielded = 0


_state = _RunState()
#: Whether the run's end is the process's end (``own_the_process``).
_owns_process = False


def exit_status(signum: int) -> int:
    """The exit status of a run a signal stopped: 128 + its number, as a shell reports it."""
    return 128 + signum


def _on_signal(signum: int, frame: object) -> None:
    first = _state.received is None
    if first:
        _state.received = signum
    if _state.shielded or _state.raised:
        return
    if _state.stoppers and first:
        _state.stoppers[-1]()  # stop after the step in flight
        return
    if first or _state.stoppers:  # outside a long operation, or a second signal inside
        _state.raised = True
        raise Stop(_state.received or signum)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def handled() -> Iterator[None]:
    """Inside, SIGINT, SIGTERM and SIGHUP stop the run as this module says; the handlers
    that were there come back after. Re-entrant: only the outermost use installs them
    (and starts a fresh run's state); a thread other than the main one cannot install
    handlers and changes nothing."""
    if not _in_main_thread():
        yield
        return
    outermost = _state.depth == 0
    if outermost:
        fresh = _RunState()
        _state.__dict__.update(fresh.__dict__)
        for signum in STOP_SIGNALS:
            current = signal.getsignal(signum)
            if current is signal.SIG_IGN or current is None:
                continue  # ignored on purpose (nohup), or set outside Python: leave it
            _state.previous[signum] = current
            signal.signal(signum, _on_signal)
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
        if outermost:
            ending = _owns_process and _state.received is not None
            for signum, previous in _state.previous.items():
                signal.signal(signum, signal.SIG_IGN if ending else previous)
            _state.previous.clear()


@contextmanager
def stop_at_safe_points(request_stop: Callable[[], None]) -> Iterator[None]:
    """A long operation: the first signal calls ``request_stop`` (the operation then stops
    at its next safe point by raising ``KeyboardInterrupt``), a second one raises ``Stop``
    at once. An operation started after a signal was received is asked to stop at once."""
    with handled():
        if _state.received is not None:
            request_stop()
        _state.stoppers.append(request_stop)
        try:
            yield
        finally:
            _state.stoppers.remove(request_stop)


@contextmanager
def shielded() -> Iterator[None]:
    """No signal interrupts what runs inside (the audit line being written): one that
    arrives is noted, and the run ends with the status it was going to end with, or
    that of the signal if the run was already stopping."""
    _state.shielded += 1
    try:
        yield
    finally:
        _state.shielded -= 1


def own_the_process() -> None:
    """Called by the console script, whose process ends when its run ends: once a signal
    has stopped the run, the handlers are not given back at the end of ``handled`` but
    set to ignore, so that another stop signal (the second TERM a supervisor sends, a
    moment later) arriving while the process exits cannot kill it by the default action
    after its report; it ends with the first signal's status. A program that calls the
    group in-process (tests, ``flask cachectl``) gets its handlers back as they were."""
    global _owns_process
    _owns_process = True


def stopping_signal(cause: BaseException | None = None) -> int:
    """The signal that stopped the run: the one ``cause`` (a ``Stop``) names, else the
    first received; SIGINT when none was (Python's own Ctrl-C, end of input at a prompt)."""
    if isinstance(cause, Stop):
        return cause.signum
    return _state.received or signal.SIGINT


def stopped_at_once(cause: BaseException) -> bool:
    """Whether ``cause`` stopped an operation where it was rather than at a safe point:
    then what it reports having done is a lower bound."""
    return isinstance(cause, Stop)


def as_error(
    cause: BaseException | None = None, detail: str = "", done: dict[str, object] | None = None
) -> Interrupted:
    """The failure a stop is reported as: ``interrupted`` (SIGINT) or ``stopped by
    SIGTERM``/``SIGHUP``, then ``detail``; exit 128 + the signal's number."""
    signum = stopping_signal(cause)
    reason = STOP_SIGNALS.get(signum, f"stopped by {signal.Signals(signum).name}")
    return Interrupted(
        f"{reason}: {detail}" if detail else reason,
        done=done,
        exit_code=exit_status(signum),
    )
