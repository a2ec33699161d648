"""Redis (and Valkey, Sentinel, Cluster) entries kept before they go, and put back.

With ``--backup`` every removal first reads what it removes with ``DUMP`` and ``PTTL``
(the server's own serialization: any type, any encoding, restored as it was) and hands it
to the backup's ``Keeper``, which returns once the chunk is on disk; only then are the
keys unlinked. ``DUMP`` is refused to some ACL users: the refusal stops the command
before it removes the keys it could not keep.

A sweep (``clear``, ``delete --pattern``) keeps in one of two ways, like the sweep
without a backup (redis_sweep):

- inside the server, where it runs scripts: each call unlinks the keys of the previous
  step (already on disk) and takes the next ``SCAN`` step's matches with ``DUMP`` and
  ``PTTL``, laid out in the backup's entry format by the script itself, so the client
  writes one string per step and never handles a key on its own. A key written again by
  the app in the instant between its step and the next is removed with the value the
  backup holds being the one before;
- client-side (a server without scripts, a Cluster's primaries, ``--exclude``): ``SCAN``
  and the previous step's ``UNLINK`` pipelined, then ``DUMP`` and ``PTTL`` pipelined.

``restore`` puts them back: redis_restore.
"""

from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from cachectl.backends.base import Tally, batched
from cachectl.backends.redis_clients import is_cluster, is_error
from cachectl.backends.redis_sweep import on_each_primary
from cachectl.backup.file_format import Entry
from cachectl.backup.writer import now_ms
from cachectl.errors import BackendError

if TYPE_CHECKING:
    from cachectl.backends.exclusions import Exclusions
    from cachectl.backup.writer import Keeper

log = logging.getLogger("cachectl")

#: Keys one step of a keeping sweep looks at (the step's DUMPs hold it a little longer
#: than a plain sweep's step).
KEEP_SCAN_COUNT = 1000
#: Keys unlinked by one command inside the script (Lua's unpack has a limit).
_UNLINK_GROUP = 500

#: ARGV: cursor ('' to only unlink), MATCH, COUNT, the names to unlink (u32 length +
#: bytes each), UNLINK or DEL. Returns the next cursor, how many were unlinked, the
#: step's names laid out the same way, its entries in the backup's layout, their count.
KEEP_STEP_SCRIPT = """
local doomed, at, removed, group = ARGV[4], 1, 0, {}
while at <= #doomed do
  local size
  size, at = struct.unpack('>I4', doomed, at)
  group[#group + 1] = string.sub(doomed, at, at + size - 1)
  at = at + size
  if #group == 500 then
    removed = removed + redis.call(ARGV[5], unpack(group))
    group = {}
  end
end
if #group > 0 then removed = removed + redis.call(ARGV[5], unpack(group)) end
if ARGV[1] == '' then return {'0', removed, '', '', 0} end
local step = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
local names, laid, count = {}, {}, 0
for _, key in ipairs(step[2]) do
  local payload = redis.call('DUMP', key)
  if payload then
    local ttl = redis.call('PTTL', key)
    local name = struct.pack('>I4', #key) .. key
    count = count + 1
    names[count] = name
    laid[count] = name .. struct.pack('>I4', #payload) .. payload
      .. struct.pack('>i8I4I4', ttl, 0, 0)
  end
end
return {step[1], removed, table.concat(names), table.concat(laid), count}
"""


def database_of(client: Any) -> int | None:
    """The database number a backup file names (None for a Cluster: it has only 0)."""
    if is_cluster(client):
        return None
    pool = getattr(client, "connection_pool", None)
    return int(getattr(pool, "connection_kwargs", {}).get("db", 0) or 0)


def _refused_dump(reply: Any) -> BackendError:
    return BackendError(
        f"--backup: the server refused DUMP ({reply}); this user may not read entries "
        "whole, so nothing more was removed (give it +dump, or run without --backup)"
    )


def dumped(client: Any, names: list[bytes]) -> tuple[list[Entry], int]:
    """Each of ``names`` that exists, as DUMP and PTTL read it, and when they were read."""
    taken = now_ms()
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.dump(name)
        pipe.pttl(name)
    replies = pipe.execute(raise_on_error=False)
    entries = []
    for at, name in enumerate(names):
        payload, ttl = replies[2 * at], replies[2 * at + 1]
        for reply in (payload, ttl):
            if isinstance(reply, Exception):
                if "NOPERM" in str(reply) or "no permissions" in str(reply):
                    raise _refused_dump(reply)
                raise reply
        if payload is not None:
            entries.append(Entry(bytes(name), bytes(payload), int(ttl) if ttl >= 0 else -1))
    return entries, taken


def keep(client: Any, keeper: Keeper, names: list[bytes]) -> list[bytes]:
    """Keep ``names`` (those that exist); the names kept, now safe to remove."""
    entries, taken = dumped(client, names)
    keeper.keep(entries, taken)
    return [entry.name for entry in entries]


def _unlink(client: Any, names: list[bytes], per_key: bool, command: list[str]) -> int:
    """UNLINK ``names`` (DEL once UNLINK turns out to be refused: ``command`` remembers)."""
    if not names:
        return 0
    pipe = client.pipeline(transaction=False)
    for group in [[name] for name in names] if per_key else list(batched(names)):
        getattr(pipe, command[0])(*group)
    replies = pipe.execute(raise_on_error=False)
    if command[0] == "unlink" and any(
        isinstance(reply, Exception) and ("NOPERM" in str(reply) or "unknown command" in str(reply))
        for reply in replies
    ):
        command[0] = "delete"
        return _unlink(client, names, per_key, command)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return int(sum(replies))


def _sweep_client_side(
    client: Any,
    match: str,
    tally: Tally,
    keeper: Keeper,
    exclusions: Exclusions | None,
    cut: int,
    per_key: bool,
    kept: list[bytes],
) -> None:
    """SCAN from the start, keeping each step's matches, then unlinking them with the
    next step's SCAN; ``kept``: names already on disk, still to unlink."""
    cursor: Any = 0
    command = ["unlink"]
    while True:
        if kept:
            tally.add(_unlink(client, kept, per_key, command), stop=False)
        kept = []
        if cursor is None:
            break
        next_cursor, found = client.scan(cursor, match=match, count=KEEP_SCAN_COUNT)
        if exclusions is not None:
            found = exclusions.split(found, cut)
        if found:
            kept = keep(client, keeper, list(found))
        cursor = next_cursor if int(next_cursor) != 0 else None
        if tally.stop_requested:
            tally.add(_unlink(client, kept, per_key, command), stop=False)
            kept = []
            tally.add(0)  # stops here, with every removed key kept and counted


def _script_refused(exc: BaseException) -> bool:
    text = str(exc).lower()
    return is_error(exc, "ResponseError") and any(
        word in text
        for word in ("unknown command", "noperm", "no permissions", "script", "lua", "disabled")
    )


#: Chunks a scripted sweep may have kept but not yet on disk: past it the sweep waits
#: for the oldest (memory stays bounded whatever the disk's speed).
MAX_BEHIND = 4


def _sweep_in_server(client: Any, match: str, tally: Tally, keeper: Keeper) -> list[bytes] | None:
    """The scripted sweep; None when done, else the names kept but not yet unlinked when
    the server turned out to refuse the script (the client-side sweep goes on, from the
    start: it finds again what the lanes had still to walk).

    Two lanes, as a plain sweep's (redis_sweep): one walks the hash table's first half,
    the other the second, each on a connection of its own, so the server has the next
    step of one lane while the other's reply travels and is handed to the disk. Each
    step's chunk is written behind (``WriteBehind``, shared): the next step is sent at
    once and unlinks only the names of chunks already on disk, so the server's steps and
    the disk's ``fsync`` overlap instead of taking turns."""
    from cachectl.backup.behind import WriteBehind

    script = client.register_script(KEEP_STEP_SCRIPT)
    behind = WriteBehind(keeper)
    try:
        first = _lane(script, match, tally, behind, b"0", True, steps=1)
        if first.refused or first.walked_all:
            return first.left if first.refused else None
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="keep") as pool:
            futures = [
                pool.submit(_lane, script, match, tally, behind, b"", True, 0, first),
                pool.submit(_lane, script, match, tally, behind, b"1", False),
            ]
            try:
                lanes = [future.result() for future in futures]
            except BaseException:
                tally.stop_requested = True
                raise
        if any(lane.refused for lane in lanes):
            return [name for lane in lanes for name in lane.left]
        return None
    finally:
        behind.close()


class _LaneState:
    """Where one lane of a keeping sweep stands: its cursor (None once it has walked its
    half), the chunks it kept and has still to unlink, and, after a refused script, the
    names kept but not unlinked (``left``)."""

    def __init__(self, cursor: bytes) -> None:
        self.cursor: bytes | None = cursor
        self.kept: deque[tuple[int, bytes]] = deque()  # (ticket, names) not unlinked yet
        self.doomed = b""
        self.command = "UNLINK"
        self.refused = False
        self.left: list[bytes] = []
        #: Its SCAN came back to cursor 0: the whole table is walked, not only its half.
        self.walked_all = False


def _lane(
    script: Any,
    match: str,
    tally: Tally,
    behind: Any,
    cursor: bytes,
    half: bool,
    steps: int = 0,
    state: _LaneState | None = None,
) -> _LaneState:
    """Walk from ``cursor`` (to the table's second half when ``half``), keeping each step's
    matches and unlinking them once on disk; ``steps``: stop after so many (0: to the end),
    the keys kept still to unlink left in the state, which a later call goes on with."""
    lane = state or _LaneState(cursor)
    taken = 0
    while lane.cursor is not None:
        scan_from = lane.cursor
        try:
            reply = script(args=[scan_from, match, KEEP_SCAN_COUNT, lane.doomed, lane.command])
        except Exception as exc:
            if lane.command == "UNLINK" and lane.doomed and "unlink" in str(exc).lower():
                lane.command = "DEL"  # a user refused UNLINK: the step failed before any change
                continue
            if not _script_refused(exc):
                raise
            log.debug("the keeping sweep's script was refused (%s): going on client-side", exc)
            behind.wait()
            lane.refused = True
            lane.left = _names_of(lane.doomed) + [
                n for _, names in lane.kept for n in _names_of(names)
            ]
            return lane
        next_cursor, removed, names, laid_out, count = reply
        tally.add(int(removed), stop=False)
        lane.doomed = b""
        if scan_from == b"":
            lane.cursor = None
            return lane
        if int(count):
            lane.kept.append((behind.submit(int(count), bytes(laid_out), now_ms()), bytes(names)))
        at = int(next_cursor)
        lane.walked_all = at == 0
        done = at == 0 or (half and at % 2 == 1) or tally.stop_requested
        if done:
            behind.wait()
        elif len(lane.kept) > MAX_BEHIND:
            behind.wait(lane.kept[0][0])
        durable = behind.durable
        ready = []
        while lane.kept and lane.kept[0][0] <= durable:
            ready.append(lane.kept.popleft()[1])
        lane.doomed = b"".join(ready)
        lane.cursor = b"" if done else bytes(next_cursor)
        taken += 1
        if steps and taken >= steps and not done:
            return lane
    return lane


def _names_of(laid_out: bytes) -> list[bytes]:
    """The names of a u32-length-prefixed list (only on the way to the client-side sweep)."""
    names, at = [], 0
    while at < len(laid_out):
        size = int.from_bytes(laid_out[at : at + 4], "big")
        names.append(laid_out[at + 4 : at + 4 + size])
        at += 4 + size
    return names


def sweep_keeping(
    client: Any,
    match: str,
    tally: Tally,
    keeper: Keeper,
    exclusions: Exclusions | None = None,
    cut: int = 0,
) -> None:
    """Remove every key matching ``match`` (but those ``exclusions`` keep), each kept by
    ``keeper`` first; a cluster's primaries at once, one thread each."""
    if not is_cluster(client):
        left: list[bytes] | None = []
        if exclusions is None:
            left = _sweep_in_server(client, match, tally, keeper)
        if left is not None:
            _sweep_client_side(client, match, tally, keeper, exclusions, cut, False, left)
        if tally.stop_requested:
            tally.add(0)
        return
    on_each_primary(
        client,
        tally,
        "keep",
        lambda node, _: _sweep_client_side(node, match, tally, keeper, exclusions, cut, True, []),
    )
    if tally.stop_requested:
        tally.add(0)


def keep_laid_out(backend: Any, count: int, laid_out: bytes) -> None:
    """``restore --replace`` with ``--backup``: the keys of ``count`` entries in the file's
    layout, as they are now, kept before they are overwritten."""
    from cachectl.backup.file_format import chunk_body, read_chunk

    keep_names(backend, [e.name for e in read_chunk(chunk_body(0, 0, count, laid_out)).entries])


def keep_names(backend: Any, names: list[bytes]) -> None:
    """``names`` (full keys) as they are now, kept by ``backend``'s backup, if it has one."""
    keeper = backend.keeper()
    if keeper is not None:
        keep(backend.client, keeper, names)
