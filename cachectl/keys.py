"""The cache keys Flask-Caching forms, derived from names instead of function objects.

Flask-Caching can only compute a key from inside the app, with the decorated
function in hand. cachectl derives the same keys from a dotted name, a
signature and the call's arguments. Everything here is pure (no I/O): the
version strings that memoize keys end with are read from the cache by the
caller and passed in.

Two generations of Flask-Caching form keys differently; where they differ the
functions take the generation name (``"2.5"`` or ``"legacy"``). Every rule
here is checked against the real library by the oracle tests.
"""

from __future__ import annotations

import base64
import binascii
import inspect
import string
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl

from cachectl.config import constants
from cachectl.config.generations import LEGACY

VERSION_SUFFIX = "_memver"
#: Characters Flask-Caching 2.5 keeps in a namespace, among the first 256 code points.
_NAMESPACE_KEPT = frozenset(string.ascii_letters + string.digits + "_.")
FRAGMENT_PREFIX = "_template_fragment_cache_"
DEFAULT_VIEW_PREFIX = constants.DEFAULT_VIEW_PREFIX
#: Length of the hash part of a memoize entry key, and of a version string.
ENTRY_HASH_LENGTH = 16
VERSION_LENGTH = 6
BASE64_CHARACTERS = frozenset(string.ascii_letters + string.digits + "+/=")
#: A version is cut from base64 before any padding (the URL-safe alphabet is allowed too).
_VERSION_CHARACTERS = frozenset(string.ascii_letters + string.digits + "+/-_")


# --- memoize ---------------------------------------------------------------------------


def filter_namespace(name: str, generation: str) -> str:
    """2.5 drops every character below U+0100 that is not a letter, digit, ``_`` or ``.``
    (``<locals>`` becomes ``locals``); legacy meant to but its table was a no-op."""
    if generation == LEGACY:
        return name
    return name.translate(_NAMESPACE_DROPPED)


#: What ``filter_namespace`` drops, as a table for ``str.translate`` (formed once a call
#: of ``delete-memoized --each``'s 100,000, a character at a time it took a tenth of them).
_NAMESPACE_DROPPED = dict.fromkeys(c for c in range(256) if chr(c) not in _NAMESPACE_KEPT)


def function_namespace(module: str, qualname: str, generation: str) -> str:
    """The function's namespace (``fname``): ``module.qualname``, filtered."""
    return filter_namespace(f"{module}.{qualname}", generation)


def instance_namespace(module: str, qualname: str, instance_id: str, generation: str) -> str:
    """The namespace of one instance's method: ``module.qualname.<instance id>``."""
    return filter_namespace(f"{module}.{qualname}.{instance_id}", generation)


def version_key(namespace: str) -> str:
    """The key that holds the current version of a function or an instance."""
    return namespace + VERSION_SUFFIX


def new_version() -> str:
    """A fresh version string, made as Flask-Caching makes one."""
    return base64.b64encode(uuid.uuid4().bytes)[:VERSION_LENGTH].decode("ascii")


def is_flask_caching_version(value: str) -> bool:
    """Whether ``value`` has the shape of a version Flask-Caching writes (6 characters of
    base64). Anything else in a version key was put there by someone else, and matching
    keys by it could take what is not this function's."""
    return len(value) == VERSION_LENGTH and all(ch in _VERSION_CHARACTERS for ch in value)


def class_id(module: str, class_qualname: str) -> str:
    """``repr()`` of a class, the id a classmethod's ``cls`` argument contributes."""
    return f"<class '{module}.{class_qualname}'>"


@dataclass(frozen=True)
class CallSignature:
    """What key derivation needs of a function's signature."""

    #: POSITIONAL_OR_KEYWORD parameters in order, with their defaults
    #: (``inspect.Parameter.empty`` when there is none).
    positional: tuple[tuple[str, Any], ...]
    keyword_only: tuple[str, ...] = ()
    has_var_positional: bool = False
    has_var_keyword: bool = False

    @classmethod
    def from_signature(cls, signature: inspect.Signature) -> CallSignature:
        params = signature.parameters.values()
        return cls(
            positional=tuple(
                (p.name, p.default) for p in params if p.kind is p.POSITIONAL_OR_KEYWORD
            ),
            keyword_only=tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY),
            has_var_positional=any(p.kind is p.VAR_POSITIONAL for p in params),
            has_var_keyword=any(p.kind is p.VAR_KEYWORD for p in params),
        )

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.positional]

    @property
    def first(self) -> str | None:
        return self.positional[0][0] if self.positional else None


def memoize_key_arguments(
    signature: CallSignature,
    args: Sequence[Any],
    kwargs: dict[str, Any],
    generation: str,
    ignore: Iterable[str] = (),
    first_id: str | None = None,
    keep_ignored_keywords: bool = False,
) -> tuple[tuple[Any, ...], OrderedDict]:
    """The ``(args, kwargs)`` pair whose repr goes into a memoize key.

    ``args`` are the call's positional arguments without the instance or class;
    for a method (first parameter ``self``) or classmethod (``cls``), ``first_id``
    is the instance's or the class's id, which takes the first place.

    Follows Flask-Caching's normalisation: each positional-or-keyword parameter
    in order takes the keyword value, else the next positional value, else its
    default, else None; an ignored parameter is None; extra positional values
    follow; remaining keyword arguments are sorted by name. 2.5 uses a default
    unless it is None; legacy only when it is truthy. Up to 2.1 an ignored argument given
    by keyword stayed among the remaining keyword arguments (``keep_ignored_keywords``).
    """
    ignore = set(ignore) if ignore else ()
    call_args: list[Any] = list(args)
    first = signature.first
    if first in ("self", "cls"):
        call_args.insert(0, first_id)  # the library sees the instance in args[0]
    # (Each step skipped where it has nothing to do: --each forms 100,000 keys.)
    remaining = (
        [key for key in kwargs if keep_ignored_keywords or key not in ignore] if kwargs else []
    )
    values: list[Any] = []
    taken = 0
    legacy = generation == LEGACY
    for index, (name, default) in enumerate(signature.positional):
        if name in ignore:
            value = None
            taken += 1
        elif index == 0 and first in ("self", "cls"):
            if first_id is None:
                raise ValueError(f"the {name!r} argument is needed to form the key")
            value = first_id
            taken += 1
        elif name in kwargs:
            value = kwargs[name]
            remaining.remove(name)
        elif taken < len(call_args):
            value = call_args[taken]
            taken += 1
        else:  # the default, looked at only here, as the library looks at it
            if default is inspect.Parameter.empty:
                value = None
            elif legacy:
                value = default if default else None
            else:
                value = default
            taken += 1
        values.append(value)
    values.extend(call_args[len(signature.positional) :])
    if not kwargs:
        return tuple(values), OrderedDict()
    return tuple(values), OrderedDict(sorted((k, v) for k, v in kwargs.items() if k in remaining))


def memoize_entry_key(
    name: str,
    key_arguments: tuple[tuple[Any, ...], OrderedDict],
    versions: str,
    hash_method: Callable[..., Any],
    source: str | None = None,
) -> str:
    """The entry key: 16 characters of the hash of name and arguments, then the
    version(s). ``name`` is the namespace, or what the decorator's ``make_name``
    returned for it; ``source`` is the function's source with ``source_check``."""
    args, kwargs = key_arguments
    digest = hash_method()
    digest.update(f"{name}{args}{kwargs}".encode())
    if source is not None:
        digest.update(source.encode("utf-8"))
    return base64.b64encode(digest.digest())[:ENTRY_HASH_LENGTH].decode("ascii") + versions


class PositionalKeys:
    """The entry keys of one function's (and instance's) calls that give only positional
    arguments, as ``memoize_entry_key(name, memoize_key_arguments(signature, args, {},
    ...), versions, ...)`` forms them, with all that such calls share worked out once: the
    instance or class id first, the values of the parameters a call leaves out (by the
    generation's rule for defaults), the ignored ones, the empty keyword part. A file of
    100,000 ids (``delete-memoized --each``) then costs a hash per line and little else.
    ``key`` takes calls whose arguments bind to the signature (checked by the caller)."""

    def __init__(
        self,
        signature: CallSignature,
        generation: str,
        name: str,
        versions: str,
        hash_method: Callable[..., Any],
        *,
        source: str | None = None,
        ignore: Iterable[str] = (),
        first_id: str | None = None,
    ) -> None:
        ignored = set(ignore)
        first = signature.first
        self.lead: tuple[Any, ...] = ()
        if first in ("self", "cls"):
            if first_id is None and first not in ignored:
                raise ValueError(f"the {first!r} argument is needed to form the key")
            self.lead = (first_id,)  # the library sees the instance in args[0]
        self.legacy = generation == LEGACY
        self.positional = signature.positional
        self.count = len(self.positional)
        #: For each count of values a call gives, those of the parameters it leaves out.
        self.rest: dict[int, tuple[Any, ...]] = {}
        self.ignored = [i for i, (parameter, _) in enumerate(self.positional)
                        if parameter in ignored]  # fmt: skip
        self.name, self.versions, self.hash_method = name, versions, hash_method
        self.source = None if source is None else source.encode("utf-8")
        #: The key of the call ``f(*args)``.
        self.key: Callable[[tuple[Any, ...]], str] = self._former()

    def _left_out(self, given: int) -> tuple[Any, ...]:
        """The values of the parameters after the first ``given``: each one's default
        (2.5; legacy only a truthy one), else None, and None for an ignored one. A
        default is looked at only once a call leaves it out, as the library looks at it."""
        values: list[Any] = []
        for index in range(given, self.count):
            default = self.positional[index][1]
            if default is inspect.Parameter.empty or index in self.ignored:
                values.append(None)
            elif self.legacy:
                values.append(default if default else None)
            else:
                values.append(default)
        return tuple(values)

    def _former(self) -> Callable[[tuple[Any, ...]], str]:
        """``key``: a closure over what every call shares, which reads it faster than
        attributes would (100,000 calls)."""
        lead, count, rest, ignored = self.lead, self.count, self.rest, self.ignored
        name, versions, hash_method, source = (
            self.name,
            self.versions,
            self.hash_method,
            self.source,
        )
        left_out, to_base64 = self._left_out, binascii.b2a_base64
        keywords = f"{OrderedDict()}"  # no keyword arguments, as the library writes none

        def key(args: tuple[Any, ...]) -> str:
            values = (*lead, *args) if lead else tuple(args)
            given = len(values)
            if given < count:
                missing = rest.get(given)
                if missing is None:
                    missing = rest[given] = left_out(given)
                values += missing
            if ignored:
                listed = list(values)
                for index in ignored:
                    listed[index] = None
                values = tuple(listed)
            digest = hash_method()  # as the library: made, then updated
            digest.update(f"{name}{values}{keywords}".encode())
            if source is not None:
                digest.update(source)
            hashed = to_base64(digest.digest(), newline=False)[:ENTRY_HASH_LENGTH]
            return hashed.decode("ascii") + versions

        return key


def looks_like_memoize_entry(rest: str, versions: Iterable[int] = (1, 2)) -> bool:
    """Whether a key (prefix removed) has the shape of a memoize entry: 16 base64
    characters and one or two 6-character versions."""
    lengths = {ENTRY_HASH_LENGTH + VERSION_LENGTH * count for count in versions}
    return len(rest) in lengths and all(ch in BASE64_CHARACTERS for ch in rest)


# --- @cached views ----------------------------------------------------------------------


def query_pairs(query: str) -> list[tuple[str, str]]:
    """The query string's ``(name, value)`` pairs, repeated names kept, as a request
    (or 2.5's ``query_args``) sees them."""
    return parse_qsl(query.lstrip("?"), keep_blank_values=True)


def query_digest(
    pairs: Iterable[tuple[str, str]], hash_method: Callable[..., Any], source: str | None = None
) -> str:
    """The hash Flask-Caching appends for ``query_string=True``: pairs sorted, so
    the order of the query string does not matter."""
    digest = hash_method(str(tuple(sorted(pairs))).encode())
    if source is not None:
        digest.update(source.encode("utf-8"))
    return str(digest.hexdigest())


def view_base_key(path: str, key_prefix: str = DEFAULT_VIEW_PREFIX) -> str:
    """``key_prefix % path`` (``view//about``), or the prefix itself when it has no ``%s``."""
    return key_prefix % path if "%s" in key_prefix else key_prefix


@dataclass(frozen=True)
class ViewKeyRequest:
    """One ``@cache.cached`` entry to name."""

    path: str
    key_prefix: str = DEFAULT_VIEW_PREFIX
    #: The query string of a ``query_string=True`` view, or None.
    query: str | None = None
    source: str | None = None


def view_key(request: ViewKeyRequest, generation: str, hash_method: Callable[..., Any]) -> str:
    """The key ``@cache.cached`` stores a view under."""
    if request.query is None:
        key = view_base_key(request.path, request.key_prefix)
        if request.source is not None:
            key += hash_method(request.source.encode("utf-8")).hexdigest()
        return key
    digest = query_digest(query_pairs(request.query), hash_method, request.source)
    # Legacy ignored key_prefix for query-string views: the path stands alone.
    base = request.path if generation == LEGACY else view_base_key(request.path, request.key_prefix)
    return base + digest


#: The view arguments Flask-Caching 2.5.0 (that release alone) took for ``make_cache_key``'s
#: own ``path`` and ``query_args`` when a request formed the key.
EXPLICIT_VIEW_ARGUMENTS = ("path", "query_args")


def with_explicit_view_arguments(
    request: ViewKeyRequest, view_args: Mapping[str, Any]
) -> ViewKeyRequest:
    """The request as 2.5.0 keys it: a route argument ``path`` stands in the key for the
    request's path (``/files/<path:path>`` at ``/files/a/b`` is ``view/a/b``), and one named
    ``query_args``, in a query_string view, for the query string (its value parsed as one).
    ``ValueError`` for a ``query_args`` that is not text: 2.5.0 fails on it and stores nothing.
    """
    path, query_args = view_args.get("path"), view_args.get("query_args")
    if path is not None:
        request = replace(request, path=f"{path}")
    if query_args is not None and request.query is not None:
        if not isinstance(query_args, str):
            raise ValueError(f"query_args={query_args!r} is not a query string")
        request = replace(request, query=query_args)
    return request


def query_variant_base(path: str, key_prefix: str, generation: str) -> str:
    """What every query-string variant of a view's key starts with."""
    return path if generation == LEGACY else view_base_key(path, key_prefix)


# --- template fragments -----------------------------------------------------------------


def fragment_key(name: str, vary_on: Sequence[str] = ()) -> str:
    """The key of a ``{% cache timeout, name, vary_on... %}`` block."""
    if not vary_on:
        return FRAGMENT_PREFIX + name
    return f"{FRAGMENT_PREFIX}{name}_{'_'.join(vary_on)}"


def implicit_fragment_name(template_filename: str, line: int) -> str:
    """The name a ``{% cache %}`` block without one gets: its file name and line."""
    return f"{template_filename}{line}"
