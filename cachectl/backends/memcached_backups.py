"""What MemcachedBackend does with ``--backup`` and ``restore``: which server holds each
key, which names a key has (every chunk of a spread value), the run's meta connections
checked before the first change, and the paths that keep before they remove or change
(``delete``, a clear's batches, ``set`` over a key, ``expire``/``persist``). The meta
commands themselves are ``memcached_keep``'s."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from cachectl.backends.base import Tally, batched
from cachectl.backends.memcached_keep import SPREAD_MAX_CHUNKS, MetaSessions, by_server
from cachectl.backup.reader import RestoreCounts
from cachectl.errors import BackendError, UsageError

if TYPE_CHECKING:
    from cachectl.backup.file_format import Entry
    from cachectl.backup.writer import Keeper

#: What ``--backup`` needs meta commands for, said where a server has none.
_KEEPING = "--backup can read an entry's flags and lifetime to keep it"


class KeptEntries:
    """What MemcachedBackend does with ``--backup`` and ``restore`` (meta commands)."""

    servers: list[str]
    timeout: float
    sasl: bool
    chunked: bool
    client: Any
    cannot_back_up: str | None
    backup: Any
    _meta: MetaSessions | None
    describe: Callable[[], str]
    keeper: Callable[[], Keeper | None]
    _client_errors: Callable[[], AbstractContextManager[None]]

    @property
    def key_prefix(self) -> str:
        raise NotImplementedError  # the backend's: the app's cachelib prefix

    def _delete_keeping(self, keys: Iterable[str], tally: Tally) -> None:
        """``delete`` with ``--backup``: each batch kept, then removed (meta commands) on
        the server the app's client sends each key to."""
        try:
            for batch in batched(keys):
                for server, names in by_server(self._names(batch), self._holder).items():
                    self._meta_sessions().on(server).keep_and_remove(self.keeper, names)
                tally.add(len(batch))
        finally:
            self._close_meta()

    def _names(self, keys: Iterable[str]) -> list[bytes]:
        """The names on the server of ``keys``: every chunk a spread value may have."""
        names = [(self.key_prefix + key).encode("utf-8", "surrogateescape") for key in keys]
        if self.chunked:
            return [name + b".%d" % n for name in names for n in range(SPREAD_MAX_CHUNKS)]
        return names

    def _holder(self, name: bytes) -> str:
        """The server the app's client library sends ``name`` to (its hash, its order)."""
        if len(self.servers) == 1:
            return self.servers[0]
        with self._client_errors():
            if hasattr(self.client, "behaviors"):  # pylibmc: libmemcached's distribution
                return str(self.client.addresses[self.client.hash(name)])
            host, _name = self.client._get_server(name)  # python-memcached's, as it sends
        if host is None:
            raise BackendError(f"{self.describe()}: no server is reachable")
        return str(self.servers[self.client.servers.index(host)])

    def _meta_sessions(self, purpose: str = _KEEPING) -> MetaSessions:
        """Meta connections for this run, every server checked before the first change."""
        if self._meta is None:
            sessions = MetaSessions(self.servers, self.timeout, purpose)
            try:
                sessions.check()
            except BaseException:
                sessions.close()
                raise
            self._meta = sessions
        return self._meta

    def _close_meta(self) -> None:
        if self._meta is not None:
            self._meta.close()
            self._meta = None

    def _keep_existing(self, key: str) -> None:
        """With ``--backup``: ``key`` as it is now (if it is), kept before it changes."""
        if self.backup is None:
            return
        try:
            for server, names in by_server(self._names([key]), self._holder).items():
                self._meta_sessions().on(server).keep(self.keeper, names)
        finally:
            self._close_meta()

    def _keep_and_remove_on(self, server: str, names: list[bytes]) -> None:
        """A clear's batch, found on ``server``: kept, then removed (spread values: each
        chunk on the server the app's client put it on)."""
        if self.chunked:
            chunks = [name + b".%d" % n for name in names for n in range(SPREAD_MAX_CHUNKS)]
            for holder, held in by_server(chunks, self._holder).items():
                self._meta_sessions().on(holder).keep_and_remove(self.keeper, held)
        else:
            self._meta_sessions().on(server).keep_and_remove(self.keeper, names)

    def restore(
        self, entries: list[Entry], taken_ms: int, replace: bool, dry_run: bool
    ) -> RestoreCounts:
        """Each entry stored on the server the app's client reads it from (meta ``ms``:
        its bytes, its flags, what is left of its lifetime; add unless ``replace``)."""
        if self.sasl:
            raise UsageError(
                "restore: SASL memcached servers speak only the binary protocol, and cachectl "
                "writes entries back with meta commands (text protocol); nothing was restored"
            )
        if self.cannot_back_up is not None:
            raise UsageError(f"restore: {self.cannot_back_up}")
        counts = RestoreCounts()
        grouped: dict[str, list[Entry]] = {}
        prefix = self.key_prefix.encode()
        for entry in entries:
            if not counts.outside(entry.name, prefix):
                grouped.setdefault(self._holder(entry.name), []).append(entry)
        try:
            sessions = self._meta_sessions("restore can write an entry with its flags")
            for server, held in grouped.items():
                sessions.on(server).store(held, taken_ms, replace, dry_run, counts)
        finally:
            self._close_meta()
        return counts
