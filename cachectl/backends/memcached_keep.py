"""memcached entries kept before they go (``--backup``), and put back (``restore``).

Neither client library reads an entry's client flags and lifetime, and a backup needs
both: the flags are how the app's client decodes the bytes (a pickle, an int, deflated),
the lifetime is what a restore gives back. memcached 1.6's meta commands read all three
at once, so cachectl speaks them itself, over its own connection to the server that holds
each key (the one the app's client library hashes it to; the one the LRU crawler found
it on for a clear):

- keep: ``mg KEY v f t c k q`` for a batch of keys, then ``mn`` (quiet: a key that is not
  there answers nothing), read in groups so that neither side waits on the other; the
  entries go to the backup's ``Keeper``, which returns once they are on disk;
- remove: ``md KEY C<cas> q``: only the value that was kept goes. A key the app wrote
  again meanwhile answers ``EX``; it is read and kept again before it goes, so no value
  is removed that the backup does not hold;
- restore: ``ms KEY SIZE F<flags> T<seconds> ME`` (add: a key that exists now answers
  ``NS`` and stays, counted) or ``MS`` with ``--replace``; pipelined the same way.

A key the text protocol cannot carry as it is goes base64-encoded (the ``b`` flag), as in
``memcached_meta``. SASL servers speak only the binary protocol, which has no such
commands: there ``--backup`` is refused before anything changes (``backup_refusal``), as
it is on a server older than 1.6 (no ``mn``), before the first key goes.
"""

from __future__ import annotations

import base64
import re
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Optional

from cachectl.backends.memcached_crawler import MAX_LINE, _Connection, socket_address
from cachectl.backup.file_format import MAX_BODY, NO_EXPIRY, Entry
from cachectl.backup.reader import RestoreCounts, lifetime_left
from cachectl.backup.writer import now_ms
from cachectl.errors import BackendError, UsageError

if TYPE_CHECKING:
    from cachectl.backup.writer import Keeper

    #: The backend's ``keeper``: asked for only once there is an entry to keep.
    KeeperSource = Callable[[], Optional[Keeper]]  # an alias: no X | None before 3.10

#: Flask-Caching's SpreadSASLMemcachedCache maxchunk: a value spread over KEY.0 to KEY.31.
SPREAD_MAX_CHUNKS = 32
#: Bytes of commands written before their replies are read: few enough to fit the socket
#: buffers whatever the server does meanwhile, so cachectl never waits to write while the
#: server waits for it to read (a restore's values go in groups of ``STORE_BYTES``).
COMMAND_BYTES = 64 * 1024
#: Entries of a restore written before their replies are read.
META_GROUP = 200
#: Bytes of values held before they are kept (a chunk of the backup file each), well under
#: the file's largest record.
KEEP_BYTES = 16 * 1024 * 1024
#: Bytes of values written by one restore group before its replies are read.
STORE_BYTES = 4 * 1024 * 1024
#: Rounds of "kept, then changed by the app before it went" before a remove gives up.
_ROUNDS = 10
#: memcached reads an expiry over 30 days as a Unix time.
_RELATIVE_LIMIT = 30 * 24 * 3600
#: A reply to ``mg KEY v f t c k q``: VA <size> f<flags> t<seconds left> c<cas> k<key> [b].
_VALUE = re.compile(rb"VA (\d{1,10}) f(\d{1,10}) t(-?\d{1,10}) c(\d{1,20}) k(\S{1,400})( b)?\r\n")
#: Bytes the text protocol cannot carry inside a key.
_UNSAFE = bytes(range(33)) + b"\x7f"


def backup_refusal(servers: list[str], sasl: bool) -> str | None:
    """Why ``--backup`` cannot keep these servers' entries (None where it can)."""
    if sasl:
        return (
            "SASL memcached servers speak only the binary protocol, which has no command "
            "that reads an entry's client flags and lifetime, so nothing could be kept; "
            "nothing was done (run without --backup)"
        )
    unread = [server for server in servers if socket_address(server) is None]
    if unread:
        return (
            f"cachectl cannot connect to {unread[0]} itself (an address form it does not "
            "read), and keeping an entry takes its own connection; nothing was done"
        )
    return None


def _key(name: bytes) -> tuple[bytes, bytes]:
    """``name`` as a meta command carries it, and the flag that says how."""
    if len(name.translate(None, _UNSAFE)) == len(name):
        return name, b""
    return base64.b64encode(name), b" b"


def _named(words: list[bytes]) -> bytes:
    """The key a reply names (``k`` flag; base64 when the reply has ``b``)."""
    key = next((word[1:] for word in words[1:] if word.startswith(b"k")), b"")
    return base64.b64decode(key) if b"b" in words[1:] else key


def _groups(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _written(lines: Iterable[bytes]) -> Iterator[bytes]:
    """Command lines joined into writes of about ``COMMAND_BYTES``."""
    group: list[bytes] = []
    held = 0
    for line in lines:
        group.append(line)
        held += len(line)
        if held >= COMMAND_BYTES:
            yield b"".join(group)
            group, held = [], 0
    if group:
        yield b"".join(group)


class MetaSession:
    """One connection to one server, reading, removing and storing with meta commands."""

    def __init__(self, server: str, timeout: float, purpose: str) -> None:
        self.server = server
        self.connection = _Connection(server, timeout)
        try:
            self.connection.send(b"mn\r\n")
            reply = self.connection.line()
        except BaseException:
            self.connection.close()
            raise
        if reply != b"MN":
            self.connection.close()
            if reply.startswith(b"ERROR"):
                raise UsageError(
                    f"memcached {server} has no meta commands (memcached before 1.6), the "
                    f"only way {purpose}; nothing was changed"
                )
            raise BackendError(f"memcached {server}: unexpected reply to mn: {reply[:60]!r}")

    def close(self) -> None:
        self.connection.close()

    def _failed(self, what: str, reply: bytes) -> BackendError:
        return BackendError(f"memcached {self.server}: {what}: {reply[:80]!r}")

    def read(self, names: list[bytes]) -> tuple[list[Entry], dict[bytes, int], int]:
        """Each of ``names`` that is there, as stored (bytes, flags, lifetime left), its
        CAS, and when they were read."""
        taken = now_ms()
        entries: list[Entry] = []
        cas: dict[bytes, int] = {}
        connection = self.connection
        lines = (b"mg %s%s v f t c k q\r\n" % _key(name) for name in names)
        for commands in _written(lines):
            connection.send(commands + b"mn\r\n")
            self._replies(entries, cas)
        return entries, cas, taken

    def _replies(self, entries: list[Entry], cas: dict[bytes, int]) -> None:
        """The replies to a group of ``mg KEY v f t c k q``, up to ``MN``, parsed from
        blocks as they arrive (a clear reads every entry it removes). The clock of the
        timeout restarts whenever an entry has arrived whole."""
        connection = self.connection
        sock, reader = connection.sock, connection.reader
        buffer = bytearray()
        at = 0
        sock.expect_reply()
        while True:
            found = _VALUE.match(buffer, at)
            if found is not None:
                size = int(found[1])
                end = found.end() + size
                if size + 1024 > MAX_BODY:
                    raise BackendError(
                        f"memcached {self.server}: an entry of {size:,} bytes is too large "
                        "to keep in a backup; nothing more was removed"
                    )
                if len(buffer) >= end + 2:
                    if buffer[end : end + 2] != b"\r\n":
                        raise self._failed("a value does not end as it should", buffer[end:])
                    name = bytes(found[5])
                    if found[6]:
                        name = base64.b64decode(name)
                    seconds = int(found[3])
                    ttl_ms = NO_EXPIRY if seconds < 0 else seconds * 1000
                    value = bytes(buffer[found.end() : end])
                    entries.append(Entry(name, value, ttl_ms, int(found[2])))
                    cas[name] = int(found[4])
                    at = end + 2
                    sock.expect_reply()
                    continue
            elif buffer.startswith(b"MN\r\n", at):
                if len(buffer) > at + 4:
                    raise self._failed("more after the end of a reply", buffer[at + 4 :])
                return
            else:
                line_end = buffer.find(b"\r\n", at, at + MAX_LINE)
                if line_end >= 0:
                    raise self._failed("a read to keep an entry failed", buffer[at:line_end])
                if len(buffer) - at >= MAX_LINE:
                    raise self._failed("a reply line too long", buffer[at : at + 60])
            if at:
                del buffer[:at]
                at = 0
            try:
                more = reader.read1(1 << 20)
            except OSError as exc:  # socket.timeout included
                raise BackendError(f"memcached {self.server}: {exc or 'timed out'}") from exc
            if not more:
                raise BackendError(f"memcached {self.server}: the connection was closed mid-reply")
            buffer += more

    def remove(self, cas: dict[bytes, int]) -> list[bytes]:
        """Delete each key if its CAS is still the one read; the keys the app changed
        meanwhile (still there, to keep again). A key gone already is no failure."""
        changed = []
        connection = self.connection
        lines = (b"md %s%s C%d k q\r\n" % (*_key(name), token) for name, token in cas.items())
        for commands in _written(lines):
            connection.send(commands + b"mn\r\n")
            while True:
                line = connection.line()
                if line == b"MN":
                    break
                words = line.split()
                if words[:1] == [b"EX"]:
                    changed.append(_named(words))
                elif words[:1] != [b"NF"]:
                    raise self._failed("a delete failed", line)
        return changed

    def keep_and_remove(self, keeper: KeeperSource, names: list[bytes]) -> None:
        """Keep ``names`` (those there), each on disk before it is deleted. A key whose
        CAS changed before its delete is read again, and kept again only if its bytes or
        flags changed: memcached gives an entry a new CAS when it moves it in memory (slab
        rebalancing), and a restore must not find the same entry twice."""
        seen: dict[bytes, tuple[int, int, int]] = {}
        for _ in range(_ROUNDS):
            cas = self.keep(keeper, names, seen)
            if not cas:
                return
            names = self.remove(cas)
            if not names:
                return
        raise BackendError(
            f"memcached {self.server}: {len(names)} keys changed each time they were kept "
            "and about to be removed; they were left as they are"
        )

    def keep(
        self,
        keeper: KeeperSource,
        names: list[bytes],
        seen: dict[bytes, tuple[int, int, int]] | None = None,
    ) -> dict[bytes, int]:
        """Keep ``names`` (those there) in the backup; their CAS, for ``remove``. The
        keeper is asked for once there is an entry to keep (asking creates the file).
        ``seen``: what was kept of each name already (flags, length, CRC-32), to leave out
        an entry kept as it is now."""
        kept: dict[bytes, int] = {}
        pending: list[Entry] = []
        held, first = 0, 0
        for group in _groups(names, 1000):
            entries, cas, taken = self.read(group)
            kept.update(cas)
            if seen is not None:
                entries = [entry for entry in entries if _first_sight(seen, entry)]
            if entries and not pending:
                first = taken  # the chunk's time: its earliest read, so no lifetime grows
            pending.extend(entries)
            held += sum(len(entry.value) + len(entry.name) for entry in entries)
            if held >= KEEP_BYTES:
                _keep(keeper, pending, first)
                pending, held = [], 0
        _keep(keeper, pending, first)
        return kept

    def store(
        self,
        entries: list[Entry],
        taken_ms: int,
        replace: bool,
        dry_run: bool,
        counts: RestoreCounts,
    ) -> None:
        """``entries`` back with what is left of their lifetimes (see the module)."""
        now = now_ms()
        mode = b"MS" if replace else b"ME"
        group: list[bytes] = []
        held = 0
        for entry in entries:
            left = lifetime_left(entry.ttl_ms, taken_ms, now)
            if left is not None and left <= 0:
                counts.expired += 1
                continue
            key, how = _key(entry.name)
            if dry_run:
                group.append(b"mg " + key + how + b" k q\r\n")
            else:
                expiry = _expiry(left)
                group.append(
                    b"ms %s %d%s F%d T%d %s k q\r\n%s\r\n"
                    % (key, len(entry.value), how, entry.flags, expiry, mode, entry.value)
                )
                held += len(entry.value)
            if len(group) >= META_GROUP or held >= STORE_BYTES:
                self._stored(group, replace, dry_run, counts)
                group, held = [], 0
        if group:
            self._stored(group, replace, dry_run, counts)

    def _stored(
        self, commands: list[bytes], replace: bool, dry_run: bool, counts: RestoreCounts
    ) -> None:
        connection = self.connection
        connection.send(b"".join(commands) + b"mn\r\n")
        present = refused = 0
        while True:
            line = connection.line()
            if line == b"MN":
                break
            words = line.split()
            if dry_run and words[:1] == [b"HD"]:
                present += 0 if replace else 1
            elif not dry_run and words[:1] == [b"NS"] and not replace:
                present += 1
            else:
                refused += 1
                counts.refused(f"memcached {self.server}: {line[:80].decode('ascii', 'replace')}")
        counts.present += present
        counts.restored += len(commands) - present - refused


def _first_sight(seen: dict[bytes, tuple[int, int, int]], entry: Entry) -> bool:
    """Whether ``entry`` differs from what was kept of its name (noted for next time)."""
    mark = (entry.flags, len(entry.value), zlib.crc32(entry.value))
    if seen.get(entry.name) == mark:
        return False
    seen[entry.name] = mark
    return True


def _keep(source: KeeperSource, entries: list[Entry], taken: int) -> None:
    if entries:
        keeper = source()
        assert keeper is not None, "entries are read to keep only under --backup"
        keeper.keep(entries, taken)


def _expiry(left_ms: int | None) -> int:
    """memcached's expiry for what is left of a lifetime (rounded up to a second): 0 for
    none, seconds up to 30 days, a Unix time beyond."""
    if left_ms is None:
        return 0
    seconds = -(-left_ms // 1000)
    return seconds if seconds <= _RELATIVE_LIMIT else int(time.time()) + seconds


class MetaSessions:
    """A run's meta connections, one per server, opened when first needed and every
    server checked before the first key goes (``check``)."""

    def __init__(self, servers: list[str], timeout: float, purpose: str) -> None:
        self.servers = servers
        self.timeout = timeout
        #: What the meta commands are for, said where a server has none.
        self.purpose = purpose
        self._open: dict[str, MetaSession] = {}

    def check(self) -> None:
        """Each server answers meta commands (else exit 2, before anything changes)."""
        for server in self.servers:
            self.on(server)

    def on(self, server: str) -> MetaSession:
        if server not in self._open:
            self._open[server] = MetaSession(server, self.timeout, self.purpose)
        return self._open[server]

    def close(self) -> None:
        for session in self._open.values():
            session.close()
        self._open.clear()


def by_server(names: Iterable[bytes], holder: Any) -> dict[str, list[bytes]]:
    """``names`` grouped by the server ``holder`` says holds each."""
    grouped: dict[str, list[bytes]] = {}
    for name in names:
        grouped.setdefault(holder(name), []).append(name)
    return grouped
