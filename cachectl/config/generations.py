"""Which Flask-Caching generation the application runs, and what that changes.

Flask-Caching 2.5 changed several defaults that decide where data lives (the
hash behind FileSystemCache file names, the hash behind view and memoize keys).
cachectl has to use the defaults of the generation the app actually runs, so
the choice is explicit (``--compat``) or read from the Flask-Caching installed
beside cachectl, which on an app host is the app's own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from cachectl.errors import ConfigError, UsageError

CURRENT = "2.5"
LEGACY = "legacy"
GENERATIONS = (CURRENT, LEGACY)
#: The one release whose view keys differ from the rest of its generation's (``key_form``).
RELEASE_2_5_0 = "2.5.0"


#: FileSystemCache's two file formats (``backends.filesystem_format`` reads them): cachelib's
#: 4-byte expiry header, and the pickled expiry of Flask-Caching up to 1.10.
HEADER = "cachelib"
PICKLED = "pickled-expiry"


class Generation(NamedTuple):
    """The defaults of one Flask-Caching generation that cachectl depends on."""

    name: str
    #: Default of CACHE_HASH_METHOD (view and memoize keys).
    hash_method: Callable[..., object]
    #: Default hash behind FileSystemCache file names (CACHE_FILE_HASH_METHOD in 2.5;
    #: the FileSystemCache class default in legacy, where the setting did not exist).
    file_hash_method: Callable[..., object]
    #: Where the generation was taken from, for ``cachectl config``.
    origin: str
    #: The FileSystemCache file format of the app's release (``backends.filesystem_format``),
    #: or None where the generation spans both (legacy: 1.9-1.10 pickled the expiry, 2.0-2.4
    #: write cachelib's header); a directory's own files then decide.
    file_format: str | None = None
    #: False when nothing said which Flask-Caching the app runs: the 2.5 defaults are then
    #: a guess, so what differs between generations refuses to run (``require_decided``).
    decided: bool = True
    #: Whether an ``args_to_ignore`` argument given by keyword stays in the key's keyword
    #: part: so up to 2.1 (the library never took it off its list of remaining keywords),
    #: not from 2.2. None: the generation spans both (``legacy``, 1.9-2.4).
    keeps_ignored_keywords: bool | None = False
    #: Whether a view argument named ``path`` or ``query_args`` forms the view's key in
    #: place of the request's path or query string: so in 2.5.0 alone (2.5.1 reverted it).
    #: None: the release is 2.5 but which one is not known (``--compat 2.5``).
    view_arguments_in_key: bool | None = False

    @property
    def key_form(self) -> str:
        """The name ``plan``'s view globs go by: the generation's, or ``2.5.0`` for that
        release, which keys a route's ``path`` argument alone (``view_arguments_in_key``)."""
        return RELEASE_2_5_0 if self.view_arguments_in_key is True else self.name

    def require_decided(self, what: str) -> None:
        """Exit 2 rather than act on a guess: ``what`` differs between generations."""
        if not self.decided:
            raise UsageError(
                f"{what} differs between Flask-Caching generations, and nothing says which "
                "one the app runs: pass --compat 2.5 or --compat legacy (1.9-2.4), set "
                "CACHECTL_COMPAT or compat in cachectl.toml, or install cachectl beside the "
                "app's Flask-Caching"
            )


def _installed_flask_caching() -> str | None:
    """The version of the Flask-Caching installed beside cachectl, from its distribution's
    metadata directory name (``flask_caching-2.4.1.dist-info``) beside the package: reading
    directory names costs a millisecond, ``importlib.metadata`` fifty. The package is
    found by the import system's cached directory listings, without importing it."""
    import importlib.util
    import os
    import sys

    spec = importlib.util.find_spec("flask_caching")
    if spec is None:
        return None
    places = [os.path.dirname(os.path.dirname(spec.origin))] if spec.origin else []
    for entry in [*places, *sys.path]:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            suffix = name[-len(".dist-info") :]
            if suffix not in (".dist-info", ".egg-info"):
                continue
            project, _, version = name[: -len(suffix)].partition("-")
            if project.lower().replace("_", "-").replace(".", "-") == "flask-caching":
                return version
    return None


def _release(version: str) -> tuple[int, int] | None:
    """``(major, minor)`` of a Flask-Caching version string, None if it is not one."""
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            return None
        parts.append(int(digits))
    return (parts[0], parts[1]) if len(parts) == 2 else None


def _patch(version: str) -> int | None:
    """The third number of a version string (``0`` of ``2.5.0``, ``2.5.0rc1``), None when
    it names no patch release (``2.5``): 2.5.0 and 2.5.1 form some view keys differently."""
    pieces = version.split(".")
    if len(pieces) < 3:
        return None
    digits = ""
    for ch in pieces[2]:
        if not ch.isdigit():
            break
        digits += ch
    return int(digits) if digits else None


def _file_format(release: tuple[int, int]) -> str | None:
    """FileSystemCache's file format by release: its own class up to 1.10 pickled the
    expiry; from 2.0 it is cachelib's (>= 0.9), with the 4-byte header; 1.11 used
    whichever cachelib was installed, so its files decide."""
    if release < (1, 11):
        return PICKLED
    return HEADER if release >= (2, 0) else None


def _sha256() -> Callable[..., object]:
    """hashlib's sha256, imported when a generation is made (OpenSSL's start costs --help
    two milliseconds)."""
    import hashlib

    return hashlib.sha256


def _md5() -> Callable[..., object]:
    import hashlib

    return hashlib.md5


def _by_release(release: tuple[int, int], origin: str, patch: int | None = None) -> Generation:
    if release >= (2, 5):
        in_key: bool | None = False
        if release == (2, 5):
            in_key = None if patch is None else patch == 0
        file_format = _file_format(release)
        return Generation(CURRENT, _sha256(), _sha256(), origin, file_format, True, False, in_key)
    file_format, keeps = _file_format(release), release < (2, 2)
    return Generation(LEGACY, _md5(), _md5(), origin, file_format, True, keeps)


def resolve_generation(
    requested: str | None = None, recorded: tuple[str, str] | None = None
) -> Generation:
    """Pick the generation: ``requested`` (``--compat`` or ``CACHECTL_COMPAT``),
    ``recorded`` (the generation a config file names, and where), the installed
    Flask-Caching, else 2.5's defaults marked undecided."""
    origin = "--compat"
    if requested is None and recorded is not None:
        requested, origin = recorded
    if requested is None:
        installed = _installed_flask_caching()
        if installed is None:
            # 2.5's defaults, marked as a guess: what differs refuses until told.
            origin = "not known (no --compat, no compat setting, no Flask-Caching here)"
            return Generation(
                CURRENT, _sha256(), _sha256(), origin, decided=False, view_arguments_in_key=None
            )
        else:
            release = _release(installed)
            if release is not None:
                # Read exactly: 2.5.0 and 2.5.1 form some view keys differently.
                origin = f"installed Flask-Caching {installed}"
                return _by_release(release, origin, _patch(installed))
            requested, origin = CURRENT, f"installed Flask-Caching {installed}"
    requested = requested.strip().lower()
    if requested in ("2.5+", "current"):
        requested = "2.5"
    if requested == "2.0-2.4":
        requested = "2.4"
    if requested == "legacy":
        return Generation(LEGACY, _md5(), _md5(), origin, keeps_ignored_keywords=None)
    release = _release(requested)
    if release is None or not (1, 9) <= release < (4, 0):
        raise ConfigError(
            f"unknown Flask-Caching generation {requested!r} (use 2.5, legacy, or the "
            "release the app runs, 1.9 or later: 2.5.0, 2.5.1, 2.4, 1.10, ...)"
        )
    return _by_release(release, origin, _patch(requested))


#: A FileSystemCache file name: the hex digest of the key (md5: 32, sha256: 64).
_NAME_LENGTHS = {32: LEGACY, 64: CURRENT}


def generation_from_file_names(directory: str, at_most: int = 2000) -> Generation | None:
    """The generation the names of a CACHE_DIR's files show, when they all agree: legacy
    named them by md5, 2.5 by sha256 (CACHE_FILE_HASH_METHOD's default). None when the
    directory holds no such file, or both kinds."""
    import os
    from itertools import islice

    seen = set()
    try:
        with os.scandir(directory) as entries:
            for entry in islice(entries, at_most):
                name = entry.name
                if len(name) in _NAME_LENGTHS and all(c in "0123456789abcdef" for c in name):
                    seen.add(_NAME_LENGTHS[len(name)])
    except OSError:
        return None
    if len(seen) != 1:
        return None
    origin = f"the file names in {directory} ({'md5' if LEGACY in seen else 'sha256'})"
    return resolve_generation(None, (seen.pop(), origin))
