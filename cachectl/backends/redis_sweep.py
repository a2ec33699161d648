"""Remove (or count) every key matching a pattern, at any key count, without blocking Redis.

``KEYS`` blocks the server while it walks the whole keyspace, and collecting
the names first costs memory in proportion to the key count. A sweep walks the
keyspace with ``SCAN`` in steps of about a thousand keys and unlinks each
step's matches before taking the next, so the server is never held for more
than a step and the client never holds more than a step's names.

Two ways to run a step, chosen automatically:

- a short Lua script (one SCAN step plus UNLINK of its matches, inside the
  server): one round trip per step and no key names on the wire. The fastest.
- client-side: SCAN, then UNLINK of the matches, pipelined so that each round
  trip carries the next SCAN together with the previous step's UNLINK. For
  servers that refuse scripts (managed services often do) and for Redis
  Cluster, where each primary is swept on its own, concurrently, with one
  UNLINK per key so no command spans two hash slots.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
import redis.exceptions

from cachectl.backends.base import Tally

#: Shown with --debug: how the sweep had to adapt to what the server allows.
log = logging.getLogger("cachectl")

#: Keys a SCAN step looks at. Larger steps mean fewer round trips but longer
#: pauses for other clients; a thousand keeps a step around a millisecond.
SCAN_COUNT = 1000

_STEP_SCRIPT = """
local step = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', tonumber(ARGV[3]))
local found = step[2]
local removed = 0
if ARGV[4] == '1' then
  removed = #found
else
  for i = 1, #found, 500 do
    removed = removed + redis.call('UNLINK', unpack(found, i, math.min(i + 499, #found)))
  end
end
return {step[1], removed}
"""


class ScriptsRefused(Exception):
    """The server does not run our script (scripting disabled, ACL, old Redis)."""


def _sweep_with_script(client: Any, match: str, dry_run: bool, tally: Tally) -> None:
    step = client.register_script(_STEP_SCRIPT)
    cursor: Any = 0
    first = True
    while True:
        try:
            cursor, removed = step(args=[cursor, match, SCAN_COUNT, "1" if dry_run else "0"])
        except redis.exceptions.ResponseError as exc:
            if first:
                raise ScriptsRefused(str(exc)) from exc
            raise
        first = False
        tally.add(int(removed))
        if int(cursor) == 0:
            return


def is_refused_permission(reply: Any) -> bool:
    """A reply saying the user may not run the command (an ACL, a managed service)."""
    return isinstance(reply, redis.exceptions.ResponseError) and (
        isinstance(reply, getattr(redis.exceptions, "NoPermissionError", ()))
        or "NOPERM" in str(reply)
        or "no permissions" in str(reply)
    )


def _sweep_pipelined(client: Any, match: str, dry_run: bool, tally: Tally, per_key: bool) -> None:
    cursor: Any = 0  # None once SCAN has come full circle
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
        pending = found if cursor is not None else []
        cursor = next_cursor if cursor is not None and int(next_cursor) != 0 else None


def _sweep_node(client: Any, match: str, dry_run: bool, tally: Tally, per_key: bool) -> None:
    if not per_key:
        try:
            _sweep_with_script(client, match, dry_run, tally)
            return
        except ScriptsRefused as refused:
            # The client-side path needs no scripting.
            log.debug("the server runs no script (%s): sweeping from the client", refused)
    _sweep_pipelined(client, match, dry_run, tally, per_key)


def sweep(client: Any, match: str, dry_run: bool, tally: Tally) -> None:
    """Unlink (or, with ``dry_run``, count) every key matching the SCAN pattern
    ``match``, on every primary of a cluster (never a replica)."""
    if not isinstance(client, redis.RedisCluster):
        _sweep_node(client, match, dry_run, tally, per_key=False)
        return
    primaries = client.get_primaries()
    with ThreadPoolExecutor(max_workers=len(primaries), thread_name_prefix="sweep") as pool:
        futures = [
            pool.submit(_sweep_node, client.get_redis_connection(node), match, dry_run, tally, True)
            for node in primaries
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
    if not isinstance(client, redis.RedisCluster):
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
