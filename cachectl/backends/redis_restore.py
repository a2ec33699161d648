"""``restore`` into Redis, Valkey, Sentinel and Cluster: entries kept with DUMP and PTTL
(redis_keep) put back with RESTORE, never REPLACE unless asked: a key that exists now is
counted and left, an entry whose lifetime ran out since is skipped."""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterable
from itertools import repeat
from typing import Any

from cachectl.backends.redis_clients import is_cluster
from cachectl.backup.file_format import DamagedRecord, Entry, chunk_body, read_chunk
from cachectl.backup.reader import RestoreCounts, lifetime_left
from cachectl.backup.writer import now_ms

#: Chunks sent whose replies are left unread for now: the server always has a chunk or
#: more queued while the client lays out the next, even when one chunk takes the client
#: longer than usual (a thread switch, a slow read of the file).
_UNREAD = 3


class Restorer:
    """Entries in the backup's layout back on the server: their RESTORE commands written
    straight from that layout and pipelined on one connection, as ``redis-cli --pipe``
    sends them, each chunk sent before the replies of the ones before are read
    (``_UNREAD``), so the server restores those while the client lays out the next (a
    Cluster's, and a dry run's, through the client's pipeline)."""

    def __init__(self, client: Any, prefix: bytes) -> None:
        self._client = client
        #: The cache's key prefix: an entry named outside it is refused, never written.
        self._prefix = prefix
        self._connection: Any = None
        #: Replies still to read, by chunk (oldest first).
        self._owed: deque[int] = deque()
        self._pending = b""

    def restore(
        self, count: int, laid_out: bytes, taken_ms: int, replace: bool, dry_run: bool
    ) -> RestoreCounts:
        """This chunk sent; the counts of the chunks whose replies came in meanwhile."""
        counts = RestoreCounts()
        if is_cluster(self._client) or dry_run:
            entries = read_chunk(chunk_body(0, taken_ms, count, laid_out)).entries
            entries = [e for e in entries if not counts.outside(e.name, self._prefix)]
            _restore_client_side(self._client, entries, taken_ms, replace, dry_run, counts)
            return counts
        elapsed = max(0, now_ms() - taken_ms)
        commands, sent = _restore_commands(count, laid_out, elapsed, replace, counts, self._prefix)
        if sent:
            if self._connection is None:
                from cachectl.backends.redis_sweep import _connection

                self._connection = _connection(self._client.connection_pool)
            try:
                self._connection.send_packed_command([b"".join(commands)], check_health=False)
            except BaseException:
                self._drop()
                raise
            self._owed.append(sent)
        while len(self._owed) > _UNREAD:
            self._read(self._owed.popleft(), counts)
        return counts

    def finish(self) -> RestoreCounts:
        """The replies still owed read, and the connection handed back."""
        counts = RestoreCounts()
        try:
            while self._owed:
                self._read(self._owed.popleft(), counts)
        finally:
            if self._connection is not None:
                self._client.connection_pool.release(self._connection)
                self._connection = None
        return counts

    def _drop(self) -> None:
        """A connection whose replies may still be on their way is never reused."""
        self._owed.clear()
        if self._connection is not None:
            self._connection.disconnect()

    def _read(self, owed: int, counts: RestoreCounts) -> None:
        """``owed`` one-line replies straight off the socket (+OK, or an error: BUSYKEY
        counts the key present, any other is a refusal), found and counted with bytes
        methods, never a Python step per reply."""
        sock = self._connection._sock
        try:
            if hasattr(sock, "expect_reply"):
                sock.expect_reply()
            pending, oks = self._pending, owed * len(_OK)
            while True:
                if pending.count(_OK, 0, oks) == owed:  # the usual: all +OK, nothing else
                    at = oks
                    break
                if pending.count(b"\r\n") >= owed:  # an error among them: lines counted
                    at = len(pending) - len(pending.split(b"\r\n", owed)[owed])
                    break
                data = sock.recv(1 << 16)
                if not data:
                    raise ConnectionError("the server closed the connection during a restore")
                pending += data
            # Exactly this chunk's replies: the next chunk's may follow in ``pending``.
            replies, self._pending = pending[:at], pending[at:]
            counts.restored += replies.count(_OK)
            if b"-" in replies:
                for line in replies.split(b"\r\n"):
                    if line.startswith(b"-BUSYKEY"):
                        counts.present += 1
                    elif line.startswith(b"-"):
                        counts.refused("RESTORE refused: " + _text(line[1:]))
        except BaseException:
            self._drop()
            raise


_OK = b"+OK\r\n"
_U32 = struct.Struct(">I")
#: What follows an entry's value: lifetime left (ms), flags (skipped), the extra's length.
_ENTRY_TAIL = struct.Struct(">q4xI")
#: The RESP that goes before an entry's key, for keys up to 255 bytes (the usual): the
#: end of the command before (``lead``), RESTORE's head and the key's length, made once.
_HEAD = b"*%d\r\n$7\r\nRESTORE\r\n$%d\r\n"
_HEADS = ([b"\r\n" + _HEAD % (4, n) for n in range(256)], b"\r\n")
_HEADS_REPLACE = (
    [b"\r\n$7\r\nREPLACE\r\n" + _HEAD % (5, n) for n in range(256)],
    b"\r\n$7\r\nREPLACE\r\n",
)
#: Between the key and the payload: the lifetime's argument and the payload's length.
_NO_EXPIRY = b"\r\n$1\r\n0\r\n$%d\r\n"
_EXPIRY = b"\r\n$%d\r\n%d\r\n$%d\r\n"


def _restore_commands(
    count: int, laid_out: bytes, elapsed: int, replace: bool, counts: RestoreCounts, prefix: bytes
) -> tuple[list[bytes], int]:
    """The RESTORE command of each entry still alive (RESP, in pieces for one join), and
    how many; the expired counted in ``counts``. DamagedRecord for entries that do not
    parse as ``count`` whole entries (a file whose checksums were made to fit), before
    anything is sent.

    This loop is the client's work per entry, and it runs while the server restores the
    chunk before: its cost per entry sets the pace once it exceeds the server's. So each
    entry is four pieces (a head made once per key length, the key, the lifetime and the
    payload's length, the payload) and no more Python operations than the layout needs;
    the end of each command is the next one's head."""
    heads, lead = _HEADS_REPLACE if replace else _HEADS
    parts: list[bytes] = []
    extend, starts = parts.extend, laid_out.startswith
    unpack_u32, unpack_tail = _U32.unpack_from, _ENTRY_TAIL.unpack_from
    cut, at, sent = len(prefix), 0, 0
    middles: dict[int, bytes] = {}  # the piece between key and payload, by payload length
    try:
        for _ in repeat(None, count):
            (size,) = unpack_u32(laid_out, at)
            name = at + 4
            at = name + size
            (length,) = unpack_u32(laid_out, at)
            value = at + 4
            at = value + length
            ttl, extra = unpack_tail(laid_out, at)
            at += 16 + extra
            outside = size < cut or not starts(prefix, name)  # (a shorter key: not past it)
            if outside and counts.outside(laid_out[name : name + size], prefix):
                continue
            if ttl < 0:
                middle = middles.get(length)
                if middle is None:
                    middle = middles[length] = _NO_EXPIRY % length
            elif ttl > elapsed:
                left = ttl - elapsed
                middle = _EXPIRY % (len(str(left)), left, length)
            else:
                counts.expired += 1
                continue
            extend(
                (
                    heads[size] if size < 256 else lead + _HEAD % (5 if replace else 4, size),
                    laid_out[name : name + size],
                    middle,
                    laid_out[value : value + length],
                )
            )
            sent += 1
    except struct.error:
        raise DamagedRecord("a chunk's entries run past its end") from None
    if at > len(laid_out):  # the last one's extra (fewer entries: struct.error above)
        raise DamagedRecord("a chunk's entries run past its end")
    if at < len(laid_out):
        raise DamagedRecord(f"a chunk holds bytes after the {count} entries its head says")
    if sent:
        parts[0] = parts[0][len(lead) :]
        parts.append(lead)
    return parts, sent


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
