"""The app's keys on memcached, found by the LRU crawler: list, count, sweep, stats.

memcached has no KEYS or SCAN, but from 1.4.31 its LRU crawler dumps the keys it
holds (``memcached_crawler``). This module walks that dump on every server of
CACHE_MEMCACHED_SERVERS, keeps the keys under the app's prefix (cachelib prefixes a
key by plain concatenation, as the app's client sends it), matches the rest with the
same glob reading as ``--exclude`` (``exclusions.parse_glob``: Redis's ``SCAN MATCH``
syntax), and removes what matched on the server each key was found on, in batches of
quiet meta deletes pipelined on one connection (``memcached_meta``; the client library's
``delete_multi`` on a server before 1.6).

SpreadSASLMemcachedCache splits a value over ``KEY.0``, ``KEY.1``, ...: its keys are
listed once, as ``KEY`` (from ``KEY.0``), and removed with every chunk.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from cachectl.backends.base import BATCH_SIZE, ProgressCallback, Tally, partial_work
from cachectl.backends.exclusions import GlobError, parse_glob
from cachectl.backends.memcached_clients import pylibmc_client, python_memcached_client
from cachectl.backends.memcached_crawler import (
    CrawlerRefused,
    Dump,
    Item,
    check_crawler,
    metadump,
)
from cachectl.backends.memcached_meta import META_BATCH, MetaDeleter, open_deleter
from cachectl.errors import UsageError

if TYPE_CHECKING:
    from cachectl.backends.exclusions import Exclusions
    from cachectl.backends.statistics import CacheStats, Census

#: A chunk of a spread value other than the first (``.1`` to ``.31``).
_LATER_CHUNK = re.compile(rb"\.[1-9][0-9]*\Z")

#: The one line said where no server can list keys, with what ``clear`` can do instead.
FLUSH_ALL_HINT = (
    "; clear --flush-all --yes empties the whole server instead (flush_all: every app's keys)"
)


def key_matcher(pattern: str) -> Callable[[bytes], bool]:
    """Whether a key's rest (prefix removed) matches ``pattern``, read as Redis reads a
    ``keys GLOB`` (exit 2 for the globs ``parse_glob`` refuses)."""
    if pattern == "*":
        return lambda rest: True
    if pattern == "":
        return lambda rest: rest == b""
    try:
        return parse_glob(pattern, "the glob").matches
    except GlobError as exc:
        raise UsageError(str(exc)) from None


class CrawledKeys:
    """What MemcachedBackend can do once its servers list their keys."""

    servers: list[str]
    timeout: float
    sasl: bool
    chunked: bool
    client: Any
    describe: Callable[[], str]
    _client_errors: Callable[[], AbstractContextManager[None]]
    _ensure_alive: Callable[[Any], None]
    _server_clients: dict[str, Any]
    #: ``--backup``: where removed entries are kept first (the backend's).
    backup: Any
    _keep_and_remove_on: Callable[[str, list[bytes]], None]
    _close_meta: Callable[[], None]
    get: Callable[..., Any]  # the backend's: a value read safely
    #: Set once every server said it can list its keys.
    _listing_checked = False
    #: A meta deleter for each server a clear is deleting on (None: before 1.6).
    _deleters: dict[str, MetaDeleter | None]

    @property
    def key_prefix(self) -> str:
        raise NotImplementedError  # the backend's: the app's cachelib prefix

    def listing_refusal(self) -> str | None:
        """Why these servers cannot list their keys (asking each one), or None."""
        if self.sasl:
            return (
                f"{self.describe()} cannot list its keys: SASL servers speak only the binary "
                "protocol, and the LRU crawler's metadump is a text command"
            )
        for server in self.servers:
            try:
                check_crawler(server, self.timeout)
            except CrawlerRefused as refused:
                return f"memcached cannot list its keys: {refused}"
        return None

    def require_key_listing(self) -> None:
        """Refuse (exit 2) unless every server can list its keys; asked once per run."""
        if self._listing_checked:
            return
        why = self.listing_refusal()
        if why is not None:
            raise UsageError(why)
        self._listing_checked = True

    def _dumps(self) -> list[tuple[str, Dump]]:
        """Every server's items under the prefix. Every server is checked, then every
        server's dump read (spooled), before the first key is handed out: a refusal or a
        garbled dump comes before anything is removed."""
        self.require_key_listing()
        prefix = self.key_prefix.encode("utf-8")
        try:
            return [(server, metadump(server, self.timeout, prefix)) for server in self.servers]
        except CrawlerRefused as refused:  # a server without metadump (1.4.23-1.4.30)
            raise UsageError(f"memcached cannot list its keys: {refused}") from None

    def _walk(self, matches: Callable[[bytes], bool]) -> Iterator[tuple[str, bytes, Item]]:
        """(server, rest, item) of each key under the prefix whose rest ``matches``."""
        prefix = self.key_prefix.encode("utf-8")
        cut = len(prefix)
        for server, items in self._dumps():
            for item in items:
                if not item.key.startswith(prefix):
                    continue
                rest = item.key[cut:]
                if self.chunked:
                    if _LATER_CHUNK.search(rest):
                        continue  # counted with its first chunk
                    rest = rest.removesuffix(b".0")
                if matches(rest):
                    yield server, rest, item

    def scan_keys(self, pattern: str) -> Iterator[str]:
        matches = key_matcher(pattern)
        for _server, rest, _item in self._walk(matches):
            yield rest.decode("utf-8", "surrogateescape")

    def delete_matching(
        self,
        pattern: str,
        dry_run: bool,
        on_progress: ProgressCallback | None = None,
        exclusions: Exclusions | None = None,
    ) -> int:
        """Remove (or count) the listed keys matching ``pattern``, but those
        ``exclusions`` keep, a batch of each server's keys at a time (``_delete_on``)."""
        # Refusals (a glob, a server) come first: not failures midway, with a count.
        matches = key_matcher(pattern)
        self.require_key_listing()
        tally = Tally(on_progress)
        prefix = self.key_prefix.encode("utf-8")
        try:
            with partial_work(tally, "counted" if dry_run else "removed"), self._client_errors():
                for server, batch in self._server_batches(matches, pattern == "*"):
                    if exclusions is not None:
                        batch = [name[len(prefix) :] for name in exclusions.split(
                            [prefix + rest for rest in batch], len(prefix)
                        )]  # fmt: skip
                    if not dry_run and batch:
                        self._delete_on(server, [prefix + rest for rest in batch])
                    tally.add(len(batch))
        finally:
            for deleter in self._deleters.values():
                if deleter is not None:
                    deleter.close()
            self._deleters.clear()
            self._close_meta()
        return tally.count

    def _server_batches(
        self, matches: Callable[[bytes], bool], every: bool
    ) -> Iterator[tuple[str, list[bytes]]]:
        """Batches of matching rests, each from one server: ``META_BATCH`` keys where
        they go as meta deletes, ``BATCH_SIZE`` where they go through the client library.
        ``every`` (every key under the prefix, none chunked): batches straight from the
        dumps, no key looked at one by one but for its prefix."""
        size = BATCH_SIZE if self.chunked else META_BATCH
        if every and not self.chunked:
            prefix = self.key_prefix.encode("utf-8")
            cut = len(prefix)
            for server, dump in self._dumps():
                for keys in dump.key_batches(size):
                    yield server, [key[cut:] for key in keys if key.startswith(prefix)]
            return
        batch: list[bytes] = []
        current = ""
        for server, rest, _item in self._walk(matches):
            if batch and (server != current or len(batch) >= size):
                yield current, batch
                batch = []
            current = server
            batch.append(rest)
        if batch:
            yield current, batch

    def _delete_on(self, server: str, names: list[bytes]) -> None:
        """Delete ``names`` on the server they were found on (a key the client's hash
        would send elsewhere, left from an older server list, goes too): quiet meta
        deletes pipelined on one connection (``memcached_meta``); through the client
        library on a server before 1.6, and for spread values (every chunk, where the
        app's client put them). With ``--backup``: each kept first (``memcached_keep``)."""
        if self.backup is not None:
            self._keep_and_remove_on(server, names)
            return
        if not self.chunked:
            if server not in self._deleters:
                self._deleters[server] = open_deleter(server, self.timeout)
            deleter = self._deleters[server]
            if deleter is not None:
                deleter.delete(names)
                return
        client = self.client
        if self.chunked:
            names = [name + b".%d" % n for name in names for n in range(32)]
        elif len(self.servers) > 1:
            client = self._client_for(server)
        for start in range(0, len(names), BATCH_SIZE):
            client.delete_multi(names[start : start + BATCH_SIZE])
            self._ensure_alive(client)

    def _client_for(self, server: str) -> Any:
        """A client of the same library as the app's, for ``server`` alone."""
        if server not in self._server_clients:
            if hasattr(self.client, "behaviors"):  # pylibmc
                single = pylibmc_client([server], self.timeout)
            else:
                single = python_memcached_client([server], self.timeout)
            self._server_clients[server] = single
        return self._server_clients[server]

    def census(
        self,
        pattern: str = "*",
        sample: int | None = None,
        on_progress: ProgressCallback | None = None,
        exclusions: Exclusions | None = None,
        detail: bool = True,
    ) -> Census:
        """Totals by label (``statistics.census_label``) of the keys under the prefix
        matching ``pattern``, in one pass over every server's dump; memory is each
        item's size there, so exact. With ``sample``, the first ``sample`` keys are
        examined and the rest only counted. Version keys are read afterwards (few)."""
        from cachectl.backends.statistics import Census

        matches = key_matcher(pattern)
        self.require_key_listing()
        census = Census()
        total = 0
        tally = Tally(on_progress)
        now = time.time()
        versions: list[tuple[bytes, float | None]] = []
        with partial_work(tally, "examined"), self._client_errors():
            for _server, rest, item in self._walk(matches):
                if exclusions is not None and exclusions.keeps(rest):
                    continue
                total += 1
                if sample is None or census.examined < sample:
                    left = None if item.expires is None else max(item.expires - now, 0)
                    if census.add_key(rest, left, item.size, detail) == b"v" and detail:
                        versions.append((rest, left))
                if total % 1000 == 0:
                    tally.add(1000)
            for name, left in versions:
                stored = self.get(name.decode("utf-8", "surrogateescape"))
                text = stored.value if stored is not None else None
                census.add_version(name, text if isinstance(text, str) else None, left)
        census.total = total
        return census

    def stats(self, sample: int | None, on_progress: ProgressCallback | None = None) -> CacheStats:
        return self.census("*", sample, on_progress, detail=False).stats()

    def stats_except(
        self,
        exclusions: Exclusions,
        sample: int | None,
        on_progress: ProgressCallback | None = None,
    ) -> CacheStats:
        return self.census("*", sample, on_progress, exclusions, detail=False).stats()

    def refuse_without_prefix(self) -> str | None:
        """Why a clear must not run: without a prefix every key on the servers looks
        like the app's (as a Redis cache without prefix needs --flush-db)."""
        if self.key_prefix:
            return None
        return (
            f"no key prefix is configured, so every key on {self.describe()} would look like "
            "the app's; clear refuses. Pass --flush-all to empty the whole server on purpose"
        )

    def clear(self, dry_run: bool, on_progress: ProgressCallback | None = None) -> int:
        """The keys under the prefix, found by the crawler (the plan refused otherwise)."""
        return self.delete_matching("*", dry_run, on_progress)

    def clear_except(
        self, exclusions: Exclusions, dry_run: bool, on_progress: ProgressCallback | None = None
    ) -> int:
        refusal = self.refuse_without_prefix()
        if refusal is not None:
            raise UsageError(refusal)
        return self.delete_matching("*", dry_run, on_progress, exclusions)
