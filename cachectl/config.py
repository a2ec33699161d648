"""Resolve the cache configuration the app runs with, and remember where each value came from.

cachectl must connect exactly where the app connects, with the same prefix,
timeouts and serializer; when that goes wrong an operator needs to see which
source said what. Sources, highest precedence first: command-line overrides,
``FLASK_*`` environment variables (``--env``), a config file (``--config``), the
live app (``--app``); a ``cachectl.toml`` or ``[tool.cachectl]`` found from the
current directory upward stands in when neither a file nor an app is named.
Flask-Caching's own defaults fill what is left.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cachectl.errors import ConfigError
from cachectl.generations import Generation, resolve_generation

DEFAULT_CACHE_NAME = "default"
HASH_METHOD_NAMES = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512")

#: The settings cachectl reads, with the types Flask-Caching expects of them.
#: Anything else under CACHE_ is kept (a custom backend may read it) but flagged.
SETTING_TYPES: dict[str, tuple[type, ...]] = {
    "CACHE_TYPE": (str,),
    "CACHE_KEY_PREFIX": (str,),
    "CACHE_DEFAULT_TIMEOUT": (int,),
    "CACHE_THRESHOLD": (int,),
    "CACHE_DIR": (str, os.PathLike),
    "CACHE_ARGS": (list, tuple),
    "CACHE_OPTIONS": (dict,),
    "CACHE_REDIS_URL": (str,),
    "CACHE_REDIS_HOST": (str,),
    "CACHE_REDIS_PORT": (int,),
    "CACHE_REDIS_DB": (int,),
    "CACHE_REDIS_PASSWORD": (str,),
    "CACHE_REDIS_SENTINELS": (list, tuple),
    "CACHE_REDIS_SENTINEL_MASTER": (str,),
    "CACHE_REDIS_SENTINEL_PASSWORD": (str,),
    "CACHE_REDIS_CLUSTER": (str,),
    "CACHE_MEMCACHED_SERVERS": (list, tuple),
    "CACHE_MEMCACHED_USERNAME": (str,),
    "CACHE_MEMCACHED_PASSWORD": (str,),
    "CACHE_HASH_METHOD": (str,),
    "CACHE_FILE_HASH_METHOD": (str,),
    "CACHE_SERIALIZER": (object,),  # a dotted name, a class or an instance
    "CACHE_SOURCE_CHECK": (bool,),
    "CACHE_IGNORE_ERRORS": (bool,),
    "CACHE_NO_NULL_WARNING": (bool,),
    "CACHE_ENABLE_SIGNALS": (bool,),
}
#: Settings a live app may hand over as Python objects rather than plain data.
CALLABLE_SETTINGS = {"CACHE_KEY_PREFIX", "CACHE_HASH_METHOD", "CACHE_FILE_HASH_METHOD"}
_SECRET_MARKERS = ("PASSWORD", "SECRET", "TOKEN")
_MASK = "****"


@dataclass
class ConfigRequest:
    """What the command line asked for; the CLI fills it, this module resolves it."""

    config_file: str | None = None
    app_import: str | None = None
    cache_name: str | None = None
    use_env: bool = False
    #: ``(setting, value, label)`` from --url, --key-prefix, --type, --dir and -o.
    overrides: list[tuple[str, Any, str]] = field(default_factory=list)
    compat: str | None = None
    cwd: Path = field(default_factory=Path.cwd)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    def sources(self) -> tuple[str | None, str | None]:
        """The app import string and the config file to read, in precedence order:
        --app / CACHECTL_APP and --config / CACHECTL_CONFIG as given; else a config
        file found from the current directory; else an exported ``FLASK_APP``. An
        ops host with FLASK_APP exported for the app's own tools but a cachectl.toml
        here (and perhaps no Flask) must use the file."""
        if self.app_import is not None or self.config_file is not None:
            return self.app_import, self.config_file
        discovered = discover_config_file(self.cwd)
        if discovered is not None:
            return None, str(discovered)
        return self.environ.get("FLASK_APP") or None, None


@dataclass
class CacheSettings:
    """The effective settings of one cache and the source of each value."""

    values: dict[str, Any]
    sources: dict[str, str]
    generation: Generation
    cache_name: str = DEFAULT_CACHE_NAME
    warnings: list[str] = field(default_factory=list)
    #: With --app: the loaded Flask app and the Cache object chosen in it.
    app: Any = None
    cache_object: Any = None
    #: With --app, for a backend class cachectl cannot rebuild: the app's own object.
    live_backend: Any = None

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    def source(self, name: str) -> str:
        return self.sources.get(name, "default")

    def masked(self) -> dict[str, Any]:
        """Every setting, secrets hidden, in setting-name order."""
        return {name: masked_value(name, self.values[name]) for name in sorted(self.values)}


# --- presentation of values ------------------------------------------------------------


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
    netloc = f"{user}:{_MASK}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def hash_method_name(method: Any) -> str:
    """``md5`` for ``hashlib.md5`` (also the OpenSSL-backed constructors)."""
    try:
        return method().name
    except Exception:
        return getattr(method, "__name__", repr(method))


def is_secret(name: str) -> bool:
    return any(marker in name.upper() for marker in _SECRET_MARKERS)


def masked_value(name: str, value: Any) -> Any:
    """``value`` safe to show: secrets and URL passwords masked, hash methods and
    other Python objects by name; plain data stays plain (for ``--json``)."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if is_secret(name):
        return _MASK if value else value
    if name.endswith("HASH_METHOD"):
        return hash_method_name(value)
    if isinstance(value, str):
        return mask_url(value) if "://" in value else value
    if isinstance(value, dict):
        return {str(k): masked_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [masked_value(name, v) for v in value]
    return repr(value)


def display_value(name: str, value: Any) -> str:
    """One line of text for ``masked_value``."""
    shown = masked_value(name, value)
    return shown if isinstance(shown, str) else repr(shown)


def describe_location(settings: CacheSettings) -> str:
    """Where a cache's settings say it lives, credentials masked, without connecting."""
    kind = str(settings.get("CACHE_TYPE") or "").lower()
    get = settings.get
    if "sentinel" in kind:
        sentinels = ",".join(f"{h}:{p}" for h, p in get("CACHE_REDIS_SENTINELS") or [])
        master = get("CACHE_REDIS_SENTINEL_MASTER", "mymaster")
        via = sentinels or "127.0.0.1:26379"
        return f"sentinel master {master} via {via}, db {get('CACHE_REDIS_DB', 0)}"
    if "cluster" in kind:
        return (
            f"redis cluster {mask_url(get('CACHE_REDIS_URL') or get('CACHE_REDIS_CLUSTER') or '')}"
        )
    if "redis" in kind:
        if get("CACHE_REDIS_URL"):
            return mask_url(get("CACHE_REDIS_URL"))
        socket_path = (get("CACHE_OPTIONS") or {}).get("unix_socket_path")
        if socket_path:
            return f"unix://{socket_path}?db={get('CACHE_REDIS_DB', 0)}"
        scheme = "rediss" if (get("CACHE_OPTIONS") or {}).get("ssl") else "redis"
        host, port = get("CACHE_REDIS_HOST", "localhost"), get("CACHE_REDIS_PORT", 6379)
        return f"{scheme}://{host}:{port}/{get('CACHE_REDIS_DB', 0)}"
    if "memcached" in kind:
        return "memcached " + ",".join(
            map(str, get("CACHE_MEMCACHED_SERVERS") or ["127.0.0.1:11211"])
        )
    if "filesystem" in kind:
        return f"directory {get('CACHE_DIR')}"
    return str(get("CACHE_TYPE"))


# --- reading sources -------------------------------------------------------------------


def parse_setting_value(text: str) -> Any:
    """A value given as text (environment, ``-o``): JSON when it parses, else the string,
    the way Flask's ``config.from_prefixed_env`` reads it."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def read_prefixed_env(environ: Mapping[str, str], prefix: str = "FLASK") -> dict[str, Any]:
    """``FLASK_CACHE_*`` variables as ``config.from_prefixed_env()`` reads them
    (``__`` descends into a dict: ``FLASK_CACHE_OPTIONS__socket_timeout=2``)."""
    head = f"{prefix}_"
    settings: dict[str, Any] = {}
    for variable in sorted(environ):
        if not variable.startswith(head):
            continue
        name = variable[len(head) :]
        if not name.startswith("CACHE_"):
            continue
        value = parse_setting_value(environ[variable])
        if "__" not in name:
            settings[name] = value
            continue
        current = settings
        *parents, leaf = name.split("__")
        for part in parents:
            current = current.setdefault(part, {})
            if not isinstance(current, dict):
                raise ConfigError(f"{variable}: {part} is not a table of settings")
        current[leaf] = value
    return settings


def _read_python_file(path: Path) -> dict[str, Any]:
    """Run the file as ``config.from_pyfile`` does and keep its upper-case names."""
    module = types.ModuleType("config")
    module.__file__ = str(path)
    try:
        source = path.read_bytes()
        exec(compile(source, str(path), "exec"), module.__dict__)
    except SyntaxError as exc:
        raise ConfigError(f"{path}, line {exc.lineno}: syntax error: {exc.msg}") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except Exception as exc:
        raise ConfigError(f"{path} failed while running: {type(exc).__name__}: {exc}") from exc
    return {name: value for name, value in vars(module).items() if name.isupper()}


def _read_data_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}, line {exc.lineno}: invalid JSON: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table of settings at the top level")
    if path.name == "pyproject.toml":
        data = data.get("tool", {}).get("cachectl", {})
    return data


@dataclass
class ConfigFile:
    """What a config file describes: named caches, and the generation it recorded."""

    caches: dict[str, dict[str, Any]]
    #: ``compat`` (``CACHECTL_COMPAT`` in a .py file), as ``config --write`` records it.
    compat: str | None = None


def _is_settings_dict(value: Any) -> bool:
    """A dict of CACHE_* settings, as large apps keep one per cache
    (``DATA_CACHE_CONFIG = {"CACHE_TYPE": ..., "CACHE_KEY_PREFIX": ...}``)."""
    return isinstance(value, dict) and any(str(k).startswith("CACHE_") for k in value)


def read_config_file(path: Path) -> ConfigFile:
    """Named caches described by a file: ``{"default": {...}, "sessions": {...}}``.

    A named cache inherits the top-level settings it does not set itself, as a
    ``Cache(config=...)`` or ``init_app(app, config)`` inherits ``app.config`` in
    Flask-Caching. In a .py file (the app's own config module), every top-level
    dict of CACHE_* settings is a named cache under its variable name.
    """
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    if path.suffix == ".py":
        data = _read_python_file(path)
        named = data.pop("CACHECTL_CACHES", {})
        compat = data.pop("CACHECTL_COMPAT", None)
        if isinstance(named, dict):
            for name, value in list(data.items()):
                if _is_settings_dict(value):
                    named.setdefault(name, data.pop(name))
    elif path.suffix in (".toml", ".json"):
        data = _read_data_file(path)
        named = data.pop("caches", {})
        compat = data.pop("compat", None)
    else:
        raise ConfigError(f"config file {path}: use a .py, .toml or .json file")
    if not isinstance(named, dict) or not all(isinstance(v, dict) for v in named.values()):
        raise ConfigError(f"{path}: named caches must be tables of settings, one per name")
    if compat is not None and not isinstance(compat, str):
        raise ConfigError(f"{path}: compat must be a string (2.5 or legacy), not {compat!r}")
    top = {k: v for k, v in data.items() if k.startswith("CACHE_")}
    caches: dict[str, dict[str, Any]] = {}
    if top:
        caches[DEFAULT_CACHE_NAME] = top
    for name, settings in named.items():
        caches[str(name)] = {**top, **settings}
    return ConfigFile(caches, compat)


def discover_config_file(start: Path) -> Path | None:
    """``cachectl.toml``, else a ``pyproject.toml`` with ``[tool.cachectl]``, from ``start`` up."""
    for directory in (start, *start.parents):
        candidate = directory / "cachectl.toml"
        if candidate.is_file():
            return candidate
        pyproject = directory / "pyproject.toml"
        if pyproject.is_file():
            try:
                if (
                    tomllib.loads(pyproject.read_text(encoding="utf-8"))
                    .get("tool", {})
                    .get("cachectl")
                ):
                    return pyproject
            except (OSError, tomllib.TOMLDecodeError):
                continue
    return None


def short_name(settings_name: str) -> str:
    """``data`` for ``DATA_CACHE_CONFIG``: what an operator types for a settings dict."""
    name = settings_name.upper()
    for suffix in ("_CONFIG", "_CACHE"):
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return name.lower()


def select_named_cache(
    caches: dict[str, dict[str, Any]], wanted: str | None, where: str
) -> tuple[str, dict[str, Any]]:
    if wanted is not None:
        if wanted in caches:
            return wanted, caches[wanted]
        by_short_name = [name for name in caches if short_name(name) == wanted.lower()]
        if len(by_short_name) == 1:
            return by_short_name[0], caches[by_short_name[0]]
        known = ", ".join(caches) or "none"
        raise ConfigError(f"{where} has no cache named {wanted!r} (it has: {known})")
    if DEFAULT_CACHE_NAME in caches or not caches:
        return DEFAULT_CACHE_NAME, caches.get(DEFAULT_CACHE_NAME, {})
    if len(caches) == 1:
        return next(iter(caches.items()))
    raise ConfigError(
        f"{where} describes several caches ({', '.join(caches)}); pick one with --cache"
    )


# --- normalising and checking ----------------------------------------------------------


def resolve_hash_method(name: str, value: Any) -> Callable[..., Any]:
    """A hashlib constructor from a name (``"md5"``) or the constructor itself."""
    if callable(value):
        return value
    if isinstance(value, str) and value.lower().removeprefix("hashlib.") in HASH_METHOD_NAMES:
        return getattr(hashlib, value.lower().removeprefix("hashlib."))
    raise ConfigError(f"{name} must be one of {', '.join(HASH_METHOD_NAMES)}, not {value!r}")


def _check_types(values: dict[str, Any], sources: dict[str, str]) -> list[str]:
    warnings = []
    for name, value in values.items():
        expected = SETTING_TYPES.get(name)
        if expected is None:
            warnings.append(f"{name} (from {sources.get(name)}) is not a setting cachectl knows")
            continue
        if value is None or name in (
            "CACHE_SERIALIZER",
            "CACHE_HASH_METHOD",
            "CACHE_FILE_HASH_METHOD",
        ):
            continue
        if name in CALLABLE_SETTINGS and callable(value):
            continue
        wrong_bool = isinstance(value, bool) and bool not in expected
        if wrong_bool or not isinstance(value, expected):
            wanted = " or ".join(t.__name__ for t in expected)
            raise ConfigError(
                f"{name} (from {sources.get(name)}) must be {wanted}, "
                f"not {type(value).__name__} {value!r}"
            )
        if name in ("CACHE_DEFAULT_TIMEOUT", "CACHE_THRESHOLD") and value < 0:
            raise ConfigError(f"{name} (from {sources.get(name)}) must not be negative")
    return warnings


def _apply_defaults(
    values: dict[str, Any], sources: dict[str, str], generation: Generation
) -> None:
    defaults: dict[str, Any] = {
        "CACHE_KEY_PREFIX": "flask_cache_",
        "CACHE_DEFAULT_TIMEOUT": 300,
        "CACHE_THRESHOLD": 500,
        "CACHE_HASH_METHOD": generation.hash_method,
        "CACHE_FILE_HASH_METHOD": generation.file_hash_method,
    }
    for name, value in defaults.items():
        if values.get(name) is None:
            values[name] = value
            sources[name] = f"default (Flask-Caching {generation.name})"
    for name in ("CACHE_HASH_METHOD", "CACHE_FILE_HASH_METHOD"):
        values[name] = resolve_hash_method(name, values[name])


_INFERRED_TYPES = (
    ("CACHE_REDIS_URL", "RedisCache"),
    ("CACHE_DIR", "FileSystemCache"),
    ("CACHE_REDIS_CLUSTER", "RedisClusterCache"),
    ("CACHE_REDIS_SENTINELS", "RedisSentinelCache"),
    ("CACHE_MEMCACHED_SERVERS", "MemcachedCache"),
)

NO_CONFIG_HELP = (
    "no cache configuration found: point cachectl at the app with --app IMPORT "
    "(or CACHECTL_APP / FLASK_APP), at a config file with --config FILE "
    "(or CACHECTL_CONFIG), or create a cachectl.toml here or in a parent directory"
)


#: Settings that say where a cache lives: when the live backend shows where it
#: really connects, what the app's config says of them no longer counts.
_LOCATION_SETTINGS = frozenset(
    {
        "CACHE_REDIS_URL",
        "CACHE_REDIS_HOST",
        "CACHE_REDIS_PORT",
        "CACHE_REDIS_DB",
        "CACHE_REDIS_PASSWORD",
        "CACHE_REDIS_SENTINELS",
        "CACHE_REDIS_SENTINEL_MASTER",
        "CACHE_REDIS_SENTINEL_PASSWORD",
        "CACHE_REDIS_CLUSTER",
        "CACHE_MEMCACHED_SERVERS",
        "CACHE_DIR",
    }
)


def _app_layers(loaded: Any, chosen: Any) -> list[tuple[str, dict[str, Any]]]:
    """The chosen cache's settings as the app configured them, then as its live
    backend shows them (which wins: it is where the app really connects). Only
    settings cachectl reads: an app's other CACHE_* values (a CACHE_CONFIG dict,
    CACHE_WARMUP_EXECUTORS) are none of cachectl's business."""
    where = f"app {loaded.import_path} (cache {chosen.label})"
    configured = {k: v for k, v in chosen.configured.items() if k in SETTING_TYPES}
    live = dict(chosen.live.values)
    if "CACHE_TYPE" in live:  # the live backend showed its location
        unreadable = {name.split()[0] for name in chosen.live.unreadable}
        for name in _LOCATION_SETTINGS - unreadable - live.keys():
            configured.pop(name, None)
    if "CACHE_OPTIONS" in live and isinstance(configured.get("CACHE_OPTIONS"), dict):
        live["CACHE_OPTIONS"] = {**configured["CACHE_OPTIONS"], **live["CACHE_OPTIONS"]}
    return [(where, configured), (f"{where}, live backend", live)]


def _check_readable(chosen: Any, values: dict[str, Any], cache_type: str) -> None:
    """Refuse to fill from defaults what the live backend would not reveal and
    neither the app's config nor the command line gave."""
    missing = [name for name in chosen.live.unreadable if name.split()[0] not in values]
    if missing:
        raise ConfigError(
            f"cannot read {', '.join(missing)} of cache {chosen.label} from the app's live "
            f"{cache_type} backend ({type(chosen.backend).__module__}."
            f"{type(chosen.backend).__qualname__}), and the app's config does not set "
            "it: give it with -o NAME=VALUE or --config"
        )


def resolve_settings(request: ConfigRequest, loaded: Any = None) -> CacheSettings:
    """Merge every source of ``request`` into the effective settings of one cache.

    ``loaded`` is the app already loaded for this command (``app_loader.LoadedApp``),
    so a command that needs several caches of one app starts it once.
    """
    layers: list[tuple[str, dict[str, Any]]] = []  # lowest precedence first
    cache_name = request.cache_name or DEFAULT_CACHE_NAME
    app_import, config_file = request.sources()

    chosen = None
    if app_import is not None:
        from cachectl import app_loader

        if loaded is None:
            loaded = app_loader.load_flask_app(app_import)
        chosen = app_loader.select_app_cache(loaded.caches, request.cache_name, app_import)
        cache_name = chosen.label
        layers += _app_layers(loaded, chosen)

    recorded_compat = None
    if config_file is not None:
        path = Path(config_file)
        if not path.is_absolute():
            path = request.cwd / path
        described = read_config_file(path)
        name, settings = select_named_cache(
            described.caches, request.cache_name if app_import is None else None, str(path)
        )
        label = f"file {path}" + ("" if name == DEFAULT_CACHE_NAME else f" (cache {name})")
        if app_import is None:
            cache_name = name
        if described.compat is not None:
            recorded_compat = (described.compat, f"recorded in {path}")
        layers.append((label, settings))

    if request.use_env:
        for name, value in read_prefixed_env(request.environ).items():
            layers.append((f"env FLASK_{name}", {name: value}))

    for name, value, label in request.overrides:
        if not name.startswith("CACHE_"):
            raise ConfigError(f"{label}: {name} is not a cache setting (they start with CACHE_)")
        layers.append((label, {name: value}))

    if not layers:
        raise ConfigError(NO_CONFIG_HELP)

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for label, settings in layers:
        for name, value in settings.items():
            values[name] = value
            sources[name] = label

    if "CACHE_TYPE" not in values:
        override_labels = {label for _, _, label in request.overrides}
        for setting, cache_type in _INFERRED_TYPES:
            if sources.get(setting) in override_labels:
                values["CACHE_TYPE"] = cache_type
                sources["CACHE_TYPE"] = f"inferred from {sources[setting]}"
                break

    if chosen is not None:
        _check_readable(chosen, values, str(values.get("CACHE_TYPE")))
    generation = resolve_generation(request.compat, recorded_compat)
    warnings = _check_types(values, sources)
    _apply_defaults(values, sources, generation)
    settings = CacheSettings(values, sources, generation, cache_name, warnings)
    if chosen is not None:
        settings.app, settings.cache_object = chosen.app, chosen.cache
        if chosen.live.opaque and sources.get("CACHE_TYPE", "").startswith("app "):
            settings.live_backend = chosen.backend
    return settings
