"""Text renderings shared by several commands (JSON documents come from the results)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cachectl.secrets import display_value

if TYPE_CHECKING:
    from cachectl.app_loader import AppCache
    from cachectl.backends import CacheBackend
    from cachectl.cli.group import Session
    from cachectl.config import ResolvedConfig
    from cachectl.operations.reports import Report


def report(session: Session, done: Report, backend: CacheBackend, extra: dict[str, Any]) -> None:
    """An invalidation's JSON document, or a line per key written or deleted."""
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
        output.result(f"{would}delete {key} (stored as {backend.storage_name(key)})")
    if done.removed is not None:
        output.result(
            f"removed {done.removed} of {len(done.deleted)} keys (the others did not exist)"
            if done.removed != len(done.deleted)
            else f"removed {done.removed} keys"
        )
    if done.purged is not None:
        verb = "would remove" if done.dry_run else "removed"
        output.result(f"{verb} {done.purged} stored entries")
    for note in done.notes:
        output.notice(note)


def settings_document(resolved: ResolvedConfig) -> dict[str, Any]:
    """Each setting's masked value and where it came from."""
    return {
        name: {"value": value, "source": resolved.source(name)}
        for name, value in resolved.masked().items()
    }


def settings_table(session: Session, resolved: ResolvedConfig) -> None:
    rows = [
        (name, display_value(name, value), resolved.source(name))
        for name, value in resolved.masked().items()
    ]
    session.output.table(("setting", "value", "source"), rows)


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
    session.output.result(f"{len(caches)} caches; pick one with --cache (index or any name):")
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
