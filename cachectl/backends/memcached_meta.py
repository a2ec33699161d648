"""Deleting listed keys on one memcached server: quiet meta deletes, pipelined.

A clear finds the app's keys with the LRU crawler (``memcached_crawler``), server by
server; deleting them through a client library costs a reply per key that the library
waits for and parses in Python. memcached 1.6 has meta commands: ``md KEY q`` deletes
quietly (the server answers only what is not a success: ``NF`` for a key gone meanwhile,
an error), and ``mn`` answers ``MN`` once every command before it is done. So a batch
is one write of its ``md`` lines and ``mn``, and one short read: the least a client can
do. A key memcached's text protocol cannot carry as it is (a space or control byte,
stored through the binary protocol) goes base64-encoded (``md <base64> b q``).

Each batch is checked before it counts: every reply before ``MN`` must be ``NF`` (the key
was already gone: nothing to do), anything else fails the clear (``BackendError``) with
what went before it. The wait for a batch's ``MN`` is bounded by the timeout (``deadline``).
A server older than 1.6 answers ``mn`` with ``ERROR``: ``open_deleter`` then says so
(None), and the caller deletes through the client library as before.
"""

from __future__ import annotations

import base64

from cachectl.backends.memcached_crawler import _Connection
from cachectl.errors import BackendError

#: Keys a batch holds: small enough that the replies of a batch whose keys were all gone
#: meanwhile (``NF``, 4 bytes each) fit the socket buffers, so that the server never waits
#: for cachectl to read while cachectl is still writing.
META_BATCH = 4000

#: Bytes memcached's text protocol cannot carry inside a key.
_UNSAFE = bytes(range(33)) + b"\x7f"


def _line(key: bytes) -> bytes:
    if len(key.translate(None, _UNSAFE)) == len(key):
        return b"md " + key + b" q\r\n"
    return b"md " + base64.b64encode(key) + b" b q\r\n"


class MetaDeleter:
    """One connection to one server, deleting batches of keys with ``md q``."""

    def __init__(self, connection: _Connection) -> None:
        self.connection = connection

    def delete(self, keys: list[bytes]) -> None:
        """Delete ``keys`` (at most ``META_BATCH``), once the server says it is done."""
        connection = self.connection
        if len(b"".join(keys).translate(None, _UNSAFE)) == sum(map(len, keys)):
            commands = b"md " + b" q\r\nmd ".join(keys) + b" q\r\n"  # the usual case, at once
        else:
            commands = b"".join(_line(key) for key in keys)
        connection.send(commands + b"mn\r\n")
        while True:
            reply = connection.line()
            if reply == b"MN":
                return
            if reply != b"NF":
                raise BackendError(
                    f"memcached {connection.server}: a delete failed: {reply[:80]!r}"
                )

    def close(self) -> None:
        self.connection.close()


def open_deleter(server: str, timeout: float) -> MetaDeleter | None:
    """A deleter for ``server``, or None for a server without meta commands (before 1.6)."""
    connection = _Connection(server, timeout)
    try:
        connection.send(b"mn\r\n")
        reply = connection.line()
    except BaseException:
        connection.close()
        raise
    if reply == b"MN":
        return MetaDeleter(connection)
    connection.close()
    if reply.startswith(b"ERROR"):
        return None
    raise BackendError(f"memcached {server}: unexpected reply to mn: {reply[:60]!r}")
