"""Listing a memcached server's keys: ``lru_crawler metadump`` (memcached 1.4.31+).

Neither python-memcached nor pylibmc sends this command, so cachectl speaks it itself,
over its own connection to each server (``metadump hash`` where the server has it,
else ``metadump all``): one line per live item (``key=<urlencoded>
exp=<unix time|-1> la=<unix time> cas=.. fetch=.. cls=.. size=..``), then ``END``.
The server takes the snapshot with its LRU crawler while it keeps serving, and skips
expired and flushed items itself.

Whatever the server sends is read within bounds: a line longer than any the server
writes, a reply that is not a metadump, or a line that has not arrived whole within the
timeout (silence, or a server sending a byte at a time: ``deadline``) is a failure
(``BackendError``, exit 3) named in one line, never a hang. A server that cannot
run the crawler (started with ``-o no_lru_crawler``, ``-X``, or older than 1.4.31)
is told apart first, with ``stats settings``, before anything is removed anywhere
(``CrawlerRefused``; the backend turns it into exit 2).

The same bounded connection reads one item as stored (``read_item``): pylibmc inflates a
compressed value in C, whole, before cachectl could bound it, so its values are read here.
"""

from __future__ import annotations

import re
import socket
import tempfile
import time
from collections.abc import Iterator
from typing import IO, Any, NamedTuple, NoReturn
from urllib.parse import unquote_to_bytes

from cachectl.backends.deadline import DeadlineSocket
from cachectl.errors import BackendError

#: Longest line a metadump holds: a 250-byte key URL-encoded (750) and its fields.
MAX_LINE = 2048
#: Longest reply to ``stats settings`` cachectl reads (1.6 writes about 4 KB).
MAX_SETTINGS = 256 * 1024
#: Bytes of a server's dump kept in memory before the rest goes to a temporary file
#: (a dump line is about 100 bytes: some 160,000 keys).
SPOOL_IN_MEMORY = 16 * 1024 * 1024
#: How long to wait between two tries when another crawl is running (BUSY).
_BUSY_PAUSE = 0.05


class CrawlerRefused(Exception):
    """The server cannot list its keys (the reason is the message)."""


class Item(NamedTuple):
    """One live item, as the crawler saw it."""

    #: The key's bytes, URL-decoded as the server printed them.
    key: bytes
    #: Unix time it expires at (server clock), or None when it never does.
    expires: int | None
    #: Bytes the item takes in the server's memory (key, value and header).
    size: int


def socket_address(server: str) -> tuple[socket.AddressFamily, Any] | None:
    """The socket of a server as CACHE_MEMCACHED_SERVERS names it (``host:port``,
    ``[v6]:port``, ``unix:/path``; the port defaults to 11211), or None for a form
    cachectl does not read (a weight)."""
    text = server.strip().removeprefix("inet:").removeprefix("inet6:")
    if text.startswith(("unix:", "/")):
        return socket.AF_UNIX, text.removeprefix("unix:")
    family = socket.AF_INET
    if text.startswith("["):
        host, _, port = text[1:].partition("]")
        port = port.removeprefix(":")
        family = socket.AF_INET6
    else:
        host, _, port = text.partition(":")
    if not host or not (port or "11211").isdigit():
        return None
    return family, (host, int(port or "11211"))


class _Connection:
    """One text-protocol connection with bounded line reads."""

    def __init__(self, server: str, timeout: float) -> None:
        target = socket_address(server)
        if target is None:
            raise CrawlerRefused(f"{server}: cachectl cannot read this server address")
        self.server = server
        family, address = target
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except OSError as exc:
            sock.close()
            raise BackendError(f"memcached {server}: {exc}") from exc
        #: Each line (or item) must arrive whole within the timeout.
        self.sock = DeadlineSocket(sock, timeout)
        self.reader = self.sock.makefile("rb")

    def send(self, command: bytes) -> None:
        try:
            self.sock.sendall(command)
        except OSError as exc:
            raise BackendError(f"memcached {self.server}: {exc}") from exc

    def line(self, same_reply: bool = False) -> bytes:
        """The next line, without its end; a lost connection or an endless line fails.
        Within the timeout, counted from this line, or with ``same_reply`` from the
        first line of the reply it belongs to."""
        if not same_reply:
            self.sock.expect_reply()
        try:
            line = self.reader.readline(MAX_LINE)
        except OSError as exc:  # socket.timeout included
            raise BackendError(f"memcached {self.server}: {exc or 'timed out'}") from exc
        if not line.endswith(b"\n"):
            if len(line) >= MAX_LINE:
                raise BackendError(
                    f"memcached {self.server}: a reply line longer than {MAX_LINE} bytes "
                    f"(not a memcached metadump?): {line[:60]!r}"
                )
            raise BackendError(f"memcached {self.server}: the connection was closed mid-reply")
        return line.rstrip(b"\r\n")

    def block(self, size: int) -> bytes:
        """The next ``size`` bytes (an item's data), within the timeout."""
        self.sock.expect_reply()
        try:
            data = self.reader.read(size)
        except OSError as exc:
            raise BackendError(f"memcached {self.server}: {exc or 'timed out'}") from exc
        if len(data) < size:
            raise BackendError(f"memcached {self.server}: the connection was closed mid-reply")
        return data

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def check_answers(server: str, timeout: float) -> None:
    """``server`` answers ``stats`` as memcached does, the whole reply within the timeout
    (the check the client libraries make, bounded: see ``deadline``)."""
    connection = _Connection(server, timeout)
    try:
        connection.send(b"stats\r\n")
        line, read = connection.line(), 0
        while line != b"END":
            read += len(line)
            if not line.startswith(b"STAT ") or read > MAX_SETTINGS:
                raise BackendError(f"memcached {server}: unexpected reply to stats: {line[:60]!r}")
            line = connection.line(same_reply=True)
    finally:
        connection.close()


def read_item(server: str, key: bytes, timeout: float, most: int) -> tuple[bytes, int, int] | None:
    """The stored bytes of ``key`` on ``server`` (``get``), at most the first ``most`` of
    them, with its flags and its length; None when it is not there. The connection is
    closed after it, so a value cut short leaves nothing behind to read."""
    connection = _Connection(server, timeout)
    try:
        connection.send(b"get " + key + b"\r\n")
        line = connection.line()
        if line == b"END":
            return None
        words = line.split()
        if len(words) < 4 or words[0] != b"VALUE" or not (words[2] + words[3]).isdigit():
            raise BackendError(f"memcached {server}: unexpected reply to get: {line[:60]!r}")
        flags, size = int(words[2]), int(words[3])
        return connection.block(min(size, most)), flags, size
    finally:
        connection.close()


def check_crawler(server: str, timeout: float) -> None:
    """Refuse (CrawlerRefused) a server whose settings say it cannot list its keys."""
    connection = _Connection(server, timeout)
    try:
        connection.send(b"stats settings\r\n")
        settings: dict[bytes, bytes] = {}
        read = 0
        while True:
            line = connection.line()
            read += len(line)
            if line == b"END":
                break
            words = line.split()
            if len(words) < 2 or words[0] != b"STAT" or read > MAX_SETTINGS:
                raise BackendError(
                    f"memcached {server}: unexpected reply to stats settings: {line[:60]!r}"
                )
            settings[words[1]] = words[2] if len(words) > 2 else b""
    finally:
        connection.close()
    if b"lru_crawler" not in settings:
        raise CrawlerRefused(f"{server} has no LRU crawler (memcached before 1.4.31)")
    if settings[b"lru_crawler"] != b"yes":
        raise CrawlerRefused(f"{server} runs with its LRU crawler disabled (-o no_lru_crawler)")
    if settings.get(b"dump_enabled", b"yes") != b"yes":
        raise CrawlerRefused(f"{server} does not allow key dumps (started with -X)")


#: Walks, best first. ``hash`` walks the hash table: every item once, however the app's
#: reads move items between the LRU queues meanwhile. Servers without it (they read
#: "hash" as a slab class: BADCLASS) walk the LRU queues (``all``), where an item moved
#: during the walk can be missed or seen twice.
_WALKS = (b"hash", b"all")


def metadump(server: str, timeout: float) -> Iterator[Item]:
    """Every live item on ``server``. The dump is read whole by this call, into a temporary
    file (in memory up to ``SPOOL_IN_MEMORY``), and only then handed out: while the
    crawler waits for its client to read, it can hold a lock a delete of the same key
    needs, so deleting on that server while its dump is still coming would deadlock.
    Reading at full speed also keeps the crawler's work on the server short, and a
    garbled dump fails before anything is removed."""
    return _replay(server, _read_dump(server, timeout))


def _replay(server: str, spool: IO[bytes]) -> Iterator[Item]:
    """The items of a spool ``_spooled`` wrote (``key exp size`` a line, checked)."""
    try:
        for line in spool:
            key, expires, size = line.split()
            yield Item(unquote_to_bytes(key), int(expires) if expires != b"-1" else None, int(size))
    finally:
        spool.close()


def _read_dump(server: str, timeout: float) -> IO[bytes]:
    deadline = time.monotonic() + timeout
    walks = list(_WALKS)
    while True:
        connection = _Connection(server, timeout)
        try:
            # Alone on its connection: memcached refuses a metadump pipelined after others.
            connection.send(b"lru_crawler metadump " + walks[0] + b"\r\n")
            line = connection.line()
            if len(walks) > 1 and line.startswith((b"BADCLASS", b"CLIENT_ERROR bad", b"ERROR")):
                walks.pop(0)  # an older server: the next walk
                continue
            # BUSY: another crawl is running (another cachectl); try again until the timeout.
            if not (line.startswith(b"BUSY") and time.monotonic() < deadline):
                return _spooled(connection, line)
        finally:
            connection.close()
        time.sleep(_BUSY_PAUSE)


def _spooled(connection: _Connection, line: bytes) -> IO[bytes]:
    """The dump's items, each line checked, up to its ``END``: ``key exp size`` a line
    (the key as the server encoded it), in a rewound file."""
    server = connection.server
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115  # closed by metadump
    try:
        while line != b"END":
            found = _ITEM.match(line)
            if found is None:
                _refuse(server, line)
            size = _SIZE.search(line, found.end())
            spool.write(b"%s %s %s\n" % (found[1], found[2], size[1] if size else b"0"))
            line = connection.line()
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool


#: An item line: ``key=<urlencoded> exp=<unix time|-1>``, then other fields (``size=``
#: among them from 1.5 on); the key as the server encodes it, never holding a space.
_ITEM = re.compile(rb"key=(\S+) exp=(-?\d{1,20})(?= |\Z)")
_SIZE = re.compile(rb" size=(\d{1,20})(?= |\Z)")


def _refuse(server: str, line: bytes) -> NoReturn:
    if line.startswith(b"key="):
        raise BackendError(f"memcached {server}: unexpected line in metadump: {line[:60]!r}")
    if line.startswith((b"CLIENT_ERROR", b"ERROR", b"BADCLASS", b"NOTSTARTED")):
        raise CrawlerRefused(f"{server} refused lru_crawler metadump: {_shown(line)}")
    if line.startswith(b"BUSY"):
        raise BackendError(
            f"memcached {server}: its LRU crawler stayed busy with another crawl "
            f"past the timeout: {_shown(line)}"
        )
    raise BackendError(f"memcached {server}: unexpected reply to metadump: {line[:60]!r}")


def _shown(line: bytes) -> str:
    return line[:80].decode("ascii", "replace")
