"""The markers ``--once-per`` claims a run with, one small set of calls per server family.

A marker is one entry on the server the command targets, written only if it is not there
yet (Redis ``SET NX PX``, memcached ``add``, an exclusive create in CACHE_DIR), so of any
number of hosts running the same deploy hook at once exactly one gets it. It lives
outside the app's keys, so that the command it guards (a ``clear``) leaves it:

- Redis and memcached: a key that does not begin with the app's key prefix
  (``marker_key``), which every prefix-bound sweep passes over;
- FileSystemCache: a file whose name is not a key's hash (``marker_file_name``), which
  cachectl's clear, prune and keys never take (``FileSystemBackend.is_cache_file``).

Releasing deletes the marker only while it still holds the claimant's own value (another
run may have claimed it since it expired): a script on Redis, a compare then a delete
where no script can run (and on memcached, which has no conditional delete).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from cachectl.backends.redis_clients import client_errors, is_error
from cachectl.errors import BackendError

#: Where every marker name begins; a second spelling for a prefix the first begins with.
MARKER_LEADERS = ("cachectl-once:", "~cachectl-once:")
#: The files of FileSystemCache markers begin so (never a key's hex hash).
MARKER_FILE_LEADER = "cachectl-once."
#: Claims tried in a row: a marker seen, then gone (expired or released) before it
#: was read, is claimed again; three misses in a row means something else is wrong.
ATTEMPTS = 3

#: Deletes KEYS[1] only while it holds ARGV[1]: the release of a claim still ours.
_RELEASE_SCRIPT = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


def marker_key(key_prefix: str, once_id: str, hashed: bool = False) -> str:
    """The marker's key: ``cachectl-once:<prefix>:<ID>``, never beginning with the app's
    prefix (a prefix ``cache`` would take ``cachectl-once:...`` for one of its keys: the
    second leader then); ``hashed`` (memcached: at most 250 bytes, no spaces) names the
    pair by its SHA-256 instead."""
    tail = f"{key_prefix}:{once_id}"
    if hashed:
        tail = hashlib.sha256(tail.encode("utf-8", "surrogateescape")).hexdigest()
    for leader in MARKER_LEADERS:
        name = leader + tail
        if not key_prefix or not name.startswith(key_prefix):
            return name
    raise AssertionError("no prefix begins with both leaders")  # they differ at once


def marker_file_name(once_id: str) -> str:
    """The marker's file in CACHE_DIR: the ID's SHA-256, so any ID makes a safe name."""
    return (
        MARKER_FILE_LEADER + hashlib.sha256(once_id.encode("utf-8", "surrogateescape")).hexdigest()
    )


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


# Redis, Valkey, Sentinel, Cluster ---------------------------------------------------------


def redis_claim(client: Any, name: str, value: str, ttl: int) -> str | None:
    """None when this run now holds ``name``; else the value of the claim that holds it."""
    for _ in range(ATTEMPTS):
        if client.set(name, value.encode("utf-8"), nx=True, px=ttl * 1000):
            return None
        held = client.get(name)
        if held is not None:
            return _text(held)
    raise BackendError(f"the once-per marker {name} was neither claimed nor readable")


def redis_release(client: Any, name: str, value: str) -> bool:
    """Delete ``name`` if it still holds ``value``; whether it was deleted."""
    data = value.encode("utf-8")
    try:
        return bool(client.eval(_RELEASE_SCRIPT, 1, name, data))
    except client_errors() as exc:
        if not is_error(exc, "ResponseError"):
            raise
        # No scripting for this user or server: compare, then delete.
    if client.get(name) != data:
        return False
    return bool(client.delete(name))


# memcached (pylibmc, python-memcached) ----------------------------------------------------


def memcached_claim(
    client: Any, name: str, value: str, ttl: int, alive: Callable[[], None]
) -> str | None:
    """As ``redis_claim``, with memcached's ``add`` (stores only a key not there);
    ``alive`` raises for a server python-memcached lost (it answers "not stored")."""
    for _ in range(ATTEMPTS):
        if client.add(name, value, ttl):
            return None
        alive()
        held = client.get(name)
        if held is not None:
            return _text(getattr(held, "value", held))
    raise BackendError(f"the once-per marker {name} was neither claimed nor readable")


def memcached_release(client: Any, name: str, value: str) -> bool:
    held = client.get(name)
    if _text(getattr(held, "value", held)) != value:
        return False
    return bool(client.delete(name))


# FileSystemCache ----------------------------------------------------------------------------


def _expired(text: str) -> bool:
    """Whether a marker file's claim has run out (its ``expires``); a file that does not
    say is held, never taken over."""
    try:
        expires = json.loads(text).get("expires")
    except (ValueError, AttributeError):
        return False
    return isinstance(expires, (int, float)) and expires <= time.time()


@contextmanager
def _directory_lock(directory: str) -> Iterator[None]:
    """Held while an expired marker is replaced or a claim released, so that two runs
    never both remove one and create another (the claim itself is the exclusive create)."""
    import fcntl

    from cachectl.runtime.safe_files import open_regular

    descriptor = open_regular(
        os.path.join(directory, MARKER_FILE_LEADER + "lock"), os.O_RDWR | os.O_CREAT
    )
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _read(path: str) -> str | None:
    from cachectl.runtime.safe_files import read_regular

    try:
        return read_regular(path, 64 * 1024).decode("utf-8", "replace")
    except FileNotFoundError:
        return None


def file_claim(directory: str, name: str, value: str) -> str | None:
    """As ``redis_claim``: an exclusive create (0600, never through a link, never over
    a file: ``safe_files``) of ``directory/name``; a marker past its ``expires`` is
    removed under the lock, then claimed again."""
    from cachectl.runtime.safe_files import write_atomically

    path = os.path.join(directory, name)
    for _ in range(ATTEMPTS):
        try:
            # Written whole beside it, then linked into place only if nothing is there:
            # no other run ever reads a half-written marker.
            write_atomically(path, value.encode("utf-8"), overwrite=False)
            return None
        except FileExistsError:
            pass
        held = _read(path)
        if held is None:
            continue  # released meanwhile
        if not _expired(held):
            return held
        with _directory_lock(directory):
            if _read(path) == held:
                os.unlink(path)
    raise BackendError(f"the once-per marker {path} was neither claimed nor readable")


def file_release(directory: str, name: str, value: str) -> bool:
    path = os.path.join(directory, name)
    with _directory_lock(directory):
        if _read(path) != value:
            return False
        os.unlink(path)
        return True
