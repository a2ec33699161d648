"""Read the cache configuration out of a live Flask application (``--app``).

The app is imported with Flask's own loader (``flask.cli.ScriptInfo``), so an
import string means exactly what it means to ``flask --app``. What cachectl
takes from the app is the configuration of every Flask-Caching ``Cache`` the
app registered in ``app.extensions["cache"]``, completed with what only the live
backend object knows (a prefix or serializer passed to ``init_app(config=...)``
is stored nowhere else).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from cachectl.errors import ConfigError


@dataclass
class AppCache:
    """One ``Cache`` object of the app and the settings it runs with."""

    index: int
    #: ``module:attribute`` where the Cache object can be imported from, when found.
    import_name: str | None
    settings: dict[str, Any] = field(default_factory=dict)
    #: The Flask-Caching ``Cache`` object itself and its app, for key derivation
    #: by the library's own code (decorators' make_cache_key).
    cache: Any = None
    app: Any = None

    @property
    def label(self) -> str:
        return self.import_name or f"#{self.index}"


def load_flask_app(import_path: str) -> Any:
    """Import the app as ``flask --app IMPORT`` would (cwd on sys.path, factories called)."""
    try:
        from flask.cli import NoAppException, ScriptInfo
    except ImportError as exc:
        raise ConfigError(
            "--app needs Flask installed beside cachectl "
            "(pip install 'flask-cachectl[app]', or use --config)"
        ) from exc
    info = ScriptInfo(app_import_path=import_path, set_debug_flag=False)
    try:
        return info.load_app()
    except NoAppException as exc:
        raise ConfigError(f"could not load the app {import_path!r}: {exc}") from exc
    except Exception as exc:  # the app's own start-up code failed
        raise ConfigError(
            f"loading the app {import_path!r} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _find_import_name(obj: object) -> str | None:
    """Where a module-level name refers to ``obj``, so operators can pick a cache
    by the name they use in their code (``myapp.ext:cache``)."""
    found = []
    for module_name, module in list(sys.modules.items()):
        namespace = getattr(module, "__dict__", None)
        if not namespace or module_name.startswith(("flask_caching", "cachectl")):
            continue
        for attribute, value in list(namespace.items()):
            if value is obj:
                found.append(f"{module_name}:{attribute}")
    return min(found, key=lambda name: (name.startswith("__main__"), len(name))) if found else None


def _live_settings(cache: Any, backend: Any) -> dict[str, Any]:
    """Settings that only the live objects know for sure."""
    live: dict[str, Any] = {}
    if getattr(cache, "hash_method", None) is not None:
        live["CACHE_HASH_METHOD"] = cache.hash_method
    if hasattr(backend, "default_timeout"):
        live["CACHE_DEFAULT_TIMEOUT"] = backend.default_timeout
    if hasattr(backend, "key_prefix"):
        live["CACHE_KEY_PREFIX"] = backend.key_prefix or ""
    serializer = getattr(backend, "serializer", None)
    class_serializer = getattr(type(backend), "serializer", None)
    if serializer is not None and type(serializer) is not type(class_serializer):
        live["CACHE_SERIALIZER"] = serializer
    # cachelib's FileSystemCache keeps its settings in private attributes.
    for attribute, name in (
        ("_path", "CACHE_DIR"),
        ("_hash_method", "CACHE_FILE_HASH_METHOD"),
        ("_threshold", "CACHE_THRESHOLD"),
    ):
        if hasattr(backend, attribute):
            live[name] = getattr(backend, attribute)
    return live


def _cache_type_of(backend: Any) -> str:
    cls = type(backend)
    if cls.__module__.startswith("flask_caching.backends"):
        return cls.__name__
    if cls.__module__.startswith("cachelib"):
        return f"cachelib.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def app_caches(app: Any) -> list[AppCache]:
    """The configuration of every Flask-Caching ``Cache`` registered on ``app``."""
    registered = getattr(app, "extensions", {}).get("cache") or {}
    app_settings = {k: v for k, v in app.config.items() if k.startswith("CACHE_")}
    caches = []
    for index, (cache, backend) in enumerate(registered.items()):
        settings = dict(app_settings)
        settings.update(
            {
                k: v
                for k, v in (getattr(cache, "config", None) or {}).items()
                if k.startswith("CACHE_")
            }
        )
        settings.update(_live_settings(cache, backend))
        settings["CACHE_TYPE"] = settings.get("CACHE_TYPE") or _cache_type_of(backend)
        caches.append(AppCache(index, _find_import_name(cache), settings, cache, app))
    return caches


def select_app_cache(caches: list[AppCache], wanted: str | None, app_name: str) -> AppCache:
    """Pick one cache by index or import name; refuse to guess between several."""
    if not caches:
        raise ConfigError(
            f"the app {app_name!r} registered no Flask-Caching Cache "
            "(app.extensions['cache'] is empty)"
        )
    choices = ", ".join(f"{c.index} ({c.label})" for c in caches)
    if wanted is None:
        if len(caches) == 1:
            return caches[0]
        raise ConfigError(f"the app has several caches: {choices}; pick one with --cache")
    for cache in caches:
        if wanted in (str(cache.index), cache.import_name) or (
            cache.import_name and wanted == cache.import_name.replace(":", ".")
        ):
            return cache
    raise ConfigError(f"no cache {wanted!r} in the app; it has: {choices}")
