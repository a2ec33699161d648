"""Keep credentials out of everything cachectl shows, logs or writes.

Settings are shown by ``config``, in error messages that name a server, and in
files written by ``config --write``: each of them masks through this module, so
what counts as a secret is decided in one place.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "****"
_SECRET_MARKERS = ("PASSWORD", "SECRET", "TOKEN")


def is_secret(name: str) -> bool:
    """Whether a setting or option name holds a credential (``CACHE_REDIS_PASSWORD``)."""
    return any(marker in name.upper() for marker in _SECRET_MARKERS)


def mask_url(url: str) -> str:
    """Hide the password of a URL (``redis://user:****@host``), keep the rest readable."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{user}:{MASK}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def hash_method_name(method: Any) -> str:
    """``md5`` for ``hashlib.md5`` (also the OpenSSL-backed constructors)."""
    try:
        return str(method().name)
    except Exception:
        return getattr(method, "__name__", repr(method))


def masked_value(name: str, value: Any) -> Any:
    """``value`` safe to show: secrets and URL passwords masked, hash methods and
    other Python objects by name; plain data stays plain (for ``--json``)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if is_secret(name):
        return MASK if value else value
    if name.endswith("HASH_METHOD"):
        return hash_method_name(value)
    if isinstance(value, str):
        return mask_url(value) if "://" in value else value
    if isinstance(value, dict):
        return {str(k): masked_value(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [masked_value(name, v) for v in value]
    return repr(value)


def display_value(name: str, value: Any) -> str:
    """One line of text for ``masked_value``."""
    shown = masked_value(name, value)
    return shown if isinstance(shown, str) else repr(shown)
