"""Invalidation groups: named sets of invalidations kept in the config file, which an
operator or a deploy script runs together (``cachectl invalidate prices``) without any
change to the app.

```toml
[groups.prices]
memoized = ["shop.pricing.price_list", "shop.catalog.get_product 1042"]
views = ["/pricing", "/search --all-queries"]
fragments = ["footer", "product_card 1042"]
patterns = ["report:*"]
```

(``"groups"`` in JSON, ``CACHECTL_GROUPS = {...}`` in a .py file.) Each entry is the
arguments of one command, split as bash would (``cachectl.runtime.command_line``, as a batch
line is: a ``#`` starts a comment only at the start of a word): ``delete-memoized``,
``delete-view``, ``make-fragment-key --delete``; a pattern is one glob, taken as it is, for
``delete --pattern``. The table is checked strictly when it is used (``groups``,
``invalidate``): a group that cachectl would misread must stop the deploy rather than
invalidate less than it says. Other commands do not read it, so a mistake there does
not stop a cron job's ``clear``.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, NamedTuple

from cachectl.config.resolve import ConfigRequest
from cachectl.config.sources import discover_config_file, read_config_file
from cachectl.errors import ConfigError
from cachectl.runtime.command_line import LineSyntaxError, split_line

#: What a group may hold, in the order its actions run.
GROUP_KEYS = ("memoized", "views", "fragments", "patterns")


class InvalidationGroup(NamedTuple):
    """One ``[groups.NAME]`` table, checked."""

    name: str
    memoized: tuple[str, ...] = ()
    views: tuple[str, ...] = ()
    fragments: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()

    def commands(self) -> list[tuple[str, ...]]:
        """The cachectl commands the group runs, in order (memoized, views, fragments,
        patterns). A pattern's deletion needs no question of its own: ``invalidate``
        asks once for all of them (or is given --yes)."""
        return [
            *(("delete-memoized", *split_line(entry)) for entry in self.memoized),
            *(("delete-view", *split_line(entry)) for entry in self.views),
            *(("make-fragment-key", "--delete", *split_line(entry)) for entry in self.fragments),
            *(("delete", "--yes", "--pattern", glob) for glob in self.patterns),
        ]

    def document(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **{key: list(getattr(self, key)) for key in GROUP_KEYS},
            "commands": [shlex.join(command) for command in self.commands()],
        }


def _entries(path: Path, name: str, key: str, value: Any) -> tuple[str, ...]:
    where = f"{path}: group {name!r}"
    if not isinstance(value, list) or not all(isinstance(entry, str) for entry in value):
        raise ConfigError(f"{where}: {key} must be a list of strings, not {value!r}")
    for entry in value:
        if not entry.strip():
            raise ConfigError(f"{where}: {key} holds an empty entry")
        if key != "patterns":
            try:
                words = split_line(entry)
            except LineSyntaxError as exc:
                raise ConfigError(f"{where}: {key} entry {entry!r}: {exc}") from None
            if not words:
                raise ConfigError(f"{where}: {key} entry {entry!r} is only a comment")
    return tuple(value)


def check_groups(raw: Any, path: Path) -> dict[str, InvalidationGroup]:
    """The groups a config file describes, refusing (exit 2, naming the file and the
    group) anything that is not exactly a table of groups of lists of strings."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: groups must be a table with one table per group, not {raw!r}")
    groups = {}
    for name, table in raw.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{path}: group names must be non-empty strings, not {name!r}")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: group {name!r} must be a table, not {table!r}")
        unknown = [key for key in table if key not in GROUP_KEYS]
        if unknown:
            raise ConfigError(
                f"{path}: group {name!r}: unknown key {unknown[0]!r} "
                f"(a group holds {', '.join(GROUP_KEYS)})"
            )
        checked = {key: _entries(path, name, key, value) for key, value in table.items()}
        group = InvalidationGroup(name, **checked)
        if not group.commands():
            raise ConfigError(f"{path}: group {name!r} has no actions")
        groups[name] = group
    return groups


def groups_file(request: ConfigRequest) -> Path:
    """The config file that holds the groups: ``--config`` (or CACHECTL_CONFIG), else the
    ``cachectl.toml`` (or ``[tool.cachectl]``) found from the current directory upward,
    with ``--app`` too: the groups are the operator's, whoever supplies the settings."""
    if request.config_file is not None:
        path = Path(request.config_file)
        return path if path.is_absolute() else request.cwd / path
    found = discover_config_file(request.cwd)
    if found is None:
        raise ConfigError(
            "no config file to read invalidation groups from: name it with --config FILE "
            "(or CACHECTL_CONFIG), or create a cachectl.toml here or in a parent directory"
        )
    return found


def load_groups(request: ConfigRequest) -> tuple[Path, dict[str, InvalidationGroup]]:
    """The groups of the invocation's config file, checked, and the file's path."""
    path = groups_file(request)
    return path, check_groups(read_config_file(path).groups, path)


def pick_groups(
    groups: dict[str, InvalidationGroup], names: tuple[str, ...], path: Path
) -> list[InvalidationGroup]:
    """The groups named, in the order given (each once); an unknown name is a usage
    error that lists the groups there are."""
    for name in names:
        if name not in groups:
            known = ", ".join(groups) or "none"
            raise ConfigError(f"no invalidation group {name!r} in {path} (it has: {known})")
    return [groups[name] for name in dict.fromkeys(names)]
