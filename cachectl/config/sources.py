"""Read cache settings from where operators and apps keep them: files and the environment.

Each reader returns plain ``CACHE_*`` dicts; ``cachectl.config.resolve`` decides their
precedence and remembers which source said what. A .py file is read as Flask's
``config.from_pyfile`` reads it, ``FLASK_CACHE_*`` variables as
``config.from_prefixed_env()`` reads them, so the same file or environment means
the same thing to the app and to cachectl.

A file found by walking up from the current directory was not named by the operator, and
the directory may be ``/tmp``: it is used only when its owner is the current user or
root and no one else may write to it, it is read through no link, and it may not name
code to import (a custom ``CACHE_TYPE`` or ``CACHE_SERIALIZER``): that takes ``--config``.
A .py file is only ever run when named.
"""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cachectl.errors import ConfigError
from cachectl.runtime.safe_files import UnsafeFile, read_regular, read_trusted

DEFAULT_CACHE_NAME = "default"
#: Config files discovery returned in this process: whoever reads one (the settings, the
#: groups, ``--cache all``) reads it with the trust check again, on the descriptor, and
#: refuses code it names. A set rather than a flag passed along, so that every reader of
#: a path discovery chose gets the same rules without having to be told.
_FOUND: set[Path] = set()
#: Skipped files already explained: discovery runs more than once in a run.
_EXPLAINED: set[Path] = set()


def _toml_loads(text: str) -> dict[str, Any]:
    """``tomllib.loads``, imported when a TOML file is read rather than on every start."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # the same parser, as a package (`tomli>=1.1; python_version < "3.11"`)
        import tomli as tomllib
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _InvalidToml(str(exc)) from exc


class _InvalidToml(ValueError):
    """A TOML syntax error, whichever parser found it."""


def parse_setting_value(text: str) -> Any:
    """A value given as text (environment, ``-o``): JSON when it parses, else the string,
    the way Flask's ``config.from_prefixed_env`` reads it."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
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
    source = _read_bytes(path)
    try:
        exec(compile(source, str(path), "exec"), module.__dict__)
    except SyntaxError as exc:
        raise ConfigError(f"{path}, line {exc.lineno}: syntax error: {exc.msg}") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except SystemExit as exc:
        # A config file that exits would end every command, clear --yes included,
        # with the status it chose, having done nothing.
        raise ConfigError(f"{path} called sys.exit({exc.code!r}) while being read") from exc
    except Exception as exc:
        raise ConfigError(f"{path} failed while running: {type(exc).__name__}: {exc}") from exc
    return {name: value for name, value in vars(module).items() if name.isupper()}


def _read_bytes(path: Path) -> bytes:
    """A named file through a link if need be (the operator chose it), a found one
    through none and only if trusted; a FIFO or a directory is refused, not waited on.
    Either failure is the one line of a ConfigError."""
    try:
        if path in _FOUND:
            return read_trusted(path)
        return read_regular(path, follow_symlinks=True)
    except UnsafeFile as exc:
        raise ConfigError(f"config file {exc}: not read") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc


def _read_data_file(path: Path) -> dict[str, Any]:
    try:
        text = _read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start})") from exc
    try:
        data = _toml_loads(text) if path.suffix == ".toml" else json.loads(text)
    except _InvalidToml as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}, line {exc.lineno}: invalid JSON: {exc.msg}") from exc
    except RecursionError as exc:
        raise ConfigError(f"{path}: nested too deeply to be a table of settings") from exc
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
    #: The invalidation groups as written (``groups``, ``CACHECTL_GROUPS`` in a .py
    #: file), checked by ``cachectl.config.groups`` when a command uses them.
    groups: Any = None
    #: Where destructive commands log what they did (``audit_log``, ``CACHECTL_AUDIT_LOG``
    #: in a .py file), relative to the file; ``--audit-log`` and the environment win.
    audit_log: str | None = None
    #: Where destructive runs keep what they remove, one file per run (``backup_dir``,
    #: ``CACHECTL_BACKUP_DIR`` in a .py file), relative to the file; ``--backup`` wins.
    backup_dir: str | None = None


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
    found = path in _FOUND
    if path.suffix == ".py" and not found:
        data = _read_python_file(path)
        named = data.pop("CACHECTL_CACHES", {})
        compat = data.pop("CACHECTL_COMPAT", None)
        groups = data.pop("CACHECTL_GROUPS", None)
        audit_log = data.pop("CACHECTL_AUDIT_LOG", None)
        backup_dir = data.pop("CACHECTL_BACKUP_DIR", None)
        if isinstance(named, dict):
            for name, value in list(data.items()):
                if _is_settings_dict(value):
                    named.setdefault(name, data.pop(name))
    elif path.suffix in (".toml", ".json"):
        data = _read_data_file(path)
        named = data.pop("caches", {})
        compat = data.pop("compat", None)
        groups = data.pop("groups", None)
        audit_log = data.pop("audit_log", None)
        backup_dir = data.pop("backup_dir", None)
    else:
        raise ConfigError(f"config file {path}: use a .py, .toml or .json file")
    if not isinstance(named, dict) or not all(isinstance(v, dict) for v in named.values()):
        raise ConfigError(f"{path}: named caches must be tables of settings, one per name")
    if compat is not None and not isinstance(compat, str):
        raise ConfigError(f"{path}: compat must be a string (2.5 or legacy), not {compat!r}")
    if audit_log is not None and not (isinstance(audit_log, str) and audit_log.strip()):
        raise ConfigError(f"{path}: audit_log must be the path of a file, not {audit_log!r}")
    if audit_log is not None:
        audit_log = str(path.parent / audit_log)  # relative to the file, as an operator reads it
    if backup_dir is not None and not (isinstance(backup_dir, str) and backup_dir.strip()):
        raise ConfigError(f"{path}: backup_dir must be the path of a directory, not {backup_dir!r}")
    if backup_dir is not None:
        backup_dir = str(path.parent / backup_dir)
    top = {k: v for k, v in data.items() if k.startswith("CACHE_")}
    caches: dict[str, dict[str, Any]] = {}
    if top:
        caches[DEFAULT_CACHE_NAME] = top
    for name, settings in named.items():
        caches[str(name)] = {**top, **settings}
    if found:
        _refuse_code(path, caches)
    return ConfigFile(caches, compat, groups, audit_log, backup_dir)


def _code_named(settings: Mapping[str, Any]) -> str | None:
    """The setting of ``settings`` that makes cachectl import code by name, if any: a
    ``CACHE_TYPE`` that is a dotted path to a class (beyond cachelib's and Flask-Caching's
    own), a ``CACHE_SERIALIZER`` given as one (cachelib's are already loaded)."""
    from cachectl.config.settings import canonical_cache_type

    cache_type = settings.get("CACHE_TYPE")
    if isinstance(cache_type, str):
        canonical = canonical_cache_type(cache_type)
        if "." in canonical and not canonical.startswith("cachelib."):
            return f"CACHE_TYPE {cache_type!r}"
    serializer = settings.get("CACHE_SERIALIZER")
    if isinstance(serializer, str) and not serializer.startswith("cachelib."):
        return f"CACHE_SERIALIZER {serializer!r}"
    return None


def _refuse_code(path: Path, caches: Mapping[str, Mapping[str, Any]]) -> None:
    """A found file names no code: importing a class by name puts the current directory
    first on ``sys.path``, and a module planted there would run as whoever runs
    cachectl. The operator who names the file takes that on (exit 2 until then)."""
    for name, settings in caches.items():
        code = _code_named(settings)
        if code is not None:
            where = "" if name == DEFAULT_CACHE_NAME else f" (cache {name})"
            raise ConfigError(
                f"{path} was found from the current directory, not named, and its {code}"
                f"{where} would import code: name the file with --config {path} (or "
                "CACHECTL_CONFIG) to use it"
            )


def discover_config_file(start: Path) -> Path | None:
    """``cachectl.toml``, else a ``pyproject.toml`` with ``[tool.cachectl]``, from ``start``
    up: the first one that may be trusted (``cachectl.runtime.safe_files.read_trusted``); each
    skipped file that would have been used is explained in one line on standard error."""
    for directory in (start, *start.parents):
        for name, is_config in (("cachectl.toml", None), ("pyproject.toml", _has_our_table)):
            candidate = directory / name
            if _found_file(candidate, is_config):
                _FOUND.add(candidate)
                return candidate
    return None


def _has_our_table(data: bytes) -> bool:
    """Whether a pyproject.toml holds ``[tool.cachectl]`` (most have none: not parsed)."""
    if b"cachectl" not in data:
        return False
    try:
        return bool(_toml_loads(data.decode("utf-8")).get("tool", {}).get("cachectl"))
    except (UnicodeDecodeError, _InvalidToml, RecursionError):
        return False


def _found_file(path: Path, is_config: Callable[[bytes], bool] | None) -> bool:
    """Whether discovery may use the file at ``path``: a trusted regular file that is a
    config file (``is_config`` of its bytes; None: its name says so). An unreadable
    cachectl.toml is used, so that the read reports why."""
    try:
        data = read_trusted(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except UnsafeFile as exc:
        if is_config is None or _peek(path, is_config):
            _explain_skipped(path, str(exc.strerror))
        return False
    except OSError:
        return is_config is None
    return is_config is None or is_config(data)


def _peek(path: Path, is_config: Callable[[bytes], bool]) -> bool:
    """Whether a file discovery skips would have been a config file, so that a project's
    pyproject.toml without our table, owned by another user, goes unmentioned. Reading
    it runs nothing; a FIFO or a device is still not opened."""
    try:
        return is_config(read_regular(path, follow_symlinks=True))
    except OSError:
        return False


def _explain_skipped(path: Path, why: str) -> None:
    """One line on standard error, once a run: written directly, since discovery runs
    before any output is set up, and even with -q, since an operator must learn why the
    file next door was not used."""
    if path not in _EXPLAINED:
        _EXPLAINED.add(path)
        sys.stderr.write(
            f"warning: skipped {path} (found from the current directory): it {why}; "
            "name it with --config to use it anyway\n"
        )


def short_name(settings_name: str) -> str:
    """``data`` for ``DATA_CACHE_CONFIG``: what an operator types for a settings dict."""
    name = settings_name.upper()
    for suffix in ("_CONFIG", "_CACHE"):
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return name.lower()


def did_you_mean(wanted: str, names: Iterable[str]) -> str:
    """'; did you mean all?' for a mistyped --cache, or ''."""
    import difflib

    close = difflib.get_close_matches(wanted, [*names, "all"], n=2)
    return f"; did you mean {' or '.join(close)}?" if close else ""


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
        raise ConfigError(
            f"{where} has no cache named {wanted!r} (it has: {known}; 'all' runs clear, "
            f"stats, keys, config and delete --pattern on each){did_you_mean(wanted, caches)}"
        )
    if DEFAULT_CACHE_NAME in caches or not caches:
        return DEFAULT_CACHE_NAME, caches.get(DEFAULT_CACHE_NAME, {})
    if len(caches) == 1:
        return next(iter(caches.items()))
    raise ConfigError(
        f"{where} describes several caches ({', '.join(caches)}); pick one with --cache"
    )
