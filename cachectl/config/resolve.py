"""Resolve the cache configuration the app runs with, and remember where each value came from.

cachectl must connect exactly where the app connects, with the same prefix,
timeouts and serializer; when that goes wrong an operator needs to see which
source said what. Sources, highest precedence first: command-line overrides,
``FLASK_*`` environment variables (``--env``), a config file (``--config``, or
one found from the current directory), the live app (``--app``, or an exported
``FLASK_APP`` when no file is found). Flask-Caching's own defaults fill what is
left. The result keeps each value's source for ``config``; ``settings()`` turns
it into the typed record everything else reads.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from cachectl.config.generations import Generation, resolve_generation
from cachectl.config.locations import VALKEY_CACHE, valkey_arguments
from cachectl.config.settings import (
    SETTING_TYPES,
    CacheSettings,
    canonical_cache_type,
    check_types,
    generation_defaults,
    resolve_hash_method,
)
from cachectl.config.sources import (
    DEFAULT_CACHE_NAME,
    discover_config_file,
    read_config_file,
    read_prefixed_env,
    select_named_cache,
)
from cachectl.errors import ConfigError
from cachectl.runtime.secrets import masked_value

if TYPE_CHECKING:
    from cachectl.app.loader import AppCache


@dataclass
class ConfigRequest:
    """What the command line asked for; the CLI fills it, this module resolves it.
    The only reader of the environment: everything else asks the request."""

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

    def requested_compat(self) -> str | None:
        """``--compat``, else ``CACHECTL_COMPAT``."""
        return self.compat or self.environ.get("CACHECTL_COMPAT") or None


class ResolvedConfig(NamedTuple):
    """The merged ``CACHE_*`` values of one cache and the source of each."""

    cache_name: str
    values: Mapping[str, Any]
    sources: Mapping[str, str]
    generation: Generation
    warnings: tuple[str, ...] = ()
    #: The audit log the config file names (``audit_log``), if any.
    audit_log: str | None = None

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    def source(self, name: str) -> str:
        return self.sources.get(name, "default")

    def masked(self) -> dict[str, Any]:
        """Every setting, secrets hidden, in setting-name order."""
        return {name: masked_value(name, self.values[name]) for name in sorted(self.values)}

    def settings(self) -> CacheSettings:
        """The typed record the backends and operations read."""
        return CacheSettings.from_values(self.cache_name, self.values, self.generation)


def _generation_from_evidence(values: dict[str, Any], sources: dict[str, str]) -> Any:
    """What the cache itself shows, where it is conclusive: CACHE_FILE_HASH_METHOD exists
    only from 2.5 on; a FileSystemCache's file names are md5 (legacy) or sha256 (2.5)."""
    from cachectl.config.generations import generation_from_file_names, resolve_generation

    if values.get("CACHE_FILE_HASH_METHOD") is not None:
        where = sources.get("CACHE_FILE_HASH_METHOD", "the settings")
        return resolve_generation(None, ("2.5", f"CACHE_FILE_HASH_METHOD, only in 2.5 ({where})"))
    directory = values.get("CACHE_DIR")
    if isinstance(directory, str) and "filesystem" in str(values.get("CACHE_TYPE", "")).lower():
        return generation_from_file_names(directory)
    return None


def _apply_defaults(
    values: dict[str, Any], sources: dict[str, str], generation: Generation
) -> None:
    for name, value in generation_defaults(generation).items():
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


def _app_layers(app_import: str, chosen: AppCache) -> list[tuple[str, dict[str, Any]]]:
    """The chosen cache's settings as the app configured them, then as its live
    backend shows them (which wins: it is where the app really connects). Only
    settings cachectl reads: an app's other CACHE_* values (a CACHE_CONFIG dict,
    CACHE_WARMUP_EXECUTORS) are none of cachectl's business."""
    where = f"app {app_import} (cache {chosen.label})"
    configured = {k: v for k, v in chosen.configured.items() if k in SETTING_TYPES}
    live = dict(chosen.live.values)
    if "CACHE_TYPE" in live:  # the live backend showed its location
        unreadable = {name.split()[0] for name in chosen.live.unreadable}
        for name in _LOCATION_SETTINGS - unreadable - live.keys():
            configured.pop(name, None)
    if "CACHE_OPTIONS" in live and isinstance(configured.get("CACHE_OPTIONS"), dict):
        live["CACHE_OPTIONS"] = {**configured["CACHE_OPTIONS"], **live["CACHE_OPTIONS"]}
    return [(where, configured), (f"{where}, live backend", live)]


def _check_readable(chosen: AppCache, values: dict[str, Any], cache_type: str) -> None:
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


def _valkey_cache_prefix(
    values: dict[str, Any], sources: dict[str, str], override_labels: set[str]
) -> None:
    """cachelib.ValkeyCache takes its prefix and timeout from CACHE_OPTIONS (or CACHE_ARGS):
    Flask-Caching hands it no CACHE_KEY_PREFIX. So the prefix it really uses is shown and
    used, not Flask-Caching's default ``flask_cache_``; a command-line value still wins."""
    raw_type = values.get("CACHE_TYPE")
    if not raw_type or canonical_cache_type(str(raw_type)) != VALKEY_CACHE:
        return
    options = values.get("CACHE_OPTIONS")
    arguments = valkey_arguments(
        values.get("CACHE_ARGS"), options if isinstance(options, dict) else {}
    )
    where = f"{VALKEY_CACHE}'s arguments (CACHE_OPTIONS, CACHE_ARGS)"
    found = (
        ("CACHE_KEY_PREFIX", arguments.key_prefix or ""),
        ("CACHE_DEFAULT_TIMEOUT", arguments.default_timeout),
    )
    for name, value in found:
        source = sources.get(name, "")
        if value is not None and source not in override_labels and "live backend" not in source:
            values[name] = value
            sources[name] = where


def resolve_config(request: ConfigRequest, chosen: AppCache | None = None) -> ResolvedConfig:
    """Merge every source of ``request`` into the effective settings of one cache.

    ``chosen`` is the app's cache the session picked (``cachectl.app.loader``), when the
    request loads an app: its configured and live settings are the lowest layers.
    """
    layers: list[tuple[str, dict[str, Any]]] = []  # lowest precedence first
    cache_name = request.cache_name or DEFAULT_CACHE_NAME
    app_import, config_file = request.sources()

    if chosen is not None and app_import is not None:
        cache_name = chosen.label
        layers += _app_layers(app_import, chosen)

    if request.cache_name is not None and app_import is None and config_file is None:
        raise ConfigError(
            f"--cache {request.cache_name}: no config file or app names caches here "
            "(named caches come from --config FILE, a cachectl.toml, or --app)"
        )
    recorded_compat = None
    audit_log = None
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
        audit_log = described.audit_log
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

    _valkey_cache_prefix(values, sources, {label for _, _, label in request.overrides})
    if chosen is not None:
        _check_readable(chosen, values, str(values.get("CACHE_TYPE")))
    generation = resolve_generation(request.requested_compat(), recorded_compat)
    if not generation.decided:
        generation = _generation_from_evidence(values, sources) or generation
    warnings = check_types(values, sources)
    _apply_defaults(values, sources, generation)
    return ResolvedConfig(cache_name, values, sources, generation, tuple(warnings), audit_log)
