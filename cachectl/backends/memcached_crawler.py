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
from urllib.parse import quote_from_bytes, unquote_to_bytes

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


def metadump(server: str, timeout: float, prefix: bytes = b"") -> Dump:
    """Every live item on ``server`` whose key starts with ``prefix``. The dump is read
    whole by this call, the items kept into a temporary file (in memory up to
    ``SPOOL_IN_MEMORY``), and only then handed out: while the crawler waits for its client
    to read, it can hold a lock a delete of the same key needs, so deleting on that server
    while its dump is still coming would deadlock. Reading at full speed also keeps the
    crawler's work on the server short, and a garbled dump fails before anything is
    removed. The dump is read in blocks and checked, then filtered by ``prefix``, a block
    at a time by regular expressions: no Python code runs for a key of another app."""
    return Dump(_read_dump(server, timeout, prefix))


class Dump:
    """One server's items under a prefix, read once: as items, or as batches of keys."""

    def __init__(self, spool: IO[bytes]) -> None:
        self.spool = spool

    def __iter__(self) -> Iterator[Item]:
        """The items, one by one (``key exp size`` a line, checked when spooled)."""
        try:
            for line in self.spool:
                key, expires, size = line.split()
                if b"%" in key:
                    key = unquote_to_bytes(key)
                yield Item(key, int(expires) if expires != b"-1" else None, int(size))
        finally:
            self.spool.close()

    def key_batches(self, size: int) -> Iterator[list[bytes]]:
        """The keys alone, ``size`` at a time (a clear of every key under the prefix)."""
        try:
            batch: list[bytes] = []
            for line in self.spool:
                key = line[: line.index(b" ")]
                batch.append(unquote_to_bytes(key) if b"%" in key else key)
                if len(batch) >= size:
                    yield batch
                    batch = []
            if batch:
                yield batch
        finally:
            self.spool.close()


def _read_dump(server: str, timeout: float, prefix: bytes) -> IO[bytes]:
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
                return _spooled(connection, line, prefix)
        finally:
            connection.close()
        time.sleep(_BUSY_PAUSE)


def _spooled(connection: _Connection, line: bytes, prefix: bytes) -> IO[bytes]:
    """The dump's items under ``prefix``, every line checked, up to its ``END``: ``key
    exp size`` a line (the key as the server encoded it), in a rewound file."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115  # closed by metadump
    quoted = quote_from_bytes(prefix, safe="-._~").encode("ascii")  # as memcached encodes
    encoded = b"\nkey=" + quoted
    keep = re.compile(rb"\nkey=(" + re.escape(quoted) + _ITEM_REST)
    try:
        for block in _blocks(connection, line + (b"\r\n" if line == b"END" else b"\n")):
            block = b"\n" + block
            found = keep.findall(block)
            if not _well_formed(block) or len(found) != block.count(encoded):
                _refuse_block(connection.server, block[1:])
            spool.write(
                b"".join(b"%s %s %s\n" % (key, exp, size or b"0") for key, exp, size in found)
            )
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool


def _well_formed(block: bytes) -> bool:
    """Whether every line of ``block`` (``\\n`` + whole lines) is printable text starting
    with ``key=`` and naming an ``exp=``: checked a block at a time, in C. The lines of the
    app's keys are parsed in full besides (``_ITEM_REST``), their count checked."""
    lines = block.count(b"\n") - 1
    return (
        not block.translate(None, _PRINTABLE)
        and block.count(b"\nkey=") == lines
        and block.count(b" exp=") >= lines
    )


def _blocks(connection: _Connection, first: bytes) -> Iterator[bytes]:
    """The dump in blocks of whole lines (each ending with ``\\n``), up to its ``END``
    line (left out). Each line must arrive whole within the timeout, as ``line`` has it:
    the clock restarts only when a line ends, so a server trickling one line forever
    fails; a line longer than ``MAX_LINE`` fails too."""
    server = connection.server
    pending = first
    while True:
        cut = pending.rfind(b"\n") + 1
        block, pending = pending[:cut], pending[cut:]
        if block.endswith(b"END\r\n") and (len(block) == 5 or block[-6:-5] == b"\n"):
            if pending:
                raise BackendError(f"memcached {server}: more after the end of the metadump")
            if len(block) > 5:
                yield block[:-5]
            return
        if block:
            yield block
            connection.sock.expect_reply()  # a line ended: the next one gets its own time
        if len(pending) >= MAX_LINE:
            raise BackendError(
                f"memcached {server}: a reply line longer than {MAX_LINE} bytes "
                f"(not a memcached metadump?): {pending[:60]!r}"
            )
        try:
            more = connection.reader.read1(_BLOCK)
        except OSError as exc:  # socket.timeout included
            raise BackendError(f"memcached {server}: {exc or 'timed out'}") from exc
        if not more:
            raise BackendError(f"memcached {server}: the connection was closed mid-reply")
        pending += more


#: Bytes read from a dump at a time.
_BLOCK = 1 << 20
#: An item line, after ``key=`` and the (URL-encoded) prefix: the rest of the key, then
#: ``exp=<unix time|-1>``, then other fields (``size=`` among them from 1.5 on).
_ITEM_REST = rb"[!-~]{0,900}) exp=(-?\d{1,20})(?=[ \n])(?:[^\n]*? size=(\d{1,20})(?=[ \n]))?"
#: The bytes of a dump's lines: printable ASCII (keys are URL-encoded), spaces, ends.
_PRINTABLE = bytes(range(32, 127)) + b"\n"
#: One whole item line, for naming the first bad one.
_LINE = re.compile(rb"key=[!-~]{1,900} exp=-?\d{1,20}(?: [ -~]{0,1000})?")


def _refuse_block(server: str, block: bytes) -> NoReturn:
    """The first line of ``block`` that is not an item line, named."""
    for line in block.split(b"\n")[:-1]:
        if _LINE.fullmatch(line) is None:
            _refuse(server, line.rstrip(b"\r"))
    raise BackendError(f"memcached {server}: unexpected reply to metadump")  # not reached


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
