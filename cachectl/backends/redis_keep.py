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
  ``PTTL``, laid out in the backup's entry format by the script in strings of a few
  kilobytes (the client joins them into the step's chunk), and the names as RESP
  arguments, which the client passes on as they came with the call that unlinks them:
  it never handles a key on its own. A key written again by the app in the instant
  between its step and the next is removed with the value the backup holds being the
  one before;
- client-side (a server without scripts, a Cluster's primaries, ``--exclude``): ``SCAN``
  and the previous step's ``UNLINK`` pipelined, then ``DUMP`` and ``PTTL`` pipelined.

``restore`` puts them back: redis_restore.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from cachectl.backends.base import Tally, batched
from cachectl.backends.redis_clients import errors_named, is_cluster, is_error
from cachectl.backends.redis_sweep import _connection, on_each_primary
from cachectl.backup.file_format import Entry
from cachectl.backup.writer import now_ms
from cachectl.errors import BackendError

if TYPE_CHECKING:
    from cachectl.backends.exclusions import Exclusions
    from cachectl.backup.writer import Keeper

log = logging.getLogger("cachectl")

#: Keys one step of a keeping sweep looks at. Its DUMPs make a step several times as long
#: as a plain sweep's: 500 keeps it around 2 ms where half the keys match (1,000 took
#: about twice that, for 1.6% less of the server's work a key), and a client waits at
#: most for about two steps (the one running and the other lane's).
KEEP_SCAN_COUNT = 500
#: Entries laid out by one ``table.concat`` of the step script: a few kilobytes a string,
#: which the client joins into the step's chunk. One string for the whole step (a quarter
#: of a megabyte) cost the server more than the ``DUMP``s (docs/performance.md, Backups).
_GROUP = 16

#: ARGV: cursor ('' to only unlink), MATCH, COUNT, UNLINK or DEL, then the names to
#: unlink, one argument each. Returns the next cursor, how many were unlinked, how many
#: entries were kept, those entries in the backup's layout and their names as RESP bulk
#: strings, both in strings of up to _GROUP entries: the client writes the first, and
#: sends the second back as the arguments of the call that unlinks them, without
#: handling a name on its own.
#:
#: Each length, lifetime and RESP head is packed once per distinct value (most entries
#: share a few lengths and no lifetime): every string made is work for Lua's collector.
KEEP_STEP_SCRIPT = r"""
local removed, last = 0, #ARGV
for first = 5, last, 500 do
  removed = removed + redis.call(ARGV[4], unpack(ARGV, first, math.min(first + 499, last)))
end
if ARGV[1] == '' then return {'0', removed, 0, {}, {}} end
local step = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
local pack, sizes, tails, heads = struct.pack, {}, {}, {}
local laid, names, entries, named, count, used = {}, {}, {}, {}, 0, 0
local function flush()
  laid[#laid + 1] = table.concat(entries, '', 1, 5 * used)
  names[#names + 1] = table.concat(named, '', 1, 3 * used)
  used = 0
end
for _, key in ipairs(step[2]) do
  local payload = redis.call('DUMP', key)
  if payload then
    local ttl = redis.call('PTTL', key)
    local key_size, size, tail, head = sizes[#key], sizes[#payload], tails[ttl], heads[#key]
    if not key_size then key_size = pack('>I4', #key); sizes[#key] = key_size end
    if not size then size = pack('>I4', #payload); sizes[#payload] = size end
    if not tail then tail = pack('>i8I4I4', ttl, 0, 0); tails[ttl] = tail end
    if not head then head = '$' .. #key .. '\r\n'; heads[#key] = head end
    local at = 5 * used
    entries[at + 1], entries[at + 2], entries[at + 3] = key_size, key, size
    entries[at + 4], entries[at + 5] = payload, tail
    at = 3 * used
    named[at + 1], named[at + 2], named[at + 3] = head, key, '\r\n'
    used, count = used + 1, count + 1
    if used == GROUP then flush() end
  end
end
if used > 0 then flush() end
return {step[1], removed, count, laid, names}
""".replace("GROUP", str(_GROUP))


class _Calls:
    """Calls of the keeping step as bytes ready to send, each on a connection of the
    client's pool: the names to unlink go back as the server sent them (RESP), so the
    client never parses or encodes one (with redis-py's own parser, in Python, that cost
    the client more than the rest of its work on a step but compressing the chunk)."""

    def __init__(self, client: Any, match: str) -> None:
        import hashlib

        self._pool = client.connection_pool
        encoder = self._pool.get_encoder()
        self._sha = _bulk(hashlib.sha1(KEEP_STEP_SCRIPT.encode()).hexdigest().encode())
        self._text = _bulk(KEEP_STEP_SCRIPT.encode())
        self._match = _bulk(encoder.encode(match)) + _bulk(b"%d" % KEEP_SCAN_COUNT)
        #: EVAL (the text) until a call went through: the server has the script cached.
        self._full = True

    def __call__(self, cursor: bytes, command: str, count: int, names: bytes) -> list[Any]:
        """One step: unlink ``count`` names (RESP bulk strings, ``names``) with
        ``command``, then keep the matches of a SCAN step from ``cursor`` ('' for none)."""
        connection = _connection(self._pool)
        try:
            try:
                reply = self._call(connection, cursor, command, count, names, self._full)
            except errors_named("NoScriptError"):  # SCRIPT FLUSH, a failover
                reply = self._call(connection, cursor, command, count, names, True)
            self._full = False
            return list(reply)
        except errors_named("ResponseError"):
            raise  # an answer, read whole: the connection is in step
        except BaseException:
            connection.disconnect()  # a reply may still be on its way: never hand it back
            raise
        finally:
            self._pool.release(connection)

    def _call(
        self, connection: Any, cursor: bytes, command: str, count: int, names: bytes, full: bool
    ) -> Any:
        packed = b"".join(
            (
                b"*%d\r\n" % (7 + count),
                b"$4\r\nEVAL\r\n" + self._text if full else b"$7\r\nEVALSHA\r\n" + self._sha,
                b"$1\r\n0\r\n",
                _bulk(cursor),
                self._match,
                _bulk(command.encode()),
                names,
            )
        )
        connection.send_packed_command([packed], check_health=False)
        return connection.read_response()


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def _names_of(arguments: bytes) -> list[bytes]:
    """The names in RESP bulk strings (only on the way to the client-side sweep)."""
    names, at = [], 0
    while at < len(arguments):
        end = arguments.index(b"\r\n", at)
        size = int(arguments[at + 1 : end])
        names.append(arguments[end + 2 : end + 2 + size])
        at = end + 4 + size
    return names


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


#: Chunks a lane of a scripted sweep may have kept but not yet on disk: past it the lane
#: waits for the oldest, so memory stays bounded whatever the disk's speed: two lanes of
#: up to MAX_BEHIND + 1 chunks of up to about KEEP_SCAN_COUNT entries each.
MAX_BEHIND = 8
#: Steps of the second half's lane whose keys are unlinked before the first half's lane
#: takes a step after its first: the first lane's last SCAN step goes on past the middle
#: of the table (up to ten times its COUNT in buckets) into where the second lane
#: started, and would keep again, as a second entry in the file, a key the second lane
#: kept and has not unlinked yet. Waiting costs the first steps of a long sweep their
#: overlap (a few tens of milliseconds), and a short one most of it.
_EARLY_STEPS = 16


def _sweep_in_server(client: Any, match: str, tally: Tally, keeper: Keeper) -> list[bytes] | None:
    """The scripted sweep; None when done, else the names kept but not yet unlinked when
    the server turned out to refuse the script (the client-side sweep goes on, from the
    start: it finds again what the lanes had still to walk).

    Two lanes, as a plain sweep's (redis_sweep): one walks the hash table's first half,
    the other the second, each on a connection of its own, so the server has the next
    step of one lane while the other's reply travels and is handed to the disk. Each
    step's chunk is written behind (``WriteBehind``, shared): the next step is sent at
    once and unlinks only the names of chunks already on disk, so the server's steps and
    the disk's ``fsync`` overlap instead of taking turns (the first lane waits at its
    start for the second's first steps to be gone: ``_EARLY_STEPS``)."""
    from cachectl.backup.behind import WriteBehind

    calls = _Calls(client, match)
    behind = WriteBehind(keeper)
    try:
        first = _lane(calls, tally, behind, b"0", True, steps=1)
        if first.refused or first.walked_all:
            return first.left if first.refused else None
        second = _LaneState(b"1")
        first.gate = second.opens = threading.Event()
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="keep") as pool:
            futures = [
                pool.submit(_lane, calls, tally, behind, b"", True, 0, first),
                pool.submit(_lane, calls, tally, behind, b"1", False, 0, second),
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
        #: (ticket, count, names as RESP) of the chunks not unlinked yet.
        self.kept: deque[tuple[int, int, bytes]] = deque()
        #: Names on disk, unlinked by the next call: how many, and their RESP.
        self.doomed_count = 0
        self.doomed: list[bytes] = []
        self.command = "UNLINK"
        self.refused = False
        self.left: list[bytes] = []
        #: Its SCAN came back to cursor 0: the whole table is walked, not only its half.
        self.walked_all = False
        #: SCAN steps taken, and the ticket of the last chunk of the first _EARLY_STEPS.
        self.steps = 0
        self.early = 0
        #: The first lane waits for ``gate`` before each SCAN step; the second sets
        #: ``opens`` once the keys of its first steps are gone, or it stops.
        self.gate: threading.Event | None = None
        self.opens: threading.Event | None = None


def _lane(
    calls: _Calls,
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
    try:
        return _walk(lane, calls, tally, behind, half, steps)
    finally:
        if lane.opens is not None:
            lane.opens.set()  # whatever stopped it: the other lane must not wait for ever


def _walk(
    lane: _LaneState, calls: _Calls, tally: Tally, behind: Any, half: bool, steps: int
) -> _LaneState:
    taken = 0
    while lane.cursor is not None:
        scan_from = lane.cursor
        if lane.gate is not None and scan_from != b"":
            lane.gate.wait()
        try:
            reply = calls(scan_from, lane.command, lane.doomed_count, b"".join(lane.doomed))
        except Exception as exc:
            if lane.command == "UNLINK" and lane.doomed and "unlink" in str(exc).lower():
                lane.command = "DEL"  # a user refused UNLINK: the step failed before any change
                continue
            if not _script_refused(exc):
                raise
            log.debug("the keeping sweep's script was refused (%s): going on client-side", exc)
            behind.wait()
            lane.refused = True
            kept = lane.doomed + [names for _, _, names in lane.kept]
            lane.left = _names_of(b"".join(kept))
            return lane
        next_cursor, removed, count, laid_out, names = reply
        tally.add(int(removed), stop=False)
        lane.doomed, lane.doomed_count = [], 0
        if scan_from == b"":
            lane.cursor = None
            return lane
        lane.steps += 1
        if int(count):
            ticket = behind.submit(int(count), b"".join(laid_out), now_ms())
            lane.kept.append((ticket, int(count), b"".join(names)))
            if lane.steps <= _EARLY_STEPS:
                lane.early = ticket
        early_gone = not lane.kept or lane.kept[0][0] > lane.early
        if lane.opens is not None and lane.steps >= _EARLY_STEPS and early_gone:
            lane.opens.set()  # every chunk of its first steps unlinked
        at = int(next_cursor)
        lane.walked_all = at == 0
        done = at == 0 or (half and at % 2 == 1) or tally.stop_requested
        if done:
            behind.wait()
        elif len(lane.kept) > MAX_BEHIND:
            behind.wait(lane.kept[0][0])
        durable = behind.durable
        while lane.kept and lane.kept[0][0] <= durable:
            _, count, names = lane.kept.popleft()
            lane.doomed_count += count
            lane.doomed.append(names)
        lane.cursor = b"" if done else bytes(next_cursor)
        taken += 1
        if steps and taken >= steps and not done:
            return lane
    return lane


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
