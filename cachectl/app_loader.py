"""Read the caches of a live Flask application (``--app``).

The app is imported with Flask's own loader (``flask.cli.ScriptInfo``), so an
import string means exactly what it means to ``flask --app``. While it starts,
cachectl watches ``Cache.init_app`` to learn the settings each cache was given
(a dict passed to ``init_app`` is stored nowhere else), and afterwards reads the
connection back from the backend objects the app built (``backends.live``).
Each cache is then known by every name an operator might use for it: its index,
a module attribute (``pkg.ext:cache``), an attribute path on a manager object
(``pkg.ext:cache_manager.data_cache``) or the settings dict it was configured
from (``DATA_CACHE_CONFIG``, or ``data`` for short).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from typing import Any

from cachectl.backends.live import LiveReading, read_live_backend
from cachectl.config_sources import did_you_mean, short_name
from cachectl.errors import ConfigError


@dataclass
class InitAppCall:
    """One ``Cache.init_app`` the app made while starting."""

    cache: Any
    app: Any
    #: The ``config`` argument itself (so a dict in app.config is found by identity).
    given: dict[str, Any] | None
    #: What Flask-Caching built the backend from: app.config, Cache(config=...), ``given``.
    merged: dict[str, Any]


@dataclass
class AppCache:
    """One ``Cache`` object of the app, the names it is known by, and its settings."""

    index: int
    #: ``module:attribute`` where the Cache object can be imported from, when found.
    import_name: str | None = None
    #: ``module:object.attribute`` for a Cache kept on a manager object.
    attribute_path: str | None = None
    #: The app.config name of the settings dict the cache was configured from.
    config_name: str | None = None
    #: The settings it was created with (app.config and what init_app was given).
    configured: dict[str, Any] = field(default_factory=dict)
    live: LiveReading = field(default_factory=LiveReading)
    #: The Flask-Caching ``Cache`` object, its live backend and its app, for key
    #: derivation by the library's own code (decorators' make_cache_key).
    cache: Any = None
    backend: Any = None
    app: Any = None

    @property
    def label(self) -> str:
        """The best name found, the one ``config`` shows and ``config --write`` uses."""
        return self.import_name or self.config_name or self.attribute_path or f"#{self.index}"

    @property
    def names(self) -> list[str]:
        found = [self.import_name, self.config_name, self.attribute_path]
        return [name for name in found if name]


@dataclass
class LoadedApp:
    """The app loaded once for a command, and its caches in start-up order."""

    import_path: str
    app: Any
    caches: list[AppCache]


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send what the app prints while starting to stderr, at the file-descriptor level
    too, so cachectl's stdout (one JSON document with --json) stays its own."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


@contextmanager
def _watching_init_app() -> Iterator[list[InitAppCall]]:
    """Record every ``Cache.init_app`` made while the app starts."""
    calls: list[InitAppCall] = []
    try:
        from flask_caching import Cache
    except ImportError:  # the app cannot have registered a cache either
        yield calls
        return
    original = Cache.init_app

    def recording_init_app(self: Any, app: Any, config: Any = None, *args: Any, **kw: Any) -> Any:
        merged = dict(app.config)
        merged.update(getattr(self, "config", None) or {})
        merged.update(config if isinstance(config, dict) else {})
        calls.append(InitAppCall(self, app, config if isinstance(config, dict) else None, merged))
        return original(self, app, config, *args, **kw)

    Cache.init_app = recording_init_app  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        Cache.init_app = original  # type: ignore[method-assign]


def load_flask_app(import_path: str, script_info: Any = None) -> LoadedApp:
    """Import the app as ``flask --app IMPORT`` would (cwd on sys.path, factories
    called) and collect its caches; inside ``flask cache``, through Flask's own
    ``script_info`` (its ``--app``, ``FLASK_APP``, discovery or ``create_app``)."""
    try:
        from flask.cli import NoAppException, ScriptInfo
    except ImportError as exc:
        raise ConfigError(
            "--app needs Flask installed beside cachectl "
            "(pip install 'flask-cachectl[app]', or use --config)"
        ) from exc
    info = script_info or ScriptInfo(app_import_path=import_path, set_debug_flag=False)
    with _stdout_to_stderr(), _watching_init_app() as calls:
        try:
            app = info.load_app()
        except NoAppException as exc:
            raise ConfigError(f"could not load the app {import_path!r}: {_summary(exc)}") from exc
        except SystemExit as exc:  # the app's start-up ended the process on purpose
            raise ConfigError(
                f"loading the app {import_path!r} ended it: sys.exit({exc.code!r})"
            ) from exc
        except Exception as exc:  # the app's own start-up code failed
            raise ConfigError(
                f"loading the app {import_path!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
    return LoadedApp(import_path, app, app_caches(app, calls))


def _summary(exc: BaseException) -> str:
    """Flask's message, without the traceback it embeds for an import error: its
    first line and the error itself (``--debug`` shows the whole chain)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else type(exc).__name__
    return f"{lines[0].rstrip(':')}: {lines[-1]}"


def _module_namespaces() -> Iterator[tuple[str, dict[str, Any]]]:
    for module_name, module in list(sys.modules.items()):
        namespace = getattr(module, "__dict__", None)
        if namespace and not module_name.startswith(("flask_caching", "cachectl")):
            yield module_name, namespace


def _public_attributes(holder: Any, properties: dict[type, list[str]]) -> Iterator[tuple[str, Any]]:
    """Attributes of a manager object that may hold a Cache: its properties first
    (``cache_manager.data_cache``), then what its instance dict holds."""
    kind = type(holder)
    if kind.__module__ in ("builtins", "types") or isinstance(holder, type):
        return
    if kind not in properties:
        properties[kind] = [
            name
            for name in dir(kind)
            if not name.startswith("_") and isinstance(getattr(kind, name, None), property)
        ]
    for name in properties[kind]:
        try:
            yield name, getattr(holder, name)
        except Exception:  # a property that needs a context: not a cache holder
            continue
    instance_dict = getattr(holder, "__dict__", None)
    if isinstance(instance_dict, dict):
        yield from list(instance_dict.items())


def _find_names(caches: list[Any]) -> dict[int, tuple[str | None, str | None]]:
    """Where the app's modules refer to each cache, in one pass over them: a module
    attribute, or an attribute of a module-level object (a manager of several caches)."""
    wanted = {id(cache) for cache in caches}
    direct: dict[int, list[str]] = {key: [] for key in wanted}
    nested: dict[int, list[str]] = {key: [] for key in wanted}
    properties: dict[type, list[str]] = {}
    for module_name, namespace in _module_namespaces():
        for attribute, value in list(namespace.items()):
            if id(value) in wanted:
                direct[id(value)].append(f"{module_name}:{attribute}")
            elif not attribute.startswith("__") and not callable(value):
                for name, held in _public_attributes(value, properties):
                    if id(held) in wanted:
                        # A manager is most often created where its class is defined:
                        # that module comes before those that merely import it.
                        home = type(value).__module__ == module_name
                        nested[id(held)].append(
                            f"{'' if home else '~'}{module_name}:{attribute}.{name}"
                        )

    def best(names: list[str]) -> str | None:
        rank = lambda name: (name.startswith("__main__"), "._" in name, len(name))  # noqa: E731
        if not names:
            return None
        return min(names, key=lambda name: (name.startswith("~"), rank(name))).lstrip("~")

    return {key: (best(direct[key]), best(nested[key])) for key in wanted}


def _config_name(app: Any, call: InitAppCall | None, cache: Any) -> str | None:
    """The app.config name of the settings dict the cache was configured from,
    found by identity first, then by equal content."""
    candidates = [call.given if call else None, getattr(cache, "config", None)]
    dicts = [(name, value) for name, value in app.config.items() if isinstance(value, dict)]
    for candidate in candidates:
        if not candidate:
            continue
        for name, value in dicts:
            if value is candidate:
                return str(name)
        for name, value in dicts:
            if value == candidate:
                return str(name)
    return None


def _read_live(cache: Any, backend: Any) -> LiveReading:
    """What the backend shows, and what the Cache object itself settled on at
    init_app (its key hash and source check, used by its decorators)."""
    reading = read_live_backend(backend)
    if getattr(cache, "hash_method", None) is not None:  # Flask-Caching 2.5+
        reading.values["CACHE_HASH_METHOD"] = cache.hash_method
    if getattr(cache, "source_check", None) is not None:
        reading.values["CACHE_SOURCE_CHECK"] = bool(cache.source_check)
    return reading


def app_caches(app: Any, calls: list[InitAppCall] | None = None) -> list[AppCache]:
    """Every Flask-Caching ``Cache`` registered on ``app``, in start-up order."""
    registered = getattr(app, "extensions", {}).get("cache") or {}
    last_call = {id(call.cache): call for call in calls or () if call.app is app}
    names = _find_names(list(registered))
    caches = []
    for index, (cache, backend) in enumerate(registered.items()):
        call = last_call.get(id(cache))
        if call is not None:
            configured = dict(call.merged)
        else:  # registered without init_app: what app.config and the Cache hold
            configured = {**app.config, **(getattr(cache, "config", None) or {})}
        import_name, attribute_path = names[id(cache)]
        caches.append(
            AppCache(
                index=index,
                import_name=import_name,
                attribute_path=attribute_path,
                config_name=_config_name(app, call, cache),
                configured={k: v for k, v in configured.items() if str(k).startswith("CACHE_")},
                live=_read_live(cache, backend),
                cache=cache,
                backend=backend,
                app=app,
            )
        )
    return caches


def _resolve_attribute_path(path: str) -> Any:
    """The object ``module:attr.attr`` names, or None when it does not import."""
    module_name, _, attributes = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for attribute in attributes.split("."):
            target = getattr(target, attribute)
    except Exception:
        return None
    return target


def describe_choices(caches: list[AppCache]) -> str:
    return ", ".join(
        f"{c.index} ({', '.join(c.names)})" if c.names else f"{c.index} (#{c.index})"
        for c in caches
    )


def select_app_cache(caches: list[AppCache], wanted: str | None, app_name: str) -> AppCache:
    """Pick one cache by index, import name, attribute path or settings-dict name
    (or its short form when only one cache has it); refuse to guess between several."""
    if not caches:
        raise ConfigError(
            f"the app {app_name!r} registered no Flask-Caching Cache "
            "(app.extensions['cache'] is empty)"
        )
    choices = describe_choices(caches)
    if wanted is None:
        if len(caches) == 1:
            return caches[0]
        raise ConfigError(f"the app has several caches: {choices}; pick one with --cache")
    for cache in caches:
        spellings = {str(cache.index), f"#{cache.index}", *cache.names}
        spellings |= {name.replace(":", ".") for name in cache.names if ":" in name}
        if wanted in spellings or (cache.config_name or "").upper() == wanted.upper():
            return cache
    by_short_name = [c for c in caches if c.config_name and short_name(c.config_name) == wanted]
    if len(by_short_name) == 1:
        return by_short_name[0]
    if len(by_short_name) > 1:
        raise ConfigError(
            f"{wanted!r} could be any of {describe_choices(by_short_name)}; use the full name"
        )
    if ":" in wanted:
        target = _resolve_attribute_path(wanted)
        for cache in caches:
            if target is not None and target is cache.cache:
                return cache
    known = [name for cache in caches for name in cache.names]
    raise ConfigError(
        f"no cache {wanted!r} in the app; it has: {choices} ('all': each in turn)"
        + did_you_mean(wanted, known)
    )
