"""Text renderings shared by several commands (JSON documents come from the results)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cachectl.codec.key_names import escape_key
from cachectl.runtime.wording import counted, number, removal_text, size_text

if TYPE_CHECKING:
    from cachectl.app.loader import AppCache
    from cachectl.backends import CacheBackend
    from cachectl.cli.group import Session
    from cachectl.config.resolve import ResolvedConfig
    from cachectl.operations.memoized_view import MemoizedShown
    from cachectl.operations.reports import Report
    from cachectl.runtime.output import Output


def report(session: Session, done: Report, backend: CacheBackend, extra: dict[str, Any]) -> None:
    """An invalidation's JSON document, or a line per key written or deleted."""
    session.audit.record_done({**done.document(), **extra})
    output = session.output
    if output.as_json:
        for note in done.notes:  # stderr stays free for the reader beside the document
            output.notice(note)
        output.document({**done.document(), **extra, "key_prefix": backend.key_prefix})
        return
    would = "would " if done.dry_run else ""
    for key, value in done.written.items():
        output.result(
            f"{would}write version {value!r} to {key} (stored as {backend.storage_name(key)})"
        )
    for key in done.deleted:
        stored_as = escape_key(backend.storage_name(key))
        output.result(f"{would}delete {escape_key(key)} (stored as {stored_as})")
    if done.removed is not None:
        output.result(removal_text("removed", done.removed, len(done.deleted)))
    if done.purged is not None:
        verb = "would remove" if done.dry_run else "removed"
        output.result(f"{verb} {counted(done.purged, 'stored entry', 'stored entries')}")
    for note in done.notes:
        output.notice(note)


def generation_text(resolved: ResolvedConfig) -> str:
    """config's first line: the cache, and the Flask-Caching generation its keys are
    formed for, or that none is known and what that means."""
    generation = resolved.generation
    if generation.decided:
        return (
            f"cache {resolved.cache_name}; Flask-Caching generation {generation.name} "
            f"({generation.origin})"
        )
    return (
        f"cache {resolved.cache_name}; Flask-Caching generation {generation.origin}: what "
        "is the same in both generations runs; what differs (a memoized call's key, a view "
        "key with a query string, a FileSystemCache file name) exits 2 until --compat 2.5, "
        "--compat legacy or compat in cachectl.toml names it (the hash method defaults "
        "below are 2.5's, used only then)"
    )


def settings_document(resolved: ResolvedConfig) -> dict[str, Any]:
    """Each setting's masked value and where it came from."""
    return {
        name: {"value": value, "source": resolved.source(name)}
        for name, value in resolved.masked().items()
    }


def settings_table(session: Session, resolved: ResolvedConfig) -> None:
    from cachectl.runtime.secrets import display_value

    rows = [
        (name, display_value(name, value), resolved.source(name))
        for name, value in resolved.masked().items()
    ]
    session.output.table(("setting", "value", "source"), rows)


def memcached_client(resolved: ResolvedConfig) -> dict[str, str] | None:
    """The memcached client library the app uses and why (None: not a memcached cache,
    or one of the SASL types, which always use pylibmc). Decided in ``backends``."""
    from cachectl.config.settings import MemcachedLocation

    location = resolved.settings().location
    if not isinstance(location, MemcachedLocation):
        return None
    if location.sasl:
        return {"library": "pylibmc", "why": "the SASL caches of Flask-Caching use pylibmc"}
    from cachectl.backends.memcached_clients import client_library

    library, why = client_library(location.client_lib)
    return {"library": library, "why": why}


def _location(resolved: ResolvedConfig) -> str:
    try:
        return resolved.settings().describe_location()
    except Exception as exc:  # shown, not fatal: the listing is how one finds the bad cache
        return f"({exc})"


def cache_list(session: Session, caches: list[tuple[AppCache, ResolvedConfig]]) -> None:
    """Every cache of the app, by the names --cache takes, for an app with several."""
    if session.output.as_json:
        session.output.document(
            {
                "ok": True,
                "caches": [
                    {
                        "index": cache.index,
                        "name": cache.label,
                        "names": cache.names,
                        "settings": settings_document(resolved),
                    }
                    for cache, resolved in caches
                ],
            }
        )
        return
    from cachectl.runtime.secrets import display_value

    session.output.result(
        f"{counted(len(caches), 'cache')}; pick one with --cache (index or any name):"
    )
    rows = [
        (
            str(cache.index),
            ", ".join(cache.names) or "-",
            display_value("CACHE_TYPE", resolved.get("CACHE_TYPE")),
            display_value("CACHE_KEY_PREFIX", resolved.get("CACHE_KEY_PREFIX")),
            _location(resolved),
        )
        for cache, resolved in caches
    ]
    session.output.table(("index", "names", "type", "prefix", "where"), rows)


def _ttl_text(ttl: int | str | None) -> str:
    return "no expiry" if ttl is None else (f"{ttl} s" if isinstance(ttl, int) else str(ttl))


def memoized_shown(output: Output, shown: MemoizedShown, import_problem: str | None) -> None:
    """show-memoized: the version keys and count as lines, then the call's value as get
    shows one; notes (nothing cached, not counted) go to stderr."""
    if output.as_json:
        output.document({**shown.document(), "import_problem": import_problem})
        return
    for version in shown.versions:
        held = "missing" if version.version is None else repr(version.version)
        output.result(f"{version.key}: {held} (ttl: {_ttl_text(version.ttl)})")
    if shown.current_entries is not None:
        lifetimes = _lifetimes_text(shown.current_ttl)
        output.result(
            f"results under the current version: {number(shown.current_entries)} "
            f"({size_text(shown.current_memory)}{', TTLs ' + lifetimes if lifetimes else ''})"
        )
    if shown.old_entries:
        output.result(
            f"results under former instance versions: {number(shown.old_entries)} "
            f"({size_text(shown.old_memory)})"
        )
    if shown.not_counted:
        output.notice(f"results not counted: {shown.not_counted}")
    for note in shown.notes:
        output.notice(note)
    if not shown.has_call:
        return
    if shown.call_key is None:
        output.notice("not found: no version is stored, so no result of this call either")
        return
    stored = shown.call_stored
    if stored is None:
        output.notice(f"not found: {shown.call_key}")
        return
    output.result(f"{shown.call_key} (ttl: {_ttl_text(shown.call_ttl)})")
    if stored.error is not None:
        output.warn(f"{shown.call_key}: {stored.error}")
    else:
        output.value(stored.value)


_SHORT_BUCKETS = {
    "no expiry": "none",
    "< 1 minute": "<1m",
    "< 1 hour": "<1h",
    "< 1 day": "<1d",
    ">= 1 day": ">=1d",
}


def _lifetimes_text(lifetimes: dict[str, int]) -> str:
    return " ".join(f"{_SHORT_BUCKETS.get(bucket, bucket)}:{n}" for bucket, n in lifetimes.items())


def function_statistics(output: Output, document: dict[str, Any]) -> None:
    """stats --by-function: a table of memoized functions, then of view paths and of
    fragment names, each as the document lists them (largest memory first)."""
    functions = document["functions"]
    output.table(
        ("memoized function", "version", "version TTL", "entries", "memory", "TTLs", "old"),
        [
            (
                row["function"],
                row["version"] or "?",
                _ttl_text(row["version_ttl"]),
                number(row["entries"]),
                size_text(row["memory_bytes"]),
                _lifetimes_text(row["ttl"]),
                f"{number(row['old_entries'])} ({size_text(row['old_memory_bytes'])})"
                if row["old_entries"]
                else "0",
            )
            for row in functions
        ],
    )
    for row in document["versions_expiring_first"]:
        output.warn(
            f"{row['function']}: its version key expires in {row['version_ttl']} s, "
            f"before at least {row['outliving_version_key']} of its results: they "
            "become unreachable then (and stay stored until they expire)"
        )
    if document["functions_listed"] < document["functions_found"]:
        output.result(
            f"(the {number(document['functions_listed'])} largest of "
            f"{counted(document['functions_found'], 'function')}; --top 0 lists all)"
        )
    unknown = document["unknown_function"]
    if unknown["entries"]:
        size = size_text(unknown["memory_bytes"])
        output.result(
            f"unknown function: {counted(unknown['entries'], 'result')} ({size})"
            " under versions no version key names (replaced by delete-memoized, or their "
            "version key gone); they stay until they expire or a clear"
        )
    for title, what, rows in (
        ("view path", "path", document["views"]),
        ("fragment", "name", document["fragments"]),
    ):
        if rows:
            output.table(
                (title, "entries", "memory", "TTLs"),
                [
                    (
                        escape_key(row[what]),  # a visitor's path may hold a line break
                        number(row["entries"]),
                        size_text(row["memory_bytes"]),
                        _lifetimes_text(row["ttl"]),
                    )
                    for row in rows
                ],
            )
    other = document["other"]
    output.result(
        f"version keys: {number(document['version_keys'])}; other keys: "
        f"{number(other['entries'])} ({size_text(other['memory_bytes'])})"
    )
    if document["memory"]["unavailable"]:
        output.notice(f"memory not measured: {document['memory']['unavailable']}")
