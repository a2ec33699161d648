"""Access to the cache servers: one small class per backend over one interface."""

from cachectl.backends.base import CacheBackend, ClearPlan
from cachectl.backends.factory import build_backend

__all__ = ["CacheBackend", "ClearPlan", "build_backend"]
