"""Which Flask-Caching generation the application runs, and what that changes.

Flask-Caching 2.5 changed several defaults that decide where data lives (the
hash behind FileSystemCache file names, the hash behind view and memoize keys).
cachectl has to use the defaults of the generation the app actually runs, so
the choice is explicit (``--compat``) or read from the Flask-Caching installed
beside cachectl, which on an app host is the app's own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from cachectl.errors import ConfigError

CURRENT = "2.5"
LEGACY = "legacy"
GENERATIONS = (CURRENT, LEGACY)


@dataclass(frozen=True)
class Generation:
    """The defaults of one Flask-Caching generation that cachectl depends on."""

    name: str
    #: Default of CACHE_HASH_METHOD (view and memoize keys).
    hash_method: Callable[..., object]
    #: Default hash behind FileSystemCache file names (CACHE_FILE_HASH_METHOD in 2.5;
    #: the FileSystemCache class default in legacy, where the setting did not exist).
    file_hash_method: Callable[..., object]
    #: Where the generation was taken from, for ``cachectl config``.
    origin: str


def _installed_flask_caching() -> str | None:
    from importlib import metadata  # slow to import: only when the generation is detected

    try:
        return metadata.version("flask-caching")
    except metadata.PackageNotFoundError:
        return None


def _is_legacy_version(version: str) -> bool:
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    major, minor = [*parts, 0, 0][:2]
    return (major, minor) < (2, 5)


def resolve_generation(
    requested: str | None = None, recorded: tuple[str, str] | None = None
) -> Generation:
    """Pick the generation: ``requested`` (``--compat`` or ``CACHECTL_COMPAT``),
    ``recorded`` (the generation a config file names, and where), the installed
    Flask-Caching, else 2.5."""
    origin = "--compat"
    if requested is None and recorded is not None:
        requested, origin = recorded
    if requested is None:
        installed = _installed_flask_caching()
        if installed is None:
            requested, origin = CURRENT, "default (Flask-Caching not installed here)"
        else:
            requested = LEGACY if _is_legacy_version(installed) else CURRENT
            origin = f"installed Flask-Caching {installed}"
    requested = requested.strip().lower()
    if requested in ("2.5", "2.5+", "current"):
        return Generation(CURRENT, hashlib.sha256, hashlib.sha256, origin)
    if requested in ("legacy", "2.4", "2.0-2.4"):
        return Generation(LEGACY, hashlib.md5, hashlib.md5, origin)
    raise ConfigError(f"unknown Flask-Caching generation {requested!r} (use 2.5 or legacy)")
