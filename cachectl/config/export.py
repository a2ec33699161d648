"""Write resolved settings to a cachectl.toml (``config --write``).

Loading an app runs its factory, with whatever that does (database migrations,
cache warm-up) and the seconds it takes; cron jobs and other hosts should load
it once and run config-only from then on. The file holds every cache as a
named cache, with the Flask-Caching generation recorded, and never a secret:
each one left out is named in a comment, with the ``FLASK_CACHE_*`` variable
that gives it back under ``--env``.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Any

from cachectl.config.resolve import ResolvedConfig
from cachectl.errors import UsageError
from cachectl.runtime.secrets import hash_method_name, is_secret, mask_url, scrub


@dataclass
class ExportedCache:
    """One cache's settings ready for TOML, and what had to stay out."""

    name: str
    values: dict[str, Any] = field(default_factory=dict)
    #: Comment lines: secrets left out, values no file can hold.
    notes: list[str] = field(default_factory=list)


def _dotted_path(value: Any) -> str | None:
    """``module.Class`` for a serializer class or instance, when it imports back."""
    kind = value if isinstance(value, type) else type(value)
    path = f"{kind.__module__}.{kind.__qualname__}"
    try:
        if getattr(importlib.import_module(kind.__module__), kind.__qualname__, None) is kind:
            return path
    except ImportError:
        pass
    return None


def _plain(value: Any) -> Any:
    """``value`` as TOML holds it (tuples as arrays, paths as strings), or raise TypeError."""
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value if item is not None]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    raise TypeError(type(value).__name__)


def _secret_note(variable: str, setting: str) -> str:
    return f"{setting} is left out: export {variable}=... and run cachectl with --env"


def export_cache(name: str, settings: ResolvedConfig) -> ExportedCache:
    """The settings of one cache as they go into the file."""
    exported = ExportedCache(name)
    for setting in sorted(settings.values):
        value = settings.values[setting]
        if value is None:
            continue
        if is_secret(setting):
            if value:
                exported.notes.append(_secret_note(f"FLASK_{setting}", setting))
            continue
        if isinstance(value, str) and mask_url(value) != value:
            # A URL that carries a password goes out whole, with the password: the
            # file gets none of it, the environment all of it.
            exported.notes.append(
                _secret_note(f"FLASK_{setting}", f"{setting} (it holds a password)")
            )
            continue
        if isinstance(value, (list, tuple)) and any(
            scrub(str(item)) != str(item) for item in value
        ):
            exported.notes.append(
                f"{setting} holds credentials inside its entries and is left out: give it "
                f"with --env (FLASK_{setting})"
            )
            continue
        if setting.endswith("HASH_METHOD"):
            value = hash_method_name(value)
        elif setting == "CACHE_SERIALIZER":
            dotted = _dotted_path(value)
            if dotted is None:
                exported.notes.append(
                    f"{setting} ({value!r}) cannot be imported by name: give it with -o or --app"
                )
                continue
            value = dotted
        elif isinstance(value, dict):
            kept = {}
            for option, option_value in value.items():
                if is_secret(str(option)):
                    exported.notes.append(
                        _secret_note(f"FLASK_{setting}__{option}", f"{setting}[{option!r}]")
                    )
                else:
                    kept[option] = option_value
            value = kept
        try:
            exported.values[setting] = _plain(value)
        except TypeError:
            exported.notes.append(f"{setting} ({value!r}) cannot be written to a file")
    return exported


def render_toml(caches: list[ExportedCache], compat: str, header: list[str]) -> str:
    """The file's text: a header, the generation, then one table per cache."""
    import tomli_w

    lines = [f"# {line}" for line in header]
    lines += [tomli_w.dumps({"compat": compat}).rstrip()]
    for cache in caches:
        lines.append("")
        lines += [f"# {note}" for note in cache.notes]
        lines.append(tomli_w.dumps({"caches": {cache.name: cache.values}}).rstrip())
    return "\n".join(lines) + "\n"


def write_file(path: str, text: str, overwrite: bool) -> None:
    """Write ``text`` whole or not at all (``cachectl.runtime.safe_files``: written beside, flushed,
    renamed), never over an existing file unless asked, never through a link or into a
    FIFO even when asked; readable by the owner only, like any file that says where a
    production cache lives (a replaced file gets 0600 too: it is a new file)."""
    from cachectl.runtime.safe_files import UnsafeFile, write_atomically

    if not path:
        raise UsageError("config --write needs a file name (or - for standard output)")
    try:
        write_atomically(path, text.encode("utf-8"), overwrite=overwrite)
    except FileExistsError:
        raise UsageError(f"{path} exists already: add --force to replace it") from None
    except UnsafeFile as exc:
        raise UsageError(f"cannot write {path}: it {exc.strerror}; nothing was written") from None
    except OSError as exc:
        parent = os.path.dirname(path) or "."
        if isinstance(exc, FileNotFoundError) and not os.path.isdir(parent):
            raise UsageError(f"cannot write {path}: no directory {parent}") from None
        raise UsageError(f"cannot write {path}: {exc.strerror}; nothing was written") from None
