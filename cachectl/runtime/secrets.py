"""Keep credentials out of everything cachectl shows, logs or writes.

Settings are shown by ``config``, in error messages that name a server, and in
files written by ``config --write``: each of them masks through this module, so
what counts as a secret is decided in one place.

Every message also leaves the process through one filter, ``filtered``: error lines,
warnings and notices (``cachectl.runtime.output``), the error of a ``--json`` document, ``--debug``
tracebacks and the audit log's ``error``. It masks what looks like a credential (a URL's
``user:password@``) and every secret the run has met (``remember``: the settings as
they are read, before anything can fail on them), whatever the type the secret was
given as (a TOML number, bytes from a ``.py`` file, a list): each is masked in every
form a message may quote it in. The audit log's command line is masked from the
command line alone (``masked_argv``): by setting name and URL userinfo, before any
configuration is known.
"""

from __future__ import annotations

import contextlib
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


#: Secrets shorter than this are not masked by value (masking "42" would garble every
#: message that holds the digits); no message quotes a secret setting's value anyway.
_SHORTEST_MASKED = 3


def secret_texts(value: Any) -> set[str]:
    """Every form a message may quote a secret ``value`` in, whatever its type: a text
    as it is and escaped (``repr``), a number's digits, bytes decoded and escaped, the
    items of a list or dict (keys too)."""
    texts: set[str] = set()
    if value is None or isinstance(value, bool):
        return texts
    if isinstance(value, str):
        texts.update((value, repr(value)[1:-1], value.encode("unicode_escape").decode()))
    elif isinstance(value, (int, float)):
        texts.update((str(value), repr(value)))
    elif isinstance(value, (bytes, bytearray)):
        data = bytes(value)
        texts.add(repr(data)[2:-1])
        with contextlib.suppress(UnicodeDecodeError):  # not text: its escapes are the form
            texts.add(data.decode("utf-8"))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            texts |= secret_texts(key) | secret_texts(item)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            texts |= secret_texts(item)
    else:
        texts.update((str(value), repr(value)))
    return {text for text in texts if len(text) >= _SHORTEST_MASKED}


def secret_values(values: Mapping[str, Any]) -> frozenset[str]:
    """Every credential among settings: secret-named values of any type (nested ones in
    CACHE_OPTIONS too, in each form ``secret_texts`` finds) and the passwords inside
    URLs, so they can be scrubbed from any message, however it quotes them."""
    found: set[str] = set()

    def visit(name: str, value: Any) -> None:
        if is_secret(name):
            found.update(secret_texts(value))
        elif isinstance(value, Mapping):
            for key, item in value.items():
                visit(str(key), item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(name, item)
        elif isinstance(value, str) and value:
            userinfo = value.rsplit("@", 1)[0].split("://")[-1] if "@" in value else ""
            if ":" in userinfo:  # redis://user:PASSWORD@host, user:PASSWORD@host:port
                found.add(userinfo.split(":", 1)[1])
            found.update(m.group(1) for m in _QUERY_VALUE.finditer(value))

    for name, value in values.items():
        visit(str(name), value)
    # cachelib's RedisCache and ValkeyCache take (host, port, password, ...): given as
    # CACHE_ARGS, the third is a password under no name.
    args = values.get("CACHE_ARGS")
    if (
        isinstance(args, (list, tuple))
        and len(args) > _POSITIONAL_PASSWORD
        and str(values.get("CACHE_TYPE", "")).rsplit(".", 1)[-1] in _POSITIONAL_PASSWORD_TYPES
    ):
        found.update(secret_texts(args[_POSITIONAL_PASSWORD]))
    return frozenset(secret for secret in found if len(secret) >= _SHORTEST_MASKED)


#: Where a password sits among CACHE_ARGS, for the cachelib classes that take one there.
_POSITIONAL_PASSWORD = 2
_POSITIONAL_PASSWORD_TYPES = ("RedisCache", "ValkeyCache")


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with known ``secrets`` and anything shaped like a credential masked."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _USERINFO.sub(lambda m: m.group("head") + MASK + "@", text)
    text = _BARE_USERINFO.sub(lambda m: m.group("head") + MASK + "@", text)
    return _QUERY_SECRET.sub(lambda m: m.group("head") + MASK, text)


def secret_type_problem(value: Any) -> str | None:
    """Why a credential setting's value is no password (its type, never the value), or
    None. A whole number is one: TOML reads ``CACHE_REDIS_PASSWORD = 80417723`` and ``-o``
    reads ``12345678`` as numbers, and redis-py would send the digits (``secret_text``). So
    is UTF-8 text in bytes (a ``.py`` file's ``b"..."``). A float is not: ``1.50`` or ``1e5``
    would be sent as ``1.5`` or ``100000.0``, a password other than the one typed; nor is
    a list or a dict (exit 2)."""
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return None
    if isinstance(value, (bytes, bytearray)):
        try:
            bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return "got bytes that are not UTF-8 text"
        return None
    kind = type(value).__name__
    got = f"got {'an' if kind[:1] in 'aeiou' else 'a'} {kind}"
    if isinstance(value, (bool, float)):  # typed unquoted: say how to quote it
        return got + '; quote it: "..." in TOML, -o \'NAME="..."\''
    return got


def secret_text(value: Any) -> str | None:
    """A credential setting's value (checked by ``secret_type_problem``) as the text the
    client is given: digits for a number, bytes decoded."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8")
    return str(value)


#: The secrets this run has met (``remember``), masked by ``filtered``: one registry per
#: process, emptied when a run starts (``forget``), since messages leave from layers
#: that never see the configuration (output, audit log, tracebacks).
_remembered: set[str] = set()


def remember(values: Mapping[str, Any]) -> None:
    """Mask the credentials among ``values`` (settings, as read) in every later message."""
    _remembered.update(secret_values(values))


def forget() -> None:
    """A new run: no secret met so far is its business (tests run many in one process)."""
    _remembered.clear()


def remembered() -> frozenset[str]:
    """The secrets this run has met so far."""
    return frozenset(_remembered)


def filtered(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` as it may leave the process: every secret the run has met (and ``extra``)
    and anything shaped like a credential masked. The one filter every message passes."""
    return scrub(text, _remembered.union(extra))


#: ``NAME=VALUE`` in a command line (``-o NAME=VALUE``, ``-oNAME=VALUE``,
#: ``--option=NAME=VALUE``), whose VALUE is masked when NAME names a secret.
_ASSIGNMENT = re.compile(r"(?P<head>(?:-o|--option=)?(?P<name>[A-Za-z_][\w.-]*)=)")


def masked_arg(arg: str) -> str:
    """One argument as it may be logged: a secret setting's value (``-o
    CACHE_REDIS_PASSWORD=...``) and URL credentials (``--url redis://user:pw@host``,
    sentinel lists) masked, from the argument alone."""
    assignment = _ASSIGNMENT.match(arg)
    if assignment is not None and is_secret(assignment.group("name")):
        return assignment.group("head") + MASK
    return scrub(mask_url(arg))


def masked_argv(argv: Iterable[str]) -> list[str]:
    """A command line as it may be logged, before any configuration is known
    (``masked_arg`` on each argument)."""
    return [masked_arg(arg) for arg in argv]


def hash_method_name(method: Any) -> str:
    """``md5`` for ``hashlib.md5`` (also the OpenSSL-backed constructors)."""
    try:
        return str(method().name)
    except Exception:
        return getattr(method, "__name__", repr(method))


def masked_value(name: str, value: Any) -> Any:
    """``value`` safe to show: secrets and URL passwords masked, hash methods and
    other Python objects by name; plain data stays plain (for ``--json``)."""
    if is_secret(name):  # whatever its type: a TOML number is a password too
        return value if value is None or value == "" else MASK
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if name.endswith("HASH_METHOD"):
        return hash_method_name(value)
    if isinstance(value, str):  # user:password@host in a URL, a sentinel, a server
        # and every secret this run has met, also one under no secret name (a password
        # among CACHE_ARGS)
        return scrub(mask_url(value) if "://" in value else value, remembered())
    if isinstance(value, dict):
        return {str(k): masked_value(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [masked_value(name, v) for v in value]
    return repr(value)


def display_value(name: str, value: Any) -> str:
    """One line of text for ``masked_value``."""
    shown = masked_value(name, value)
    return shown if isinstance(shown, str) else repr(shown)
