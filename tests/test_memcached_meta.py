"""memcached clears through quiet meta deletes pipelined on one connection (``md KEY q``,
then ``mn``): only the app's keys go, counted exactly, whatever bytes a key holds, on a
real memcached; and the client library decides the key encoding and the servers.
"""

from __future__ import annotations

import base64
import json
import socket

import pytest

from tests.conftest import run
from tests.test_memcached import deletes_seen
from tests.test_memcached_listing import args_for, fill, listed


def raw(port: int, payload: bytes, replies: int) -> list[bytes]:
    """Send ``payload`` to the server and read ``replies`` lines back."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(payload)
        reader = conn.makefile("rb")
        return [reader.readline().rstrip(b"\r\n") for _ in range(replies)]


def stored_keys(port: int) -> set[bytes]:
    """Every key on the server, URL-encoded as its dump prints them."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"lru_crawler metadump hash\r\n")
        reply = b""
        while not reply.endswith(b"END\r\n"):
            reply += conn.recv(65536)
    return {line.split()[0][4:] for line in reply.splitlines() if line.startswith(b"key=")}


def test_a_clear_takes_every_key_under_the_prefix_and_nothing_else(
    memcached_address: str, library: str
) -> None:
    port = int(memcached_address.rsplit(":", 1)[1])
    fill(memcached_address, "app:", [f"k{n}" for n in range(9000)] + ["café", "a%3Ab", "~x"])
    # Another app's keys, some looking like the prefix once URL-encoded or cased.
    fill(memcached_address, "other:", ["session"])
    fill(memcached_address, "app%3A", ["lookalike"])
    fill(memcached_address, "APP:", ["upper"])
    fill(memcached_address, "ap", ["short"])
    # A key under the prefix that the text protocol cannot carry (a space and a control
    # byte): stored through a meta set with a base64 key, as a binary-protocol client could.
    odd = base64.b64encode(b"app:odd key\x01")
    assert raw(port, b"ms " + odd + b" 1 b\r\nx\r\n", 1) == [b"HD"]
    before = deletes_seen(port)

    done = run(*args_for(memcached_address, prefix="app:"), "--json", "clear", "--yes")

    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["removed"] == 9004
    assert stored_keys(port) == {
        b"other%3Asession",
        b"app%253Alookalike",
        b"APP%3Aupper",
        b"apshort",
    }
    assert deletes_seen(port) - before == 9004  # one delete each, none twice


def test_a_key_gone_meanwhile_is_no_failure(
    memcached_address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the dump and the deletes the app may remove a key itself: the server says
    NF for it, which is not an error, and the count is what was sent."""
    from cachectl.backends import memcached_meta

    fill(memcached_address, "app_", ["a", "b", "c"])
    port = int(memcached_address.rsplit(":", 1)[1])
    original = memcached_meta.MetaDeleter.delete

    def delete(self: memcached_meta.MetaDeleter, keys: list[bytes]) -> None:
        assert raw(port, b"delete app_b\r\n", 1) == [b"DELETED"]
        original(self, keys)

    monkeypatch.setattr(memcached_meta.MetaDeleter, "delete", delete)
    done = run(*args_for(memcached_address, prefix="app_"), "clear", "--yes")
    assert done.exit_code == 0 and "removed 3 keys" in done.stdout, done.output
    assert listed(*args_for(memcached_address, prefix="app_")) == []


def test_a_delete_the_server_refuses_fails_the_clear(
    memcached_address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cachectl.backends import memcached_meta

    fill(memcached_address, "app_", ["a", "b"])
    original = memcached_meta.MetaDeleter.delete
    monkeypatch.setattr(
        memcached_meta.MetaDeleter, "delete", lambda self, keys: original(self, [b"k" * 251])
    )
    done = run(*args_for(memcached_address, prefix="app_"), "clear", "--yes")
    assert done.exit_code == 3, done.output
    assert "a delete failed" in done.stderr and done.stderr.count("error:") == 1
