"""Remove (or count) every key matching a pattern, at any key count, without blocking Redis.

``KEYS`` blocks the server while it walks the whole keyspace, and collecting
the names first costs memory in proportion to the key count. A sweep walks the
keyspace with ``SCAN`` in steps and unlinks each step's matches before taking
the next, so the server is never held for more than a step and the client never
holds more than a step's names.

Two ways to run a step, chosen automatically:

- a short Lua script, inside the server (redis_scripts): SCAN and UNLINK of the
  matches, again and again for about a millisecond (the server's clock decides;
  where it stands still inside a script, as on Valkey's, a cap on the SCAN steps
  sized from how long the calls before took), then the cursor goes back. One
  round trip per step and no key names on the wire; the time budget rather than
  a fixed key count makes each step as long as other clients can wait and no
  longer. A removal runs two lanes, one per half of the hash table, so that one
  lane's next step is always queued at the server while the other's reply
  travels: the server goes from step to step without waiting, about as fast as
  one script doing the whole job while blocking everyone. The fastest.
- client-side: SCAN, then UNLINK of the matches, pipelined so that each round
  trip carries the next SCAN together with the previous step's UNLINK. For
  servers that refuse scripts (managed services often do), or a command the
  script needs, and for Redis Cluster, where each primary is swept on its own,
  concurrently, with one UNLINK per key so no command spans two hash slots.

Keys matching an ``--exclude`` glob stay (``exclusions``): each way of running a
step tells them apart from the same parsed globs with the same algorithm, so
what stays does not depend on whether the server runs scripts.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from cachectl.backends.base import Tally
from cachectl.backends.redis_clients import errors_named, is_blocking_pool, is_cluster, is_error
from cachectl.backends.redis_scripts import (
    EXCLUDE_STEP_SCRIPT,
    SCRIPT_SCAN_COUNT,
    STEP_BUDGET_US,
    STEP_SCRIPT,
    WorkCap,
    server_time_us,
)

if TYPE_CHECKING:
    from cachectl.backends.exclusions import Exclusions

#: Shown with --debug: how the sweep had to adapt to what the server allows.
log = logging.getLogger("cachectl")

#: Keys a SCAN step looks at. Larger steps mean fewer round trips but longer
#: pauses for other clients; a thousand keeps a step around a millisecond.
SCAN_COUNT = 1000


class ScriptsRefused(Exception):
    """The server does not run our script (scripting disabled, ACL, old Redis), or
    the script may not run a command it needs. ``left`` holds what the sweep has
    still to walk, client-side: each a cursor to start from and whether to stop at
    the table's second half (where another lane started). A refused step began at
    its cursor (a script stops at its first refused command) and SCAN returns
    every key still there when a walk goes on from a cursor it handed out."""

    def __init__(self, message: str, left: list[tuple[Any, bool]], walked: int = 0) -> None:
        super().__init__(message)
        self.left = left
        #: Keys a census's script calls walked before the refusal (counted already).
        self.walked = walked


class _Lane:
    """A walk over half of the keyspace (or all of it), on one connection, with one call
    of the Lua step in flight at a time."""

    def __init__(self, cursor: Any, half: bool) -> None:
        self.cursor = cursor
        #: Whether this lane stops where the table's second half starts.
        self.half = half
        self.connection: Any = None
        #: No reply of this lane has come back yet: any refusal means no scripts.
        self.first = True
        #: What the TIME behind its last call read (``WorkCap``).
        self.ended_us: int | None = None

    @property
    def finished(self) -> bool:
        cursor = int(self.cursor)
        return cursor == 0 or (self.half and cursor % 2 == 1)


class _Steps:
    """Calls of the Lua step as bytes ready to send: only the cursor and the work cap
    change between calls, so the rest is encoded once, and each call is one write on a
    connection of the client's pool and one read, without the per-command work of
    redis-py's ``execute_command`` (argument encoding, retry and observability
    wrappers)."""

    def __init__(self, client: Any, script: str, args: list[Any]) -> None:
        import hashlib  # here, not at import: `get` and the other light commands need none

        encoder = client.connection_pool.get_encoder()
        self._sha = self._bulk(hashlib.sha1(script.encode()).hexdigest().encode())
        self._text = self._bulk(script.encode())
        #: EVALSHA, the script, the number of keys (0), the cursor, ARGV[2] to [6], the
        #: work cap, then the exclusions' ARGV.
        self._head = b"*%d\r\n" % (4 + len(args) + 2)
        self._rests = {
            half: b"".join(self._bulk(encoder.encode(arg)) for arg in [*args[:4], str(int(half))])
            for half in (False, True)
        }
        self._tail = b"".join(self._bulk(encoder.encode(arg)) for arg in args[4:])

    @staticmethod
    def _bulk(value: bytes) -> bytes:
        return b"$%d\r\n%s\r\n" % (len(value), value)

    def send(self, lane: _Lane, cap: WorkCap, full: bool = False) -> None:
        """Send the lane's next step, bounded by ``cap``, and a TIME right behind it: as
        EVAL with the script's text when ``full`` (which also caches the script), else
        as EVALSHA."""
        cursor = lane.cursor if isinstance(lane.cursor, bytes) else str(lane.cursor).encode()
        command = b"EVAL" if full else b"EVALSHA"
        packed = (
            self._head
            + self._bulk(command)
            + (self._text if full else self._sha)
            + b"$1\r\n0\r\n"
            + self._bulk(cursor)
            + self._rests[lane.half]
            + self._bulk(b"%d" % cap.scans)
            + self._tail
            + b"*1\r\n$4\r\nTIME\r\n"
        )
        lane.connection.send_packed_command([packed], check_health=False)

    @staticmethod
    def _read_time(lane: _Lane) -> None:
        try:
            lane.ended_us = server_time_us(lane.connection.read_response())
        except errors_named("ResponseError"):  # TIME refused: the script is too
            lane.ended_us = None

    def _reply(self, lane: _Lane) -> Any:
        """The reply of the call in flight, then the TIME behind it, read whatever the
        reply: the connection stays in step, to go back to the pool."""
        try:
            reply = lane.connection.read_response()
        except errors_named("ResponseError"):
            self._read_time(lane)
            raise
        self._read_time(lane)
        return reply

    def receive(self, lane: _Lane, cap: WorkCap) -> list[Any]:
        """The reply of the lane's step in flight; a script cache emptied meanwhile
        (SCRIPT FLUSH, a failover) is met by sending the step again with the text."""
        try:
            reply = self._reply(lane)
        except errors_named("NoScriptError"):
            self.send(lane, cap, full=True)
            reply = self._reply(lane)
        lane.first = False
        lane.cursor = reply[0]
        return list(reply)


def _connection(pool: Any) -> Any:
    try:
        return pool.get_connection()
    except TypeError:  # redis-py before 5.3 names the command it is for
        return pool.get_connection("EVALSHA")


def _second_connection(pool: Any) -> Any:
    """Another connection for the second lane, or None where the pool has no more
    to give at once (a pool of one): the lanes then take turns on one."""
    if is_blocking_pool(pool):  # would wait for the first one
        return None
    try:
        return _connection(pool)
    except errors_named("ConnectionError"):
        return None


def _sweep_with_script(
    client: Any, match: str, dry_run: bool, tally: Tally, exclusions: Exclusions | None, cut: int
) -> None:
    """A removal walks the keyspace in two lanes, each on its own connection: the first
    walks the hash table's first half, the second the other half, and a call of one
    lane is always queued at the server while the other's reply travels back and its
    next call is sent. The server goes from one step to the next without waiting for
    a round trip, which a single lane costs it at every step (a round trip takes a
    tenth to a fifth of a one-millisecond step); other clients still wait at most
    about two steps (the one running and the one queued). Counting (a dry run, kept keys) takes one
    lane: the lanes may overlap a little, see below.

    The first call runs alone: a refusal there (scripting off, a command the
    script needs not allowed) means a client-side sweep of the whole keyspace."""
    args: list[Any] = [match, SCRIPT_SCAN_COUNT, "1" if dry_run else "0", STEP_BUDGET_US]
    if exclusions is not None:
        args += [cut, *exclusions.script_args()]
    steps = _Steps(client, EXCLUDE_STEP_SCRIPT if exclusions is not None else STEP_SCRIPT, args)
    cap = WorkCap(STEP_BUDGET_US)
    pool = client.connection_pool
    # The SCAN that crosses into the second half goes on past it, so the first lane
    # may see a few keys the second sees too: harmless where only removals are
    # counted (UNLINK counts what it removed), not where keys are merely counted.
    lanes = [_Lane(0, True), _Lane(1, False)]
    if dry_run or exclusions is not None:
        lanes = [_Lane(0, False)]
    in_flight: deque[_Lane] = deque()
    held: list[Any] = []
    clean = False
    try:
        lanes[0].connection = _connection(pool)
        held.append(lanes[0].connection)
        waiting = lanes[1:]  # started once the first reply shows that scripts run
        if waiting:
            second = _second_connection(pool)
            if second is not None:
                held.append(second)
            waiting[0].connection = second or lanes[0].connection
        steps.send(lanes[0], cap, full=True)
        in_flight.append(lanes[0])
        refused: BaseException | None = None
        while in_flight:
            lane = in_flight.popleft()
            try:
                reply = steps.receive(lane, cap)
            except errors_named("ResponseError") as exc:
                if not refuses_scripts(exc, lane.first):
                    raise
                refused = refused or exc
                continue
            if exclusions is not None:
                exclusions.count_kept(reply[5:])
            going = refused is None and not tally.stop_requested
            if cap.clock_stands_still is None and int(reply[2]) > 1 and not int(reply[3]):
                log.debug("the server's clock stands still in a script: steps bounded by work")
            cap.observe(int(reply[2]), int(reply[3]), int(reply[4]), lane.ended_us)
            if going and not lane.finished:
                steps.send(lane, cap)
                in_flight.append(lane)
            busy = {id(other.connection) for other in in_flight}
            if going and waiting and id(waiting[0].connection) not in busy:
                steps.send(waiting[0], cap)
                in_flight.append(waiting.pop(0))
            # Counted without stopping: a Ctrl-C stops the sweep once the replies
            # in flight are in, below, so the count it reports is exact.
            tally.add(reply[1], stop=False)
        clean = True
        if refused is not None:
            left = [(lane.cursor, lane.half) for lane in lanes if not lane.finished]
            if lanes[0].first:  # the very first step: nothing done, the whole keyspace
                left = [(0, False)]
            raise ScriptsRefused(str(refused), left) from refused
        if tally.stop_requested:
            raise KeyboardInterrupt
    finally:
        for connection in held:
            if not clean:  # a reply may still be on its way: never hand that back
                connection.disconnect()
            pool.release(connection)


#: What a server answers a script call when it may not run one, or not a command the
#: script needs: a command renamed away (``rename-command EVALSHA ""``) or unknown (an old
#: Redis), an ACL, scripting disabled (managed services), a script cache it cannot fill.
_REFUSALS = ("unknown command", "noperm", "no permissions", "noscript", "not allowed", "disabled")


def refuses_scripts(exc: BaseException, first: bool) -> bool:
    """Whether the server's error ``exc`` to a call of a Lua step (sweep or census) means
    the work must go on client-side, from where the script left it: any error to the
    first call, which meets every refusal (scripting off, TIME or SCAN not allowed, an
    old server's rules); to a later one, a refusal of a command (EVALSHA renamed while
    EVAL ran the first step, UNLINK not allowed once the first steps removed nothing).
    The one place that decides, for every scripted path."""
    if not is_error(exc, "ResponseError"):
        return False
    return first or any(word in str(exc).lower() for word in _REFUSALS)


def is_refused_permission(reply: Any) -> bool:
    """A reply saying the user may not run the command (an ACL, a managed service)."""
    return is_error(reply, "ResponseError") and (
        is_error(reply, "NoPermissionError")
        or "NOPERM" in str(reply)
        or "no permissions" in str(reply)
    )


def _sweep_pipelined(
    client: Any,
    match: str,
    dry_run: bool,
    tally: Tally,
    per_key: bool,
    exclusions: Exclusions | None,
    cut: int,
    cursor: Any = 0,
    half: bool = False,
) -> None:
    """SCAN from ``cursor`` (0: the whole keyspace) and UNLINK from the client; with
    ``half``, stop where the table's second half starts (at an odd cursor)."""
    # cursor is None once SCAN has come full circle (or reached the second half)
    pending: list[Any] = []  # the previous step's matches, unlinked with the next SCAN
    remove = "unlink"  # DEL once the user turns out not to be allowed UNLINK
    while cursor is not None or pending:
        pipe = client.pipeline(transaction=False)
        if cursor is not None:
            pipe.scan(cursor, match=match, count=SCAN_COUNT)
        if pending and not dry_run:
            if per_key:  # Redis Cluster: a multi-key command must stay in one slot
                for name in pending:
                    getattr(pipe, remove)(name)
            else:
                getattr(pipe, remove)(*pending)
        replies = pipe.execute(raise_on_error=False) if len(pipe) else []
        if cursor is not None:
            step = replies.pop(0)
            if isinstance(step, Exception):
                raise step
            next_cursor, found = step
        if pending and not dry_run and any(is_refused_permission(r) for r in replies):
            remove = "delete"  # a restricted user: DEL does what UNLINK would, blocking
            log.debug("UNLINK is not allowed for this user: removing with DEL instead")
            replies = (
                [client.delete(name) for name in pending] if per_key else [client.delete(*pending)]
            )
        errors = [reply for reply in replies if isinstance(reply, Exception)]
        if errors:
            raise errors[0]
        if pending:
            tally.add(len(pending) if dry_run else sum(replies))
        if cursor is not None and exclusions is not None:
            found = exclusions.split(found, cut)
        pending = found if cursor is not None else []
        going = cursor is not None and int(next_cursor) != 0
        cursor = next_cursor if going and not (half and int(next_cursor) % 2) else None


def _sweep_node(
    client: Any,
    match: str,
    dry_run: bool,
    tally: Tally,
    per_key: bool,
    exclusions: Exclusions | None,
    cut: int,
) -> None:
    left: list[tuple[Any, bool]] = [(0, False)]
    if not per_key:
        try:
            _sweep_with_script(client, match, dry_run, tally, exclusions, cut)
            return
        except ScriptsRefused as refused:
            # The client-side path needs no scripting, and falls back to DEL itself.
            if left == refused.left:
                log.debug("the server runs no script (%s): sweeping from the client", refused)
            else:
                log.debug("a step of the script was refused (%s): going on client-side", refused)
            left = refused.left
    for cursor, half in left:
        _sweep_pipelined(client, match, dry_run, tally, per_key, exclusions, cut, cursor, half)


def sweep(
    client: Any,
    match: str,
    dry_run: bool,
    tally: Tally,
    exclusions: Exclusions | None = None,
    cut: int = 0,
) -> None:
    """Unlink (or, with ``dry_run``, count) every key matching the SCAN pattern
    ``match``, on every primary of a cluster (never a replica), but those the
    ``exclusions`` keep: their globs apply to a key's name after its first ``cut``
    bytes (the prefix)."""
    if not is_cluster(client):
        _sweep_node(client, match, dry_run, tally, False, exclusions, cut)
        return
    on_each_primary(
        client,
        tally,
        "sweep",
        lambda node, _: _sweep_node(node, match, dry_run, tally, True, exclusions, cut),
    )


def on_each_primary(
    client: Any, tally: Tally, name: str, work: Callable[[Any, int], object]
) -> None:
    """``work(connection, index)`` on every primary of a cluster (never a replica) at once,
    a thread each: the one way clears, keeping sweeps and censuses spread over a cluster.
    A failure on one asks the others to stop after their step (``tally``), then is raised."""
    primaries = client.get_primaries()
    with ThreadPoolExecutor(max_workers=len(primaries), thread_name_prefix=name) as pool:
        futures = [
            pool.submit(work, client.get_redis_connection(node), index)
            for index, node in enumerate(primaries)
        ]
        try:
            for future in futures:
                future.result()
        except BaseException:
            tally.stop_requested = True  # let the other primaries stop after their step
            raise


_DONE = object()


def scan_all(client: Any, match: str) -> Iterator[Any]:
    """Every key matching ``match``, streamed; a cluster's primaries are scanned at
    the same time (one thread each, never a replica), through a bounded queue so
    memory stays flat when the consumer is slower than the scans."""
    if not is_cluster(client):
        yield from client.scan_iter(match=match, count=SCAN_COUNT)
        return
    primaries = client.get_primaries()
    found: queue.Queue = queue.Queue(maxsize=8 * SCAN_COUNT)
    stop = threading.Event()

    def scan_node(node: Any) -> None:
        try:
            for name in client.get_redis_connection(node).scan_iter(match=match, count=SCAN_COUNT):
                if stop.is_set():
                    return
                found.put(name)
        except BaseException as exc:  # handed to the consumer, raised there
            found.put(exc)
        finally:
            found.put(_DONE)

    threads = [threading.Thread(target=scan_node, args=(node,), daemon=True) for node in primaries]
    for thread in threads:
        thread.start()
    running = len(threads)
    try:
        while running:
            item = found.get()
            if item is _DONE:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        stop.set()
        while any(thread.is_alive() for thread in threads):
            try:  # let producers blocked on a full queue see the stop
                found.get_nowait()
            except queue.Empty:
                time.sleep(0.001)
