"""Redis, Redis Sentinel and Redis Cluster caches (cachelib's ``RedisCache`` family), and
Valkey servers (cachelib's ``ValkeyCache``): the same protocol, through redis-py or the
valkey client (``redis_clients``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from cachectl.backends import once_markers
from cachectl.backends.base import (
    MISSING,
    NO_EXPIRY,
    CacheBackend,
    ClearPlan,
    Lifetime,
    ProgressCallback,
    StoredEntry,
    Tally,
    batched,
    escape_glob,
    partial_work,
)
from cachectl.backends.redis_clients import (
    client_errors,
    describe_client,
    is_cluster,
    is_error,
    without_client_reprs,
)
from cachectl.backends.redis_deadline import bound_each_reply
from cachectl.backends.redis_sweep import is_refused_permission, log, scan_all, sweep
from cachectl.codec.limits import current_limits
from cachectl.codec.stored import (
    StoredValue,
    decode_redis_head,
    decode_redis_value,
    encode_redis_value,
    shown_in_part,
)
from cachectl.errors import BackendError, ConfigError, UsageError

if TYPE_CHECKING:
    from cachectl.backends.exclusions import Exclusions
    from cachectl.backends.redis_restore import Restorer
    from cachectl.backends.statistics import CacheStats, Census
    from cachectl.backup.reader import RestoreCounts

#: Why clear refuses a Redis cache without key prefix; {target} is the database.
_NO_PREFIX_REFUSAL = (
    "no key prefix is configured, so every key in {target} would look like the "
    "app's; clear refuses. Pass --flush-db to empty that whole database on purpose"
)


def _raised_by_redis_py(exc: BaseException) -> bool:
    """Whether ``exc`` came out of redis-py or the valkey client (their parsers raise plain
    ValueError on a garbled reply), not out of cachectl's own code, whose bugs must stay
    exit 4."""
    frame = exc.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    module = frame.tb_frame.f_globals.get("__name__", "") if frame is not None else ""
    return str(module).startswith(("redis.", "valkey."))


def _refused_permission(exc: BaseException) -> bool:
    """``redis_sweep.is_refused_permission``, for the valkey client's errors too."""
    if is_refused_permission(exc):
        return True
    text = str(exc)
    return is_error(exc, "ResponseError") and (
        is_error(exc, "NoPermissionError") or "NOPERM" in text or "no permissions" in text
    )


class RedisBackend(CacheBackend):
    """A Redis cache in cachelib's format (read and written here, or through the app's
    cachelib object for a CACHE_SERIALIZER), SCAN + UNLINK for clears."""

    kind = "redis"
    can_list_keys = True
    cannot_exclude = None
    can_show_raw_bytes = True
    deletes_any_key_bytes = True
    can_read_lifetimes = True
    can_set_lifetimes = True

    def __init__(
        self,
        client: Any,
        key_prefix: str,
        default_timeout: int,
        cache: Any = None,
        serializer: Any = None,
        family: str | None = None,
    ) -> None:
        super().__init__(cache)
        self.client = client
        # --timeout bounds each whole reply, not each read of the socket.
        bound_each_reply(client)
        self._key_prefix = key_prefix
        self.default_timeout = default_timeout
        #: A non-default CACHE_SERIALIZER, or None for cachelib's own format.
        self.serializer = serializer
        self._unlink_supported = True
        #: ``valkey`` where the app names its server so: what ``describe`` says.
        self.family = family

    @classmethod
    def for_client(
        cls, client: Any, key_prefix: str, default_timeout: int, family: str | None = None
    ) -> RedisBackend:
        """A cache cachectl reaches with its own client, in cachelib's default format
        (which cachectl reads and writes itself: no cachelib object needed)."""
        return cls(client, key_prefix, default_timeout, family=family)

    @classmethod
    def for_cachelib(cls, cache: Any, serializer: Any = None) -> RedisBackend:
        """A cachelib Redis cache (the app's own, or one built for its CACHE_SERIALIZER,
        whose writes then go through it)."""
        from cachectl.backends.cachelib_access import (
            is_valkey_cache,
            redis_client,
            redis_key_prefix,
        )

        return cls(
            redis_client(cache),
            redis_key_prefix(cache),
            int(cache.default_timeout),
            cache=cache,
            serializer=serializer,
            family="valkey" if is_valkey_cache(cache) else None,
        )

    @property
    def key_prefix(self) -> str:
        if self.cache is None:
            return self._key_prefix
        # A cachelib cache may take its prefix from a callable: asked each time.
        from cachectl.backends.cachelib_access import redis_key_prefix

        return redis_key_prefix(self.cache)

    @property
    def is_cluster(self) -> bool:
        return is_cluster(self.client)

    def describe(self) -> str:
        return describe_client(self.client, self.family)

    @contextmanager
    def server_errors(self) -> Iterator[None]:
        try:
            yield
        except TypeError as exc:  # redis-py builds connections lazily, options included
            raise ConfigError(
                f"{self.describe()}: the client refuses an option of CACHE_OPTIONS or of the "
                f"URL's query: {exc}"
            ) from exc
        except ValueError as exc:
            if not _raised_by_redis_py(exc):
                raise
            # redis-py's reply parser meeting bytes that are not RESP: a garbled reply, or
            # not a Redis server at all. The connection is lost for this command.
            raise BackendError(
                f"{self.describe()}: the server's reply could not be read (garbled, or not "
                f"Redis): {exc}"
            ) from exc
        except UnicodeError as exc:  # a host name IDNA cannot encode (a label over 63)
            raise ConfigError(f"{self.describe()}: the host name is not valid: {exc}") from exc
        except client_errors() as exc:  # redis-py's, and the valkey client's
            message = f"{self.describe()}: {type(exc).__name__}: {without_client_reprs(exc)}"
            if is_error(exc, "OutOfMemoryError") or str(exc).startswith("OOM"):
                message = (
                    f"{self.describe()}: the server is out of memory and evicts nothing "
                    f"(maxmemory with a noeviction policy), so it refuses writes: {exc}"
                )
            elif is_error(exc, "TimeoutError"):
                message += " (no whole reply within --timeout)"
            elif _refused_permission(exc):
                message = (
                    f"{self.describe()}: the server's user is not allowed this command "
                    f"(an ACL): {exc}"
                )
            if is_error(exc, "AuthenticationError") or "NOAUTH" in str(exc):
                message += (
                    " (a password is needed or wrong: CACHE_REDIS_PASSWORD; a file written "
                    "by config --write leaves it out, give it with FLASK_CACHE_REDIS_PASSWORD "
                    "and --env)"
                )
            raise BackendError(message) from exc

    def check(self) -> None:
        with self.server_errors():
            self.client.ping()

    def get(self, key: str, unsafe: bool = False) -> StoredValue | None:
        """The value within the decode limits: a value longer than ``max_bytes`` (and a
        pickle's ``!``) is not read past that (``redis_values``); a cluster asks the
        key's node."""
        from cachectl.backends.redis_values import FIRST_READ, read_head

        limits = current_limits()
        limit = limits.max_bytes + 1  # a pickle's "!", then at most max_bytes of pickle
        name = self.key_prefix + key
        with self.server_errors():
            found = read_head(self.client, name, min(limit, FIRST_READ))
            if found is None:
                return None
            head, size = found
            if size > len(head) and (size <= limit or shown_in_part(head, self.serializer)):
                found = read_head(self.client, name, limit)  # a long value: up to the limit
                if found is None:
                    return None
                head, size = found
        return decode_redis_head(head, size, self.serializer, unsafe, limits)

    def raw_chunks(self, key: str, stored: StoredValue) -> Iterator[bytes]:
        """The head ``get`` read, then the rest in chunks (``redis_values.stream_rest``)."""
        from cachectl.backends.redis_values import stream_rest

        head = stored.raw or b""
        with self.server_errors():
            yield from stream_rest(self.client, self.key_prefix + key, head, stored.size or 0)

    def set(self, key: str, value: Any, timeout: int | None) -> None:
        """As the app's ``cache.set``: None is the default timeout, 0 never expires. The
        app's CACHE_SERIALIZER writes through cachelib; the default format is written
        here, with a pickle protocol an app on any Python 3 reads."""
        self._keep_one(key)
        if self.serializer is not None and self.cache is not None:
            with self.server_errors():
                self.cache.set(key, value, timeout=timeout)
            return
        if timeout is None:
            timeout = self.default_timeout
        with self.server_errors():
            self.client.set(self.key_prefix + key, encode_redis_value(value), ex=timeout or None)

    def _unlink(self, names: list[Any]) -> int:
        """Remove ``names`` (full keys) in one round trip; how many existed."""
        if self.is_cluster:
            # A multi-key command must stay within one hash slot; the cluster
            # pipeline routes each key to its own node instead.
            pipe = self.client.pipeline(transaction=False)
            for name in names:
                pipe.unlink(name)
            return int(sum(pipe.execute()))
        if self._unlink_supported:
            try:
                return int(self.client.unlink(*names))
            except client_errors() as exc:
                if not is_error(exc, "ResponseError") or (
                    "unknown command" not in str(exc).lower() and not _refused_permission(exc)
                ):
                    raise
                # Redis < 4, or a user not allowed UNLINK: DEL removes the same keys.
                self._unlink_supported = False
                log.debug("UNLINK refused (%s): removing with DEL instead", exc)
        return int(self.client.delete(*names))

    def delete(self, keys: Iterable[str], on_progress: ProgressCallback | None = None) -> int:
        tally = Tally(on_progress)
        with partial_work(tally, "removed"), self.server_errors():
            keeper = self.keeper()
            for batch in batched(keys):
                # Bytes: a key that is not UTF-8 (listed with surrogates) is sent as stored.
                prefix = self.key_prefix
                names = [(prefix + key).encode("utf-8", "surrogateescape") for key in batch]
                if keeper is not None:
                    from cachectl.backends.redis_keep import keep

                    names = keep(self.client, keeper, names)  # on disk before it goes
                tally.add(self._unlink(names) if names else 0)
        return tally.count

    def _keep_one(self, key: str) -> None:
        """With ``--backup``: ``key`` as it is now, kept before it is overwritten."""
        if self.backup is not None:
            from cachectl.backends.redis_keep import keep_names

            with self.server_errors():
                keep_names(self, [(self.key_prefix + key).encode("utf-8", "surrogateescape")])

    backup_family, cannot_back_up, restores_laid_out = "redis", None, True

    def backup_section(self) -> dict[str, Any]:
        from cachectl.backends.redis_keep import database_of

        return {**super().backup_section(), "database": database_of(self.client)}

    def claim_once(self, once_id: str, value: str, ttl: int) -> str | None:
        name = once_markers.marker_key(self.key_prefix, once_id)
        with self.server_errors():
            return once_markers.redis_claim(self.client, name, value, ttl)

    def release_once(self, once_id: str, value: str) -> bool:
        name = once_markers.marker_key(self.key_prefix, once_id)
        with self.server_errors():
            return once_markers.redis_release(self.client, name, value)

    _restorer: Restorer | None = None  # while a restore runs

    def restore_laid_out(
        self, count: int, laid_out: bytes, taken_ms: int, replace: bool, dry_run: bool
    ) -> RestoreCounts:
        from cachectl.backends.redis_restore import Restorer

        prefix = self.key_prefix.encode("utf-8", "surrogateescape")
        self._restorer = self._restorer or Restorer(self.client, prefix)
        with self.server_errors():
            if replace and not dry_run and self.backup is not None:
                from cachectl.backends.redis_keep import keep_laid_out

                keep_laid_out(self, count, laid_out)  # what --replace overwrites, kept first
            return self._restorer.restore(count, laid_out, taken_ms, replace, dry_run)

    def finish_restore(self) -> RestoreCounts:
        restorer, self._restorer = self._restorer, None
        with self.server_errors():
            return restorer.finish() if restorer is not None else super().finish_restore()

    def lifetimes(self, keys: list[str]) -> list[Lifetime]:
        """TTL of each key, a batch per round trip (a cluster routes each to its node)."""
        found: list[Lifetime] = []
        with self.server_errors():
            for batch in batched(keys):
                pipe = self.client.pipeline(transaction=False)
                for key in batch:
                    pipe.ttl(self.key_prefix + key)
                for seconds in pipe.execute():
                    # TTL: -2 for a key that is not there, -1 for one without expiry.
                    if seconds == -2:
                        found.append(MISSING)
                    elif seconds == -1:
                        found.append(NO_EXPIRY)
                    else:
                        found.append(Lifetime(True, int(seconds)))
        return found

    def set_lifetime(self, key: str, seconds: int | None) -> bool:
        """EXPIRE, or PERSIST for None; the value is not touched."""
        self._keep_one(key)
        name = self.key_prefix + key
        with self.server_errors():
            if seconds is not None:
                return bool(self.client.expire(name, seconds))
            # PERSIST answers 0 both for a missing key and for one without expiry.
            return bool(self.client.persist(name)) or bool(self.client.exists(name))

    def clear_plan(self) -> ClearPlan:
        target = self.describe()
        if not self.key_prefix:
            return ClearPlan(
                target,
                "every key in the database (no key prefix)",
                whole_server=True,
                needs_flush_db=_NO_PREFIX_REFUSAL.format(target=target),
                accepts_flush_db=True,
            )
        return ClearPlan(target, f"keys under the prefix {self.key_prefix!r}")

    def scan_prefixed(self, pattern: str = "*") -> Iterator[Any]:
        """Keys under the prefix (full names), streamed with SCAN (never KEYS, which
        blocks), every primary of a cluster at once."""
        return scan_all(self.client, escape_glob(self.key_prefix) + pattern)

    def scan_keys(self, pattern: str) -> Iterator[str]:
        cut = len(self.key_prefix.encode())
        with self.server_errors():
            for name in self.scan_prefixed(pattern):
                yield name[cut:].decode("utf-8", "surrogateescape")

    def clear(self, dry_run: bool, on_progress: ProgressCallback | None = None) -> int:
        if not self.key_prefix:
            # Without a prefix every key in the database looks like the app's, so
            # this empties the database: callers come here only once the plan's
            # needs_flush_db was answered (the CLI's --flush-db).
            return self.flush_db(dry_run)
        return self.delete_matching("*", dry_run, on_progress)

    def clear_except(
        self, exclusions: Exclusions, dry_run: bool, on_progress: ProgressCallback | None = None
    ) -> int:
        if not self.key_prefix:  # the plan's needs_flush_db, which takes no exclusions
            raise UsageError(_NO_PREFIX_REFUSAL.format(target=self.describe()))
        return self.delete_matching("*", dry_run, on_progress, exclusions)

    def delete_matching(
        self,
        pattern: str,
        dry_run: bool,
        on_progress: ProgressCallback | None = None,
        exclusions: Exclusions | None = None,
    ) -> int:
        """Unlink (or count) the keys under the prefix whose rest matches the glob
        ``pattern``, but those ``exclusions`` keep, streamed and non-blocking (see
        redis_sweep)."""
        tally = Tally(on_progress)
        match = escape_glob(self.key_prefix) + pattern
        cut = len(self.key_prefix.encode())
        with partial_work(tally, "counted" if dry_run else "removed"), self.server_errors():
            keeper = None if dry_run else self.keeper()
            if keeper is not None:
                from cachectl.backends.redis_keep import sweep_keeping

                sweep_keeping(self.client, match, tally, keeper, exclusions, cut)
            else:
                sweep(self.client, match, dry_run, tally, exclusions, cut)
        return tally.count

    def flush_db(self, dry_run: bool) -> int:
        if self.backup is not None and not dry_run:
            # Kept key by key, then removed: FLUSHDB would take what is written meanwhile.
            return self.delete_matching("*", dry_run)
        with self.server_errors():
            size = self.client.dbsize()
            if not dry_run:
                self.client.flushdb(asynchronous=True)
        return int(size)

    def census(
        self,
        pattern: str = "*",
        sample: int | None = None,
        on_progress: ProgressCallback | None = None,
        exclusions: Exclusions | None = None,
        detail: bool = True,
    ) -> Census:
        """Totals by label of the keys under the prefix matching ``pattern``, counted
        inside the server (see redis_census); version keys read and decoded safely."""
        from cachectl.backends.redis_census import CensusRequest, memory_every, take_census

        tally = Tally(on_progress)
        walked = exclusions.fresh() if exclusions is not None else None
        with partial_work(tally, "examined"), self.server_errors():
            request = CensusRequest(
                escape_glob(self.key_prefix) + pattern,
                len(self.key_prefix.encode()),
                memory_every(int(self.client.dbsize()), sample),
                sample,
                detail,
                walked,
            )
            census = take_census(self.client, request, tally)
        for name, seen in census.versions.items():
            stored = decode_redis_value(seen.value, self.serializer) if seen.value else None
            text = stored.value if stored is not None else None
            census.versions[name] = seen._replace(value=text if isinstance(text, str) else None)
        whole = sample is None or census.examined < sample
        if exclusions is not None and walked is not None and whole:
            exclusions.absorb(walked)  # the walk saw every key: its counts are whole
        return census

    def stats(self, sample: int | None, on_progress: ProgressCallback | None = None) -> CacheStats:
        return self.stats_except(None, sample, on_progress)

    def stored_entries(self, limit: int, totals: bool = False) -> Iterator[StoredEntry]:
        """Walked inside the server (``redis_pickles``) where it runs scripts; else SCAN,
        and each batch's values in one bounded call (``redis_values``)."""
        from cachectl.backends.redis_pickles import walked_entries
        from cachectl.backends.redis_values import scan_values

        cut, pickled = len(self.key_prefix.encode()), self.serializer is None
        match = escape_glob(self.key_prefix) + "*"
        with self.server_errors():
            if pickled and not self.is_cluster:
                walked = walked_entries(self.client, match, cut, limit, totals)
                if walked is not None:
                    yield from walked
                    return
            for name, value in scan_values(self.client, match, limit):
                if type(value) is int:
                    why = "not a string" if value < 0 else f"not read: over {limit:,} bytes"
                    yield StoredEntry(name[cut:], None, max(value, 0), why)
                elif value is not None:
                    payload = value[1:] if pickled and value[:1] == b"!" else None
                    yield StoredEntry(name[cut:], payload, len(value))

    def stats_except(
        self,
        exclusions: Exclusions | None,
        sample: int | None,
        on_progress: ProgressCallback | None = None,
    ) -> CacheStats:
        """Kinds, TTLs and memory from one census. With ``sample``, only that many
        keys are examined and the total comes from a counting sweep. Keys
        ``exclusions`` keep are left out, counted there."""
        stats = self.census("*", sample, on_progress, exclusions, detail=False).stats()
        if sample is not None and stats.examined >= sample:
            stats.total = self.delete_matching("*", True, None, exclusions)
        return stats
