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

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from typing import Any

from cachectl.app import static_lookup as static
from cachectl.app.static_lookup import is_module
from cachectl.backends.live import LiveReading, read_live_backend
from cachectl.config.sources import did_you_mean, short_name
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
def stdout_to_stderr() -> Iterator[None]:
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


@dataclass
class StartupRecord:
    """What cachectl saw while the app started: each ``init_app`` call, and the
    modules that created or initialised a ``Cache`` (where its names are found)."""

    calls: list[InitAppCall] = field(default_factory=list)
    modules: set[str] = field(default_factory=set)

    def note_caller(self) -> None:
        """The module of the code that called into Flask-Caching (two frames up:
        past the recording wrapper), read from the frame's globals."""
        frame = sys._getframe(2)
        name = frame.f_globals.get("__name__")
        if isinstance(name, str) and not name.startswith(("flask_caching", "cachectl")):
            self.modules.add(name)


@contextmanager
def _watching_caches() -> Iterator[StartupRecord]:
    """Record every ``Cache`` created and every ``Cache.init_app`` made while the app
    starts. The wrappers only record, then call Flask-Caching's own methods."""
    record = StartupRecord()
    try:
        from flask_caching import Cache
    except ImportError:  # the app cannot have registered a cache either
        yield record
        return
    original_init, original_init_app = Cache.__init__, Cache.init_app

    def recording_init(self: Any, *args: Any, **kw: Any) -> None:
        record.note_caller()
        original_init(self, *args, **kw)

    def recording_init_app(self: Any, app: Any, config: Any = None, *args: Any, **kw: Any) -> Any:
        record.note_caller()
        merged = dict(app.config)
        merged.update(static.read(self, "config") or {})
        merged.update(config if isinstance(config, dict) else {})
        given = config if isinstance(config, dict) else None
        record.calls.append(InitAppCall(self, app, given, merged))
        return original_init_app(self, app, config, *args, **kw)

    Cache.__init__ = recording_init  # type: ignore[method-assign]
    Cache.init_app = recording_init_app  # type: ignore[method-assign]
    try:
        yield record
    finally:
        Cache.__init__ = original_init  # type: ignore[method-assign]
        Cache.init_app = original_init_app  # type: ignore[method-assign]


def _app_packages(import_path: str, app: Any, record: StartupRecord) -> set[str]:
    """The top-level packages that are the app's own: the import path's, the app's
    ``import_name``'s, and those of the modules that created or initialised a cache."""
    modules = set(record.modules)
    module_part = import_path.partition(":")[0]
    if all(part.isidentifier() for part in module_part.split(".")):
        modules.add(module_part)
    import_name = static.read(app, "import_name")
    if isinstance(import_name, str):
        modules.add(import_name)
    return {name.partition(".")[0] for name in modules} - {"__main__", ""}


def load_flask_app(import_path: str, script_info: Any = None) -> LoadedApp:
    """Import the app as ``flask --app IMPORT`` would (cwd on sys.path, factories
    called) and collect its caches; inside ``flask cachectl``, through Flask's own
    ``script_info`` (its ``--app``, ``FLASK_APP``, discovery or ``create_app``)."""
    try:
        from flask.cli import NoAppException, ScriptInfo
    except ImportError as exc:
        raise ConfigError(
            "--app needs Flask installed beside cachectl "
            "(pip install 'flask-cachectl[app]', or use --config)"
        ) from exc
    info = script_info or ScriptInfo(app_import_path=import_path, set_debug_flag=False)
    with stdout_to_stderr(), _watching_caches() as record:
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
    return LoadedApp(
        import_path, app, app_caches(app, record.calls, _app_packages(import_path, app, record))
    )


def _summary(exc: BaseException) -> str:
    """Flask's message, without the traceback it embeds for an import error: its
    first line and the error itself (``--debug`` shows the whole chain)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else type(exc).__name__
    return f"{lines[0].rstrip(':')}: {lines[-1]}"


def _modules_under(roots: set[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The namespaces of the loaded modules inside the app's own packages (``roots``
    and their submodules), never cachectl's or Flask-Caching's: the only modules
    whose names an operator would use for the app's caches."""
    for module_name, module in list(sys.modules.items()):
        if module_name.startswith(("flask_caching", "cachectl")) or not is_module(module):
            continue
        if module_name.partition(".")[0] in roots or module_name in roots:
            yield module_name, static.namespace(module)


def _held_attributes(holder: Any) -> Iterator[tuple[str, Any]]:
    """What a module-level object (a manager of several caches) holds, read without
    running its code: its instance dictionary, and its properties whose getter only
    returns one of those entries (``data_cache`` for ``return self._data_cache``)."""
    if is_module(holder) or static.is_class(holder):
        return
    stored = static.namespace(holder)
    if not stored:
        return
    for name in static.class_attribute_names(type(holder)):
        if name.startswith("_"):
            continue
        alias = static.property_alias(holder, name)
        if alias is not None and alias in stored:
            yield name, stored[alias]
    yield from list(stored.items())


def _find_names(caches: list[Any], roots: set[str]) -> dict[int, tuple[str | None, str | None]]:
    """Where the app's own modules refer to each cache, in one pass over them: a
    module attribute, or an attribute of a module-level object (a manager of several
    caches). Only stored values are read (``static_lookup``)."""
    wanted = {id(cache) for cache in caches}
    direct: dict[int, list[str]] = {key: [] for key in wanted}
    nested: dict[int, list[str]] = {key: [] for key in wanted}
    for module_name, namespace in _modules_under(roots):
        for attribute, value in list(namespace.items()):
            if not isinstance(attribute, str):
                continue
            if id(value) in wanted:
                direct[id(value)].append(f"{module_name}:{attribute}")
            elif not attribute.startswith("__") and not callable(value):
                for name, held in _held_attributes(value):
                    if id(held) in wanted:
                        # A manager is most often created where its class is defined:
                        # that module comes before those that merely import it.
                        home = static.read(type(value), "__module__") == module_name
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
    found by identity first, then by equal plain content."""
    candidates = [call.given if call else None, static.read(cache, "config")]
    dicts = [
        (name, value)
        for name, value in dict.items(app.config)
        if issubclass(type(value), dict) and isinstance(name, str)
    ]
    for candidate in candidates:
        if not candidate or not issubclass(type(candidate), dict):
            continue
        for name, value in dicts:
            if value is candidate:
                return str(name)
        for name, value in dicts:
            if static.same_plain_content(value, candidate):
                return str(name)
    return None


def _read_live(cache: Any, backend: Any) -> LiveReading:
    """What the backend shows, and what the Cache object itself settled on at
    init_app (its key hash and source check, used by its decorators)."""
    reading = read_live_backend(backend)
    hash_method = static.read(cache, "hash_method")
    if hash_method is not None:  # Flask-Caching 2.5+
        reading.values["CACHE_HASH_METHOD"] = hash_method
    source_check = static.read(cache, "source_check")
    if source_check is not None:
        reading.values["CACHE_SOURCE_CHECK"] = bool(source_check)
    return reading


def _names_or_none(caches: list[Any], roots: set[str]) -> dict[int, tuple[str | None, str | None]]:
    """Naming is a courtesy: whatever an object of the app does when looked at, the
    worst outcome is a cache known by its index alone."""
    try:
        return _find_names(caches, roots)
    except Exception:
        return {id(cache): (None, None) for cache in caches}


def app_caches(
    app: Any, calls: list[InitAppCall] | None = None, roots: set[str] | None = None
) -> list[AppCache]:
    """Every Flask-Caching ``Cache`` registered on ``app``, in start-up order, named
    from the modules of ``roots`` (the app's own packages)."""
    extensions = static.read(app, "extensions")
    registered = (extensions.get("cache") if isinstance(extensions, dict) else None) or {}
    last_call = {id(call.cache): call for call in calls or () if call.app is app}
    names = _names_or_none(list(registered), roots or set())
    caches = []
    for index, (cache, backend) in enumerate(registered.items()):
        call = last_call.get(id(cache))
        own_config = static.read(cache, "config")
        if call is not None:
            configured = dict(call.merged)
        else:  # registered without init_app: what app.config and the Cache hold
            configured = {**app.config, **(own_config if isinstance(own_config, dict) else {})}
        import_name, attribute_path = names[id(cache)]
        try:
            config_name = _config_name(app, call, cache)
        except Exception:  # a courtesy name, as above
            config_name = None
        caches.append(
            AppCache(
                index=index,
                import_name=import_name,
                attribute_path=attribute_path,
                config_name=config_name,
                configured={k: v for k, v in configured.items() if str(k).startswith("CACHE_")},
                live=_read_live(cache, backend),
                cache=cache,
                backend=backend,
                app=app,
            )
        )
    return caches


def _evaluate_cache_path(path: str, known: list[str]) -> Any:
    """The object the operator named by ``module:attr.attr`` (its properties run: it
    was named), or exit 2 with one line naming the path and the closest names."""
    try:
        return static.evaluate_named_path(path)
    except static.NamedPathError as exc:
        raise ConfigError(f"--cache {path}: {exc}" + did_you_mean(path, known)) from exc


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
    known = [name for cache in caches for name in cache.names]
    if ":" in wanted:
        target = _evaluate_cache_path(wanted, known)
        for cache in caches:
            if target is cache.cache:
                return cache
        raise ConfigError(
            f"--cache {wanted}: that object is not one of the app's caches ({choices})"
        )
    raise ConfigError(
        f"no cache {wanted!r} in the app; it has: {choices} ('all': each in turn)"
        + did_you_mean(wanted, known)
    )
