"""What a restricted load builds in place of what it refuses to import or call.

They name classes by the import path the pickle holds (``sqlalchemy.engine.row.Row``),
never by where cachectl defines the stand-in.
"""

from __future__ import annotations

from typing import Any


class Marker:
    """Shown as it is: for what a limit cut, a cycle, a repeat (``kind`` "truncated",
    "cycle", "shared"; JSON has ``{"$" + kind: text}``), or text made beforehand ("text")."""

    def __init__(self, kind: str, text: str) -> None:
        self.kind, self.text = kind, text

    def __repr__(self) -> str:
        return self.text


class ClassRef:
    """A global a pickle names, by the import path it holds (never imported);
    ``target`` is the class when a restricted load may build it."""

    def __init__(self, module: str, name: str, target: Any = None) -> None:
        self.module, self.name, self.target = module, name, target
        self.path = f"{module}.{name}" if module else name

    def __repr__(self) -> str:
        return f"<class {self.path!r}>"


class OpaqueObject:
    """Stand-in for an object of a class cachectl refused to import (or a call it
    refused to make, with the reason): how the pickle wanted to build it."""

    def __init__(self, module: str, name: str, args: tuple[Any, ...] = (), **more: Any) -> None:
        self.module, self.name, self.args, self.refused = module, name, args, more.get("refused")
        self.kwargs: dict[str, Any] = more.get("kwargs") or {}
        self.function, self.state = more.get("function"), more.get("state")
        path = f"{module}.{name}" if module else name
        self.class_path = "(call)" if self.function is not None else path
        self.items: list[Any] = []  # what APPENDS, ADDITEMS add (a list or set subclass)
        self.entries: list[tuple[Any, Any]] = []  # SETITEMS: pairs, unhashable keys too
        self.add = self.append = self.items.append  # so pickle's opcodes for those work
        self.extend = self.items.extend

    def __setitem__(self, key: Any, value: Any) -> None:
        self.entries.append((key, value))

    def captured(self) -> dict[str, Any]:
        parts = {"function": self.function, "args": list(self.args), "kwargs": self.kwargs}
        parts |= {"state": self.state, "items": self.items, "entries": self.entries}
        return {k: v for k, v in parts.items() if v is not None and (k == "state" or v)}
