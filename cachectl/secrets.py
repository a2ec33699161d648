"""Keep credentials out of everything cachectl shows, logs or writes.

Settings are shown by ``config``, in error messages that name a server, and in
files written by ``config --write``: each of them masks through this module, so
what counts as a secret is decided in one place.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "****"
#: Parts of a setting or option name that mark a credential. "KEY" alone would take
#: CACHE_KEY_PREFIX too, so keys count only as API/private/access keys.
_SECRET_MARKERS = (
    "PASSWORD",
    "PASSWD",
    "SECRET",
    "TOKEN",
    "CREDENTIAL",
    "AUTH",
    "API_KEY",
    "APIKEY",
    "PRIVATE_KEY",
    "ACCESS_KEY",
)
#: ``user:password@`` in anything that looks like an address, and ``password=...``
#: (redis-py reads it from a URL's query), wherever they appear in a text.
_USERINFO = re.compile(r"(?P<head>[\w.+-]*://[^:/@\s]*:)[^@\s]*@")
_BARE_USERINFO = re.compile(r"(?P<head>(?:^|[\s'\"(\[,])[^:/@\s'\"]*:)[^@\s'\"/]+@(?=[\w.\[-])")
_QUERY_VALUE = re.compile(r"[?&;](?:password|passwd|auth|token|secret)=([^&#\s'\"]+)", re.I)
_QUERY_SECRET = re.compile(
    r"(?P<head>[?&;](?:password|passwd|auth|token|secret)=)[^&#\s'\"]*", re.I
)


def is_secret(name: str) -> bool:
    """Whether a setting or option name holds a credential (``CACHE_REDIS_PASSWORD``)."""
    upper = name.upper()
    return any(marker in upper for marker in _SECRET_MARKERS)


def mask_url(url: str) -> str:
    """Hide the password of a URL (``redis://user:****@host``, ``?password=****``), keep
    the rest readable; a URL too malformed to parse is masked by pattern instead."""
    try:
        parts = urlsplit(url)
        password, port = parts.password, parts.port
    except ValueError:
        return scrub(url)
    masked = url
    if password is not None:
        host = parts.hostname or ""
        if port is not None:
            host = f"{host}:{port}"
        netloc = f"{parts.username or ''}:{MASK}@{host}"
        masked = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return _QUERY_SECRET.sub(lambda m: m.group("head") + MASK, masked)


def secret_values(values: Mapping[str, Any]) -> frozenset[str]:
    """Every credential among resolved settings: secret-named values (nested ones in
    CACHE_OPTIONS too) and the passwords inside URLs, so they can be scrubbed from
    any message, however it quotes them."""
    found: set[str] = set()

    def visit(name: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                visit(str(key), item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(name, item)
        elif isinstance(value, str) and value:
            if is_secret(name):
                found.add(value)
            else:
                userinfo = value.rsplit("@", 1)[0].split("://")[-1] if "@" in value else ""
                if ":" in userinfo:  # redis://user:PASSWORD@host, user:PASSWORD@host:port
                    found.add(userinfo.split(":", 1)[1])
                found.update(m.group(1) for m in _QUERY_VALUE.finditer(value))

    for name, value in values.items():
        visit(name, value)
    return frozenset(secret for secret in found if len(secret) >= 3)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with known ``secrets`` and anything shaped like a credential masked."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _USERINFO.sub(lambda m: m.group("head") + MASK + "@", text)
    text = _BARE_USERINFO.sub(lambda m: m.group("head") + MASK + "@", text)
    return _QUERY_SECRET.sub(lambda m: m.group("head") + MASK, text)


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
    if isinstance(value, str):  # user:password@host in a URL, a sentinel, a server
        return mask_url(value) if "://" in value else scrub(value)
    if isinstance(value, dict):
        return {str(k): masked_value(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [masked_value(name, v) for v in value]
    return repr(value)


def display_value(name: str, value: Any) -> str:
    """One line of text for ``masked_value``."""
    shown = masked_value(name, value)
    return shown if isinstance(shown, str) else repr(shown)
