"""The other caches of an invocation, and the caches nested under the chosen one
(``--include-nested``).

An app may hold several ``Cache`` objects (named caches in the config file, several
entries in ``app.extensions["cache"]`` with ``--app``). They are resolved in the
invocation's Session (``Session.for_cache``: one app load, one connection per cache),
with the same command-line overrides as the chosen cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cachectl.errors import CachectlError

if TYPE_CHECKING:
    from cachectl.backends.base import CacheBackend
    from cachectl.cli.session import Session
    from cachectl.operations.nesting import Sibling


def known_caches(session: Session) -> list[tuple[str, str]]:
    """Every cache of the invocation as (what --cache takes, the name shown): the app's
    caches with --app, else the config file's named caches; [] without either."""
    loaded = session.loaded_app()
    if loaded is not None:
        return [(str(cache.index), cache.label) for cache in loaded.caches]
    config_file = session.request.sources()[1]
    if config_file is None:
        return []
    from cachectl.config_sources import read_config_file

    path = Path(config_file)
    if not path.is_absolute():
        path = session.request.cwd / path
    return [(name, name) for name in read_config_file(path).caches]


def siblings_of(session: Session, include_nested: bool) -> list[Sibling]:
    """The app's other caches nested under the chosen one in its keyspace, whose keys
    its clear, keys, stats and delete --pattern leave out ([] with ``include_nested``)."""
    backend = session.backend()
    if include_nested or not backend.can_list_keys:
        return []
    caches = known_caches(session)
    if len(caches) < 2:
        return []
    from cachectl.operations.nesting import find_siblings

    own = session.config.cache_name
    others: list[tuple[str, CacheBackend]] = []
    for selector, label in caches:
        if label == own:
            continue
        try:
            others.append((label, session.for_cache(selector).backend(connect=False)))
        except CachectlError as exc:
            session.output.warn(
                f"cache {label}: {exc.message}; its keys are not told apart from this cache's"
            )
    return find_siblings(backend, others)
