"""Access to the cache servers: one small class per backend over one interface.

The names are loaded on first use: ``config``, ``completion`` and ``--help`` never
import cachelib or a server's client library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cachectl.backends.base import CacheBackend, ClearPlan
    from cachectl.backends.factory import build_backend

__all__ = ["CacheBackend", "ClearPlan", "build_backend"]


def __getattr__(name: str) -> Any:
    if name in ("CacheBackend", "ClearPlan"):
        from cachectl.backends import base

        return getattr(base, name)
    if name == "build_backend":
        from cachectl.backends.factory import build_backend

        return build_backend
    raise AttributeError(f"module 'cachectl.backends' has no attribute {name!r}")
