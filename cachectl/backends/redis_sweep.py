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

Keys matching an ``--exclude`` glob stay (``exclusions``): each way of running a
step tells them apart from the same parsed globs with the same algorithm, so
what stays does not depend on whether the server runs scripts.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import redis
import redis.exceptions

from cachectl.backends.base import Tally

if TYPE_CHECKING:
    from cachectl.backends.exclusions import Exclusions

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

#: The step with exclusions: ARGV[5] is the prefix's length in bytes, ARGV[6] how
#: many of the globs are the operator's (the others keep nested caches' keys),
#: then each glob as exclusions.py hands it over (its number of segments, then
#: each segment's length and Lua pattern). Returns the cursor, the keys removed
#: (or that would be), the keys kept, those kept by an operator's glob, then how
#: many keys each glob matched.
_EXCLUDE_STEP_SCRIPT = """
local cut = tonumber(ARGV[5])
local own = tonumber(ARGV[6])
local globs, a = {}, 7
while a <= #ARGV do
  local lengths, anchored, floating = {}, {}, {}
  for s = 1, tonumber(ARGV[a]) do
    lengths[s] = tonumber(ARGV[a + 2 * s - 1])
    floating[s] = ARGV[a + 2 * s]
    anchored[s] = '^' .. floating[s]
  end
  a = a + 1 + 2 * #lengths
  globs[#globs + 1] = {lengths, anchored, floating}
end

local function matches(glob, name)
  local lengths, anchored, floating = glob[1], glob[2], glob[3]
  local k, n, at = #lengths, #name, cut + 1
  if k == 0 then return false end
  if k == 1 then
    return n - cut == lengths[1] and string.find(name, anchored[1], at) ~= nil
  end
  if lengths[1] > 0 then
    if string.find(name, anchored[1], at) == nil then return false end
    at = at + lengths[1]
  end
  for s = 2, k - 1 do
    if lengths[s] > 0 then
      local _, stop = string.find(name, floating[s], at)
      if stop == nil then return false end
      at = stop + 1
    end
  end
  if lengths[k] > 0 then
    local start = n - lengths[k] + 1
    return start >= at and string.find(name, anchored[k], start) ~= nil
  end
  return true
end

local step = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', tonumber(ARGV[3]))
local doomed, kept, kept_own, matched = {}, 0, 0, {}
for g = 1, #globs do matched[g] = 0 end
for _, name in ipairs(step[2]) do
  local found, by_own = false, false
  for g = 1, #globs do
    if matches(globs[g], name) then
      matched[g] = matched[g] + 1
      found = true
      if g <= own then by_own = true end
    end
  end
  if found then kept = kept + 1 else doomed[#doomed + 1] = name end
  if by_own then kept_own = kept_own + 1 end
end
local removed = 0
if ARGV[4] == '1' then
  removed = #doomed
else
  for i = 1, #doomed, 500 do
    removed = removed + redis.call('UNLINK', unpack(doomed, i, math.min(i + 499, #doomed)))
  end
end
return {step[1], removed, kept, kept_own, unpack(matched)}
"""


class ScriptsRefused(Exception):
    """The server does not run our script (scripting disabled, ACL, old Redis)."""


def _sweep_with_script(
    client: Any, match: str, dry_run: bool, tally: Tally, exclusions: Exclusions | None, cut: int
) -> None:
    step = client.register_script(_EXCLUDE_STEP_SCRIPT if exclusions is not None else _STEP_SCRIPT)
    extra = [cut, *exclusions.script_args()] if exclusions is not None else []
    cursor: Any = 0
    first = True
    while True:
        try:
            reply = step(args=[cursor, match, SCAN_COUNT, "1" if dry_run else "0", *extra])
        except redis.exceptions.ResponseError as exc:
            if first:
                raise ScriptsRefused(str(exc)) from exc
            raise
        first = False
        cursor, removed = reply[0], reply[1]
        if exclusions is not None:
            exclusions.add(int(reply[2]), [int(h) for h in reply[4:]], int(reply[3]))
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


def _sweep_pipelined(
    client: Any,
    match: str,
    dry_run: bool,
    tally: Tally,
    per_key: bool,
    exclusions: Exclusions | None,
    cut: int,
) -> None:
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
        if cursor is not None and exclusions is not None:
            found = exclusions.split(found, cut)
        pending = found if cursor is not None else []
        cursor = next_cursor if cursor is not None and int(next_cursor) != 0 else None


def _sweep_node(
    client: Any,
    match: str,
    dry_run: bool,
    tally: Tally,
    per_key: bool,
    exclusions: Exclusions | None,
    cut: int,
) -> None:
    if not per_key:
        try:
            _sweep_with_script(client, match, dry_run, tally, exclusions, cut)
            return
        except ScriptsRefused as refused:
            # The client-side path needs no scripting.
            log.debug("the server runs no script (%s): sweeping from the client", refused)
    _sweep_pipelined(client, match, dry_run, tally, per_key, exclusions, cut)


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
    if not isinstance(client, redis.RedisCluster):
        _sweep_node(client, match, dry_run, tally, False, exclusions, cut)
        return
    primaries = client.get_primaries()
    with ThreadPoolExecutor(max_workers=len(primaries), thread_name_prefix="sweep") as pool:
        futures = [
            pool.submit(
                _sweep_node,
                client.get_redis_connection(node),
                match,
                dry_run,
                tally,
                True,
                exclusions,
                cut,
            )
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
