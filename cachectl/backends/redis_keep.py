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

``restore`` puts entries back with ``RESTORE`` (never ``REPLACE`` unless asked): a key
that exists now is counted and left, an entry whose lifetime ran out since is skipped.
"""

from __future__ import annotations

import logging
import struct
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from cachectl.backends.base import Tally, batched
from cachectl.backends.redis_clients import is_cluster, is_error
from cachectl.backup.file_format import Entry, chunk_body, entry_bytes, read_chunk
from cachectl.backup.reader import RestoreCounts, lifetime_left
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
    the server turned out to refuse the script (the client-side sweep goes on).

    Each step's chunk is written behind (``WriteBehind``): the next step is sent at once
    and unlinks only the names of chunks already on disk, so the server's steps and the
    disk's ``fsync`` overlap instead of taking turns."""
    from cachectl.backup.behind import WriteBehind

    script = client.register_script(KEEP_STEP_SCRIPT)
    cursor, doomed, command = b"0", b"", "UNLINK"
    behind = WriteBehind(keeper)
    kept: deque[tuple[int, bytes]] = deque()  # (ticket, names) not unlinked yet
    try:
        while True:
            try:
                reply = script(args=[cursor, match, KEEP_SCAN_COUNT, doomed, command])
            except Exception as exc:
                if command == "UNLINK" and doomed and "unlink" in str(exc).lower():
                    command = "DEL"  # a user refused UNLINK: the step failed before any change
                    continue
                if not _script_refused(exc):
                    raise
                log.debug("the keeping sweep's script was refused (%s): going on client-side", exc)
                behind.wait()
                return _names_of(doomed) + [n for _, names in kept for n in _names_of(names)]
            next_cursor, removed, names, laid_out, count = reply
            tally.add(int(removed), stop=False)
            if cursor == b"":
                return None
            if int(count):
                kept.append((behind.submit(int(count), bytes(laid_out), now_ms()), bytes(names)))
            done = int(next_cursor) == 0 or tally.stop_requested
            if done:
                behind.wait()
            elif len(kept) > MAX_BEHIND:
                behind.wait(kept[0][0])
            durable = behind.durable
            ready = []
            while kept and kept[0][0] <= durable:
                ready.append(kept.popleft()[1])
            doomed = b"".join(ready)
            cursor = b"" if done else bytes(next_cursor)
    finally:
        behind.close()


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
    primaries = client.get_primaries()
    with ThreadPoolExecutor(max_workers=len(primaries), thread_name_prefix="keep") as pool:
        futures = [
            pool.submit(
                _sweep_client_side,
                client.get_redis_connection(node),
                match,
                tally,
                keeper,
                exclusions,
                cut,
                True,
                [],
            )
            for node in primaries
        ]
        try:
            for future in futures:
                future.result()
        except BaseException:
            tally.stop_requested = True
            raise
    if tally.stop_requested:
        tally.add(0)


def restore_entries(
    client: Any, entries: list[Entry], taken_ms: int, replace: bool, dry_run: bool
) -> RestoreCounts:
    """``entries`` back on the server (see the module's docstring)."""
    laid_out = b"".join(entry_bytes(entry) for entry in entries)
    return restore_laid_out(client, len(entries), laid_out, taken_ms, replace, dry_run)


def restore_laid_out(
    client: Any, count: int, laid_out: bytes, taken_ms: int, replace: bool, dry_run: bool
) -> RestoreCounts:
    """``count`` entries in the backup's layout back on the server: their RESTORE commands
    written straight from that layout and pipelined on one connection, as ``redis-cli
    --pipe`` would send them (a Cluster's, and a dry run's, through the client's pipeline)."""
    counts = RestoreCounts()
    if is_cluster(client) or dry_run:
        entries = read_chunk(chunk_body(0, taken_ms, count, laid_out)).entries
        _restore_client_side(client, entries, taken_ms, replace, dry_run, counts)
        return counts
    commands, sent = _restore_commands(laid_out, max(0, now_ms() - taken_ms), replace, counts)
    if sent:
        _pipelined(client.connection_pool, commands, sent, counts)
    return counts


_U32 = struct.Struct(">I")
#: What follows an entry's value: lifetime left (ms), flags, the extra's length.
_ENTRY_TAIL = struct.Struct(">qII")


def _restore_commands(
    laid_out: bytes, elapsed: int, replace: bool, counts: RestoreCounts
) -> tuple[list[bytes | memoryview], int]:
    """The RESTORE command of each entry still alive (RESP, the payload not copied), and
    how many; the expired counted in ``counts``."""
    head = b"*5\r\n$7\r\nRESTORE\r\n$" if replace else b"*4\r\n$7\r\nRESTORE\r\n$"
    tail = b"\r\n$7\r\nREPLACE\r\n" if replace else b"\r\n"
    parts: list[bytes | memoryview] = []
    view, sent, at, end = memoryview(laid_out), 0, 0, len(laid_out)
    unpack_u32, unpack_tail = _U32.unpack_from, _ENTRY_TAIL.unpack_from
    while at < end:
        (size,) = unpack_u32(laid_out, at)
        name = view[at + 4 : at + 4 + size]
        at += 4 + size
        (size,) = unpack_u32(laid_out, at)
        payload = view[at + 4 : at + 4 + size]
        at += 4 + size
        ttl, _flags, extra = unpack_tail(laid_out, at)
        at += 16 + extra
        left = b"0"
        if ttl >= 0:
            if ttl - elapsed <= 0:
                counts.expired += 1
                continue
            left = str(ttl - elapsed).encode()
        parts += (
            b"%s%d\r\n" % (head, len(name)),
            name,
            b"\r\n$%d\r\n%s\r\n$%d\r\n" % (len(left), left, len(payload)),
            payload,
            tail,
        )
        sent += 1
    return parts, sent


def _pipelined(
    pool: Any, commands: list[bytes | memoryview], sent: int, counts: RestoreCounts
) -> None:
    """Send ``commands`` at once and read their ``sent`` one-line replies straight off the
    socket (+OK, or an error: BUSYKEY counts the key present, any other is a refusal)."""
    from cachectl.backends.redis_sweep import _connection

    connection = _connection(pool)
    try:
        connection.send_packed_command([b"".join(commands)], check_health=False)
        sock = connection._sock
        if hasattr(sock, "expect_reply"):
            sock.expect_reply()
        pending, read = b"", 0
        while read < sent:
            data = sock.recv(1 << 16)
            if not data:
                raise ConnectionError("the server closed the connection during a restore")
            pending += data
            cut = pending.rfind(b"\r\n") + 2
            if cut < 2:
                continue
            replies, pending = pending[:cut], pending[cut:]
            read += replies.count(b"\r\n")
            counts.restored += replies.count(b"+OK\r\n")
            if b"-" in replies:
                for line in replies.split(b"\r\n"):
                    if line.startswith(b"-BUSYKEY"):
                        counts.present += 1
                    elif line.startswith(b"-"):
                        counts.refused("RESTORE refused: " + _text(line[1:]))
    except BaseException:
        connection.disconnect()  # replies may still be on their way: never reuse it
        raise
    finally:
        pool.release(connection)


def _text(reply: Any) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _restore_client_side(
    client: Any,
    entries: Iterable[Entry],
    taken_ms: int,
    replace: bool,
    dry_run: bool,
    counts: RestoreCounts,
) -> None:
    now = now_ms()
    pipe = client.pipeline(transaction=False)
    sent = []
    for entry in entries:
        left = lifetime_left(entry.ttl_ms, taken_ms, now)
        if left is not None and left <= 0:
            counts.expired += 1
            continue
        if dry_run:
            pipe.exists(entry.name)
        else:
            pipe.restore(entry.name, left or 0, entry.value, replace=replace)
        sent.append(entry)
    if not sent:
        return
    for reply in pipe.execute(raise_on_error=False):
        if dry_run:
            if reply and not replace:
                counts.present += 1
            else:
                counts.restored += 1
        elif isinstance(reply, Exception):
            if "BUSYKEY" in str(reply):
                counts.present += 1
            else:
                counts.refused(str(reply))
        else:
            counts.restored += 1
