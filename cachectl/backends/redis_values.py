"""One Redis value read within the decode limits: its length first, then what is shown.

A plain ``GET`` of a 300 MB value makes redis-py hold it (and its parser a copy or two:
near 1 GB of memory) only for the codec to refuse decoding it past ``max_bytes``. So
``get`` asks for the length (``STRLEN``) and the first bytes (``GETRANGE``) together, in
one round trip: nearly every cache value fits those first bytes, and costs no more than a
``GET``. A longer one is read again up to the limit (one more round trip); past it, only
its head is kept, and ``get --raw`` streams the rest in chunks, never holding it whole.
Every reply is then small enough to arrive well within ``--timeout`` (``redis_deadline``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cachectl.backends.base import batched
from cachectl.backends.redis_clients import errors_named, is_cluster, is_error
from cachectl.backends.redis_sweep import refuses_scripts, scan_all
from cachectl.errors import BackendError

#: Bytes read with the length in the first round trip: most cache values are shorter.
FIRST_READ = 64 * 1024
#: Bytes ``get --raw`` asks for in one ``GETRANGE`` past what ``get`` read: a reply that
#: size arrives within a second on any link faster than 4 MB/s.
RAW_CHUNK = 4 * 1024 * 1024
#: Rounds after which a value that keeps changing under the read is taken as last seen.
_TRIES = 4


def read_head(client: Any, name: Any, want: int) -> tuple[bytes, int] | None:
    """The first ``want`` bytes of the string at ``name`` and its length in bytes, in one
    round trip, or None where there is no such key (a wrong type is the server's
    WRONGTYPE error)."""
    for _ in range(_TRIES):
        pipe = client.pipeline(transaction=False)
        pipe.exists(name)
        pipe.strlen(name)
        pipe.getrange(name, 0, want - 1)
        replies = pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        exists, size, head = int(replies[0]), int(replies[1]), bytes(replies[2])
        if not exists:
            return None
        if len(head) == min(size, want):  # else the value changed between the two
            break
    return head, max(size, len(head))


def stream_rest(client: Any, name: Any, head: bytes, size: int) -> Iterator[bytes]:
    """``head``, then the rest of the ``size`` bytes at ``name``, a ``RAW_CHUNK`` per
    round trip; a value whose length changes meanwhile (rewritten by the app) is a
    failure, not a mix of two values."""
    yield head
    offset = len(head)
    while offset < size:
        pipe = client.pipeline(transaction=False)
        pipe.strlen(name)
        pipe.getrange(name, offset, min(offset + RAW_CHUNK, size) - 1)
        now, chunk = pipe.execute()
        if int(now) != size or not chunk:
            raise BackendError(
                f"{name!r} changed while it was read ({size:,} bytes, now {int(now):,}); "
                f"{offset:,} bytes were written"
            )
        yield bytes(chunk)
        offset += len(chunk)


#: One batch's values (KEYS), each only if it is a string of at most ARGV[1] bytes:
#: else its length (-1: not a string), so a huge value never crosses the wire whole.
_BOUNDED_GET = """
local limit = tonumber(ARGV[1])
local out = {}
for i, name in ipairs(KEYS) do
  local size = redis.pcall('STRLEN', name)
  if type(size) ~= 'number' then out[i] = -1
  elseif size > limit then out[i] = size
  else out[i] = redis.call('GET', name) or false end
end
return out
"""
#: Keys fetched in one round trip by ``scan_values``.
VALUES_BATCH = 1000


def scan_values(client: Any, match: str, limit: int) -> Iterator[tuple[bytes, Any]]:
    """Each key matching ``match`` with its value: the bytes, or the length of a string
    over ``limit`` bytes (not read), -1 for a key that holds no string, None for one gone
    since SCAN found it. Streamed, a batch of keys per round trip: one bounded script
    call each, or MGET where the server runs no script (a value is then read whole), a
    GET per key on a cluster (whose keys of a batch lie in many slots)."""
    import hashlib

    sha = hashlib.sha1(_BOUNDED_GET.encode()).hexdigest()
    scripted, first = not is_cluster(client), True
    for names in batched(scan_all(client, match), VALUES_BATCH):
        values: list[Any] = []
        if scripted:
            try:
                values = _bounded_batch(client, sha, names, limit)
            except errors_named("ResponseError") as exc:
                if not refuses_scripts(exc, first):
                    raise
                scripted = False
            first = False
        if not scripted and is_cluster(client):
            pipe = client.pipeline(transaction=False)
            for name in names:
                pipe.get(name)
            values = [-1 if isinstance(v, Exception) else v for v in pipe.execute(False)]
        elif not scripted:
            values = client.mget(names)
        yield from zip(names, values)


def _bounded_batch(client: Any, sha: str, names: list[Any], limit: int) -> list[Any]:
    try:
        return list(client.evalsha(sha, len(names), *names, limit))
    except Exception as exc:
        if not is_error(exc, "NoScriptError"):
            raise
    return list(client.eval(_BOUNDED_GET, len(names), *names, limit))
