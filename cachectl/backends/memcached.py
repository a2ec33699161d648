"""memcached caches (cachelib's ``MemcachedCache``, and Flask-Caching's SASL variants).

memcached client libraries decode values themselves, unpickling whatever a
value's flags say is a pickle and inflating whatever they say is compressed, whole.
cachectl therefore builds its own client (``memcached_clients``), of the library
cachelib would pick for the app (pylibmc first, else python-memcached), whose values
are decoded by cachectl's codec within the decode limits (``decode_memcached_value``:
the restricted unpickler, at most ``max_bytes`` inflated). pylibmc inflates in C before
any Python code sees the value, so cachectl reads pylibmc's values itself, from the
server pylibmc would ask, over the text protocol (SASL servers speak only the binary
one: there pylibmc reads).

``--timeout`` bounds each whole reply (``deadline``) on python-memcached's sockets and
cachectl's own; pylibmc (libmemcached, in C) bounds each wait for the socket only.
"""

from __future__ import annotations

import pickle
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from cachectl.backends.base import (
    MISSING,
    NO_EXPIRY,
    CacheBackend,
    ClearPlan,
    Lifetime,
    ProgressCallback,
    Tally,
    batched,
    partial_work,
)
from cachectl.backends.cachelib_access import memcached_client
from cachectl.backends.deadline import DeadlineSocket
from cachectl.backends.memcached_backups import KeptEntries
from cachectl.backends.memcached_crawler import check_answers, read_item, socket_address
from cachectl.backends.memcached_keep import SPREAD_MAX_CHUNKS, MetaSessions, backup_refusal
from cachectl.backends.memcached_keys import FLUSH_ALL_HINT, CrawledKeys
from cachectl.codec.limits import current_limits
from cachectl.codec.stored import (
    MEMCACHED_ZLIB,
    StoredValue,
    decode_memcached_value,
    decode_pickle,
)
from cachectl.errors import BackendError, UsageError

#: Flask-Caching's SpreadSASLMemcachedCache chunk size (maxchunk: SPREAD_MAX_CHUNKS).
SPREAD_CHUNK_SIZE = 1048448
#: memcached reads an expiry up to 30 days as seconds from now, beyond as a Unix time.
_RELATIVE_EXPIRY_LIMIT = 30 * 24 * 3600
#: The last Unix time memcached can hold as an expiry (a signed 32-bit number).
_LAST_EXPIRY = 2**31 - 1


class MemcachedBackend(KeptEntries, CrawledKeys, CacheBackend):
    """A cachelib MemcachedCache over one of cachectl's safe clients.

    Keys are listed, counted, swept and cleared by prefix through the LRU crawler
    (``CrawledKeys``) where the servers allow it; emptying the whole server
    (``flush_all``) is only ever what the operator asked for (``clear --flush-all``).
    A delete never says whether a listed key existed.
    """

    kind = "memcached"
    can_set_lifetimes = True
    can_flush_all = True
    backup_family = "memcached"

    def __init__(
        self,
        cache: Any,
        servers: list[str],
        chunked: bool = False,
        sasl: bool = False,
        timeout: float = 5.0,
    ) -> None:
        super().__init__(cache)
        # cachectl hands cachelib one of its safe clients, which cachelib keeps as is.
        self.client = memcached_client(cache)
        self.servers = servers
        #: Flask-Caching's SpreadSASLMemcachedCache splits a pickle over KEY.0, KEY.1, ...
        self.chunked = chunked
        #: SASL servers speak only the binary protocol.
        self.sasl = sasl
        self.timeout = timeout
        #: Clients for one server each, to delete a key where the crawler found it.
        self._server_clients: dict[str, Any] = {}
        #: Meta deleters for one server each, while a clear deletes (``memcached_meta``).
        self._deleters = {}
        # Listing takes a text command; SASL servers speak only the binary protocol.
        # (A server whose crawler is off is refused when it is asked.)
        self.can_list_keys = not sasl
        self.cannot_exclude = None
        #: ``--backup`` keeps entries through meta commands, on the text protocol.
        self.cannot_back_up = backup_refusal(servers, sasl)
        self._meta: MetaSessions | None = None
        if sasl:
            self.cannot_exclude = (
                "SASL memcached servers cannot list their keys (binary protocol only), so "
                "--exclude cannot be applied"
            )

    @property
    def key_prefix(self) -> str:
        return self.cache.key_prefix or ""

    @property
    def can_show_raw_bytes(self) -> bool:  # type: ignore[override]
        """memcached clients decode values and hand back no bytes, except for the
        spread variant: its chunks are plain bytes, joined here into the pickle."""
        return self.chunked

    def describe(self) -> str:
        return "memcached " + ",".join(self.servers)

    #: memcached's text protocol: at most 250 bytes, no whitespace or control bytes.
    MAX_KEY_BYTES = 250

    def check_key(self, key: str) -> None:
        stored = (self.key_prefix + key).encode("utf-8")
        if len(stored) > self.MAX_KEY_BYTES:
            raise UsageError(
                f"memcached keys are at most {self.MAX_KEY_BYTES} bytes with the prefix; "
                f"this one is {len(stored)}"
            )
        if any(byte <= 32 or byte == 127 for byte in stored):
            raise UsageError(f"memcached keys cannot hold spaces or control characters: {key!r}")

    @contextmanager
    def _client_errors(self) -> Iterator[None]:
        """pylibmc raises its own errors (python-memcached stays silent)."""
        try:
            yield
        except (UsageError, KeyboardInterrupt):
            raise
        except OSError as exc:  # python-memcached lets a reset escape from a few paths
            raise BackendError(f"{self.describe()}: lost the connection: {exc}") from exc
        except Exception as exc:
            if type(exc).__module__.split(".")[0] not in ("pylibmc", "_pylibmc", "memcache"):
                raise
            raise BackendError(f"{self.describe()}: {exc}") from exc

    def _ensure_alive(self, client: Any = None) -> None:
        """python-memcached never raises: it marks a server it lost as dead and
        answers as if the key were missing. A dead server is exit 3, never a miss
        and never a success. ``client``: another client than the backend's own (one
        server's, for a clear)."""
        hosts = getattr(self.client if client is None else client, "servers", None)
        if not isinstance(hosts, list):
            return  # pylibmc raises instead
        now = time.time()
        dead = [host for host in hosts if getattr(host, "deaduntil", 0) > now]
        if dead:
            raise BackendError(
                f"{self.describe()}: lost the connection to "
                + ", ".join(
                    f"{getattr(host, 'ip', '?')}:{getattr(host, 'port', '?')}" for host in dead
                )
            )

    def check(self) -> None:
        """Every server answers ``stats``: over cachectl's own connections where they speak
        the text protocol, the whole reply within the timeout (pylibmc's would wait on
        each byte of a server sending them slowly, not on the reply)."""
        if not self.sasl and all(socket_address(server) for server in self.servers):
            for server in self.servers:
                check_answers(server, self.timeout)
            return
        with self._client_errors():
            answered = len(self.client.get_stats())
        if answered < len(self.servers):
            raise BackendError(
                f"{self.describe()}: {len(self.servers) - answered} of {len(self.servers)} "
                "servers did not answer"
            )

    def get(self, key: str, unsafe: bool = False) -> StoredValue | None:
        self.client.allow_unsafe(unsafe)
        with self._client_errors():
            if self.chunked:
                return self._get_chunked(key, unsafe)
            server = self._server_read_here(key)
            if server is not None:
                value = self._read_here(server, key, unsafe)
            else:
                value = self.cache.get(key)
                self._ensure_alive()
        if value is not None and not isinstance(value, StoredValue):
            value = StoredValue(None, value, "memcached")  # a client cachectl did not build
        if value is None or (value.value is None and value.error is None):
            return None  # Flask-Caching cannot tell a stored None from a miss either
        return value

    def _server_read_here(self, key: str) -> str | None:
        """The server pylibmc would ask for ``key`` (its own hash and distribution), where
        cachectl reads it itself: over the text protocol (not SASL), an address it reads."""
        hash_key = getattr(self.client, "hash", None)
        addresses = getattr(self.client, "addresses", None)
        if self.sasl or not hasattr(self.client, "behaviors") or hash_key is None:
            return None  # python-memcached: its reads are bounded inside (SafeClient)
        if not isinstance(addresses, list) or len(addresses) != len(self.servers):
            return None
        server = str(addresses[hash_key(self.key_prefix + key)])
        return server if socket_address(server) is not None else None

    def _read_here(self, server: str, key: str, unsafe: bool) -> StoredValue | None:
        """``key`` read from ``server`` over cachectl's own connection, decoded as pylibmc
        would (the same flags), within the limits: no more of it than inflates past
        ``max_bytes`` (deflate spends under two bytes on each byte it inflates to)."""
        limits = current_limits()
        name = (self.key_prefix + key).encode("utf-8")
        found = read_item(server, name, self.timeout, 2 * limits.max_bytes + 65536)
        if found is None:
            return None
        data, flags, size = found
        if len(data) < size and not flags & MEMCACHED_ZLIB:
            data = data[: limits.max_bytes]  # shown in part, below; a pickle is refused
        stored = decode_memcached_value(data, flags, unsafe, limits)
        if len(data) < size and stored.truncated is None and stored.error is None:
            stored.truncated = f"{len(data):,} of {size:,} bytes read"
        return stored

    def _get_chunked(self, key: str, unsafe: bool) -> StoredValue | None:
        # The chunks are plain bytes; only their concatenation is a pickle.
        parts = self.cache.get_many(*(f"{key}.{n}" for n in range(SPREAD_MAX_CHUNKS)))
        raw = b"".join(_chunk(part) for part in parts if part is not None)
        return decode_pickle(raw, raw, unsafe) if raw else None

    def _refuse_past_2038(self, seconds: int | None) -> None:
        """memcached reads a lifetime over 30 days as a Unix time, kept in 32 bits: past
        2038 the server takes the item and drops it at once. Refused, nothing sent."""
        if seconds is None or seconds <= _RELATIVE_EXPIRY_LIMIT:
            return
        if seconds + int(time.time()) > _LAST_EXPIRY:
            self.refuse(
                "memcached keeps an expiry as a 32-bit Unix time, so no later than "
                f"2038-01-19: at most {_LAST_EXPIRY - int(time.time())} seconds from now"
            )

    def set(self, key: str, value: Any, timeout: int | None) -> None:
        self._refuse_past_2038(timeout)
        self._keep_existing(key)
        with self._client_errors():
            if self.chunked:
                self._set_chunked(key, value, timeout)
            elif not self.cache.set(key, value, timeout=timeout):
                self._ensure_alive()
                raise BackendError(f"{self.describe()}: the server did not store the value")

    def _set_chunked(self, key: str, value: Any, timeout: int | None) -> None:
        serialized = pickle.dumps(value, 2)  # the protocol Flask-Caching spreads with
        offsets = range(0, len(serialized), SPREAD_CHUNK_SIZE)
        if len(offsets) > SPREAD_MAX_CHUNKS:
            raise UsageError(f"the value needs more than {SPREAD_MAX_CHUNKS} chunks")
        chunks = {
            f"{key}.{n}": serialized[offset : offset + SPREAD_CHUNK_SIZE]
            for n, offset in enumerate(offsets)
        }
        self.cache.set_many(chunks, timeout=timeout)

    def delete(self, keys: Iterable[str], on_progress: ProgressCallback | None = None) -> None:
        tally = Tally(on_progress)
        if self.backup is not None:  # kept first, then removed over meta commands
            with partial_work(tally, "sent"):
                self._delete_keeping(keys, tally)
            return None
        with partial_work(tally, "sent"), self._client_errors():
            for batch in batched(keys):
                names = batch
                if self.chunked:
                    names = [f"{key}.{n}" for key in batch for n in range(SPREAD_MAX_CHUNKS)]
                self.cache.delete_many(*names)
                self._ensure_alive()
                tally.add(len(batch))
        return None

    def claim_once(self, once_id: str, value: str, ttl: int) -> str | None:
        """The marker's key is hashed: memcached keys are short and hold no spaces."""
        from cachectl.backends import once_markers as markers

        with self._client_errors():
            name = markers.marker_key(self.key_prefix, once_id, hashed=True)
            return markers.memcached_claim(self.client, name, value, ttl, self._ensure_alive)

    def release_once(self, once_id: str, value: str) -> bool:
        from cachectl.backends import once_markers as markers

        with self._client_errors():
            name = markers.marker_key(self.key_prefix, once_id, hashed=True)
            return markers.memcached_release(self.client, name, value)

    def require_lifetimes(self, change: bool) -> None:
        """Reading an expiry takes the meta command ``mg``, which neither client library
        sends: cachectl sends it itself, on the one server there is. With several, which
        one holds a key is the client library's choice (a stale copy may sit on another),
        and SASL servers speak only the binary protocol, which has no such command."""
        if change:
            return
        why = None
        if self.sasl:
            why = "SASL servers speak only the binary protocol, which has no command for it"
        elif len(self.servers) != 1 or socket_address(self.servers[0]) is None:
            why = (
                "with several servers, which one holds a key is the client library's choice "
                "(it can be read with one server only)"
            )
        if why is not None:
            self.refuse(
                f"memcached cannot say how long a key has left here: {why}; "
                "expire and persist work (memcached's touch)"
            )

    def lifetimes(self, keys: list[str]) -> list[Lifetime]:
        """``mg KEY t`` (memcached 1.6 and later) on the one server, over its own
        connection; the value is not fetched."""
        self.require_lifetimes(change=False)
        target = socket_address(self.servers[0])
        assert target is not None  # else require_lifetimes refused
        family, address = target
        found = []
        try:
            with socket.socket(family, socket.SOCK_STREAM) as plain:
                plain.settimeout(self.timeout)
                plain.connect(address)
                sock = DeadlineSocket(plain, self.timeout)  # each whole reply in time
                replies = sock.makefile("rb")
                for key in keys:
                    sock.sendall(b"mg " + (self.key_prefix + key).encode("utf-8") + b" t\r\n")
                    sock.expect_reply()
                    found.append(self._meta_lifetime(replies.readline(256)))
        except OSError as exc:
            raise BackendError(f"{self.describe()}: {exc}") from exc
        return found

    def _meta_lifetime(self, line: bytes) -> Lifetime:
        words = line.split()
        if words == [b"EN"]:
            return MISSING
        # HD (OK before memcached 1.6.10) and the flags asked for: t-1 is no expiry.
        if words and words[0] in (b"HD", b"OK"):
            for word in words[1:]:
                if word.startswith(b"t") and word[1:].lstrip(b"-").isdigit():
                    seconds = int(word[1:])
                    return NO_EXPIRY if seconds < 0 else Lifetime(True, seconds)
        if not line.endswith(b"\n"):
            raise BackendError(f"{self.describe()}: no reply to mg (the connection was lost)")
        if words[:1] == [b"ERROR"]:
            self.refuse(
                f"{self.describe()} does not know the meta command mg (memcached before 1.6), "
                "the only way to read an expiry; expire and persist work (touch)"
            )
        raise BackendError(f"{self.describe()}: unexpected reply to mg: {line[:60]!r}")

    def set_lifetime(self, key: str, seconds: int | None) -> bool:
        """memcached's ``touch``: a new expiry, the value untouched (0: never expires)."""
        expiry = 0 if seconds is None else seconds
        self._refuse_past_2038(expiry)
        self._keep_existing(key)
        if expiry > _RELATIVE_EXPIRY_LIMIT:
            expiry += int(time.time())
        prefixed = self.key_prefix + key
        with self._client_errors():
            if not self.chunked:
                touched = bool(self.client.touch(prefixed, expiry))
            else:  # every chunk KEY.0, KEY.1, ... there is; they are contiguous
                touched = False
                for n in range(SPREAD_MAX_CHUNKS):
                    if not self.client.touch(f"{prefixed}.{n}", expiry):
                        break
                    touched = True
        # python-memcached answers a lost server as a miss: that is exit 3, not "not found".
        self._ensure_alive()
        return touched

    def clear_plan(self) -> ClearPlan:
        """The keys under the prefix, once every server has said it can list them;
        else a refusal naming ``--flush-all`` (nothing is asked, nothing removed)."""
        refusal = self.refuse_without_prefix()
        if refusal is None:
            listing = self.listing_refusal()
            refusal = None if listing is None else listing + FLUSH_ALL_HINT
        scope = f"keys under the prefix {self.key_prefix!r}"
        return ClearPlan(self.describe(), scope, refused=refusal)

    def flush_all_plan(self) -> ClearPlan:
        refused = None
        if self.backup is not None:
            refused = (
                "--backup: clear --flush-all empties every app's keys on the server at once "
                "(flush_all), which cannot be kept first; nothing was done. clear without "
                "--flush-all keeps and removes the app's keys (found by the LRU crawler)"
            )
        return ClearPlan(
            self.describe(),
            "every key on the server, of every app (flush_all)",
            whole_server=True,
            needs_yes="clear --flush-all empties the whole server: pass --yes to flush it",
            refused=refused,
        )

    def flush_all(self, dry_run: bool) -> None:
        """``flush_all`` on every server: every app's keys, uncounted."""
        if not dry_run:
            with self._client_errors():
                self.cache.clear()
            self._ensure_alive()


def _chunk(part: Any) -> bytes:
    """A chunk of a spread value, as the client decoded it (bytes: flags 0)."""
    value = part.value if isinstance(part, StoredValue) else part
    return value if isinstance(value, bytes) else b""
